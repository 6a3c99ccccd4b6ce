#!/usr/bin/env bash
# What the mutation log costs a Flux request that writes. A one-function project: migrations
# create `counters` (1000 rows), and GET /bump?id=<n> runs one `update counters set n = n + 1
# where id = $1`; wrk (bench/lua/random_id.lua) picks n at random in 1..1000 so that the 32
# connections do not all wait for the lock on one row. `flux dev` serves it with the mutation
# log off (FLUX_MUTATION_LOG=off, a measurement-only switch: flux then installs no capture
# triggers) and on (the default), alternately: off, on, off, on, ... ROUNDS times each. Every
# run gets a fresh temp copy of the project (so a fresh PostgreSQL cluster) and has the machine
# to itself: flux is stopped before the next one starts. Before stopping flux, the script counts
# the rows of flux.state_mutations with psql: with the log on they must fill up (one row per
# request), with it off stay at 0 (if not, this flux does not know the switch yet and "off"
# measured the log on).
# Prints each run, the median rps/p50/p99 per variant, then against the targets: rps on/off
# (>= 0.85), the latency added per logged write p50_on - p50_off (<= 30 us), and
# 1e6/rps_on - 1e6/rps_off, the us of server time per request at saturation. Appends one JSON
# line to bench/results/mutations.jsonl; server logs go to bench/results/mutations-<run>.log.
#
# Environment: FLUX_BIN, FLUX_ARGS, DURATION, WARMUP, CONNECTIONS, PORT_BASE (see bench/lib.sh),
# and ROUNDS (default 2).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init mutations

ROUNDS=${ROUNDS:-2}
PSQL=/usr/lib/postgresql/15/bin/psql
PG_PORT=5432   # flux dev's PostgreSQL: this port, unix socket in <project>/.flux/pg
LUA=bench/lua/random_id.lua
TARGET_RATIO=0.85
TARGET_ADDED_US=30

need_http_tools
need_flux
[ -x "$PSQL" ] || die "no psql at $PSQL (scripts/setup.sh installs PostgreSQL 15)"

template=$tmp/project
mkdir -p "$template/migrations" "$template/functions/bump"
cat >"$template/migrations/001.sql" <<'EOF'
create table counters (id int primary key, n bigint not null default 0);
insert into counters select g, 0 from generate_series(1, 1000) g;
EOF
cat >"$template/functions/bump/index.ts" <<'EOF'
export default async function handler(req, ctx) { const id = Number(new URL(req.url).searchParams.get("id") ?? 1); const r = await ctx.db.query("update counters set n = n + 1 where id = $1", [id]); return { ok: true }; }
EOF
echo '{"route":"/bump","method":"GET"}' >"$template/functions/bump/flux.json"

# count_mutations PROJECT: "<rows> <rows with a request_id>" of flux.state_mutations in the
# project's running PostgreSQL; "0 0" when flux made no such table.
count_mutations() {
  local q=("$PSQL" -h "$1/.flux/pg" -p "$PG_PORT" -U postgres -d postgres -XAt -F ' ')
  if [ "$("${q[@]}" -c "select to_regclass('flux.state_mutations') is null")" = t ]; then
    echo "0 0"
  else
    "${q[@]}" -c "select count(*), count(request_id) from flux.state_mutations"
  fi
}

declare -A logged=() logged_by_requests=() requests=()
# run VARIANT ROUND: start flux on a fresh copy of the project, check /bump, measure, count the
# logged rows, stop flux.
run() {
  local variant=$1 name=$1-$2 project=$tmp/$1-$2 body counts
  local env_cmd=(env -u FLUX_MUTATION_LOG)
  [ "$variant" = on ] || env_cmd=(env FLUX_MUTATION_LOG=off)
  cp -a "$template" "$project"
  next_port
  # shellcheck disable=SC2086  # FLUX_ARGS is split into words on purpose
  start_server "$name" "$port" "${env_cmd[@]}" "$FLUX_BIN" dev "$project" --port "$port" $FLUX_ARGS
  watch_postgres "$name" "$project/.flux/pg"
  wait_ready "$name" "http://127.0.0.1:$port/bump?id=1"
  body=$(curl -sf "http://127.0.0.1:$port/bump?id=2")
  case "$body" in *'"ok":true'*) ;; *) die "$name answered '$body' on /bump, not {\"ok\":true}" ;; esac
  wrk_measure "$name" "http://127.0.0.1:$port/bump" -s "$LUA"
  counts=$(count_mutations "$project") || die "$name: cannot count flux.state_mutations"
  read -r "logged[$name]" "logged_by_requests[$name]" <<<"$counts"
  stop_server "$name"
  wrk_parse "$name"
  requests[$name]=$(awk '/ requests in / { print $1 }' "$tmp/wrk-$name.txt")
  log "$name: flux.state_mutations has ${logged[$name]} rows, ${logged_by_requests[$name]} from requests (the measured run sent ${requests[$name]})"
  rm -rf "$project"
}

runs=()
for ((r = 1; r <= ROUNDS; r++)); do
  for variant in off on; do
    run "$variant" "$r"
    runs+=("$variant-$r")
  done
done

# --- checks and figures -------------------------------------------------------------------------

switch_ok=true
for name in "${runs[@]}"; do
  case $name in
    on-*) if [ "${logged_by_requests[$name]}" -lt "${requests[$name]}" ]; then
        log "warning: $name logged ${logged_by_requests[$name]} rows from requests, fewer than the ${requests[$name]} measured requests"
        switch_ok=false
      fi ;;
    off-*) if [ "${logged[$name]}" != 0 ]; then
        log "warning: $name logged ${logged[$name]} rows: this flux ignores FLUX_MUTATION_LOG=off, so 'off' measured the log on"
        switch_ok=false
      fi ;;
  esac
done

# Medians per variant go into the same arrays under the variant's name ("off", "on").
for variant in off on; do
  for metric in rps p50 p99; do
    declare -n values=$metric
    list=()
    for name in "${runs[@]}"; do
      if [[ $name == "$variant"-* ]]; then list+=("${values[$name]}"); fi
    done
    # shellcheck disable=SC2004  # values is associative: the $ is needed
    values[$variant]=$(median "${list[@]}")
    unset -n values
  done
done
rps_ratio=$(ratio on off)
added_p50=$(awk -v a="${p50[on]}" -v b="${p50[off]}" 'BEGIN { printf "%.2f", a - b }')
server_us=$(awk -v a="${rps[on]}" -v b="${rps[off]}" 'BEGIN { printf "%.2f", 1e6 / a - 1e6 / b }')
verdict() { # verdict VALUE OP TARGET: "met", "missed", or "not judged" when the checks failed
  if [ "$switch_ok" != true ]; then echo "not judged, see the warning"; return; fi
  awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? v >= t : v <= t; print ok ? "met" : "missed" }'
}

# --- report -------------------------------------------------------------------------------------

echo
echo "mutations: GET /bump?id=<random 1..1000>, one UPDATE a request; wrk -t1 -c$CONNECTIONS -d$DURATION (warm-up $WARMUP), $ROUNDS rounds, $(nproc) cores"
printf '%-8s %10s %10s %10s %7s %9s %16s\n' run rps p50_us p99_us errors requests state_mutations
json_runs=""
for name in "${runs[@]}"; do
  printf '%-8s %10s %10s %10s %7s %9s %16s\n' "$name" "${rps[$name]}" "${p50[$name]}" "${p99[$name]}" \
    "${errors[$name]}" "${requests[$name]}" "${logged[$name]} (${logged_by_requests[$name]} req)"
  json_runs+="${json_runs:+,}{\"run\":\"$name\",\"rps\":${rps[$name]},\"p50_us\":${p50[$name]},\"p99_us\":${p99[$name]},\"errors\":${errors[$name]},\"requests\":${requests[$name]},\"port\":${ports[$name]},\"state_mutations\":${logged[$name]},\"state_mutations_from_requests\":${logged_by_requests[$name]}}"
done
echo
printf '%-8s %10s %10s %10s   (medians)\n' log rps p50_us p99_us
for variant in off on; do
  printf '%-8s %10s %10s %10s\n' "$variant" "${rps[$variant]}" "${p50[$variant]}" "${p99[$variant]}"
done
echo
echo "rps on/off:                                   $rps_ratio   (target >= $TARGET_RATIO: $(verdict "$rps_ratio" '>=' "$TARGET_RATIO"))"
echo "added latency per logged write, p50 on - off: $added_p50 us   (target <= $TARGET_ADDED_US us: $(verdict "$added_p50" '<=' "$TARGET_ADDED_US"))"
echo "us of server time per request at saturation:  $server_us us   (1e6/rps_on - 1e6/rps_off; target <= $TARGET_ADDED_US us: $(verdict "$server_us" '<=' "$TARGET_ADDED_US"))"
[ "$switch_ok" = true ] || echo "warning: the log was not off in the 'off' runs or not complete in the 'on' runs (see above)"

median_json() { printf '"%s":{"rps":%s,"p50_us":%s,"p99_us":%s}' "$1" "${rps[$1]}" "${p50[$1]}" "${p99[$1]}"; }
printf '{"bench":"mutations","time":"%s","commit":"%s","dirty":%s,"cores":%s,"wrk":{"threads":1,"connections":%s,"duration":"%s","warmup":"%s","script":"%s"},"flux_args":"%s","rounds":%s,"runs":[%s],"medians":{%s,%s},"rps_on_off":%s,"added_p50_us":%s,"server_us_per_request":%s,"targets":{"rps_on_off_min":%s,"added_us_max":%s},"log_checks_ok":%s}\n' \
  "$(utc_now)" "$(git_commit)" "$(git_dirty)" "$(nproc)" "$CONNECTIONS" "$DURATION" "$WARMUP" "$LUA" \
  "$(json_str "$FLUX_ARGS")" "$ROUNDS" "$json_runs" "$(median_json off)" "$(median_json on)" \
  "$rps_ratio" "$added_p50" "$server_us" "$TARGET_RATIO" "$TARGET_ADDED_US" "$switch_ok" >>"$results/mutations.jsonl"
log "appended to $results/mutations.jsonl"

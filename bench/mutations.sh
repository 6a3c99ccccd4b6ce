#!/usr/bin/env bash
# What the mutation log costs a Flux request that writes. A one-function project: migrations
# create `counters` (1000 rows), and GET /bump?id=<n> runs one `update counters set n = n + 1
# where id = $1`; wrk (bench/lua/random_id.lua) picks n at random in 1..1000 so that the 32
# connections do not all wait for the lock on one row. Two `flux dev` servers on copies of the
# project, only one loaded at a time: one with the C capture (the default), one with the
# plpgsql capture (FLUX_MUTATION_LOG=plpgsql, the fallback for servers that cannot load the C
# library). Each is measured against itself with the log off: before every 'off' run the script
# drops the capture trigger from `counters` with psql, before every 'on' run it installs it
# again (flux.install_capture), so that the two sides of a pair share one process, its V8 code
# and its connections (an A/A run of two identical servers: medians 1.06 at 32 connections and
# 0.91 at 1, single pairs 0.80-1.24).
# ROUNDS pairs of wrk runs per comparison in the order off on, on off, ... (compare_pairs in
# lib.sh), with 32 connections (saturation: the rps ratio) and with 1 connection (the latency a
# logged write adds). Afterwards it checks with psql that each server logged one
# flux.state_mutations row per request of its 'on' runs and none for its 'off' runs, with the
# capture it should run (else the targets are not judged).
# Prints each run, then per load the median of the pairs' rps ratios on/off (min-max, target
# >= 0.85), the added p50 (target <= 30 us per logged write), the added p99 and
# 1e6/rps_on - 1e6/rps_off. Appends one JSON line to bench/results/mutations.jsonl; server logs
# go to bench/results/mutations-<server>.log.
#
# The servers run with execution recording off (FLUX_RECORD=off) unless RECORD=on: the
# recorder works at background priority and drains its backlog after a burst, into whichever
# run comes next, which spread the pairs' ratios 0.45-1.06 with it on; bench/record.sh measures
# recording.
#
# Environment: FLUX_BIN, FLUX_ARGS, DURATION, WARMUP, CONNECTIONS, PORT_BASE (see bench/lib.sh),
# ROUNDS (pairs, default 4) and RECORD (off or on, default off); DURATION defaults to 5s here.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DURATION=${DURATION:-5s}
bench_init mutations

ROUNDS=${ROUNDS:-4}
RECORD=${RECORD:-off}
case $RECORD in off | on) ;; *) die "RECORD must be off or on, not '$RECORD'" ;; esac
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

# psql_in PROJECT ARG...: psql on the project's running PostgreSQL.
psql_in() {
  local project=$1
  shift
  PGOPTIONS='-c client_min_messages=warning' "$PSQL" -h "$project/.flux/pg" -p "$PG_PORT" \
    -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 "$@"
}

# logged_rows PROJECT: flux.state_mutations rows written by requests.
logged_rows() { psql_in "$1" -c "select count(request_id) from flux.state_mutations"; }

# before_run RUN SERVER (called by compare_pairs): SERVER is <variant>-off or <variant>-on; the
# log is switched by dropping or installing the capture trigger of `counters`.
before_run() {
  local project=$tmp/${2%-*}
  case $2 in
    *-off) psql_in "$project" -c "drop trigger if exists flux_capture on counters" ;;
    *-on) psql_in "$project" -c "select flux.install_capture('counters')" >/dev/null ;;
  esac
}

variants=(c plpgsql)
declare -A logged_before=()
for variant in "${variants[@]}"; do
  cp -a "$template" "$tmp/$variant"
  next_port
  ports[$variant-off]=$port
  ports[$variant-on]=$port
  env_cmd=(env -u FLUX_MUTATION_LOG -u FLUX_RECORD)
  [ "$variant" = plpgsql ] && env_cmd+=(FLUX_MUTATION_LOG=plpgsql)
  [ "$RECORD" = on ] || env_cmd+=(FLUX_RECORD=off)
  # shellcheck disable=SC2086  # FLUX_ARGS is split into words on purpose
  start_server "$variant" "$port" "${env_cmd[@]}" "$FLUX_BIN" dev "$tmp/$variant" --port "$port" $FLUX_ARGS
  watch_postgres "$variant" "$tmp/$variant/.flux/pg"
  wait_ready "$variant" "http://127.0.0.1:$port/bump?id=1"
  body=$(curl -sf "http://127.0.0.1:$port/bump?id=2")
  case "$body" in *'"ok":true'*) ;; *) die "$variant answered '$body' on /bump, not {\"ok\":true}" ;; esac
  source=$(psql_in "$tmp/$variant" -c "select prosrc = 'flux_capture' from pg_proc where oid = 'flux.capture'::regproc")
  [ "$source" = "$([ "$variant" = c ] && echo t || echo f)" ] ||
    die "'$variant' does not run the capture it should (see $(server_log "$variant"))"
  logged_before[$variant]=$(logged_rows "$tmp/$variant")
done

compare_pairs bump c-off c-on "$CONNECTIONS" /bump -s "$LUA"
compare_pairs bump-1conn c-off c-on 1 /bump -s "$LUA"
compare_pairs bump-plpgsql plpgsql-off plpgsql-on "$CONNECTIONS" /bump -s "$LUA"
compare_pairs bump-plpgsql-1conn plpgsql-off plpgsql-on 1 /bump -s "$LUA"
labels=(bump bump-1conn bump-plpgsql bump-plpgsql-1conn)

# The switch must work: each server logged a row per request of its 'on' runs (wrk counts the
# answered ones; a few more may be in flight when it stops), none for its 'off' runs.
switch_ok=true
for variant in "${variants[@]}"; do
  logged=$(($(logged_rows "$tmp/$variant") - logged_before[$variant]))
  sent_on=$(wrk_requests_to "$variant-on")
  sent_off=$(wrk_requests_to "$variant-off")
  log "$variant: $logged rows logged by requests; wrk sent $sent_on with the log on, $sent_off with it off"
  if [ "$logged" -lt "$sent_on" ] || [ "$logged" -gt $((sent_on + 4 * ROUNDS * CONNECTIONS)) ]; then
    log "warning: '$variant' logged $logged rows for $sent_on requests with the log on and $sent_off with it off"
    switch_ok=false
  fi
done
verdict() { # verdict VALUE OP TARGET: "met", "missed", or "not judged" when the checks failed
  if [ "$switch_ok" != true ]; then echo "not judged, see the warning"; return; fi
  awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? v >= t : v <= t; print ok ? "met" : "missed" }'
}

# --- report -------------------------------------------------------------------------------------

echo
echo "mutations: GET /bump?id=<random 1..1000>, one UPDATE a request; off/on pairs, wrk -t1 -d$DURATION (warm-up $WARMUP), $ROUNDS pairs per line, recording $RECORD, $(nproc) cores"
printf '%-18s %10s %10s %10s %7s\n' run rps p50_us p99_us errors
for label in "${labels[@]}"; do
  for run in ${pair_runs[$label]}; do
    printf '%-18s %10s %10s %10s %7s\n' "$run" "${rps[$run]}" "${p50[$run]}" "${p99[$run]}" "${errors[$run]}"
  done
done
echo
json=""
for label in "${labels[@]}"; do
  read -r ratio lo hi d50 d99 rps_off rps_on <<<"${compared[$label]}"
  conns=$CONNECTIONS
  [[ $label == *-1conn ]] && conns=1
  capture="C capture"
  [[ $label == bump-plpgsql* ]] && capture="plpgsql capture"
  server_us=$(awk -v a="$rps_on" -v b="$rps_off" 'BEGIN { printf "%.1f", 1e6 / a - 1e6 / b }')
  echo "$capture, $conns connection(s): rps off $rps_off, on $rps_on"
  echo "  rps on/off (median of pairs, min-max): $ratio ($lo-$hi)   (target >= $TARGET_RATIO: $(verdict "$ratio" '>=' "$TARGET_RATIO"))"
  echo "  added p50 per logged write:            $d50 us   (target <= $TARGET_ADDED_US us: $(verdict "$d50" '<=' "$TARGET_ADDED_US"))"
  echo "  added p99:                             $d99 us"
  echo "  server time per request, 1e6/rps on - off: $server_us us"
  json+="${json:+,}\"$label\":{\"connections\":$conns,\"rps_off\":$rps_off,\"rps_on\":$rps_on,\"ratio\":$ratio,\"ratio_min\":$lo,\"ratio_max\":$hi,\"p50_added_us\":$d50,\"p99_added_us\":$d99,\"server_us_per_request\":$server_us}"
done
[ "$switch_ok" = true ] || echo "warning: the log was not off in the 'off' runs or not complete in the 'on' runs (see above)"
printf '{"bench":"mutations","time":"%s","commit":"%s","dirty":%s,"cores":%s,"duration":"%s","warmup":"%s","script":"%s","flux_args":"%s","recording":"%s","pairs":%s,"results":{%s},"targets":{"rps_on_off_min":%s,"added_us_max":%s},"log_checks_ok":%s}\n' \
  "$(utc_now)" "$(git_commit)" "$(git_dirty)" "$(nproc)" "$DURATION" "$WARMUP" "$LUA" \
  "$(json_str "$FLUX_ARGS")" "$RECORD" "$ROUNDS" "$json" "$TARGET_RATIO" "$TARGET_ADDED_US" "$switch_ok" >>"$results/mutations.jsonl"
log "appended to $results/mutations.jsonl"

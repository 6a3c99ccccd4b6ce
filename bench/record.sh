#!/usr/bin/env bash
# The cost of recording every execution: flux serving (a) a hello function and (b) an endpoint
# doing one UPDATE, each with recording on (the default) and off (FLUX_RECORD=off, a switch that
# exists for this measurement only), alternating off/on per round on the same project.
# Prints per variant the median rps, p50 and p99, then for each endpoint the rps ratio on/off
# and the added p50 / p99; appends one JSON line to bench/results/record.jsonl.
# Recording runs at background priority (records wait while the CPU is saturated), so after
# every recorded run the script also waits until flux.executions holds a row for every request
# wrk sent and prints how long that took ("drain"): nothing is lost, the work is deferred.
#
# Environment (besides lib.sh's FLUX_BIN, DURATION, WARMUP, CONNECTIONS, PORT_BASE):
#   ROUNDS   off/on rounds per endpoint (default 2)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init record
ROUNDS=${ROUNDS:-2}
need_http_tools
need_flux

project=$tmp/project
mkdir -p "$project/functions/hello" "$project/functions/bump" "$project/migrations"
cat >"$project/functions/hello/index.ts" <<'TS'
export default async function handler(req, ctx) { return new Response("Hello, world!", { headers: { "content-type": "text/plain" } }); }
TS
echo '{"route": "/hello", "method": "GET"}' >"$project/functions/hello/flux.json"
cat >"$project/functions/bump/index.ts" <<'TS'
export default async function handler(req, ctx) {
  const id = Number(new URL(req.url).searchParams.get("id") ?? 1);
  await ctx.db.query("update counters set n = n + 1 where id = $1", [id]);
  return { ok: true };
}
TS
echo '{"route": "/bump", "method": "GET"}' >"$project/functions/bump/flux.json"
cat >"$project/migrations/001_counters.sql" <<'SQL'
create table counters (id int primary key, n bigint not null default 0);
insert into counters select g, 0 from generate_series(1, 1000) g;
SQL

declare -A runs=()  # "endpoint variant" -> names of its runs
declare -A drain=()  # run -> "stored/sent in Ns"

stored_records() {
  psql -h "$project/.flux/pg" -U postgres -d postgres -qAtc 'select count(*) from flux.executions'
}

# Waits (up to 120 s) until `expected` more records than `before` are stored; prints
# "<stored>/<expected> in <seconds>s".
wait_drained() {
  local before=$1 expected=$2 start=$SECONDS stored=0
  while :; do
    stored=$(($(stored_records) - before))
    if [ "$stored" -ge "$expected" ] || [ $((SECONDS - start)) -ge 120 ]; then break; fi
    sleep 0.2
  done
  echo "$stored/$expected in $((SECONDS - start))s"
}
order=()
for ((round = 1; round <= ROUNDS; round++)); do
  for variant in off on; do
    name=$variant-$round
    next_port
    if [ "$variant" = off ]; then
      start_server "$name" "$port" env FLUX_RECORD=off "$FLUX_BIN" dev "$project" --port "$port"
    else
      start_server "$name" "$port" env -u FLUX_RECORD "$FLUX_BIN" dev "$project" --port "$port"
    fi
    watch_postgres "$name" "$project/.flux/pg"
    wait_ready "$name" "http://127.0.0.1:$port/hello"
    for endpoint in hello bump; do
      run=$endpoint-$name
      [ "$variant" = on ] && before=$(stored_records)
      if [ "$endpoint" = hello ]; then
        wrk_measure "$run" "http://127.0.0.1:$port/hello"
      else
        wrk_measure "$run" "http://127.0.0.1:$port/bump" -s bench/lua/random_id.lua
      fi
      wrk_parse "$run"
      [ "$variant" = on ] && drain[$run]=$(wait_drained "$before" "$(wrk_requests "$run")")
      runs["$endpoint $variant"]+="$run "
      order+=("$run")
    done
    stop_server "$name"
  done
done

echo
echo "record: wrk -t1 -c$CONNECTIONS -d$DURATION (warm-up $WARMUP), $ROUNDS rounds, $(nproc) cores"
printf '%-14s %10s %10s %10s  %s\n' run rps p50_us p99_us "records stored after the run"
for run in "${order[@]}"; do
  printf '%-14s %10s %10s %10s  %s\n' "$run" "${rps[$run]}" "${p50[$run]}" "${p99[$run]}" \
    "${drain[$run]:-}"
done
echo
json_endpoints=""
for endpoint in hello bump; do
  declare -A med=()
  for variant in off on; do
    read -ra names <<<"${runs["$endpoint $variant"]}"
    med[rps_$variant]=$(median $(for n in "${names[@]}"; do echo "${rps[$n]}"; done))
    med[p50_$variant]=$(median $(for n in "${names[@]}"; do echo "${p50[$n]}"; done))
    med[p99_$variant]=$(median $(for n in "${names[@]}"; do echo "${p99[$n]}"; done))
  done
  r=$(awk -v a="${med[rps_on]}" -v b="${med[rps_off]}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
  d50=$(awk -v a="${med[p50_on]}" -v b="${med[p50_off]}" 'BEGIN { printf "%.1f", a - b }')
  d99=$(awk -v a="${med[p99_on]}" -v b="${med[p99_off]}" 'BEGIN { printf "%.1f", a - b }')
  cost=$(awk -v a="${med[rps_on]}" -v b="${med[rps_off]}" 'BEGIN { printf "%.1f", 1e6 / a - 1e6 / b }')
  printf '%-6s rps off %10s  on %10s  on/off %s   p50 +%s us   p99 +%s us   server time +%s us/request\n' \
    "$endpoint" "${med[rps_off]}" "${med[rps_on]}" "$r" "$d50" "$d99" "$cost"
  json_endpoints+="${json_endpoints:+,}\"$endpoint\":{\"rps_off\":${med[rps_off]},\"rps_on\":${med[rps_on]},\"ratio\":$r,\"p50_added_us\":$d50,\"p99_added_us\":$d99,\"server_us_per_request\":$cost}"
  unset med
done
echo "targets: hello on/off >= 0.95, added p50 <= 20 us"
printf '{"bench":"record","time":"%s","commit":"%s","dirty":%s,"cores":%s,"wrk":{"threads":1,"connections":%s,"duration":"%s","warmup":"%s"},"rounds":%s,"endpoints":{%s}}\n' \
  "$(utc_now)" "$(git_commit)" "$(git_dirty)" "$(nproc)" "$CONNECTIONS" "$DURATION" "$WARMUP" \
  "$ROUNDS" "$json_endpoints" >>"$results/record.jsonl"
log "appended to $results/record.jsonl"

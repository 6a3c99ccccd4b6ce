#!/usr/bin/env bash
# The cost of recording every execution. Two `flux dev` servers run side by side on copies of
# one project, recording off (FLUX_RECORD=off, a switch that exists for this measurement only)
# and on (the default); only one is ever loaded at a time. For (a) a hello function and (b) an
# endpoint doing one UPDATE (/bump?id=<random>), ROUNDS pairs of wrk runs alternate off/on in
# the order off on, on off, ... (compare_pairs in lib.sh), with 32 connections (saturation:
# the rps ratio) and with 1 connection (the latency a request pays: the added p50).
# Prints every run, then per endpoint the median of the pairs' rps ratios on/off (min-max), the
# added p50 / p99 at 32 connections and the added p50 / p99 at 1 connection; appends one JSON
# line to bench/results/record.jsonl.
# Recording runs at background priority (records wait while the CPU is saturated), so after
# every recorded run the script waits until flux.executions holds a row for every request wrk
# sent and prints how long that took ("drain"): nothing is lost, the work is deferred, and it
# does not spill into the next run. Deferred up to a point: once half of the recorder's
# max_queued (50,000 records, ~2 s of saturated hello) wait, it takes its share of the CPU until
# it caught up, so the runs' later seconds measure what recording costs when sustained.
#
# Environment (besides lib.sh's FLUX_BIN, DURATION, WARMUP, CONNECTIONS, PORT_BASE):
#   ROUNDS   pairs per endpoint and load (default 4)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DURATION=${DURATION:-5s}
bench_init record
ROUNDS=${ROUNDS:-4}
need_http_tools
need_flux

template=$tmp/template
mkdir -p "$template/functions/hello" "$template/functions/bump" "$template/migrations"
cat >"$template/functions/hello/index.ts" <<'TS'
export default async function handler(req, ctx) { return new Response("Hello, world!", { headers: { "content-type": "text/plain" } }); }
TS
echo '{"route": "/hello", "method": "GET"}' >"$template/functions/hello/flux.json"
cat >"$template/functions/bump/index.ts" <<'TS'
export default async function handler(req, ctx) {
  const id = Number(new URL(req.url).searchParams.get("id") ?? 1);
  await ctx.db.query("update counters set n = n + 1 where id = $1", [id]);
  return { ok: true };
}
TS
echo '{"route": "/bump", "method": "GET"}' >"$template/functions/bump/flux.json"
cat >"$template/migrations/001_counters.sql" <<'SQL'
create table counters (id int primary key, n bigint not null default 0);
insert into counters select g, 0 from generate_series(1, 1000) g;
SQL

for variant in off on; do
  cp -a "$template" "$tmp/$variant"
  next_port
  if [ "$variant" = off ]; then
    start_server off "$port" env FLUX_RECORD=off "$FLUX_BIN" dev "$tmp/off" --port "$port"
  else
    start_server on "$port" env -u FLUX_RECORD "$FLUX_BIN" dev "$tmp/on" --port "$port"
  fi
  watch_postgres "$variant" "$tmp/$variant/.flux/pg"
  wait_ready "$variant" "http://127.0.0.1:$port/hello"
done

stored_records() {
  psql -h "$tmp/on/.flux/pg" -U postgres -d postgres -qAtc 'select count(*) from flux.executions'
}

# after_run RUN SERVER (called by compare_pairs): after a recorded run, wait (up to 120 s) until
# flux.executions holds a row for every request wrk sent to it so far.
declare -A drain=()
after_run() {
  [ "$2" = on ] || return 0
  local expected start=$SECONDS stored=0
  expected=$(wrk_requests_to on)
  while :; do
    stored=$(stored_records)
    if [ "$stored" -ge "$expected" ] || [ $((SECONDS - start)) -ge 120 ]; then break; fi
    sleep 0.2
  done
  drain[$1]="$stored/$expected in $((SECONDS - start))s"
}

labels=(hello hello-1conn bump bump-1conn)
compare_pairs hello off on "$CONNECTIONS" /hello
compare_pairs hello-1conn off on 1 /hello
compare_pairs bump off on "$CONNECTIONS" /bump -s bench/lua/random_id.lua
compare_pairs bump-1conn off on 1 /bump -s bench/lua/random_id.lua

echo
echo "record: off/on pairs, wrk -t1 -d$DURATION (warm-up $WARMUP), $ROUNDS pairs per line, $(nproc) cores"
printf '%-18s %10s %10s %10s  %s\n' run rps p50_us p99_us "records stored after the run (all so far)"
for label in "${labels[@]}"; do
  for run in ${pair_runs[$label]}; do
    printf '%-18s %10s %10s %10s  %s\n' "$run" "${rps[$run]}" "${p50[$run]}" "${p99[$run]}" "${drain[$run]:-}"
  done
done
echo
printf '%-12s %5s %12s %12s %20s %14s %14s\n' endpoint conns "rps off" "rps on" "on/off (min-max)" "p50 added us" "p99 added us"
json=""
for label in "${labels[@]}"; do
  read -r ratio lo hi d50 d99 rps_off rps_on <<<"${compared[$label]}"
  conns=$CONNECTIONS
  [[ $label == *-1conn ]] && conns=1
  printf '%-12s %5s %12s %12s %20s %14s %14s\n' "${label%-1conn}" "$conns" "$rps_off" "$rps_on" \
    "$ratio ($lo-$hi)" "$d50" "$d99"
  json+="${json:+,}\"$label\":{\"connections\":$conns,\"rps_off\":$rps_off,\"rps_on\":$rps_on,\"ratio\":$ratio,\"ratio_min\":$lo,\"ratio_max\":$hi,\"p50_added_us\":$d50,\"p99_added_us\":$d99}"
done
echo "targets: hello on/off >= 0.95 (32 connections), added p50 <= 20 us"
printf '{"bench":"record","time":"%s","commit":"%s","dirty":%s,"cores":%s,"duration":"%s","warmup":"%s","pairs":%s,"results":{%s}}\n' \
  "$(utc_now)" "$(git_commit)" "$(git_dirty)" "$(nproc)" "$DURATION" "$WARMUP" "$ROUNDS" "$json" \
  >>"$results/record.jsonl"
log "appended to $results/record.jsonl"

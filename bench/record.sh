#!/usr/bin/env bash
# The cost of recording every execution. One `flux dev` server whose recording can be paused
# (FLUX_RECORD=switchable, a switch that exists for this measurement only: SIGUSR1 pauses,
# SIGUSR2 resumes), so that both sides of a comparison share one process, its V8 code and its
# connections, as in mutations.sh. For (a) a hello function and (b) an endpoint doing one UPDATE
# (/bump?id=<random>), ROUNDS pairs of wrk runs alternate off/on in the order off on, on off,
# ... (compare_pairs in lib.sh), with 32 connections (saturation: the rps ratio) and with 1
# connection (the latency a request pays: the added p50). Before each run the script signals
# the server and waits for its log to say the state changed.
# Prints every run, then per endpoint the median of the pairs' rps ratios on/off (min-max), the
# added p50 / p99 at 32 connections and the added p50 / p99 at 1 connection; appends one JSON
# line to bench/results/record.jsonl.
# Recording runs at background priority (records wait while the CPU is saturated), so after
# every recorded run the script waits until flux.executions holds a row for every request of
# the recorded runs and prints how long that took ("drain"): nothing is lost, the work is
# deferred, and it does not spill into the next run. Deferred up to a point: once half of the
# recorder's max_queued (50,000 records, ~2 s of saturated hello) wait, it takes its share of
# the CPU until it caught up, so the runs' later seconds measure what recording costs when
# sustained. The paused runs must add no record (checked at the end).
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

project=$tmp/project
cp -a "$template" "$project"
next_port
start_server flux "$port" env FLUX_RECORD=switchable "$FLUX_BIN" dev "$project" --port "$port"
watch_postgres flux "$project/.flux/pg"
wait_ready flux "http://127.0.0.1:$port/hello"
ports[off]=$port
ports[on]=$port

stored_records() {
  psql -h "$project/.flux/pg" -U postgres -d postgres -qAtc 'select count(*) from flux.executions'
}

# before_run RUN SERVER (called by compare_pairs): pause recording for 'off', resume it for
# 'on', and wait until the server's log says so (it says so even when nothing changed).
before_run() {
  local signal=USR2 line="recording resumed" deadline=$((SECONDS + 10)) seen
  [ "$2" = off ] && signal=USR1 line="recording paused"
  seen=$(grep -c "$line" "$(server_log flux)" || true)
  kill -"$signal" "${pids[flux]}"
  until [ "$(grep -c "$line" "$(server_log flux)" || true)" -gt "$seen" ]; do
    ((SECONDS < deadline)) || die "flux did not log '$line' after SIG$signal (see $(server_log flux))"
    sleep 0.05
  done
}

# after_run RUN SERVER (called by compare_pairs): after a recorded run, wait (up to 120 s) until
# flux.executions holds a row for every request of the recorded runs so far (and of the
# readiness checks before them).
declare -A drain=()
before_runs=$(stored_records)
after_run() {
  [ "$2" = on ] || return 0
  local expected start=$SECONDS stored=0
  expected=$((before_runs + $(wrk_requests_to on)))
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

# The switch must work: a record for every request of the recorded runs (a few more may have
# been in flight when wrk stopped), none for the paused ones.
sleep 1
recorded=$(($(stored_records) - before_runs))
sent_on=$(wrk_requests_to on)
sent_off=$(wrk_requests_to off)
log "records stored: $recorded; wrk sent $sent_on requests recording, $sent_off paused"
if [ "$recorded" -lt "$sent_on" ] || [ "$recorded" -gt $((sent_on + 8 * ROUNDS * CONNECTIONS)) ]; then
  die "the switch did not work: $recorded records for $sent_on recorded and $sent_off paused requests"
fi

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

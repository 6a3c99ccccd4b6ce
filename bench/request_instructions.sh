#!/usr/bin/env bash
# What recording costs flux itself, in instructions: a count that does not move with the
# machine's load, unlike the rps of bench/record.sh on this shared 2-core VM. `flux dev` serves
# a hello function under valgrind's callgrind (one profile per thread), recording off
# (FLUX_RECORD=off) and on, and curl sends it N1, then on a fresh server N2 (defaults 1000 and
# 3000) GET /hello over one keep-alive connection. For each thread,
# (instructions(N2) - instructions(N1)) / (N2 - N1) is its cost per request, start-up (the
# cluster, bundling, V8 compiling the function) cancelled out. Prints:
#   worker    the worker threads (every one that ran Gateway::handle): off, on, and what
#             recording adds there (capturing the request and response, building and
#             submitting the record);
#   recorder  the recorder thread, per record: redaction, JSON and COPY encoding, freeing it
#             (PostgreSQL's own cost of storing it: bench/record_instructions.sh);
# and the functions whose cost on the worker differs most between on and off (V8's generated
# code, at other addresses in every run, left out). Appends one JSON
# line to bench/results/request_instructions.jsonl.
#
# The worker's figure includes V8's garbage collector, whose pauses fall unevenly: a few
# hundred instructions a request either way are noise.
#
# Environment: FLUX_BIN (default build/src/app/flux), N1, N2. Needs valgrind (installed with apt
# when missing).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init request_instructions

N1=${N1:-1000}
N2=${N2:-3000}
[ "$N2" -gt "$N1" ] || die "N2 ($N2) must be larger than N1 ($N1)"
need_flux
need_http_tools
need_callgrind

template=$tmp/template
mkdir -p "$template/functions/hello"
cat >"$template/functions/hello/index.ts" <<'TS'
export default async function handler(req, ctx) { return new Response("Hello, world!", { headers: { "content-type": "text/plain" } }); }
TS
echo '{"route": "/hello", "method": "GET"}' >"$template/functions/hello/flux.json"

# profile VARIANT COUNT: serves COUNT requests under callgrind; the profiles land in
# $tmp/cg-VARIANT-COUNT/ (one file per thread).
profile() {
  local variant=$1 count=$2 name="$1-$2" dir="$tmp/cg-$1-$2"
  local switch=(env -u FLUX_RECORD)
  [ "$variant" = off ] && switch=(env FLUX_RECORD=off)
  rm -rf "$tmp/$name" "$dir" && cp -a "$template" "$tmp/$name" && mkdir -p "$dir"
  next_port
  start_server "$name" "$port" "${switch[@]}" valgrind --tool=callgrind --separate-threads=yes \
    --smc-check=all-non-file --callgrind-out-file="$dir/cg.%p" "$FLUX_BIN" dev "$tmp/$name" \
    --port "$port"
  watch_postgres "$name" "$tmp/$name/.flux/pg"
  READY_TIMEOUT=300 wait_ready "$name" "http://127.0.0.1:$port/hello"
  local urls="$tmp/urls-$count"
  [ -f "$urls" ] || for ((i = 0; i < count; i++)); do echo "url = \"http://127.0.0.1:$port/hello\""; echo "output = /dev/null"; done >"$urls"
  sed -i "s|127.0.0.1:[0-9]*/|127.0.0.1:$port/|" "$urls"
  log "$name: $count requests"
  curl -s --config "$urls" || die "$name: curl failed"
  # The recorder writes its last batch within its flush interval; then flux stops and
  # callgrind writes the profiles.
  sleep 2
  stop_server "$name"
}

# total FILE: the instructions a thread's profile counted.
total() { awk '/^summary:/ {print $2; exit}' "$1"; }

# thread_of DIR FUNCTION: the profile in DIR of the thread that ran FUNCTION the most.
thread_of() {
  local best="" best_total=0 file
  for file in "$1"/cg.*; do
    grep -q "$2" "$file" || continue
    local t
    t=$(total "$file")
    if [ "$t" -gt "$best_total" ]; then best=$file best_total=$t; fi
  done
  [ -n "$best" ] || die "no thread in $1 ran $2"
  echo "$best"
}

# workers DIR: the profiles in DIR of the worker threads (those that ran Gateway::handle). Each
# worker warms its isolate and may serve some of the requests: counting them all keeps every
# worker's start-up on both sides of a difference, which the busiest thread alone did not
# (its figure moved by +-3k a request between runs).
workers() { grep -l "Gateway::handle" "$1"/cg.*; }
workers_total() {
  local sum=0 file
  for file in $(workers "$1"); do sum=$((sum + $(total "$file"))); done
  echo "$sum"
}

per_request() { echo $((($2 - $1) / (N2 - N1))); }

for variant in off on; do
  for count in "$N1" "$N2"; do profile "$variant" "$count"; done
done

# functions FILE: "<instructions><TAB><function>" for every function of a thread's profile
# (exclusive counts; file names and objects dropped).
functions() {
  callgrind_annotate --threshold=100 --auto=no "$1" 2>/dev/null |
    awk '/file:function/ { listing = 1; next } listing && /^ *[0-9,]+ +\(/ {
      n = $1; gsub(",", "", n); $1 = ""; $2 = ""; sub(/^ +/, ""); sub(/ \[.*\]$/, "")
      sub(/^[^:]*:/, ""); print n "\t" $0 }'
}

declare -A worker=()
for variant in off on; do
  worker[$variant]=$(per_request "$(workers_total "$tmp/cg-$variant-$N1")" \
    "$(workers_total "$tmp/cg-$variant-$N2")")
done
recorder=$(per_request "$(total "$(thread_of "$tmp/cg-on-$N1" "Recorder::run")")" \
  "$(total "$(thread_of "$tmp/cg-on-$N2" "Recorder::run")")")
added=$((worker[on] - worker[off]))

echo
printf '%-10s %14s\n' "" "instructions"
printf '%-10s %14s\n' "worker off" "${worker[off]}" "worker on" "${worker[on]}"
printf '%-10s %14s   (%s%% of the request)\n' "added" "$added" \
  "$(awk -v a="$added" -v b="${worker[off]}" 'BEGIN {printf "%.1f", 100 * a / b}')"
printf '%-10s %14s   per record\n' "recorder" "$recorder"
echo
echo "worker functions that differ most, per request (on - off; exclusive):"
for variant in off on; do
  for count in low high; do
    n=$N1
    [ "$count" = high ] && n=$N2
    for file in $(workers "$tmp/cg-$variant-$n"); do functions "$file"; done >"$tmp/fn-$variant-$count.tsv"
  done
done
awk -F'\t' -v span=$((N2 - N1)) '
  FILENAME ~ /off-low/ { d[$2] += $1 } FILENAME ~ /off-high/ { d[$2] -= $1 }
  FILENAME ~ /on-low/ { d[$2] -= $1 } FILENAME ~ /on-high/ { d[$2] += $1 }
  END { for (f in d) if (f !~ /^0x/ && (d[f] / span >= 100 || d[f] / span <= -100)) printf "%8d  %s\n", d[f] / span, substr(f, 1, 110) }
' "$tmp/fn-off-low.tsv" "$tmp/fn-off-high.tsv" "$tmp/fn-on-low.tsv" "$tmp/fn-on-high.tsv" |
  sort -rn | head -15

mkdir -p "$results"
printf '{"bench":"request_instructions","time":"%s","commit":"%s","dirty":%s,"n1":%d,"n2":%d,"worker_off":%d,"worker_on":%d,"worker_added":%d,"recorder_per_record":%d}\n' \
  "$(utc_now)" "$(git_commit)" "$(git_dirty)" "$N1" "$N2" "${worker[off]}" "${worker[on]}" \
  "$added" "$recorder" >>"$results/request_instructions.jsonl"
log "appended to bench/results/request_instructions.jsonl"

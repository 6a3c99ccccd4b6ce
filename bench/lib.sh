# shellcheck shell=bash
# Shared machinery of the HTTP benchmarks in bench/ (hello.sh, mutations.sh, ...). Not run on its
# own: a script sets `set -euo pipefail`, sources this file and calls bench_init first:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   bench_init hello        # cd to the repo root, temp dir, cleanup trap, settings below
#
# Settings (environment, with defaults; bench_init reads them):
#   FLUX_BIN       flux binary (default build/src/app/flux, relative to the repo root)
#   FLUX_ARGS      extra arguments a script appends to `flux dev <project> --port P`
#   DURATION       measured wrk run (default 10s)
#   WARMUP         wrk warm-up before the measured run (default 2s)
#   CONNECTIONS    wrk connections (default 32); wrk always runs one thread (-t1)
#   PORT_BASE      first port tried (default 18080); each server takes the next free one
#   READY_TIMEOUT  seconds a server may take to answer (default 60: flux's first start
#                  initialises a PostgreSQL cluster)
#   STOP_TIMEOUT   seconds between SIGTERM and SIGKILL (default 20)
#
# After bench_init: $root (repo root, also the working directory), $results (bench/results),
# $tmp (a fresh temp dir, mode 755 because flux run as root runs PostgreSQL as `postgres`, which
# must reach it; removed on exit) and $bench_name.
#
# Functions:
#   log MSG... / die MSG...       a line on stderr prefixed "<bench_name>.sh: "; die exits 1
#   need_http_tools               install wrk and curl with apt when missing
#   need_flux [HINT]              die unless $FLUX_BIN is an executable
#   next_port                     set $port to a free port (not run in $(...))
#   start_server NAME PORT CMD... run CMD as its own process group (setsid), stdout and stderr to
#                                 $results/<bench_name>-NAME.log; remembers pids[NAME], ports[NAME]
#   wait_ready NAME URL           poll URL until it answers 2xx; die if NAME exits or times out
#   stop_server NAME              SIGTERM, SIGKILL after STOP_TIMEOUT, then kill what is left in
#                                 its process group (e.g. a postgres it spawned); the EXIT trap
#                                 does this for every server still running
#   watch_postgres NAME DATADIR   make stop_server NAME also stop the PostgreSQL running on
#                                 DATADIR if NAME left it behind (flux dev starts its cluster as
#                                 a daemon, outside its process group, and a flux that crashes
#                                 does not stop it)
#   wrk_measure NAME URL [ARG...] wrk warm-up, then the measured run with --latency (ARGs go to
#                                 both, e.g. -s script.lua); raw output in $tmp/wrk-NAME.txt and
#                                 $results/<bench_name>-NAME.wrk.txt
#   wrk_run NAME CONNS URL [ARG...]  one measured run without warm-up (same files)
#   compare_pairs LABEL A B CONNS PATH [ARG...]  A/B pairs of runs on two running servers (or
#                                 two settings of one), ABBA order; sets compared[LABEL] (see
#                                 the function)
#   wrk_parse NAME                from that output set rps[NAME], p50[NAME], p99[NAME] (us) and
#                                 errors[NAME] (socket errors + non-2xx/3xx answers)
#   to_us VALUE                   wrk's "193.00us" / "1.20ms" / "2.00s" -> microseconds
#   ratio A B                     rps[A]/rps[B] with 2 decimals, or n/a
#   num_or_null VALUE             VALUE, or null for n/a (for JSON)
#   median NUMBER...              the median, or n/a without numbers
#   need_callgrind                PostgreSQL 15's server and valgrind (apt when missing), for the
#                                 *_instructions.sh benchmarks; sets PG_BIN
#   as_server CMD...              CMD as the user PostgreSQL runs as (postgres when this runs as
#                                 root, as flux dev does)
#   count_instructions DATADIR OUT < SQL  a single-user PostgreSQL session on a copy of DATADIR
#                                 ($tmp/run) under callgrind: prints the instructions it took;
#                                 OUT.cg is callgrind's profile, OUT.txt the session's output
#                                 (an ERROR in it fails the run). OUT's directory must be
#                                 writable by the server's user
#   git_commit / git_dirty        short HEAD commit (or unknown) / true or false
#   utc_now / json_str VALUE      ISO 8601 UTC time / VALUE with " and \ escaped

declare -A pids=()   # server name -> pid (each is its own process group leader, via setsid)
declare -A pg_dirs=()   # server name -> data directory of a PostgreSQL it runs (watch_postgres)
# shellcheck disable=SC2034  # filled here, read by the scripts
declare -A ports=() rps=() p50=() p99=() errors=()
declare -A wrk_files_of=()   # server name -> the wrk output files of its compare_pairs runs
taken_ports=" "

log() { echo "${bench_name:-bench}.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

bench_init() {
  bench_name=$1
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  cd "$root" || exit
  FLUX_BIN=${FLUX_BIN:-build/src/app/flux}
  FLUX_ARGS=${FLUX_ARGS:-}
  DURATION=${DURATION:-10s}
  WARMUP=${WARMUP:-2s}
  CONNECTIONS=${CONNECTIONS:-32}
  PORT_BASE=${PORT_BASE:-18080}
  READY_TIMEOUT=${READY_TIMEOUT:-60}
  STOP_TIMEOUT=${STOP_TIMEOUT:-20}
  results=bench/results
  mkdir -p "$results"
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/flux-bench-$bench_name.XXXXXX")
  chmod 755 "$tmp"
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

bench_cleanup() {
  local status=$? name
  trap - EXIT INT TERM
  for name in "${!pids[@]}"; do stop_server "$name"; done
  rm -rf "$tmp"
  exit "$status"
}

# --- tools --------------------------------------------------------------------------------------

need_http_tools() {
  if ! command -v wrk >/dev/null || ! command -v curl >/dev/null; then
    log "installing wrk and curl"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq wrk curl >/dev/null ||
      { apt-get update -qq && apt-get install -y -qq wrk curl >/dev/null; }
  fi
}

need_flux() {  # need_flux [HINT]: HINT replaces "build it or set FLUX_BIN" in the message
  [ -x "$FLUX_BIN" ] || die "no flux binary at $FLUX_BIN (${1:-build it or set FLUX_BIN})"
}

# --- PostgreSQL under callgrind (the *_instructions.sh benchmarks) ----------------------------------

PG_BIN=/usr/lib/postgresql/15/bin

need_callgrind() {
  [ -x "$PG_BIN/postgres" ] || die "no PostgreSQL 15 server in $PG_BIN (scripts/setup.sh)"
  command -v valgrind >/dev/null && return
  log "installing valgrind"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq valgrind >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
}

as_server() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; else "$@"; fi
}

count_instructions() {
  local base=$1 out=$2
  rm -rf "$tmp/run" && cp -a "$base" "$tmp/run"
  as_server valgrind --tool=callgrind --callgrind-out-file="$out.cg" "$PG_BIN/postgres" --single \
    -D "$tmp/run" -c fsync=off -c synchronous_commit=off -c full_page_writes=off postgres \
    >"$out.txt" 2>"$out.valgrind" || die "callgrind run failed: $(tail -3 "$out.valgrind")"
  if grep -q ERROR "$out.txt"; then die "the session failed: $(grep -m1 ERROR "$out.txt")"; fi
  awk '/Collected :/ {print $4}' "$out.valgrind"
}

# --- ports --------------------------------------------------------------------------------------

# next_port: sets $port to the first port from PORT_BASE up that nothing listens on and that no
# earlier server of this run had (not run in $(...), so that taken_ports keeps its update).
next_port() {
  local p
  for ((p = PORT_BASE; p < PORT_BASE + 200; p++)); do
    case "$taken_ports" in *" $p "*) continue ;; esac
    if [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ]; then
      taken_ports+="$p "
      port=$p
      return 0
    fi
  done
  die "no free port in $PORT_BASE..$((PORT_BASE + 199))"
}

# --- processes ----------------------------------------------------------------------------------

server_log() { echo "$results/$bench_name-$1.log"; }

# shellcheck disable=SC2034  # ports is read by the scripts
start_server() {
  local name=$1 port=$2
  shift 2
  ports[$name]=$port
  log "$name: starting on port $port: $*"
  setsid "$@" >"$(server_log "$name")" 2>&1 </dev/null &
  pids[$name]=$!
}

wait_ready() {
  local name=$1 url=$2 pid=${pids[$1]} logfile deadline=$((SECONDS + READY_TIMEOUT))
  logfile=$(server_log "$name")
  until curl -sf -o /dev/null --max-time 2 "$url"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$logfile" >&2 || true
      die "$name exited before it was ready (log: $logfile)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$logfile" >&2 || true
      die "$name not ready at $url after ${READY_TIMEOUT}s (log: $logfile)"
    fi
    sleep 0.2
  done
}

stop_server() {
  local name=$1 pid=${pids[$1]:-} status=0 i
  [ -n "$pid" ] || return 0
  unset "pids[$name]"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) still running ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || status=$?
  # Anything the server left behind in its process group (e.g. a postgres it spawned).
  if pgrep -g "$pid" >/dev/null 2>&1; then
    log "$name left processes in its group after exiting; killing them"
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  log "$name stopped (exit status $status)"
  stop_postgres_left "$name"
}

watch_postgres() { pg_dirs[$1]=$2; }

# stop_postgres_left NAME: if the PostgreSQL on NAME's data directory still runs, stop it
# (SIGQUIT: immediate shutdown; SIGKILL after 5 s).
stop_postgres_left() {
  local name=$1 dir=${pg_dirs[$1]:-} pid i
  unset "pg_dirs[$name]"
  [ -n "$dir" ] && [ -f "$dir/postmaster.pid" ] || return 0
  pid=$(head -n1 "$dir/postmaster.pid" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir" || return 0
  log "$name left its PostgreSQL (pid $pid, $dir) running; stopping it"
  kill -QUIT "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# --- wrk ----------------------------------------------------------------------------------------

wrk_measure() {
  local name=$1 url=$2
  shift 2
  log "$name: ready; warm-up $WARMUP, then measuring $DURATION"
  wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" "$@" "$url" >"$tmp/wrk-$name.warmup.txt"
  wrk_run "$name" "$CONNECTIONS" "$url" "$@"
}

# wrk_run NAME CONNECTIONS URL [ARG...]: one measured run, no warm-up (a wrk_measure's second half).
wrk_run() {
  local name=$1 connections=$2 url=$3
  shift 3
  wrk -t1 -c"$connections" -d"$DURATION" --latency "$@" "$url" >"$tmp/wrk-$name.txt"
  cp "$tmp/wrk-$name.txt" "$results/$bench_name-$name.wrk.txt"
}

to_us() {
  awk -v v="$1" 'BEGIN {
    if (match(v, /^[0-9.]+/)) { n = substr(v, 1, RLENGTH); u = substr(v, RLENGTH + 1) } else exit 1
    f = (u == "us") ? 1 : (u == "ms") ? 1e3 : (u == "s") ? 1e6 : (u == "m") ? 6e7 : (u == "h") ? 3.6e9 : -1
    if (f < 0) exit 1
    printf "%.2f", n * f
  }'
}

wrk_parse() {
  local name=$1 out=$tmp/wrk-$1.txt line
  rps[$name]=$(awk '/^Requests\/sec:/ { printf "%.2f", $2 }' "$out")
  line=$(awk '$1 == "50%" { print $2 }' "$out"); p50[$name]=$(to_us "$line" || true)
  line=$(awk '$1 == "99%" { print $2 }' "$out"); p99[$name]=$(to_us "$line" || true)
  # Socket errors and non-2xx/3xx answers: reported, since they make the rps meaningless.
  errors[$name]=$(awk '
    /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx responses:/ { n += $5 }
    END { print n + 0 }' "$out")
  if [ -z "${rps[$name]}" ] || [ -z "${p50[$name]}" ] || [ -z "${p99[$name]}" ]; then
    cat "$out" >&2
    die "could not parse wrk's output for $name"
  fi
  [ "${errors[$name]}" = 0 ] || log "warning: $name had ${errors[$name]} socket errors or non-2xx answers"
}

# --- A/B comparison -----------------------------------------------------------------------------

# compare_pairs LABEL A B CONNECTIONS PATH [WRK_ARG...]: ROUNDS pairs of measured runs of
# `wrk -cCONNECTIONS` on PATH of the running servers A and B (ports[A], ports[B]), in the order
# A B, B A, A B, ... after one warm-up of each, so that the machine's drift in speed (these
# machines are shared) hits both alike and each pair is compared within itself. A and B may be
# two names for one server (the same port) that the script switches between: before every run,
# warm-ups included, it calls `before_run RUN SERVER` if the script defines that function. After
# every run it calls `after_run RUN SERVER` if defined (e.g. to wait until the run's records are
# stored, so that deferred work does not spill into the next run).
# Sets compared[LABEL] to "<median ratio> <min> <max> <added p50> <added p99> <rps A> <rps B>":
# the median, min and max over the pairs of rps_B / rps_A, the medians of p50_B - p50_A and
# p99_B - p99_A (us), and the median rps of each; pair_runs[LABEL] lists the runs.
declare -A compared=() pair_runs=()
compare_pairs() {
  local label=$1 a=$2 b=$3 connections=$4 path=$5 round first second run server
  shift 5
  local ratios=() d50=() d99=() rps_a=() rps_b=()
  for server in "$a" "$b"; do
    log "$label: warm-up of $server ($WARMUP)"
    if declare -F before_run >/dev/null; then before_run "$label-$server-warmup" "$server"; fi
    wrk -t1 -c"$connections" -d"$WARMUP" "$@" "http://127.0.0.1:${ports[$server]}$path" \
      >"$tmp/wrk-$label-$server-warmup.txt"
    wrk_files_of[$server]+="$tmp/wrk-$label-$server-warmup.txt "
  done
  for ((round = 1; round <= ROUNDS; round++)); do
    if ((round % 2)); then first=$a second=$b; else first=$b second=$a; fi
    for server in "$first" "$second"; do
      run=$label-$server-$round
      log "$run: measuring $DURATION with $connections connections"
      if declare -F before_run >/dev/null; then before_run "$run" "$server"; fi
      wrk_run "$run" "$connections" "http://127.0.0.1:${ports[$server]}$path" "$@"
      wrk_files_of[$server]+="$tmp/wrk-$run.txt "
      wrk_parse "$run"
      pair_runs[$label]+="$run "
      if declare -F after_run >/dev/null; then after_run "$run" "$server"; fi
    done
    ratios+=("$(awk -v x="${rps[$label-$b-$round]}" -v y="${rps[$label-$a-$round]}" 'BEGIN { printf "%.3f", x / y }')")
    d50+=("$(awk -v x="${p50[$label-$b-$round]}" -v y="${p50[$label-$a-$round]}" 'BEGIN { print x - y }')")
    d99+=("$(awk -v x="${p99[$label-$b-$round]}" -v y="${p99[$label-$a-$round]}" 'BEGIN { print x - y }')")
    rps_a+=("${rps[$label-$a-$round]}")
    rps_b+=("${rps[$label-$b-$round]}")
  done
  compared[$label]="$(median "${ratios[@]}" | awk '{ printf "%.3f", $1 }') \
$(printf '%s\n' "${ratios[@]}" | sort -g | head -n1) $(printf '%s\n' "${ratios[@]}" | sort -g | tail -n1) \
$(median "${d50[@]}") $(median "${d99[@]}") $(median "${rps_a[@]}") $(median "${rps_b[@]}")"
}

# --- report -------------------------------------------------------------------------------------

# wrk_requests NAME: requests wrk sent for run NAME, its warm-up included when it had one.
# wrk_requests_to SERVER: all requests wrk sent to SERVER in compare_pairs (warm-ups included).
wrk_requests() {
  awk '/ requests in / { n += $1 } END { print n + 0 }' "$tmp/wrk-$1.txt" \
    $(ls "$tmp/wrk-$1.warmup.txt" 2>/dev/null)
}
wrk_requests_to() {
  # shellcheck disable=SC2086  # a list of paths without spaces ($tmp has none)
  cat ${wrk_files_of[$1]:-/dev/null} | awk '/ requests in / { n += $1 } END { print n + 0 }'
}

ratio() {
  if [ -n "${rps[$1]:-}" ] && [ -n "${rps[$2]:-}" ]; then
    awk -v a="${rps[$1]}" -v b="${rps[$2]}" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'
  else
    echo "n/a"
  fi
}

num_or_null() { [ "$1" = "n/a" ] && echo null || echo "$1"; }

median() {
  printf '%s\n' "$@" | grep . | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

git_commit() { git rev-parse --short HEAD 2>/dev/null || echo unknown; }
git_dirty() { if [ -z "$(git status --porcelain 2>/dev/null)" ]; then echo false; else echo true; fi; }
utc_now() { date -u +%Y-%m-%dT%H:%M:%SZ; }
json_str() { local s=${1//\\/\\\\}; echo "${s//\"/\\\"}"; }

#!/usr/bin/env bash
# Side-by-side HTTP benchmark of a "Hello, world!" function on three servers in one run:
#   flux     `flux dev <tmp project> --port P` (functions/hello, GET /hello)
#   workerd  Cloudflare's runtime, from npm (pinned below), bench/peers/workerd-hello.capnp
#   node     Node's http module, bench/peers/node-hello.mjs
# Each server in turn is started, checked for the right body, warmed up, measured with
# `wrk -t1 -c32 --latency`, and stopped with SIGTERM before the next one starts, so that an idle
# peer (or flux's PostgreSQL) does not share the 2 cores with the one being measured.
# Prints a table (rps, p50, p99 in microseconds, flux/peer rps ratios) and appends one JSON line
# to bench/results/hello.jsonl. Server logs go to bench/results/hello-<server>.log.
#
# Environment:
#   FLUX_BIN      flux binary (default build/src/app/flux, relative to the repo root)
#   FLUX_ARGS     extra arguments appended to `flux dev <project> --port P`
#   SKIP_FLUX=1   skip flux (e.g. while it is not built); likewise SKIP_WORKERD=1, SKIP_NODE=1
#   DURATION      measured wrk run per server (default 10s)
#   WARMUP        wrk warm-up per server before the measured run (default 2s)
#   CONNECTIONS   wrk connections (default 32)
#   PORT_BASE     first port tried (default 18080); each server takes the next free one
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

WORKERD_VERSION=1.20261117.1   # checked to run on Debian 12 (glibc 2.36)
FLUX_BIN=${FLUX_BIN:-build/src/app/flux}
FLUX_ARGS=${FLUX_ARGS:-}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-32}
PORT_BASE=${PORT_BASE:-18080}
SKIP_FLUX=${SKIP_FLUX:-0}
SKIP_WORKERD=${SKIP_WORKERD:-0}
SKIP_NODE=${SKIP_NODE:-0}
READY_TIMEOUT=60   # seconds; flux's first start initialises a PostgreSQL cluster
STOP_TIMEOUT=20    # seconds between SIGTERM and SIGKILL

peers=bench/.peers
results=bench/results
mkdir -p "$results"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/flux-bench-hello.XXXXXX")
chmod 755 "$tmp"  # flux run as root runs PostgreSQL as `postgres`, which must reach it

log() { echo "hello.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# --- processes and cleanup ---------------------------------------------------------------------

declare -A pids=()   # server name -> pid (each is its own process group leader, via setsid)

# stop NAME: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL the whole process group.
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
}

cleanup() {
  local status=$? name
  trap - EXIT INT TERM
  for name in "${!pids[@]}"; do stop_server "$name"; done
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools --------------------------------------------------------------------------------------

if ! command -v wrk >/dev/null || ! command -v curl >/dev/null; then
  log "installing wrk and curl"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq wrk curl >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq wrk curl >/dev/null; }
fi
command -v node >/dev/null || die "node is not installed"

workerd_bin=$peers/node_modules/@cloudflare/workerd-linux-64/bin/workerd
if [ "$SKIP_WORKERD" != 1 ]; then
  installed=$(node -p "require('./$peers/node_modules/workerd/package.json').version" 2>/dev/null || true)
  if [ "$installed" != "$WORKERD_VERSION" ] || [ ! -x "$workerd_bin" ]; then
    log "installing workerd@$WORKERD_VERSION into $peers"
    npm install --prefix "$peers" --no-audit --no-fund --save-exact --loglevel=error \
      "workerd@$WORKERD_VERSION" >/dev/null
  fi
  [ -x "$workerd_bin" ] || workerd_bin=$(find "$peers/node_modules/@cloudflare" -path '*/bin/workerd' -type f | head -n1)
  [ -x "$workerd_bin" ] || die "no workerd binary under $peers/node_modules/@cloudflare"
  "$workerd_bin" --version >/dev/null || die "$workerd_bin does not run here"
fi

if [ "$SKIP_FLUX" != 1 ]; then
  [ -x "$FLUX_BIN" ] || die "no flux binary at $FLUX_BIN (build it, set FLUX_BIN, or SKIP_FLUX=1)"
fi

# --- ports --------------------------------------------------------------------------------------

taken_ports=" "
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

# --- one server ---------------------------------------------------------------------------------

# to_us VALUE: wrk's "193.00us" / "1.20ms" / "2.00s" / "1.00m" -> microseconds (2 decimals).
to_us() {
  awk -v v="$1" 'BEGIN {
    if (match(v, /^[0-9.]+/)) { n = substr(v, 1, RLENGTH); u = substr(v, RLENGTH + 1) } else exit 1
    f = (u == "us") ? 1 : (u == "ms") ? 1e3 : (u == "s") ? 1e6 : (u == "m") ? 6e7 : (u == "h") ? 3.6e9 : -1
    if (f < 0) exit 1
    printf "%.2f", n * f
  }'
}

declare -A rps=() p50=() p99=() errors=() ports=()

# wait_ready NAME PID URL: poll URL until it answers 2xx, the server dies, or READY_TIMEOUT passes.
wait_ready() {
  local name=$1 pid=$2 url=$3 deadline=$((SECONDS + READY_TIMEOUT))
  until curl -sf -o /dev/null --max-time 2 "$url"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$results/hello-$name.log" >&2 || true
      die "$name exited before it was ready (log: $results/hello-$name.log)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$results/hello-$name.log" >&2 || true
      die "$name not ready at $url after ${READY_TIMEOUT}s (log: $results/hello-$name.log)"
    fi
    sleep 0.2
  done
  local body ctype
  body=$(curl -sf "$url")
  ctype=$(curl -sf -o /dev/null -w '%{content_type}' "$url")
  [ "$body" = "Hello, world!" ] || die "$name answered body '$body', not 'Hello, world!'"
  case "$ctype" in text/plain*) ;; *) die "$name answered content-type '$ctype', not text/plain" ;; esac
}

# bench NAME PORT CMD...: start CMD (stdout+stderr to the log), wait for it, warm up, measure, stop.
bench() {
  local name=$1 port=$2
  shift 2
  local url="http://127.0.0.1:$port/hello" out="$tmp/wrk-$name.txt" line
  ports[$name]=$port
  log "$name: starting on port $port: $*"
  setsid "$@" >"$results/hello-$name.log" 2>&1 </dev/null &
  pids[$name]=$!
  wait_ready "$name" "${pids[$name]}" "$url"
  log "$name: ready; warm-up $WARMUP, then measuring $DURATION"
  wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" "$url" >/dev/null
  wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$url" >"$out"
  stop_server "$name"
  cp "$out" "$results/hello-$name.wrk.txt"

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

# --- the servers --------------------------------------------------------------------------------

order=()
if [ "$SKIP_FLUX" != 1 ]; then
  project=$tmp/project
  mkdir -p "$project/functions/hello"
  cat >"$project/functions/hello/index.ts" <<'EOF'
export default async function handler(req, ctx) { return new Response("Hello, world!", { headers: { "content-type": "text/plain" } }); }
EOF
  cat >"$project/functions/hello/flux.json" <<'EOF'
{"route": "/hello", "method": "GET"}
EOF
  next_port
  # shellcheck disable=SC2086  # FLUX_ARGS is split into words on purpose
  bench flux "$port" "$FLUX_BIN" dev "$project" --port "$port" $FLUX_ARGS
  order+=(flux)
fi
if [ "$SKIP_WORKERD" != 1 ]; then
  next_port
  bench workerd "$port" "$workerd_bin" serve bench/peers/workerd-hello.capnp \
    --socket-addr "http=127.0.0.1:$port"
  order+=(workerd)
fi
if [ "$SKIP_NODE" != 1 ]; then
  next_port
  bench node "$port" node bench/peers/node-hello.mjs "$port"
  order+=(node)
fi
[ "${#order[@]}" -gt 0 ] || die "every server was skipped"

# --- report -------------------------------------------------------------------------------------

ratio() { # ratio A B: rps[A]/rps[B] with 2 decimals, or n/a
  if [ -n "${rps[$1]:-}" ] && [ -n "${rps[$2]:-}" ]; then
    awk -v a="${rps[$1]}" -v b="${rps[$2]}" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'
  else
    echo "n/a"
  fi
}

echo
echo "hello: wrk -t1 -c$CONNECTIONS -d$DURATION (warm-up $WARMUP), $(nproc) cores"
printf '%-8s %12s %12s %12s %8s\n' server rps p50_us p99_us errors
for name in "${order[@]}"; do
  printf '%-8s %12s %12s %12s %8s\n' "$name" "${rps[$name]}" "${p50[$name]}" "${p99[$name]}" "${errors[$name]}"
done
r_workerd=$(ratio flux workerd)
r_node=$(ratio flux node)
echo "flux/workerd rps: $r_workerd"
echo "flux/node rps:    $r_node"

num_or_null() { [ "$1" = "n/a" ] && echo null || echo "$1"; }
json_servers=""
for name in "${order[@]}"; do
  json_servers+="${json_servers:+,}\"$name\":{\"rps\":${rps[$name]},\"p50_us\":${p50[$name]},\"p99_us\":${p99[$name]},\"errors\":${errors[$name]},\"port\":${ports[$name]}}"
done
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=false
[ -z "$(git status --porcelain 2>/dev/null)" ] || dirty=true
workerd_v=null
[ "$SKIP_WORKERD" = 1 ] || workerd_v="\"$WORKERD_VERSION\""
printf '{"bench":"hello","time":"%s","commit":"%s","dirty":%s,"cores":%s,"wrk":{"threads":1,"connections":%s,"duration":"%s","warmup":"%s"},"flux_args":"%s","versions":{"workerd":%s,"node":"%s"},"servers":{%s},"ratios":{"flux/workerd":%s,"flux/node":%s}}\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$commit" "$dirty" "$(nproc)" "$CONNECTIONS" "$DURATION" "$WARMUP" \
  "${FLUX_ARGS//\"/\\\"}" "$workerd_v" "$(node --version)" "$json_servers" \
  "$(num_or_null "$r_workerd")" "$(num_or_null "$r_node")" >>"$results/hello.jsonl"
log "appended to $results/hello.jsonl"

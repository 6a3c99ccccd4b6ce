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
# Environment: FLUX_BIN, FLUX_ARGS, DURATION, WARMUP, CONNECTIONS, PORT_BASE (see bench/lib.sh),
# and SKIP_FLUX=1 to skip flux (e.g. while it is not built); likewise SKIP_WORKERD=1, SKIP_NODE=1.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init hello

WORKERD_VERSION=1.20261117.1   # checked to run on Debian 12 (glibc 2.36)
SKIP_FLUX=${SKIP_FLUX:-0}
SKIP_WORKERD=${SKIP_WORKERD:-0}
SKIP_NODE=${SKIP_NODE:-0}
peers=bench/.peers

need_http_tools
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
[ "$SKIP_FLUX" = 1 ] || need_flux "build it, set FLUX_BIN, or SKIP_FLUX=1"

# bench NAME PORT CMD...: start CMD, check that it answers the right body, warm up, measure, stop.
bench() {
  local name=$1 port=$2 body ctype
  shift 2
  local url="http://127.0.0.1:$port/hello"
  start_server "$name" "$port" "$@"
  wait_ready "$name" "$url"
  body=$(curl -sf "$url")
  ctype=$(curl -sf -o /dev/null -w '%{content_type}' "$url")
  [ "$body" = "Hello, world!" ] || die "$name answered body '$body', not 'Hello, world!'"
  case "$ctype" in text/plain*) ;; *) die "$name answered content-type '$ctype', not text/plain" ;; esac
  wrk_measure "$name" "$url"
  stop_server "$name"
  wrk_parse "$name"
}

order=()
if [ "$SKIP_FLUX" != 1 ]; then
  project=$tmp/project
  mkdir -p "$project/functions/hello"
  cat >"$project/functions/hello/index.ts" <<'EOF'
export default async function handler(req, ctx) { return new Response("Hello, world!", { headers: { "content-type": "text/plain" } }); }
EOF
  echo '{"route": "/hello", "method": "GET"}' >"$project/functions/hello/flux.json"
  next_port
  watch_postgres flux "$project/.flux/pg"
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

echo
echo "hello: wrk -t1 -c$CONNECTIONS -d$DURATION (warm-up $WARMUP), $(nproc) cores"
printf '%-8s %12s %12s %12s %8s\n' server rps p50_us p99_us errors
json_servers=""
for name in "${order[@]}"; do
  printf '%-8s %12s %12s %12s %8s\n' "$name" "${rps[$name]}" "${p50[$name]}" "${p99[$name]}" "${errors[$name]}"
  json_servers+="${json_servers:+,}\"$name\":{\"rps\":${rps[$name]},\"p50_us\":${p50[$name]},\"p99_us\":${p99[$name]},\"errors\":${errors[$name]},\"port\":${ports[$name]}}"
done
r_workerd=$(ratio flux workerd)
r_node=$(ratio flux node)
echo "flux/workerd rps: $r_workerd"
echo "flux/node rps:    $r_node"

workerd_v=null
[ "$SKIP_WORKERD" = 1 ] || workerd_v="\"$WORKERD_VERSION\""
printf '{"bench":"hello","time":"%s","commit":"%s","dirty":%s,"cores":%s,"wrk":{"threads":1,"connections":%s,"duration":"%s","warmup":"%s"},"flux_args":"%s","versions":{"workerd":%s,"node":"%s"},"servers":{%s},"ratios":{"flux/workerd":%s,"flux/node":%s}}\n' \
  "$(utc_now)" "$(git_commit)" "$(git_dirty)" "$(nproc)" "$CONNECTIONS" "$DURATION" "$WARMUP" \
  "$(json_str "$FLUX_ARGS")" "$workerd_v" "$(node --version)" "$json_servers" \
  "$(num_or_null "$r_workerd")" "$(num_or_null "$r_node")" >>"$results/hello.jsonl"
log "appended to $results/hello.jsonl"

#!/usr/bin/env bash
# What the mutation log's capture trigger (src/data/mutation_log.cc) costs a single-row UPDATE.
# Starts a throwaway PostgreSQL 15 cluster under /tmp (run as the `postgres` user when this runs
# as root; unix socket only; fsync and synchronous_commit off, like flux dev's), installs the
# mutation log from the SQL in src/data/mutation_log.cc, and measures with pgbench, one client,
# prepared statements, the same random-row UPDATE of a 100k-row table in each case:
#   plain         a table without the trigger
#   notice        the trigger in a Flux request's mode (flux.capture=on): one FX001 NOTICE a row
#   insert        the trigger in external mode (psql, migrations): one flux.state_mutations row
#   request_plain a whole request transaction (BEGIN; set_config x2; UPDATE; COMMIT), no trigger
#   request_notice the same on the table with the trigger (one notice)
#   request       the same plus the store statement Flux runs before COMMIT (kStoreCapturedSql
#                 with a one-element payload array)
# Cases run interleaved, ROUNDS times each; the median per case is reported: tps, average latency
# and the server's CPU time per transaction in microseconds (all PostgreSQL processes, from
# /proc: steadier than latency on a shared machine), each also as the extra over plain or
# request_plain. Then the trigger's server-side time per row (EXPLAIN ANALYZE of a 10000-row UPDATE, min of 3). Appends
# one JSON line to bench/results/mutation_trigger.jsonl.
#
# Environment:
#   DURATION   seconds per pgbench run (default 5)
#   ROUNDS     runs per case (default 3)
#   ROWS       rows in each table (default 100000)
# The machine has 2 cores, shared by pgbench and the server: measure on an idle machine (a
# parallel build skews the results badly).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
ROWS=${ROWS:-100000}
PG_BIN=/usr/lib/postgresql/15/bin
PORT=5432  # unix socket in our own directory: no clash with other clusters

results=bench/results
mkdir -p "$results"
log() { echo "mutation_trigger.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ -x "$PG_BIN/initdb" ] || die "PostgreSQL 15 server not found in $PG_BIN (scripts/setup.sh)"
command -v pgbench >/dev/null || die "pgbench not found (apt-get install postgresql-contrib-15)"
command -v psql >/dev/null || die "psql not found"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/flux-bench-mutation.XXXXXX")
chmod 755 "$tmp"
as_server() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; else "$@"; fi
}
started=0
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ "$started" = 1 ]; then as_server "$PG_BIN/pg_ctl" stop -D "$tmp/pg" -m immediate -w >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- cluster ------------------------------------------------------------------------------------

mkdir "$tmp/pg" "$tmp/scripts"
[ "$(id -u)" = 0 ] && chown postgres "$tmp" "$tmp/pg"
as_server "$PG_BIN/initdb" -D "$tmp/pg" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
  --no-instructions --no-sync >/dev/null
as_server "$PG_BIN/pg_ctl" start -w -D "$tmp/pg" -l "$tmp/pg/server.log" -o \
  "-c listen_addresses= -c port=$PORT -c unix_socket_directories=$tmp -c fsync=off -c synchronous_commit=off -c autovacuum=off" \
  >/dev/null
started=1
export PGHOST=$tmp PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
sql() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# The install script and the store statement, straight from the C++ source.
awk '/^constexpr char kInstallSql\[\] = R"sql\(/ {on = 1; next} on && /^\)sql";/ {exit} on' \
  src/data/mutation_log.cc >"$tmp/install.sql"
awk '/kStoreCapturedSql = R"sql\(/ {on = 1; next} on && /\)sql";/ {sub(/\)sql";.*/, ""); print; exit} on' \
  src/data/mutation_log.cc >"$tmp/store.sql"
grep -q 'CREATE OR REPLACE FUNCTION flux.capture()' "$tmp/install.sql" ||
  die "cannot find kInstallSql in src/data/mutation_log.cc"
grep -q 'INSERT INTO flux.state_mutations' "$tmp/store.sql" ||
  die "cannot find kStoreCapturedSql in src/data/mutation_log.cc"

log "loading $ROWS rows into each table"
for t in plain notice insert; do
  sql -c "CREATE TABLE public.bench_$t (id int PRIMARY KEY, balance int NOT NULL, name text,
            filler text);
          INSERT INTO public.bench_$t
            SELECT g, 0, 'user ' || g, repeat('x', 60) FROM generate_series(1, $ROWS) g;"
done
sql -f "$tmp/install.sql"
sql -o /dev/null -c "SELECT flux.install_capture('public.bench_notice'),
                          flux.install_capture('public.bench_insert')"
sql -c "VACUUM ANALYZE"
[ "$(sql -At -c "SELECT count(*) FROM pg_trigger WHERE tgname = 'flux_capture'")" = 2 ] ||
  die "the capture trigger is not installed on exactly the two logged tables"

# A real payload, as the trigger sends it, for the store statement of the request case. It sits
# in a table: pgbench would take the ":<digits>" inside it for variables.
payload=$(PGOPTIONS="-c flux.capture=on" psql -X -q -c \
  "BEGIN; UPDATE public.bench_notice SET balance = balance + 1 WHERE id = 1; ROLLBACK;" 2>&1 |
  sed -n 's/^NOTICE:  //p')
[ -n "$payload" ] || die "the trigger sent no notice in flux.capture=on mode"
sql -v payload="[$payload]" <<<"CREATE TABLE public.bench_payload AS SELECT :'payload'::text AS p;"
request_id=0190f3c2-7a1b-7c3d-8e4f-123456789abc
store_sql=$(tr '\n' ' ' <"$tmp/store.sql" |
  sed -e 's/\$1::jsonb/(SELECT p FROM public.bench_payload)::jsonb/' \
    -e "s/\\\$2::uuid/'$request_id'::uuid/" -e 's/\$3::boolean/false/')
case $store_sql in *'$'[0-9]*) die "unreplaced parameter in the store statement: $store_sql" ;; esac

for t in plain notice insert; do
  cat >"$tmp/scripts/$t.sql" <<EOF
\set id random(1, $ROWS)
UPDATE public.bench_$t SET balance = balance + 1 WHERE id = :id;
EOF
done
request_script() {  # TABLE [STORE_SQL]
  cat <<EOF
\set id random(1, $ROWS)
BEGIN;
SET LOCAL flux.request_id = '$request_id'; SET LOCAL flux.capture = 'on';
UPDATE public.bench_$1 SET balance = balance + 1 WHERE id = :id;
${2:+$2;}
COMMIT;
EOF
}
request_script plain >"$tmp/scripts/request_plain.sql"
request_script notice >"$tmp/scripts/request_notice.sql"
request_script notice "$store_sql" >"$tmp/scripts/request.sql"

# --- runs ---------------------------------------------------------------------------------------

cases=(plain notice insert request_plain request_notice request)
declare -A tps_runs=()
# CPU seconds (in clock ticks) the cluster has used: the postmaster, its live children and the
# children it has reaped (pgbench's backend exits at the end of each run). Unlike latency, this
# barely moves when other work shares the machine.
server_ticks() {
  local postmaster
  postmaster=$(head -n 1 "$tmp/pg/postmaster.pid")
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v pm="$postmaster" '
    { sub(/^.*\) /, ""); split($0, f, " ") }   # f[1] is the state: stat fields from 3 on
    f[2] == pm { total += f[12] + f[13] }        # a child: utime + stime
    END { print total + 0 }'
}
postmaster_ticks() {
  awk '{ sub(/^.*\) /, ""); split($0, f, " "); print f[12] + f[13] + f[14] + f[15] }' \
    "/proc/$(head -n 1 "$tmp/pg/postmaster.pid")/stat"
}
ticks() { echo $(($(server_ticks) + $(postmaster_ticks))); }

# pgbench prints every notice to stderr: into /dev/null, since a file or pipe behind it costs the
# client more per notice than Flux's notice handler does. On failure, a short rerun shows why.
# Prints "<tps> <server CPU us per transaction>".
run_case() {
  local name=$1 options="" out before after
  case $name in notice) options="-c flux.capture=on" ;; esac
  before=$(ticks)
  if ! out=$(PGOPTIONS="$options" pgbench -n -M prepared -c 1 -j 1 -T "$DURATION" \
    -f "$tmp/scripts/$name.sql" 2>/dev/null); then
    PGOPTIONS="$options" pgbench -n -M prepared -c 1 -t 1 -f "$tmp/scripts/$name.sql" 2>&1 |
      grep -v '^NOTICE' >&2 || true
    die "pgbench failed for $name"
  fi
  sleep 0.2  # let the postmaster reap the backend
  after=$(ticks)
  awk -v b="$before" -v a="$after" -v hz="$(getconf CLK_TCK)" '
    /^tps = / { tps = $3 }
    /^number of transactions actually processed: / { n = $NF }
    END { printf "%s %.1f\n", tps, (a - b) * 1e6 / hz / n }' <<<"$out"
}
log "running ${#cases[@]} cases x $ROUNDS rounds x ${DURATION}s (one client, prepared)"
declare -A cpu_runs=()
for ((r = 1; r <= ROUNDS; r++)); do
  for name in "${cases[@]}"; do
    read -r t c <<<"$(run_case "$name")"
    tps_runs[$name]+="$t "
    cpu_runs[$name]+="$c "
  done
done
[ "$(sql -At -c "SELECT count(*) > 0 FROM flux.state_mutations WHERE request_id IS NULL")" = t ] ||
  die "external mode logged nothing"

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
declare -A tps=() lat=() cpu=()
for name in "${cases[@]}"; do
  tps[$name]=$(median "${tps_runs[$name]}")
  cpu[$name]=$(median "${cpu_runs[$name]}")
  lat[$name]=$(awk -v t="${tps[$name]}" 'BEGIN {printf "%.1f", 1e6 / t}')
done

# Server side only: the trigger's own time per row.
trigger_us() {
  local table=$1 mode=$2 best="" t i
  for i in 1 2 3; do
    t=$(PGOPTIONS="-c flux.capture=$mode" psql -X -At -c "BEGIN" \
      -c "EXPLAIN (ANALYZE, FORMAT JSON) UPDATE public.bench_$table SET balance = balance + 1 WHERE id <= 10000" \
      -c "ROLLBACK" 2>/dev/null | tr -d '\n' |
      grep -o '"Trigger Name": "flux_capture",[^}]*' | sed -n 's/.*"Time": \([0-9.]*\),.*"Calls": \([0-9]*\).*/\1 \2/p' |
      awk '{printf "%.2f", $1 * 1000 / $2}')
    [ -n "$t" ] || die "no trigger timing for bench_$table"
    if [ -z "$best" ] || awk -v a="$t" -v b="$best" 'BEGIN {exit !(a < b)}'; then best=$t; fi
  done
  echo "$best"
}
trigger_notice=$(trigger_us notice on)
trigger_insert=$(trigger_us insert off)

# --- report -------------------------------------------------------------------------------------

printf '\n%-15s %9s %11s %9s %13s %10s\n' case tps latency_us extra_us server_cpu_us extra_cpu
for name in "${cases[@]}"; do
  case $name in request*) base=request_plain ;; *) base=plain ;; esac
  extra=$(awk -v a="${lat[$name]}" -v b="${lat[$base]}" 'BEGIN {printf "%+.1f", a - b}')
  extra_cpu=$(awk -v a="${cpu[$name]}" -v b="${cpu[$base]}" 'BEGIN {printf "%+.1f", a - b}')
  if [ "$name" = "$base" ]; then extra="-" extra_cpu="-"; fi
  printf '%-15s %9.0f %11s %9s %13s %10s\n' "$name" "${tps[$name]}" "${lat[$name]}" "$extra" \
    "${cpu[$name]}" "$extra_cpu"
done
ratio() { awk -v a="${tps[$1]}" -v b="${tps[$2]}" 'BEGIN {printf "%.2f", a / b}'; }
printf '\ntps ratios: notice/plain %s, insert/plain %s, request_notice/request_plain %s, request/request_plain %s\n' \
  "$(ratio notice plain)" "$(ratio insert plain)" "$(ratio request_notice request_plain)" \
  "$(ratio request request_plain)"
printf 'trigger time per row (server side, EXPLAIN ANALYZE): notice %s us, insert %s us\n' \
  "$trigger_notice" "$trigger_insert"

{
  printf '{"time":"%s","commit":"%s","duration_s":%s,"rounds":%s,"rows":%s,' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$DURATION" "$ROUNDS" "$ROWS"
  for name in "${cases[@]}"; do
    printf '"%s_tps":%s,"%s_latency_us":%s,"%s_server_cpu_us":%s,' "$name" "${tps[$name]}" \
      "$name" "${lat[$name]}" "$name" "${cpu[$name]}"
  done
  printf '"trigger_notice_us":%s,"trigger_insert_us":%s}\n' "$trigger_notice" "$trigger_insert"
} >>"$results/mutation_trigger.jsonl"

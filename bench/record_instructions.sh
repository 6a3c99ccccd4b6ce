#!/usr/bin/env bash
# What storing one execution record costs PostgreSQL, in instructions: a count that does not
# move with the machine's load, unlike every timing on this shared 2-core VM. `flux dev` serves
# a hello project and records its requests; one stored hello record becomes the model of N1 and
# N2 rows (defaults 2000 and 6000: the same columns, distinct ids and times), written as the
# COPY binary data the recorder sends. Then PostgreSQL runs in single-user mode under
# valgrind's callgrind, on a copy of the cluster each time, `COPY flux.executions ... FROM
# <file> WITH (FORMAT binary)` of each: (instructions(N2) - instructions(N1)) / (N2 - N1) is the
# cost of one row, start-up and shutdown cancelled out. Prints that and where it goes
# (PostgreSQL functions, inclusive). Appends one JSON line to
# bench/results/record_instructions.jsonl.
#
# The table holds PREFILL rows (default 200000) before: a log in use, whose indexes are past
# the height where PostgreSQL's B-tree inserts at the right edge take a fast path.
#
# Environment: FLUX_BIN (default build/src/app/flux), N1, N2, PREFILL. Needs valgrind (installed with apt
# when missing). Runs the server as `postgres` when run as root, as flux dev does.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init record_instructions

N1=${N1:-2000}
N2=${N2:-6000}
PREFILL=${PREFILL:-200000}
need_flux
need_http_tools
need_callgrind
PSQL=$PG_BIN/psql

# --- a recorded hello request, and rows like it ----------------------------------------------------

project=$tmp/project
cp -a examples/hello "$project"
rm -rf "$project/.flux"
next_port
start_server flux "$port" "$FLUX_BIN" dev "$project" --port "$port"
watch_postgres flux "$project/.flux/pg"
wait_ready flux "http://127.0.0.1:$port/hello"
for _ in $(seq 20); do curl -sf "http://127.0.0.1:$port/hello?name=Flux" >/dev/null; done
q=("$PSQL" -h "$project/.flux/pg" -p 5432 -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1)
for _ in $(seq 100); do
  [ "$("${q[@]}" -c "SELECT count(*) >= 20 FROM flux.executions WHERE path = '/hello'")" = t ] && break
  sleep 0.1
done
mkdir "$tmp/data"
[ "$(id -u)" = 0 ] && chown postgres "$tmp/data"
for n in "$N1" "$N2"; do
  # Written by the server itself (COPY TO a file), hence a directory it owns.
  "${q[@]}" -c "COPY (
    SELECT ('01a2021d-0000-7000-8000-' || lpad(to_hex($n * 100000 + i), 12, '0'))::uuid, kind,
      parent_id, replay_of, tenant, function, deployment_id, git_commit, method, path, status,
      error, started_at + i * interval '37 microseconds', duration_us, request, response, spans,
      journal, logs
    FROM (SELECT * FROM flux.executions WHERE path = '/hello' LIMIT 1) e,
      generate_series(1, $n) i) TO '$tmp/data/rows-$n' WITH (FORMAT binary)"
done
row_bytes=$("${q[@]}" -c "SELECT pg_column_size(e.*) FROM flux.executions e WHERE path = '/hello' LIMIT 1")
# A table in use: PREFILL rows before, with earlier ids and times.
"${q[@]}" -c "CREATE TEMP TABLE model AS SELECT * FROM flux.executions WHERE path = '/hello' LIMIT 1" \
  -c "TRUNCATE flux.executions" -c "INSERT INTO flux.executions
  SELECT ('01a2021c-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, kind, parent_id,
    replay_of, tenant, function, deployment_id, git_commit, method, path, status, error,
    started_at - interval '1 day' + i * interval '37 microseconds', duration_us, request,
    response, spans, journal, logs
  FROM model e, generate_series(1, $PREFILL) i" -c "VACUUM ANALYZE flux.executions" -c "CHECKPOINT"
stop_server flux
base=$tmp/pg
cp -a "$project/.flux/pg" "$base"
rm -f "$base/postmaster.pid"

# --- PostgreSQL under callgrind -----------------------------------------------------------------

mkdir "$tmp/cg"
[ "$(id -u)" = 0 ] && chown postgres "$tmp/cg"
counts=()
for n in "$N1" "$N2"; do
  counts+=("$(count_instructions "$base" "$tmp/cg/copy-$n" \
    <<<"COPY flux.executions FROM '$tmp/data/rows-$n' WITH (FORMAT binary);")")
done
per_row=$(((counts[1] - counts[0]) / (N2 - N1)))

echo
echo "record_instructions: one recorded hello request ($row_bytes bytes a row) stored by COPY binary, PostgreSQL single-user, ($N2 - $N1) rows"
printf '  per row: %d instructions\n' "$per_row"
echo "  where it goes (PostgreSQL functions, inclusive, per row):"
callgrind_annotate --inclusive=yes "$tmp/cg/copy-$N2.cg" 2>/dev/null |
  awk -v n="$N2" '
    / \?\?\?:(NextCopyFromRawFields|InputFunctionCall|ReceiveFunctionCall|ExecInsertIndexTuples|heap_multi_insert|XLogInsert) \[/ {
      count = $1; gsub(",", "", count)
      name = $0; sub(/.*\?\?\?:/, "", name); sub(/ \[.*/, "", name)
      printf "    %-26s %8.0f\n", name, count / n }'
printf '{"bench":"record_instructions","time":"%s","commit":"%s","dirty":%s,"rows":[%s,%s],"row_bytes":%s,"per_row":%s}\n' \
  "$(utc_now)" "$(git_commit)" "$(git_dirty)" "$N1" "$N2" "$row_bytes" "$per_row" \
  >>"$results/record_instructions.jsonl"
log "appended to $results/record_instructions.jsonl"

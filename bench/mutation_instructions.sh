#!/usr/bin/env bash
# What the mutation log costs PostgreSQL per logged write, in instructions: a count that does
# not move with the machine's load, unlike every timing on this shared 2-core VM (whose pairs of
# wrk runs spread +-20%). `flux dev` sets up a project (its embedded cluster, the mutation log
# with the C capture, a `counters` table with the capture trigger and a copy `plain` without
# it) and stops; then PostgreSQL runs in single-user mode under valgrind's callgrind, on a copy
# of that cluster each time, a script of request transactions as Flux sends them:
#   BEGIN; SET LOCAL flux.request_id = <new id>; SET LOCAL flux.capture = 'on';
#   EXECUTE u(<id>);  -- PREPAREd: update <table> set n = n + 1 where id = $1
#   COMMIT;
# N1 and N2 transactions (defaults 500 and 1500): (instructions(N2) - instructions(N1)) / (N2 -
# N1) is the cost of one transaction, start-up and shutdown cancelled out. Prints that for
# `plain` and `counters`, the difference (what one logged write costs: the trigger, its row's
# insertion at COMMIT and the index entries) and where the difference goes (PostgreSQL
# functions, inclusive). Appends one JSON line to bench/results/mutation_instructions.jsonl.
#
# Environment: FLUX_BIN (default build/src/app/flux), N1, N2. Needs valgrind (installed with apt
# when missing). Runs the server as `postgres` when run as root, as flux dev does.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init mutation_instructions

N1=${N1:-500}
N2=${N2:-1500}
need_flux
need_callgrind
PSQL=$PG_BIN/psql

# --- the cluster, as flux dev leaves it -----------------------------------------------------------

project=$tmp/project
mkdir -p "$project/migrations" "$project/functions/bump"
cat >"$project/migrations/001.sql" <<'EOF'
create table counters (id int primary key, n bigint not null default 0);
insert into counters select g, 0 from generate_series(1, 1000) g;
create table plain (id int primary key, n bigint not null default 0);
insert into plain select g, 0 from generate_series(1, 1000) g;
EOF
cat >"$project/functions/bump/index.ts" <<'EOF'
export default async function handler(req, ctx) { return { ok: true }; }
EOF
echo '{"route":"/bump","method":"GET"}' >"$project/functions/bump/flux.json"
next_port
start_server flux "$port" "$FLUX_BIN" dev "$project" --port "$port"
watch_postgres flux "$project/.flux/pg"
wait_ready flux "http://127.0.0.1:$port/bump"
q=("$PSQL" -h "$project/.flux/pg" -p 5432 -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1)
"${q[@]}" -c "DROP TRIGGER flux_capture ON plain"
[ "$("${q[@]}" -c "SELECT prosrc FROM pg_proc WHERE oid = 'flux.capture'::regproc")" = flux_capture ] ||
  die "flux installed the plpgsql capture, not the C one (see $(server_log flux))"
"${q[@]}" -c "TRUNCATE flux.state_mutations" -c "CHECKPOINT"
stop_server flux
base=$tmp/pg
cp -a "$project/.flux/pg" "$base"
rm -f "$base/postmaster.pid"

single() {  # single DATADIR < SQL: one single-user session
  as_server "$PG_BIN/postgres" --single -D "$1" -c fsync=off -c synchronous_commit=off \
    -c full_page_writes=off postgres
}
single "$base" >/dev/null 2>&1 <<<"VACUUM ANALYZE" || die "cannot run PostgreSQL in single-user mode"

script() {  # script TABLE N: N request transactions, each with a new request id
  echo "PREPARE u(int) AS UPDATE $1 SET n = n + 1 WHERE id = \$1;"
  awk -v n="$2" -v base="$((RANDOM * 100000))" 'BEGIN {
    for (i = 1; i <= n; i++) {
      print "BEGIN;"
      printf "SET LOCAL flux.request_id = '"'"'0190f3c2-7a1b-7c3d-8e4f-%012x'"'"'; SET LOCAL flux.capture = '"'"'on'"'"';\n", base + i
      printf "EXECUTE u(%d);\n", (i * 7919) % 1000 + 1
      print "COMMIT;"
    } }'
}

mkdir "$tmp/cg"
[ "$(id -u)" = 0 ] && chown postgres "$tmp/cg"
declare -A per_txn=()
for table in plain counters; do
  counts=()
  for n in "$N1" "$N2"; do
    script "$table" "$n" >"$tmp/$table-$n.sql"
    chmod 644 "$tmp/$table-$n.sql"
    counts+=("$(count_instructions "$base" "$tmp/cg/$table-$n" <"$tmp/$table-$n.sql")")
  done
  per_txn[$table]=$(((counts[1] - counts[0]) / (N2 - N1)))
  log "$table: ${per_txn[$table]} instructions per transaction"
done

added=$((per_txn[counters] - per_txn[plain]))
echo
echo "mutation_instructions: one request transaction (BEGIN, set_config, one-row UPDATE, COMMIT), PostgreSQL single-user, ($N2 - $N1) transactions"
printf '  without the log:  %8d instructions\n' "${per_txn[plain]}"
printf '  with the C capture: %6d instructions\n' "${per_txn[counters]}"
printf '  added per logged write: %d (%s%%)\n' "$added" "$(awk -v a="$added" -v b="${per_txn[plain]}" 'BEGIN { printf "%.0f", 100 * a / b }')"
echo "  where it goes (PostgreSQL functions, inclusive, per transaction of the logged run):"
callgrind_annotate --inclusive=yes "$tmp/cg/counters-$N2.cg" 2>/dev/null |
  awk -v n="$N2" '
    / \?\?\?:(AfterTriggerEndQuery|row_to_json|ExecSimpleRelationInsert|btinsert|heap_insert|nextval_internal|ExecOpenIndices|ExecCloseIndices) \[/ {
      count = $1; gsub(",", "", count)
      name = $0; sub(/.*\?\?\?:/, "", name); sub(/ \[.*/, "", name)
      printf "    %-26s %8.0f\n", name, count / n }'
printf '{"bench":"mutation_instructions","time":"%s","commit":"%s","dirty":%s,"transactions":[%s,%s],"plain":%s,"logged":%s,"added":%s}\n' \
  "$(utc_now)" "$(git_commit)" "$(git_dirty)" "$N1" "$N2" "${per_txn[plain]}" "${per_txn[counters]}" \
  "$added" >>"$results/mutation_instructions.jsonl"
log "appended to $results/mutation_instructions.jsonl"

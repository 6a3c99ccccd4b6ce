// The mutation log: every row change in the user's tables, in flux.state_mutations.
//
// One plpgsql trigger function, flux.capture(), runs AFTER INSERT OR UPDATE OR DELETE FOR EACH
// ROW on every user table (trigger `flux_capture`, the table's primary key column names as its
// arguments, in key order, so the trigger never looks at the catalog). What it does depends on
// the transaction's `flux.capture` setting:
//   'on'  (a Flux request, see beginRequestTransactionSql): inserts nothing; it sends a NOTICE
//         with SQLSTATE FX001 whose message is a JSON object
//           {"s": schema, "t": table, "op": "INSERT"|"UPDATE"|"DELETE", "pk": text or null,
//            "old": row or null, "new": row or null, "tx": txid, "at": ISO 8601 timestamp}.
//         Notices reach the client even from a transaction that later rolls back: the request
//         collects them and stores them with kStoreCapturedSql, before its COMMIT (in the same
//         transaction) or after its ROLLBACK (marked rolled back). A session whose
//         client_min_messages hides notices (warning, error) gets an error instead of a silent
//         loss: Flux's connections must keep it at notice.
//   else  (psql, migrations, other applications): inserts the row into flux.state_mutations
//         itself, with request_id NULL and actor "<session_user> (<application_name>)".
// pk is the key's values as text, composite keys joined with ',' (NULL without a primary key).
// An event trigger (`flux_capture_ddl`, created only when the role may: it needs superuser)
// installs or refreshes the trigger after CREATE TABLE / ALTER TABLE / CREATE TABLE AS /
// SELECT INTO; captureAllTables() covers what it cannot see (tables created before, or without
// the event trigger). Tables in the schemas flux, pg_catalog, information_schema and pg_toast,
// temporary tables and partitioned parents are not captured (partitions are, under their own
// name). The SQL objects: flux.capture(), flux.record_external(...), flux.row_diff(old, new)
// (changed columns, inlined into the statements that store rows), flux.changed_columns(old,
// new) (the same for queries by hand), flux.primary_key_columns(regclass),
// flux.capture_is_current(regclass), flux.install_capture(regclass),
// flux.install_capture_all(), flux.capture_ddl().
//
// Cost (PostgreSQL 15, this machine): the trigger adds ~10 us of server time to a row in 'on'
// mode and ~45 us in external mode; kStoreCapturedSql costs ~30 us for a one-row request.
// bench/mutation_trigger.sh measures it.
//
// Thread: the functions here block (libpq, synchronous): the control path at start-up only.
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"

namespace flux::data {

// Creates or upgrades schema flux's mutation log objects: the table, its indexes, the functions
// and, when the role is a superuser, the event trigger. Idempotent and safe to run at every
// start, by several flux processes at once (they take turns on an advisory lock). Run it before
// migrations so that what they write is logged.
Result<void> installMutationLog(const std::string& conninfo);

// Installs (or refreshes, when its primary key changed) the capture trigger on every user table
// that lacks an up-to-date one. Run after migrations. Fails naming the table when the role may
// not create a trigger on it (it must own the table).
Result<void> captureAllTables(const std::string& conninfo);

// The SQLSTATE of the capture trigger's notices.
inline constexpr std::string_view kCaptureNoticeSqlstate = "FX001";

// Stores a request's captured notices. Parameters (text): $1 a JSON array of the notice
// payloads exactly as received ("[" + payloads joined with "," + "]"), $2 the request id (uuid),
// $3 rolled back ('t' or 'f'). One row per element, in array order; changed_columns computed
// from old and new; actor NULL.
extern const char* const kStoreCapturedSql;

// Stores an UPDATE or DELETE made through ctx.db that matched no row (rows_affected 0, pk NULL,
// changed_columns NULL). Parameters (text): $1 request id, $2 schema, $3 table, $4 op ("UPDATE"
// or "DELETE"), $5 the where clause as JSON (stored as `old`), $6 the values set as JSON or
// NULL (stored as `new`), $7 rolled back ('t' or 'f').
extern const char* const kStoreZeroRowSql;

// The script that opens a request's transaction:
//   BEGIN; SELECT set_config('flux.request_id', '<id>', true), set_config('flux.capture', 'on',
//   true)
// request_id is inlined, so it must be a UUID in canonical form (8-4-4-4-12 hex digits);
// anything else is kInvalidArgument.
Result<std::string> beginRequestTransactionSql(std::string_view request_id);

}  // namespace flux::data

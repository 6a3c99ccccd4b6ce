// The mutation log: every row change in the user's tables, in flux.state_mutations.
//
// One trigger function, flux.capture(), runs AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW on
// every user table (trigger `flux_capture`, the table's primary key column names as its
// arguments, in key order, so the trigger never looks at the catalog). It has two
// implementations, chosen by installMutationLog() per database: the C library flux_capture
// (pg_extension/, the fast one) when the server can load it, else plpgsql. Swapping the
// function's body keeps every trigger (they name the function by oid) and needs no reinstall.
// What it does depends on the transaction's `flux.capture` setting:
//   'on'  (a Flux request, see beginRequestTransactionSql): the row is logged with the request's
//         flux.request_id, actor NULL. A change payload is the JSON object
//           {"s": schema, "t": table, "op": "INSERT"|"UPDATE"|"DELETE", "pk": text or null,
//            "old": row or null, "new": row or null, "tx": txid, "at": ISO 8601 timestamp}.
//         C:       the rows wait in the backend's memory and are inserted at COMMIT (or
//                  PREPARE TRANSACTION), in the same transaction, by the server itself: the
//                  client has nothing to do. A ROLLBACK TO SAVEPOINT marks the rows written
//                  since the savepoint rolled back (still inserted, in order). When the
//                  transaction aborts (ROLLBACK, a failed statement, a failed COMMIT), the
//                  server sends one NOTICE with SQLSTATE FX002 whose message is a JSON array of
//                  the payloads of every row of the transaction; the client stores it with
//                  kStoreCapturedSql after the ROLLBACK, marked rolled back.
//         plpgsql: inserts nothing; it sends a NOTICE with SQLSTATE FX001 per row, the payload
//                  as message. The request collects them and stores them with
//                  kStoreCapturedSql, before its COMMIT (in the same transaction) or after its
//                  ROLLBACK (marked rolled back).
//         Notices reach the client even from a transaction that rolls back. A session whose
//         client_min_messages hides notices (warning, error) gets an error instead of a silent
//         loss: Flux's connections must keep it at notice.
//   else  (psql, migrations, other applications): inserts the row into flux.state_mutations
//         at once, with request_id NULL and actor "<session_user> (<application_name>)".
// pk is the key's values as text (as `row_to_json(row) ->> column`), composite keys joined with
// ',' (NULL without a primary key). flux.state_mutations ids follow the order of the writes.
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
// Cost (PostgreSQL 15, bench/mutation_instructions.sh: instructions, which the machine's load
// does not move): a request transaction that updates one row costs ~183k instructions without
// the log and ~53k more with the C capture (+29%): ~11k firing the AFTER trigger and writing old
// and new (the C capture writes row_to_json's text itself, with each table's column types looked
// up once), ~22k inserting the row at COMMIT (two index entries ~14.5k of which the request
// index ~10k, the heap ~3.5k, nextval ~3.6k) and the rest opening and locking the table and its
// indexes, WAL and the commit. The row index keys on one bigint (flux.row_key) and is the
// primary key: the earlier (schema, table, pk, id) text index and a separate key on id cost
// ~25k more. old/new are stored as the captured json text and changed_columns compared on the
// tuples: parsing both into jsonb and diffing them cost ~25 us more per single-row transaction.
// No notice, no round trip. The plpgsql capture adds ~100-200 us: ~10 us a row in the trigger,
// a notice per row (a socket flush that wakes the client) and kStoreCapturedSql, one more
// statement before COMMIT. External mode costs the same either way (~45-70 us a row,
// flux.record_external). bench/mutations.sh measures requests through flux.
//
// Thread: the functions here block (libpq, synchronous): the control path at start-up only.
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"

namespace flux::data {

// How flux.capture() is implemented in a database.
enum class CaptureFunction { kC, kPlpgsql };
// kPreferC: the C library when the server can load it (PostgreSQL 15 and a superuser role,
// e.g. the embedded cluster), else plpgsql. kPlpgsqlOnly: plpgsql (tests, comparisons).
enum class CaptureChoice { kPreferC, kPlpgsqlOnly };

struct MutationLogInstall {
  CaptureFunction capture = CaptureFunction::kPlpgsql;
  // Why the C capture could not be used; empty when it is, or when kPlpgsqlOnly asked so.
  std::string why_plpgsql;
};

// Creates or upgrades schema flux's mutation log objects: the table, its indexes, the functions
// (flux.capture() as `choice` allows) and, when the role is a superuser, the event trigger.
// Idempotent and safe to run at every start, by several flux processes at once (they take turns
// on an advisory lock). Run it before migrations so that what they write is logged. For the C
// capture the server writes the library into its data directory (see installCCapture in the
// .cc); a failure there is not an error, the result says plpgsql and why.
Result<MutationLogInstall> installMutationLog(const std::string& conninfo,
                                              CaptureChoice choice = CaptureChoice::kPreferC);

// "C capture" or "plpgsql capture", for the start-up log.
std::string_view captureFunctionName(CaptureFunction capture);

// Installs (or refreshes, when its primary key changed) the capture trigger on every user table
// that lacks an up-to-date one. Run after migrations. Fails naming the table when the role may
// not create a trigger on it (it must own the table).
Result<void> captureAllTables(const std::string& conninfo);

// The SQLSTATE of the plpgsql capture's notices: one change payload.
inline constexpr std::string_view kCaptureNoticeSqlstate = "FX001";
// The SQLSTATE of the C capture's notice when a transaction aborts: a JSON array of payloads.
inline constexpr std::string_view kRolledBackCaptureNoticeSqlstate = "FX002";

// The library flux_capture.so built with flux (empty when it was built without PostgreSQL's
// server headers).
extern const std::string_view kCaptureLibrary;

// Stores a request's captured notices. Parameters (text): $1 a JSON array of the change
// payloads exactly as received ("[" + payloads joined with "," + "]", an FX002 message as it
// is), $2 the request id (uuid), $3 rolled back ('t' or 'f'). One row per element, in array
// order; changed_columns computed from old and new; actor NULL.
extern const char* const kStoreCapturedSql;

// Stores an UPDATE or DELETE made through ctx.db that matched no row (rows_affected 0, pk NULL,
// changed_columns NULL). Parameters (text): $1 request id, $2 schema, $3 table, $4 op ("UPDATE"
// or "DELETE"), $5 the where clause as JSON (stored as `old`), $6 the values set as JSON or
// NULL (stored as `new`), $7 rolled back ('t' or 'f').
extern const char* const kStoreZeroRowSql;

// The script that opens a request's transaction:
//   BEGIN; SET LOCAL flux.request_id = '<id>'; SET LOCAL flux.capture = 'on'
// Utility statements, never planned: the same settings as SELECT set_config(..., true), which
// cost ~52k more instructions of PostgreSQL's a transaction (bench/mutation_instructions.sh).
// request_id is inlined, so it must be a UUID in canonical form (8-4-4-4-12 hex digits);
// anything else is kInvalidArgument.
Result<std::string> beginRequestTransactionSql(std::string_view request_id);

}  // namespace flux::data

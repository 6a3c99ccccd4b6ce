#include "data/mutation_log.h"

#include <libpq-fe.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

namespace flux::data {
namespace {

// Serializes installs by concurrent flux processes (CREATE OR REPLACE FUNCTION and CREATE
// TRIGGER on the same objects would otherwise fail with "tuple concurrently updated"). The
// two-key form: "flux" in ASCII, then 1 for the mutation log. It does not collide with the
// migrations' one-key lock, so holding both (in any order) cannot deadlock.
constexpr char kInstallLockSql[] = "SELECT pg_advisory_xact_lock(1718383992, 1)";

// Everything is CREATE ... IF NOT EXISTS or CREATE OR REPLACE, so running it again is harmless.
// A later change to the table adds ALTER TABLE ... ADD COLUMN IF NOT EXISTS statements here.
constexpr char kInstallSql[] = R"sql(
-- Another process may create the schema at the same moment (migrations do too): IF NOT EXISTS
-- then fails with a unique violation instead of skipping.
DO $$
BEGIN
  CREATE SCHEMA IF NOT EXISTS flux;
EXCEPTION WHEN unique_violation THEN
  NULL;
END $$;
-- The capture trigger runs as whoever writes a user table, and names functions in flux.
GRANT USAGE ON SCHEMA flux TO PUBLIC;

-- The key of the row index: one bigint, a hash of the row's schema, table and pk (NULL as ''),
-- so that a logged write's index entry compares an integer, not three texts (the text index
-- cost ~40k instructions a write, a fifth of the whole request transaction). A hash may
-- collide: readers match the columns too. flux_capture.c (rowKey) hashes the same bytes.
CREATE OR REPLACE FUNCTION flux.row_key(schema_name text, table_name text, pk text)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT hashtextextended((schema_name || '.' || table_name || '.' || coalesce(pk, ''))
                          COLLATE "C", 0)
$$;

CREATE TABLE IF NOT EXISTS flux.state_mutations (
  id bigserial NOT NULL,
  request_id uuid,
  actor text,
  schema_name text COLLATE "C" NOT NULL,
  table_name text COLLATE "C" NOT NULL,
  pk text COLLATE "C",
  row_key bigint NOT NULL,  -- flux.row_key(schema_name, table_name, pk)
  op text NOT NULL,
  old json,
  new json,
  changed_columns text[],
  txid bigint,
  at timestamptz NOT NULL DEFAULT clock_timestamp(),
  rolled_back boolean NOT NULL DEFAULT false,
  rows_affected integer NOT NULL DEFAULT 1,
  -- The row index: a row's history in log order. ids are unique, so this key is too; one
  -- index less than a key on id alone, which nothing looks up (~10k instructions a write).
  CONSTRAINT state_mutations_pkey PRIMARY KEY (row_key, id)
);
-- old and new are json, the row_to_json text as captured (parsing it into jsonb on every logged
-- write cost more than the insert); readers cast. The key columns compare in byte order
-- (COLLATE "C"): the row index compares them at every logged write, and a locale's strcoll
-- costs several times memcmp. A log made by an earlier Flux is converted once.
DO $$
BEGIN
  IF (SELECT atttypid FROM pg_attribute
       WHERE attrelid = 'flux.state_mutations'::regclass AND attname = 'old') = 'jsonb'::regtype
     OR (SELECT attcollation FROM pg_attribute
          WHERE attrelid = 'flux.state_mutations'::regclass AND attname = 'pk')
        <> 'pg_catalog."C"'::regcollation THEN
    ALTER TABLE flux.state_mutations
      ALTER COLUMN old TYPE json USING old::json,
      ALTER COLUMN new TYPE json USING new::json,
      ALTER COLUMN schema_name TYPE text COLLATE "C",
      ALTER COLUMN table_name TYPE text COLLATE "C",
      ALTER COLUMN pk TYPE text COLLATE "C";
  END IF;
END $$;
-- A log from before row_key gets it as the head of its primary key, instead of the text row
-- index.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_attribute
                  WHERE attrelid = 'flux.state_mutations'::regclass AND attname = 'row_key'
                    AND NOT attisdropped) THEN
    ALTER TABLE flux.state_mutations ADD COLUMN row_key bigint;
    UPDATE flux.state_mutations SET row_key = flux.row_key(schema_name, table_name, pk);
    ALTER TABLE flux.state_mutations DROP CONSTRAINT IF EXISTS state_mutations_pkey,
      ADD CONSTRAINT state_mutations_pkey PRIMARY KEY (row_key, id);
    DROP INDEX IF EXISTS flux.state_mutations_row_idx;
    ALTER INDEX IF EXISTS flux.state_mutations_request_idx SET (deduplicate_items = off);
  END IF;
END $$;
-- The changes of a request. Nearly every key is unique (a request writes a row or two):
-- deduplication would only cost a pass over a full page before it splits.
CREATE INDEX IF NOT EXISTS state_mutations_request_idx
  ON flux.state_mutations (request_id) WITH (deduplicate_items = off);

-- One row: the keys whose value differs between two rows, over the keys of both (all of new's
-- for an INSERT, all of old's for a DELETE), sorted in byte order whatever the database's
-- collation. A set-returning SQL function, so that PostgreSQL inlines it into a statement that
-- calls it in FROM: planned with that statement, not again at each call (a scalar SQL function
-- costs ~15 us a row).
CREATE OR REPLACE FUNCTION flux.row_diff(old jsonb, new jsonb)
RETURNS TABLE (changed_columns text[])
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(array_agg(k ORDER BY k COLLATE "C"), '{}')
  FROM (SELECT k FROM jsonb_object_keys(new) AS k
        WHERE old IS NULL OR old -> k IS DISTINCT FROM new -> k
        UNION ALL
        SELECT k FROM jsonb_object_keys(old) AS k WHERE new IS NULL OR NOT new ? k) AS keys(k)
$$;

-- The same as a plain function, for queries by hand.
CREATE OR REPLACE FUNCTION flux.changed_columns(old jsonb, new jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT changed_columns FROM flux.row_diff(old, new)
$$;

-- A write made outside Flux. SECURITY DEFINER so that any role that may write a user table can
-- log it without any privilege on flux.state_mutations; what it logs about the caller (actor,
-- txid) it computes itself. plpgsql keeps the INSERT's plan for the session.
CREATE OR REPLACE FUNCTION flux.record_external(target_schema text, target_table text,
                                                operation text, key text, old_row jsonb,
                                                new_row jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  INSERT INTO flux.state_mutations
    (actor, schema_name, table_name, pk, row_key, op, old, new, changed_columns, txid)
  SELECT session_user || ' (' || current_setting('application_name') || ')', $1, $2, $4,
         flux.row_key($1, $2, $4), $3, $5, $6, d.changed_columns, txid_current()
  FROM flux.row_diff($5, $6) AS d;
END $$;

-- The plpgsql capture (installCCapture may then replace it by the C library, in the same
-- transaction). The per-row hot path of a Flux request ('on'): one notice, built by
-- concatenation from row_to_json (measured cheaper than to_jsonb and json_build_object, which
-- look up every argument's type on each call). TG_ARGV holds the primary key's columns;
-- TG_ARGV[0] is NULL without one, and so is pk. The key is the new row's, the old one's for a
-- DELETE.
CREATE OR REPLACE FUNCTION flux.capture() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  old_row json := row_to_json(OLD);
  new_row json := row_to_json(NEW);
  pk text := coalesce(new_row, old_row) ->> TG_ARGV[0];
BEGIN
  IF TG_NARGS > 1 THEN
    FOR i IN 1 .. TG_NARGS - 1 LOOP
      pk := pk || ',' || (coalesce(new_row, old_row) ->> TG_ARGV[i]);
    END LOOP;
  END IF;
  IF current_setting('flux.capture', true) = 'on' THEN
    IF current_setting('client_min_messages') IN ('warning', 'error') THEN
      -- The notice would never reach Flux: fail rather than lose the change.
      RAISE EXCEPTION 'flux cannot log this change: client_min_messages is %',
        current_setting('client_min_messages')
        USING HINT = 'the capture notices need client_min_messages at notice or below';
    END IF;
    RAISE NOTICE USING ERRCODE = 'FX001', MESSAGE =
      '{"s":' || to_json(TG_TABLE_SCHEMA) || ',"t":' || to_json(TG_TABLE_NAME) ||
      ',"op":"' || TG_OP || '","pk":' || coalesce(to_json(pk)::text, 'null') ||
      ',"old":' || coalesce(old_row::text, 'null') ||
      ',"new":' || coalesce(new_row::text, 'null') ||
      ',"tx":' || txid_current() || ',"at":' || to_json(clock_timestamp()) || '}';
  ELSE
    PERFORM flux.record_external(TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, pk, old_row::jsonb,
                                 new_row::jsonb);
  END IF;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION flux.primary_key_columns(target regclass) RETURNS name[]
LANGUAGE sql STABLE AS $$
  SELECT coalesce(array_agg(a.attname ORDER BY k.ord), '{}')
  FROM pg_catalog.pg_index i
  CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
  WHERE i.indrelid = target AND i.indisprimary
$$;

-- True when target has flux_capture as install_capture would create it now. tgtype 29 is
-- ROW | INSERT | DELETE | UPDATE, AFTER; tgargs is each argument followed by a NUL byte.
CREATE OR REPLACE FUNCTION flux.capture_is_current(target regclass) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_trigger t
    WHERE t.tgrelid = target AND t.tgname = 'flux_capture'
      AND t.tgfoid = 'flux.capture()'::pg_catalog.regprocedure AND t.tgtype = 29
      AND t.tgargs = (
        SELECT coalesce(string_agg(convert_to(c, getdatabaseencoding()) || '\x00'::bytea,
                                   ''::bytea ORDER BY n), ''::bytea)
        FROM unnest(flux.primary_key_columns(target)) WITH ORDINALITY AS u(c, n)))
$$;

CREATE OR REPLACE FUNCTION flux.install_capture(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  args text;
BEGIN
  IF (SELECT relnamespace FROM pg_catalog.pg_class WHERE oid = target)
     = 'flux'::pg_catalog.regnamespace THEN
    -- Capturing flux.state_mutations would recurse forever.
    RAISE EXCEPTION 'flux does not capture the changes of its own table %', target;
  END IF;
  SELECT string_agg(quote_literal(c), ', ' ORDER BY n) INTO args
  FROM unnest(flux.primary_key_columns(target)) WITH ORDINALITY AS u(c, n);
  EXECUTE format('CREATE OR REPLACE TRIGGER flux_capture AFTER INSERT OR UPDATE OR DELETE '
                 'ON %s FOR EACH ROW EXECUTE FUNCTION flux.capture(%s)',
                 target, coalesce(args, ''));
EXCEPTION WHEN insufficient_privilege THEN
  RAISE EXCEPTION 'cannot capture the changes of table %: %', target, SQLERRM
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'flux must own every table it logs, or connect as a superuser';
END $$;

-- Returns how many tables got a new or refreshed trigger.
CREATE OR REPLACE FUNCTION flux.install_capture_all() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  target regclass;
  installed integer := 0;
BEGIN
  FOR target IN
    SELECT c.oid FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND c.relpersistence <> 't'
      AND n.nspname NOT IN ('flux', 'pg_catalog', 'information_schema', 'pg_toast')
    ORDER BY c.oid
  LOOP
    IF NOT flux.capture_is_current(target) THEN
      PERFORM flux.install_capture(target);
      installed := installed + 1;
    END IF;
  END LOOP;
  RETURN installed;
END $$;

-- The event trigger's function. SECURITY DEFINER (its owner created the event trigger, so is a
-- superuser): a role that creates a table need not have any privilege in schema flux. Every
-- command that can change a primary key's columns (ADD / DROP CONSTRAINT, RENAME COLUMN, ...)
-- is reported with the table's pg_class oid as objid; a column as the table plus objsubid.
CREATE OR REPLACE FUNCTION flux.capture_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  target regclass;
BEGIN
  FOR target IN
    SELECT DISTINCT c.oid
    FROM pg_event_trigger_ddl_commands() d
    JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND c.relpersistence <> 't'
      AND n.nspname NOT IN ('flux', 'pg_catalog', 'information_schema', 'pg_toast')
  LOOP
    IF NOT flux.capture_is_current(target) THEN
      PERFORM flux.install_capture(target);
    END IF;
  END LOOP;
END $$;

-- Only a superuser may create an event trigger: without one, install_capture_all() at start-up
-- still covers the tables that exist then.
DO $$
BEGIN
  IF NOT EXISTS (
      SELECT 1 FROM pg_catalog.pg_event_trigger
      WHERE evtname = 'flux_capture_ddl' AND evtevent = 'ddl_command_end'
        AND evtfoid = 'flux.capture_ddl()'::pg_catalog.regprocedure
        AND evttags = ARRAY['CREATE TABLE', 'ALTER TABLE', 'CREATE TABLE AS', 'SELECT INTO']) THEN
    DROP EVENT TRIGGER IF EXISTS flux_capture_ddl;
    CREATE EVENT TRIGGER flux_capture_ddl ON ddl_command_end
      WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE TABLE AS', 'SELECT INTO')
      EXECUTE FUNCTION flux.capture_ddl();
  END IF;
EXCEPTION WHEN insufficient_privilege THEN
  NULL;
END $$;
)sql";

constexpr char kCaptureAllSql[] = "SELECT flux.install_capture_all()";

struct ConnCloser {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
struct ResultClearer {
  void operator()(PGresult* result) const { PQclear(result); }
};
using Connection = std::unique_ptr<PGconn, ConnCloser>;
using PgResult = std::unique_ptr<PGresult, ResultClearer>;

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// libpq's connection errors do not quote the password, but be sure: mask it wherever it shows.
std::string withoutPassword(std::string message, const std::string& conninfo) {
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), nullptr);
  if (options == nullptr) return message;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (std::string_view(o->keyword) != "password" || o->val == nullptr || *o->val == '\0') {
      continue;
    }
    const std::string secret = o->val;
    for (size_t at = message.find(secret); at != std::string::npos;
         at = message.find(secret, at + 3)) {
      message.replace(at, secret.size(), "***");
    }
  }
  PQconninfoFree(options);
  return message;
}

Result<Connection> connect(const std::string& conninfo, const std::string& purpose) {
  if (PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), nullptr)) {
    PQconninfoFree(options);
  } else {
    // libpq's message would quote pieces of the string, password included.
    return fail(ErrorCode::kInvalidArgument,
                "cannot connect to PostgreSQL to " + purpose +
                    ": the connection string is malformed (check DATABASE_URL)");
  }
  Connection conn(PQconnectdb(conninfo.c_str()));
  if (conn == nullptr || PQstatus(conn.get()) != CONNECTION_OK) {
    std::string reason = conn ? trimmed(PQerrorMessage(conn.get())) : "out of memory";
    return fail(ErrorCode::kUnavailable, "cannot connect to PostgreSQL to " + purpose + ": " +
                                             withoutPassword(reason, conninfo) +
                                             " (is the server running and the connection " +
                                             "string right?)");
  }
  // Notices ("schema flux already exists, skipping") would go to stderr.
  PQsetNoticeProcessor(
      conn.get(), [](void*, const char*) {}, nullptr);
  return conn;
}

// PostgreSQL's message and hint without the CONTEXT lines (plpgsql call stacks).
std::string errorOf(PGconn* conn, const PGresult* result) {
  std::string message;
  if (result != nullptr) {
    if (const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY)) {
      message = primary;
      if (const char* hint = PQresultErrorField(result, PG_DIAG_MESSAGE_HINT)) {
        message += std::string(" (") + hint + ")";
      }
    }
  }
  if (message.empty()) message = trimmed(PQerrorMessage(conn));
  if (message.empty() && result != nullptr) {
    message = std::string("unexpected result ") + PQresStatus(PQresultStatus(result));
  }
  return message;
}

// The error of a failed statement: kUnavailable when the connection is gone (PostgreSQL
// unreachable), else kInvalidArgument (the SQL's fault).
Error statementError(PGconn* conn, const std::string& what, const std::string& error) {
  ErrorCode code =
      PQstatus(conn) == CONNECTION_OK ? ErrorCode::kInvalidArgument : ErrorCode::kUnavailable;
  return Error{code, what + ": " + error, {}};
}

// Runs sql (one or more statements, no parameters), taking every result; the first error wins.
Result<void> exec(PGconn* conn, const char* sql, const std::string& what) {
  PgResult result(PQexec(conn, sql));
  std::string error;
  if (result == nullptr) error = trimmed(PQerrorMessage(conn));
  for (; result != nullptr; result.reset(PQgetResult(conn))) {
    ExecStatusType status = PQresultStatus(result.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && error.empty()) {
      error = errorOf(conn, result.get());
    }
  }
  if (error.empty()) return {};
  return std::unexpected(statementError(conn, what, error));
}

// A parameter of query(): text, or binary (bytea) when binary is set.
struct Param {
  std::string value;
  bool binary = false;
};

// Runs one statement with parameters; returns the first row's first column ("" without one).
Result<std::string> queryValue(PGconn* conn, const char* sql, const std::vector<Param>& params,
                               const std::string& what) {
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
  for (const Param& p : params) {
    values.push_back(p.value.data());
    lengths.push_back(static_cast<int>(p.value.size()));
    formats.push_back(p.binary ? 1 : 0);
  }
  PgResult result(PQexecParams(conn, sql, static_cast<int>(params.size()), nullptr, values.data(),
                               lengths.data(), formats.data(), 0));
  ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return std::unexpected(statementError(conn, what, errorOf(conn, result.get())));
  }
  if (PQntuples(result.get()) < 1 || PQnfields(result.get()) < 1) return std::string();
  return std::string(PQgetvalue(result.get(), 0, 0));
}

// Runs body in a transaction that holds the install lock, then commits. On failure the
// connection is closed, which rolls the transaction back.
Result<void> underInstallLock(const std::string& conninfo, const std::string& purpose,
                              const std::function<Result<void>(PGconn*)>& body) {
  auto conn = connect(conninfo, purpose);
  if (!conn) return std::unexpected(conn.error());
  const std::string what = "cannot " + purpose;
  for (const char* step : {"BEGIN", kInstallLockSql}) {
    if (auto ok = exec(conn->get(), step, what); !ok) return ok;
  }
  if (auto ok = body(conn->get()); !ok) return ok;
  return exec(conn->get(), "COMMIT", what);
}

Result<void> underInstallLock(const std::string& conninfo, const char* sql,
                              const std::string& purpose) {
  return underInstallLock(conninfo, purpose, [&purpose, sql](PGconn* conn) {
    return exec(conn, sql, "cannot " + purpose);
  });
}

// FNV-1a, 64 bits, as hex: names the library file after its bytes.
std::string contentHash(std::string_view bytes) {
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  char buffer[17];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(hash));
  return buffer;
}

std::string quoteLiteral(PGconn* conn, const std::string& text) {
  char* quoted = PQescapeLiteral(conn, text.data(), text.size());
  if (quoted == nullptr) return "''";
  std::string out = quoted;
  PQfreemem(quoted);
  return out;
}

// Replaces flux.capture() by the C library, inside the install transaction (the plpgsql
// definition of kInstallSql is in place). The server writes the library itself (lo_export, as
// the server's own user, so it can read it back wherever flux runs and whoever flux runs as)
// into its data directory, as flux_capture_<content hash>_<database oid>.so: a file is written
// once and never rewritten, since a backend that loaded it maps it (rewriting a mapped library
// crashes that backend), and concurrent installs of one database take turns on the install
// lock (the lock is per database, hence the oid in the name). Returns why not when the server
// cannot use it: a role that is not a superuser (C functions and server-side files need one),
// a server that is not PostgreSQL 15, or any error while writing or loading the library (a
// server on another machine that cannot load this build).
Result<void> installCCapture(PGconn* conn) {
  const std::string what = "cannot install the C capture";
  if (kCaptureLibrary.empty()) {
    return fail(ErrorCode::kUnavailable,
                "this flux was built without PostgreSQL's server headers (scripts/setup.sh)");
  }
  auto server = queryValue(conn,
                           "SELECT pg_catalog.current_setting('server_version_num')::int / 10000 "
                           "|| ' ' || (SELECT rolsuper FROM pg_catalog.pg_roles "
                           "WHERE rolname = current_user)",
                           {}, what);
  if (!server) return std::unexpected(server.error());
  if (!server->starts_with("15 ")) {
    return fail(ErrorCode::kUnavailable, "the server is PostgreSQL " +
                                             server->substr(0, server->find(' ')) +
                                             ", the C capture is built for 15");
  }
  if (server->substr(3) != "true") {
    return fail(ErrorCode::kUnavailable, "the role is not a superuser");
  }
  if (auto ok = exec(conn, "SAVEPOINT flux_capture_c", what); !ok) return ok;
  auto attempt = [&]() -> Result<void> {
    auto path = queryValue(
        conn,
        "SELECT pg_catalog.current_setting('data_directory') || '/flux_capture_' || $1 || '_' "
        "|| oid || '.so' FROM pg_catalog.pg_database WHERE datname = current_database()",
        {{contentHash(kCaptureLibrary)}}, what);
    if (!path) return std::unexpected(path.error());
    const Param library{std::string(kCaptureLibrary), true};
    auto present =
        queryValue(conn,
                   "SELECT coalesce(pg_catalog.pg_read_binary_file($1, 0, $2, true) "
                   "= $3::bytea, false)",
                   {{*path}, {std::to_string(kCaptureLibrary.size() + 1)}, library}, what);
    if (!present) return std::unexpected(present.error());
    if (*present != "t") {
      auto object =
          queryValue(conn, "SELECT pg_catalog.lo_from_bytea(0, $1::bytea)", {library}, what);
      if (!object) return std::unexpected(object.error());
      auto written =
          queryValue(conn, "SELECT pg_catalog.lo_export($1::oid, $2)", {{*object}, {*path}}, what);
      if (!written) return std::unexpected(written.error());
      auto unlinked = queryValue(conn, "SELECT pg_catalog.lo_unlink($1::oid)", {{*object}}, what);
      if (!unlinked) return std::unexpected(unlinked.error());
    }
    const std::string create =
        "CREATE OR REPLACE FUNCTION flux.capture() RETURNS trigger LANGUAGE c AS " +
        quoteLiteral(conn, *path) + ", 'flux_capture'";
    return exec(conn, create.c_str(), what);
  };
  auto installed = attempt();
  if (!installed) {
    if (auto ok = exec(conn, "ROLLBACK TO SAVEPOINT flux_capture_c", what); !ok) return ok;
  }
  if (auto ok = exec(conn, "RELEASE SAVEPOINT flux_capture_c", what); !ok) return ok;
  return installed;
}

bool isHexDigit(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

}  // namespace

// One row per element, in array order: the only plan for a LATERAL call is a nested loop over
// jsonb_array_elements, which yields the elements in order (an ORDER BY would add a sort to
// every request's commit). old and new are computed once per element (OFFSET 0 keeps the
// subquery from being flattened, which would repeat them inside the inlined row_diff).
const char* const kStoreCapturedSql = R"sql(
INSERT INTO flux.state_mutations
  (request_id, schema_name, table_name, pk, row_key, op, old, new, changed_columns, txid, at,
   rolled_back)
SELECT $2::uuid, r.e ->> 's', r.e ->> 't', r.e ->> 'pk',
       flux.row_key(r.e ->> 's', r.e ->> 't', r.e ->> 'pk'), r.e ->> 'op', r.old, r.new,
       d.changed_columns, (r.e ->> 'tx')::bigint, (r.e ->> 'at')::timestamptz, $3::boolean
FROM (SELECT e, nullif(e -> 'old', 'null') AS old, nullif(e -> 'new', 'null') AS new
      FROM jsonb_array_elements($1::jsonb) AS m(e)
      OFFSET 0) AS r
CROSS JOIN LATERAL flux.row_diff(r.old, r.new) AS d)sql";

// Stored before COMMIT, txid is the request's transaction when it has written anything; after
// a ROLLBACK the statement runs in a transaction of its own, whose id would mislead: NULL.
const char* const kStoreZeroRowSql = R"sql(
INSERT INTO flux.state_mutations
  (request_id, schema_name, table_name, pk, row_key, op, old, new, txid, rolled_back,
   rows_affected)
VALUES ($1::uuid, $2, $3, NULL, flux.row_key($2, $3, NULL), $4, $5::jsonb, $6::jsonb,
        CASE WHEN $7::boolean THEN NULL ELSE txid_current_if_assigned() END, $7::boolean, 0))sql";

Result<MutationLogInstall> installMutationLog(const std::string& conninfo, CaptureChoice choice) {
  const std::string purpose = "install the mutation log (schema flux)";
  MutationLogInstall outcome;
  auto installed = underInstallLock(conninfo, purpose, [&](PGconn* conn) -> Result<void> {
    if (auto ok = exec(conn, kInstallSql, "cannot " + purpose); !ok) return ok;
    if (choice == CaptureChoice::kPlpgsqlOnly) return {};
    auto c = installCCapture(conn);
    if (c) {
      outcome.capture = CaptureFunction::kC;
    } else if (PQstatus(conn) != CONNECTION_OK) {
      return std::unexpected(c.error());
    } else {
      outcome.why_plpgsql = c.error().message;
    }
    return {};
  });
  if (!installed) return std::unexpected(installed.error());
  return outcome;
}

std::string_view captureFunctionName(CaptureFunction capture) {
  return capture == CaptureFunction::kC ? "C capture" : "plpgsql capture";
}

Result<void> captureAllTables(const std::string& conninfo) {
  return underInstallLock(conninfo, kCaptureAllSql,
                          "install the mutation capture trigger on the user tables");
}

Result<std::string> beginRequestTransactionSql(std::string_view request_id) {
  bool canonical = request_id.size() == 36;
  for (size_t i = 0; canonical && i < request_id.size(); ++i) {
    bool dash_position = i == 8 || i == 13 || i == 18 || i == 23;
    canonical = dash_position ? request_id[i] == '-' : isHexDigit(request_id[i]);
  }
  if (!canonical) {
    return fail(ErrorCode::kInvalidArgument,
                "request id \"" + std::string(request_id.substr(0, 64)) +
                    "\" is not a UUID in canonical form (8-4-4-4-12 hex digits)");
  }
  return "BEGIN; SET LOCAL flux.request_id = '" + std::string(request_id) +
         "'; SET LOCAL flux.capture = 'on'";
}

}  // namespace flux::data

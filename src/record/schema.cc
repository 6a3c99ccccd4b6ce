#include "record/schema.h"

#include <chrono>
#include <string>

#include "record/blocking_connection.h"

namespace flux::record {
namespace {

// Serializes installs by concurrent flux processes. "flux" in ASCII, then 2 for the execution
// records (1 is the mutation log's; the migrations use the one-key form).
constexpr char kInstallLockSql[] = "SELECT pg_advisory_xact_lock(1718383992, 2)";

constexpr std::chrono::seconds kConnectTimeout{10};

// Everything is CREATE ... IF NOT EXISTS, so running it again is harmless. A later change to
// the table adds ALTER TABLE ... ADD COLUMN IF NOT EXISTS statements here.
constexpr char kRecordSchemaSql[] = R"sql(
-- Another process may create the schema at the same moment (migrations do too): IF NOT EXISTS
-- then fails with a unique violation instead of skipping.
DO $$
BEGIN
  CREATE SCHEMA IF NOT EXISTS flux;
EXCEPTION WHEN unique_violation THEN
  NULL;
END $$;

-- The JSON columns (error, request, response, spans, journal, logs) are text holding JSON that
-- the recorder wrote: PostgreSQL stores it as it comes. As jsonb it parsed and sorted every
-- object, as json it still validated every byte (a recorded hello request: ~30k of the ~76k
-- instructions a row took; bench/record_instructions.sh). Records are read whole, not searched
-- inside; a query that wants to look inside casts (spans::json -> 0 ->> 'name').
-- Indexes: the id, a UUIDv7 made from the clock reading started_at comes from, so it is the
-- time index too (lists, time windows and the live stream's past go by id: an index on
-- started_at cost 12% of a stored record), and the handle (below). Filters on function, path or
-- status read the id range of their window: an index of their own costs every record ~7k
-- instructions of PostgreSQL's (of ~31k), for queries that have a window anyway.
CREATE TABLE IF NOT EXISTS flux.executions (
  id uuid PRIMARY KEY,
  kind text NOT NULL,
  parent_id uuid,
  replay_of uuid,
  tenant text,
  function text,
  deployment_id text,
  git_commit text,
  method text,
  path text,
  status int,
  error text,
  started_at timestamptz NOT NULL,
  duration_us bigint NOT NULL,
  request text,
  response text,
  spans text,
  journal text,
  logs text
);
-- A table made before the JSON columns were text: one rewrite, then never again.
DO $$
DECLARE
  changes text;
BEGIN
  SELECT string_agg(format('ALTER COLUMN %I TYPE text', attname), ', ') INTO changes
  FROM pg_attribute
  WHERE attrelid = 'flux.executions'::regclass AND atttypid = 'json'::regtype
    AND NOT attisdropped;
  IF changes IS NOT NULL THEN
    EXECUTE 'ALTER TABLE flux.executions ' || changes;
  END IF;
END $$;
-- The indexes of an earlier table: time indexes before the id was the time index, and
-- function + id (tail --fn), which cost more than it answered.
DROP INDEX IF EXISTS flux.executions_started_at_idx;
DROP INDEX IF EXISTS flux.executions_function_started_at_idx;
DROP INDEX IF EXISTS flux.executions_function_id_idx;
)sql";

// A hash index: the keys are random, and a B-tree would descend to a random leaf for each.
std::string handleIndexSql() {
  return "CREATE INDEX IF NOT EXISTS executions_handle_idx ON flux.executions USING hash ((" +
         std::string(kHandleKeySql) + "))";
}

}  // namespace

Result<void> installRecordSchema(const std::string& conninfo) {
  auto conn = BlockingConnection::open(conninfo, "install the execution records (flux.executions)",
                                       kConnectTimeout);
  if (!conn) return std::unexpected(conn.error());
  // On failure the connection closes, which rolls the transaction back.
  const std::string handle_index = handleIndexSql();
  for (const char* step :
       {"BEGIN", kInstallLockSql, kRecordSchemaSql, handle_index.c_str(), "COMMIT"}) {
    if (auto ok = conn->exec(step); !ok) return ok;
  }
  return {};
}

}  // namespace flux::record

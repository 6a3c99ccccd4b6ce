#include "record/schema.h"

#include <chrono>

#include "record/blocking_connection.h"

namespace flux::record {
namespace {

// Serializes installs by concurrent flux processes. "flux" in ASCII, then 2 for the execution
// records (1 is the mutation log's; the migrations use the one-key form).
constexpr char kInstallLockSql[] = "SELECT pg_advisory_xact_lock(1718383992, 2)";

constexpr std::chrono::seconds kConnectTimeout{10};

}  // namespace

// Everything is CREATE ... IF NOT EXISTS, so running it again is harmless. A later change to
// the table adds ALTER TABLE ... ADD COLUMN IF NOT EXISTS statements here.
const char* const kRecordSchemaSql = R"sql(
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
-- started_at cost 12% of a stored record), and function + id (tail --fn).
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
-- The time indexes of a table made before the id was the time index.
DROP INDEX IF EXISTS flux.executions_started_at_idx;
DROP INDEX IF EXISTS flux.executions_function_started_at_idx;
-- Nearly every key is unique: deduplication would only cost a pass over each full page.
CREATE INDEX IF NOT EXISTS executions_function_id_idx ON flux.executions (function, id)
  WITH (deduplicate_items = off);
)sql";

Result<void> installRecordSchema(const std::string& conninfo) {
  auto conn = BlockingConnection::open(conninfo, "install the execution records (flux.executions)",
                                       kConnectTimeout);
  if (!conn) return std::unexpected(conn.error());
  // On failure the connection closes, which rolls the transaction back.
  for (const char* step : {"BEGIN", kInstallLockSql, kRecordSchemaSql, "COMMIT"}) {
    if (auto ok = conn->exec(step); !ok) return ok;
  }
  return {};
}

}  // namespace flux::record

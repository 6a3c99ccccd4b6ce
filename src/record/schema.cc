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

-- The JSON columns are json, not jsonb: stored as written, they cost PostgreSQL half the CPU per
-- row (COPY of recorded hello requests: ~11-15 us a row against ~22-29 us as jsonb, which
-- parses and sorts every object), and records are read whole, not searched inside. Indexes:
-- the id (time-ordered UUIDv7), the time, and function + time (tail --fn, why/trace lookups
-- go by id).
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
  error json,
  started_at timestamptz NOT NULL,
  duration_us bigint NOT NULL,
  request json,
  response json,
  spans json,
  journal json,
  logs json
);
CREATE INDEX IF NOT EXISTS executions_started_at_idx ON flux.executions (started_at);
CREATE INDEX IF NOT EXISTS executions_function_started_at_idx
  ON flux.executions (function, started_at);
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

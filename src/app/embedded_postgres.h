// EmbeddedPostgres: the private PostgreSQL 15 cluster `flux dev` runs when no DATABASE_URL is
// set. Lives in <project>/.flux/pg (initdb on first use), listens only on a unix socket, and is
// stopped when this object is destroyed. When flux runs as root, initdb and the server run as
// the unprivileged `postgres` system user (PostgreSQL refuses to run as root).
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "base/error.h"

namespace flux::app {

class EmbeddedPostgres {
 public:
  // initdb if <flux_dir>/pg has no cluster, then pg_ctl start and wait until it accepts
  // connections. Errors say what failed and what to do (e.g. postgresql-15 not installed, or
  // the `postgres` user cannot reach the directory).
  static Result<std::unique_ptr<EmbeddedPostgres>> start(const std::filesystem::path& flux_dir);
  ~EmbeddedPostgres();  // stop()

  // libpq connection string: "host=<socket dir> port=5432 dbname=postgres user=postgres".
  // (The role is not named "flux": its default search_path "$user", public would put the
  // user's unqualified tables into the flux schema.)
  const std::string& connectionString() const { return conninfo_; }
  // pg_ctl stop -m fast, waiting until the server has exited. Idempotent.
  Result<void> stop();

 private:
  EmbeddedPostgres() = default;
  std::filesystem::path data_dir_;
  std::string conninfo_;
  bool running_ = false;
};

}  // namespace flux::app

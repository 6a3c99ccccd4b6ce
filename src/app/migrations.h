// Migrations: applies <project>/migrations/*.sql in name order, each once, each in its own
// transaction, recorded in flux.migrations (created with the flux schema if missing).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"

namespace flux::app {

// Returns the names of the migrations applied by this call (empty when all were applied
// before). A failing migration returns an error naming the file and PostgreSQL's message, and
// leaves the ones before it applied.
Result<std::vector<std::string>> applyMigrations(const std::string& conninfo,
                                                 const std::filesystem::path& migrations_dir);

}  // namespace flux::app

#include "app/migrations.h"

#include <libpq-fe.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <system_error>

namespace flux::app {
namespace {

namespace fs = std::filesystem;

// Serializes concurrent flux processes migrating the same database (any constant works; this is
// "flux" in ASCII).
constexpr char kLockSql[] = "SELECT pg_advisory_lock(1718383992)";

constexpr char kSetupSql[] =
    "CREATE SCHEMA IF NOT EXISTS flux;"
    "CREATE TABLE IF NOT EXISTS flux.migrations ("
    "  name text PRIMARY KEY,"
    "  applied_at timestamptz NOT NULL DEFAULT now())";

struct ConnCloser {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
struct ResultClearer {
  void operator()(PGresult* result) const { PQclear(result); }
};
using Connection = std::unique_ptr<PGconn, ConnCloser>;
using QueryResult = std::unique_ptr<PGresult, ResultClearer>;

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

void replaceAll(std::string& text, const std::string& secret) {
  if (secret.empty()) return;
  for (size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 3)) {
    text.replace(at, secret.size(), "***");
  }
}

// libpq messages about a malformed conninfo may quote pieces of it: mask any password in it,
// whether given as a keyword or in a URI's user:password@ part.
std::string redacted(std::string message, const std::string& conninfo) {
  if (PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), nullptr)) {
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
      if (std::string(o->keyword) == "password" && o->val != nullptr) replaceAll(message, o->val);
    }
    PQconninfoFree(options);
  }
  size_t scheme = conninfo.find("://");
  if (scheme != std::string::npos) {
    size_t start = scheme + 3;
    size_t at = conninfo.find('@', start);
    size_t slash = conninfo.find('/', start);
    if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
      size_t colon = conninfo.find(':', start);
      if (colon != std::string::npos && colon < at) {
        replaceAll(message, conninfo.substr(colon + 1, at - colon - 1));
      }
    }
  }
  return message;
}

bool succeeded(const PGresult* result) {
  switch (PQresultStatus(result)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
      return true;
    default:
      return false;
  }
}

std::string errorOf(PGconn* conn, const PGresult* result) {
  std::string message = result != nullptr ? PQresultErrorMessage(result) : "";
  if (message.empty()) message = PQerrorMessage(conn);
  if (message.empty() && result != nullptr) {
    message = std::string("unexpected result ") + PQresStatus(PQresultStatus(result));
  }
  return trimmed(std::move(message));
}

// A lost connection is PostgreSQL being unreachable; anything else is the SQL's fault.
ErrorCode codeFor(PGconn* conn) {
  return PQstatus(conn) == CONNECTION_OK ? ErrorCode::kInvalidArgument : ErrorCode::kUnavailable;
}

// Runs one or more statements and takes every result, so a COPY in a migration file cannot
// leave the connection stuck. The first error wins.
Result<void> exec(PGconn* conn, const char* sql, const std::string& what) {
  QueryResult result(PQexec(conn, sql));
  if (result == nullptr) return fail(codeFor(conn), what + ": " + errorOf(conn, nullptr));
  std::string error;
  while (result != nullptr) {
    switch (PQresultStatus(result.get())) {
      case PGRES_COPY_IN:
        PQputCopyEnd(conn, "COPY FROM STDIN is not supported in migrations");
        break;
      case PGRES_COPY_OUT: {
        char* row = nullptr;
        while (PQgetCopyData(conn, &row, 0) > 0) PQfreemem(row);
        break;
      }
      default:
        if (!succeeded(result.get()) && error.empty()) error = errorOf(conn, result.get());
    }
    result.reset(PQgetResult(conn));
  }
  if (error.empty()) return {};
  return fail(codeFor(conn), what + ": " + error);
}

Result<std::set<std::string>> appliedNames(PGconn* conn) {
  QueryResult result(PQexec(conn, "SELECT name FROM flux.migrations"));
  if (PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
    return fail(codeFor(conn), "cannot read flux.migrations: " + errorOf(conn, result.get()));
  }
  std::set<std::string> names;
  for (int row = 0; row < PQntuples(result.get()); ++row) {
    names.insert(PQgetvalue(result.get(), row, 0));
  }
  return names;
}

// *.sql files directly in dir, sorted by file name. A missing dir has none.
Result<std::vector<fs::path>> migrationFiles(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return std::vector<fs::path>{};
  if (!fs::is_directory(dir, ec)) {
    return fail(ErrorCode::kInvalidArgument,
                dir.string() + " is not a directory: migrations must be .sql files in it");
  }
  std::vector<fs::path> files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".sql" && it->is_regular_file()) files.push_back(it->path());
  }
  if (ec) {
    return fail(ErrorCode::kUnavailable, "cannot list " + dir.string() + ": " + ec.message());
  }
  std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
    return a.filename().string() < b.filename().string();
  });
  return files;
}

Result<std::string> readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  if (!in) return fail(ErrorCode::kUnavailable, "cannot read migration " + path.string());
  return contents.str();
}

Result<void> applyOne(PGconn* conn, const fs::path& file) {
  const std::string name = file.filename().string();
  auto sql = readFile(file);
  if (!sql) return std::unexpected(sql.error());
  if (auto ok = exec(conn, "BEGIN", "cannot begin migration " + name); !ok) {
    return std::unexpected(ok.error());
  }
  auto apply = [&]() -> Result<void> {
    if (auto ok = exec(conn, sql->c_str(), "migration " + name + " failed"); !ok) return ok;
    const char* params[] = {name.c_str()};
    QueryResult recorded(PQexecParams(conn, "INSERT INTO flux.migrations (name) VALUES ($1)", 1,
                                      nullptr, params, nullptr, nullptr, 0));
    if (!succeeded(recorded.get())) {
      return fail(codeFor(conn),
                  "cannot record migration " + name + ": " + errorOf(conn, recorded.get()));
    }
    return exec(conn, "COMMIT", "migration " + name + " failed at commit");
  };
  auto applied = apply();
  if (!applied) {
    QueryResult rollback(PQexec(conn, "ROLLBACK"));
    return std::unexpected(std::move(applied.error()).with("file", file.string()));
  }
  return {};
}

}  // namespace

Result<std::vector<std::string>> applyMigrations(const std::string& conninfo,
                                                 const fs::path& migrations_dir) {
  auto files = migrationFiles(migrations_dir);
  if (!files) return std::unexpected(files.error());

  Connection conn(PQconnectdb(conninfo.c_str()));
  if (conn == nullptr || PQstatus(conn.get()) != CONNECTION_OK) {
    std::string reason = conn ? trimmed(PQerrorMessage(conn.get())) : "out of memory";
    return fail(ErrorCode::kUnavailable,
                "cannot connect to PostgreSQL to apply migrations: " + redacted(reason, conninfo) +
                    " (is the server running and the connection string right?)");
  }
  // Notices (e.g. "schema flux already exists, skipping") would go to stderr by default.
  PQsetNoticeProcessor(
      conn.get(), [](void*, const char*) {}, nullptr);

  if (auto ok = exec(conn.get(), kLockSql, "cannot lock flux.migrations"); !ok) {
    return std::unexpected(ok.error());
  }
  if (auto ok = exec(conn.get(), kSetupSql, "cannot create flux.migrations"); !ok) {
    return std::unexpected(ok.error());
  }
  auto applied_before = appliedNames(conn.get());
  if (!applied_before) return std::unexpected(applied_before.error());

  std::vector<std::string> applied;
  for (const fs::path& file : *files) {
    std::string name = file.filename().string();
    if (applied_before->contains(name)) continue;
    if (auto ok = applyOne(conn.get(), file); !ok) return std::unexpected(ok.error());
    applied.push_back(std::move(name));
  }
  return applied;
}

}  // namespace flux::app

#include "record/blocking_connection.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

namespace flux::record {
namespace {

struct ResultClearer {
  void operator()(PGresult* result) const { PQclear(result); }
};
using PgResult = std::unique_ptr<PGresult, ResultClearer>;

// libpq sends COPY data in pieces of this size, so a batch never sits in libpq's buffer twice.
constexpr size_t kCopyChunkBytes = 256 * 1024;

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::string masked(std::string message, const std::string& secret) {
  if (secret.empty()) return message;
  for (size_t at = message.find(secret); at != std::string::npos;
       at = message.find(secret, at + 3)) {
    message.replace(at, secret.size(), "***");
  }
  return message;
}

std::string passwordIn(const std::string& conninfo) {
  std::string password;
  if (PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), nullptr)) {
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
      if (std::string(o->keyword) == "password" && o->val != nullptr) password = o->val;
    }
    PQconninfoFree(options);
  }
  return password;
}

bool isShutdownState(const std::string& sqlstate) {
  return sqlstate.starts_with("08") || sqlstate == "57P01" || sqlstate == "57P02" ||
         sqlstate == "57P03";
}

}  // namespace

Result<BlockingConnection> BlockingConnection::open(const std::string& conninfo,
                                                    std::string_view purpose,
                                                    std::chrono::seconds connect_timeout) {
  std::string timeout = std::to_string(std::max<int64_t>(1, connect_timeout.count()));
  // The connection string comes last and is expanded, so what it sets wins over these defaults.
  // Over TCP, a server that vanished (no RST) fails a write after 30 s of unacknowledged data
  // and an idle wait after ~25 s of unanswered keepalives, instead of the kernel's minutes.
  const char* keywords[] = {
      "connect_timeout",  "application_name", "keepalives_idle", "keepalives_interval",
      "keepalives_count", "tcp_user_timeout", "dbname",          nullptr};
  const char* values[] = {timeout.c_str(), "flux-recorder",  "10",   "5", "3",
                          "30000",         conninfo.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  std::string password = passwordIn(conninfo);
  if (conn == nullptr) {
    return fail(ErrorCode::kUnavailable, "cannot " + std::string(purpose) + ": out of memory");
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = masked(trimmed(PQerrorMessage(conn)), password);
    PQfinish(conn);
    return fail(ErrorCode::kUnavailable,
                "cannot " + std::string(purpose) + ": PostgreSQL is not reachable: " + message);
  }
  // NOTICEs ("relation already exists, skipping") are of no use here; libpq would print them.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  return BlockingConnection(conn, std::string(purpose), std::move(password));
}

BlockingConnection::BlockingConnection(PGconn* conn, std::string purpose, std::string password)
    : conn_(conn), purpose_(std::move(purpose)), password_(std::move(password)) {}

bool BlockingConnection::healthy() const { return PQstatus(conn_.get()) == CONNECTION_OK; }

Error BlockingConnection::errorOf(const PGresult* result) const {
  std::string message;
  std::string sqlstate;
  if (result != nullptr) {
    message = trimmed(PQresultErrorMessage(result));
    if (const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE)) sqlstate = state;
  }
  if (message.empty()) message = trimmed(PQerrorMessage(conn_.get()));
  if (message.empty() && result != nullptr) {
    message = std::string("unexpected result ") + PQresStatus(PQresultStatus(result));
  }
  bool unavailable = !healthy() || isShutdownState(sqlstate);
  Error error{unavailable ? ErrorCode::kUnavailable : ErrorCode::kInvalidArgument,
              "cannot " + purpose_ + ": " + masked(std::move(message), password_),
              {}};
  if (!sqlstate.empty()) error.fields.emplace_back("sqlstate", sqlstate);
  return error;
}

Result<void> BlockingConnection::exec(const std::string& sql) {
  PgResult result(PQexec(conn_.get(), sql.c_str()));
  std::optional<Error> error;
  if (result == nullptr) error = errorOf(nullptr);
  // A script yields one result per statement: take them all, the first error wins.
  for (; result != nullptr; result.reset(PQgetResult(conn_.get()))) {
    ExecStatusType status = PQresultStatus(result.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && !error) {
      error = errorOf(result.get());
    }
  }
  if (error) return std::unexpected(std::move(*error));
  return {};
}

Result<std::optional<std::string>> BlockingConnection::query(
    const std::string& sql, const std::vector<std::string>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const std::string& param : params) values.push_back(param.c_str());
  PgResult result(PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(values.size()), nullptr,
                               values.data(), nullptr, nullptr, /*resultFormat=*/0));
  ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    return std::unexpected(errorOf(result.get()));
  }
  if (status == PGRES_TUPLES_OK && PQntuples(result.get()) > 0 && PQnfields(result.get()) > 0 &&
      !PQgetisnull(result.get(), 0, 0)) {
    return std::optional<std::string>(PQgetvalue(result.get(), 0, 0));
  }
  return std::optional<std::string>();
}

Result<uint64_t> BlockingConnection::copyIn(const std::string& copy_sql, std::string_view data) {
  PgResult start(PQexec(conn_.get(), copy_sql.c_str()));
  if (start == nullptr || PQresultStatus(start.get()) != PGRES_COPY_IN) {
    Error error = errorOf(start.get());
    // Drain what is left so the connection is usable for the ROLLBACK.
    while (PGresult* rest = PQgetResult(conn_.get())) PQclear(rest);
    return std::unexpected(std::move(error));
  }
  start.reset();
  for (size_t at = 0; at < data.size(); at += kCopyChunkBytes) {
    std::string_view chunk = data.substr(at, kCopyChunkBytes);
    if (PQputCopyData(conn_.get(), chunk.data(), static_cast<int>(chunk.size())) != 1) {
      return std::unexpected(lostDuringCopy());
    }
  }
  if (PQputCopyEnd(conn_.get(), nullptr) != 1) return std::unexpected(lostDuringCopy());
  std::optional<Error> error;
  uint64_t rows = 0;
  for (PgResult result(PQgetResult(conn_.get())); result != nullptr;
       result.reset(PQgetResult(conn_.get()))) {
    if (PQresultStatus(result.get()) == PGRES_COMMAND_OK) {
      rows = std::strtoull(PQcmdTuples(result.get()), nullptr, 10);
    } else if (!error) {
      error = errorOf(result.get());
    }
  }
  if (error) return std::unexpected(std::move(*error));
  return rows;
}

Error BlockingConnection::lostDuringCopy() const {
  // libpq is left inside the COPY: the connection is of no further use.
  Error error = errorOf(nullptr);
  error.code = ErrorCode::kUnavailable;
  return error;
}

bool isUnavailable(const Error& error) { return error.code == ErrorCode::kUnavailable; }

std::string sqlstateOf(const Error& error) {
  for (const auto& [key, value] : error.fields) {
    if (key == "sqlstate") return value;
  }
  return "";
}

}  // namespace flux::record

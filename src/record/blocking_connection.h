// BlockingConnection: one synchronous libpq connection, for the recorder thread and for
// installRecordSchema() at start-up. Never use it on a worker thread.
//
// Failures are Errors: kUnavailable when the connection is gone (or the server is shutting
// down, SQLSTATE class 08 / 57P0x), otherwise kInvalidArgument with PostgreSQL's message and
// the field "sqlstate". Messages never contain the connection string's password.
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace flux::record {

class BlockingConnection {
 public:
  // Connects, giving up after connect_timeout (libpq's, in whole seconds, at least 1) unless the
  // connection string sets its own; TCP keepalives and a 30 s TCP user timeout likewise.
  // application_name defaults to "flux-recorder". `purpose` starts error messages ("cannot
  // <purpose>: ...").
  static Result<BlockingConnection> open(const std::string& conninfo, std::string_view purpose,
                                         std::chrono::seconds connect_timeout);

  // Runs a script of statements without parameters (simple protocol).
  Result<void> exec(const std::string& sql);
  // Runs one statement with text parameters; returns the first column of the first row, if
  // there is one.
  Result<std::optional<std::string>> query(const std::string& sql,
                                           const std::vector<std::string>& params);
  // Runs `copy_sql` (a COPY ... FROM STDIN) and sends data as its input. Returns the rows
  // copied.
  Result<uint64_t> copyIn(const std::string& copy_sql, std::string_view data);

  bool healthy() const;
  PGconn* get() const { return conn_.get(); }

 private:
  struct Closer {
    void operator()(PGconn* conn) const { PQfinish(conn); }
  };
  BlockingConnection(PGconn* conn, std::string purpose, std::string password);

  // The error of a failed result (or of the connection when result is null).
  Error errorOf(const PGresult* result) const;
  Error lostDuringCopy() const;

  std::unique_ptr<PGconn, Closer> conn_;
  std::string purpose_;
  std::string password_;  // masked out of messages
};

// True when an error means PostgreSQL is unreachable (rather than that a statement was wrong).
bool isUnavailable(const Error& error);
// The SQLSTATE of an error from BlockingConnection, or empty.
std::string sqlstateOf(const Error& error);

}  // namespace flux::record

// PgConnection: one libpq connection driven without blocking from a worker's io_context.
//
// libpq runs in non-blocking mode; the connection's socket is watched by asio for readable /
// writable, so a worker never waits on PostgreSQL. Queries queue and run one at a time, in
// order, with text-format parameters (always bound, never spliced into the SQL) and text
// results. Statements marked for preparation are prepared once per connection and reused.
// NOTICEs (e.g. the mutation capture's) go to the notice handler as they arrive, including
// inside a transaction that later rolls back.
//
// Thread: created, used and destroyed on one worker thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"

namespace flux::data {

struct PgColumn {
  std::string name;
  uint32_t type_oid = 0;  // pg_type oid: 16 bool, 20 int8, 23 int4, 25 text, 3802 jsonb, ...
};

struct QueryResult {
  std::vector<PgColumn> columns;
  // Text-format values; nullopt is SQL NULL.
  std::vector<std::vector<std::optional<std::string>>> rows;
  std::string command_tag;  // "UPDATE 3", "SELECT 1", "BEGIN"
  uint64_t affected = 0;    // rows affected (PQcmdTuples), or rows returned
};

struct PgNotice {
  std::string sqlstate;  // e.g. "FX001" for the mutation capture
  std::string message;
};

using QueryParams = std::vector<std::optional<std::string>>;
using QueryCallback = std::move_only_function<void(Result<QueryResult>)>;

enum class Prepare { kNo, kYes };

class PgConnection {
 public:
  using ConnectCallback = std::move_only_function<void(Result<std::unique_ptr<PgConnection>>)>;

  // Connects asynchronously. Fails with kUnavailable (a message without any password) when the
  // server cannot be reached within `timeout`.
  static void connect(boost::asio::io_context& loop, std::string conninfo,
                      std::chrono::milliseconds timeout, ConnectCallback done);
  // Closes the connection. Callbacks of queries still queued or running are destroyed without
  // being called. Safe inside any of this connection's callbacks (query or notice handler).
  ~PgConnection();

  // Runs one statement (extended protocol; `sql` holds exactly one statement). PostgreSQL's
  // errors come back as kInvalidArgument with the server's message and SQLSTATE in the field
  // "sqlstate"; a broken connection as kUnavailable. Callbacks run on the worker thread, in
  // the order the queries were issued.
  void query(std::string sql, QueryParams params, Prepare prepare, QueryCallback done);
  // Runs a script of one or more statements with no parameters (simple protocol), e.g.
  // "BEGIN; SET LOCAL ...". The result is the last statement's.
  void execute(std::string script, QueryCallback done);

  void setNoticeHandler(std::function<void(const PgNotice&)> handler);
  // False once the connection broke; the pool then drops it.
  bool healthy() const;
  // True while no query is queued or running.
  bool idle() const;
  // True while a transaction is open (BEGIN without COMMIT/ROLLBACK yet, or an aborted one).
  // The pool rolls such a connection back before another request can lease it.
  bool inTransaction() const;

 private:
  struct Impl;
  explicit PgConnection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace flux::data

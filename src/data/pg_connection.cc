#include "data/pg_connection.h"

#include <libpq-fe.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cctype>
#include <charconv>
#include <cstring>
#include <deque>
#include <string_view>
#include <unordered_map>
#include <utility>  // must precede asio headers under g++ 12

namespace flux::data {

namespace asio = boost::asio;

namespace {

// Statements prepared per connection. Past this, new SQL runs unprepared: a program that builds
// SQL dynamically must not grow the server's memory without bound.
constexpr size_t kMaxPreparedStatements = 256;
// The protocol counts parameters in 16 bits.
constexpr size_t kMaxParams = 65535;
// Every Flux session formats values the same way, whatever the server's defaults: the runtime
// parses text results, and recorded results must compare equal on replay. Placed after any
// options of the connection string, so these win.
constexpr char kSessionOptions[] = "-c TimeZone=UTC -c DateStyle=ISO,MDY -c extra_float_digits=3";
constexpr char kApplicationName[] = "flux";

struct ResultClearer {
  void operator()(PGresult* result) const { PQclear(result); }
};
using PgResultPtr = std::unique_ptr<PGresult, ResultClearer>;

// libpq messages end in a newline and indent their second lines with a tab: make one line.
std::string oneLine(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\n' || c == '\t' || c == '\r') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

void replaceAll(std::string& text, std::string_view secret, std::string_view mask) {
  if (secret.empty()) return;
  for (size_t at = text.find(secret); at != std::string::npos;
       at = text.find(secret, at + mask.size())) {
    text.replace(at, secret.size(), mask);
  }
}

// The passwords a connection string carries: as a keyword, and as a URI's user:password@ part
// (raw, since libpq quotes a URI it cannot decode back verbatim).
std::vector<std::string> secretsOf(const std::string& conninfo) {
  std::vector<std::string> secrets;
  if (PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), nullptr)) {
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
      if (std::strcmp(o->keyword, "password") == 0 && o->val != nullptr && *o->val != '\0') {
        secrets.emplace_back(o->val);
      }
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
      if (colon != std::string::npos && colon < at && colon + 1 < at) {
        secrets.push_back(conninfo.substr(colon + 1, at - colon - 1));
      }
    }
  }
  return secrets;
}

// Masks the passwords of the connection string, and any `password=...` a message quotes.
std::string redacted(std::string message, const std::vector<std::string>& secrets) {
  for (const std::string& secret : secrets) replaceAll(message, secret, "***");
  constexpr std::string_view kKey = "password=";
  for (size_t at = 0; at + kKey.size() <= message.size(); ++at) {
    bool match = true;
    for (size_t i = 0; i < kKey.size() && match; ++i) {
      match = std::tolower(static_cast<unsigned char>(message[at + i])) == kKey[i];
    }
    if (!match) continue;
    size_t start = at + kKey.size();
    size_t end = start;
    if (end < message.size() && message[end] == '\'') {
      for (++end; end < message.size() && message[end] != '\''; ++end) {
        if (message[end] == '\\') ++end;
      }
      end = std::min(end + 1, message.size());
    } else {
      while (end < message.size() && !std::isspace(static_cast<unsigned char>(message[end]))) {
        ++end;
      }
    }
    message.replace(start, end - start, "***");
    at = start + 2;
  }
  return message;
}

std::string field(const PGresult* result, int code) {
  const char* value = PQresultErrorField(result, code);
  return value != nullptr ? value : "";
}

// FATAL and PANIC end the session: the server closes the connection after sending them.
bool endsSession(const PGresult* result) {
  std::string severity = field(result, PG_DIAG_SEVERITY_NONLOCALIZED);
  return severity == "FATAL" || severity == "PANIC";
}

// PostgreSQL's error, as the statement's failure: the primary message with its detail and hint.
Error statementError(const PGresult* result) {
  std::string message = field(result, PG_DIAG_MESSAGE_PRIMARY);
  if (message.empty()) message = oneLine(PQresultErrorMessage(result));
  if (message.empty()) message = "PostgreSQL reported an error without a message";
  std::string detail = field(result, PG_DIAG_MESSAGE_DETAIL);
  std::string hint = field(result, PG_DIAG_MESSAGE_HINT);
  if (!detail.empty()) message += ": " + detail;
  if (!hint.empty()) message += " (hint: " + hint + ")";
  Error error{ErrorCode::kInvalidArgument, std::move(message), {}};
  error.fields.emplace_back("sqlstate", field(result, PG_DIAG_SQLSTATE));
  std::string constraint = field(result, PG_DIAG_CONSTRAINT_NAME);
  if (!constraint.empty()) error.fields.emplace_back("constraint", std::move(constraint));
  return error;
}

QueryResult toQueryResult(const PGresult* result) {
  QueryResult out;
  if (result == nullptr) return out;
  int columns = PQnfields(result);
  int rows = PQntuples(result);
  out.columns.reserve(columns);
  for (int c = 0; c < columns; ++c) {
    out.columns.push_back(PgColumn{PQfname(result, c), static_cast<uint32_t>(PQftype(result, c))});
  }
  out.rows.reserve(rows);
  for (int r = 0; r < rows; ++r) {
    std::vector<std::optional<std::string>>& row = out.rows.emplace_back();
    row.reserve(columns);
    for (int c = 0; c < columns; ++c) {
      if (PQgetisnull(result, r, c)) {
        row.emplace_back(std::nullopt);
      } else {
        row.emplace_back(std::string(PQgetvalue(result, r, c), PQgetlength(result, r, c)));
      }
    }
  }
  out.command_tag = PQcmdStatus(const_cast<PGresult*>(result));
  std::string_view affected = PQcmdTuples(const_cast<PGresult*>(result));
  uint64_t count = 0;
  if (!affected.empty() &&
      std::from_chars(affected.data(), affected.data() + affected.size(), count).ec ==
          std::errc{}) {
    out.affected = count;
  } else {
    out.affected = static_cast<uint64_t>(rows);
  }
  return out;
}

}  // namespace

struct PgConnection::Impl {
  // One queued statement (query) or script (execute).
  struct Pending {
    enum class Kind { kQuery, kScript };
    Kind kind = Kind::kQuery;
    std::string sql;
    QueryParams params;
    Prepare prepare = Prepare::kNo;
    QueryCallback done;
  };

  // What is on the wire for the queue's front: nothing, its PQsendPrepare, or the statement.
  enum class Stage { kIdle, kPreparing, kRunning };

  struct ConnectAttempt;

  explicit Impl(asio::io_context& loop) : loop_(loop), socket_(loop) {}
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  static void connect(asio::io_context& loop, std::string conninfo,
                      std::chrono::milliseconds timeout, ConnectCallback done);
  static void pollConnect(const std::shared_ptr<ConnectAttempt>& attempt,
                          PostgresPollingStatusType status);
  static void settleConnect(const std::shared_ptr<ConnectAttempt>& attempt, Error error);
  static void finishConnect(const std::shared_ptr<ConnectAttempt>& attempt);
  static void receiveNotice(void* arg, const PGresult* result);

  bool watchSocket();
  void close();
  void armRead();
  void armWrite();
  void onReadable();
  void enqueue(Pending pending);
  void startNext();
  Result<void> send(Pending& pending);
  void flush();
  void collectResults();
  void takeResult(PgResultPtr result);
  void finishStage();
  void complete(Result<QueryResult> result);
  bool deliverNotices();
  void failSoon(QueryCallback done, Error error);
  void lose(std::string reason, std::string sqlstate);
  void loseWithLibpqError();
  void resetStatement();

  asio::io_context& loop_;
  PGconn* conn_ = nullptr;
  // Watches PQsocket(conn_). libpq owns the descriptor: released (never closed) before PQfinish.
  asio::posix::stream_descriptor socket_;
  std::vector<std::string> secrets_;
  // Shared only for its weak_ptrs: handlers queued in asio and code that runs user callbacks
  // check through them whether this connection was destroyed meanwhile.
  std::shared_ptr<char> alive_ = std::make_shared<char>();
  bool read_armed_ = false;
  bool write_armed_ = false;

  std::deque<Pending> queue_;  // the front is the one on the wire when stage_ != kIdle
  Stage stage_ = Stage::kIdle;
  std::string statement_name_;  // kPreparing: the name being prepared
  bool copy_out_ = false;       // draining a COPY TO STDOUT nobody asked to read
  std::optional<Error> error_;  // the first error of the statement or script
  PgResultPtr last_;            // the last result without rows
  PgResultPtr last_rows_;       // the last result with rows

  std::unordered_map<std::string, std::string> prepared_;  // sql -> statement name
  uint64_t next_statement_ = 0;

  bool broken_ = false;
  Error lost_;  // what queries on a broken connection fail with
  // A FATAL the server sent while no statement ran (e.g. pg_terminate_backend), before hanging up.
  std::optional<std::pair<std::string, std::string>> fatal_;

  std::function<void(const PgNotice&)> notice_handler_;
  std::vector<PgNotice> notices_;  // received inside libpq calls, delivered after them
};

// A connection being established. Shared by the socket wait and the timeout timer, because
// both are in flight at once: the first to finish settles it, the other finds it settled.
struct PgConnection::Impl::ConnectAttempt {
  ConnectAttempt(asio::io_context& loop, std::unique_ptr<Impl> impl,
                 std::chrono::milliseconds timeout, ConnectCallback done)
      : impl(std::move(impl)), timer(loop), timeout(timeout), done(std::move(done)) {}
  std::unique_ptr<Impl> impl;
  asio::steady_timer timer;
  std::chrono::milliseconds timeout;
  ConnectCallback done;
  bool settled = false;
};

PgConnection::Impl::~Impl() {
  alive_.reset();
  close();
  // queue_ goes with its callbacks uncalled: a destroyed connection never calls back.
}

void PgConnection::Impl::connect(asio::io_context& loop, std::string conninfo,
                                 std::chrono::milliseconds timeout, ConnectCallback done) {
  auto impl = std::make_unique<Impl>(loop);
  impl->secrets_ = secretsOf(conninfo);
  auto failSoon = [&loop, &done](std::string message) {
    asio::post(loop, [done = std::move(done), message = std::move(message)]() mutable {
      done(fail(ErrorCode::kUnavailable, std::move(message)));
    });
  };

  char* parse_error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(conninfo.c_str(), &parse_error);
  if (parsed == nullptr) {
    std::string reason = parse_error != nullptr ? oneLine(parse_error) : "out of memory";
    PQfreemem(parse_error);
    return failSoon("invalid PostgreSQL connection string: " + redacted(reason, impl->secrets_));
  }
  std::string options;
  bool names_itself = false;
  for (PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || *o->val == '\0') continue;
    std::string_view keyword = o->keyword;
    if (keyword == "options") options = o->val;
    if (keyword == "application_name" || keyword == "fallback_application_name") {
      names_itself = true;
    }
  }
  PQconninfoFree(parsed);
  options = options.empty() ? kSessionOptions : options + " " + kSessionOptions;

  // The connection string comes first and is expanded in place; later entries override it.
  std::vector<const char*> keys = {"dbname", "options"};
  std::vector<const char*> values = {conninfo.c_str(), options.c_str()};
  if (!names_itself) {
    keys.push_back("fallback_application_name");
    values.push_back(kApplicationName);
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  impl->conn_ = PQconnectStartParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (impl->conn_ == nullptr) return failSoon("cannot connect to PostgreSQL: out of memory");
  if (PQstatus(impl->conn_) == CONNECTION_BAD) {
    return failSoon("cannot connect to PostgreSQL: " +
                    redacted(oneLine(PQerrorMessage(impl->conn_)), impl->secrets_));
  }
  PQsetNoticeReceiver(impl->conn_, &Impl::receiveNotice, impl.get());

  auto attempt = std::make_shared<ConnectAttempt>(loop, std::move(impl), timeout, std::move(done));
  attempt->timer.expires_after(timeout);
  attempt->timer.async_wait([attempt](const boost::system::error_code& ec) {
    if (ec || attempt->settled) return;
    settleConnect(attempt, Error{ErrorCode::kUnavailable,
                                 "cannot connect to PostgreSQL within " +
                                     std::to_string(attempt->timeout.count()) + " ms",
                                 {}});
  });
  // libpq's protocol: start as if PQconnectPoll had asked to wait for writable.
  pollConnect(attempt, PGRES_POLLING_WRITING);
}

void PgConnection::Impl::pollConnect(const std::shared_ptr<ConnectAttempt>& attempt,
                                     PostgresPollingStatusType status) {
  Impl& impl = *attempt->impl;
  if (status == PGRES_POLLING_OK) return finishConnect(attempt);
  if (status == PGRES_POLLING_FAILED) {
    return settleConnect(attempt,
                         Error{ErrorCode::kUnavailable,
                               "cannot connect to PostgreSQL: " +
                                   redacted(oneLine(PQerrorMessage(impl.conn_)), impl.secrets_),
                               {}});
  }
  // libpq may open a new socket between polls (next host, SSL or GSS fallback), and the new
  // one can reuse the old number: register afresh each time.
  if (!impl.watchSocket()) {
    return settleConnect(
        attempt,
        Error{ErrorCode::kUnavailable, "cannot connect to PostgreSQL: libpq has no socket", {}});
  }
  auto wait = status == PGRES_POLLING_READING ? asio::posix::stream_descriptor::wait_read
                                              : asio::posix::stream_descriptor::wait_write;
  impl.socket_.async_wait(wait, [attempt](const boost::system::error_code& ec) {
    if (attempt->settled) return;
    if (ec) {
      return settleConnect(
          attempt,
          Error{ErrorCode::kUnavailable, "cannot connect to PostgreSQL: " + ec.message(), {}});
    }
    pollConnect(attempt, PQconnectPoll(attempt->impl->conn_));
  });
}

void PgConnection::Impl::settleConnect(const std::shared_ptr<ConnectAttempt>& attempt,
                                       Error error) {
  attempt->settled = true;
  attempt->timer.cancel();
  attempt->impl.reset();  // releases the socket (aborting its wait) and closes the connection
  ConnectCallback done = std::move(attempt->done);
  done(std::unexpected(std::move(error)));
}

void PgConnection::Impl::finishConnect(const std::shared_ptr<ConnectAttempt>& attempt) {
  Impl& impl = *attempt->impl;
  if (PQsetnonblocking(impl.conn_, 1) != 0 || !impl.watchSocket()) {
    return settleConnect(attempt,
                         Error{ErrorCode::kUnavailable,
                               "cannot use the PostgreSQL connection without blocking: " +
                                   redacted(oneLine(PQerrorMessage(impl.conn_)), impl.secrets_),
                               {}});
  }
  attempt->settled = true;
  attempt->timer.cancel();
  impl.notices_.clear();  // startup chatter, before anyone could set a handler
  impl.armRead();
  std::unique_ptr<PgConnection> connection(new PgConnection(std::move(attempt->impl)));
  ConnectCallback done = std::move(attempt->done);
  done(std::move(connection));
}

// Called by libpq from inside PQconsumeInput / PQisBusy / PQgetResult on this thread. Only
// records: user code runs after the libpq call returned (it may destroy the connection).
void PgConnection::Impl::receiveNotice(void* arg, const PGresult* result) {
  auto* impl = static_cast<Impl*>(arg);
  if (endsSession(result)) {
    // A FATAL outside a statement (libpq reports those as notices): the connection is ending.
    std::string message = field(result, PG_DIAG_MESSAGE_PRIMARY);
    if (message.empty()) message = oneLine(PQresultErrorMessage(result));
    impl->fatal_.emplace(std::move(message), field(result, PG_DIAG_SQLSTATE));
    return;
  }
  std::string message = field(result, PG_DIAG_MESSAGE_PRIMARY);
  if (message.empty()) message = oneLine(PQresultErrorMessage(result));
  impl->notices_.push_back(PgNotice{field(result, PG_DIAG_SQLSTATE), std::move(message)});
}

bool PgConnection::Impl::watchSocket() {
  if (socket_.is_open()) socket_.release();
  int fd = PQsocket(conn_);
  if (fd < 0) return false;
  boost::system::error_code ec;
  socket_.assign(fd, ec);
  return !ec;
}

void PgConnection::Impl::close() {
  // release(), not close(): the descriptor is libpq's, and PQfinish closes it.
  if (socket_.is_open()) socket_.release();
  if (conn_ != nullptr) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
}

// One read wait is outstanding whenever the connection is open, idle or not: the reactor is
// edge-triggered, so readiness that arrived with no wait queued would otherwise be missed, and
// an idle connection notices at once when the server hangs up on it.
void PgConnection::Impl::armRead() {
  if (read_armed_ || conn_ == nullptr) return;
  read_armed_ = true;
  socket_.async_wait(
      asio::posix::stream_descriptor::wait_read,
      [this, alive = std::weak_ptr<char>(alive_)](const boost::system::error_code& ec) {
        if (alive.expired()) return;
        read_armed_ = false;
        if (ec == asio::error::operation_aborted || conn_ == nullptr) return;
        onReadable();
      });
}

void PgConnection::Impl::armWrite() {
  if (write_armed_ || conn_ == nullptr) return;
  write_armed_ = true;
  socket_.async_wait(
      asio::posix::stream_descriptor::wait_write,
      [this, alive = std::weak_ptr<char>(alive_)](const boost::system::error_code& ec) {
        if (alive.expired()) return;
        write_armed_ = false;
        if (ec == asio::error::operation_aborted || conn_ == nullptr) return;
        flush();
      });
}

void PgConnection::Impl::onReadable() {
  if (!PQconsumeInput(conn_)) return loseWithLibpqError();
  std::weak_ptr<char> alive = alive_;
  if (stage_ != Stage::kIdle) {
    collectResults();
    if (alive.expired()) return;
  } else {
    PQisBusy(conn_);  // parses what arrived while idle: notices, or a FATAL before a hang-up
    if (!deliverNotices()) return;
    if (fatal_) {
      auto [message, sqlstate] = *fatal_;
      return lose(message, sqlstate);
    }
  }
  if (broken_) return;
  while (PGnotify* notify = PQnotifies(conn_)) PQfreemem(notify);  // no LISTEN API here yet
  armRead();
}

void PgConnection::Impl::enqueue(Pending pending) {
  if (broken_) return failSoon(std::move(pending.done), lost_);
  queue_.push_back(std::move(pending));
  startNext();
}

// Puts the next queued statement on the wire. A statement that cannot even be sent fails
// through a posted callback, so that query() never calls back before it returns.
void PgConnection::Impl::startNext() {
  while (stage_ == Stage::kIdle && !queue_.empty() && !broken_) {
    Result<void> sent = send(queue_.front());
    if (sent) return flush();
    if (PQstatus(conn_) == CONNECTION_BAD) return loseWithLibpqError();
    Pending failed = std::move(queue_.front());
    queue_.pop_front();
    resetStatement();
    failSoon(std::move(failed.done), std::move(sent.error()));
  }
}

Result<void> PgConnection::Impl::send(Pending& pending) {
  if (pending.sql.find('\0') != std::string::npos) {
    return fail(ErrorCode::kInvalidArgument, "the SQL text contains a NUL byte");
  }
  if (pending.params.size() > kMaxParams) {
    return fail(ErrorCode::kInvalidArgument,
                "too many query parameters: " + std::to_string(pending.params.size()) +
                    " (PostgreSQL takes at most " + std::to_string(kMaxParams) + ")");
  }
  std::vector<const char*> values;
  values.reserve(pending.params.size());
  for (size_t i = 0; i < pending.params.size(); ++i) {
    const std::optional<std::string>& param = pending.params[i];
    if (param && param->find('\0') != std::string::npos) {
      return fail(ErrorCode::kInvalidArgument,
                  "query parameter $" + std::to_string(i + 1) +
                      " contains a NUL byte, which PostgreSQL text cannot hold");
    }
    values.push_back(param ? param->c_str() : nullptr);
  }
  int count = static_cast<int>(values.size());
  int ok = 0;
  if (pending.kind == Pending::Kind::kScript) {
    ok = PQsendQuery(conn_, pending.sql.c_str());
    stage_ = Stage::kRunning;
  } else if (stage_ == Stage::kPreparing) {
    // The statement was just prepared: run it.
    ok = PQsendQueryPrepared(conn_, statement_name_.c_str(), count, values.data(), nullptr, nullptr,
                             0);
    stage_ = Stage::kRunning;
  } else if (pending.prepare == Prepare::kYes) {
    auto found = prepared_.find(pending.sql);
    if (found != prepared_.end()) {
      statement_name_ = found->second;
      ok = PQsendQueryPrepared(conn_, statement_name_.c_str(), count, values.data(), nullptr,
                               nullptr, 0);
      stage_ = Stage::kRunning;
    } else if (prepared_.size() < kMaxPreparedStatements) {
      statement_name_ = "fx" + std::to_string(++next_statement_);
      ok = PQsendPrepare(conn_, statement_name_.c_str(), pending.sql.c_str(), count, nullptr);
      stage_ = Stage::kPreparing;
    } else {
      ok = PQsendQueryParams(conn_, pending.sql.c_str(), count, nullptr, values.data(), nullptr,
                             nullptr, 0);
      stage_ = Stage::kRunning;
    }
  } else {
    ok = PQsendQueryParams(conn_, pending.sql.c_str(), count, nullptr, values.data(), nullptr,
                           nullptr, 0);
    stage_ = Stage::kRunning;
  }
  if (ok) return {};
  stage_ = Stage::kIdle;
  return fail(ErrorCode::kInvalidArgument, redacted(oneLine(PQerrorMessage(conn_)), secrets_));
}

void PgConnection::Impl::flush() {
  if (conn_ == nullptr) return;
  int status = PQflush(conn_);
  if (status < 0) return loseWithLibpqError();
  if (status > 0) return armWrite();
  // Everything is sent; the results arrive through the read wait that is always armed.
}

// Takes every result libpq has complete, without blocking: PQgetResult only when !PQisBusy.
void PgConnection::Impl::collectResults() {
  std::weak_ptr<char> alive = alive_;
  while (stage_ != Stage::kIdle && !broken_) {
    if (copy_out_) {
      char* row = nullptr;
      int status = PQgetCopyData(conn_, &row, /*async=*/1);
      if (row != nullptr) PQfreemem(row);
      if (status > 0) continue;
      if (status == 0) break;  // more rows to come
      if (status == -2) return loseWithLibpqError();
      copy_out_ = false;
      continue;
    }
    if (PQisBusy(conn_)) break;
    PGresult* result = PQgetResult(conn_);
    if (result == nullptr) {
      finishStage();
      if (alive.expired()) return;
      continue;
    }
    takeResult(PgResultPtr(result));
  }
  if (broken_) return;
  // Notices of a statement still running are delivered as they come.
  deliverNotices();
}

void PgConnection::Impl::takeResult(PgResultPtr result) {
  switch (PQresultStatus(result.get())) {
    case PGRES_TUPLES_OK:
      last_rows_ = std::move(result);
      break;
    case PGRES_COMMAND_OK:
    case PGRES_EMPTY_QUERY:
      last_ = std::move(result);
      break;
    case PGRES_FATAL_ERROR: {
      if (endsSession(result.get()) || PQstatus(conn_) == CONNECTION_BAD) {
        std::string message = field(result.get(), PG_DIAG_MESSAGE_PRIMARY);
        if (message.empty()) message = oneLine(PQresultErrorMessage(result.get()));
        return lose(redacted(message, secrets_), field(result.get(), PG_DIAG_SQLSTATE));
      }
      std::string sqlstate = field(result.get(), PG_DIAG_SQLSTATE);
      if (sqlstate == "26000") {
        // Someone ran DEALLOCATE (ALL): forget the names, statements get prepared again.
        prepared_.clear();
      } else if (sqlstate == "0A000" && !queue_.empty() &&
                 queue_.front().prepare == Prepare::kYes) {
        // "cached plan must not change result type": the table changed under a prepared
        // statement (ALTER TABLE ... ADD COLUMN under a SELECT *). This run fails; the next one
        // prepares the statement again.
        prepared_.erase(queue_.front().sql);
      }
      if (!error_) error_ = statementError(result.get());
      break;
    }
    case PGRES_COPY_IN:
      // No API feeds COPY data: end it, and the server fails the statement with this reason.
      if (PQputCopyEnd(conn_, "COPY FROM STDIN is not supported by Flux: use INSERT") != 1) {
        return loseWithLibpqError();
      }
      flush();
      break;
    case PGRES_COPY_OUT:
      copy_out_ = true;
      if (!error_) {
        error_ = Error{
            ErrorCode::kInvalidArgument, "COPY TO STDOUT is not supported by Flux: use SELECT", {}};
      }
      break;
    case PGRES_COPY_BOTH:
      return lose("the server started a replication stream (COPY BOTH)", "");
    default:
      if (!error_) {
        error_ = Error{ErrorCode::kInternal,
                       std::string("unexpected PostgreSQL result ") +
                           PQresStatus(PQresultStatus(result.get())),
                       {}};
      }
  }
  if (conn_ != nullptr && PQstatus(conn_) == CONNECTION_BAD) loseWithLibpqError();
}

// The front's results are all in (PQgetResult returned null).
void PgConnection::Impl::finishStage() {
  if (stage_ == Stage::kPreparing) {
    if (error_) return complete(std::unexpected(std::move(*error_)));
    prepared_.emplace(queue_.front().sql, statement_name_);
    resetStatement();
    Result<void> sent = send(queue_.front());
    if (!sent) {
      if (PQstatus(conn_) == CONNECTION_BAD) return loseWithLibpqError();
      return complete(std::unexpected(std::move(sent.error())));
    }
    return flush();
  }
  if (error_) return complete(std::unexpected(std::move(*error_)));
  PgResultPtr& chosen = last_rows_ ? last_rows_ : last_;
  complete(toQueryResult(chosen.get()));
}

// Calls the front's callback (from an asio handler, never from inside query()), then starts
// the next statement unless the callback destroyed this connection.
void PgConnection::Impl::complete(Result<QueryResult> result) {
  Pending done = std::move(queue_.front());
  queue_.pop_front();
  stage_ = Stage::kIdle;
  resetStatement();
  std::weak_ptr<char> alive = alive_;
  if (!deliverNotices()) return;
  done.done(std::move(result));
  if (alive.expired()) return;
  startNext();
}

// Returns false when a handler destroyed this connection.
bool PgConnection::Impl::deliverNotices() {
  if (notices_.empty()) return true;
  std::vector<PgNotice> batch;
  batch.swap(notices_);
  if (!notice_handler_) return true;
  // A copy: the handler may replace itself or destroy the connection.
  std::function<void(const PgNotice&)> handler = notice_handler_;
  std::weak_ptr<char> alive = alive_;
  for (const PgNotice& notice : batch) {
    handler(notice);
    if (alive.expired()) return false;
  }
  return true;
}

void PgConnection::Impl::failSoon(QueryCallback done, Error error) {
  asio::post(loop_, [alive = std::weak_ptr<char>(alive_), done = std::move(done),
                     error = std::move(error)]() mutable {
    if (alive.expired()) return;
    done(std::unexpected(std::move(error)));
  });
}

// The connection is gone for good: close it and fail everything queued, in order, through one
// posted handler (never synchronously: lose() runs inside query() when a send fails).
void PgConnection::Impl::lose(std::string reason, std::string sqlstate) {
  if (broken_) return;
  broken_ = true;
  lost_ = Error{ErrorCode::kUnavailable, "PostgreSQL connection lost: " + reason, {}};
  if (!sqlstate.empty()) lost_.fields.emplace_back("sqlstate", std::move(sqlstate));
  close();
  stage_ = Stage::kIdle;
  resetStatement();
  std::deque<Pending> failed;
  failed.swap(queue_);
  std::vector<PgNotice> notices;
  notices.swap(notices_);
  if (failed.empty() && notices.empty()) return;
  asio::post(loop_, [this, alive = std::weak_ptr<char>(alive_), failed = std::move(failed),
                     notices = std::move(notices), error = lost_]() mutable {
    if (alive.expired()) return;
    notices_ = std::move(notices);
    if (!deliverNotices()) return;
    for (Pending& pending : failed) {
      pending.done(std::unexpected(error));
      if (alive.expired()) return;
    }
  });
}

void PgConnection::Impl::loseWithLibpqError() {
  if (fatal_) {
    auto [message, sqlstate] = *fatal_;
    return lose(redacted(message, secrets_), sqlstate);
  }
  std::string message = conn_ != nullptr ? oneLine(PQerrorMessage(conn_)) : "";
  if (message.empty()) message = "the server closed the connection";
  lose(redacted(message, secrets_), "");
}

void PgConnection::Impl::resetStatement() {
  copy_out_ = false;
  error_.reset();
  last_.reset();
  last_rows_.reset();
}

PgConnection::PgConnection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

PgConnection::~PgConnection() = default;

void PgConnection::connect(boost::asio::io_context& loop, std::string conninfo,
                           std::chrono::milliseconds timeout, ConnectCallback done) {
  Impl::connect(loop, std::move(conninfo), timeout, std::move(done));
}

void PgConnection::query(std::string sql, QueryParams params, Prepare prepare, QueryCallback done) {
  impl_->enqueue(Impl::Pending{Impl::Pending::Kind::kQuery, std::move(sql), std::move(params),
                               prepare, std::move(done)});
}

void PgConnection::execute(std::string script, QueryCallback done) {
  impl_->enqueue(Impl::Pending{
      Impl::Pending::Kind::kScript, std::move(script), {}, Prepare::kNo, std::move(done)});
}

void PgConnection::setNoticeHandler(std::function<void(const PgNotice&)> handler) {
  impl_->notice_handler_ = std::move(handler);
}

bool PgConnection::healthy() const {
  return !impl_->broken_ && impl_->conn_ != nullptr && PQstatus(impl_->conn_) == CONNECTION_OK;
}

bool PgConnection::idle() const { return impl_->queue_.empty(); }

bool PgConnection::inTransaction() const {
  if (impl_->conn_ == nullptr) return false;
  PGTransactionStatusType status = PQtransactionStatus(impl_->conn_);
  return status == PQTRANS_INTRANS || status == PQTRANS_INERROR;
}

}  // namespace flux::data

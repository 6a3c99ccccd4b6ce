#include "admin/admin_api.h"

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <utility>

#include "admin/record_queries.h"
#include "admin/state_queries.h"
#include "base/json.h"

namespace flux::admin {

namespace {

constexpr std::string_view kUnauthorized =
    "missing or wrong admin token: pass --token or set FLUX_TOKEN";
constexpr size_t kAdminPoolSize = 2;
// Blame reads the row's mutations since its last committed INSERT, the latest this many.
constexpr int kBlameWindow = 10000;
// SQLSTATE undefined_table: the mutation log's table is missing.
constexpr std::string_view kUndefinedTable = "42P01";

net::HttpResponse jsonResponse(int status, std::string body) {
  net::HttpResponse response = net::HttpResponse::json(status, std::move(body));
  // Admin answers are about live data and carry the user's rows: no cache keeps them.
  response.headers.push_back({"cache-control", "no-store"});
  return response;
}

net::HttpResponse errorResponse(int status, std::string_view message) {
  return jsonResponse(status, jsonError(message));
}

// Compares "Bearer <token>" in time that depends on the token's length only, never on where
// the first difference is. An empty configured token matches nothing.
bool bearerTokenMatches(std::string_view authorization, std::string_view token) {
  constexpr std::string_view kScheme = "Bearer ";
  if (token.empty() || authorization.size() < kScheme.size() ||
      !net::equalsIgnoreCase(authorization.substr(0, kScheme.size()), kScheme)) {
    return false;
  }
  std::string_view given = authorization.substr(kScheme.size());
  volatile unsigned char difference = given.size() == token.size() ? 0 : 1;
  for (size_t i = 0; i < token.size(); ++i) {
    unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    difference = difference | (g ^ static_cast<unsigned char>(token[i]));
  }
  return difference == 0;
}

enum class Route { kStateHistory, kStateBlame, kRecord, kRecordList, kRecordStream };

constexpr std::string_view kRecordsPath = "/_flux/records";
constexpr std::string_view kRecordStreamPath = "/_flux/records/stream";

std::optional<Route> routeOf(std::string_view path) {
  if (path == "/_flux/state/history") return Route::kStateHistory;
  if (path == "/_flux/state/blame") return Route::kStateBlame;
  if (path == kRecordsPath) return Route::kRecordList;
  if (path == kRecordStreamPath) return Route::kRecordStream;
  if (path.starts_with(kRecordsPath) && path.size() > kRecordsPath.size() &&
      path[kRecordsPath.size()] == '/' &&
      path.find('/', kRecordsPath.size() + 1) == std::string_view::npos) {
    return Route::kRecord;
  }
  return std::nullopt;
}

std::string sqlstateOf(const Error& error) {
  for (const auto& [key, value] : error.fields) {
    if (key == "sqlstate") return value;
  }
  return {};
}

// A database failure as the CLI shows it. Nothing here echoes the connection string.
net::HttpResponse databaseErrorResponse(const Error& error) {
  switch (error.code) {
    case ErrorCode::kUnavailable:
      return errorResponse(503, "PostgreSQL is unreachable: " + error.message);
    case ErrorCode::kResourceExhausted:
    case ErrorCode::kTimeout:
      return errorResponse(503, "the admin API's database connections are all busy: try again");
    default:
      break;
  }
  if (sqlstateOf(error) == kUndefinedTable) {
    return errorResponse(500,
                         "flux.state_mutations does not exist: the mutation log is not set up in "
                         "this database (flux dev and flux serve create it when they start)");
  }
  return errorResponse(500, "cannot read the mutation log: " + error.message);
}

// The same for the execution records, whose reads touch flux.executions and, for each
// record's writes, flux.state_mutations.
net::HttpResponse recordsDatabaseErrorResponse(const Error& error) {
  if (sqlstateOf(error) == kUndefinedTable) {
    if (error.message.find("state_mutations") != std::string::npos) {
      return errorResponse(500,
                           "flux.state_mutations does not exist: the mutation log is not set up "
                           "in this database (flux dev and flux serve create it when they start)");
    }
    return errorResponse(500,
                         "flux.executions does not exist: execution records are not set up in "
                         "this database (flux dev and flux serve create it when they start)");
  }
  if (error.code == ErrorCode::kInvalidArgument || error.code == ErrorCode::kInternal) {
    return errorResponse(500, "cannot read the execution records: " + error.message);
  }
  return databaseErrorResponse(error);
}

// Text from a database whose encoding is not UTF-8 may hold invalid sequences: they become
// U+FFFD rather than an exception.
std::string dumpJson(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::optional<std::string> keyColumnsJson(const std::vector<std::string>& key_columns) {
  if (key_columns.empty()) return std::nullopt;
  return nlohmann::json(key_columns).dump();
}

}  // namespace

bool isAdminPath(std::string_view path) { return path == "/_flux" || path.starts_with("/_flux/"); }

// One history or blame request in flight: lookup of the table, then of its mutations.
struct AdminApi::Impl {
  struct Call {
    net::Responder respond;
    data::PgLease lease;
    // State endpoints.
    StateRequest request;
    TableInfo table;
    // GET /_flux/records/<id>.
    RecordRef ref;
    nlohmann::json record;
    // GET /_flux/records.
    RecordListRequest list;
    std::optional<int64_t> newest_started_at_us;
  };
  using Step = void (Impl::*)(uint64_t id, Result<data::QueryResult> result);

  Impl(boost::asio::io_context& loop, std::string token, data::PoolOptions database,
       RecordFeed* feed, RecordStreamOptions stream_options)
      : loop_(loop),
        token_(std::move(token)),
        pool_(loop, withSize(std::move(database))),
        feed_(feed),
        stream_options_(stream_options) {}
  ~Impl() {
    alive_.reset();
    // Before the pool goes: the streams' reads hold its connections.
    auto streams = std::move(streams_);
    for (auto& [id, stream] : streams) stream->shutdown();
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  static data::PoolOptions withSize(data::PoolOptions options) {
    options.size = kAdminPoolSize;
    return options;
  }

  void handle(net::HttpRequest request, net::Responder respond);
  // GET /_flux/records/stream: a RecordStream of its own until the client goes.
  void startStream(RecordStreamRequest request, net::Responder respond);
  void onLease(uint64_t id, Result<data::PgLease> lease);
  void onTableInfo(uint64_t id, Result<data::QueryResult> result);
  void onMutations(uint64_t id, Result<data::QueryResult> result);
  // GET /_flux/records/<id>: resolve the id, read the record, then its mutations.
  void onRecordLease(uint64_t id, Result<data::PgLease> lease);
  void onRecordResolved(uint64_t id, Result<data::QueryResult> result);
  void onRecordRow(uint64_t id, Result<data::QueryResult> result);
  void onRecordMutations(uint64_t id, Result<data::QueryResult> result);
  // GET /_flux/records: the newest start time, then the page.
  void onRecordListLease(uint64_t id, Result<data::PgLease> lease);
  void onNewestRecord(uint64_t id, Result<data::QueryResult> result);
  void onRecordList(uint64_t id, Result<data::QueryResult> result);
  // Registers a call and leases it a connection; `next` gets the lease.
  void start(std::unique_ptr<Call> call,
             void (Impl::*next)(uint64_t id, Result<data::PgLease> lease));
  // Runs one statement on the call's connection; `next` gets the result.
  void runQuery(uint64_t id, std::string sql, data::QueryParams params, data::Prepare prepare,
                Step next);
  // Answers the call and forgets it (which returns its connection to the pool).
  void finish(uint64_t id, net::HttpResponse response);
  Call* find(uint64_t id) {
    auto it = calls_.find(id);
    return it == calls_.end() ? nullptr : it->second.get();
  }

  boost::asio::io_context& loop_;
  std::string token_;
  data::PgPool pool_;
  RecordFeed* feed_;
  RecordStreamOptions stream_options_;
  // Declared after pool_ so that the calls' leases go back before the pool is destroyed.
  std::unordered_map<uint64_t, std::unique_ptr<Call>> calls_;
  uint64_t next_call_ = 0;
  std::unordered_map<uint64_t, std::shared_ptr<RecordStream>> streams_;
  uint64_t next_stream_ = 0;
  // Shared only for its weak_ptrs: callbacks from the pool and its connections check through
  // them whether this object was destroyed meanwhile.
  std::shared_ptr<char> alive_ = std::make_shared<char>();
};

void AdminApi::Impl::handle(net::HttpRequest request, net::Responder respond) {
  // The token comes first: without it nothing is revealed, not even which paths exist.
  if (!bearerTokenMatches(request.header("authorization"), token_)) {
    net::HttpResponse response = errorResponse(401, kUnauthorized);
    response.headers.push_back({"www-authenticate", "Bearer"});
    return respond(std::move(response));
  }
  std::optional<Route> route = routeOf(request.path());
  if (!route) {
    return respond(errorResponse(
        404, "no admin endpoint at " + std::string(request.path()) +
                 ": the admin API has GET /_flux/state/history, GET /_flux/state/blame, GET "
                 "/_flux/records, GET /_flux/records/stream and GET /_flux/records/<id>"));
  }
  if (request.method != "GET") {
    net::HttpResponse response =
        errorResponse(405, std::string(request.path()) + " takes GET, not " + request.method);
    response.headers.push_back({"allow", "GET"});
    return respond(std::move(response));
  }
  if (*route == Route::kRecordStream) {
    auto stream_request = parseRecordStreamRequest(request.query());
    if (!stream_request) return respond(errorResponse(400, stream_request.error().message));
    return startStream(std::move(*stream_request), std::move(respond));
  }
  auto call = std::make_unique<Call>();
  call->respond = std::move(respond);
  if (*route == Route::kRecord) {
    auto text = percentDecode(request.path().substr(kRecordsPath.size() + 1));
    if (!text) return call->respond(errorResponse(400, text.error().message));
    auto ref = parseRecordRef(*text);
    if (!ref) return call->respond(errorResponse(400, ref.error().message));
    call->ref = std::move(*ref);
    return start(std::move(call), &Impl::onRecordLease);
  }
  if (*route == Route::kRecordList) {
    auto list = parseRecordListRequest(request.query());
    if (!list) return call->respond(errorResponse(400, list.error().message));
    call->list = std::move(*list);
    return start(std::move(call), &Impl::onRecordListLease);
  }
  StateEndpoint endpoint =
      *route == Route::kStateHistory ? StateEndpoint::kHistory : StateEndpoint::kBlame;
  auto parsed = parseStateRequest(endpoint, request.query());
  if (!parsed) return call->respond(errorResponse(400, parsed.error().message));
  call->request = std::move(*parsed);
  start(std::move(call), &Impl::onLease);
}

void AdminApi::Impl::startStream(RecordStreamRequest request, net::Responder respond) {
  if (feed_ == nullptr) {
    // Not a passing condition (503): the server was started so.
    return respond(errorResponse(
        501, "this server has no live stream of records: recording is off (FLUX_RECORD=off)"));
  }
  uint64_t id = ++next_stream_;
  auto stream = std::make_shared<RecordStream>(loop_, pool_, *feed_, std::move(request),
                                               stream_options_, std::move(respond),
                                               [this, alive = std::weak_ptr<char>(alive_), id] {
                                                 if (!alive.expired()) streams_.erase(id);
                                               });
  streams_.emplace(id, stream);
  stream->start();
}

void AdminApi::Impl::start(std::unique_ptr<Call> call,
                           void (Impl::*next)(uint64_t id, Result<data::PgLease> lease)) {
  uint64_t id = ++next_call_;
  calls_.emplace(id, std::move(call));
  pool_.acquire([this, alive = std::weak_ptr<char>(alive_), id, next](Result<data::PgLease> lease) {
    if (alive.expired()) return;
    (this->*next)(id, std::move(lease));
  });
}

void AdminApi::Impl::runQuery(uint64_t id, std::string sql, data::QueryParams params,
                              data::Prepare prepare, Step next) {
  Call* call = find(id);
  if (call == nullptr) return;
  call->lease.connection().query(
      std::move(sql), std::move(params), prepare,
      [this, alive = std::weak_ptr<char>(alive_), id, next](Result<data::QueryResult> result) {
        if (alive.expired()) return;
        (this->*next)(id, std::move(result));
      });
}

void AdminApi::Impl::onLease(uint64_t id, Result<data::PgLease> lease) {
  Call* call = find(id);
  if (call == nullptr) return;
  if (!lease) return finish(id, databaseErrorResponse(lease.error()));
  call->lease = std::move(*lease);
  data::QueryParams params{call->request.table.schema, call->request.table.table, call->request.pk};
  call->lease.connection().query(
      kTableInfoSql, std::move(params), data::Prepare::kYes,
      [this, alive = std::weak_ptr<char>(alive_), id](Result<data::QueryResult> result) {
        if (alive.expired()) return;
        onTableInfo(id, std::move(result));
      });
}

void AdminApi::Impl::onTableInfo(uint64_t id, Result<data::QueryResult> result) {
  Call* call = find(id);
  if (call == nullptr) return;
  if (!result) return finish(id, databaseErrorResponse(result.error()));
  auto info = parseTableInfo(*result);
  if (!info) return finish(id, errorResponse(500, info.error().message));
  // A table dropped since keeps its history: it is unknown only with neither (of this row).
  if (!info->known && !info->has_history) {
    return finish(id, errorResponse(404, "unknown table '" + call->request.table_text + "'"));
  }
  call->table = std::move(*info);

  const StateRequest& request = call->request;
  data::QueryParams params{request.table.schema, request.table.table, request.pk};
  const char* sql = kHistorySql;
  if (request.endpoint == StateEndpoint::kHistory) {
    params.push_back(std::to_string(request.limit));
    params.push_back(keyColumnsJson(call->table.key_columns));
  } else {
    sql = kBlameSql;
    params.push_back(std::to_string(kBlameWindow));
  }
  call->lease.connection().query(
      sql, std::move(params), data::Prepare::kYes,
      [this, alive = std::weak_ptr<char>(alive_), id](Result<data::QueryResult> result) {
        if (alive.expired()) return;
        onMutations(id, std::move(result));
      });
}

void AdminApi::Impl::onMutations(uint64_t id, Result<data::QueryResult> result) {
  Call* call = find(id);
  if (call == nullptr) return;
  if (!result) return finish(id, databaseErrorResponse(result.error()));
  auto page = parseMutationPage(*result);
  if (!page) return finish(id, errorResponse(500, page.error().message));

  const StateRequest& request = call->request;
  const std::vector<std::string>& key_columns = call->table.key_columns;
  std::string row = describeRow(request.table, key_columns, request.pk);
  if (page->rows.empty()) {
    return finish(id, errorResponse(404, "no recorded changes for " + row));
  }
  if (request.endpoint == StateEndpoint::kHistory) {
    return finish(
        id,
        jsonResponse(200, dumpJson(historyJson(request.table, request.pk, key_columns, *page))));
  }
  Blame blame = blameRow(page->rows, call->table.columns);
  if (blame.state == RowState::kNeverExisted) {
    return finish(
        id, errorResponse(404, row +
                                   " has never existed: its only recorded changes "
                                   "were rolled back (flux state history " +
                                   request.table_text + " --id " + request.pk + " shows them)"));
  }
  finish(id, jsonResponse(200, dumpJson(blameJson(request.table, request.pk, key_columns, blame,
                                                  page->truncated()))));
}

void AdminApi::Impl::onRecordLease(uint64_t id, Result<data::PgLease> lease) {
  Call* call = find(id);
  if (call == nullptr) return;
  if (!lease) return finish(id, databaseErrorResponse(lease.error()));
  call->lease = std::move(*lease);
  SqlQuery query = resolveRecordQuery(call->ref);
  runQuery(id, std::move(query.sql), std::move(query.params), data::Prepare::kYes,
           &Impl::onRecordResolved);
}

void AdminApi::Impl::onRecordResolved(uint64_t id, Result<data::QueryResult> result) {
  Call* call = find(id);
  if (call == nullptr) return;
  if (!result) return finish(id, recordsDatabaseErrorResponse(result.error()));
  auto resolution = parseResolution(*result);
  if (!resolution) return finish(id, errorResponse(500, resolution.error().message));
  if (resolution->found.empty()) {
    return finish(id, errorResponse(404, unknownRecordMessage(call->ref)));
  }
  if (resolution->total > 1) {
    return finish(id, jsonResponse(409, dumpJson(ambiguousRecordJson(call->ref, *resolution))));
  }
  std::string record_id = resolution->found[0].value("id", "");
  runQuery(id, kRecordSql, {std::move(record_id)}, data::Prepare::kYes, &Impl::onRecordRow);
}

void AdminApi::Impl::onRecordRow(uint64_t id, Result<data::QueryResult> result) {
  Call* call = find(id);
  if (call == nullptr) return;
  if (!result) return finish(id, recordsDatabaseErrorResponse(result.error()));
  auto row = parseRecordRow(*result);
  if (!row) return finish(id, errorResponse(500, row.error().message));
  // Deleted between the two reads (retention): as unknown as if it never was.
  if (!*row) return finish(id, errorResponse(404, unknownRecordMessage(call->ref)));
  call->record = std::move(**row);
  std::string record_id = call->record.value("id", "");
  runQuery(id, kRecordMutationsSql, {std::move(record_id), std::to_string(kMaxRecordMutations)},
           data::Prepare::kYes, &Impl::onRecordMutations);
}

void AdminApi::Impl::onRecordMutations(uint64_t id, Result<data::QueryResult> result) {
  Call* call = find(id);
  if (call == nullptr) return;
  RecordMutations mutations;
  if (!result) {
    // A database without the mutation log still has records to show: with no writes.
    if (sqlstateOf(result.error()) != kUndefinedTable) {
      return finish(id, recordsDatabaseErrorResponse(result.error()));
    }
  } else {
    auto parsed = parseRecordMutations(*result);
    if (!parsed) return finish(id, errorResponse(500, parsed.error().message));
    mutations = std::move(*parsed);
  }
  finish(id,
         jsonResponse(200, dumpJson(recordJson(std::move(call->record), std::move(mutations)))));
}

void AdminApi::Impl::onRecordListLease(uint64_t id, Result<data::PgLease> lease) {
  Call* call = find(id);
  if (call == nullptr) return;
  if (!lease) return finish(id, databaseErrorResponse(lease.error()));
  call->lease = std::move(*lease);
  runQuery(id, kNewestRecordSql, {}, data::Prepare::kYes, &Impl::onNewestRecord);
}

void AdminApi::Impl::onNewestRecord(uint64_t id, Result<data::QueryResult> result) {
  Call* call = find(id);
  if (call == nullptr) return;
  if (!result) return finish(id, recordsDatabaseErrorResponse(result.error()));
  auto newest = parseNewestRecord(*result);
  if (!newest) return finish(id, errorResponse(500, newest.error().message));
  call->newest_started_at_us = *newest;
  SqlQuery query = recordListQuery(call->list);
  // Built per filter set: unprepared, so that filters never fill the connection's statement
  // cache and each run is planned for its own bounds.
  runQuery(id, std::move(query.sql), std::move(query.params), data::Prepare::kNo,
           &Impl::onRecordList);
}

void AdminApi::Impl::onRecordList(uint64_t id, Result<data::QueryResult> result) {
  Call* call = find(id);
  if (call == nullptr) return;
  if (!result) return finish(id, recordsDatabaseErrorResponse(result.error()));
  auto summaries = parseRecordSummaries(*result);
  if (!summaries) return finish(id, errorResponse(500, summaries.error().message));
  finish(id, jsonResponse(200, dumpJson(recordListJson(std::move(*summaries), call->list,
                                                       call->newest_started_at_us))));
}

void AdminApi::Impl::finish(uint64_t id, net::HttpResponse response) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  net::Responder respond = std::move(it->second->respond);
  calls_.erase(it);
  respond(std::move(response));
}

AdminApi::AdminApi(boost::asio::io_context& loop, std::string token, data::PoolOptions database,
                   RecordFeed* feed, RecordStreamOptions stream_options)
    : impl_(std::make_unique<Impl>(loop, std::move(token), std::move(database), feed,
                                   stream_options)) {}

AdminApi::~AdminApi() = default;

void AdminApi::handle(net::HttpRequest request, net::Responder respond) {
  impl_->handle(std::move(request), std::move(respond));
}

}  // namespace flux::admin

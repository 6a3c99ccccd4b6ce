#include "admin/admin_api.h"

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <utility>

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

std::optional<StateEndpoint> endpointOf(std::string_view path) {
  if (path == "/_flux/state/history") return StateEndpoint::kHistory;
  if (path == "/_flux/state/blame") return StateEndpoint::kBlame;
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
    StateRequest request;
    net::Responder respond;
    data::PgLease lease;
    TableInfo table;
  };

  Impl(boost::asio::io_context& loop, std::string token, data::PoolOptions database)
      : token_(std::move(token)), pool_(loop, withSize(std::move(database))) {}
  ~Impl() { alive_.reset(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  static data::PoolOptions withSize(data::PoolOptions options) {
    options.size = kAdminPoolSize;
    return options;
  }

  void handle(net::HttpRequest request, net::Responder respond);
  void onLease(uint64_t id, Result<data::PgLease> lease);
  void onTableInfo(uint64_t id, Result<data::QueryResult> result);
  void onMutations(uint64_t id, Result<data::QueryResult> result);
  // Answers the call and forgets it (which returns its connection to the pool).
  void finish(uint64_t id, net::HttpResponse response);
  Call* find(uint64_t id) {
    auto it = calls_.find(id);
    return it == calls_.end() ? nullptr : it->second.get();
  }

  std::string token_;
  data::PgPool pool_;
  // Declared after pool_ so that the calls' leases go back before the pool is destroyed.
  std::unordered_map<uint64_t, std::unique_ptr<Call>> calls_;
  uint64_t next_call_ = 0;
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
  std::optional<StateEndpoint> endpoint = endpointOf(request.path());
  if (!endpoint) {
    return respond(errorResponse(
        404, "no admin endpoint at " + std::string(request.path()) +
                 ": the admin API has GET /_flux/state/history and GET /_flux/state/blame"));
  }
  if (request.method != "GET") {
    net::HttpResponse response =
        errorResponse(405, std::string(request.path()) + " takes GET, not " + request.method);
    response.headers.push_back({"allow", "GET"});
    return respond(std::move(response));
  }
  auto parsed = parseStateRequest(*endpoint, request.query());
  if (!parsed) return respond(errorResponse(400, parsed.error().message));

  uint64_t id = ++next_call_;
  auto call = std::make_unique<Call>();
  call->request = std::move(*parsed);
  call->respond = std::move(respond);
  calls_.emplace(id, std::move(call));
  pool_.acquire([this, alive = std::weak_ptr<char>(alive_), id](Result<data::PgLease> lease) {
    if (alive.expired()) return;
    onLease(id, std::move(lease));
  });
}

void AdminApi::Impl::onLease(uint64_t id, Result<data::PgLease> lease) {
  Call* call = find(id);
  if (call == nullptr) return;
  if (!lease) return finish(id, databaseErrorResponse(lease.error()));
  call->lease = std::move(*lease);
  data::QueryParams params{call->request.table.schema, call->request.table.table};
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
  // A table dropped since keeps its history: it is unknown only with neither.
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

void AdminApi::Impl::finish(uint64_t id, net::HttpResponse response) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  net::Responder respond = std::move(it->second->respond);
  calls_.erase(it);
  respond(std::move(response));
}

AdminApi::AdminApi(boost::asio::io_context& loop, std::string token, data::PoolOptions database)
    : impl_(std::make_unique<Impl>(loop, std::move(token), std::move(database))) {}

AdminApi::~AdminApi() = default;

void AdminApi::handle(net::HttpRequest request, net::Responder respond) {
  impl_->handle(std::move(request), std::move(respond));
}

}  // namespace flux::admin

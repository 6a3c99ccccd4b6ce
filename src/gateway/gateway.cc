#include "gateway/gateway.h"

#include <fmt/format.h>

#include <set>

#include "base/ids.h"
#include "base/json.h"

namespace flux::gateway {

namespace {

std::string formatDuration(std::chrono::steady_clock::duration d) {
  double ms = std::chrono::duration<double, std::milli>(d).count();
  return ms < 10 ? fmt::format("{:.1f}ms", ms) : fmt::format("{:.0f}ms", ms);
}

}  // namespace

Gateway::Gateway(std::unique_ptr<Random> random, Clock& clock, LogSink& log,
                 std::function<std::unique_ptr<runtime::IsolateWorker>(Random&)> make_runtime,
                 std::unique_ptr<net::RequestHandler> admin)
    : random_(std::move(random)),
      clock_(clock),
      log_(log),
      runtime_(make_runtime(*random_)),
      routes_(std::make_shared<RouteTable>()),
      admin_(std::move(admin)) {}

void Gateway::setRoutes(std::shared_ptr<const RouteTable> routes) {
  std::set<std::string> kept;
  for (const RouteSpec& route : routes->routes()) {
    runtime_->install(route.bundle);
    kept.insert(route.bundle->name);
  }
  for (const RouteSpec& route : routes_->routes()) {
    if (!kept.contains(route.bundle->name)) runtime_->uninstall(route.bundle->name);
  }
  routes_ = std::move(routes);
}

void Gateway::reply(const RequestId& id, std::string_view method, std::string_view path,
                    std::chrono::steady_clock::time_point start, net::HttpResponse response,
                    net::Responder& respond) {
  response.headers.push_back({"x-request-id", id.toString()});
  log_.write(fmt::format("{} {} {} {} req:{}", method, path, response.status,
                         formatDuration(clock_.steadyNow() - start), id.shortForm()));
  respond(std::move(response));
}

void Gateway::reject(net::ProtocolError error, net::Responder respond) {
  auto start = clock_.steadyNow();
  RequestId id = RequestId::generate(clock_, *random_);
  std::string_view target = error.target;
  reply(id, error.method.empty() ? "-" : error.method,
        target.empty() ? "-" : target.substr(0, target.find('?')), start,
        net::HttpResponse::json(error.status, jsonError(error.message, id.toString())), respond);
}

void Gateway::handle(net::HttpRequest request, net::Responder respond) {
  // The admin API is not a function execution: no request id, no request log line.
  if (admin_ && (request.path() == "/_flux" || request.path().starts_with("/_flux/"))) {
    return admin_->handle(std::move(request), std::move(respond));
  }
  auto start = clock_.steadyNow();
  RequestId id = RequestId::generate(clock_, *random_);
  std::string id_text = id.toString();

  RouteTable::Match match = routes_->match(request.method, request.path());
  if (match.outcome == RouteTable::Match::Outcome::kNotFound) {
    return reply(id, request.method, request.path(), start,
                 net::HttpResponse::json(404, jsonError("no function serves " + request.method +
                                                            " " + std::string(request.path()),
                                                        id_text)),
                 respond);
  }
  if (match.outcome == RouteTable::Match::Outcome::kMethodNotAllowed) {
    auto response = net::HttpResponse::json(
        405, jsonError(std::string(request.path()) + " does not accept " + request.method +
                           " (allowed: " + match.allowed + ")",
                       id_text));
    response.headers.push_back({"allow", match.allowed});
    return reply(id, request.method, request.path(), start, std::move(response), respond);
  }

  std::string method = request.method;
  std::string path(request.path());
  runtime::Invocation invocation{std::move(request), id, std::move(match.params)};
  // The route table may be swapped while the request runs: the invocation holds its bundle.
  std::shared_ptr<const runtime::FunctionBundle> bundle = match.route->bundle;
  runtime_->invoke(bundle, std::move(invocation),
                   [this, id, method = std::move(method), path = std::move(path), start,
                    respond = std::move(respond)](runtime::InvocationResult result) mutable {
                     reply(id, method, path, start, std::move(result.response), respond);
                   });
}

}  // namespace flux::gateway

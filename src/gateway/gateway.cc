#include "gateway/gateway.h"

#include <charconv>
#include <memory>
#include <set>

#include "base/ids.h"
#include "base/json.h"

namespace flux::gateway {

namespace {

void appendNumber(std::string& out, int64_t n) {
  char digits[24];
  out.append(digits, std::to_chars(digits, digits + sizeof digits, n).ptr);
}

// The dev console's request line: "GET /hello 200 0.4ms req:1a2b3c4d" (tenths of a millisecond
// below 10 ms, whole ones above), put together by hand: formatting it through fmt, doubles
// and all, cost ~2k instructions a request.
std::string requestLine(std::string_view method, std::string_view path, int status,
                        std::chrono::steady_clock::duration elapsed, std::string_view id) {
  int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
  std::string line;
  line.reserve(method.size() + path.size() + 40);
  line.append(method).append(" ").append(path).append(" ");
  appendNumber(line, status);
  line += ' ';
  if (us < 9'950) {
    int64_t tenths = (us + 50) / 100;
    appendNumber(line, tenths / 10);
    line += '.';
    line += static_cast<char>('0' + tenths % 10);
  } else {
    appendNumber(line, (us + 500) / 1000);
  }
  line.append("ms req:").append(id.substr(28));
  return line;
}

}  // namespace

Gateway::Gateway(std::unique_ptr<Random> random, Clock& clock, LogSink& log,
                 std::function<std::unique_ptr<runtime::IsolateWorker>(Random&)> make_runtime,
                 std::unique_ptr<net::RequestHandler> admin, record::Recorder* recorder)
    : random_(std::move(random)),
      clock_(clock),
      log_(log),
      runtime_(make_runtime(*random_)),
      routes_(std::make_shared<RouteTable>()),
      admin_(std::move(admin)),
      recorder_(recorder) {}

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

Gateway::Execution Gateway::begin(std::string_view method, std::string_view target) {
  Execution e;
  e.start = clock_.steadyNow();
  // The id is made from the start: flux.executions orders and windows records by id.
  e.started_at_us = static_cast<int64_t>(clock_.nowMillis() * 1000);
  e.id = RequestId::generate(e.started_at_us, *random_);
  e.method = method.empty() ? "-" : std::string(method);
  e.path = target.empty() ? "-" : std::string(target.substr(0, target.find('?')));
  return e;
}

// The request as recorded: headers and a capped body, raw (the recorder redacts secrets on its
// own thread).
void Gateway::capture(Execution& e, const net::HttpRequest& request) const {
  if (!recording()) return;
  record::HttpCapture& in = e.request.emplace();
  in.method = request.method;
  in.path = e.path;
  in.query = request.query();
  in.headers.reserve(request.headers.size());
  for (const net::HttpHeader& h : request.headers) in.headers.emplace_back(h.name, h.value);
  in.body = request.body.substr(0, kCapturedBodyBytes);
}

void Gateway::reply(Execution& e, net::HttpResponse response, net::Responder& respond,
                    runtime::InvocationResult* result) {
  std::string id_text = e.id.toString();
  response.headers.push_back({"x-request-id", id_text});
  auto elapsed = clock_.steadyNow() - e.start;
  log_.write(requestLine(e.method, e.path, response.status, elapsed, id_text));
  if (!recording()) {
    respond(std::move(response));
    return;
  }
  auto boxed = std::make_unique<record::ExecutionRecord>();  // built where it is stored
  record::ExecutionRecord& r = *boxed;
  r.status = response.status;
  record::HttpCapture& out = r.captured_response.emplace();
  out.status = response.status;
  out.headers.reserve(response.headers.size());
  for (const net::HttpHeader& h : response.headers) out.headers.emplace_back(h.name, h.value);
  out.body = response.body.substr(0, kCapturedBodyBytes);
  respond(std::move(response));

  // The response is on its way: now the record.
  int64_t duration_us = std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
  r.id = std::move(id_text);
  r.kind = "http";
  r.function = std::move(e.function);
  r.method = std::move(e.method);
  r.path = std::move(e.path);
  r.started_at_us = e.started_at_us;
  r.duration_us = duration_us;
  r.captured_request = std::move(e.request);
  r.spans.reserve(1 + (result != nullptr ? result->spans.size() : 0));
  record::Span gateway;  // its input and output: see record::materialize()
  gateway.id = kGatewaySpan;
  gateway.name = "gateway";
  gateway.duration_us = duration_us;
  r.spans.push_back(std::move(gateway));
  if (result != nullptr) {
    if (result->error) {
      record::RecordedError error;
      error.message = result->error->message;
      error.code = errorCodeName(result->error->code);
      for (const auto& [key, value] : result->error->fields) {
        if (key == "location") error.location = value;
        if (key == "stack") error.stack = value;
      }
      r.error = std::move(error);
    }
    for (record::Span& span : result->spans) r.spans.push_back(std::move(span));
    r.logs = std::move(result->logs);
    if (!result->journal.empty()) r.journal = result->journal.toJson();
  } else if (r.status >= 400) {
    // Refused by the gateway itself (404, 405, 400, 413): its JSON body says why.
    auto body = nlohmann::json::parse(out.body, nullptr, false);
    std::string message = body.is_object() && body.contains("error") && body["error"].is_string()
                              ? body["error"].get<std::string>()
                              : "HTTP " + std::to_string(r.status);
    // No function ran: the gateway's own span is where it failed.
    r.spans.front().status = record::SpanStatus::kError;
    r.spans.front().error = message;
    r.error = record::RecordedError{std::move(message), {}, {}, "gateway", 0};
  }
  recorder_->submit(std::move(boxed));
}

void Gateway::reject(net::ProtocolError error, net::Responder respond) {
  Execution e = begin(error.method, error.target);
  reply(e, net::HttpResponse::json(error.status, jsonError(error.message, e.id.toString())),
        respond);
}

void Gateway::handle(net::HttpRequest request, net::Responder respond) {
  // The admin API is not a function execution: no request id, no request log line.
  if (admin_ && (request.path() == "/_flux" || request.path().starts_with("/_flux/"))) {
    return admin_->handle(std::move(request), std::move(respond));
  }
  Execution e = begin(request.method, request.target);
  capture(e, request);
  std::string id_text = e.id.toString();

  RouteTable::Match match = routes_->match(request.method, request.path());
  if (match.outcome == RouteTable::Match::Outcome::kNotFound) {
    return reply(e,
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
    return reply(e, std::move(response), respond);
  }

  // The route table may be swapped while the request runs: the invocation holds its bundle.
  std::shared_ptr<const runtime::FunctionBundle> bundle = match.route->bundle;
  e.function = bundle->name;
  runtime::Invocation invocation{std::move(request), e.id, std::move(match.params), e.start,
                                 kGatewaySpan};
  runtime_->invoke(bundle, std::move(invocation),
                   [this, e = std::move(e),
                    respond = std::move(respond)](runtime::InvocationResult result) mutable {
                     reply(e, std::move(result.response), respond, &result);
                   });
}

}  // namespace flux::gateway

#include "net/http_server.h"


#include <optional>
#include <utility>  // must precede asio's awaitable headers under g++ 12

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace flux::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// One connection. Shared ownership because Beast's async operations and the handler's
// Responder both keep the session alive until the last of them completes.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, RequestHandler& handler, const ServerOptions& options)
      : stream_(std::move(socket)), handler_(handler), options_(options) {}

  void start() { readRequest(); }

 private:
  void readRequest() {
    parser_.emplace();
    parser_->body_limit(options_.body_limit);
    parser_->header_limit(64 * 1024);
    stream_.expires_after(options_.idle_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->onRead(ec);
                     });
  }

  void onRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::error::eof) {
      return close();
    }
    if (ec == http::error::body_limit) {
      return writeError(413, "request body is larger than the limit of " +
                                 std::to_string(options_.body_limit) + " bytes");
    }
    if (ec) return writeError(400, "malformed HTTP request: " + ec.message());

    http::request<http::string_body> raw = parser_->release();
    keep_alive_ = raw.keep_alive();
    HttpRequest request;
    request.method = std::string(raw.method_string());
    request.target = std::string(raw.target());
    request.headers.reserve(8);
    for (const auto& field : raw) {
      request.headers.push_back({std::string(field.name_string()), std::string(field.value())});
    }
    request.body = std::move(raw.body());
    // No deadline while the handler runs: the runtime enforces the function's own timeout.
    stream_.expires_never();
    handler_.handle(std::move(request), [self = shared_from_this()](HttpResponse response) {
      self->writeResponse(std::move(response));
    });
  }

  void writeError(int status, std::string message) {
    keep_alive_ = false;
    ProtocolError error{status, std::move(message), {}, {}};
    if (parser_ && parser_->is_header_done()) {
      error.method = std::string(parser_->get().method_string());
      error.target = std::string(parser_->get().target());
    }
    handler_.reject(std::move(error), [self = shared_from_this()](HttpResponse response) {
      self->writeResponse(std::move(response));
    });
  }

  void writeResponse(HttpResponse response) {
    response_.emplace();
    response_->result(static_cast<unsigned>(response.status));
    response_->version(11);
    for (HttpHeader& h : response.headers) response_->insert(h.name, h.value);
    response_->body() = std::move(response.body);
    response_->keep_alive(keep_alive_);
    response_->prepare_payload();
    stream_.expires_after(options_.idle_timeout);
    http::async_write(stream_, *response_,
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec || !self->keep_alive_) return self->close();
                        self->response_.reset();
                        self->readRequest();
                      });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> response_;
  bool keep_alive_ = true;
  RequestHandler& handler_;
  const ServerOptions& options_;
};

}  // namespace

struct WorkerLoop::Listener : std::enable_shared_from_this<WorkerLoop::Listener> {
  Listener(asio::io_context& context) : acceptor(context) {}

  void accept() {
    acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
      if (!ec) {
        socket.set_option(tcp::no_delay(true), ec);
        std::make_shared<Session>(std::move(socket), *self->handler, *self->options)->start();
      }
      self->accept();
    });
  }

  tcp::acceptor acceptor;
  RequestHandler* handler = nullptr;
  const ServerOptions* options = nullptr;
};

void WorkerLoop::post(std::function<void(RequestHandler&)> fn) {
  asio::post(context_, [this, fn = std::move(fn)] {
    if (handler_) fn(*handler_);
  });
}

Result<std::unique_ptr<HttpServer>> HttpServer::start(ServerOptions options,
                                                      HandlerFactory factory) {
  std::unique_ptr<HttpServer> server(new HttpServer());
  server->options_ = std::move(options);
  int count = server->options_.workers > 0
                  ? server->options_.workers
                  : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));

  beast::error_code ec;
  auto address = asio::ip::make_address(server->options_.host, ec);
  if (ec) {
    return fail(ErrorCode::kInvalidArgument,
                "invalid listen address '" + server->options_.host + "': " + ec.message());
  }
  uint16_t port = server->options_.port;
  for (int i = 0; i < count; ++i) {
    auto worker = std::unique_ptr<WorkerLoop>(new WorkerLoop(i));
    auto listener = std::make_shared<WorkerLoop::Listener>(worker->context_);
    tcp::endpoint endpoint(address, port);
    listener->acceptor.open(endpoint.protocol(), ec);
    if (!ec) listener->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) listener->acceptor.set_option(ReusePort(true), ec);
    if (!ec) listener->acceptor.bind(endpoint, ec);
    if (!ec) listener->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return fail(ErrorCode::kUnavailable, "cannot listen on " + server->options_.host + ":" +
                                               std::to_string(port) + ": " + ec.message() +
                                               " (is another server using the port? try --port)");
    }
    // The first listener resolves port 0; the others share the port it got.
    port = listener->acceptor.local_endpoint().port();
    listener->options = &server->options_;
    worker->listener_ = std::move(listener);
    server->workers_.push_back(std::move(worker));
  }
  server->port_ = port;

  for (auto& worker : server->workers_) {
    WorkerLoop* loop = worker.get();
    loop->thread_ = std::thread([loop, factory] {
      loop->handler_ = factory(*loop);
      loop->listener_->handler = loop->handler_.get();
      loop->listener_->accept();
      auto guard = asio::make_work_guard(loop->context_);
      loop->context_.run();
      loop->listener_.reset();
      loop->handler_.reset();
    });
  }
  return server;
}

std::vector<WorkerLoop*> HttpServer::workers() {
  std::vector<WorkerLoop*> out;
  for (auto& w : workers_) out.push_back(w.get());
  return out;
}

void HttpServer::stop() {
  for (auto& worker : workers_) {
    asio::post(worker->context_, [loop = worker.get()] {
      beast::error_code ignored;
      if (loop->listener_) loop->listener_->acceptor.close(ignored);
      loop->context_.stop();
    });
  }
  for (auto& worker : workers_) {
    if (worker->thread_.joinable()) worker->thread_.join();
  }
  workers_.clear();
}

HttpServer::~HttpServer() { stop(); }

}  // namespace flux::net

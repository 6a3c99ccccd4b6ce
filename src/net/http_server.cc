#include "net/http_server.h"

#include <array>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <optional>
#include <utility>  // must precede asio's awaitable headers under g++ 12

namespace flux::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// After ResponseStream::end(), how long a client may take to read the rest before the
// connection is cut.
constexpr std::chrono::seconds kStreamEndGrace{5};

// "1a2b\r\n<data>\r\n": one chunk of a chunked body.
std::string chunkFrame(std::string data) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string size;
  for (size_t n = data.size(); n > 0; n >>= 4) size.insert(size.begin(), kHex[n & 15]);
  std::string framed;
  framed.reserve(size.size() + data.size() + 4);
  framed += size;
  framed += "\r\n";
  framed += data;
  framed += "\r\n";
  return framed;
}

// Whether text holds CR, LF or NUL. (find_first_of calls memchr once per byte of text.)
bool breaksFraming(std::string_view text) {
  bool found = false;
  for (char c : text) found |= c == '\r' || c == '\n' || c == '\0';
  return found;
}

// The status line and the response's own headers, less the framing ones the server sets
// (Content-Length, Transfer-Encoding, Connection) and any whose name or value holds CR, LF or NUL
// (they would break the framing; the runtime refuses them before they get here). The caller
// appends its framing headers and the blank line.
std::string responseHead(const HttpResponse& response) {
  int status = response.status >= 100 && response.status <= 999 ? response.status : 500;
  std::string head;
  head.reserve(128);
  head += "HTTP/1.1 ";
  head += std::to_string(status);
  head += ' ';
  auto reason = http::obsolete_reason(static_cast<http::status>(status));
  head.append(reason.data(), reason.size());
  head += "\r\n";
  for (const HttpHeader& h : response.headers) {
    if (equalsIgnoreCase(h.name, "content-length") ||
        equalsIgnoreCase(h.name, "transfer-encoding") || equalsIgnoreCase(h.name, "connection")) {
      continue;
    }
    if (h.name.empty() || breaksFraming(h.name) || breaksFraming(h.value)) continue;
    head += h.name;
    head += ": ";
    head += h.value;
    head += "\r\n";
  }
  return head;
}

// A response to a 1xx status, 204 or 304 has no body, nor a length.
bool isBodyless(int status) { return status < 200 || status == 204 || status == 304; }

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
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->onRead(ec); });
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
    http10_ = raw.version() < 11;
    head_request_ = raw.method() == http::verb::head;
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

  // The head by hand and the body, in one gather write: Beast's serializer took a quarter of a
  // hello request's instructions.
  void writeResponse(HttpResponse response) {
    if (response.stream) return startStream(std::move(response));
    out_head_ = responseHead(response);
    if (isBodyless(response.status)) {
      out_body_.clear();
    } else {
      out_head_ += "Content-Length: ";
      out_head_ += std::to_string(response.body.size());
      out_head_ += "\r\n";
      // A HEAD response says how long the body would be, without it.
      if (head_request_) {
        out_body_.clear();
      } else {
        out_body_ = std::move(response.body);
      }
    }
    if (!keep_alive_) out_head_ += "Connection: close\r\n";
    out_head_ += "\r\n";
    stream_.expires_after(options_.idle_timeout);
    std::array<asio::const_buffer, 2> buffers{asio::buffer(out_head_), asio::buffer(out_body_)};
    asio::async_write(stream_, buffers, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec || !self->keep_alive_) return self->close();
      self->out_body_.clear();
      self->readRequest();
    });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  // ---- Streamed bodies (HttpResponse::stream) ----
  //
  // The head goes out by hand (Beast's serializer wants the whole body), then each write is a
  // chunk; everything queued is written in one gather as soon as the previous write is done.
  // Meanwhile a read waits on the socket: its end (or any error) means the client went away.
  // HTTP/1.0 clients get the bytes as they are, the end of the body being the close.
  class ChunkStream final : public ResponseStream {
   public:
    explicit ChunkStream(std::shared_ptr<Session> session) : session_(std::move(session)) {}
    ~ChunkStream() override { session_->endStream(); }
    bool write(std::string data) override { return session_->queueChunk(std::move(data)); }
    void end() override { session_->endStream(); }
    size_t queuedBytes() const override { return session_->queued_bytes_; }
    bool closed() const override { return session_->stream_closed_ || session_->stream_ending_; }
    void onClose(std::function<void()> callback) override {
      if (session_->stream_closed_) {
        if (callback) callback();
        return;
      }
      session_->on_stream_close_ = std::move(callback);
    }

   private:
    std::shared_ptr<Session> session_;
  };

  void startStream(HttpResponse response) {
    keep_alive_ = false;
    std::string head = responseHead(response);
    if (!http10_) head += "transfer-encoding: chunked\r\n";
    head += "connection: close\r\n\r\n";
    queueRaw(std::move(head));
    readUntilClosed();
    auto stream = std::make_shared<ChunkStream>(shared_from_this());
    response.stream(std::move(stream));
  }

  bool queueChunk(std::string data) {
    if (stream_closed_ || stream_ending_) return false;
    if (data.empty()) return true;
    queueRaw(http10_ ? std::move(data) : chunkFrame(std::move(data)));
    return true;
  }

  void queueRaw(std::string bytes) {
    queued_bytes_ += bytes.size();
    out_queue_.push_back(std::move(bytes));
    pump();
  }

  void pump() {
    if (writing_ || stream_closed_) return;
    if (out_queue_.empty()) {
      if (stream_ending_) closeStream();
      return;
    }
    writing_buf_.clear();
    for (std::string& piece : out_queue_) writing_buf_ += piece;
    out_queue_.clear();
    writing_ = true;
    asio::async_write(stream_.socket(), asio::buffer(writing_buf_),
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        self->writing_ = false;
                        self->queued_bytes_ -= self->writing_buf_.size();
                        if (ec) return self->closeStream();
                        self->pump();
                      });
  }

  void readUntilClosed() {
    stream_.socket().async_read_some(asio::buffer(drain_),
                                     [self = shared_from_this()](beast::error_code ec, size_t) {
                                       if (ec) return self->closeStream();
                                       self->readUntilClosed();
                                     });
  }

  void endStream() {
    if (stream_closed_ || stream_ending_) return;
    if (!http10_) queueRaw("0\r\n\r\n");
    stream_ending_ = true;
    end_timer_.emplace(stream_.get_executor());
    end_timer_->expires_after(kStreamEndGrace);
    end_timer_->async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->closeStream();
    });
    pump();
  }

  void closeStream() {
    if (stream_closed_) return;
    stream_closed_ = true;
    if (end_timer_) end_timer_->cancel();
    close();
    out_queue_.clear();
    if (auto callback = std::move(on_stream_close_)) {
      on_stream_close_ = nullptr;
      callback();
    }
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  // The response being written (writeResponse).
  std::string out_head_;
  std::string out_body_;
  bool keep_alive_ = true;
  bool http10_ = false;
  bool head_request_ = false;
  // Streamed bodies.
  std::deque<std::string> out_queue_;
  std::string writing_buf_;
  size_t queued_bytes_ = 0;
  bool writing_ = false;
  bool stream_ending_ = false;
  bool stream_closed_ = false;
  std::function<void()> on_stream_close_;
  std::optional<asio::steady_timer> end_timer_;
  std::array<char, 1024> drain_{};
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

#include "net/fetch_client.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <optional>
#include <unordered_map>
#include <utility>  // must precede asio's awaitable headers under g++ 12

namespace flux::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

constexpr size_t kHeaderLimit = 64 * 1024;

std::string lowerCase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool isIpLiteral(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

std::string hostForHeader(const FetchUrl& url) {
  return url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
}

std::string hostAndPort(const FetchUrl& url) { return hostForHeader(url) + ":" + url.port; }

bool isDefaultPort(const FetchUrl& url) { return url.port == (url.tls ? "443" : "80"); }

std::unexpected<Error> badUrl(std::string_view url, const std::string& why) {
  std::string shown(url.substr(0, 200));
  return fail(ErrorCode::kInvalidArgument, "invalid URL '" + shown + "': " + why);
}

// RFC 3986 section 5.2.4, on a path without query.
std::string removeDotSegments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  bool trailing_slash = false;
  while (pos < path.size()) {
    size_t next = path.find('/', pos + 1);
    std::string_view segment = path.substr(pos, next == std::string_view::npos ? next : next - pos);
    pos = next == std::string_view::npos ? path.size() : next;
    std::string_view name = segment.starts_with('/') ? segment.substr(1) : segment;
    trailing_slash = false;
    if (name == ".") {
      trailing_slash = true;
    } else if (name == "..") {
      if (!out.empty()) out.pop_back();
      trailing_slash = true;
    } else {
      out.push_back(name);
    }
  }
  std::string result;
  for (std::string_view name : out) {
    result += '/';
    result += name;
  }
  if (trailing_slash || result.empty()) result += '/';
  return result;
}

// Location values are supposed to be ASCII; browsers percent-encode what is not.
std::string percentEncodeUnsafe(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f) {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += ch;
    }
  }
  return out;
}

bool hasScheme(std::string_view reference) {
  if (reference.empty() || !std::isalpha(static_cast<unsigned char>(reference[0]))) return false;
  for (size_t i = 1; i < reference.size(); ++i) {
    char c = reference[i];
    if (c == ':') return true;
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') {
      return false;
    }
  }
  return false;
}

bool isRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// Headers the client owns: a caller's value would contradict the framing it writes.
bool isClientOwnedHeader(std::string_view lower_name) {
  return lower_name == "content-length" || lower_name == "transfer-encoding" ||
         lower_name == "connection" || lower_name == "keep-alive" || lower_name == "upgrade" ||
         lower_name == "te" || lower_name == "trailer" || lower_name == "expect";
}

bool isToken(std::string_view name) {
  if (name.empty()) return false;
  for (char ch : name) {
    auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c)) continue;
    if (std::string_view("!#$%&'*+-.^_`|~").find(ch) == std::string_view::npos) return false;
  }
  return true;
}

// "32 MiB", "1024 bytes".
std::string limitText(size_t bytes) {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) == 0) {
    return std::to_string(bytes >> 20) + " MiB";
  }
  return std::to_string(bytes) + " bytes";
}

std::string describe(const boost::system::error_code& ec) {
  std::string message = ec.message();
  if (!message.empty()) message[0] = static_cast<char>(std::toupper(message[0]));
  return message;
}

}  // namespace

Result<FetchUrl> parseFetchUrl(std::string_view url) {
  for (char ch : url) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f) return badUrl(url, "spaces and control characters are not allowed");
  }
  size_t colon = url.find("://");
  if (colon == std::string_view::npos) return badUrl(url, "expected http:// or https://");
  std::string scheme = lowerCase(url.substr(0, colon));
  FetchUrl out;
  if (scheme == "https") {
    out.tls = true;
  } else if (scheme != "http") {
    return badUrl(url, "only http: and https: URLs can be fetched, not '" + scheme + ":'");
  }
  std::string_view rest = url.substr(colon + 3);
  size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  std::string_view tail = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  if (authority.find('@') != std::string_view::npos) {
    return badUrl(url,
                  "URLs with credentials (user:password@) cannot be fetched; send an "
                  "Authorization header instead");
  }
  std::string_view host;
  std::string_view port;
  if (authority.starts_with('[')) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return badUrl(url, "unterminated IPv6 address");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return badUrl(url, "unexpected text after the IPv6 address");
      port = after.substr(1);
    }
  } else {
    size_t port_colon = authority.rfind(':');
    host = authority.substr(0, port_colon);
    if (port_colon != std::string_view::npos) port = authority.substr(port_colon + 1);
  }
  if (host.empty()) return badUrl(url, "no host");
  out.host = lowerCase(host);
  if (port.empty()) {
    out.port = out.tls ? "443" : "80";
  } else {
    unsigned value = 0;
    for (char c : port) {
      if (!std::isdigit(static_cast<unsigned char>(c)) || value > 65535) {
        return badUrl(url, "bad port '" + std::string(port.substr(0, 20)) + "'");
      }
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return badUrl(url, "port out of range");
    out.port = std::to_string(value);
  }
  std::string_view target = tail.substr(0, tail.find('#'));
  out.target = target.empty() || target[0] != '/' ? "/" + std::string(target) : std::string(target);
  out.origin = scheme + "://" + hostForHeader(out) + (isDefaultPort(out) ? "" : ":" + out.port);
  out.href = out.origin + out.target;
  return out;
}

Result<FetchUrl> resolveLocation(const FetchUrl& base, std::string_view location) {
  while (!location.empty() && (location.front() == ' ' || location.front() == '\t')) {
    location.remove_prefix(1);
  }
  while (!location.empty() && (location.back() == ' ' || location.back() == '\t')) {
    location.remove_suffix(1);
  }
  std::string reference = percentEncodeUnsafe(location);
  if (hasScheme(reference)) return parseFetchUrl(reference);
  std::string scheme = base.tls ? "https:" : "http:";
  if (reference.starts_with("//")) return parseFetchUrl(scheme + reference);
  std::string_view base_path = std::string_view(base.target).substr(0, base.target.find('?'));
  std::string target;
  if (reference.empty() || reference.starts_with('#')) {
    target = base.target;
  } else if (reference.starts_with('?')) {
    target = std::string(base_path) + reference;
  } else {
    std::string_view ref = std::string_view(reference).substr(0, reference.find('#'));
    size_t query = ref.find('?');
    std::string_view path = ref.substr(0, query);
    std::string_view rest = query == std::string_view::npos ? "" : ref.substr(query);
    std::string merged;
    if (path.starts_with('/')) {
      merged = path;
    } else {
      merged = std::string(base_path.substr(0, base_path.rfind('/') + 1)) + std::string(path);
    }
    target = removeDotSegments(merged) + std::string(rest);
  }
  return parseFetchUrl(base.origin + target);
}

struct FetchClient::Impl {
  class Exchange;

  Impl(asio::io_context& loop, FetchClientOptions options)
      : loop(loop), options(std::move(options)) {}

  // The TLS context, made at the first https:// exchange (loading the trust store takes a
  // few milliseconds).
  Result<ssl::context*> tlsContext() {
    if (tls) return tls.get();
    try {
      auto context = std::make_unique<ssl::context>(ssl::context::tls_client);
      boost::system::error_code ec;
      context->set_default_verify_paths(ec);
      if (ec) {
        return fail(ErrorCode::kUnavailable,
                    "cannot load the system's trusted certificates: " + ec.message());
      }
      if (!options.extra_ca_file.empty()) {
        context->load_verify_file(options.extra_ca_file, ec);
        if (ec) {
          return fail(ErrorCode::kUnavailable, "cannot load the extra CA file '" +
                                                   options.extra_ca_file + "': " + ec.message());
        }
      }
      context->set_verify_mode(ssl::verify_peer);
      SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION);
      tls = std::move(context);
    } catch (const boost::system::system_error& e) {
      return fail(ErrorCode::kUnavailable, std::string("cannot set up TLS: ") + e.what());
    }
    return tls.get();
  }

  asio::io_context& loop;
  FetchClientOptions options;
  std::unique_ptr<ssl::context> tls;
  uint64_t next_id = 1;
  // Exchanges in flight. shared_ptr: each pending Asio operation also holds its exchange, so
  // that a cancelled one stays alive until its handlers have run (and seen the cancellation).
  std::unordered_map<uint64_t, std::shared_ptr<Exchange>> exchanges;
};

class FetchClient::Impl::Exchange : public std::enable_shared_from_this<Exchange> {
 public:
  Exchange(Impl& client, uint64_t id, FetchRequest request, FetchUrl url, Done done)
      : client_(&client),
        id_(id),
        request_(std::move(request)),
        url_(std::move(url)),
        done_(std::move(done)),
        resolver_(client.loop) {}

  void run() { resolve(); }

  // Fails on the loop (never inside start()) unless cancelled first.
  void failLater(Error error) {
    asio::post(client_->loop, [self = shared_from_this(), error = std::move(error)]() mutable {
      self->finish(std::unexpected(std::move(error)));
    });
  }

  // Stops the exchange without calling `done`.
  void cancel() {
    client_ = nullptr;
    done_ = nullptr;
    closeConnection();
  }

 private:
  beast::tcp_stream& lowest() { return tls_ ? beast::get_lowest_layer(*tls_) : *tcp_; }

  void closeConnection() {
    resolver_.cancel();
    if (tcp_ || tls_) {
      boost::system::error_code ignored;
      lowest().socket().close(ignored);
    }
  }

  bool cancelled() const { return client_ == nullptr; }

  void resolve() {
    tcp_.reset();
    tls_.reset();
    buffer_.clear();
    auto flags = isIpLiteral(url_.host) ? tcp::resolver::numeric_host : tcp::resolver::flags();
    resolver_.async_resolve(url_.host, url_.port, flags,
                            [self = shared_from_this()](const boost::system::error_code& ec,
                                                        tcp::resolver::results_type results) {
                              if (self->cancelled()) return;
                              if (ec) {
                                return self->finish(fail(ErrorCode::kUnavailable,
                                                         "cannot resolve host '" + self->url_.host +
                                                             "': " + describe(ec)));
                              }
                              self->connect(std::move(results));
                            });
  }

  void connect(tcp::resolver::results_type results) {
    if (url_.tls) {
      auto context = client_->tlsContext();
      if (!context) return finish(std::unexpected(std::move(context).error()));
      tls_.emplace(client_->loop, **context);
    } else {
      tcp_.emplace(client_->loop);
    }
    lowest().async_connect(results, [self = shared_from_this()](const boost::system::error_code& ec,
                                                                const tcp::endpoint&) {
      if (self->cancelled()) return;
      if (ec) {
        return self->finish(
            fail(ErrorCode::kUnavailable,
                 "cannot connect to " + hostAndPort(self->url_) + ": " + describe(ec)));
      }
      boost::system::error_code ignored;
      self->lowest().socket().set_option(tcp::no_delay(true), ignored);
      if (self->tls_) return self->handshake();
      self->write();
    });
  }

  void handshake() {
    SSL* handle = tls_->native_handle();
    X509_VERIFY_PARAM* param = SSL_get0_param(handle);
    if (isIpLiteral(url_.host)) {
      X509_VERIFY_PARAM_set1_ip_asc(param, url_.host.c_str());
    } else {
      SSL_set_tlsext_host_name(handle, url_.host.c_str());
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      X509_VERIFY_PARAM_set1_host(param, url_.host.c_str(), 0);
    }
    tls_->async_handshake(
        ssl::stream_base::client, [self = shared_from_this()](const boost::system::error_code& ec) {
          if (self->cancelled()) return;
          if (ec) {
            long verify = SSL_get_verify_result(self->tls_->native_handle());
            std::string why = verify != X509_V_OK ? std::string("certificate not trusted: ") +
                                                        X509_verify_cert_error_string(verify)
                                                  : describe(ec);
            return self->finish(
                fail(ErrorCode::kUnavailable,
                     "TLS handshake with " + hostAndPort(self->url_) + " failed: " + why));
          }
          self->write();
        });
  }

  Result<void> buildRequest() {
    http::verb verb = http::string_to_verb(request_.method);
    wire_ = {};
    if (verb == http::verb::unknown) {
      if (!isToken(request_.method)) {
        return fail(ErrorCode::kInvalidArgument, "invalid method '" + request_.method + "'");
      }
      wire_.method_string(request_.method);
    } else {
      wire_.method(verb);
    }
    wire_.target(url_.target);
    wire_.version(11);
    bool has_host = false, has_accept = false, has_agent = false;
    for (const HttpHeader& h : request_.headers) {
      std::string name = lowerCase(h.name);
      if (!isToken(name)) {
        return fail(ErrorCode::kInvalidArgument, "invalid header name '" + h.name + "'");
      }
      if (h.value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
        return fail(ErrorCode::kInvalidArgument,
                    "header '" + h.name + "' has a line break or NUL in its value");
      }
      if (isClientOwnedHeader(name)) continue;
      has_host |= name == "host";
      has_accept |= name == "accept";
      has_agent |= name == "user-agent";
      wire_.insert(h.name, h.value);
    }
    if (!has_host) {
      wire_.set(http::field::host,
                hostForHeader(url_) + (isDefaultPort(url_) ? "" : ":" + url_.port));
    }
    if (!has_accept) wire_.set(http::field::accept, "*/*");
    if (!has_agent) wire_.set(http::field::user_agent, client_->options.user_agent);
    wire_.set(http::field::connection, "close");
    wire_.body() = request_.body;
    bool expects_body = verb == http::verb::post || verb == http::verb::put ||
                        verb == http::verb::patch || !request_.body.empty();
    if (expects_body) wire_.content_length(request_.body.size());
    return {};
  }

  void write() {
    if (auto built = buildRequest(); !built) return finish(std::unexpected(built.error()));
    auto handler = [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
      if (self->cancelled()) return;
      if (ec) {
        return self->finish(
            fail(ErrorCode::kUnavailable,
                 "sending the request to " + hostAndPort(self->url_) + " failed: " + describe(ec)));
      }
      self->read();
    };
    if (tls_) {
      http::async_write(*tls_, wire_, std::move(handler));
    } else {
      http::async_write(*tcp_, wire_, std::move(handler));
    }
  }

  // The head first: Beast 1.74 drops a Content-Length over the body limit when the body
  // arrives in the same read as the head, so the limit is checked here.
  void read() {
    parser_.emplace();
    parser_->body_limit(client_->options.max_response_body);
    parser_->header_limit(kHeaderLimit);
    if (request_.method == "HEAD") parser_->skip(true);
    auto handler = [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
      if (self->cancelled()) return;
      self->onHeader(ec);
    };
    if (tls_) {
      http::async_read_header(*tls_, buffer_, *parser_, std::move(handler));
    } else {
      http::async_read_header(*tcp_, buffer_, *parser_, std::move(handler));
    }
  }

  void onHeader(boost::system::error_code ec) {
    if (ec) return onRead(ec);
    if (auto length = parser_->content_length();
        length && *length > client_->options.max_response_body) {
      return onRead(http::error::body_limit);
    }
    if (parser_->is_done()) return onRead({});
    auto handler = [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
      if (self->cancelled()) return;
      self->onRead(ec);
    };
    if (tls_) {
      http::async_read(*tls_, buffer_, *parser_, std::move(handler));
    } else {
      http::async_read(*tcp_, buffer_, *parser_, std::move(handler));
    }
  }

  void onRead(boost::system::error_code ec) {
    // A TLS server that closes without close_notify ends an EOF-delimited body that way.
    if (ec == ssl::error::stream_truncated && parser_->is_header_done() && !parser_->is_done()) {
      parser_->put_eof(ec);
    }
    std::string peer = hostAndPort(url_);
    if (ec == http::error::body_limit) {
      return finish(fail(ErrorCode::kResourceExhausted,
                         "the response body from " + peer + " is larger than the limit of " +
                             limitText(client_->options.max_response_body)));
    }
    if (ec == http::error::header_limit) {
      return finish(fail(ErrorCode::kUnavailable,
                         "the response headers from " + peer + " are larger than 64 KiB"));
    }
    if (ec == http::error::end_of_stream || (ec && !parser_->got_some())) {
      return finish(fail(ErrorCode::kUnavailable,
                         peer + " closed the connection without answering" +
                             (ec == http::error::end_of_stream ? "" : " (" + describe(ec) + ")")));
    }
    if (ec) {
      return finish(fail(ErrorCode::kUnavailable,
                         "reading the response from " + peer + " failed: " + describe(ec)));
    }
    const auto& message = parser_->get();
    int status = static_cast<int>(message.result_int());
    if (status >= 100 && status < 200) {
      if (status == 101) {
        return finish(fail(ErrorCode::kUnavailable,
                           peer + " switched protocols (101), which fetch does not support"));
      }
      return read();  // an interim response: the final one follows
    }
    FetchResponse response;
    response.status = status;
    response.status_text = std::string(message.reason());
    for (const auto& field : message) {
      response.headers.push_back({std::string(field.name_string()), std::string(field.value())});
    }
    response.body = std::move(parser_->get().body());
    response.url = url_.href;
    response.redirects = redirects_;
    closeConnection();

    std::string location(message[http::field::location]);
    if (isRedirect(status) && !location.empty() && request_.redirect != RedirectMode::kManual) {
      return redirect(status, std::move(location));
    }
    finish(std::move(response));
  }

  void redirect(int status, std::string location) {
    if (request_.redirect == RedirectMode::kError) {
      return finish(fail(ErrorCode::kInvalidArgument,
                         url_.href + " redirected (" + std::to_string(status) + ") to '" +
                             location + "' and the redirect mode is 'error'"));
    }
    if (redirects_ >= client_->options.max_redirects) {
      return finish(
          fail(ErrorCode::kResourceExhausted, "too many redirects (more than " +
                                                  std::to_string(client_->options.max_redirects) +
                                                  "), the last to '" + location + "'"));
    }
    auto next = resolveLocation(url_, location);
    if (!next) {
      return finish(fail(ErrorCode::kUnavailable,
                         url_.href + " redirected to an invalid URL: " + next.error().message));
    }
    ++redirects_;
    if (status == 303 ? request_.method != "HEAD"
                      : (status == 301 || status == 302) && request_.method == "POST") {
      request_.method = "GET";
      request_.body.clear();
      std::erase_if(request_.headers, [](const HttpHeader& h) {
        std::string name = lowerCase(h.name);
        return name == "content-type" || name == "content-encoding" || name == "content-language" ||
               name == "content-location";
      });
    }
    if (next->origin != url_.origin) {
      std::erase_if(request_.headers, [](const HttpHeader& h) {
        std::string name = lowerCase(h.name);
        return name == "authorization" || name == "cookie" || name == "proxy-authorization" ||
               name == "host";
      });
    }
    url_ = std::move(*next);
    resolve();
  }

  void finish(Result<FetchResponse> result) {
    if (cancelled()) return;
    Impl* client = client_;
    client_ = nullptr;
    closeConnection();
    Done done = std::move(done_);
    auto self = shared_from_this();  // erase() may drop the last other reference
    client->exchanges.erase(id_);
    done(std::move(result));
  }

  Impl* client_;  // null once finished or cancelled
  uint64_t id_;
  FetchRequest request_;
  FetchUrl url_;
  Done done_;
  int redirects_ = 0;
  tcp::resolver resolver_;
  std::optional<beast::tcp_stream> tcp_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> wire_;
  std::optional<http::response_parser<http::string_body>> parser_;
};

FetchClient::FetchClient(asio::io_context& loop, FetchClientOptions options)
    : impl_(std::make_unique<Impl>(loop, std::move(options))) {}

FetchClient::~FetchClient() {
  for (auto& [id, exchange] : impl_->exchanges) exchange->cancel();
  impl_->exchanges.clear();
}

uint64_t FetchClient::start(FetchRequest request, Done done) {
  uint64_t id = impl_->next_id++;
  auto url = parseFetchUrl(request.url);
  auto exchange = std::make_shared<Impl::Exchange>(
      *impl_, id, std::move(request), url ? std::move(*url) : FetchUrl{}, std::move(done));
  impl_->exchanges.emplace(id, exchange);
  if (url) {
    exchange->run();
  } else {
    exchange->failLater(std::move(url).error());
  }
  return id;
}

void FetchClient::cancel(uint64_t id) {
  auto it = impl_->exchanges.find(id);
  if (it == impl_->exchanges.end()) return;
  std::shared_ptr<Impl::Exchange> exchange = std::move(it->second);
  impl_->exchanges.erase(it);
  exchange->cancel();
}

size_t FetchClient::inFlight() const { return impl_->exchanges.size(); }

}  // namespace flux::net

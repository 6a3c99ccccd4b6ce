// FetchClient: the outbound HTTP/1.1 and HTTPS client behind the runtime's `fetch()`, running
// asynchronously on a worker's io_context (the loop its isolate runs on).
//
// Design:
// - One FetchClient per worker, used from that worker's thread only. Each start() is one
//   exchange: resolve, connect, (TLS handshake), write the request, read the whole response
//   (bodies are buffered, up to max_response_body), close. No connection reuse yet: every
//   exchange opens its own connection and sends `connection: close`.
// - HTTPS is OpenSSL through Asio: the peer's certificate is verified against the system's
//   trust store (OpenSSL's default paths) and must name the host (DNS name or IP address);
//   SNI is sent for DNS names. `extra_ca_file` adds certificates to trust (for tests).
// - Redirects (301, 302, 303, 307, 308 with a Location) are followed up to max_redirects like
//   browsers do: 303 (and 301/302 after a POST) turn into a GET without body; 307/308 keep the
//   method and body; authorization, cookie and proxy-authorization are dropped when the
//   redirect leaves the origin. RedirectMode::kError fails instead, kManual returns the 3xx.
// - cancel(id) stops an exchange at once (its sockets are closed); its `done` is never called
//   afterwards. The destructor cancels every exchange in flight. `done` always runs on the
//   loop, never inside start().
// - Nothing here blocks: name resolution is Asio's asynchronous resolver.
//
// Beast and OpenSSL headers stay in fetch_client.cc.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "net/http_message.h"

namespace flux::net {

enum class RedirectMode { kFollow, kError, kManual };

struct FetchRequest {
  std::string method = "GET";
  std::string url;  // absolute http:// or https:// URL (WHATWG-serialized: the runtime's URL)
  // As given by the caller; the client adds host, content-length (when there is a body or
  // the method expects one), connection: close, and accept / user-agent unless present.
  std::vector<HttpHeader> headers;
  std::string body;
  RedirectMode redirect = RedirectMode::kFollow;
};

struct FetchResponse {
  int status = 0;
  std::string status_text;
  std::vector<HttpHeader> headers;  // as received (names as sent by the server)
  std::string body;                 // transfer coding removed (content coding is not)
  std::string url;                  // the final URL, after redirects
  int redirects = 0;                // how many were followed
};

struct FetchClientOptions {
  size_t max_response_body = 32u * 1024 * 1024;
  int max_redirects = 20;
  std::string user_agent = "Flux";
  // A PEM file of extra certificates to trust besides the system store; empty for none.
  std::string extra_ca_file;
};

// The parts of an http(s) URL an exchange needs.
struct FetchUrl {
  bool tls = false;
  std::string host;    // without brackets for IPv6 ("::1"), lower case
  std::string port;    // "80" / "443" when the URL has none
  std::string target;  // "/path?query" ("/" at least), fragment dropped
  std::string origin;  // "https://example.com:8443" (default ports omitted)
  std::string href;    // origin + target
};

// kInvalidArgument naming the problem: not http(s), no host, credentials in the URL, a bad
// port, whitespace or control characters.
Result<FetchUrl> parseFetchUrl(std::string_view url);

// The URL a Location header points to, resolved against `base` (RFC 3986 section 5.2:
// absolute, scheme-relative, absolute-path, relative-path and query-only references).
Result<FetchUrl> resolveLocation(const FetchUrl& base, std::string_view location);

class FetchClient {
 public:
  using Done = std::move_only_function<void(Result<FetchResponse>)>;

  FetchClient(boost::asio::io_context& loop, FetchClientOptions options);
  ~FetchClient();
  FetchClient(const FetchClient&) = delete;
  FetchClient& operator=(const FetchClient&) = delete;

  // Starts an exchange; returns its id (never 0). `done` is called exactly once on the loop,
  // unless the exchange is cancelled first. Errors: kInvalidArgument (a bad URL or header, a
  // redirect with RedirectMode::kError), kUnavailable (name resolution, connection, TLS or
  // protocol failures: the message names the host and the cause, e.g. "cannot connect to
  // 127.0.0.1:9: Connection refused"), kResourceExhausted (the body is over the limit,
  // too many redirects).
  uint64_t start(FetchRequest request, Done done);

  // Stops the exchange; its `done` will not be called. Unknown or finished ids are ignored.
  void cancel(uint64_t id);

  // Exchanges started and neither finished nor cancelled.
  size_t inFlight() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace flux::net

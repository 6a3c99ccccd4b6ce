#include "net/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <optional>
#include <utility>  // must precede asio's headers under g++ 12

namespace flux::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr uint64_t kBodyLimit = 256ull * 1024 * 1024;
constexpr uint32_t kHeaderLimit = 64 * 1024;

bool startsWithIgnoreCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && equalsIgnoreCase(text.substr(0, prefix.size()), prefix);
}

std::string unreachable(const HttpUrl& url) {
  return "cannot reach the Flux server at " + url.origin + ": is `flux dev` running?";
}

std::string seconds(std::chrono::milliseconds timeout) {
  auto ms = timeout.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms) + " ms";
}

}  // namespace

Result<HttpUrl> parseHttpUrl(std::string_view url) {
  auto bad = [&](std::string why) {
    return fail(ErrorCode::kInvalidArgument, "bad URL '" + std::string(url) + "': " + why);
  };
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return bad("it has spaces or control characters");
    }
  }
  constexpr std::string_view kScheme = "http://";
  if (!startsWithIgnoreCase(url, kScheme)) {
    if (startsWithIgnoreCase(url, "https://")) {
      return bad("https:// is not supported here: use http:// (e.g. http://127.0.0.1:4000)");
    }
    return bad("pass http://host:port, e.g. http://127.0.0.1:4000");
  }
  std::string_view rest = url.substr(kScheme.size());
  size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  std::string_view tail = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
  if (authority.find('@') != std::string_view::npos) {
    // Not echoed: what stands before '@' is a secret.
    return fail(ErrorCode::kInvalidArgument,
                "bad URL: credentials in the URL are not supported: pass the token with --token");
  }

  HttpUrl parsed;
  std::string_view port;
  if (authority.starts_with("[")) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("an IPv6 address needs its closing ']'");
    parsed.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("expected ':port' after ']'");
      port = after.substr(1);
    }
  } else {
    size_t colon = authority.rfind(':');
    parsed.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (parsed.host.empty()) return bad("it has no host");
  if (port.empty()) {
    parsed.port = "80";
  } else {
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || ptr != port.data() + port.size() || value == 0 || value > 65535) {
      return bad("the port must be a number from 1 to 65535");
    }
    parsed.port = std::string(port);
  }

  tail = tail.substr(0, tail.find('#'));
  if (tail.empty() || tail[0] == '?') {
    parsed.target = "/" + std::string(tail);
  } else {
    parsed.target = std::string(tail);
  }
  parsed.origin = "http://" + std::string(authority);
  return parsed;
}

Result<HttpResponse> httpGet(const std::string& url, const std::vector<HttpHeader>& headers,
                             std::chrono::milliseconds timeout) {
  auto parsed = parseHttpUrl(url);
  if (!parsed) return std::unexpected(parsed.error());
  const HttpUrl& where = *parsed;

  asio::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  beast::flat_buffer buffer;
  http::request<http::empty_body> request{http::verb::get, where.target, 11};
  http::response_parser<http::string_body> parser;
  parser.body_limit(kBodyLimit);
  parser.header_limit(kHeaderLimit);
  auto deadline = std::chrono::steady_clock::now() + timeout;

  bool host_has_colon = where.host.find(':') != std::string::npos;
  std::string host_header = host_has_colon ? "[" + where.host + "]" : where.host;
  if (where.port != "80") host_header += ":" + where.port;
  request.set(http::field::host, host_header);
  request.set(http::field::user_agent, "flux-cli");
  request.set(http::field::connection, "close");
  for (const HttpHeader& header : headers) {
    // A line break in a value would smuggle in headers of its own.
    if (header.value.find_first_of("\r\n", 0) != std::string::npos ||
        header.value.find('\0') != std::string::npos) {
      return fail(ErrorCode::kInvalidArgument,
                  "the " + header.name + " header has a line break or NUL in its value");
    }
    request.set(header.name, header.value);
  }

  std::optional<Error> failure;
  // Each step starts the next; io.run() returns when the chain ends. The lambdas cannot
  // outlive this frame: io.run() has drained them before it returns.
  resolver.async_resolve(
      where.host, where.port, [&](beast::error_code ec, tcp::resolver::results_type endpoints) {
        if (ec) {
          failure = Error{ErrorCode::kUnavailable,
                          "cannot resolve the host of " + where.origin + ": " + ec.message(),
                          {}};
          return;
        }
        stream.expires_at(deadline);
        stream.async_connect(endpoints, [&](beast::error_code ec, const tcp::endpoint&) {
          if (ec) {
            failure = Error{ErrorCode::kUnavailable, unreachable(where), {}};
            return;
          }
          stream.expires_at(deadline);
          http::async_write(stream, request, [&](beast::error_code ec, size_t) {
            if (ec == beast::error::timeout) {
              failure = Error{ErrorCode::kTimeout,
                              "the Flux server at " + where.origin + " did not answer within " +
                                  seconds(timeout),
                              {}};
              return;
            }
            if (ec) {
              failure = Error{
                  ErrorCode::kUnavailable,
                  "lost the connection to the Flux server at " + where.origin + ": " + ec.message(),
                  {}};
              return;
            }
            stream.expires_at(deadline);
            http::async_read(stream, buffer, parser, [&](beast::error_code ec, size_t) {
              if (!ec) return;
              if (ec == beast::error::timeout) {
                failure = Error{ErrorCode::kTimeout,
                                "the Flux server at " + where.origin + " did not answer within " +
                                    seconds(timeout),
                                {}};
              } else if (ec == http::error::body_limit) {
                failure = Error{ErrorCode::kResourceExhausted,
                                "the answer from " + where.origin + " is larger than 256 MiB",
                                {}};
              } else {
                failure = Error{ErrorCode::kUnavailable,
                                "the Flux server at " + where.origin +
                                    " closed the connection before answering: " + ec.message(),
                                {}};
              }
            });
          });
        });
      });
  // Name resolution has no deadline of its own: bound the whole run instead.
  io.run_for(timeout + std::chrono::milliseconds(100));
  if (!io.stopped()) {
    return fail(ErrorCode::kTimeout, "the Flux server at " + where.origin +
                                         " did not answer within " + seconds(timeout));
  }
  if (failure) return std::unexpected(std::move(*failure));

  http::response<http::string_body> raw = parser.release();
  HttpResponse response;
  response.status = static_cast<int>(raw.result_int());
  for (const auto& field : raw) {
    response.headers.push_back({std::string(field.name_string()), std::string(field.value())});
  }
  response.body = std::move(raw.body());
  return response;
}

}  // namespace flux::net

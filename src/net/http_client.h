// A small blocking HTTP/1.1 client for the CLI (`flux state ...` asking a running server).
//
// Blocking on purpose: the CLI has nothing else to do meanwhile. Servers never use it: a
// worker loop must not block. One request per connection (Connection: close), plain http://
// only, every call bounded by its timeout.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "net/http_message.h"

namespace flux::net {

// http://host[:port][/path][?query], split for a request.
struct HttpUrl {
  std::string host;    // "127.0.0.1", "localhost", "::1" (brackets removed)
  std::string port;    // "80" when the URL has none
  std::string target;  // "/path?query", "/" at least; the fragment dropped
  std::string origin;  // "http://127.0.0.1:4000", as written, for messages
};

// kInvalidArgument with a message that says what is wrong: not http://, user:password@,
// a bad port, spaces or control characters.
Result<HttpUrl> parseHttpUrl(std::string_view url);

// GETs `url` and reads the whole response (body up to 256 MiB), whatever its status.
// Errors: kInvalidArgument (bad URL), kUnavailable ("cannot reach the Flux server at <origin>:
// is `flux dev` running?", or the connection broke), kTimeout (no complete response within
// `timeout`, which bounds the whole exchange), kResourceExhausted (body too large).
Result<HttpResponse> httpGet(const std::string& url, const std::vector<HttpHeader>& headers,
                             std::chrono::milliseconds timeout);

}  // namespace flux::net

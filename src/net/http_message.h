// The HTTP vocabulary above the wire: plain structs with no Beast types, so that the gateway
// and the runtime compile without Beast's headers.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace flux::net {

struct HttpHeader {
  std::string name;  // as received; compare case-insensitively
  std::string value;
};

struct HttpRequest {
  std::string method;
  std::string target;  // path and query, as on the request line
  std::vector<HttpHeader> headers;
  std::string body;
  std::string remote_address;

  // First value of the header, or empty. Case-insensitive.
  std::string_view header(std::string_view name) const;
  std::string_view path() const;   // target up to '?'
  std::string_view query() const;  // after '?', or empty
};

struct HttpResponse {
  int status = 200;
  std::vector<HttpHeader> headers;
  std::string body;

  // A response with content-type application/json.
  static HttpResponse json(int status, std::string body);
};

// Called exactly once per request, on the worker thread that handles the request.
using Responder = std::move_only_function<void(HttpResponse)>;

// What a worker loop hands each parsed request to. One instance per worker thread; it is
// created, called and destroyed on that thread only.
class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  virtual void handle(HttpRequest request, Responder respond) = 0;
};

bool equalsIgnoreCase(std::string_view a, std::string_view b);

}  // namespace flux::net

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

// A request the server refuses before any handler could run it: malformed (400), body over
// the limit (413). method and target are empty when the request line itself was unreadable.
struct ProtocolError {
  int status = 400;
  std::string message;
  std::string method;
  std::string target;
};

// What a worker loop hands each parsed request to. One instance per worker thread; it is
// created, called and destroyed on that thread only.
class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  virtual void handle(HttpRequest request, Responder respond) = 0;
  // Answers a refused request (the connection closes after it). The default sends the
  // message as JSON; the gateway adds its request id and log line.
  virtual void reject(ProtocolError error, Responder respond);
};

bool equalsIgnoreCase(std::string_view a, std::string_view b);

}  // namespace flux::net

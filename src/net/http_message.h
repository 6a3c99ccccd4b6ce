// The HTTP vocabulary above the wire: plain structs with no Beast types, so that the gateway
// and the runtime compile without Beast's headers.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
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

// The writing end of a response body sent as it is produced (chunked transfer encoding), for
// answers that last: Server-Sent Events. Handed to HttpResponse::stream on the worker thread
// that owns the connection, and used on that thread only.
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;
  // Queues `data` (one chunk; empty data is ignored). False, with nothing queued, once the
  // stream is closed. Never blocks: what the socket has not taken yet waits in memory, and
  // queuedBytes() says how much, so that the writer can bound it.
  virtual bool write(std::string data) = 0;
  // Ends the body after what is queued (the last chunk), then closes the connection. A
  // client that does not take the rest within a few seconds is cut off.
  virtual void end() = 0;
  // Bytes queued that the socket has not taken yet.
  virtual size_t queuedBytes() const = 0;
  // True once the client went away, end() was called or the server is stopping.
  virtual bool closed() const = 0;
  // `callback` runs once, on this thread, when the stream closes for any reason; at once
  // when it is closed already. Replaces an earlier callback.
  virtual void onClose(std::function<void()> callback) = 0;
};

struct HttpResponse {
  int status = 200;
  std::vector<HttpHeader> headers;
  std::string body;
  // When set, the status and headers go out with `transfer-encoding: chunked` (body is
  // ignored), the connection is not reused, and this is called once, on the worker thread,
  // with the stream to write the body to. Dropping the last reference to the stream ends it.
  std::function<void(std::shared_ptr<ResponseStream>)> stream;

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

// A small blocking HTTP/1.1 client over raw sockets to 127.0.0.1, for end-to-end tests.
//
// It parses just enough of HTTP/1.1 to check a server: status line, headers, and a body framed
// by Content-Length, chunked transfer coding or the end of the connection. The raw mode sends
// arbitrary bytes (malformed requests, half requests, pipelined requests) and reports what came
// back and whether the server closed the connection. Every call has a deadline; nothing blocks
// forever. An HttpConnection is used by one thread at a time.
#pragma once

#include <chrono>
#include <expected>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flux::tests {

using std::chrono::milliseconds;

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  int status = 0;
  std::string reason;
  // Lower-case names; a repeated header's values are joined with ", ".
  std::map<std::string, std::string> headers;
  std::string body;

  bool hasHeader(std::string_view lower_name) const;
  // The header's value, or "" when absent.
  std::string header(std::string_view lower_name) const;
};

// What the raw mode saw.
struct RawReply {
  std::string received;
  bool closed_by_peer = false;  // end of file or reset, rather than the timeout
  milliseconds elapsed{0};      // from the call until the close (or the timeout)
};

class HttpConnection {
 public:
  static std::expected<HttpConnection, std::string> open(
      int port, milliseconds timeout = milliseconds(30000));
  HttpConnection(HttpConnection&& other) noexcept;
  HttpConnection& operator=(HttpConnection&& other) noexcept;
  ~HttpConnection();

  // The deadline for each later request(), readResponse() or send() call.
  void setTimeout(milliseconds timeout) { timeout_ = timeout; }

  // Sends a request and reads its response. Adds "host" and, when there is a body or the
  // method usually has one, "content-length", unless `headers` has them already.
  std::expected<HttpResponse, std::string> request(std::string_view method, std::string_view path,
                                                   const HeaderList& headers = {},
                                                   std::string_view body = {});

  // Raw mode: writes bytes as they are. Fails if the peer closed or the deadline passed.
  std::expected<void, std::string> send(std::string_view bytes);
  // Reads one response from what the server sends next. `head_request`: the response to a
  // HEAD request, which has no body whatever its headers say.
  std::expected<HttpResponse, std::string> readResponse(bool head_request = false);
  // Reads until the server closes the connection or `timeout` passes.
  RawReply readUntilClose(milliseconds timeout);

  // Half-closes our side (we send no more), as a client that is done writing.
  void shutdownWrite();

 private:
  explicit HttpConnection(int fd, milliseconds timeout) : fd_(fd), timeout_(timeout) {}
  // Appends what arrives to buffer_; 0 at end of stream; an error on reset or timeout.
  std::expected<size_t, std::string> fill(std::chrono::steady_clock::time_point deadline);
  std::expected<std::string, std::string> readLine(std::chrono::steady_clock::time_point deadline);
  std::expected<std::string, std::string> readExactly(
      size_t n, std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  milliseconds timeout_;
  std::string buffer_;  // received, not yet parsed
};

// One request on a new connection, closed afterwards.
std::expected<HttpResponse, std::string> httpRequest(int port, std::string_view method,
                                                     std::string_view path,
                                                     const HeaderList& headers = {},
                                                     std::string_view body = {},
                                                     milliseconds timeout = milliseconds(30000));

// Raw mode on a new connection: sends `bytes`, then reads until the server closes the
// connection or `timeout` passes. A failed connect shows as an empty reply with
// closed_by_peer set.
RawReply rawExchange(int port, std::string_view bytes, milliseconds timeout);

}  // namespace flux::tests

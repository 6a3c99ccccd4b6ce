#include "support/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace flux::tests {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kTimedOut = "recv: timed out";

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

bool hasHeaderIn(const HeaderList& headers, std::string_view lower_name) {
  return std::ranges::any_of(headers, [&](const auto& h) { return lower(h.first) == lower_name; });
}

int remainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1'000'000));
}

// Waits for `events` on fd until the deadline: true when ready.
bool waitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = poll(&p, 1, remainingMs(deadline));
    if (r < 0 && errno == EINTR) continue;
    return r > 0;
  }
}

}  // namespace

bool HttpResponse::hasHeader(std::string_view lower_name) const {
  return headers.contains(std::string(lower_name));
}

std::string HttpResponse::header(std::string_view lower_name) const {
  auto it = headers.find(std::string(lower_name));
  return it == headers.end() ? std::string() : it->second;
}

std::expected<HttpConnection, std::string> HttpConnection::open(int port, milliseconds timeout) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return std::unexpected(std::string("socket: ") + strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    if (errno != EINPROGRESS) {
      std::string error = std::string("connect: ") + strerror(errno);
      close(fd);
      return std::unexpected(error);
    }
    int so_error = 0;
    socklen_t len = sizeof so_error;
    if (!waitFor(fd, POLLOUT, Clock::now() + timeout) ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0 || so_error != 0) {
      std::string error = std::string("connect: ") + (so_error ? strerror(so_error) : "timeout");
      close(fd);
      return std::unexpected(error);
    }
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return HttpConnection(fd, timeout);
}

HttpConnection::HttpConnection(HttpConnection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      timeout_(other.timeout_),
      buffer_(std::move(other.buffer_)) {}

HttpConnection& HttpConnection::operator=(HttpConnection&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    timeout_ = other.timeout_;
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

HttpConnection::~HttpConnection() {
  if (fd_ >= 0) close(fd_);
}

void HttpConnection::shutdownWrite() { shutdown(fd_, SHUT_WR); }

std::expected<void, std::string> HttpConnection::send(std::string_view bytes) {
  auto deadline = Clock::now() + timeout_;
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!waitFor(fd_, POLLOUT, deadline)) {
        return std::unexpected("send: timed out after " + std::to_string(done) + " of " +
                               std::to_string(bytes.size()) + " bytes");
      }
      continue;
    }
    return std::unexpected(std::string("send: ") + strerror(errno) + " after " +
                           std::to_string(done) + " bytes");
  }
  return {};
}

std::expected<size_t, std::string> HttpConnection::fill(Clock::time_point deadline) {
  char chunk[65536];
  for (;;) {
    ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<size_t>(n));
      return static_cast<size_t>(n);
    }
    if (n == 0) return 0;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!waitFor(fd_, POLLIN, deadline)) return std::unexpected(std::string(kTimedOut));
      continue;
    }
    return std::unexpected(std::string("recv: ") + strerror(errno));
  }
}

std::expected<std::string, std::string> HttpConnection::readLine(Clock::time_point deadline) {
  for (;;) {
    size_t eol = buffer_.find("\r\n");
    if (eol != std::string::npos) {
      std::string line = buffer_.substr(0, eol);
      buffer_.erase(0, eol + 2);
      return line;
    }
    auto n = fill(deadline);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) return std::unexpected(std::string("connection closed in the middle of a line"));
  }
}

std::expected<std::string, std::string> HttpConnection::readExactly(size_t size,
                                                                    Clock::time_point deadline) {
  while (buffer_.size() < size) {
    auto n = fill(deadline);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) {
      return std::unexpected("connection closed after " + std::to_string(buffer_.size()) + " of " +
                             std::to_string(size) + " body bytes");
    }
  }
  std::string out = buffer_.substr(0, size);
  buffer_.erase(0, size);
  return out;
}

std::expected<HttpResponse, std::string> HttpConnection::readResponse(bool head_request) {
  auto deadline = Clock::now() + timeout_;
  HttpResponse response;
  auto status_line = readLine(deadline);
  if (!status_line) return std::unexpected("no status line: " + status_line.error());
  // "HTTP/1.1 200 OK"
  if (!status_line->starts_with("HTTP/1.") || status_line->size() < 12 ||
      (*status_line)[8] != ' ') {
    return std::unexpected("bad status line: " + *status_line);
  }
  auto [ptr, ec] =
      std::from_chars(status_line->data() + 9, status_line->data() + 12, response.status);
  if (ec != std::errc() || ptr != status_line->data() + 12) {
    return std::unexpected("bad status code in: " + *status_line);
  }
  response.reason = status_line->size() > 13 ? status_line->substr(13) : std::string();

  for (;;) {
    auto line = readLine(deadline);
    if (!line) return std::unexpected("in the headers: " + line.error());
    if (line->empty()) break;
    size_t colon = line->find(':');
    if (colon == std::string::npos) return std::unexpected("bad header line: " + *line);
    std::string name = lower(trim(std::string_view(*line).substr(0, colon)));
    std::string value = trim(std::string_view(*line).substr(colon + 1));
    auto [it, inserted] = response.headers.try_emplace(name, value);
    if (!inserted) it->second += ", " + value;
  }

  bool no_body = head_request || response.status / 100 == 1 || response.status == 204 ||
                 response.status == 304;
  if (no_body) return response;
  if (lower(response.header("transfer-encoding")).find("chunked") != std::string::npos) {
    for (;;) {
      auto size_line = readLine(deadline);
      if (!size_line) return std::unexpected("chunk size: " + size_line.error());
      size_t size = 0;
      std::string_view hex = *size_line;
      hex = hex.substr(0, hex.find(';'));
      auto [end, err] = std::from_chars(hex.data(), hex.data() + hex.size(), size, 16);
      if (err != std::errc() || hex.empty())
        return std::unexpected("bad chunk size: " + *size_line);
      if (size == 0) break;
      auto data = readExactly(size, deadline);
      if (!data) return std::unexpected(data.error());
      response.body += *data;
      auto crlf = readLine(deadline);
      if (!crlf || !crlf->empty())
        return std::unexpected(std::string("missing CRLF after a chunk"));
    }
    for (;;) {  // trailers
      auto line = readLine(deadline);
      if (!line) return std::unexpected("in the trailers: " + line.error());
      if (line->empty()) break;
    }
    return response;
  }
  if (response.hasHeader("content-length")) {
    size_t length = 0;
    std::string text = response.header("content-length");
    auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), length);
    if (err != std::errc() || end != text.data() + text.size()) {
      return std::unexpected("bad content-length: " + text);
    }
    auto body = readExactly(length, deadline);
    if (!body) return std::unexpected(body.error());
    response.body = std::move(*body);
    return response;
  }
  // Neither: the body runs to the end of the connection.
  for (;;) {
    auto n = fill(deadline);
    if (!n) return std::unexpected("reading a body delimited by close: " + n.error());
    if (*n == 0) break;
  }
  response.body = std::move(buffer_);
  buffer_.clear();
  return response;
}

std::expected<HttpResponse, std::string> HttpConnection::request(std::string_view method,
                                                                 std::string_view path,
                                                                 const HeaderList& headers,
                                                                 std::string_view body) {
  std::string text;
  text.reserve(256 + body.size());
  text.append(method).append(" ").append(path).append(" HTTP/1.1\r\n");
  if (!hasHeaderIn(headers, "host")) text += "host: 127.0.0.1\r\n";
  bool has_body_method = method == "POST" || method == "PUT" || method == "PATCH";
  if (!hasHeaderIn(headers, "content-length") && !hasHeaderIn(headers, "transfer-encoding") &&
      (!body.empty() || has_body_method)) {
    text += "content-length: " + std::to_string(body.size()) + "\r\n";
  }
  for (const auto& [name, value] : headers)
    text.append(name).append(": ").append(value).append("\r\n");
  text += "\r\n";
  text.append(body);
  if (auto sent = send(text); !sent) return std::unexpected(sent.error());
  return readResponse(method == "HEAD");
}

RawReply HttpConnection::readUntilClose(milliseconds timeout) {
  auto start = Clock::now();
  auto deadline = start + timeout;
  RawReply reply;
  for (;;) {
    auto n = fill(deadline);
    if (!n) {
      // A reset is a close; a timeout is not.
      reply.closed_by_peer = n.error() != kTimedOut;
      break;
    }
    if (*n == 0) {
      reply.closed_by_peer = true;
      break;
    }
  }
  reply.elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  reply.received = std::move(buffer_);
  buffer_.clear();
  return reply;
}

std::expected<HttpResponse, std::string> httpRequest(int port, std::string_view method,
                                                     std::string_view path,
                                                     const HeaderList& headers,
                                                     std::string_view body, milliseconds timeout) {
  auto connection = HttpConnection::open(port, timeout);
  if (!connection) return std::unexpected(connection.error());
  return connection->request(method, path, headers, body);
}

RawReply rawExchange(int port, std::string_view bytes, milliseconds timeout) {
  auto start = Clock::now();
  auto connection = HttpConnection::open(port, timeout);
  if (!connection) return RawReply{.received = {}, .closed_by_peer = true, .elapsed = {}};
  // A server may answer and close before taking every byte: what it sent still counts.
  (void)connection->send(bytes);
  RawReply reply = connection->readUntilClose(timeout);
  reply.elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  return reply;
}

}  // namespace flux::tests

#include "net/http_stream.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "net/http_client.h"

namespace flux::net {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kHeadLimit = 64 * 1024;
constexpr size_t kReadSize = 16 * 1024;
// A chunk-size line has at most this many hex digits (16 would overflow 64 bits).
constexpr size_t kMaxSizeDigits = 15;
constexpr size_t kMaxTrailerLine = 8 * 1024;

int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::unexpected<Error> badChunk(std::string_view why) {
  return fail(ErrorCode::kInvalidArgument,
              "malformed chunked body from the server: " + std::string(why));
}

int remainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

std::string trimmed(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return std::string(text);
}

}  // namespace

Result<void> ChunkedDecoder::feed(std::string_view input, std::string& out) {
  size_t i = 0;
  while (i < input.size() && state_ != State::kDone) {
    char c = input[i];
    switch (state_) {
      case State::kSize: {
        int digit = hexDigit(c);
        if (digit >= 0) {
          if (++size_digits_ > kMaxSizeDigits) return badChunk("chunk size too large");
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(digit);
        } else if (size_digits_ == 0) {
          return badChunk("a chunk does not start with its size");
        } else if (c == ';' || c == ' ' || c == '\t') {
          state_ = State::kSizeExtension;
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else {
          return badChunk("bad character in a chunk size");
        }
        ++i;
        break;
      }
      case State::kSizeExtension:
        if (c == '\r') state_ = State::kSizeLf;
        ++i;
        break;
      case State::kSizeLf:
        if (c != '\n') return badChunk("a chunk size line does not end with CRLF");
        ++i;
        size_digits_ = 0;
        if (remaining_ == 0) {
          state_ = State::kTrailer;
          trailer_line_ = 0;
          trailer_cr_ = false;
        } else {
          state_ = State::kData;
        }
        break;
      case State::kData: {
        size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, input.size() - i));
        out.append(input.substr(i, take));
        i += take;
        remaining_ -= take;
        if (remaining_ == 0) state_ = State::kDataCr;
        break;
      }
      case State::kDataCr:
        if (c != '\r') return badChunk("a chunk's data does not end with CRLF");
        state_ = State::kDataLf;
        ++i;
        break;
      case State::kDataLf:
        if (c != '\n') return badChunk("a chunk's data does not end with CRLF");
        state_ = State::kSize;
        ++i;
        break;
      case State::kTrailer:
        // Trailer lines until an empty one.
        ++i;
        if (c == '\r') {
          trailer_cr_ = true;
        } else if (c == '\n') {
          if (trailer_line_ == 0) {
            state_ = State::kDone;
          } else {
            trailer_line_ = 0;
          }
          trailer_cr_ = false;
        } else {
          if (trailer_cr_) return badChunk("a bare CR in the trailers");
          if (++trailer_line_ > kMaxTrailerLine) return badChunk("a trailer line is too long");
        }
        break;
      case State::kDone:
        break;
    }
  }
  return {};
}

Result<std::unique_ptr<HttpStream>> HttpStream::open(const std::string& url,
                                                     const std::vector<HttpHeader>& headers,
                                                     std::chrono::milliseconds timeout) {
  auto parsed = parseHttpUrl(url);
  if (!parsed) return std::unexpected(parsed.error());
  const HttpUrl& where = *parsed;
  auto deadline = Clock::now() + timeout;
  std::string unreachable =
      "cannot reach the Flux server at " + where.origin + ": is `flux dev` running?";

  std::string request = "GET " + where.target + " HTTP/1.1\r\n";
  bool host_has_colon = where.host.find(':') != std::string::npos;
  std::string host_header = host_has_colon ? "[" + where.host + "]" : where.host;
  if (where.port != "80") host_header += ":" + where.port;
  request += "host: " + host_header + "\r\nuser-agent: flux-cli\r\nconnection: close\r\n";
  for (const HttpHeader& header : headers) {
    // A line break in a value would smuggle in headers of its own.
    if (header.value.find_first_of("\r\n", 0) != std::string::npos ||
        header.value.find('\0') != std::string::npos) {
      return fail(ErrorCode::kInvalidArgument,
                  "the " + header.name + " header has a line break or NUL in its value");
    }
    request += header.name + ": " + header.value + "\r\n";
  }
  request += "\r\n";

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* addresses = nullptr;
  if (int rc = getaddrinfo(where.host.c_str(), where.port.c_str(), &hints, &addresses); rc != 0) {
    return fail(ErrorCode::kUnavailable,
                "cannot resolve the host of " + where.origin + ": " + gai_strerror(rc));
  }
  std::unique_ptr<HttpStream> stream(new HttpStream());
  stream->origin_ = where.origin;
  bool timed_out = false;
  for (addrinfo* a = addresses; a != nullptr && stream->fd_ < 0; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    int rc = connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = poll(&p, 1, remainingMs(deadline));
      int error = 0;
      socklen_t size = sizeof error;
      if (rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) == 0 && error == 0) {
        rc = 0;
      } else {
        timed_out = timed_out || rc == 0;
        rc = -1;
      }
    }
    if (rc != 0) {
      ::close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    stream->fd_ = fd;
  }
  freeaddrinfo(addresses);
  if (stream->fd_ < 0) {
    if (timed_out) {
      return fail(ErrorCode::kTimeout,
                  "the Flux server at " + where.origin + " did not accept a connection in time");
    }
    return fail(ErrorCode::kUnavailable, unreachable);
  }

  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = send(stream->fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      pollfd p{stream->fd_, POLLOUT, 0};
      if (poll(&p, 1, remainingMs(deadline)) == 0) {
        return fail(ErrorCode::kTimeout,
                    "the Flux server at " + where.origin + " did not take the request in time");
      }
      continue;
    }
    return fail(ErrorCode::kUnavailable, "lost the connection to the Flux server at " +
                                             where.origin + ": " + std::strerror(errno));
  }
  if (auto head = stream->readHead(deadline); !head) return std::unexpected(head.error());
  return stream;
}

HttpStream::~HttpStream() {
  if (fd_ >= 0) ::close(fd_);
}

std::string_view HttpStream::header(std::string_view name) const {
  for (const HttpHeader& h : headers_) {
    if (equalsIgnoreCase(h.name, name)) return h.value;
  }
  return {};
}

Result<void> HttpStream::readHead(Clock::time_point deadline) {
  std::string head;
  size_t end = std::string::npos;
  char buffer[kReadSize];
  while (end == std::string::npos) {
    pollfd p{fd_, POLLIN, 0};
    int ready = poll(&p, 1, remainingMs(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      return fail(ErrorCode::kTimeout, "the Flux server at " + origin_ + " did not answer in time");
    }
    ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
    if (n <= 0) {
      return fail(ErrorCode::kUnavailable,
                  "the Flux server at " + origin_ + " closed the connection before answering");
    }
    head.append(buffer, static_cast<size_t>(n));
    end = head.find("\r\n\r\n");
    if (end == std::string::npos && head.size() > kHeadLimit) {
      return fail(ErrorCode::kUnavailable,
                  "the answer from " + origin_ + " has headers larger than 64 KiB");
    }
  }
  pending_ = head.substr(end + 4);
  head.resize(end);

  auto malformed = [this] {
    return fail(ErrorCode::kUnavailable,
                "the server at " + origin_ + " did not answer with HTTP/1.1");
  };
  size_t line_end = head.find("\r\n");
  std::string_view status_line = std::string_view(head).substr(0, line_end);
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12) return malformed();
  auto [ptr, ec] = std::from_chars(status_line.data() + 9, status_line.data() + 12, status_);
  if (ec != std::errc() || ptr != status_line.data() + 12) return malformed();
  std::string_view rest = line_end == std::string::npos
                              ? std::string_view{}
                              : std::string_view(head).substr(line_end + 2);
  while (!rest.empty()) {
    size_t eol = rest.find("\r\n");
    std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view{} : rest.substr(eol + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    headers_.push_back({std::string(line.substr(0, colon)), trimmed(line.substr(colon + 1))});
  }

  std::string_view encoding = header("transfer-encoding");
  chunked_ = encoding.find("chunked") != std::string_view::npos;
  if (!chunked_) {
    std::string_view length = header("content-length");
    if (!length.empty()) {
      auto [p, e] = std::from_chars(length.data(), length.data() + length.size(), length_left_);
      has_length_ = e == std::errc() && p == length.data() + length.size();
    }
  }
  return {};
}

Result<HttpStream::Progress> HttpStream::consume(std::string_view bytes, std::string& out) {
  if (chunked_) {
    if (auto fed = decoder_.feed(bytes, out); !fed) return std::unexpected(fed.error());
    if (decoder_.done()) ended_ = true;
  } else if (has_length_) {
    size_t take = static_cast<size_t>(std::min<uint64_t>(length_left_, bytes.size()));
    out.append(bytes.substr(0, take));
    length_left_ -= take;
    if (length_left_ == 0) ended_ = true;
  } else {
    out.append(bytes);
  }
  return ended_ ? Progress::kEnded : Progress::kMore;
}

Result<HttpStream::Progress> HttpStream::read(std::string& out) {
  if (ended_) return Progress::kEnded;
  if (!pending_.empty()) {
    std::string bytes = std::move(pending_);
    pending_.clear();
    auto progress = consume(bytes, out);
    if (!progress || *progress == Progress::kEnded) return progress;
  }
  char buffer[kReadSize];
  for (;;) {
    ssize_t n = recv(fd_, buffer, sizeof buffer, 0);
    if (n > 0) {
      auto progress = consume(std::string_view(buffer, static_cast<size_t>(n)), out);
      if (!progress || *progress == Progress::kEnded) return progress;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Progress::kMore;
    // The close ends a body that has neither a length nor chunks; any other is cut short.
    if (n == 0 && !chunked_ && !has_length_) {
      ended_ = true;
      return Progress::kEnded;
    }
    std::string why = n == 0 ? "the server closed it" : std::strerror(errno);
    return fail(ErrorCode::kUnavailable,
                "lost the connection to the Flux server at " + origin_ + " (" + why + ")");
  }
}

Result<std::string> HttpStream::readAll(std::chrono::milliseconds timeout, size_t limit) {
  auto deadline = Clock::now() + timeout;
  std::string body;
  while (!ended_ && body.size() < limit) {
    auto progress = read(body);
    if (!progress) return std::unexpected(progress.error());
    if (*progress == Progress::kEnded) break;
    pollfd p{fd_, POLLIN, 0};
    int ready = poll(&p, 1, remainingMs(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      return fail(ErrorCode::kTimeout,
                  "the Flux server at " + origin_ + " did not finish its answer in time");
    }
  }
  if (body.size() > limit) body.resize(limit);
  return body;
}

}  // namespace flux::net

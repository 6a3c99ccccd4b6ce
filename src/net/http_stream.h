// HttpStream: a GET whose response body is read as it arrives, for the CLI's `flux tail`
// (Server-Sent Events over chunked transfer encoding).
//
// Blocking and single-threaded like httpGet (never on a worker loop), but the body comes in
// pieces: the caller polls fd() together with its own descriptors (a signalfd, stdout) and
// calls read() when the socket is readable, so that Ctrl-C or a closed pipe end the wait at
// once. Plain http:// only, one request per connection.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "net/http_message.h"

namespace flux::net {

// Decodes a chunked body (RFC 9112 7.1) fed in pieces of any size; trailers are skipped.
class ChunkedDecoder {
 public:
  // Appends the body bytes in `input` to `out`. kInvalidArgument on a malformed frame.
  Result<void> feed(std::string_view input, std::string& out);
  // The last (zero-length) chunk and its trailers have been read.
  bool done() const { return state_ == State::kDone; }

 private:
  enum class State { kSize, kSizeExtension, kSizeLf, kData, kDataCr, kDataLf, kTrailer, kDone };
  State state_ = State::kSize;
  uint64_t remaining_ = 0;
  size_t size_digits_ = 0;
  size_t trailer_line_ = 0;  // bytes on the current trailer line
  bool trailer_cr_ = false;
};

class HttpStream {
 public:
  // Connects, sends the request and reads the status line and headers, all within `timeout`.
  // Errors as httpGet's: kInvalidArgument (bad URL or header), kUnavailable (cannot connect,
  // or the connection broke), kTimeout.
  static Result<std::unique_ptr<HttpStream>> open(const std::string& url,
                                                  const std::vector<HttpHeader>& headers,
                                                  std::chrono::milliseconds timeout);
  ~HttpStream();
  HttpStream(const HttpStream&) = delete;
  HttpStream& operator=(const HttpStream&) = delete;

  int status() const { return status_; }
  // First value of a response header, or empty. Case-insensitive.
  std::string_view header(std::string_view name) const;
  // The socket, for poll(): readable means read() has something to do.
  int fd() const { return fd_; }
  // Body bytes that came with the head are buffered already: poll() on fd() would not say so,
  // call read() first.
  bool hasBuffered() const { return !pending_.empty(); }

  enum class Progress { kMore, kEnded };
  // Appends to `out` what body bytes the socket has now, without blocking. kEnded once the
  // body is complete (the last chunk, the content length, or the close of a body delimited by
  // it); kUnavailable when the connection broke in the middle of the body.
  Result<Progress> read(std::string& out);

  // The rest of the body, up to `limit` bytes, within `timeout`: for an error answer.
  Result<std::string> readAll(std::chrono::milliseconds timeout, size_t limit = 1 << 20);

 private:
  HttpStream() = default;
  Result<void> readHead(std::chrono::steady_clock::time_point deadline);
  Result<Progress> consume(std::string_view bytes, std::string& out);

  int fd_ = -1;
  std::string origin_;
  int status_ = 0;
  std::vector<HttpHeader> headers_;
  std::string pending_;  // bytes read past the head, not yet consumed
  bool chunked_ = false;
  bool has_length_ = false;
  uint64_t length_left_ = 0;
  bool ended_ = false;
  ChunkedDecoder decoder_;
};

}  // namespace flux::net

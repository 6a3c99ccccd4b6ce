#include "support/fake_http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace flux::tests {

namespace {

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

const char* reasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 307:
      return "Temporary Redirect";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    default:
      return "Status";
  }
}

// One accepted connection: a non-blocking socket, optionally under TLS, whose waits also end
// when the server's wake pipe is written.
class Connection {
 public:
  static constexpr long kWoken = -2;

  Connection(int fd, SSL* ssl, int wake) : fd_(fd), ssl_(ssl), wake_(wake) {
    fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
    if (ssl_ != nullptr) SSL_set_fd(ssl_, fd_);
  }
  ~Connection() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    close(fd_);
  }

  bool handshake() {
    if (ssl_ == nullptr) return true;
    for (;;) {
      int r = SSL_accept(ssl_);
      if (r == 1) return true;
      int error = SSL_get_error(ssl_, r);
      if (error == SSL_ERROR_WANT_READ && wait(POLLIN)) continue;
      if (error == SSL_ERROR_WANT_WRITE && wait(POLLOUT)) continue;
      ERR_clear_error();
      return false;
    }
  }

  // > 0: bytes read; 0: the peer closed; -1: an error; kWoken: the server is stopping.
  long read(char* buffer, size_t size) {
    for (;;) {
      if (ssl_ != nullptr) {
        int r = SSL_read(ssl_, buffer, static_cast<int>(size));
        if (r > 0) return r;
        int error = SSL_get_error(ssl_, r);
        if (error == SSL_ERROR_ZERO_RETURN) return 0;
        if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
          if (!wait(error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT)) return kWoken;
          continue;
        }
        ERR_clear_error();
        // A client that drops the connection without close_notify.
        return error == SSL_ERROR_SYSCALL ? 0 : -1;
      }
      ssize_t r = ::read(fd_, buffer, size);
      if (r >= 0) return r;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!wait(POLLIN)) return kWoken;
        continue;
      }
      if (errno == EINTR) continue;
      return errno == ECONNRESET ? 0 : -1;
    }
  }

  bool writeAll(std::string_view data) {
    while (!data.empty()) {
      long n;
      if (ssl_ != nullptr) {
        int r = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
        if (r <= 0) {
          int error = SSL_get_error(ssl_, r);
          if ((error == SSL_ERROR_WANT_WRITE && wait(POLLOUT)) ||
              (error == SSL_ERROR_WANT_READ && wait(POLLIN))) {
            continue;
          }
          return false;
        }
        n = r;
      } else {
        ssize_t r = ::write(fd_, data.data(), data.size());
        if (r < 0) {
          if ((errno == EAGAIN || errno == EWOULDBLOCK) && wait(POLLOUT)) continue;
          if (errno == EINTR) continue;
          return false;
        }
        n = r;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

 private:
  // False when the server is stopping.
  bool wait(short events) {
    pollfd fds[2] = {{fd_, events, 0}, {wake_, POLLIN, 0}};
    for (;;) {
      int r = poll(fds, 2, -1);
      if (r < 0 && errno == EINTR) continue;
      return r > 0 && fds[1].revents == 0;
    }
  }

  int fd_;
  SSL* ssl_;
  int wake_;
};

}  // namespace

std::string FakeHttpServer::Request::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return {};
}

std::expected<std::unique_ptr<FakeHttpServer>, std::string> FakeHttpServer::start(
    Handler handler, std::optional<TlsFiles> tls) {
  std::unique_ptr<FakeHttpServer> server(new FakeHttpServer());
  server->handler_ = std::move(handler);
  if (tls) {
    server->tls_ = SSL_CTX_new(TLS_server_method());
    if (server->tls_ == nullptr ||
        SSL_CTX_use_certificate_chain_file(server->tls_, tls->certificate.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(server->tls_, tls->private_key.c_str(), SSL_FILETYPE_PEM) !=
            1) {
      return std::unexpected("cannot load the TLS certificate " + tls->certificate);
    }
  }
  if (pipe2(server->wake_, O_CLOEXEC) != 0) return std::unexpected("pipe failed");
  server->listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (server->listener_ < 0 ||
      bind(server->listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      listen(server->listener_, 64) != 0 ||
      getsockname(server->listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return std::unexpected(std::string("cannot listen on 127.0.0.1: ") + strerror(errno));
  }
  server->port_ = ntohs(address.sin_port);
  server->acceptor_ = std::thread([s = server.get()] { s->acceptLoop(); });
  return server;
}

FakeHttpServer::~FakeHttpServer() {
  if (wake_[1] >= 0) {
    char byte = 1;
    (void)!write(wake_[1], &byte, 1);
  }
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> connections;
  {
    std::lock_guard lock(mutex_);
    connections = std::move(connections_);
  }
  for (std::thread& t : connections) t.join();
  if (listener_ >= 0) close(listener_);
  for (int fd : wake_) {
    if (fd >= 0) close(fd);
  }
  if (tls_ != nullptr) SSL_CTX_free(tls_);
}

std::vector<FakeHttpServer::Request> FakeHttpServer::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

void FakeHttpServer::acceptLoop() {
  for (;;) {
    pollfd fds[2] = {{listener_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    int fd = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard lock(mutex_);
    connections_.emplace_back([this, fd] { serve(fd); });
  }
}

void FakeHttpServer::serve(int fd) {
  Connection connection(fd, tls_ != nullptr ? SSL_new(tls_) : nullptr, wake_[0]);
  if (!connection.handshake()) {
    ++failed_handshakes_;
    return;
  }
  std::string data;
  char buffer[16384];
  size_t head_end;
  while ((head_end = data.find("\r\n\r\n")) == std::string::npos) {
    long n = connection.read(buffer, sizeof buffer);
    if (n <= 0) return;
    data.append(buffer, static_cast<size_t>(n));
  }
  Request request;
  std::string_view head(data.data(), head_end);
  size_t line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  size_t space = line.find(' ');
  request.method = std::string(line.substr(0, space));
  request.target = std::string(line.substr(space + 1, line.rfind(' ') - space - 1));
  size_t content_length = 0;
  for (size_t pos = line_end; pos != std::string_view::npos && pos < head.size();) {
    size_t start = pos + 2;
    size_t end = head.find("\r\n", start);
    std::string_view field = head.substr(start, end == std::string_view::npos ? end : end - start);
    pos = end;
    size_t colon = field.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name = lower(field.substr(0, colon));
    std::string_view value = field.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (name == "content-length")
      content_length = std::strtoul(std::string(value).c_str(), nullptr, 10);
    request.headers.emplace_back(std::move(name), std::string(value));
  }
  request.body = data.substr(head_end + 4);
  while (request.body.size() < content_length) {
    long n = connection.read(buffer, sizeof buffer);
    if (n <= 0) return;
    request.body.append(buffer, static_cast<size_t>(n));
  }
  {
    std::lock_guard lock(mutex_);
    requests_.push_back(request);
  }
  Reply reply = handler_(request);
  if (reply.hang) {
    for (;;) {
      long n = connection.read(buffer, sizeof buffer);
      if (n > 0) continue;
      if (n != Connection::kWoken) ++closed_hanging_;
      return;
    }
  }
  std::string out =
      "HTTP/1.1 " + std::to_string(reply.status) + " " + reasonPhrase(reply.status) + "\r\n";
  for (const auto& [name, value] : reply.headers) out += name + ": " + value + "\r\n";
  out += "content-length: " + std::to_string(reply.body.size()) + "\r\nconnection: close\r\n\r\n";
  out += reply.body;
  connection.writeAll(out);
}

std::expected<FakeHttpServer::TlsFiles, std::string> makeSelfSignedCertificate(
    const std::string& directory, const std::string& dns_name) {
  FakeHttpServer::TlsFiles files{directory + "/cert.pem", directory + "/key.pem"};
  std::string command =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
      "-nodes -days 2 -subj /CN=" +
      dns_name + " -addext subjectAltName=DNS:" + dns_name + " -keyout '" + files.private_key +
      "' -out '" + files.certificate + "' >/dev/null 2>&1";
  int status = std::system(command.c_str());
  if (status != 0 || !std::filesystem::exists(files.certificate)) {
    return std::unexpected("`openssl req` failed (status " + std::to_string(status) +
                           "): is the openssl command installed?");
  }
  return files;
}

}  // namespace flux::tests

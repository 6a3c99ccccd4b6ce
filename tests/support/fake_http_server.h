// FakeHttpServer: a tiny HTTP/1.1 server on 127.0.0.1 in the test process, standing in for a
// third-party API (a payment provider) that handlers fetch() from. Plain HTTP or HTTPS (OpenSSL,
// with a certificate the test made).
//
// One request per connection, answered by the test's handler on the connection's own thread.
// A reply with `hang` set never answers: the connection stays open until the client closes it
// (counted by closedHanging()) or the server is destroyed. Everything it saw is kept for the
// test to check. Thread-safe accessors; the destructor closes everything and joins.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace flux::tests {

class FakeHttpServer {
 public:
  struct Request {
    std::string method;
    std::string target;
    std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
    std::string body;
    std::string header(std::string_view lower_name) const;  // "" when absent
  };
  struct Reply {
    int status = 200;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    bool hang = false;  // never answer; hold the connection open
  };
  using Handler = std::function<Reply(const Request&)>;

  struct TlsFiles {
    std::string certificate;  // PEM
    std::string private_key;  // PEM
  };

  static std::expected<std::unique_ptr<FakeHttpServer>, std::string> start(
      Handler handler, std::optional<TlsFiles> tls = std::nullopt);
  ~FakeHttpServer();
  FakeHttpServer(const FakeHttpServer&) = delete;
  FakeHttpServer& operator=(const FakeHttpServer&) = delete;

  int port() const { return port_; }
  std::vector<Request> requests() const;
  // Hanging connections the client closed.
  int closedHanging() const { return closed_hanging_; }
  // Connections whose TLS handshake failed (the client refused the certificate).
  int failedHandshakes() const { return failed_handshakes_; }

 private:
  FakeHttpServer() = default;
  void acceptLoop();
  void serve(int fd);

  Handler handler_;
  SSL_CTX* tls_ = nullptr;
  int listener_ = -1;
  int wake_[2] = {-1, -1};  // written by the destructor: every wait ends
  int port_ = 0;
  std::thread acceptor_;
  mutable std::mutex mutex_;
  std::vector<std::thread> connections_;
  std::vector<Request> requests_;
  std::atomic<int> closed_hanging_{0};
  std::atomic<int> failed_handshakes_{0};
};

// A self-signed certificate for `dns_name` (and only that name) made with the openssl command;
// an error when openssl is missing or fails.
std::expected<FakeHttpServer::TlsFiles, std::string> makeSelfSignedCertificate(
    const std::string& directory, const std::string& dns_name);

}  // namespace flux::tests

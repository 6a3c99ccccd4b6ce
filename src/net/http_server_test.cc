// What HttpServer writes on the wire for a whole (not streamed) response, read byte for byte by
// a plain socket over loopback: the head it frames itself, keep-alive, and the headers it
// refuses to write.
#include "net/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>

#include "net/test_server.h"

namespace flux::net {
namespace {

using namespace std::chrono_literals;

// Answers by path: /hello, /no-content (a 204 with a body it must not send), /odd (headers
// the server must drop or replace).
class FixedHandler : public RequestHandler {
 public:
  void handle(HttpRequest request, Responder respond) override {
    HttpResponse response;
    if (request.target == "/no-content") {
      response.status = 204;
      response.body = "not sent";
    } else if (request.target == "/odd") {
      response.status = 201;
      response.headers = {{"x-fine", "yes"},
                          {"Content-Length", "999"},
                          {"transfer-encoding", "chunked"},
                          {"Connection", "keep-alive"},
                          {"x-split", "a\r\nx-injected: 1"},
                          {"x-nul", std::string("a\0b", 3)}};
      response.body = "odd";
    } else {
      response.headers = {{"content-type", "text/plain"}};
      response.body = "hello";
    }
    respond(std::move(response));
  }
};

// A blocking loopback client that reads what the server sends, as it comes.
class RawClient {
 public:
  explicit RawClient(uint16_t port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  }
  ~RawClient() { close(fd_); }

  void send(const std::string& bytes) {
    EXPECT_EQ(::send(fd_, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
  }
  // Reads until `size` bytes came, the server closed, or 5 s passed.
  std::string read(size_t size) {
    std::string got;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (got.size() < size && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char buffer[4096];
      ssize_t n = recv(fd_, buffer, std::min(sizeof buffer, size - got.size()), 0);
      if (n <= 0) break;
      got.append(buffer, static_cast<size_t>(n));
    }
    return got;
  }
  // Whether the server closed the connection (within 5 s).
  bool closedByServer() {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) return false;
    char byte;
    return recv(fd_, &byte, 1, 0) == 0;
  }

 private:
  int fd_;
};

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ =
        testing::startTestServer([](WorkerLoop&) { return std::make_unique<FixedHandler>(); });
    ASSERT_NE(server_, nullptr);
  }

  std::unique_ptr<HttpServer> server_;
};

constexpr std::string_view kHello =
    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 5\r\n\r\nhello";

TEST_F(HttpServerTest, KeepAliveResponsesAreTheHeadersAndTheBodyExactly) {
  RawClient client(server_->port());
  for (int i = 0; i < 3; ++i) {
    client.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(client.read(kHello.size()), kHello) << "response " << i;
  }
  // A 204 has neither body nor length, and the connection goes on.
  client.send("GET /no-content HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string_view no_content = "HTTP/1.1 204 No Content\r\n\r\n";
  EXPECT_EQ(client.read(no_content.size()), no_content);
  client.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(client.read(kHello.size()), kHello);
}

TEST_F(HttpServerTest, AHeadResponseHasTheLengthWithoutTheBody) {
  RawClient client(server_->port());
  client.send("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string_view head = kHello.substr(0, kHello.size() - 5);
  EXPECT_EQ(client.read(head.size()), head);
  // Nothing else came: the next response on the connection is whole.
  client.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(client.read(kHello.size()), kHello);
}

TEST_F(HttpServerTest, FramingHeadersAreTheServersAndBrokenOnesAreDropped) {
  RawClient client(server_->port());
  client.send("GET /odd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string_view expected =
      "HTTP/1.1 201 Created\r\nx-fine: yes\r\nContent-Length: 3\r\nConnection: close\r\n\r\nodd";
  EXPECT_EQ(client.read(expected.size() + 100), expected);
  EXPECT_TRUE(client.closedByServer());
}

}  // namespace
}  // namespace flux::net

#include "net/fetch_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace flux::net {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// ---- URLs ----

TEST(FetchUrlTest, ParsesHttpAndHttps) {
  auto a = parseFetchUrl("http://Example.COM/a/b?x=1#frag");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_FALSE(a->tls);
  EXPECT_EQ(a->host, "example.com");
  EXPECT_EQ(a->port, "80");
  EXPECT_EQ(a->target, "/a/b?x=1");
  EXPECT_EQ(a->origin, "http://example.com");
  EXPECT_EQ(a->href, "http://example.com/a/b?x=1");

  auto b = parseFetchUrl("https://[::1]:8443");
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_TRUE(b->tls);
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, "8443");
  EXPECT_EQ(b->target, "/");
  EXPECT_EQ(b->origin, "https://[::1]:8443");

  auto c = parseFetchUrl("https://api.example.com:443?q");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->target, "/?q");
  EXPECT_EQ(c->origin, "https://api.example.com");
}

TEST(FetchUrlTest, RejectsWhatCannotBeFetched) {
  for (const char* url : {"ftp://example.com/", "example.com/x", "http:///path", "http://a b/",
                          "http://user:pw@example.com/", "http://example.com:0/",
                          "http://example.com:70000/", "http://example.com:8x/", "http://[::1/"}) {
    auto parsed = parseFetchUrl(url);
    EXPECT_FALSE(parsed) << url;
    if (!parsed) {
      EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
      EXPECT_NE(parsed.error().message.find("invalid URL"), std::string::npos);
    }
  }
  EXPECT_NE(parseFetchUrl("ftp://x/").error().message.find("only http: and https:"),
            std::string::npos);
}

TEST(FetchUrlTest, ResolvesLocations) {
  auto base = parseFetchUrl("https://pay.example.com/v1/charges/new?x=1");
  ASSERT_TRUE(base);
  auto href = [&](std::string_view location) {
    auto r = resolveLocation(*base, location);
    return r ? r->href : "error: " + r.error().message;
  };
  EXPECT_EQ(href("http://other.example/z"), "http://other.example/z");
  EXPECT_EQ(href("//cdn.example.com/a"), "https://cdn.example.com/a");
  EXPECT_EQ(href("/root?y=2"), "https://pay.example.com/root?y=2");
  EXPECT_EQ(href("done"), "https://pay.example.com/v1/charges/done");
  EXPECT_EQ(href("../refunds/"), "https://pay.example.com/v1/refunds/");
  EXPECT_EQ(href("./a/./b/../c"), "https://pay.example.com/v1/charges/a/c");
  EXPECT_EQ(href("../../../../x"), "https://pay.example.com/x");
  EXPECT_EQ(href("?page=2"), "https://pay.example.com/v1/charges/new?page=2");
  EXPECT_EQ(href(""), "https://pay.example.com/v1/charges/new?x=1");
  EXPECT_EQ(href(" /spaced path "), "https://pay.example.com/spaced%20path");
  EXPECT_EQ(href("/caf\xc3\xa9"), "https://pay.example.com/caf%C3%A9");
  EXPECT_TRUE(href("mailto:a@b").starts_with("error:"));
}

// ---- exchanges over loopback ----

// A blocking HTTP server on its own thread: each connection gets the reply `answer` returns
// for the request's head and body; "" means: close without answering. `hang` keeps the
// connection open until the client closes it.
class LoopbackServer {
 public:
  struct Seen {
    std::string head;
    std::string body;
  };
  using Answer = std::function<std::string(const Seen&)>;

  // kAtOnce: answers as soon as a client connects, without reading anything.
  enum class Mode { kReadRequest, kAtOnce };

  explicit LoopbackServer(Answer answer, Mode mode = Mode::kReadRequest)
      : answer_(std::move(answer)),
        mode_(mode),
        acceptor_(context_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { serve(); });
  }
  ~LoopbackServer() {
    stopping_ = true;
    boost::system::error_code ignored;
    // Wake the blocking accept with one last connection.
    tcp::socket poke(context_);
    poke.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ignored);
    thread_.join();
  }

  uint16_t port() const { return port_; }
  std::vector<Seen> seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  // Connections whose client closed while the server was still waiting (hanging routes).
  int closedByClient() const { return closed_by_client_; }

  static constexpr const char* kHang = "<hang>";

 private:
  void serve() {
    while (!stopping_) {
      tcp::socket socket(context_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stopping_) return;
      if (mode_ == Mode::kAtOnce) {
        asio::write(socket, asio::buffer(answer_(Seen{})), ec);
        continue;
      }
      std::string data;
      auto n = asio::read_until(socket, asio::dynamic_buffer(data), "\r\n\r\n", ec);
      if (ec) continue;
      Seen request{data.substr(0, n), data.substr(n)};
      size_t length = 0;
      if (auto at = lower(request.head).find("content-length:"); at != std::string::npos) {
        length = std::stoul(request.head.substr(at + 15));
      }
      while (request.body.size() < length) {
        char buf[4096];
        size_t got = socket.read_some(asio::buffer(buf), ec);
        if (ec) break;
        request.body.append(buf, got);
      }
      {
        std::lock_guard lock(mutex_);
        seen_.push_back(request);
      }
      std::string reply = answer_(request);
      if (reply == kHang) {
        char buf[1];
        socket.read_some(asio::buffer(buf), ec);  // returns when the client closes
        if (ec) ++closed_by_client_;
        continue;
      }
      if (!reply.empty()) asio::write(socket, asio::buffer(reply), ec);
    }
  }

  static std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }

  Answer answer_;
  Mode mode_;
  asio::io_context context_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> closed_by_client_{0};
  std::mutex mutex_;
  std::vector<Seen> seen_;
};

std::string reply(int status, std::string_view reason, std::string_view headers,
                  std::string_view body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n" +
         std::string(headers) + "content-length: " + std::to_string(body.size()) + "\r\n\r\n" +
         std::string(body);
}

FetchRequest req(std::string url, std::string method = "GET", std::vector<HttpHeader> headers = {},
                 std::string body = {}, RedirectMode redirect = RedirectMode::kFollow) {
  FetchRequest r;
  r.method = std::move(method);
  r.url = std::move(url);
  r.headers = std::move(headers);
  r.body = std::move(body);
  r.redirect = redirect;
  return r;
}

// Runs one fetch to completion on a private loop.
Result<FetchResponse> fetchOnce(FetchRequest request, FetchClientOptions options = {}) {
  asio::io_context loop;
  FetchClient client(loop, std::move(options));
  std::optional<Result<FetchResponse>> out;
  client.start(std::move(request), [&out](Result<FetchResponse> r) { out = std::move(r); });
  loop.run_for(std::chrono::seconds(20));
  if (!out) return fail(ErrorCode::kTimeout, "no answer within 20 s");
  EXPECT_EQ(client.inFlight(), 0u);
  return std::move(*out);
}

std::string url(const LoopbackServer& server, std::string_view path) {
  return "http://127.0.0.1:" + std::to_string(server.port()) + std::string(path);
}

TEST(FetchClientTest, GetsAResponse) {
  LoopbackServer server([](const LoopbackServer::Seen&) {
    return reply(200, "OK", "content-type: application/json\r\nx-a: 1\r\nx-a: 2\r\n",
                 R"({"ok":true})");
  });
  auto r = fetchOnce(req(url(server, "/charge?id=7")));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->status_text, "OK");
  EXPECT_EQ(r->body, R"({"ok":true})");
  EXPECT_EQ(r->url, url(server, "/charge?id=7"));
  int xa = 0;
  for (const auto& h : r->headers) xa += h.name == "x-a";
  EXPECT_EQ(xa, 2);
  auto seen = server.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_TRUE(seen[0].head.starts_with("GET /charge?id=7 HTTP/1.1\r\n")) << seen[0].head;
  EXPECT_NE(seen[0].head.find("Host: 127.0.0.1:" + std::to_string(server.port())),
            std::string::npos)
      << seen[0].head;
  EXPECT_NE(seen[0].head.find("Connection: close"), std::string::npos);
}

TEST(FetchClientTest, PostsABodyAndDropsFramingHeaders) {
  LoopbackServer server(
      [](const LoopbackServer::Seen& s) { return reply(201, "Created", "", s.body); });
  auto r = fetchOnce(req(url(server, "/"), "POST",
                         {{"Content-Type", "application/json"},
                          {"content-length", "999"},
                          {"Authorization", "Bearer x"}},
                         R"({"amount":42})"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body, R"({"amount":42})");
  auto head = server.seen().at(0).head;
  EXPECT_NE(head.find("Content-Length: 13"), std::string::npos) << head;
  // The caller's length is not sent (": 999": the server's port may hold "999" too).
  EXPECT_EQ(head.find(": 999\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("Authorization: Bearer x"), std::string::npos) << head;
}

TEST(FetchClientTest, ReadsChunkedAndEofDelimitedBodies) {
  LoopbackServer chunked([](const LoopbackServer::Seen&) {
    return std::string(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n "
        "world\r\n0\r\n\r\n");
  });
  auto a = fetchOnce(req(url(chunked, "/")));
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->body, "hello world");

  LoopbackServer eof([](const LoopbackServer::Seen&) {
    return std::string("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end");
  });
  auto b = fetchOnce(req(url(eof, "/")));
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->body, "until the end");
}

TEST(FetchClientTest, FollowsRedirectsLikeBrowsers) {
  LoopbackServer server([](const LoopbackServer::Seen& s) {
    if (s.head.starts_with("POST /start")) return reply(302, "Found", "location: next\r\n", "");
    if (s.head.starts_with("GET /next")) {
      return reply(307, "Temporary Redirect", "location: /final?x=1\r\n", "");
    }
    return reply(200, "OK", "", s.head.substr(0, s.head.find('\r')));
  });
  auto r = fetchOnce(req(url(server, "/start"), "POST", {{"content-type", "text/plain"}}, "abc"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->redirects, 2);
  EXPECT_EQ(r->url, url(server, "/final?x=1"));
  EXPECT_EQ(r->body, "GET /final?x=1 HTTP/1.1");  // 302 after POST: GET; 307 keeps the GET
  auto seen = server.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1].head.find("text/plain"), std::string::npos) << "body headers dropped";
}

TEST(FetchClientTest, RedirectModes) {
  LoopbackServer server(
      [](const LoopbackServer::Seen&) { return reply(301, "Moved", "location: /again\r\n", ""); });
  auto manual = fetchOnce(req(url(server, "/"), "GET", {}, {}, RedirectMode::kManual));
  ASSERT_TRUE(manual) << manual.error().message;
  EXPECT_EQ(manual->status, 301);

  auto error = fetchOnce(req(url(server, "/"), "GET", {}, {}, RedirectMode::kError));
  ASSERT_FALSE(error);
  EXPECT_NE(error.error().message.find("redirect mode is 'error'"), std::string::npos);

  FetchClientOptions options;
  options.max_redirects = 3;
  auto loop = fetchOnce(req(url(server, "/")), options);
  ASSERT_FALSE(loop);
  EXPECT_NE(loop.error().message.find("too many redirects (more than 3)"), std::string::npos)
      << loop.error().message;
  EXPECT_EQ(server.seen().size(), 1u + 1u + 4u);
}

TEST(FetchClientTest, NetworkErrorsNameTheHostAndTheCause) {
  uint16_t closed_port;
  {
    asio::io_context context;
    tcp::acceptor probe(context, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    closed_port = probe.local_endpoint().port();
  }
  auto refused = fetchOnce(req("http://127.0.0.1:" + std::to_string(closed_port) + "/"));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(refused.error().message,
            "cannot connect to 127.0.0.1:" + std::to_string(closed_port) + ": Connection refused");

  LoopbackServer silent([](const LoopbackServer::Seen&) { return std::string(); });
  auto closed = fetchOnce(req(url(silent, "/")));
  ASSERT_FALSE(closed);
  EXPECT_NE(closed.error().message.find("closed the connection without answering"),
            std::string::npos)
      << closed.error().message;

  auto unresolvable = fetchOnce(req("http://no-such-host.invalid/"));
  ASSERT_FALSE(unresolvable);
  EXPECT_NE(unresolvable.error().message.find("cannot resolve host 'no-such-host.invalid'"),
            std::string::npos)
      << unresolvable.error().message;

  auto bad = fetchOnce(req("gopher://x/"));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
}

TEST(FetchClientTest, CapsTheResponseBody) {
  LoopbackServer server(
      [](const LoopbackServer::Seen&) { return reply(200, "OK", "", std::string(4096, 'x')); });
  FetchClientOptions options;
  options.max_response_body = 1024;
  auto r = fetchOnce(req(url(server, "/")), options);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kResourceExhausted);
  EXPECT_NE(r.error().message.find("larger than the limit"), std::string::npos);
}

TEST(FetchClientTest, TlsHandshakeWithAPlainServerFails) {
  LoopbackServer server(
      [](const LoopbackServer::Seen&) { return reply(400, "Bad Request", "", "not TLS"); },
      LoopbackServer::Mode::kAtOnce);
  auto r = fetchOnce(req("https://127.0.0.1:" + std::to_string(server.port()) + "/"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("TLS handshake with 127.0.0.1:"), std::string::npos)
      << r.error().message;
}

TEST(FetchClientTest, CancelStopsTheExchangeWithoutCallingBack) {
  LoopbackServer server([](const LoopbackServer::Seen&) { return LoopbackServer::kHang; });
  asio::io_context loop;
  FetchClient client(loop, {});
  bool called = false;
  uint64_t id =
      client.start(req(url(server, "/hang")), [&called](Result<FetchResponse>) { called = true; });
  asio::steady_timer timer(loop, std::chrono::milliseconds(200));
  timer.async_wait([&](const boost::system::error_code&) { client.cancel(id); });
  loop.run_for(std::chrono::seconds(5));
  EXPECT_FALSE(called);
  EXPECT_EQ(client.inFlight(), 0u);
  for (int i = 0; i < 100 && server.closedByClient() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(server.closedByClient(), 1);
}

TEST(FetchClientTest, DestroyingTheClientCancelsEverything) {
  LoopbackServer server([](const LoopbackServer::Seen&) { return LoopbackServer::kHang; });
  asio::io_context loop;
  bool called = false;
  {
    FetchClient client(loop, {});
    client.start(req(url(server, "/hang")), [&called](Result<FetchResponse>) { called = true; });
    loop.run_for(std::chrono::milliseconds(200));
  }
  loop.run_for(std::chrono::milliseconds(200));  // handlers still queued see the cancellation
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace flux::net

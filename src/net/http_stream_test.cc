// Streamed responses end to end over loopback: a RequestHandler answering with
// HttpResponse::stream on a real HttpServer, read by HttpStream; and ChunkedDecoder alone.
#include "net/http_stream.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "net/http_server.h"
#include "net/test_server.h"

namespace flux::net {
namespace {

using namespace std::chrono_literals;

std::string decodeAll(std::string_view body, size_t piece) {
  ChunkedDecoder decoder;
  std::string out;
  for (size_t at = 0; at < body.size(); at += piece) {
    auto fed = decoder.feed(body.substr(at, piece), out);
    EXPECT_TRUE(fed.has_value()) << fed.error().message;
  }
  EXPECT_TRUE(decoder.done());
  return out;
}

TEST(ChunkedDecoderTest, DecodesInPiecesOfAnySize) {
  std::string body = "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: y\r\n\r\n";
  for (size_t piece : {1, 2, 3, 7, 100}) {
    EXPECT_EQ(decodeAll(body, piece), "hello 0123456789") << piece;
  }
}

TEST(ChunkedDecoderTest, RefusesMalformedFrames) {
  for (const char* bad :
       {"x\r\n", "5\r\nhelloXY", "5\nhello\r\n", "fffffffffffffffff\r\n", "\r\n"}) {
    ChunkedDecoder decoder;
    std::string out;
    EXPECT_FALSE(decoder.feed(bad, out).has_value()) << bad;
  }
}

// Answers every request with a stream that the test drives from its own thread.
class StreamingHandler : public RequestHandler {
 public:
  struct Shared {
    std::mutex mutex;
    std::shared_ptr<ResponseStream> stream;
    std::promise<void> opened;
    std::promise<void> closed;
    std::string first_words;
  };
  explicit StreamingHandler(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

  void handle(HttpRequest, Responder respond) override {
    HttpResponse response;
    response.headers = {{"content-type", "text/event-stream"}};
    response.stream = [shared = shared_](std::shared_ptr<ResponseStream> stream) {
      stream->onClose([shared] { shared->closed.set_value(); });
      // Written with the head: the two usually leave in one segment.
      if (!shared->first_words.empty()) stream->write(shared->first_words);
      std::lock_guard lock(shared->mutex);
      shared->stream = std::move(stream);
      shared->opened.set_value();
    };
    respond(std::move(response));
  }

 private:
  std::shared_ptr<Shared> shared_;
};

class StreamedResponseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = testing::startTestServer(
        [shared = shared_](WorkerLoop&) { return std::make_unique<StreamingHandler>(shared); });
    ASSERT_NE(server_, nullptr);
  }

  // Runs fn on the worker that owns the stream, and waits for it.
  void onWorker(std::function<void(ResponseStream&)> fn) {
    std::promise<void> done;
    server_->workers()[0]->post([&](RequestHandler&) {
      std::lock_guard lock(shared_->mutex);
      fn(*shared_->stream);
      done.set_value();
    });
    done.get_future().wait();
  }

  // Reads until `expected` bytes of body came (or the body ended), within 5 s.
  std::string readBody(HttpStream& stream, size_t expected) {
    std::string body;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (body.size() < expected && std::chrono::steady_clock::now() < deadline) {
      pollfd p{stream.fd(), POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      auto progress = stream.read(body);
      EXPECT_TRUE(progress.has_value());
      if (!progress || *progress == HttpStream::Progress::kEnded) break;
    }
    return body;
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_->port()) + "/s"; }

  std::shared_ptr<StreamingHandler::Shared> shared_ = std::make_shared<StreamingHandler::Shared>();
  std::unique_ptr<HttpServer> server_;
};

TEST_F(StreamedResponseTest, ChunksArriveAsTheyAreWrittenThenTheBodyEnds) {
  auto stream = HttpStream::open(url(), {}, 5s);
  ASSERT_TRUE(stream) << stream.error().message;
  EXPECT_EQ((*stream)->status(), 200);
  EXPECT_EQ((*stream)->header("content-type"), "text/event-stream");
  EXPECT_EQ((*stream)->header("transfer-encoding"), "chunked");
  shared_->opened.get_future().wait();

  onWorker([](ResponseStream& s) { EXPECT_TRUE(s.write("event: a\ndata: 1\n\n")); });
  EXPECT_EQ(readBody(**stream, 18), "event: a\ndata: 1\n\n");
  onWorker([](ResponseStream& s) {
    s.write("data: 2\n\n");
    s.write("");  // nothing: not the last chunk
    s.write("data: 3\n\n");
  });
  EXPECT_EQ(readBody(**stream, 18), "data: 2\n\ndata: 3\n\n");

  onWorker([](ResponseStream& s) {
    s.end();
    EXPECT_TRUE(s.closed());
    EXPECT_FALSE(s.write("late"));
  });
  std::string rest;
  auto progress = (*stream)->read(rest);
  for (int i = 0; i < 50 && progress && *progress == HttpStream::Progress::kMore; ++i) {
    std::this_thread::sleep_for(20ms);
    progress = (*stream)->read(rest);
  }
  ASSERT_TRUE(progress.has_value());
  EXPECT_EQ(*progress, HttpStream::Progress::kEnded);
  EXPECT_EQ(rest, "");
  EXPECT_EQ(shared_->closed.get_future().wait_for(5s), std::future_status::ready);
}

TEST_F(StreamedResponseTest, BytesThatCameWithTheHeadAreReadFirst) {
  shared_->first_words = "event: live\ndata: {}\n\n";
  auto stream = HttpStream::open(url(), {}, 5s);
  ASSERT_TRUE(stream) << stream.error().message;
  shared_->opened.get_future().wait();
  std::this_thread::sleep_for(50ms);
  // Whether they came with the head (buffered: poll() on the socket would wait in vain) or
  // after it, read() hands them over now.
  std::string body;
  if (!(*stream)->hasBuffered()) {
    pollfd p{(*stream)->fd(), POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 5000), 1);
  }
  auto progress = (*stream)->read(body);
  ASSERT_TRUE(progress.has_value());
  EXPECT_EQ(body, "event: live\ndata: {}\n\n");
  EXPECT_FALSE((*stream)->hasBuffered());
}

TEST_F(StreamedResponseTest, AClientThatGoesAwayClosesTheStream) {
  auto stream = HttpStream::open(url(), {}, 5s);
  ASSERT_TRUE(stream) << stream.error().message;
  shared_->opened.get_future().wait();
  stream->reset();  // closes the socket
  EXPECT_EQ(shared_->closed.get_future().wait_for(5s), std::future_status::ready);
  onWorker([](ResponseStream& s) {
    EXPECT_TRUE(s.closed());
    EXPECT_FALSE(s.write("data: nobody\n\n"));
  });
}

TEST_F(StreamedResponseTest, UnreadBytesAreCounted) {
  auto stream = HttpStream::open(url(), {}, 5s);
  ASSERT_TRUE(stream) << stream.error().message;
  shared_->opened.get_future().wait();
  // The client reads nothing: past the socket buffers the bytes wait in the server's queue.
  std::string block(1 << 20, 'x');
  size_t queued = 0;
  size_t written = 0;
  for (int i = 0; i < 64 && queued < (8u << 20); ++i) {
    onWorker([&](ResponseStream& s) {
      s.write(block);
      queued = s.queuedBytes();
    });
    written += block.size();
  }
  EXPECT_GE(queued, 8u << 20);
  // Once the client reads, the queue drains.
  std::string body = readBody(**stream, written);
  EXPECT_EQ(body.size(), written);
  size_t left = 1;
  for (int i = 0; i < 100 && left > 0; ++i) {
    onWorker([&](ResponseStream& s) { left = s.queuedBytes(); });
    if (left > 0) std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(left, 0u);
}

}  // namespace
}  // namespace flux::net

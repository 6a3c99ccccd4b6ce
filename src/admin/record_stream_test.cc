// GET /_flux/records/stream against a real PostgreSQL cluster: records stored by the real
// Recorder (whose NOTIFY feeds the real RecordFeed), answered by the real AdminApi on an
// io_context, written to a ResponseStream that the test reads (and can make slow or close).
// The framing and the filters alone are tested in sse_test.cc and record_queries_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "admin/admin_api.h"
#include "admin/record_feed.h"
#include "admin/test_cluster.h"
#include "base/clock.h"
#include "base/ids.h"
#include "record/execution_record.h"
#include "record/recorder.h"

namespace flux::admin {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kToken = "stream-test-token";

using testing::queryValue;

class StreamEnvironment : public testing::TestCluster {
 public:
  StreamEnvironment() : TestCluster("flux-admin-stream-test") {}
};

[[maybe_unused]] const ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new StreamEnvironment);

// The client's end of a stream: what was written, and knobs for a slow or vanished client.
class TestStream final : public net::ResponseStream {
 public:
  bool write(std::string data) override {
    if (closed_) return false;
    text += data;
    return true;
  }
  void end() override {
    ended = true;
    closeNow();
  }
  size_t queuedBytes() const override { return unread; }
  bool closed() const override { return closed_; }
  void onClose(std::function<void()> callback) override {
    if (closed_) {
      if (callback) callback();
      return;
    }
    on_close_ = std::move(callback);
  }
  // The client goes away.
  void hangUp() { closeNow(); }

  std::string text;
  bool ended = false;
  size_t unread = 0;  // what queuedBytes() answers: a client that reads nothing

 private:
  void closeNow() {
    if (closed_) return;
    closed_ = true;
    if (auto callback = std::move(on_close_)) {
      on_close_ = nullptr;
      callback();
    }
  }
  bool closed_ = false;
  std::function<void()> on_close_;
};

struct Event {
  std::string event;
  std::string id;
  json data;
};

// The events of a stream's text (the framing is sse_test.cc's business: here it is trusted).
std::vector<Event> eventsOf(const std::string& text) {
  std::vector<Event> out;
  size_t at = 0;
  while (true) {
    size_t end = text.find("\n\n", at);
    if (end == std::string::npos) break;
    std::string block = text.substr(at, end - at);
    at = end + 2;
    if (block.starts_with(":")) {
      out.push_back({"comment", "", json(block)});
      continue;
    }
    Event event;
    size_t line_at = 0;
    while (line_at <= block.size()) {
      size_t eol = block.find('\n', line_at);
      std::string line = block.substr(line_at, eol == std::string::npos ? eol : eol - line_at);
      if (line.starts_with("event: ")) event.event = line.substr(7);
      if (line.starts_with("id: ")) event.id = line.substr(4);
      if (line.starts_with("data: ")) event.data = json::parse(line.substr(6), nullptr, false);
      if (eol == std::string::npos) break;
      line_at = eol + 1;
    }
    out.push_back(std::move(event));
  }
  return out;
}

std::vector<std::string> recordIds(const std::vector<Event>& events) {
  std::vector<std::string> ids;
  for (const Event& e : events) {
    if (e.event == "record") ids.push_back(e.id);
  }
  return ids;
}

bool hasEvent(const std::vector<Event>& events, const std::string& name) {
  return std::any_of(events.begin(), events.end(),
                     [&name](const Event& e) { return e.event == name; });
}

class RecordStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(StreamEnvironment::conninfo().empty()) << "no PostgreSQL for the tests";
    RecordFeedOptions feed_options;
    feed_options.conninfo = StreamEnvironment::conninfo();
    feed_options.idle_close = 200ms;
    feed_.emplace(feed_options);
    record::RecorderOptions recorder_options;
    recorder_options.conninfo = StreamEnvironment::conninfo();
    recorder_options.spill_dir = StreamEnvironment::dir() / "spill";
    recorder_options.flush_interval = 10ms;
    fs::create_directories(recorder_options.spill_dir);
    recorder_.emplace(recorder_options);
    api_ = makeApi(loop_);
  }
  void TearDown() override {
    api_.reset();
    other_api_.reset();
    recorder_.reset();
    feed_.reset();
  }

  std::unique_ptr<AdminApi> makeApi(boost::asio::io_context& loop,
                                    RecordStreamOptions options = {}) {
    data::PoolOptions database;
    database.conninfo = StreamEnvironment::conninfo();
    return std::make_unique<AdminApi>(loop, kToken, database, &*feed_, options);
  }

  // Runs the loop until `done` or the timeout; false on timeout.
  bool runUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      loop_.restart();
      loop_.run_for(10ms);
    }
    return true;
  }

  // Opens a stream; the TestStream once the head is out (nullptr and the status otherwise).
  struct Opened {
    int status = 0;
    std::string body;
    std::shared_ptr<TestStream> stream;
  };
  Opened open(AdminApi& api, std::string target, bool with_token = true) {
    net::HttpRequest request;
    request.method = "GET";
    request.target = std::move(target);
    if (with_token) request.headers.push_back({"authorization", std::string("Bearer ") + kToken});
    auto opened = std::make_shared<std::optional<Opened>>();
    api.handle(std::move(request), [opened](net::HttpResponse response) {
      Opened result;
      result.status = response.status;
      result.body = response.body;
      if (response.stream) {
        result.stream = std::make_shared<TestStream>();
        response.stream(result.stream);
      }
      *opened = std::move(result);
    });
    EXPECT_TRUE(runUntil([&] { return opened->has_value(); })) << "no answer";
    return opened->value_or(Opened{});
  }

  // A record of `function` with a new UUIDv7 id, started now (or `ago` before).
  record::ExecutionRecord makeRecord(std::string function, std::string path, int status,
                                     std::string kind = "http",
                                     std::chrono::milliseconds ago = 0ms) {
    record::ExecutionRecord r;
    r.started_at_us = static_cast<int64_t>(clock_.nowMillis() * 1000) - ago.count() * 1000;
    r.id = RequestId::generate(r.started_at_us, random_).toString();  // as the gateway makes it
    r.kind = std::move(kind);
    r.function = std::move(function);
    r.method = r.kind == "http" ? "POST" : "";
    r.path = std::move(path);
    r.status = status;
    r.duration_us = 1500;
    if (status >= 500) {
      r.error = record::RecordedError{"Stripe API timeout", "payments.ts:4:2", "", "user_code", 0};
    }
    return r;
  }

  std::string submit(record::ExecutionRecord r) {
    std::string id = r.id;
    recorder_->submit(std::move(r));
    return id;
  }

  // Waits until flux.executions has the record.
  void waitStored(const std::string& id) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (queryValue(StreamEnvironment::conninfo(),
                      "SELECT count(*) FROM flux.executions WHERE id = '" + id + "'") != "1") {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << id << " was not stored";
      std::this_thread::sleep_for(10ms);
    }
  }

  SystemClock clock_;
  SystemRandom random_;
  boost::asio::io_context loop_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_ =
      boost::asio::make_work_guard(loop_);
  std::optional<RecordFeed> feed_;
  std::optional<record::Recorder> recorder_;
  std::unique_ptr<AdminApi> api_;
  std::unique_ptr<AdminApi> other_api_;
};

TEST_F(RecordStreamTest, WithoutTheTokenIs401) {
  Opened opened = open(*api_, "/_flux/records/stream", /*with_token=*/false);
  EXPECT_EQ(opened.status, 401);
  EXPECT_EQ(opened.stream, nullptr);
}

TEST_F(RecordStreamTest, BadFiltersAre400) {
  Opened opened = open(*api_, "/_flux/records/stream?status=teapot");
  EXPECT_EQ(opened.status, 400);
  EXPECT_NE(opened.body.find("(5xx)"), std::string::npos) << opened.body;
}

TEST_F(RecordStreamTest, LiveRecordsArriveAsTheyAreStoredWithTheirFilter) {
  Opened all = open(*api_, "/_flux/records/stream");
  ASSERT_EQ(all.status, 200);
  ASSERT_NE(all.stream, nullptr);
  Opened errors = open(*api_, "/_flux/records/stream?errors_only=1&path=/pay*");
  ASSERT_NE(errors.stream, nullptr);
  ASSERT_TRUE(runUntil([&] { return hasEvent(eventsOf(all.stream->text), "live"); }));

  std::string ok = submit(makeRecord("signup", "/signup", 201));
  std::string failed = submit(makeRecord("pay", "/pay/now", 500));
  std::string other_failure = submit(makeRecord("users", "/users", 404));
  ASSERT_TRUE(runUntil([&] { return recordIds(eventsOf(all.stream->text)).size() == 3; }))
      << all.stream->text;
  ASSERT_TRUE(runUntil([&] { return !recordIds(eventsOf(errors.stream->text)).empty(); }));
  std::vector<Event> events = eventsOf(all.stream->text);
  std::vector<std::string> ids = recordIds(events);
  std::sort(ids.begin(), ids.end());
  std::vector<std::string> expected{ok, failed, other_failure};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(ids, expected);
  for (const Event& e : events) {
    if (e.event != "record") continue;
    // The summary of GET /_flux/records, mutations included.
    EXPECT_EQ(e.data["id"], e.id);
    EXPECT_TRUE(e.data["mutations"].is_object()) << e.data.dump();
    if (e.id == failed) {
      EXPECT_EQ(e.data["status"], 500);
      EXPECT_EQ(e.data["error"], "Stripe API timeout");
      EXPECT_EQ(e.data["path"], "/pay/now");
    }
  }
  // Give the other records time to arrive where they do not belong.
  runUntil([] { return false; }, 300ms);
  EXPECT_EQ(recordIds(eventsOf(errors.stream->text)), std::vector<std::string>{failed});
}

TEST_F(RecordStreamTest, PastThenLiveWithoutGapOrRepeat) {
  // Records of the last minute, one of them started long ago but stored now.
  std::vector<std::string> past;
  for (int i = 0; i < 5; ++i) past.push_back(submit(makeRecord("orders", "/orders", 200)));
  for (const std::string& id : past) waitStored(id);
  int64_t since_us = static_cast<int64_t>(clock_.nowMillis() * 1000) - 60'000'000;

  // A small page, so that the past takes several reads while live records keep coming.
  RecordStreamOptions options;
  options.backfill_page = 2;
  other_api_ = makeApi(loop_, options);
  Opened opened =
      open(*other_api_, "/_flux/records/stream?fn=orders&since=" + std::to_string(since_us));
  ASSERT_NE(opened.stream, nullptr);
  std::vector<std::string> live;
  for (int i = 0; i < 5; ++i) {
    live.push_back(submit(makeRecord("orders", "/orders", 200)));
    loop_.restart();
    loop_.run_for(5ms);
  }
  // Stored after the others though it started before them: still shown once.
  live.push_back(submit(makeRecord("orders", "/orders", 200, "http", 30s)));
  ASSERT_TRUE(runUntil([&] {
    return recordIds(eventsOf(opened.stream->text)).size() >= past.size() + live.size();
  })) << opened.stream->text;
  runUntil([] { return false; }, 300ms);

  std::vector<Event> events = eventsOf(opened.stream->text);
  std::vector<std::string> ids = recordIds(events);
  std::set<std::string> unique(ids.begin(), ids.end());
  EXPECT_EQ(unique.size(), ids.size()) << "a record came twice:\n" << opened.stream->text;
  for (const std::string& id : past) EXPECT_TRUE(unique.contains(id)) << id;
  for (const std::string& id : live) EXPECT_TRUE(unique.contains(id)) << id;
  // The past comes first, oldest first, then "live".
  auto live_at =
      std::find_if(events.begin(), events.end(), [](const Event& e) { return e.event == "live"; });
  ASSERT_NE(live_at, events.end());
  std::vector<std::string> before_live = recordIds(std::vector<Event>(events.begin(), live_at));
  // Records stored while the past was being read may come in between, as they arrive (the late
  // one among them); the past itself is in order.
  std::vector<std::pair<int64_t, std::string>> starts;
  for (auto e = events.begin(); e != live_at; ++e) {
    if (e->event == "record" && std::find(past.begin(), past.end(), e->id) != past.end())
      starts.emplace_back(e->data.value("started_at_us", int64_t{0}), e->id);
  }
  EXPECT_TRUE(std::is_sorted(starts.begin(), starts.end())) << opened.stream->text;
  for (const std::string& id : past) {
    EXPECT_NE(std::find(before_live.begin(), before_live.end(), id), before_live.end()) << id;
  }
  EXPECT_GE(live_at->data.value("backfilled", 0), static_cast<int>(past.size()));
}

TEST_F(RecordStreamTest, ABatchTooBigForItsNotifyIsReadByRange) {
  Opened opened = open(*api_, "/_flux/records/stream?type=job");
  ASSERT_NE(opened.stream, nullptr);
  ASSERT_TRUE(runUntil([&] { return hasEvent(eventsOf(opened.stream->text), "live"); }));
  // Rows written by another node, announced as {"count", "min_id", "max_id"}.
  auto job = makeRecord("send_email", "", 0, "job");
  auto http = makeRecord("signup", "/signup", 201);
  std::string sql =
      "BEGIN; INSERT INTO flux.executions (id, kind, function, method, path, status, "
      "started_at, duration_us) VALUES ('" +
      job.id + "', 'job', 'send_email', '', '', 0, now(), 10), ('" + http.id +
      "', 'http', 'signup', 'POST', '/signup', 201, now(), 10); SELECT pg_notify('flux_records', "
      "'{\"count\": 2, \"min_id\": \"" +
      std::min(job.id, http.id) + "\", \"max_id\": \"" + std::max(job.id, http.id) +
      "\"}'); COMMIT";
  queryValue(StreamEnvironment::conninfo(), sql);
  ASSERT_TRUE(runUntil([&] { return !recordIds(eventsOf(opened.stream->text)).empty(); }));
  runUntil([] { return false; }, 300ms);
  EXPECT_EQ(recordIds(eventsOf(opened.stream->text)), std::vector<std::string>{job.id});
}

TEST_F(RecordStreamTest, ASlowClientIsDroppedWithAFinalEventAndOthersGoOn) {
  RecordStreamOptions options;
  options.max_queued_bytes = 1000;
  other_api_ = makeApi(loop_, options);
  Opened slow = open(*other_api_, "/_flux/records/stream");
  Opened quick = open(*other_api_, "/_flux/records/stream");
  ASSERT_NE(slow.stream, nullptr);
  ASSERT_NE(quick.stream, nullptr);
  ASSERT_TRUE(runUntil([&] { return hasEvent(eventsOf(slow.stream->text), "live"); }));
  slow.stream->unread = 5000;  // it stopped reading
  std::string first = submit(makeRecord("a", "/a", 200));
  ASSERT_TRUE(runUntil([&] { return slow.stream->ended; })) << slow.stream->text;
  std::vector<Event> events = eventsOf(slow.stream->text);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().event, "end");
  EXPECT_EQ(events.back().data["reason"], "slow");
  EXPECT_EQ(events.back().data["resume"], true);

  std::string second = submit(makeRecord("a", "/a", 200));
  ASSERT_TRUE(runUntil([&] { return recordIds(eventsOf(quick.stream->text)).size() == 2; }));
  EXPECT_FALSE(quick.stream->ended);
  EXPECT_TRUE(runUntil([&] { return feed_->stats().subscribers == 1; }));
}

TEST_F(RecordStreamTest, AClientThatGoesAwayIsForgottenAndTheConnectionIsOnePerProcess) {
  // Two workers, each with its own admin API and loop, three clients: one LISTEN connection.
  boost::asio::io_context other_loop;
  auto other_guard = boost::asio::make_work_guard(other_loop);
  other_api_ = makeApi(other_loop);
  std::thread other_worker([&] { other_loop.run(); });

  Opened a = open(*api_, "/_flux/records/stream");
  Opened b = open(*api_, "/_flux/records/stream?fn=x");
  // The other worker's client, opened on its own thread.
  auto c_stream = std::make_shared<TestStream>();
  boost::asio::post(other_loop, [&] {
    net::HttpRequest request;
    request.method = "GET";
    request.target = "/_flux/records/stream";
    request.headers.push_back({"authorization", std::string("Bearer ") + kToken});
    other_api_->handle(std::move(request), [c_stream](net::HttpResponse response) {
      if (response.stream) response.stream(c_stream);
    });
  });
  ASSERT_TRUE(runUntil([&] { return feed_->stats().subscribers == 3; }));
  EXPECT_EQ(feed_->stats().connects, 1u);
  std::string listeners = queryValue(
      StreamEnvironment::conninfo(),
      "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'flux-live-records'");
  EXPECT_EQ(listeners, "1");

  a.stream->hangUp();
  b.stream->hangUp();
  ASSERT_TRUE(runUntil([&] { return feed_->stats().subscribers == 1; }));
  boost::asio::post(other_loop, [&] { c_stream->hangUp(); });
  ASSERT_TRUE(runUntil([&] { return feed_->stats().subscribers == 0; }));
  // Nobody listens: the connection closes after idle_close.
  EXPECT_TRUE(runUntil([&] { return !feed_->stats().listening; }));

  boost::asio::post(other_loop, [&] { other_api_.reset(); });
  other_guard.reset();
  other_worker.join();
}

TEST_F(RecordStreamTest, IdleStreamsGetKeepAliveComments) {
  RecordStreamOptions options;
  options.keepalive_interval = 50ms;
  other_api_ = makeApi(loop_, options);
  Opened opened = open(*other_api_, "/_flux/records/stream");
  ASSERT_NE(opened.stream, nullptr);
  EXPECT_TRUE(
      runUntil([&] { return opened.stream->text.find(": keep-alive\n\n") != std::string::npos; }));
}

TEST_F(RecordStreamTest, AStoppingServerEndsItsStreams) {
  Opened opened = open(*api_, "/_flux/records/stream");
  ASSERT_NE(opened.stream, nullptr);
  ASSERT_TRUE(runUntil([&] { return hasEvent(eventsOf(opened.stream->text), "live"); }));
  api_.reset();
  EXPECT_TRUE(opened.stream->ended);
  std::vector<Event> events = eventsOf(opened.stream->text);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().event, "end");
  EXPECT_EQ(events.back().data["reason"], "shutdown");
  EXPECT_TRUE(runUntil([&] { return feed_->stats().subscribers == 0; }));
}

TEST_F(RecordStreamTest, WithoutAFeedTheStreamIs501) {
  data::PoolOptions database;
  database.conninfo = StreamEnvironment::conninfo();
  AdminApi no_feed(loop_, kToken, database);
  Opened opened = open(no_feed, "/_flux/records/stream");
  EXPECT_EQ(opened.status, 501);
}

TEST_F(RecordStreamTest, AnUnreachableDatabaseIs503) {
  RecordFeedOptions options;
  options.conninfo = "host=127.0.0.1 port=1 connect_timeout=1";
  RecordFeed unreachable(options);
  data::PoolOptions database;
  database.conninfo = options.conninfo;
  AdminApi api(loop_, kToken, database, &unreachable);
  Opened opened = open(api, "/_flux/records/stream");
  EXPECT_EQ(opened.status, 503);
  EXPECT_NE(opened.body.find("live records are unavailable"), std::string::npos) << opened.body;
}

}  // namespace
}  // namespace flux::admin

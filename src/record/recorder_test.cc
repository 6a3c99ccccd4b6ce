#include "record/recorder.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "app/embedded_postgres.h"
#include "record/copy_encoder.h"
#include "record/cpu_priority.h"
#include "record/schema.h"

namespace flux::record {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using namespace std::string_literals;

fs::path makeTempDir(const char* prefix) {
  std::string pattern = std::string("/tmp/") + prefix + "-XXXXXX";
  char* made = mkdtemp(pattern.data());
  if (made == nullptr) std::abort();  // no temp dir: nothing below can work
  // The server runs as the `postgres` user when the tests run as root: it must traverse this.
  chmod(made, 0755);
  return made;
}

// The binary's one PostgreSQL cluster, with flux.executions installed.
class PostgresEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    dir_ = makeTempDir("flux-record-test");
    auto pg = app::EmbeddedPostgres::start(dir_ / ".flux");
    ASSERT_TRUE(pg) << "cannot start PostgreSQL for the tests: " << pg.error().toString();
    pg_ = std::move(*pg);
    conninfo_ = pg_->connectionString();
    auto installed = installRecordSchema(conninfo_);
    ASSERT_TRUE(installed) << installed.error().toString();
  }
  void TearDown() override {
    pg_.reset();  // stops the server before its directory goes
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  static Result<void> stop() { return pg_->stop(); }
  static Result<void> start() {
    auto pg = app::EmbeddedPostgres::start(dir_ / ".flux");
    if (!pg) return std::unexpected(pg.error());
    pg_ = std::move(*pg);
    return {};
  }

  static inline fs::path dir_;
  static inline std::unique_ptr<app::EmbeddedPostgres> pg_;
  static inline std::string conninfo_;
};

[[maybe_unused]] const ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

// A plain blocking connection for the tests' own queries.
class Session {
 public:
  explicit Session(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
    EXPECT_EQ(PQstatus(conn_.get()), CONNECTION_OK) << PQerrorMessage(conn_.get());
  }
  // First column of the first row ("" for none or NULL); failures fail the test.
  std::string value(const std::string& sql, const std::vector<std::string>& params = {}) {
    std::vector<const char*> values;
    for (const auto& p : params) values.push_back(p.c_str());
    PGresult* result = PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(values.size()),
                                    nullptr, values.data(), nullptr, nullptr, 0);
    std::string out;
    ExecStatusType status = PQresultStatus(result);
    if (status == PGRES_TUPLES_OK) {
      if (PQntuples(result) > 0 && !PQgetisnull(result, 0, 0)) out = PQgetvalue(result, 0, 0);
    } else if (status != PGRES_COMMAND_OK) {
      ADD_FAILURE() << sql << ": " << PQresultErrorMessage(result);
    }
    PQclear(result);
    return out;
  }
  long count(const std::string& where, const std::vector<std::string>& params = {}) {
    return std::stol(value("SELECT count(*) FROM flux.executions WHERE " + where, params));
  }
  PGconn* get() { return conn_.get(); }

 private:
  struct Closer {
    void operator()(PGconn* conn) const { PQfinish(conn); }
  };
  std::unique_ptr<PGconn, Closer> conn_;
};

bool waitFor(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// Distinct, valid ids: the test's tag in the first group, a counter in the last.
std::string makeId(uint32_t tag, uint64_t n) {
  char buffer[40];
  std::snprintf(buffer, sizeof buffer, "%08x-0000-7000-8000-%012llx", tag,
                static_cast<unsigned long long>(n));
  return buffer;
}

ExecutionRecord makeRecord(const std::string& function, uint32_t tag, uint64_t n) {
  ExecutionRecord record;
  record.id = makeId(tag, n);
  record.kind = "http";
  record.function = function;
  record.method = "GET";
  record.path = "/" + function + "/" + std::to_string(n);
  record.status = 200;
  record.started_at_us = 1714567890000000 + static_cast<int64_t>(n);
  record.duration_us = 100 + static_cast<int64_t>(n % 50);
  record.request = {{"method", "GET"},
                    {"path", record.path},
                    {"query", json::object()},
                    {"headers", {{"accept", "*/*"}}},
                    {"body", nullptr}};
  record.response = {{"status", 200}, {"headers", json::object()}, {"body", {{"n", n}}}};
  Span span;
  span.id = 1;
  span.name = "handler";
  span.duration_us = 90;
  record.spans = {span};
  record.logs = {"line " + std::to_string(n)};
  return record;
}

// Threads of this process whose scheduling policy is SCHED_IDLE.
size_t idleThreads() {
  size_t idle = 0;
  for (const auto& task : fs::directory_iterator("/proc/self/task")) {
    if (sched_getscheduler(std::stoi(task.path().filename())) == SCHED_IDLE) ++idle;
  }
  return idle;
}

// What a recorder says to the operator (RecorderOptions::log), kept for the test to read.
class Said {
 public:
  std::function<void(std::string)> sink() {
    return [this](std::string line) {
      std::lock_guard<std::mutex> lock(mutex_);
      lines_.push_back(std::move(line));
    };
  }
  // Lines that contain part.
  size_t count(std::string_view part) {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<size_t>(
        std::count_if(lines_.begin(), lines_.end(),
                      [part](const auto& line) { return line.find(part) != std::string::npos; }));
  }
  std::string all() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string joined;
    for (const auto& line : lines_) joined += line + "\n";
    return joined;
  }

 private:
  std::mutex mutex_;
  std::vector<std::string> lines_;
};

size_t lineCount(const fs::path& path) {
  std::ifstream in(path);
  size_t lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  return lines;
}

class RecorderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(PostgresEnvironment::conninfo_.empty()) << "no PostgreSQL for the tests";
    spill_dir_ = makeTempDir("flux-record-spill");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(spill_dir_, ec);
  }

  RecorderOptions options() {
    RecorderOptions options;
    options.conninfo = PostgresEnvironment::conninfo_;
    options.spill_dir = spill_dir_;
    options.reconnect_min = 20ms;
    options.reconnect_max = 200ms;
    return options;
  }
  fs::path spillPath() const { return spill_dir_ / "records.jsonl"; }
  fs::path rejectedPath() const { return spill_dir_ / "records.rejected.jsonl"; }

  fs::path spill_dir_;
};

TEST_F(RecorderTest, SchemaInstallIsIdempotentAndSafeConcurrently) {
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&failures] {
      if (!installRecordSchema(PostgresEnvironment::conninfo_)) ++failures;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  Session session(PostgresEnvironment::conninfo_);
  EXPECT_EQ(session.value("SELECT count(*) FROM pg_indexes WHERE schemaname = 'flux' AND "
                          "tablename = 'executions'"),
            "2");  // the primary key (the time index too) and function + id
  auto unreachable = installRecordSchema("host=/nonexistent port=1 connect_timeout=1");
  ASSERT_FALSE(unreachable);
  EXPECT_EQ(unreachable.error().code, ErrorCode::kUnavailable);
}

TEST_F(RecorderTest, InstallUpgradesAnEarlierTable) {
  Session admin(PostgresEnvironment::conninfo_);
  admin.value("DROP DATABASE IF EXISTS earlier_records");
  admin.value("CREATE DATABASE earlier_records");
  std::string conninfo = PostgresEnvironment::conninfo_ + " dbname=earlier_records";
  {
    Session earlier(conninfo);
    earlier.value("CREATE SCHEMA flux");
    earlier.value(
        "CREATE TABLE flux.executions (id uuid PRIMARY KEY, kind text NOT "
        "NULL, parent_id uuid, replay_of uuid, tenant text, function text, deployment_id text, "
        "git_commit text, method text, path text, status int, error json, started_at timestamptz "
        "NOT NULL, duration_us bigint NOT NULL, request json, response json, spans json, journal "
        "json, logs json)");
    earlier.value("CREATE INDEX executions_started_at_idx ON flux.executions (started_at)");
    earlier.value(
        "CREATE INDEX executions_function_started_at_idx ON flux.executions (function, "
        "started_at)");
    earlier.value("CREATE INDEX executions_function_id_idx ON flux.executions (function, id)");
    earlier.value(
        "INSERT INTO flux.executions (id, kind, started_at, duration_us, error, spans, logs) "
        "VALUES ('00000000-0000-7000-8000-000000000001', 'http', now(), 1, "
        "'{\"message\": \"boom\"}', '[{\"name\": \"gateway\"}]', '[\"a\"]')");
  }
  ASSERT_TRUE(installRecordSchema(conninfo));
  ASSERT_TRUE(installRecordSchema(conninfo));  // and again: nothing left to change
  Session earlier(conninfo);
  EXPECT_EQ(earlier.value("SELECT string_agg(DISTINCT atttypid::regtype::text, ',') FROM "
                          "pg_attribute WHERE attrelid = 'flux.executions'::regclass AND attname "
                          "IN ('error', 'request', 'response', 'spans', 'journal', 'logs')"),
            "text");
  // The time indexes gave way to the id's, function + id to the handle's.
  EXPECT_EQ(earlier.value("SELECT string_agg(indexname || ' ' || coalesce(array_to_string("
                          "reloptions, ','), '-'), '; ' ORDER BY indexname) FROM pg_indexes "
                          "JOIN pg_class ON relname = indexname WHERE schemaname = 'flux' AND "
                          "tablename = 'executions'"),
            "executions_handle_idx -; executions_pkey -");
  EXPECT_EQ(earlier.value("SELECT error || spans || logs FROM flux.executions"),
            "{\"message\": \"boom\"}[{\"name\": \"gateway\"}][\"a\"]");
  // A record goes in over the earlier row.
  RecorderOptions opts = options();
  opts.conninfo = conninfo;
  {
    Recorder recorder(opts);  // its destructor stores what it holds
    recorder.submit(makeRecord("after-upgrade", 0xe0, 1));
  }
  EXPECT_EQ(earlier.value("SELECT count(*) FROM flux.executions"), "2");
  admin.value("DROP DATABASE earlier_records WITH (FORCE)");
}

TEST_F(RecorderTest, CopiesFiveThousandRecordsFromFourThreadsWithNastyStrings) {
  constexpr uint32_t kTag = 0xc0;
  ExecutionRecord nasty = makeRecord("copy-4", kTag, 0);
  const std::string nul_and_bad = "nul\0here \xff\xfe bad"s;
  nasty.method = "PO\tST";
  nasty.path = "/p\na\rth\\N\\.";
  nasty.tenant = "te\\nant\t\"q\"";
  nasty.request = {{"method", "POST"},
                   {"path", "/x"},
                   {"query", {{"q", "a\tb"}, {"api_token", "hide me"}}},
                   {"headers", {{"Authorization", "Bearer secret"}, {"X-Tab", "a\tb"}}},
                   {"body",
                    {{"text",
                      "tab\there\nnewline\r\n\\backslash \"quotes\" 'single' \\N \\. "
                      "\\u0000 literal"},
                     {"nul", nul_and_bad},
                     {"emoji", "😀 é €"},
                     {"nested", {{"password", "hunter2"}, {"list", {1, "\\", "\n"}}}},
                     {"json_in_string", "{\"a\":\"b\\\"c\"}"}}}};
  nasty.logs = {"\\.", "\n\\.\n", std::string("x\0y", 3)};
  nasty.error = RecordedError{"bad\tthing\n", "functions/a.ts:1:2", "at\\x\n", "user_code", 1};
  nasty.spans[0].input = {{"sql", "SELECT '\\t'\n"}, {"cookie", "c=1"}};

  {
    Recorder recorder(options());
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&recorder, &nasty, t] {
        for (int i = 0; i < 1250; ++i) {
          uint64_t n = static_cast<uint64_t>(t) * 10000 + static_cast<uint64_t>(i);
          // One of the 5,000 is the nasty one.
          recorder.submit(n == 0 ? nasty : makeRecord("copy-4", kTag, n));
        }
      });
    }
    for (auto& thread : threads) thread.join();
    ASSERT_TRUE(waitFor([&recorder] { return recorder.stats().stored >= 5000; }, 60s))
        << recorder.stats().last_error;
    RecorderStats stats = recorder.stats();
    EXPECT_EQ(stats.spilled, 0u);
    EXPECT_EQ(stats.rejected, 0u);
    EXPECT_EQ(stats.dropped, 0u);
    EXPECT_TRUE(stats.connected);
  }
  Session session(PostgresEnvironment::conninfo_);
  EXPECT_EQ(session.count("function = 'copy-4'"), 5000);
  EXPECT_EQ(session.value("SELECT count(DISTINCT id) FROM flux.executions WHERE function = "
                          "'copy-4'"),
            "5000");
  EXPECT_FALSE(fs::exists(spillPath()));

  // An ordinary row, field by field.
  std::string id = makeId(kTag, 30007);
  EXPECT_EQ(
      session.value("SELECT path || '|' || status || '|' || duration_us || '|' || "
                    "started_at || '|' || (response::json->'body'->>'n') || '|' || "
                    "(spans::json->0->>'name') || '|' || (logs::json->>0) FROM flux.executions "
                    "WHERE id = $1",
                    {id}),
      "/copy-4/30007|200|107|2024-05-01 12:51:30.030007+00|30007|handler|line 30007");

  // The nasty row: what PostgreSQL holds is the redacted record, byte for byte, with NUL and
  // invalid UTF-8 as U+FFFD.
  std::string nasty_id = nasty.id;
  Redactor().apply(nasty);
  auto column = [&](const std::string& name) {
    return session.value("SELECT " + name + " FROM flux.executions WHERE id = $1", {nasty_id});
  };
  EXPECT_EQ(column("method"), "PO\tST");
  EXPECT_EQ(column("path"), "/p\na\rth\\N\\.");
  EXPECT_EQ(column("tenant"), "te\\nant\t\"q\"");
  json request = json::parse(column("request"));
  EXPECT_EQ(request, json::parse(jsonForPostgres(nasty.request)));
  EXPECT_EQ(request["headers"]["Authorization"], "[redacted]");
  EXPECT_EQ(request["query"]["api_token"], "[redacted]");
  EXPECT_EQ(request["body"]["nested"]["password"], "[redacted]");
  EXPECT_EQ(request["body"]["text"],
            "tab\there\nnewline\r\n\\backslash \"quotes\" 'single' \\N \\. \\u0000 literal");
  EXPECT_EQ(request["body"]["nul"], "nul\xEF\xBF\xBDhere \xEF\xBF\xBD\xEF\xBF\xBD bad");
  EXPECT_EQ(request["body"]["emoji"], "😀 é €");
  EXPECT_EQ(request["body"]["json_in_string"], "{\"a\":\"b\\\"c\"}");
  EXPECT_EQ(json::parse(column("logs")), json({"\\.", "\n\\.\n", "x\xEF\xBF\xBDy"}));
  EXPECT_EQ(json::parse(column("error")), json::parse(jsonForPostgres(toJson(*nasty.error))));
  json spans = json::parse(column("spans"));
  EXPECT_EQ(spans[0]["input"]["sql"], "SELECT '\\t'\n");
  EXPECT_EQ(spans[0]["input"]["cookie"], "[redacted]");
  // Read back through the model, the row is the record.
  ExecutionRecord back = nasty;
  back.request = request;
  back.logs = {"\\.", "\n\\.\n", "x\xEF\xBF\xBDy"};
  auto spans_back = spanFromJson(spans[0]);
  ASSERT_TRUE(spans_back) << spans_back.error().toString();
  EXPECT_EQ(*spans_back, back.spans[0]);
}

// Collects NOTIFY payloads on a channel.
class Listener {
 public:
  Listener(const std::string& conninfo, const std::string& channel) : session_(conninfo) {
    session_.value("LISTEN " + channel);
  }
  // Reads what has arrived, waiting up to `limit` for the first one.
  void poll(std::chrono::milliseconds limit) {
    pollfd fd{PQsocket(session_.get()), POLLIN, 0};
    ::poll(&fd, 1, static_cast<int>(limit.count()));
    PQconsumeInput(session_.get());
    while (PGnotify* notify = PQnotifies(session_.get())) {
      payloads.emplace_back(notify->extra);
      PQfreemem(notify);
    }
  }
  // Records announced so far: array elements, or the count of a {"count"} payload.
  size_t announced() const {
    size_t total = 0;
    for (const auto& payload : payloads) {
      json parsed = json::parse(payload);
      total += parsed.is_array() ? parsed.size() : parsed["count"].get<size_t>();
    }
    return total;
  }
  std::vector<std::string> payloads;

 private:
  Session session_;
};

TEST_F(RecorderTest, NotifiesAtMostOncePerBatchAndFeedsLocalSubscribers) {
  constexpr uint32_t kTag = 0xa0;
  Listener listener(PostgresEnvironment::conninfo_, "flux_records_test");
  RecorderOptions opts = options();
  opts.notify_channel = "flux_records_test";
  opts.batch_size = 100;
  std::mutex seen_mutex;
  std::set<std::string> seen;
  {
    Recorder recorder(opts);
    recorder.subscribe([&seen_mutex, &seen](const RecordSummary& summary) {
      std::lock_guard<std::mutex> lock(seen_mutex);
      seen.insert(summary.id);
    });
    for (uint64_t n = 0; n < 1000; ++n) recorder.submit(makeRecord("notify", kTag, n));
    ASSERT_TRUE(waitFor([&recorder] { return recorder.stats().stored >= 1000; }, 30s));
    ASSERT_TRUE(waitFor(
        [&listener] {
          listener.poll(10ms);
          return listener.announced() >= 1000;
        },
        10s));
    RecorderStats stats = recorder.stats();
    EXPECT_GE(stats.batches, 10u);  // 100 a batch at most
    EXPECT_LE(listener.payloads.size(), stats.batches);
    EXPECT_EQ(stats.notifications, listener.payloads.size());
    EXPECT_EQ(listener.announced(), 1000u);
    for (const auto& payload : listener.payloads) {
      EXPECT_LT(payload.size(), 8000u);
      json parsed = json::parse(payload);
      if (parsed.is_object()) {
        EXPECT_TRUE(isCanonicalUuid(parsed["min_id"].get<std::string>()));
        EXPECT_LE(parsed["min_id"].get<std::string>(), parsed["max_id"].get<std::string>());
      }
    }

    // Small batches carry their summaries.
    listener.payloads.clear();
    for (uint64_t n = 1000; n < 1003; ++n) recorder.submit(makeRecord("notify", kTag, n));
    ASSERT_TRUE(waitFor(
        [&listener] {
          listener.poll(10ms);
          return listener.announced() >= 3;
        },
        10s));
    json summaries = json::array();
    for (const auto& payload : listener.payloads) {
      json parsed = json::parse(payload);
      ASSERT_TRUE(parsed.is_array()) << payload;
      for (auto& summary : parsed) summaries.push_back(summary);
    }
    ASSERT_EQ(summaries.size(), 3u);
    auto first = summaryFromJson(summaries[0]);
    ASSERT_TRUE(first) << first.error().toString();
    EXPECT_EQ(first->id, makeId(kTag, 1000));
    EXPECT_EQ(first->function, "notify");
    EXPECT_EQ(first->path, "/notify/1000");
    EXPECT_EQ(first->status, 200);
  }
  std::lock_guard<std::mutex> lock(seen_mutex);
  EXPECT_EQ(seen.size(), 1003u);
}

TEST_F(RecorderTest, SpillsWhilePostgresIsDownAndReplaysExactlyOnce) {
  constexpr uint32_t kTag = 0x0d;
  Said said;
  RecorderOptions opts = options();
  opts.log = said.sink();
  Recorder recorder(opts);
  uint64_t n = 0;
  for (; n < 500; ++n) recorder.submit(makeRecord("outage", kTag, n));
  ASSERT_TRUE(waitFor([&recorder] { return recorder.stats().stored >= 500; }, 30s));

  // Stop the server while records keep coming.
  std::atomic<bool> submitting{true};
  std::atomic<uint64_t> next{500};
  std::thread submitter([&recorder, &submitting, &next] {
    while (submitting.load()) {
      recorder.submit(makeRecord("outage", kTag, next++));
      std::this_thread::sleep_for(200us);
    }
  });
  auto stopped = PostgresEnvironment::stop();
  ASSERT_TRUE(stopped) << stopped.error().toString();
  ASSERT_TRUE(waitFor([&recorder] { return recorder.stats().spilled >= 300; }, 30s))
      << recorder.stats().last_error;
  submitting = false;
  submitter.join();
  const uint64_t first_after = next.load();
  for (n = first_after; n < first_after + 200; ++n) {
    recorder.submit(makeRecord("outage", kTag, n));
  }
  const uint64_t total = n;
  ASSERT_TRUE(waitFor(
      [&recorder, total] {
        RecorderStats stats = recorder.stats();
        return stats.stored + stats.spilled >= total;
      },
      30s));
  RecorderStats during = recorder.stats();
  EXPECT_FALSE(during.connected);
  EXPECT_FALSE(during.last_error.empty());
  EXPECT_TRUE(fs::exists(spillPath()));
  EXPECT_EQ(lineCount(spillPath()), during.spilled);
  // Once for the outage, however many reconnection attempts failed.
  EXPECT_EQ(said.count("PostgreSQL cannot take records"), 1u) << said.all();
  EXPECT_EQ(said.count(spillPath().string() + " until it can"), 1u) << said.all();

  auto started = PostgresEnvironment::start();
  ASSERT_TRUE(started) << started.error().toString();
  EXPECT_EQ(PostgresEnvironment::pg_->connectionString(), PostgresEnvironment::conninfo_);
  Session after(PostgresEnvironment::conninfo_);
  ASSERT_TRUE(waitFor(
      [&after, total] { return after.count("function = 'outage'") == static_cast<long>(total); },
      60s))
      << after.count("function = 'outage'") << " of " << total << "; "
      << recorder.stats().last_error;
  ASSERT_TRUE(waitFor([this] { return !fs::exists(spillPath()); }, 30s));
  EXPECT_EQ(after.value("SELECT count(DISTINCT id) FROM flux.executions WHERE function = "
                        "'outage'"),
            std::to_string(total));
  RecorderStats stats = recorder.stats();
  EXPECT_TRUE(stats.connected);
  EXPECT_EQ(stats.replayed, during.spilled);
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(stats.rejected, 0u);
  EXPECT_EQ(said.count("PostgreSQL takes records again; the spill file is replayed"), 1u)
      << said.all();
  // Said once the file is gone: the test may see the file go first.
  EXPECT_TRUE(waitFor(
      [&said] { return said.count("replayed into flux.executions and removed") == 1; }, 10s))
      << said.all();
}

TEST_F(RecorderTest, WithNeitherPostgresNorSpillFileRecordsWaitInMemory) {
  constexpr uint32_t kTag = 0x99;
  RecorderOptions opts = options();
  std::ofstream(spill_dir_ / "not-a-dir") << "x";
  opts.spill_dir = spill_dir_ / "not-a-dir" / "spill";  // cannot be created
  Recorder recorder(opts);
  ASSERT_TRUE(waitFor([&recorder] { return recorder.stats().connected; }, 10s));
  ASSERT_TRUE(PostgresEnvironment::stop());
  for (uint64_t n = 0; n < 50; ++n) recorder.submit(makeRecord("held", kTag, n));
  ASSERT_TRUE(waitFor(
      [&recorder] {
        return recorder.stats().last_error.find("cannot create spill directory") !=
               std::string::npos;
      },
      10s))
      << recorder.stats().last_error;
  auto started = PostgresEnvironment::start();
  ASSERT_TRUE(started) << started.error().toString();
  Session session(PostgresEnvironment::conninfo_);
  ASSERT_TRUE(waitFor([&session] { return session.count("function = 'held'") == 50; }, 30s))
      << recorder.stats().last_error;
  RecorderStats stats = recorder.stats();
  EXPECT_EQ(stats.spilled, 0u);
  EXPECT_EQ(stats.dropped, 0u);
  EXPECT_EQ(stats.stored, 50u);
}

TEST_F(RecorderTest, ReplaysASpillFileLeftByAnEarlierProcess) {
  constexpr uint32_t kTag = 0x1e;
  // One of the spilled records made it to PostgreSQL before the earlier process died.
  {
    Recorder recorder(options());
    recorder.submit(makeRecord("leftover", kTag, 7));
  }
  std::string lines;
  for (uint64_t n = 0; n < 2345; ++n)
    lines += dumpJson(toJson(makeRecord("leftover", kTag, n))) + "\n";
  json bad_id = toJson(makeRecord("leftover", kTag, 9999));
  bad_id["id"] = "not-a-uuid";
  lines += dumpJson(bad_id) + "\n";
  lines += "{\"id\": \"torn";  // the earlier process died mid-append
  {
    std::ofstream out(spillPath());
    out << lines;
  }
  RecorderOptions opts = options();
  opts.batch_size = 500;
  Recorder recorder(opts);
  ASSERT_TRUE(waitFor([this] { return !fs::exists(spillPath()); }, 60s))
      << recorder.stats().last_error;
  Session session(PostgresEnvironment::conninfo_);
  EXPECT_EQ(session.count("function = 'leftover'"), 2345);
  RecorderStats stats = recorder.stats();
  EXPECT_EQ(stats.replayed, 2345u);
  EXPECT_EQ(stats.rejected, 2u);
  EXPECT_EQ(lineCount(rejectedPath()), 2u);
  std::ifstream rejected(rejectedPath());
  std::string first;
  std::getline(rejected, first);
  json entry = json::parse(first);
  EXPECT_EQ(entry["record"]["id"], "not-a-uuid");
  EXPECT_NE(entry["error"].get<std::string>().find("id: \"not-a-uuid\" is not a UUID"),
            std::string::npos);
}

TEST_F(RecorderTest, DestructorLosesNothing) {
  constexpr uint32_t kTag = 0xde;
  RecorderOptions opts = options();
  opts.flush_interval = 10s;  // nothing would be written before the destructor
  {
    Recorder recorder(opts);
    for (uint64_t n = 0; n < 2500; ++n) recorder.submit(makeRecord("dtor", kTag, n));
  }
  Session session(PostgresEnvironment::conninfo_);
  EXPECT_EQ(session.count("function = 'dtor'"), 2500);

  // With PostgreSQL down, the destructor spills; the next recorder stores.
  ASSERT_TRUE(PostgresEnvironment::stop());
  {
    Recorder recorder(opts);
    for (uint64_t n = 2500; n < 2600; ++n) recorder.submit(makeRecord("dtor", kTag, n));
  }
  EXPECT_EQ(lineCount(spillPath()), 100u);
  auto started = PostgresEnvironment::start();
  ASSERT_TRUE(started) << started.error().toString();
  {
    Recorder recorder(opts);
    ASSERT_TRUE(waitFor([this] { return !fs::exists(spillPath()); }, 30s))
        << recorder.stats().last_error;
  }
  Session again(PostgresEnvironment::conninfo_);
  EXPECT_EQ(again.count("function = 'dtor'"), 2600);
}

TEST_F(RecorderTest, DuplicatesAreStoredOnceAndUnstorableRecordsSetAside) {
  constexpr uint32_t kTag = 0xdd;
  RecorderOptions opts = options();
  {
    Recorder recorder(opts);
    recorder.submit(makeRecord("dup", kTag, 1));
    ASSERT_TRUE(waitFor([&recorder] { return recorder.stats().stored >= 1; }, 10s));
    // The same id again, with new ones, in one batch: the batch's COPY fails on the primary
    // key and the batch goes through the deduplicating path.
    recorder.submit(makeRecord("dup", kTag, 1));
    recorder.submit(makeRecord("dup", kTag, 2));
    recorder.submit(makeRecord("dup", kTag, 2));
    ExecutionRecord bad_id = makeRecord("dup", kTag, 3);
    bad_id.id = "req-3";
    recorder.submit(bad_id);
    ExecutionRecord too_early = makeRecord("dup", kTag, 4);
    too_early.started_at_us = -5;
    recorder.submit(too_early);
    recorder.submit(makeRecord("dup", kTag, 5));
  }
  Session session(PostgresEnvironment::conninfo_);
  EXPECT_EQ(session.count("function = 'dup'"), 3);  // 1, 2, 5
  EXPECT_EQ(session.count("id = $1", {makeId(kTag, 1)}), 1);
  EXPECT_EQ(lineCount(rejectedPath()), 2u);
  EXPECT_FALSE(fs::exists(spillPath()));
}

TEST_F(RecorderTest, BeyondMaxQueuedTheOldestGoToDiskAndStillArriveOnce) {
  constexpr uint32_t kTag = 0xbb;
  RecorderOptions opts = options();
  opts.batch_size = 10;
  opts.max_queued = 50;
  Session locker(PostgresEnvironment::conninfo_);
  Session watcher(PostgresEnvironment::conninfo_);
  Recorder recorder(opts);
  // Hold the table so that the recorder's first COPY waits: meanwhile workers keep submitting.
  locker.value("BEGIN");
  locker.value("LOCK TABLE flux.executions IN ACCESS EXCLUSIVE MODE");
  for (uint64_t n = 0; n < 10; ++n) recorder.submit(makeRecord("bound", kTag, n));
  ASSERT_TRUE(waitFor(
      [&watcher] {
        return watcher.value(
                   "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                   "'flux.executions'::regclass") != "0";
      },
      10s));
  for (uint64_t n = 10; n < 500; ++n) recorder.submit(makeRecord("bound", kTag, n));
  EXPECT_GT(recorder.stats().overflowed, 0u);  // submit took them all the same
  locker.value("COMMIT");
  ASSERT_TRUE(waitFor([&watcher] { return watcher.count("function = 'bound'") == 500; }, 30s))
      << recorder.stats().last_error;
  ASSERT_TRUE(waitFor([this] { return !fs::exists(spillPath()); }, 30s));
  RecorderStats stats = recorder.stats();
  EXPECT_GE(stats.spilled, 400u);  // all but max_queued of the 490 that waited
  EXPECT_EQ(stats.replayed, stats.spilled);
  EXPECT_EQ(stats.stored + stats.replayed, 500u);
  EXPECT_EQ(stats.dropped, 0u);
}

TEST_F(RecorderTest, RecordsPilingUpOnASaturatedCpuRaiseTheRecorderUntilItCaughtUp) {
  constexpr uint32_t kTag = 0xcc;
  constexpr uint64_t kRecords = 20000;
  RecorderOptions opts = options();
  opts.batch_size = 100;
  opts.max_queued = 2000;
  opts.background_priority = true;
  Said said;
  opts.log = said.sink();
  bool can_raise = canRaiseCpuPriority();
  Session watcher(PostgresEnvironment::conninfo_);
  Recorder recorder(opts);
  ASSERT_TRUE(waitFor([&recorder] { return recorder.stats().connected; }, 10s));
  EXPECT_EQ(idleThreads(), can_raise ? 1u : 0u) << "the recorder idles only if it can be raised";

  // Every CPU busy at normal priority: an idle-priority recorder (and backend) would get a few
  // thousandths of a CPU and store these records in minutes.
  std::atomic<bool> spin{true};
  std::vector<std::thread> spinners;
  for (unsigned i = 0; i < std::max(2u, std::thread::hardware_concurrency()); ++i) {
    spinners.emplace_back([&spin] {
      while (spin.load(std::memory_order_relaxed)) {
      }
    });
  }
  for (uint64_t n = 0; n < kRecords; ++n) recorder.submit(makeRecord("saturated", kTag, n));
  // Out of memory while the CPU stays saturated: stored, or spilled to disk for later.
  bool written = waitFor(
      [&recorder] {
        RecorderStats stats = recorder.stats();
        return stats.stored + stats.spilled == kRecords;
      },
      30s);
  size_t idle_after = 0;
  if (can_raise) {
    waitFor([&idle_after] { return (idle_after = idleThreads()) == 1; }, 10s);
  }
  RecorderStats saturated = recorder.stats();
  spin = false;
  for (auto& spinner : spinners) spinner.join();
  ASSERT_TRUE(written) << "stored " << saturated.stored << ", spilled " << saturated.spilled;

  // The CPU free again, the spill file is replayed.
  ASSERT_TRUE(waitFor(
      [&watcher] { return watcher.count("function = 'saturated'") == long{kRecords}; }, 30s));
  ASSERT_TRUE(waitFor([this] { return !fs::exists(spillPath()); }, 30s));
  RecorderStats stats = recorder.stats();
  EXPECT_EQ(stats.stored + stats.replayed, kRecords);
  EXPECT_EQ(stats.dropped, 0u);
  if (can_raise) {
    EXPECT_GE(stats.raised, 1u);
    EXPECT_EQ(idle_after, 1u) << "caught up, the recorder idles again";
    // One line per quiet period, however often it fell behind, and the catching up after it.
    EXPECT_EQ(said.count("records waiting and no idle CPU"), 1u) << said.all();
    EXPECT_TRUE(waitFor([&said] { return said.count("caught up after") == 1; }, 10s)) << said.all();
  } else {
    EXPECT_EQ(stats.raised, 0u);
    EXPECT_EQ(said.count("no idle CPU"), 0u) << said.all();
  }
}

}  // namespace
}  // namespace flux::record

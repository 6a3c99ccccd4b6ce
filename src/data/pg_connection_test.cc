#include "data/pg_connection.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "app/embedded_postgres.h"

namespace flux::data {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Shared with pg_pool_test.cc (declared there): one PostgreSQL cluster for the whole binary.
namespace test_support {

namespace {

fs::path makeTempDir(const char* prefix) {
  std::string pattern = std::string("/tmp/") + prefix + "-XXXXXX";
  char* made = mkdtemp(pattern.data());
  if (made == nullptr) std::abort();  // no temp dir: nothing below can work
  // The server runs as the `postgres` user when the tests run as root: it must traverse this.
  chmod(made, 0755);
  return made;
}

class PostgresEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    dir_ = makeTempDir("flux-data-test");
    auto pg = app::EmbeddedPostgres::start(dir_ / ".flux");
    ASSERT_TRUE(pg) << "cannot start PostgreSQL for the tests: " << pg.error().toString();
    pg_ = std::move(*pg);
    conninfo_ = pg_->connectionString();
  }
  void TearDown() override {
    pg_.reset();  // stops the server before its directory goes
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  static inline fs::path dir_;
  static inline std::unique_ptr<app::EmbeddedPostgres> pg_;
  static inline std::string conninfo_;
};

[[maybe_unused]] const ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

}  // namespace

const std::string& pgConninfo() { return PostgresEnvironment::conninfo_; }

Result<void> stopPostgres() { return PostgresEnvironment::pg_->stop(); }

Result<void> startPostgres() {
  auto pg = app::EmbeddedPostgres::start(PostgresEnvironment::dir_ / ".flux");
  if (!pg) return std::unexpected(pg.error());
  PostgresEnvironment::pg_ = std::move(*pg);
  return {};
}

fs::path tempDir() { return makeTempDir("flux-data-scratch"); }

// Runs the loop on this thread until `done` holds or `limit` passes; returns whether it held.
bool runUntil(asio::io_context& loop, const std::function<bool()>& done,
              std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (loop.stopped()) loop.restart();
    if (loop.run_one_for(10ms) == 0 && loop.stopped()) std::this_thread::sleep_for(1ms);
  }
  return true;
}

Result<std::unique_ptr<PgConnection>> connectTo(asio::io_context& loop, const std::string& conninfo,
                                                std::chrono::milliseconds timeout) {
  std::optional<Result<std::unique_ptr<PgConnection>>> out;
  PgConnection::connect(loop, conninfo, timeout,
                        [&out](Result<std::unique_ptr<PgConnection>> r) { out = std::move(r); });
  if (!runUntil(
          loop, [&out] { return out.has_value(); }, timeout + 5s)) {
    return fail(ErrorCode::kTimeout, "the connect callback never ran");
  }
  return std::move(*out);
}

Result<QueryResult> run(asio::io_context& loop, PgConnection& connection, std::string sql,
                        QueryParams params, Prepare prepare) {
  std::optional<Result<QueryResult>> out;
  connection.query(std::move(sql), std::move(params), prepare,
                   [&out](Result<QueryResult> r) { out = std::move(r); });
  if (!runUntil(
          loop, [&out] { return out.has_value(); }, 10s)) {
    return fail(ErrorCode::kTimeout, "the query callback never ran");
  }
  return std::move(*out);
}

Result<QueryResult> runScript(asio::io_context& loop, PgConnection& connection,
                              std::string script) {
  std::optional<Result<QueryResult>> out;
  connection.execute(std::move(script), [&out](Result<QueryResult> r) { out = std::move(r); });
  if (!runUntil(
          loop, [&out] { return out.has_value(); }, 10s)) {
    return fail(ErrorCode::kTimeout, "the execute callback never ran");
  }
  return std::move(*out);
}

// The first value of the first row ("<error: ...>" or "<NULL>" otherwise, for readable diffs).
std::string firstValue(const Result<QueryResult>& result) {
  if (!result) return "<error: " + result.error().toString() + ">";
  if (result->rows.empty() || result->rows[0].empty()) return "<no rows>";
  return result->rows[0][0].value_or("<NULL>");
}

std::string fieldOf(const Error& error, const std::string& key) {
  for (const auto& [k, v] : error.fields) {
    if (k == key) return v;
  }
  return "";
}

}  // namespace test_support

namespace {

using test_support::connectTo;
using test_support::fieldOf;
using test_support::firstValue;
using test_support::pgConninfo;
using test_support::run;
using test_support::runScript;
using test_support::runUntil;

class PgConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(pgConninfo().empty()) << "no PostgreSQL for the tests";
    auto connection = connectTo(loop_, pgConninfo(), 5s);
    ASSERT_TRUE(connection) << connection.error().toString();
    connection_ = std::move(*connection);
  }

  Result<QueryResult> query(std::string sql, QueryParams params = {},
                            Prepare prepare = Prepare::kNo) {
    return run(loop_, *connection_, std::move(sql), std::move(params), prepare);
  }
  Result<QueryResult> execute(std::string script) {
    return runScript(loop_, *connection_, std::move(script));
  }

  asio::io_context loop_;
  std::unique_ptr<PgConnection> connection_;
};

TEST_F(PgConnectionTest, SessionFormatsValuesTheFluxWay) {
  auto result = query(
      "SELECT current_setting('TimeZone'), current_setting('DateStyle'), "
      "current_setting('extra_float_digits'), current_setting('application_name')");
  ASSERT_TRUE(result) << result.error().toString();
  ASSERT_EQ(result->rows.size(), 1u);
  EXPECT_EQ(result->rows[0][0], "UTC");
  EXPECT_EQ(result->rows[0][1], "ISO, MDY");
  EXPECT_EQ(result->rows[0][2], "3");
  EXPECT_EQ(result->rows[0][3], "flux");
  EXPECT_TRUE(connection_->healthy());
  EXPECT_TRUE(connection_->idle());
  EXPECT_FALSE(connection_->inTransaction());
}

TEST_F(PgConnectionTest, ConnectionStringKeepsItsOwnNameAndOptions) {
  auto named =
      connectTo(loop_, pgConninfo() + " application_name=mine options='-c search_path=custom'", 5s);
  ASSERT_TRUE(named) << named.error().toString();
  auto result = run(loop_, **named,
                    "SELECT current_setting('application_name'), current_setting('search_path'), "
                    "current_setting('TimeZone')",
                    {}, Prepare::kNo);
  ASSERT_TRUE(result) << result.error().toString();
  EXPECT_EQ(result->rows[0][0], "mine");
  EXPECT_EQ(result->rows[0][1], "custom");
  EXPECT_EQ(result->rows[0][2], "UTC");
}

TEST_F(PgConnectionTest, ParamsAreBoundAndValuesComeBackAsTextWithTypes) {
  auto result = query(
      "SELECT $1::int4 + 1 AS n, $2::text AS t, $3::bool AS b, $4::jsonb AS j, "
      "$5::timestamptz AS ts, $6::text AS missing",
      {"41", "it's; DROP TABLE x; --", "true", R"({"a": [1, 2]})", "2024-01-02 03:04:05+02",
       std::nullopt});
  ASSERT_TRUE(result) << result.error().toString();
  ASSERT_EQ(result->columns.size(), 6u);
  std::vector<std::string> names;
  std::vector<uint32_t> types;
  for (const PgColumn& column : result->columns) {
    names.push_back(column.name);
    types.push_back(column.type_oid);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"n", "t", "b", "j", "ts", "missing"}));
  EXPECT_EQ(types, (std::vector<uint32_t>{23, 25, 16, 3802, 1184, 25}));
  ASSERT_EQ(result->rows.size(), 1u);
  const auto& row = result->rows[0];
  EXPECT_EQ(row[0], "42");
  EXPECT_EQ(row[1], "it's; DROP TABLE x; --");
  EXPECT_EQ(row[2], "t");
  EXPECT_EQ(row[3], R"({"a": [1, 2]})");
  EXPECT_EQ(row[4], "2024-01-02 01:04:05+00");
  EXPECT_EQ(row[5], std::nullopt);
  EXPECT_EQ(result->command_tag, "SELECT 1");
  EXPECT_EQ(result->affected, 1u);
}

TEST_F(PgConnectionTest, CommandTagAndAffectedRows) {
  ASSERT_TRUE(query("CREATE TEMP TABLE counted (x int)"));
  auto inserted = query("INSERT INTO counted SELECT generate_series(1, $1::int)", {"3"});
  ASSERT_TRUE(inserted) << inserted.error().toString();
  EXPECT_EQ(inserted->command_tag, "INSERT 0 3");
  EXPECT_EQ(inserted->affected, 3u);
  auto updated = query("UPDATE counted SET x = x + 1 WHERE x > $1", {"1"});
  ASSERT_TRUE(updated) << updated.error().toString();
  EXPECT_EQ(updated->command_tag, "UPDATE 2");
  EXPECT_EQ(updated->affected, 2u);
  EXPECT_TRUE(updated->rows.empty());
}

TEST_F(PgConnectionTest, ServerErrorsCarrySqlstateAndTheConnectionStaysUsable) {
  auto missing = query("SELECT * FROM no_such_table");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(fieldOf(missing.error(), "sqlstate"), "42P01");
  EXPECT_NE(missing.error().message.find("relation \"no_such_table\" does not exist"),
            std::string::npos)
      << missing.error().message;
  EXPECT_TRUE(connection_->healthy());
  EXPECT_EQ(firstValue(query("SELECT 1")), "1");

  ASSERT_TRUE(query("CREATE TEMP TABLE uniq (id int PRIMARY KEY)"));
  ASSERT_TRUE(query("INSERT INTO uniq VALUES (1)"));
  auto duplicate = query("INSERT INTO uniq VALUES ($1::int)", {"1"});
  ASSERT_FALSE(duplicate);
  EXPECT_EQ(fieldOf(duplicate.error(), "sqlstate"), "23505");
  EXPECT_EQ(fieldOf(duplicate.error(), "constraint"), "uniq_pkey");
  EXPECT_NE(duplicate.error().message.find("Key (id)=(1) already exists"), std::string::npos)
      << duplicate.error().message;

  auto bad_param = query("SELECT $1::int", {"not a number"});
  ASSERT_FALSE(bad_param);
  EXPECT_EQ(fieldOf(bad_param.error(), "sqlstate"), "22P02");
  EXPECT_EQ(firstValue(query("SELECT 2")), "2");
}

TEST_F(PgConnectionTest, FailedTransactionIsVisibleUntilRolledBack) {
  ASSERT_TRUE(execute("BEGIN"));
  EXPECT_TRUE(connection_->inTransaction());
  EXPECT_FALSE(query("SELECT * FROM no_such_table"));
  EXPECT_TRUE(connection_->inTransaction());
  auto aborted = query("SELECT 1");
  ASSERT_FALSE(aborted);
  EXPECT_EQ(fieldOf(aborted.error(), "sqlstate"), "25P02");
  ASSERT_TRUE(execute("ROLLBACK"));
  EXPECT_FALSE(connection_->inTransaction());
  EXPECT_EQ(firstValue(query("SELECT 1")), "1");
}

TEST_F(PgConnectionTest, QueuedQueriesRunInOrderAndNeverCallBackInline) {
  std::vector<int> order;
  std::vector<std::string> mismatches;
  // The first one keeps the connection busy so that the rest queue up behind it.
  connection_->query("SELECT pg_sleep(0.05)", {}, Prepare::kNo,
                     [&order](Result<QueryResult>) { order.push_back(0); });
  constexpr int kCount = 30;
  for (int i = 1; i <= kCount; ++i) {
    auto check = [&order, &mismatches, i](Result<QueryResult> result) {
      order.push_back(i);
      bool should_fail = i == 10;
      if (should_fail != !result) mismatches.push_back("query " + std::to_string(i));
      if (result && firstValue(result) != std::to_string(i)) {
        mismatches.push_back("query " + std::to_string(i) + " got " + firstValue(result));
      }
    };
    if (i == 10) {
      connection_->query("SELECT * FROM no_such_table", {}, Prepare::kNo, check);
    } else if (i % 3 == 0) {
      connection_->query("SELECT $1::int", {std::to_string(i)}, Prepare::kYes, check);
    } else if (i % 3 == 1) {
      connection_->query("SELECT $1::int", {std::to_string(i)}, Prepare::kNo, check);
    } else {
      connection_->execute("SELECT " + std::to_string(i), check);
    }
  }
  EXPECT_TRUE(order.empty());
  EXPECT_FALSE(connection_->idle());
  ASSERT_TRUE(runUntil(
      loop_, [&order] { return order.size() == kCount + 1; }, 10s));
  std::vector<int> expected;
  for (int i = 0; i <= kCount; ++i) expected.push_back(i);
  EXPECT_EQ(order, expected);
  EXPECT_TRUE(mismatches.empty()) << mismatches.front();
  EXPECT_TRUE(connection_->idle());
}

TEST_F(PgConnectionTest, PreparedStatementsArePreparedOncePerConnection) {
  const std::string sql = "SELECT $1::int * 2";
  EXPECT_EQ(firstValue(query(sql, {"21"}, Prepare::kYes)), "42");
  EXPECT_EQ(firstValue(query(sql, {"5"}, Prepare::kYes)), "10");
  EXPECT_EQ(firstValue(query("SELECT count(*) FROM pg_prepared_statements")), "1");

  EXPECT_EQ(firstValue(query("SELECT $1::text || '!'", {"hi"}, Prepare::kYes)), "hi!");
  EXPECT_EQ(firstValue(query(sql, {"1"}, Prepare::kYes)), "2");
  EXPECT_EQ(firstValue(query("SELECT $1::int * 3", {"1"}, Prepare::kNo)), "3");
  EXPECT_EQ(firstValue(query("SELECT count(*) FROM pg_prepared_statements")), "2");

  // A statement that fails to prepare is not cached, and leaves the connection usable.
  auto broken = query("SELEC $1", {"1"}, Prepare::kYes);
  ASSERT_FALSE(broken);
  EXPECT_EQ(fieldOf(broken.error(), "sqlstate"), "42601");
  EXPECT_EQ(firstValue(query("SELECT count(*) FROM pg_prepared_statements")), "2");

  // DEALLOCATE behind the cache's back: the next use fails once, then prepares afresh.
  ASSERT_TRUE(execute("DEALLOCATE ALL"));
  auto gone = query(sql, {"4"}, Prepare::kYes);
  ASSERT_FALSE(gone);
  EXPECT_EQ(fieldOf(gone.error(), "sqlstate"), "26000");
  EXPECT_EQ(firstValue(query(sql, {"4"}, Prepare::kYes)), "8");

  // A table changed under a prepared SELECT *: that run fails, the next prepares afresh.
  ASSERT_TRUE(execute("CREATE TEMP TABLE widened (a int); INSERT INTO widened VALUES (1)"));
  const std::string star = "SELECT * FROM widened WHERE a = $1";
  EXPECT_EQ(query(star, {"1"}, Prepare::kYes)->columns.size(), 1u);
  ASSERT_TRUE(execute("ALTER TABLE widened ADD COLUMN b int DEFAULT 2"));
  auto changed = query(star, {"1"}, Prepare::kYes);
  ASSERT_FALSE(changed);
  EXPECT_EQ(fieldOf(changed.error(), "sqlstate"), "0A000");
  EXPECT_EQ(query(star, {"1"}, Prepare::kYes)->columns.size(), 2u);
}

TEST_F(PgConnectionTest, ExecuteRunsScriptsAndReturnsTheLastRows) {
  auto result = execute("BEGIN; SELECT 1 AS one; COMMIT");
  ASSERT_TRUE(result) << result.error().toString();
  ASSERT_EQ(result->columns.size(), 1u);
  EXPECT_EQ(result->columns[0].name, "one");
  EXPECT_EQ(result->rows, (std::vector<std::vector<std::optional<std::string>>>{{"1"}}));
  EXPECT_FALSE(connection_->inTransaction());

  auto commands = execute("CREATE TEMP TABLE scripted (x int); INSERT INTO scripted VALUES (1)");
  ASSERT_TRUE(commands) << commands.error().toString();
  EXPECT_EQ(commands->command_tag, "INSERT 0 1");

  auto failing = execute("SELECT 1; SELECT * FROM no_such_table; SELECT 3");
  ASSERT_FALSE(failing);
  EXPECT_EQ(fieldOf(failing.error(), "sqlstate"), "42P01");
  EXPECT_FALSE(connection_->inTransaction());
  EXPECT_EQ(firstValue(execute("SELECT 4")), "4");

  auto empty = execute("");
  ASSERT_TRUE(empty) << empty.error().toString();
  EXPECT_TRUE(empty->rows.empty());
}

TEST_F(PgConnectionTest, NoticesArriveEvenFromATransactionThatRollsBack) {
  std::vector<PgNotice> notices;
  connection_->setNoticeHandler([&notices](const PgNotice& notice) { notices.push_back(notice); });
  ASSERT_TRUE(execute("BEGIN"));
  size_t seen_in_callback = 0;
  std::optional<Result<QueryResult>> raised;
  connection_->query(
      "DO $$ BEGIN RAISE NOTICE USING MESSAGE = 'row captured', ERRCODE = 'FX001'; END $$", {},
      Prepare::kNo, [&](Result<QueryResult> result) {
        seen_in_callback = notices.size();
        raised = std::move(result);
      });
  ASSERT_TRUE(runUntil(
      loop_, [&raised] { return raised.has_value(); }, 10s));
  ASSERT_TRUE(*raised) << raised->error().toString();
  EXPECT_EQ(seen_in_callback, 1u);  // before the statement's own result
  ASSERT_TRUE(execute("ROLLBACK"));
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_EQ(notices[0].sqlstate, "FX001");
  EXPECT_EQ(notices[0].message, "row captured");

  ASSERT_TRUE(execute("DO $$ BEGIN RAISE NOTICE 'plain %', 42; END $$"));
  ASSERT_EQ(notices.size(), 2u);
  EXPECT_EQ(notices[1].sqlstate, "00000");
  EXPECT_EQ(notices[1].message, "plain 42");
}

TEST_F(PgConnectionTest, UnsupportedCopyFailsAndKeepsTheConnection) {
  auto out = query("COPY (SELECT generate_series(1, 1000)) TO STDOUT");
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(out.error().message.find("not supported"), std::string::npos) << out.error().message;
  EXPECT_EQ(firstValue(query("SELECT 1")), "1");

  ASSERT_TRUE(query("CREATE TEMP TABLE copied (x int)"));
  auto in = query("COPY copied FROM STDIN");
  ASSERT_FALSE(in);
  EXPECT_NE(in.error().message.find("not supported"), std::string::npos) << in.error().message;
  EXPECT_EQ(firstValue(query("SELECT count(*) FROM copied")), "0");
}

TEST_F(PgConnectionTest, NulBytesAreRejectedNotTruncated) {
  bool called = false;
  std::optional<Result<QueryResult>> result;
  connection_->query("SELECT $1::text", {std::string("a\0b", 3)}, Prepare::kNo,
                     [&](Result<QueryResult> r) {
                       called = true;
                       result = std::move(r);
                     });
  EXPECT_FALSE(called);
  ASSERT_TRUE(runUntil(
      loop_, [&called] { return called; }, 5s));
  ASSERT_FALSE(*result);
  EXPECT_EQ(result->error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(result->error().message.find("$1"), std::string::npos) << result->error().message;
  EXPECT_EQ(firstValue(query("SELECT 1")), "1");
}

TEST_F(PgConnectionTest, DestroyedInsideItsCallbackDropsTheRest) {
  bool first = false;
  bool second = false;
  connection_->query("SELECT 1", {}, Prepare::kNo, [&](Result<QueryResult>) {
    first = true;
    connection_.reset();
  });
  connection_->query("SELECT 2", {}, Prepare::kNo, [&](Result<QueryResult>) { second = true; });
  ASSERT_TRUE(runUntil(
      loop_, [&first] { return first; }, 10s));
  EXPECT_EQ(connection_, nullptr);
  runUntil(
      loop_, [] { return false; }, 200ms);
  EXPECT_FALSE(second);
}

TEST_F(PgConnectionTest, DestroyedWithQueriesPendingNeverCallsBack) {
  bool called = false;
  connection_->query("SELECT pg_sleep(0.1)", {}, Prepare::kNo,
                     [&called](Result<QueryResult>) { called = true; });
  connection_->execute("SELECT 1", [&called](Result<QueryResult>) { called = true; });
  connection_.reset();
  runUntil(
      loop_, [] { return false; }, 300ms);
  EXPECT_FALSE(called);
}

TEST_F(PgConnectionTest, NoticeHandlerMayDestroyTheConnection) {
  bool result_called = false;
  connection_->setNoticeHandler([this](const PgNotice&) { connection_.reset(); });
  connection_->execute("DO $$ BEGIN RAISE NOTICE 'bye'; END $$",
                       [&result_called](Result<QueryResult>) { result_called = true; });
  ASSERT_TRUE(runUntil(
      loop_, [this] { return connection_ == nullptr; }, 10s));
  runUntil(
      loop_, [] { return false; }, 100ms);
  EXPECT_FALSE(result_called);
}

TEST_F(PgConnectionTest, TerminatedBackendFailsTheNextQueryAsUnavailable) {
  std::string pid = firstValue(query("SELECT pg_backend_pid()"));
  auto killer = connectTo(loop_, pgConninfo(), 5s);
  ASSERT_TRUE(killer) << killer.error().toString();
  EXPECT_EQ(firstValue(run(loop_, **killer, "SELECT pg_terminate_backend($1::int, 5000)", {pid},
                           Prepare::kNo)),
            "t");

  auto after = query("SELECT 1");
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(after.error().message.find("PostgreSQL connection lost"), std::string::npos)
      << after.error().message;
  EXPECT_FALSE(connection_->healthy());

  bool called = false;
  std::optional<Result<QueryResult>> again;
  connection_->query("SELECT 1", {}, Prepare::kNo, [&](Result<QueryResult> r) {
    called = true;
    again = std::move(r);
  });
  EXPECT_FALSE(called);
  ASSERT_TRUE(runUntil(
      loop_, [&called] { return called; }, 5s));
  ASSERT_FALSE(*again);
  EXPECT_EQ(again->error().code, ErrorCode::kUnavailable);
}

TEST_F(PgConnectionTest, QueriesQueuedOnATerminatedBackendAllFail) {
  std::string pid = firstValue(query("SELECT pg_backend_pid()"));
  std::vector<ErrorCode> codes;
  connection_->query("SELECT pg_sleep(10)", {}, Prepare::kNo, [&codes](Result<QueryResult> r) {
    codes.push_back(r ? ErrorCode::kInternal : r.error().code);
  });
  connection_->query("SELECT 2", {}, Prepare::kNo, [&codes](Result<QueryResult> r) {
    codes.push_back(r ? ErrorCode::kInternal : r.error().code);
  });
  auto killer = connectTo(loop_, pgConninfo(), 5s);
  ASSERT_TRUE(killer) << killer.error().toString();
  EXPECT_EQ(firstValue(run(loop_, **killer, "SELECT pg_terminate_backend($1::int, 5000)", {pid},
                           Prepare::kNo)),
            "t");
  ASSERT_TRUE(runUntil(
      loop_, [&codes] { return codes.size() == 2; }, 10s));
  EXPECT_EQ(codes, (std::vector<ErrorCode>{ErrorCode::kUnavailable, ErrorCode::kUnavailable}));
  EXPECT_FALSE(connection_->healthy());
}

TEST(PgConnectionConnect, UnreachableServerFailsQuicklyWithoutThePassword) {
  asio::io_context loop;
  fs::path empty = test_support::tempDir();
  // A long timeout: failing quickly must come from the refused connection, not the timer.
  auto refused = connectTo(
      loop, "host=" + empty.string() + " port=5432 dbname=postgres user=flux password=secret123",
      60s);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(refused.error().message.find("cannot connect to PostgreSQL"), std::string::npos)
      << refused.error().message;
  EXPECT_EQ(refused.error().toString().find("secret123"), std::string::npos)
      << refused.error().toString();

  // libpq quotes a badly percent-encoded URI back, password included.
  auto malformed = connectTo(loop, "postgresql://flux:secret123%zz@/db", 60s);
  ASSERT_FALSE(malformed);
  EXPECT_EQ(malformed.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(malformed.error().toString().find("secret123"), std::string::npos)
      << malformed.error().toString();

  auto bad_keyword = connectTo(loop, "password=secret123 no_such_option=1", 60s);
  ASSERT_FALSE(bad_keyword);
  EXPECT_EQ(bad_keyword.error().toString().find("secret123"), std::string::npos)
      << bad_keyword.error().toString();
  std::error_code ec;
  fs::remove_all(empty, ec);
}

// A server that accepts the connection but never answers: the connect timeout fires.
TEST(PgConnectionConnect, SilentServerTimesOut) {
  fs::path dir = test_support::tempDir();
  int listener = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string path = (dir / ".s.PGSQL.5432").string();
  ASSERT_LT(path.size(), sizeof(address.sun_path));
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(listener, 4), 0);  // never accepted: the kernel's backlog completes connects

  asio::io_context loop;
  auto silent = connectTo(loop, "host=" + dir.string() + " port=5432 dbname=x user=flux", 200ms);
  ASSERT_FALSE(silent);
  EXPECT_EQ(silent.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(silent.error().message, "cannot connect to PostgreSQL within 200 ms");
  close(listener);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST(PgConnectionConnect, ConnectCallbackNeverRunsInline) {
  asio::io_context loop;
  bool called = false;
  PgConnection::connect(loop, "this is not a connection string", 1s,
                        [&called](Result<std::unique_ptr<PgConnection>> result) {
                          called = true;
                          EXPECT_FALSE(result);
                        });
  EXPECT_FALSE(called);
  ASSERT_TRUE(runUntil(
      loop, [&called] { return called; }, 5s));
}

}  // namespace
}  // namespace flux::data

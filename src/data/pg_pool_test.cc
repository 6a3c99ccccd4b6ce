#include "data/pg_pool.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace flux::data {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// Defined in pg_connection_test.cc, which owns the binary's one PostgreSQL cluster.
namespace test_support {
const std::string& pgConninfo();
Result<void> stopPostgres();
Result<void> startPostgres();
bool runUntil(asio::io_context& loop, const std::function<bool()>& done,
              std::chrono::milliseconds limit);
Result<std::unique_ptr<PgConnection>> connectTo(asio::io_context& loop, const std::string& conninfo,
                                                std::chrono::milliseconds timeout);
Result<QueryResult> run(asio::io_context& loop, PgConnection& connection, std::string sql,
                        QueryParams params, Prepare prepare);
std::string firstValue(const Result<QueryResult>& result);
}  // namespace test_support

namespace {

using test_support::firstValue;
using test_support::pgConninfo;
using test_support::runUntil;

class PgPoolTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(pgConninfo().empty()) << "no PostgreSQL for the tests"; }

  PoolOptions options(size_t size) {
    PoolOptions options;
    options.conninfo = pgConninfo();
    options.size = size;
    options.connect_timeout = 5s;
    options.acquire_timeout = 5s;
    return options;
  }

  Result<PgLease> acquire(PgPool& pool, std::chrono::milliseconds limit = 10s) {
    std::optional<Result<PgLease>> out;
    pool.acquire([&out](Result<PgLease> lease) { out = std::move(lease); });
    if (!runUntil(
            loop_, [&out] { return out.has_value(); }, limit)) {
      return fail(ErrorCode::kTimeout, "the acquire callback never ran");
    }
    return std::move(*out);
  }

  Result<QueryResult> query(PgLease& lease, std::string sql, QueryParams params = {}) {
    return test_support::run(loop_, lease.connection(), std::move(sql), std::move(params),
                             Prepare::kNo);
  }

  std::string backendPid(PgLease& lease) {
    return firstValue(query(lease, "SELECT pg_backend_pid()"));
  }

  asio::io_context loop_;
};

TEST_F(PgPoolTest, ReusesReturnedConnections) {
  PgPool pool(loop_, options(2));
  bool called = false;
  std::optional<Result<PgLease>> first;
  pool.acquire([&](Result<PgLease> lease) {
    called = true;
    first = std::move(lease);
  });
  EXPECT_FALSE(called);  // never inside acquire()
  ASSERT_TRUE(runUntil(
      loop_, [&called] { return called; }, 10s));
  ASSERT_TRUE(*first) << first->error().toString();
  std::string pid = backendPid(**first);
  first.reset();  // back to the pool

  auto second = acquire(pool);
  ASSERT_TRUE(second) << second.error().toString();
  EXPECT_EQ(backendPid(*second), pid);

  // An idle connection is granted through the loop too.
  PgLease held = std::move(*second);
  held = PgLease();
  called = false;
  pool.acquire([&called](Result<PgLease>) { called = true; });
  EXPECT_FALSE(called);
  ASSERT_TRUE(runUntil(
      loop_, [&called] { return called; }, 10s));
}

TEST_F(PgPoolTest, BoundsConnectionsServesWaitersInOrderAndTimesOut) {
  PoolOptions opts = options(1);
  opts.acquire_timeout = 1000ms;
  PgPool pool(loop_, opts);
  auto held = acquire(pool);
  ASSERT_TRUE(held) << held.error().toString();
  std::string pid = backendPid(*held);

  std::vector<int> order;
  std::vector<std::optional<PgLease>> leases(3);
  for (int i = 0; i < 3; ++i) {
    pool.acquire([&order, &leases, i](Result<PgLease> lease) {
      order.push_back(i);
      if (lease) leases[i] = std::move(*lease);
    });
  }
  EXPECT_FALSE(runUntil(
      loop_, [&order] { return !order.empty(); }, 100ms));

  *held = PgLease();  // hand it on
  ASSERT_TRUE(runUntil(
      loop_, [&order] { return order.size() == 1; }, 5s));
  EXPECT_EQ(order, std::vector<int>{0});
  ASSERT_TRUE(leases[0].has_value());
  EXPECT_EQ(backendPid(*leases[0]), pid);
  leases[0].reset();
  ASSERT_TRUE(runUntil(
      loop_, [&order] { return order.size() == 2; }, 5s));
  leases[1].reset();
  ASSERT_TRUE(runUntil(
      loop_, [&order] { return order.size() == 3; }, 5s));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
  ASSERT_TRUE(leases[2].has_value());

  // Still held: the next waiter gives up after acquire_timeout.
  auto starved = acquire(pool);
  ASSERT_FALSE(starved);
  EXPECT_EQ(starved.error().code, ErrorCode::kResourceExhausted);
  EXPECT_NE(starved.error().message.find("all 1 database connections are busy"), std::string::npos)
      << starved.error().message;
}

TEST_F(PgPoolTest, RollsBackAConnectionReturnedInsideATransaction) {
  PgPool pool(loop_, options(1));
  {
    auto setup = acquire(pool);
    ASSERT_TRUE(setup) << setup.error().toString();
    ASSERT_TRUE(query(*setup, "CREATE TABLE IF NOT EXISTS pool_abandoned (x int)"));
  }
  std::string pid;
  {
    auto lease = acquire(pool);
    ASSERT_TRUE(lease) << lease.error().toString();
    pid = backendPid(*lease);
    ASSERT_TRUE(query(*lease, "BEGIN"));
    ASSERT_TRUE(query(*lease, "INSERT INTO pool_abandoned VALUES (1)"));
    EXPECT_TRUE(lease->connection().inTransaction());
  }  // a request that failed without COMMIT or ROLLBACK
  auto next = acquire(pool);
  ASSERT_TRUE(next) << next.error().toString();
  EXPECT_FALSE(next->connection().inTransaction());
  EXPECT_EQ(backendPid(*next), pid);  // rolled back and reused, not replaced
  EXPECT_EQ(firstValue(query(*next, "SELECT count(*) FROM pool_abandoned")), "0");

  // An aborted transaction is rolled back too.
  ASSERT_TRUE(query(*next, "BEGIN"));
  EXPECT_FALSE(query(*next, "SELECT * FROM no_such_table"));
  *next = PgLease();
  auto after = acquire(pool);
  ASSERT_TRUE(after) << after.error().toString();
  EXPECT_EQ(firstValue(query(*after, "SELECT 1")), "1");
}

TEST_F(PgPoolTest, ConnectionReturnedBusyIsClosedAndItsCallbacksDropped) {
  PgPool pool(loop_, options(1));
  std::string pid;
  bool called = false;
  {
    auto lease = acquire(pool);
    ASSERT_TRUE(lease) << lease.error().toString();
    pid = backendPid(*lease);
    lease->connection().query("SELECT pg_sleep(0.2)", {}, Prepare::kNo,
                              [&called](Result<QueryResult>) { called = true; });
  }
  auto next = acquire(pool);
  ASSERT_TRUE(next) << next.error().toString();
  EXPECT_NE(backendPid(*next), pid);
  runUntil(
      loop_, [] { return false; }, 300ms);
  EXPECT_FALSE(called);
}

TEST_F(PgPoolTest, NoticeHandlerDoesNotFollowTheConnectionToTheNextLease) {
  PgPool pool(loop_, options(1));
  int first_handler_calls = 0;
  {
    auto lease = acquire(pool);
    ASSERT_TRUE(lease) << lease.error().toString();
    lease->connection().setNoticeHandler(
        [&first_handler_calls](const PgNotice&) { ++first_handler_calls; });
    ASSERT_TRUE(query(*lease, "DO $$ BEGIN RAISE NOTICE 'mine'; END $$"));
    EXPECT_EQ(first_handler_calls, 1);
  }
  auto next = acquire(pool);
  ASSERT_TRUE(next) << next.error().toString();
  ASSERT_TRUE(query(*next, "DO $$ BEGIN RAISE NOTICE 'not yours'; END $$"));
  EXPECT_EQ(first_handler_calls, 1);
}

TEST_F(PgPoolTest, TerminatedConnectionFailsAndIsReplaced) {
  PgPool pool(loop_, options(1));
  auto killer = test_support::connectTo(loop_, pgConninfo(), 5s);
  ASSERT_TRUE(killer) << killer.error().toString();

  std::string pid;
  {
    auto lease = acquire(pool);
    ASSERT_TRUE(lease) << lease.error().toString();
    pid = backendPid(*lease);
    EXPECT_EQ(
        firstValue(test_support::run(loop_, **killer, "SELECT pg_terminate_backend($1::int, 5000)",
                                     {pid}, Prepare::kNo)),
        "t");
    auto failed = query(*lease, "SELECT 1");
    ASSERT_FALSE(failed);
    EXPECT_EQ(failed.error().code, ErrorCode::kUnavailable);
    EXPECT_FALSE(lease->connection().healthy());
  }
  auto replaced = acquire(pool);
  ASSERT_TRUE(replaced) << replaced.error().toString();
  std::string new_pid = backendPid(*replaced);
  EXPECT_NE(new_pid, pid);
  EXPECT_EQ(firstValue(query(*replaced, "SELECT 1")), "1");

  // Killed while idle in the pool: the pool notices and does not hand it out.
  *replaced = PgLease();
  EXPECT_EQ(
      firstValue(test_support::run(loop_, **killer, "SELECT pg_terminate_backend($1::int, 5000)",
                                   {new_pid}, Prepare::kNo)),
      "t");
  runUntil(
      loop_, [] { return false; }, 100ms);  // lets the idle connection read the hang-up
  auto fresh = acquire(pool);
  ASSERT_TRUE(fresh) << fresh.error().toString();
  EXPECT_EQ(firstValue(query(*fresh, "SELECT 1")), "1");
}

TEST_F(PgPoolTest, FailsFastWhileDownAndRecoversOnItsOwn) {
  PoolOptions opts = options(2);
  opts.connect_timeout = 2000ms;
  PgPool pool(loop_, opts);
  {
    auto lease = acquire(pool);
    ASSERT_TRUE(lease) << lease.error().toString();
    EXPECT_EQ(firstValue(query(*lease, "SELECT 1")), "1");
  }

  auto stopped = test_support::stopPostgres();
  ASSERT_TRUE(stopped) << stopped.error().toString();

  // Leases of connections the stop killed may still be handed out a moment longer (their
  // queries fail); an acquire that has to connect finds PostgreSQL gone.
  std::optional<Error> down;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!down && std::chrono::steady_clock::now() < deadline) {
    auto lease = acquire(pool);
    if (!lease) {
      down = lease.error();
      break;
    }
    auto result = query(*lease, "SELECT 1");
    ASSERT_FALSE(result) << "a query succeeded with PostgreSQL stopped";
    EXPECT_EQ(result.error().code, ErrorCode::kUnavailable);
  }
  ASSERT_TRUE(down) << "acquire kept succeeding with PostgreSQL stopped";
  EXPECT_EQ(down->code, ErrorCode::kUnavailable) << down->toString();

  // While down, acquire fails at once with the reason, waiting for neither a connect nor the
  // acquire timeout.
  for (int i = 0; i < 3; ++i) {
    auto fast = acquire(pool, 1s);
    ASSERT_FALSE(fast);
    EXPECT_EQ(fast.error().code, ErrorCode::kUnavailable) << fast.error().toString();
    EXPECT_NE(fast.error().message.find("cannot connect to PostgreSQL"), std::string::npos)
        << fast.error().message;
  }

  auto started = test_support::startPostgres();
  ASSERT_TRUE(started) << started.error().toString();
  ASSERT_EQ(test_support::pgConninfo(), opts.conninfo);  // same socket, same conninfo

  bool recovered = false;
  deadline = std::chrono::steady_clock::now() + 10s;
  while (!recovered && std::chrono::steady_clock::now() < deadline) {
    auto lease = acquire(pool);
    if (lease && query(*lease, "SELECT 1")) {
      recovered = true;
    } else {
      runUntil(
          loop_, [] { return false; }, 50ms);
    }
  }
  EXPECT_TRUE(recovered) << "the pool did not reconnect within 10 s of PostgreSQL's return";
}

TEST_F(PgPoolTest, DestroyedWithWaitersAndConnectsInFlightCallsNobody) {
  bool called = false;
  {
    PgPool pool(loop_, options(1));
    pool.acquire([&called](Result<PgLease>) { called = true; });  // connecting
    pool.acquire([&called](Result<PgLease>) { called = true; });  // waiting
  }
  runUntil(
      loop_, [] { return false; }, 300ms);
  EXPECT_FALSE(called);

  // A grant already posted when the pool goes.
  {
    PgPool pool(loop_, options(1));
    ASSERT_TRUE(acquire(pool));  // the lease died at once: one idle connection
    pool.acquire([&called](Result<PgLease>) { called = true; });
  }
  runUntil(
      loop_, [] { return false; }, 100ms);
  EXPECT_FALSE(called);
}

TEST_F(PgPoolTest, CallbackMayDestroyThePoolAfterItsLease) {
  auto pool = std::make_unique<PgPool>(loop_, options(1));
  bool done = false;
  pool->acquire([&](Result<PgLease> lease) {
    ASSERT_TRUE(lease) << lease.error().toString();
    *lease = PgLease();
    pool.reset();
    done = true;
  });
  ASSERT_TRUE(runUntil(
      loop_, [&done] { return done; }, 10s));
  runUntil(
      loop_, [] { return false; }, 100ms);
}

}  // namespace
}  // namespace flux::data

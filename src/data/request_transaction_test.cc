#include "data/request_transaction.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/mutation_log.h"

namespace flux::data {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// Defined in pg_connection_test.cc, which owns the binary's one PostgreSQL cluster.
namespace test_support {
const std::string& pgConninfo();
bool runUntil(asio::io_context& loop, const std::function<bool()>& done,
              std::chrono::milliseconds limit);
Result<std::unique_ptr<PgConnection>> connectTo(asio::io_context& loop, const std::string& conninfo,
                                                std::chrono::milliseconds timeout);
Result<QueryResult> run(asio::io_context& loop, PgConnection& connection, std::string sql,
                        QueryParams params, Prepare prepare);
Result<QueryResult> runScript(asio::io_context& loop, PgConnection& connection, std::string script);
}  // namespace test_support

namespace {

using test_support::runUntil;
using Rows = std::vector<std::vector<std::optional<std::string>>>;

// RequestTransaction end to end against PostgreSQL, once per implementation of the capture: what
// lands in flux.state_mutations must not depend on it.
class RequestTransactionTest : public ::testing::TestWithParam<CaptureFunction> {
 protected:
  void SetUp() override {
    ASSERT_FALSE(test_support::pgConninfo().empty()) << "no PostgreSQL for the tests";
    static std::atomic<int> counter{0};
    db_ = "request_tx_" + std::to_string(getpid()) + "_" + std::to_string(++counter);
    admin_ = connect(test_support::pgConninfo());
    ASSERT_TRUE(admin_);
    ASSERT_TRUE(script(*admin_, "CREATE DATABASE " + db_));
    conninfo_ = test_support::pgConninfo() + " dbname=" + db_;
    auto installed = installMutationLog(conninfo_, GetParam() == CaptureFunction::kC
                                                       ? CaptureChoice::kPreferC
                                                       : CaptureChoice::kPlpgsqlOnly);
    ASSERT_TRUE(installed) << installed.error().toString();
    ASSERT_EQ(installed->capture, GetParam()) << installed->why_plpgsql;
    db_connection_ = connect(conninfo_);
    ASSERT_TRUE(db_connection_);
    ASSERT_TRUE(script(*db_connection_,
                       "CREATE TABLE public.accounts (id int PRIMARY KEY, balance int);"
                       "INSERT INTO public.accounts VALUES (1, 0);"
                       "TRUNCATE flux.state_mutations"));
    pool_ = std::make_unique<PgPool>(loop_, PoolOptions{.conninfo = conninfo_, .size = 2});
  }

  void TearDown() override {
    pool_.reset();
    db_connection_.reset();
    if (admin_) {
      (void)script(*admin_, "DROP DATABASE IF EXISTS " + db_ + " WITH (FORCE)");
    }
  }

  std::unique_ptr<PgConnection> connect(const std::string& conninfo) {
    auto connection = test_support::connectTo(loop_, conninfo, 5s);
    if (!connection) {
      ADD_FAILURE() << connection.error().toString();
      return nullptr;
    }
    return std::move(*connection);
  }

  Result<QueryResult> script(PgConnection& connection, std::string sql) {
    auto result = test_support::runScript(loop_, connection, std::move(sql));
    EXPECT_TRUE(result) << result.error().toString();
    return result;
  }

  Rows rows(const std::string& sql) {
    auto result = test_support::run(loop_, *db_connection_, sql, {}, Prepare::kNo);
    if (!result) {
      ADD_FAILURE() << sql << ": " << result.error().toString();
      return {};
    }
    return result->rows;
  }

  // op, new balance and rolled_back of the request's rows, in id order.
  Rows logged(const std::string& request_id) {
    return rows(
        "SELECT op, new ->> 'balance', rolled_back::text FROM flux.state_mutations "
        "WHERE request_id = '" +
        request_id + "' ORDER BY id");
  }

  Result<QueryResult> query(RequestTransaction& txn, std::string sql) {
    std::optional<Result<QueryResult>> out;
    txn.query(std::move(sql), {}, Prepare::kNo,
              [&out](Result<QueryResult> r) { out = std::move(r); });
    if (!runUntil(
            loop_, [&out] { return out.has_value(); }, 10s)) {
      return fail(ErrorCode::kTimeout, "the query callback never ran");
    }
    return std::move(*out);
  }

  Result<QueryResult> savepoint(RequestTransaction& txn, SavepointOp op) {
    std::optional<Result<QueryResult>> out;
    txn.savepoint(op, [&out](Result<QueryResult> r) { out = std::move(r); });
    if (!runUntil(
            loop_, [&out] { return out.has_value(); }, 10s)) {
      return fail(ErrorCode::kTimeout, "the savepoint callback never ran");
    }
    return std::move(*out);
  }

  Result<void> finish(RequestTransaction& txn, TransactionOutcome outcome) {
    std::optional<Result<void>> out;
    txn.finish(outcome, [&out](Result<void> r) { out = std::move(r); });
    if (!runUntil(
            loop_, [&out] { return out.has_value(); }, 10s)) {
      return fail(ErrorCode::kTimeout, "the finish callback never ran");
    }
    return std::move(*out);
  }

  asio::io_context loop_;
  std::string db_;
  std::string conninfo_;
  std::unique_ptr<PgConnection> admin_;
  std::unique_ptr<PgConnection> db_connection_;
  std::unique_ptr<PgPool> pool_;
};

INSTANTIATE_TEST_SUITE_P(Capture, RequestTransactionTest,
                         ::testing::Values(CaptureFunction::kC, CaptureFunction::kPlpgsql),
                         [](const ::testing::TestParamInfo<CaptureFunction>& info) {
                           return info.param == CaptureFunction::kC ? "C" : "Plpgsql";
                         });

constexpr char kFirst[] = "0190f3c2-7a1b-7c3d-8e4f-000000000001";
constexpr char kSecond[] = "0190f3c2-7a1b-7c3d-8e4f-000000000002";

TEST_P(RequestTransactionTest, CommitLogsTheWritesInOrder) {
  RequestTransaction txn(*pool_, kFirst);
  ASSERT_TRUE(query(txn, "UPDATE public.accounts SET balance = 1"));
  ASSERT_TRUE(query(txn, "INSERT INTO public.accounts VALUES (2, 2)"));
  ASSERT_TRUE(query(txn, "DELETE FROM public.accounts WHERE id = 2"));
  txn.recordZeroRows({"public", "accounts", "UPDATE", R"({"id": 9})", R"({"balance": 9})", false});
  ASSERT_TRUE(finish(txn, TransactionOutcome::kCommit));
  EXPECT_EQ(
      rows("SELECT op, new ->> 'balance', rolled_back::text FROM flux.state_mutations "
           "WHERE request_id = '" +
           std::string(kFirst) + "' AND rows_affected = 1 ORDER BY id"),
      (Rows{
          {"UPDATE", "1", "false"}, {"INSERT", "2", "false"}, {"DELETE", std::nullopt, "false"}}));
  // Stored by the request itself before COMMIT: before the C capture's rows, after the plpgsql
  // capture's.
  EXPECT_EQ(rows("SELECT op, new ->> 'balance', rolled_back::text FROM flux.state_mutations "
                 "WHERE rows_affected = 0"),
            (Rows{{"UPDATE", "9", "false"}}));
}

TEST_P(RequestTransactionTest, RollbackLogsTheWritesRolledBack) {
  RequestTransaction txn(*pool_, kFirst);
  ASSERT_TRUE(query(txn, "UPDATE public.accounts SET balance = 1"));
  ASSERT_TRUE(query(txn, "INSERT INTO public.accounts VALUES (2, 2)"));
  ASSERT_TRUE(finish(txn, TransactionOutcome::kRollback));
  EXPECT_EQ(logged(kFirst), (Rows{{"UPDATE", "1", "true"}, {"INSERT", "2", "true"}}));
  EXPECT_EQ(rows("SELECT balance FROM public.accounts"), (Rows{{"0"}}));

  // The connection goes back to the pool clean: the next request logs only its own rows.
  RequestTransaction next(*pool_, kSecond);
  ASSERT_TRUE(query(next, "UPDATE public.accounts SET balance = 5"));
  ASSERT_TRUE(finish(next, TransactionOutcome::kCommit));
  EXPECT_EQ(logged(kSecond), (Rows{{"UPDATE", "5", "false"}}));
}

TEST_P(RequestTransactionTest, FailedStatementLogsTheWritesRolledBack) {
  RequestTransaction txn(*pool_, kFirst);
  ASSERT_TRUE(query(txn, "UPDATE public.accounts SET balance = 1"));
  auto duplicate = query(txn, "INSERT INTO public.accounts VALUES (1, 7)");
  ASSERT_FALSE(duplicate);
  auto finished = finish(txn, TransactionOutcome::kCommit);
  ASSERT_FALSE(finished) << "COMMIT of a failed transaction rolls it back";
  EXPECT_EQ(logged(kFirst), (Rows{{"UPDATE", "1", "true"}}));
  EXPECT_EQ(rows("SELECT balance FROM public.accounts"), (Rows{{"0"}}));
}

TEST_P(RequestTransactionTest, SavepointRollbackLogsItsWritesRolledBackInOrder) {
  RequestTransaction txn(*pool_, kFirst);
  ASSERT_TRUE(query(txn, "UPDATE public.accounts SET balance = 1"));
  ASSERT_TRUE(savepoint(txn, SavepointOp::kBegin));
  ASSERT_TRUE(query(txn, "UPDATE public.accounts SET balance = 2"));
  ASSERT_TRUE(savepoint(txn, SavepointOp::kRollback));
  ASSERT_TRUE(savepoint(txn, SavepointOp::kBegin));
  ASSERT_TRUE(query(txn, "UPDATE public.accounts SET balance = 3"));
  ASSERT_TRUE(savepoint(txn, SavepointOp::kRelease));
  ASSERT_TRUE(finish(txn, TransactionOutcome::kCommit));
  EXPECT_EQ(logged(kFirst),
            (Rows{{"UPDATE", "1", "false"}, {"UPDATE", "2", "true"}, {"UPDATE", "3", "false"}}));
}

}  // namespace
}  // namespace flux::data

#include "data/mutation_log.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace flux::data {

// The binary's one PostgreSQL cluster (pg_connection_test.cc starts it).
namespace test_support {
const std::string& pgConninfo();
}  // namespace test_support

namespace {

using Row = std::vector<std::optional<std::string>>;

struct Notice {
  std::string sqlstate;
  std::string message;
};

// One blocking libpq session. Collects the notices it receives.
class Session {
 public:
  // Not movable: the notice receiver holds the address of notices_.
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  explicit Session(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
    if (PQstatus(conn_.get()) != CONNECTION_OK) {
      ADD_FAILURE() << "connect: " << PQerrorMessage(conn_.get());
      return;
    }
    PQsetNoticeReceiver(
        conn_.get(),
        [](void* arg, const PGresult* result) {
          const char* sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);
          const char* message = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
          static_cast<std::vector<Notice>*>(arg)->push_back(
              {sqlstate ? sqlstate : "", message ? message : ""});
        },
        &notices_);
  }

  // Runs sql (with text parameters, NULL for nullopt) and returns its rows; a failure is a
  // test failure (returning no rows).
  std::vector<Row> query(const std::string& sql,
                         const std::vector<std::optional<std::string>>& params = {}) {
    auto result = run(sql, params);
    std::vector<Row> rows;
    ExecStatusType status = PQresultStatus(result.get());
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
      ADD_FAILURE() << sql << ": " << PQresultErrorMessage(result.get());
      return rows;
    }
    for (int r = 0; r < PQntuples(result.get()); ++r) {
      Row row;
      for (int c = 0; c < PQnfields(result.get()); ++c) {
        if (PQgetisnull(result.get(), r, c)) {
          row.push_back(std::nullopt);
        } else {
          row.push_back(PQgetvalue(result.get(), r, c));
        }
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  void exec(const std::string& sql) { query(sql); }

  // The first column of the only row ("<no row>" when there is none, "<null>" for NULL).
  std::string value(const std::string& sql,
                    const std::vector<std::optional<std::string>>& params = {}) {
    auto rows = query(sql, params);
    if (rows.size() != 1 || rows[0].empty()) return "<no row>";
    return rows[0][0].value_or("<null>");
  }

  // Runs sql expecting it to fail; returns the SQLSTATE.
  std::string failing(const std::string& sql) {
    auto result = run(sql, {});
    EXPECT_EQ(PQresultStatus(result.get()), PGRES_FATAL_ERROR) << sql;
    const char* sqlstate = PQresultErrorField(result.get(), PG_DIAG_SQLSTATE);
    return sqlstate ? sqlstate : "";
  }

  // Runs a multi-statement script (simple protocol), like the BEGIN of a request.
  void script(const std::string& sql) {
    ASSERT_EQ(PQsendQuery(conn_.get(), sql.c_str()), 1) << PQerrorMessage(conn_.get());
    while (PGresult* result = PQgetResult(conn_.get())) {
      ExecStatusType status = PQresultStatus(result);
      EXPECT_TRUE(status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
          << sql << ": " << PQresultErrorMessage(result);
      PQclear(result);
    }
  }

  // The notices received with this SQLSTATE (FX001 by default), in arrival order.
  std::vector<Notice> captureNotices(std::string_view sqlstate = kCaptureNoticeSqlstate) const {
    std::vector<Notice> out;
    for (const Notice& n : notices_) {
      if (n.sqlstate == sqlstate) out.push_back(n);
    }
    return out;
  }
  std::vector<Notice> rolledBackNotices() const {
    return captureNotices(kRolledBackCaptureNoticeSqlstate);
  }
  void clearNotices() { notices_.clear(); }

 private:
  struct ConnCloser {
    void operator()(PGconn* conn) const { PQfinish(conn); }
  };
  struct ResultClearer {
    void operator()(PGresult* result) const { PQclear(result); }
  };

  std::unique_ptr<PGresult, ResultClearer> run(
      const std::string& sql, const std::vector<std::optional<std::string>>& params) {
    std::vector<const char*> values;
    for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
    return std::unique_ptr<PGresult, ResultClearer>(
        PQexecParams(conn_.get(), sql.c_str(), static_cast<int>(values.size()), nullptr,
                     values.data(), nullptr, nullptr, 0));
  }

  std::unique_ptr<PGconn, ConnCloser> conn_;
  std::vector<Notice> notices_;
};

// The payloads joined into the JSON array kStoreCapturedSql takes.
std::string jsonArray(const std::vector<Notice>& notices) {
  std::string out = "[";
  for (size_t i = 0; i < notices.size(); ++i) {
    if (i > 0) out += ",";
    out += notices[i].message;
  }
  return out + "]";
}

std::string captureName(const ::testing::TestParamInfo<CaptureFunction>& info) {
  return info.param == CaptureFunction::kC ? "C" : "Plpgsql";
}

constexpr char kRequestId[] = "0190f3c2-7a1b-7c3d-8e4f-123456789abc";

// Each test gets a database of its own on the shared cluster: the event trigger and schema flux
// are per database, and some tests need one where the mutation log is not installed yet. Most
// tests run once per implementation of flux.capture() (the parameter).
class MutationLogTest : public ::testing::TestWithParam<CaptureFunction> {
 protected:
  void SetUp() override {
    ASSERT_FALSE(test_support::pgConninfo().empty()) << "no PostgreSQL for the tests";
    static std::atomic<int> counter{0};
    db_ = "mutation_log_" + std::to_string(getpid()) + "_" + std::to_string(++counter);
    Session admin(test_support::pgConninfo());
    admin.exec("CREATE DATABASE " + db_);
    conninfo_ = test_support::pgConninfo() + " dbname=" + db_;
  }

  void TearDown() override {
    Session admin(test_support::pgConninfo());
    admin.exec("DROP DATABASE IF EXISTS " + db_ + " WITH (FORCE)");
    for (const std::string& role : roles_) admin.exec("DROP ROLE IF EXISTS " + role);
  }

  bool plpgsql() const { return GetParam() == CaptureFunction::kPlpgsql; }

  // Installs the mutation log with the implementation under test (the cluster's role is a
  // superuser, so the C one must be used when preferred).
  void install() {
    auto installed = installMutationLog(
        conninfo_, plpgsql() ? CaptureChoice::kPlpgsqlOnly : CaptureChoice::kPreferC);
    ASSERT_TRUE(installed) << installed.error().toString();
    ASSERT_EQ(installed->capture, GetParam()) << installed->why_plpgsql;
  }

  void beginRequest(Session& s) {
    auto begin = beginRequestTransactionSql(kRequestId);
    ASSERT_TRUE(begin) << begin.error().toString();
    s.script(*begin);
  }

  // COMMIT as RequestTransaction does it: the plpgsql capture's notices are stored first, in
  // the transaction; the C capture stores its rows itself.
  void commitRequest(Session& s) {
    auto notices = s.captureNotices();
    if (!notices.empty()) s.query(kStoreCapturedSql, {jsonArray(notices), kRequestId, "f"});
    s.exec("COMMIT");
  }

  // After the ROLLBACK, as RequestTransaction does it: stores what the FX001 notices or the
  // FX002 notice reported, marked rolled back.
  void storeRolledBack(Session& s) {
    std::vector<Notice> payloads = s.captureNotices();
    for (const Notice& n : s.rolledBackNotices()) {
      ASSERT_GE(n.message.size(), 2u);
      payloads.push_back({n.sqlstate, n.message.substr(1, n.message.size() - 2)});
    }
    if (!payloads.empty()) s.query(kStoreCapturedSql, {jsonArray(payloads), kRequestId, "t"});
  }

  // A login role for this test (dropped after it), not a superuser.
  std::string makeRole(const std::string& suffix, const std::string& attributes = "") {
    std::string role = db_ + "_" + suffix;
    Session admin(test_support::pgConninfo());
    admin.exec("CREATE ROLE " + role + " LOGIN " + attributes);
    roles_.push_back(role);
    return role;
  }

  // A session as the cluster's superuser (or as `role`), with application_name psql-test.
  Session session(const std::string& role = "") {
    std::string info = conninfo_ + " application_name=psql-test";
    if (!role.empty()) info += " user=" + role;
    return Session(info);
  }

  // The flux_capture trigger's arguments joined with ',', or nullopt when there is none.
  std::optional<std::string> triggerArgs(Session& s, const std::string& table) {
    auto rows = s.query(
        "SELECT rtrim(replace(encode(tgargs, 'escape'), '\\000', ','), ',') FROM pg_trigger "
        "WHERE tgrelid = to_regclass($1) AND tgname = 'flux_capture'",
        {table});
    if (rows.empty()) return std::nullopt;
    return rows[0][0].value_or("<null>");
  }

  // Columns of flux.state_mutations as text, in id order. Every row's row_key, whichever path
  // stored it (C, plpgsql, external, 0-row), must be the one readers look it up by.
  std::vector<Row> mutations(Session& s, const std::string& where = "true") {
    EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations "
                      "WHERE row_key <> flux.row_key(schema_name, table_name, pk)"),
              "0");
    return s.query(
        "SELECT request_id, actor, schema_name, table_name, pk, op, old::jsonb::text, "
        "new::jsonb::text, changed_columns::text, txid, rolled_back, rows_affected FROM "
        "flux.state_mutations "
        "WHERE " +
        where + " ORDER BY id");
  }

  std::string db_;
  std::string conninfo_;
  std::vector<std::string> roles_;
};

// Tests of the C capture only.
class CCaptureTest : public MutationLogTest {};
// Tests that choose their implementations themselves (no GetParam()).
class MutationLogInstallTest : public MutationLogTest {};

INSTANTIATE_TEST_SUITE_P(Capture, MutationLogTest,
                         ::testing::Values(CaptureFunction::kC, CaptureFunction::kPlpgsql),
                         captureName);
INSTANTIATE_TEST_SUITE_P(Capture, CCaptureTest, ::testing::Values(CaptureFunction::kC),
                         captureName);

enum Column {
  kRequest,
  kActor,
  kSchema,
  kTable,
  kPk,
  kOp,
  kOld,
  kNew,
  kChanged,
  kTxid,
  kRolledBack,
  kRowsAffected
};

TEST_P(MutationLogTest, InstallIsIdempotent) {
  install();
  install();
  ASSERT_TRUE(captureAllTables(conninfo_));
  ASSERT_TRUE(captureAllTables(conninfo_));
  Session s = session();
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations"), "0");
  EXPECT_EQ(s.value("SELECT count(*) FROM pg_indexes WHERE schemaname = 'flux' AND "
                    "tablename = 'state_mutations'"),
            "2");  // the primary key (row_key, id) and request_id
  EXPECT_EQ(s.value("SELECT count(*) FROM pg_event_trigger WHERE evtname = 'flux_capture_ddl'"),
            "1");
  for (const char* function :
       {"flux.capture()", "flux.changed_columns(jsonb,jsonb)", "flux.install_capture(regclass)",
        "flux.install_capture_all()", "flux.capture_ddl()"}) {
    EXPECT_EQ(s.value("SELECT to_regprocedure($1) IS NOT NULL", {function}), "t") << function;
  }
  EXPECT_EQ(s.value("SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
                    "WHERE p.oid = 'flux.capture()'::regprocedure"),
            plpgsql() ? "plpgsql" : "c");
}

TEST_P(MutationLogTest, ConcurrentInstallsTakeTurns) {
  std::vector<std::thread> threads;
  std::vector<Result<MutationLogInstall>> results(4);
  CaptureChoice choice = plpgsql() ? CaptureChoice::kPlpgsqlOnly : CaptureChoice::kPreferC;
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back(
        [this, &results, i, choice] { results[i] = installMutationLog(conninfo_, choice); });
  }
  for (std::thread& t : threads) t.join();
  for (const auto& result : results) {
    ASSERT_TRUE(result) << result.error().toString();
    EXPECT_EQ(result->capture, GetParam()) << result->why_plpgsql;
  }
}

TEST_P(MutationLogTest, EventTriggerCapturesTablesCreatedAfterInstall) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.users (id int PRIMARY KEY, name text)");
  s.exec("CREATE TABLE public.copied AS SELECT 1 AS x");
  s.exec("SELECT 1 AS x INTO public.selected");
  s.exec("CREATE TEMP TABLE scratch (x int)");
  s.exec("CREATE TABLE flux.internal (x int)");
  EXPECT_EQ(triggerArgs(s, "public.users"), "id");
  EXPECT_EQ(triggerArgs(s, "public.copied"), "");
  EXPECT_EQ(triggerArgs(s, "public.selected"), "");
  EXPECT_EQ(triggerArgs(s, "pg_temp.scratch"), std::nullopt);
  EXPECT_EQ(triggerArgs(s, "flux.internal"), std::nullopt);
  EXPECT_EQ(s.failing("SELECT flux.install_capture('flux.state_mutations')"), "P0001");
}

TEST_P(MutationLogTest, CaptureAllTablesCoversTablesCreatedBeforeInstall) {
  Session s = session();
  s.exec("CREATE TABLE public.early (id int PRIMARY KEY)");
  s.exec("CREATE TABLE public.other (id int PRIMARY KEY)");
  install();
  EXPECT_EQ(triggerArgs(s, "public.early"), std::nullopt);
  ASSERT_TRUE(captureAllTables(conninfo_));
  EXPECT_EQ(triggerArgs(s, "public.early"), "id");
  EXPECT_EQ(triggerArgs(s, "public.other"), "id");

  // An up-to-date trigger is left alone; a missing one comes back.
  std::string before =
      s.value("SELECT xmin::text FROM pg_trigger WHERE tgrelid = 'public.other'::regclass");
  s.exec("DROP TRIGGER flux_capture ON public.early");
  EXPECT_EQ(s.value("SELECT flux.install_capture_all()"), "1");
  EXPECT_EQ(triggerArgs(s, "public.early"), "id");
  EXPECT_EQ(s.value("SELECT xmin::text FROM pg_trigger WHERE tgrelid = 'public.other'::regclass"),
            before);
}

TEST_P(MutationLogTest, ExternalWritesAreLoggedWithTheSession) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.users (id int PRIMARY KEY, name text)");
  s.exec("INSERT INTO public.users VALUES (1, NULL)");
  s.exec("UPDATE public.users SET name = 'Alice Smith' WHERE id = 1");
  s.exec("DELETE FROM public.users WHERE id = 1");

  std::string actor = s.value("SELECT session_user") + " (psql-test)";
  auto rows = mutations(s);
  ASSERT_EQ(rows.size(), 3u);
  const char* ops[] = {"INSERT", "UPDATE", "DELETE"};
  const char* changed[] = {"{id,name}", "{name}", "{id,name}"};
  for (size_t i = 0; i < rows.size(); ++i) {
    SCOPED_TRACE(ops[i]);
    EXPECT_EQ(rows[i][kRequest], std::nullopt);
    EXPECT_EQ(rows[i][kActor], actor);
    EXPECT_EQ(rows[i][kSchema], "public");
    EXPECT_EQ(rows[i][kTable], "users");
    EXPECT_EQ(rows[i][kPk], "1");
    EXPECT_EQ(rows[i][kOp], ops[i]);
    EXPECT_EQ(rows[i][kChanged], changed[i]);
    EXPECT_NE(rows[i][kTxid], std::nullopt);
    EXPECT_EQ(rows[i][kRolledBack], "f");
    EXPECT_EQ(rows[i][kRowsAffected], "1");
  }
  EXPECT_EQ(rows[0][kOld], std::nullopt);
  EXPECT_EQ(rows[0][kNew], R"({"id": 1, "name": null})");
  EXPECT_EQ(rows[1][kOld], R"({"id": 1, "name": null})");
  EXPECT_EQ(rows[1][kNew], R"({"id": 1, "name": "Alice Smith"})");
  EXPECT_EQ(rows[2][kOld], R"({"id": 1, "name": "Alice Smith"})");
  EXPECT_EQ(rows[2][kNew], std::nullopt);

  // txid is the writing transaction's.
  s.exec("BEGIN");
  s.exec("INSERT INTO public.users VALUES (2, 'Bob')");
  std::string txid = s.value("SELECT txid_current()::text");
  s.exec("COMMIT");
  EXPECT_EQ(s.value("SELECT txid::text FROM flux.state_mutations WHERE pk = '2'"), txid);
  EXPECT_TRUE(s.rolledBackNotices().empty());
}

TEST_P(MutationLogTest, RequestWritesAreLoggedWithTheRequestAtCommit) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.users (id int PRIMARY KEY, name text)");
  s.exec("INSERT INTO public.users VALUES (1, NULL)");
  s.exec("TRUNCATE flux.state_mutations");

  beginRequest(s);
  s.exec("INSERT INTO public.users VALUES (2, 'Bob \"the\" builder')");
  s.exec("UPDATE public.users SET name = 'Alice Smith' WHERE id = 1");
  s.exec("DELETE FROM public.users WHERE id = 2");
  std::string txid = s.value("SELECT txid_current()::text");
  EXPECT_EQ(s.value("SELECT current_setting('flux.request_id')"), kRequestId);
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations"), "0");

  auto notices = s.captureNotices();
  if (plpgsql()) {
    ASSERT_EQ(notices.size(), 3u);
    const char* check =
        "SELECT p ->> 's', p ->> 't', p ->> 'op', p ->> 'pk', p -> 'old', p -> 'new', "
        "p ->> 'tx', (p ->> 'at')::timestamptz <= clock_timestamp() "
        "FROM (SELECT $1::jsonb AS p) AS payload";
    auto insert = s.query(check, {notices[0].message});
    ASSERT_EQ(insert.size(), 1u) << notices[0].message;
    EXPECT_EQ(insert[0], (Row{"public", "users", "INSERT", "2", "null",
                              R"({"id": 2, "name": "Bob \"the\" builder"})", txid, "t"}));
    auto update = s.query(check, {notices[1].message});
    ASSERT_EQ(update.size(), 1u) << notices[1].message;
    EXPECT_EQ(update[0], (Row{"public", "users", "UPDATE", "1", R"({"id": 1, "name": null})",
                              R"({"id": 1, "name": "Alice Smith"})", txid, "t"}));
    auto del = s.query(check, {notices[2].message});
    ASSERT_EQ(del.size(), 1u) << notices[2].message;
    EXPECT_EQ(del[0][2], "DELETE");
    EXPECT_EQ(del[0][5], "null");
  } else {
    EXPECT_TRUE(notices.empty()) << "the C capture sends nothing per row";
  }

  std::string before_commit = s.value("SELECT clock_timestamp()::text");
  commitRequest(s);
  EXPECT_TRUE(s.rolledBackNotices().empty());
  auto rows = mutations(s);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0],
            (Row{kRequestId, std::nullopt, "public", "users", "2", "INSERT", std::nullopt,
                 R"({"id": 2, "name": "Bob \"the\" builder"})", "{id,name}", txid, "f", "1"}));
  EXPECT_EQ(rows[1], (Row{kRequestId, std::nullopt, "public", "users", "1", "UPDATE",
                          R"({"id": 1, "name": null})", R"({"id": 1, "name": "Alice Smith"})",
                          "{name}", txid, "f", "1"}));
  EXPECT_EQ(rows[2], (Row{kRequestId, std::nullopt, "public", "users", "2", "DELETE",
                          R"({"id": 2, "name": "Bob \"the\" builder"})", std::nullopt, "{id,name}",
                          txid, "f", "1"}));
  // at is when the row was written, not when it was stored.
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations WHERE at < $1::timestamptz",
                    {before_commit}),
            "3");
  EXPECT_EQ(s.value("SELECT bool_and(a.at < b.at) FROM flux.state_mutations a "
                    "JOIN flux.state_mutations b ON b.id = a.id + 1"),
            "t");
  // Outside the request's transaction, writes are logged directly again.
  s.exec("UPDATE public.users SET name = 'Al' WHERE id = 1");
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations WHERE request_id IS NULL"), "1");
}

TEST_P(MutationLogTest, WritesOfATransactionThatFailsAreReported) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.users (id int PRIMARY KEY, name text)");
  s.exec("INSERT INTO public.users VALUES (1, 'Alice')");
  s.exec("TRUNCATE flux.state_mutations");

  beginRequest(s);
  s.exec("UPDATE public.users SET name = 'Alice Smith' WHERE id = 1");
  s.exec("INSERT INTO public.users VALUES (2, 'Bob')");
  std::string txid = s.value("SELECT txid_current()::text");
  EXPECT_EQ(s.failing("INSERT INTO public.users VALUES (1, 'duplicate')"), "23505");
  // The error aborted the transaction: the C capture's report came with it, before ROLLBACK.
  EXPECT_EQ(s.rolledBackNotices().size(), plpgsql() ? 0u : 1u);
  s.exec("ROLLBACK");
  if (!plpgsql()) {
    auto reports = s.rolledBackNotices();
    ASSERT_EQ(reports.size(), 1u);
    EXPECT_EQ(s.value("SELECT jsonb_array_length($1::jsonb)", {reports[0].message}), "2");
  }
  EXPECT_EQ(s.value("SELECT name FROM public.users WHERE id = 1"), "Alice");
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations"), "0");
  EXPECT_EQ(s.captureNotices().size(), plpgsql() ? 2u : 0u);
  EXPECT_EQ(s.rolledBackNotices().size(), plpgsql() ? 0u : 1u);

  storeRolledBack(s);
  auto rows = mutations(s);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0][kRequest], kRequestId);
  EXPECT_EQ(rows[0][kOp], "UPDATE");
  EXPECT_EQ(rows[0][kChanged], "{name}");
  EXPECT_EQ(rows[0][kOld], R"({"id": 1, "name": "Alice"})");
  EXPECT_EQ(rows[0][kNew], R"({"id": 1, "name": "Alice Smith"})");
  EXPECT_EQ(rows[0][kRolledBack], "t");
  EXPECT_EQ(rows[1][kOp], "INSERT");
  EXPECT_EQ(rows[1][kPk], "2");
  EXPECT_EQ(rows[1][kRolledBack], "t");
  // The transaction id is the rolled-back one's, not the storing transaction's.
  EXPECT_EQ(rows[0][kTxid], txid);
  EXPECT_EQ(rows[1][kTxid], txid);
}

TEST_P(MutationLogTest, HiddenNoticesFailTheWriteInsteadOfLosingIt) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.users (id int PRIMARY KEY, name text)");
  s.exec("SET client_min_messages = warning");
  beginRequest(s);
  EXPECT_EQ(s.failing("INSERT INTO public.users VALUES (1, 'Alice')"), "P0001");
  s.exec("ROLLBACK");
  // Outside a request the trigger inserts the row itself: notices do not matter.
  s.exec("INSERT INTO public.users VALUES (1, 'Alice')");
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations"), "1");
}

TEST_P(MutationLogTest, CompositeKeyInKeyOrder) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.memberships (a int, b int, role text, PRIMARY KEY (b, a))");
  EXPECT_EQ(triggerArgs(s, "public.memberships"), "b,a");
  s.exec("INSERT INTO public.memberships VALUES (2, 1, 'admin')");
  EXPECT_EQ(s.value("SELECT pk FROM flux.state_mutations"), "1,2");

  beginRequest(s);
  s.exec("UPDATE public.memberships SET role = 'owner'");
  commitRequest(s);
  auto rows = mutations(s, "request_id IS NOT NULL");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][kPk], "1,2");
  EXPECT_EQ(rows[0][kChanged], "{role}");
}

// The key reads as in the row's JSON: ISO timestamps, JSON booleans, numerics as written.
TEST_P(MutationLogTest, KeyValuesReadAsInTheRowJson) {
  install();
  Session s = session();
  s.exec(
      "CREATE TABLE public.slots (at timestamptz, open boolean, price numeric, "
      "label text, code char(4), u uuid, n bigint, "
      "PRIMARY KEY (at, open, price, label, code, u, n))");
  s.exec(
      "INSERT INTO public.slots VALUES ('2024-01-02 03:04:05+00', true, 1.50, 'a,\"b\"', "
      "'xy', '0190f3c2-7a1b-7c3d-8e4f-123456789ABC', -9007199254740993)");
  beginRequest(s);
  s.exec("DELETE FROM public.slots");
  commitRequest(s);
  const std::string expected =
      "2024-01-02T03:04:05+00:00,true,1.50,a,\"b\",xy  ,"
      "0190f3c2-7a1b-7c3d-8e4f-123456789abc,-9007199254740993";
  EXPECT_EQ(s.query("SELECT pk FROM flux.state_mutations ORDER BY id"),
            (std::vector<Row>{{expected}, {expected}}));
  EXPECT_EQ(mutations(s).size(), 2u);  // and their row keys hash that text
}

TEST_P(MutationLogTest, TableWithoutPrimaryKeyHasNullPk) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.events (kind text, payload jsonb)");
  EXPECT_EQ(triggerArgs(s, "public.events"), "");
  s.exec(R"(INSERT INTO public.events VALUES ('signup', '{"plan": "free"}'))");
  auto rows = mutations(s);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][kPk], std::nullopt);
  EXPECT_EQ(rows[0][kNew], R"({"kind": "signup", "payload": {"plan": "free"}})");

  beginRequest(s);
  s.exec("DELETE FROM public.events");
  commitRequest(s);
  rows = mutations(s, "request_id IS NOT NULL");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][kPk], std::nullopt);
  EXPECT_EQ(rows[0][kOld], R"({"kind": "signup", "payload": {"plan": "free"}})");
}

TEST_P(MutationLogTest, PrimaryKeyChangesReinstallTheTrigger) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.items (id int NOT NULL, sku text NOT NULL, name text)");
  EXPECT_EQ(triggerArgs(s, "public.items"), "");
  s.exec("ALTER TABLE public.items ADD PRIMARY KEY (id)");
  EXPECT_EQ(triggerArgs(s, "public.items"), "id");
  s.exec("INSERT INTO public.items VALUES (7, 'A-1', 'pen')");
  s.exec("ALTER TABLE public.items RENAME COLUMN id TO item_id");
  EXPECT_EQ(triggerArgs(s, "public.items"), "item_id");
  s.exec("UPDATE public.items SET name = 'blue pen'");
  s.exec("ALTER TABLE public.items DROP CONSTRAINT items_pkey");
  EXPECT_EQ(triggerArgs(s, "public.items"), "");
  s.exec("ALTER TABLE public.items ADD CONSTRAINT items_pkey PRIMARY KEY (sku, item_id)");
  EXPECT_EQ(triggerArgs(s, "public.items"), "sku,item_id");
  s.exec("DELETE FROM public.items");

  auto pks = s.query("SELECT op, pk FROM flux.state_mutations ORDER BY id");
  EXPECT_EQ(pks, (std::vector<Row>{{"INSERT", "7"}, {"UPDATE", "7"}, {"DELETE", "A-1,7"}}));
}

// changed_columns is flux.row_diff's answer whoever computes it (the C capture does it itself):
// jsonb equality (1.0 = 1.00, key order in json values), names that need quoting in an array.
TEST_P(MutationLogTest, ChangedColumnsFollowJsonbEquality) {
  install();
  Session s = session();
  s.exec(R"(CREATE TABLE public.odd (id int PRIMARY KEY, amount numeric, doc json,
            "my col" text, "NULL" text, "a""b\c" int, "{x,y}" int, plain int))");
  s.exec(R"(INSERT INTO public.odd VALUES (1, 1.0, '{"a": 1, "b": 2}', 'x', 'n', 1, 1, 1))");
  beginRequest(s);
  // Nothing changes by jsonb equality.
  s.exec(R"(UPDATE public.odd SET amount = 1.00, doc = '{"b":2,"a":1}')");
  // Every oddly named column changes.
  s.exec(R"(UPDATE public.odd SET "my col" = NULL, "NULL" = 'm', "a""b\c" = 2, "{x,y}" = 2)");
  s.exec(R"(UPDATE public.odd SET amount = 2, doc = '[1]', plain = NULL)");
  s.exec("DELETE FROM public.odd");
  commitRequest(s);
  EXPECT_EQ(s.query("SELECT changed_columns::text FROM flux.state_mutations "
                    "WHERE request_id IS NOT NULL ORDER BY id"),
            (std::vector<Row>{{"{}"},
                              {R"({"NULL","a\"b\\c","my col","{x,y}"})"},
                              {"{amount,doc,plain}"},
                              {R"({"NULL","a\"b\\c",amount,doc,id,"my col",plain,"{x,y}"})"}}));
  EXPECT_EQ(s.value("SELECT bool_and(changed_columns = "
                    "flux.changed_columns(old::jsonb, new::jsonb)) FROM flux.state_mutations"),
            "t");
}

TEST_P(MutationLogTest, ZeroRowChangesAreStored) {
  install();
  Session s = session();
  s.exec("BEGIN");
  s.query(kStoreZeroRowSql,
          {kRequestId, "public", "users", "UPDATE", R"({"id": 42})", R"({"name": "x"})", "f"});
  s.exec("COMMIT");
  s.query(kStoreZeroRowSql,
          {kRequestId, "public", "users", "DELETE", R"({"id": 43})", std::nullopt, "t"});
  auto rows = mutations(s);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0],
            (Row{kRequestId, std::nullopt, "public", "users", std::nullopt, "UPDATE",
                 R"({"id": 42})", R"({"name": "x"})", std::nullopt, rows[0][kTxid], "f", "0"}));
  EXPECT_EQ(rows[1], (Row{kRequestId, std::nullopt, "public", "users", std::nullopt, "DELETE",
                          R"({"id": 43})", std::nullopt, std::nullopt, std::nullopt, "t", "0"}));
}

TEST_P(MutationLogTest, ChangedColumnsAreSortedOverBothRows) {
  install();
  Session s = session();
  EXPECT_EQ(s.value(R"(SELECT flux.changed_columns('{"b": 1, "a": 2, "c": 3}',
                                                   '{"b": 1, "a": 3, "Z": null}')::text)"),
            "{Z,a,c}");
  EXPECT_EQ(s.value(R"(SELECT flux.changed_columns(NULL, '{"b": 1, "a": null}')::text)"), "{a,b}");
  EXPECT_EQ(s.value(R"(SELECT flux.changed_columns('{"x": 1}', NULL)::text)"), "{x}");
  EXPECT_EQ(s.value(R"(SELECT flux.changed_columns('{"x": 1}', '{"x": 1}')::text)"), "{}");
}

// old and new are row_to_json's text, byte for byte, for every kind of column (the C capture
// writes it itself for tables without arrays and composites), also after the table changes.
// (The plpgsql capture's rows pass through jsonb: the same values, normalised text.)
TEST_P(CCaptureTest, RowsAreLoggedAsRowToJsonWritesThem) {
  install();
  Session s = session();
  s.script(R"(CREATE TYPE public.mood AS ENUM ('ok', 'sad');
            CREATE DOMAIN public.positive AS int CHECK (VALUE > 0);
            CREATE TABLE public.kinds (
              id int PRIMARY KEY, gone int, b boolean, s smallint, big bigint, r real,
              d double precision, n numeric, nan numeric, inf float8, t text, v varchar(9),
              c char(3), u uuid, day date, ts timestamp, tz timestamptz, iv interval, j json,
              jb jsonb, m public.mood, p public.positive, raw bytea, "we""ird key" text,
              nothing text);
            ALTER TABLE public.kinds DROP COLUMN gone;
            CREATE TABLE public.listed (id int PRIMARY KEY, tags text[], pair point))");
  const std::string insert_kinds =
      R"(INSERT INTO public.kinds VALUES (1, true, -2, 9007199254740993, 1.5, 0.1, 1.50,
           'NaN', 'Infinity', E'quote " back \\ line\n tab\t é ☃', 'short', 'ab',
           '0190f3c2-7a1b-7c3d-8e4f-123456789abc', '2024-02-29', '2024-01-02 03:04:05.678',
           '2024-01-02 03:04:05+02', '1 day 2 hours', '{"a": [1, 2.50]}', '{"b": {"c": null}}',
           'sad', 7, '\x00ff', 'k', NULL))";
  const std::string row_json = "SELECT row_to_json(k)::text FROM public.kinds k";

  beginRequest(s);
  s.exec(insert_kinds);
  s.exec("INSERT INTO public.listed VALUES (1, '{a,\"b c\"}', '(1,2)')");
  std::string inserted = s.value(row_json);
  s.exec("UPDATE public.kinds SET t = 'changed', tz = tz + interval '1 second'");
  std::string updated = s.value(row_json);
  s.exec("UPDATE public.listed SET tags = '{}'");
  commitRequest(s);
  EXPECT_EQ(s.query("SELECT old::text, new::text FROM flux.state_mutations "
                    "WHERE table_name = 'kinds' ORDER BY id"),
            (std::vector<Row>{{std::nullopt, inserted}, {inserted, updated}}));
  EXPECT_EQ(s.value("SELECT new::text FROM flux.state_mutations WHERE table_name = 'listed' "
                    "ORDER BY id DESC LIMIT 1"),
            s.value("SELECT row_to_json(l)::text FROM public.listed l"));

  // A column added and one dropped since: the next change is logged as the table is now.
  s.exec("ALTER TABLE public.kinds ADD COLUMN later int DEFAULT 5, DROP COLUMN raw");
  std::string altered = s.value(row_json);
  EXPECT_NE(altered.find(R"("nothing":null,"later":5})"), std::string::npos) << altered;
  beginRequest(s);
  s.exec("DELETE FROM public.kinds");
  commitRequest(s);
  EXPECT_EQ(s.value("SELECT old::text FROM flux.state_mutations WHERE table_name = 'kinds' "
                    "ORDER BY id DESC LIMIT 1"),
            altered);
}

TEST_P(MutationLogTest, OtherRolesWriteAndCreateTablesWithoutPrivilegesOnFlux) {
  install();
  std::string writer = makeRole("writer");
  Session admin = session();
  admin.exec("CREATE TABLE public.users (id int PRIMARY KEY, name text)");
  admin.exec("GRANT ALL ON public.users TO " + writer);
  admin.exec("GRANT CREATE ON SCHEMA public TO " + writer);

  Session s = session(writer);
  s.exec("INSERT INTO public.users VALUES (1, 'Alice')");
  EXPECT_EQ(admin.value("SELECT actor FROM flux.state_mutations"), writer + " (psql-test)");
  EXPECT_EQ(s.failing("SELECT * FROM flux.state_mutations"), "42501");

  s.exec("CREATE TABLE public.notes (id int PRIMARY KEY, body text)");
  EXPECT_EQ(triggerArgs(s, "public.notes"), "id");
  beginRequest(s);
  s.exec("INSERT INTO public.notes VALUES (1, 'hi')");
  if (plpgsql()) {
    // The request (Flux's role) stores the notices: the writer only sends them.
    EXPECT_EQ(s.captureNotices().size(), 1u);
    s.exec("COMMIT");
  } else {
    // The server stores the rows as the owner of flux.capture(), like SECURITY DEFINER.
    commitRequest(s);
    EXPECT_EQ(admin.value("SELECT request_id FROM flux.state_mutations WHERE table_name = 'notes'"),
              kRequestId);
    EXPECT_EQ(s.value("SELECT current_user"), writer);
  }
}

TEST_F(MutationLogInstallTest, WithoutSuperuserInstallSkipsTheEventTriggerAndTheCCapture) {
  std::string owner = makeRole("owner");
  Session admin(test_support::pgConninfo());
  admin.exec("ALTER DATABASE " + db_ + " OWNER TO " + owner);
  // Created by the superuser: the owner role cannot put a trigger on it.
  session().exec("CREATE TABLE public.foreign_owned (id int PRIMARY KEY)");

  std::string as_owner = conninfo_ + " user=" + owner;
  auto installed = installMutationLog(as_owner);
  ASSERT_TRUE(installed) << installed.error().toString();
  EXPECT_EQ(installed->capture, CaptureFunction::kPlpgsql);
  EXPECT_EQ(installed->why_plpgsql, "the role is not a superuser");
  ASSERT_TRUE(installMutationLog(as_owner));
  Session s = session(owner);
  EXPECT_EQ(s.value("SELECT count(*) FROM pg_event_trigger"), "0");
  s.exec("CREATE TABLE public.mine (id int PRIMARY KEY)");
  EXPECT_EQ(triggerArgs(s, "public.mine"), std::nullopt);

  auto captured = captureAllTables(as_owner);
  ASSERT_FALSE(captured);
  EXPECT_NE(captured.error().message.find("foreign_owned"), std::string::npos)
      << captured.error().message;
  session().exec("ALTER TABLE public.foreign_owned OWNER TO " + owner);
  captured = captureAllTables(as_owner);
  ASSERT_TRUE(captured) << captured.error().toString();
  EXPECT_EQ(triggerArgs(s, "public.mine"), "id");
  EXPECT_EQ(triggerArgs(s, "public.foreign_owned"), "id");
}

TEST_F(MutationLogInstallTest, UnreachableServerIsUnavailable) {
  auto installed = installMutationLog("host=/nonexistent port=1 dbname=x password=hunter2");
  ASSERT_FALSE(installed);
  EXPECT_EQ(installed.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(installed.error().message.find("hunter2"), std::string::npos);
  auto malformed = captureAllTables("postgresql://u:hunter2@[bad");
  ASSERT_FALSE(malformed);
  EXPECT_EQ(malformed.error().message.find("hunter2"), std::string::npos);
}

// The library lands in the data directory, named after its bytes and the database, written
// once: a second install (or another flux) leaves the file alone, since backends map it.
// A log made by an earlier Flux (old/new jsonb, key columns in the database's collation) is
// converted in place, its rows kept, and the C capture stores into it.
TEST_F(MutationLogInstallTest, InstallUpgradesAnEarlierLog) {
  Session s = session();
  s.script(R"(CREATE SCHEMA flux;
            CREATE TABLE flux.state_mutations (
              id bigserial PRIMARY KEY, request_id uuid, actor text, schema_name text NOT NULL,
              table_name text NOT NULL, pk text, op text NOT NULL, old jsonb, new jsonb,
              changed_columns text[], txid bigint,
              at timestamptz NOT NULL DEFAULT clock_timestamp(),
              rolled_back boolean NOT NULL DEFAULT false,
              rows_affected integer NOT NULL DEFAULT 1);
            INSERT INTO flux.state_mutations (schema_name, table_name, pk, op, new)
              VALUES ('public', 'users', '1', 'INSERT', '{"id": 1, "name": "Ann"}'))");
  auto installed = installMutationLog(conninfo_);
  ASSERT_TRUE(installed) << installed.error().toString();
  ASSERT_EQ(installed->capture, CaptureFunction::kC) << installed->why_plpgsql;
  EXPECT_EQ(s.value("SELECT string_agg(attname || ' ' || format_type(atttypid, NULL) || ' ' || "
                    "coalesce(collname, '-'), ', ' ORDER BY attnum) FROM pg_attribute a "
                    "LEFT JOIN pg_collation c ON c.oid = a.attcollation "
                    "WHERE attrelid = 'flux.state_mutations'::regclass "
                    "AND attname IN ('schema_name', 'table_name', 'pk', 'old', 'new')"),
            "schema_name text C, table_name text C, pk text C, old json -, new json -");
  EXPECT_EQ(s.value("SELECT new ->> 'name' FROM flux.state_mutations WHERE pk = '1'"), "Ann");

  s.exec("CREATE TABLE public.users (id int PRIMARY KEY, name text)");
  ASSERT_TRUE(captureAllTables(conninfo_));
  auto begin = beginRequestTransactionSql(kRequestId);
  ASSERT_TRUE(begin) << begin.error().toString();
  s.script(*begin);
  s.exec("INSERT INTO public.users VALUES (2, 'Bo')");
  s.exec("COMMIT");
  EXPECT_EQ(s.value("SELECT new::text || ' ' || changed_columns::text FROM flux.state_mutations "
                    "WHERE request_id IS NOT NULL"),
            R"({"id":2,"name":"Bo"} {id,name})");
  // The earlier rows got their row keys, and the row index is the bigint one.
  EXPECT_EQ(mutations(s).size(), 2u);
  EXPECT_EQ(s.value("SELECT string_agg(indexrelid::regclass::text, ' ' ORDER BY "
                    "indexrelid::regclass::text) FROM pg_index "
                    "WHERE indrelid = 'flux.state_mutations'::regclass"),
            "flux.state_mutations_pkey flux.state_mutations_request_idx");
  EXPECT_EQ(s.value("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid = 'flux.state_mutations'::regclass AND contype = 'p'"),
            "PRIMARY KEY (row_key, id)");
}

TEST_F(MutationLogInstallTest, CLibraryIsWrittenOnceAndTheImplementationsSwap) {
  auto installed = installMutationLog(conninfo_);
  ASSERT_TRUE(installed) << installed.error().toString();
  ASSERT_EQ(installed->capture, CaptureFunction::kC) << installed->why_plpgsql;
  Session s = session();
  std::string path =
      s.value("SELECT probin FROM pg_proc WHERE oid = 'flux.capture()'::regprocedure");
  EXPECT_EQ(s.value("SELECT starts_with($1, current_setting('data_directory') || "
                    "'/flux_capture_')",
                    {path}),
            "t")
      << path;
  EXPECT_EQ(s.value("SELECT $1::text LIKE '%\\_' || (SELECT oid FROM pg_database "
                    "WHERE datname = current_database()) || '.so'",
                    {path}),
            "t")
      << path;
  EXPECT_EQ(s.value("SELECT size FROM pg_stat_file($1)", {path}),
            std::to_string(kCaptureLibrary.size()));
  std::string written = s.value("SELECT modification::text FROM pg_stat_file($1)", {path});

  s.exec("CREATE TABLE public.users (id int PRIMARY KEY)");
  ASSERT_TRUE(installMutationLog(conninfo_, CaptureChoice::kPlpgsqlOnly));
  beginRequest(s);
  s.exec("INSERT INTO public.users VALUES (1)");
  s.exec("COMMIT");
  EXPECT_EQ(s.captureNotices().size(), 1u) << "plpgsql again";
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations WHERE request_id IS NOT NULL"), "0");

  installed = installMutationLog(conninfo_);
  ASSERT_TRUE(installed && installed->capture == CaptureFunction::kC);
  EXPECT_EQ(s.value("SELECT probin FROM pg_proc WHERE oid = 'flux.capture()'::regprocedure"), path);
  EXPECT_EQ(s.value("SELECT modification::text FROM pg_stat_file($1)", {path}), written);
  beginRequest(s);
  s.exec("INSERT INTO public.users VALUES (2)");
  s.exec("COMMIT");
  EXPECT_EQ(s.captureNotices().size(), 1u) << "no new notice";
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations WHERE request_id IS NOT NULL"), "1");
}

TEST_P(CCaptureTest, ExplicitRollbackReportsAllRowsInOneNotice) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.users (id int PRIMARY KEY, name text)");
  beginRequest(s);
  s.exec("INSERT INTO public.users VALUES (1, 'a'), (2, 'b')");
  s.exec("SAVEPOINT inner_part");
  s.exec("UPDATE public.users SET name = 'c' WHERE id = 1");
  s.exec("ROLLBACK TO SAVEPOINT inner_part");
  s.exec("DELETE FROM public.users WHERE id = 2");
  EXPECT_TRUE(s.rolledBackNotices().empty());
  s.exec("ROLLBACK");
  auto reports = s.rolledBackNotices();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(s.query("SELECT e ->> 'op', e ->> 'pk' FROM jsonb_array_elements($1::jsonb) "
                    "WITH ORDINALITY AS a(e, n) ORDER BY n",
                    {reports[0].message}),
            (std::vector<Row>{{"INSERT", "1"}, {"INSERT", "2"}, {"UPDATE", "1"}, {"DELETE", "2"}}));
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations"), "0");

  // The next transaction starts with an empty buffer.
  s.clearNotices();
  beginRequest(s);
  s.exec("INSERT INTO public.users VALUES (3, 'c')");
  commitRequest(s);
  EXPECT_TRUE(s.rolledBackNotices().empty());
  EXPECT_EQ(s.query("SELECT pk FROM flux.state_mutations"), (std::vector<Row>{{"3"}}));
  s.clearNotices();
  beginRequest(s);
  s.exec("ROLLBACK");
  EXPECT_TRUE(s.rolledBackNotices().empty()) << "nothing written, nothing reported";
}

// Writes before, inside and after rolled-back savepoints (SQL ones and a plpgsql exception
// block) are stored in the order they happened, the undone ones marked rolled back.
TEST_P(CCaptureTest, SavepointRollbacksAreStoredRolledBackInOrder) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.accounts (id int PRIMARY KEY, balance int)");
  s.exec("INSERT INTO public.accounts VALUES (1, 0)");
  s.exec("TRUNCATE flux.state_mutations");
  beginRequest(s);
  s.exec("UPDATE public.accounts SET balance = 1");  // kept
  s.exec("SAVEPOINT a");
  s.exec("UPDATE public.accounts SET balance = 2");  // undone by ROLLBACK TO a
  s.exec("SAVEPOINT b");
  s.exec("UPDATE public.accounts SET balance = 3");  // released into a, then undone
  s.exec("RELEASE SAVEPOINT b");
  s.exec("ROLLBACK TO SAVEPOINT a");
  s.exec("RELEASE SAVEPOINT a");
  s.exec("UPDATE public.accounts SET balance = 4");  // kept
  s.exec("SAVEPOINT c");
  s.exec("UPDATE public.accounts SET balance = 5");  // kept: c is released
  s.exec("SAVEPOINT d");
  s.exec("UPDATE public.accounts SET balance = 6");  // undone by ROLLBACK TO d
  s.exec("ROLLBACK TO SAVEPOINT d");
  s.exec("RELEASE SAVEPOINT c");
  s.exec(R"(DO $$
BEGIN
  UPDATE public.accounts SET balance = 7;  -- undone with the exception block
  PERFORM 1 / 0;
EXCEPTION WHEN division_by_zero THEN
  NULL;
END $$)");
  s.exec("UPDATE public.accounts SET balance = 8");  // kept
  commitRequest(s);
  EXPECT_TRUE(s.rolledBackNotices().empty());
  EXPECT_EQ(s.query("SELECT new ->> 'balance', rolled_back FROM flux.state_mutations ORDER BY id"),
            (std::vector<Row>{{"1", "f"},
                              {"2", "t"},
                              {"3", "t"},
                              {"4", "f"},
                              {"5", "f"},
                              {"6", "t"},
                              {"7", "t"},
                              {"8", "f"}}));
  EXPECT_EQ(s.value("SELECT balance FROM public.accounts"), "8");
  EXPECT_EQ(s.value("SELECT count(DISTINCT txid) FROM flux.state_mutations"), "1");
}

// A COMMIT that fails after the rows were stored (a deferred constraint) reports them all.
TEST_P(CCaptureTest, FailedCommitReportsTheRows) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.parents (id int PRIMARY KEY)");
  s.exec(
      "CREATE TABLE public.children (id int PRIMARY KEY, parent int REFERENCES public.parents "
      "DEFERRABLE INITIALLY DEFERRED)");
  beginRequest(s);
  s.exec("INSERT INTO public.parents VALUES (1)");
  s.exec("INSERT INTO public.children VALUES (1, 99)");
  EXPECT_EQ(s.failing("COMMIT"), "23503");
  auto reports = s.rolledBackNotices();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(s.query("SELECT e ->> 't' FROM jsonb_array_elements($1::jsonb) "
                    "WITH ORDINALITY AS a(e, n) ORDER BY n",
                    {reports[0].message}),
            (std::vector<Row>{{"parents"}, {"children"}}));
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations"), "0");
}

// An error while storing (here a request id that is not a UUID) fails the COMMIT: the writes
// are rolled back and reported, never committed without their log.
TEST_P(CCaptureTest, AnErrorWhileStoringFailsTheCommit) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.users (id int PRIMARY KEY)");
  s.script("BEGIN; SET LOCAL flux.request_id = 'not-a-uuid'; SET LOCAL flux.capture = 'on'");
  s.exec("INSERT INTO public.users VALUES (1)");
  EXPECT_EQ(s.failing("COMMIT"), "22P02");
  EXPECT_EQ(s.rolledBackNotices().size(), 1u);
  EXPECT_EQ(s.value("SELECT count(*) FROM public.users"), "0");
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations"), "0");
  // The session goes on normally.
  beginRequest(s);
  s.exec("INSERT INTO public.users VALUES (1)");
  commitRequest(s);
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations"), "1");
}

TEST_P(CCaptureTest, ManyRowsKeepTheirOrder) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.items (id int PRIMARY KEY, n int)");
  beginRequest(s);
  s.exec("INSERT INTO public.items SELECT g, g FROM generate_series(1, 2000) g ORDER BY g");
  commitRequest(s);
  EXPECT_EQ(s.value("SELECT bool_and(pk::int = rank) AND count(*) = 2000 FROM "
                    "(SELECT pk, rank() OVER (ORDER BY id) FROM flux.state_mutations) r"),
            "t");
  beginRequest(s);
  s.exec("UPDATE public.items SET n = n + 1");
  s.exec("ROLLBACK");
  auto reports = s.rolledBackNotices();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(s.value("SELECT jsonb_array_length($1::jsonb)", {reports[0].message}), "2000");
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations"), "2000");
}

// The transaction settings Flux's connections use do not matter to the C capture's store: a
// hostile search_path cannot redirect what it runs as the function's owner.
TEST_P(CCaptureTest, StoreIgnoresTheSessionSearchPath) {
  install();
  std::string writer = makeRole("path_writer");
  Session admin = session();
  admin.exec("CREATE TABLE public.users (id int PRIMARY KEY)");
  admin.exec("GRANT ALL ON public.users TO " + writer);
  admin.exec("CREATE SCHEMA evil AUTHORIZATION " + writer);
  Session s = session(writer);
  // Would shadow pg_catalog's jsonb_object_keys (used by flux.row_diff) if it were resolved
  // through the session's search_path.
  s.exec(
      "CREATE FUNCTION evil.jsonb_object_keys(jsonb) RETURNS SETOF text "
      "LANGUAGE sql AS $$ SELECT 'evil'::text $$");
  s.exec("SET search_path = evil, pg_catalog, public");
  beginRequest(s);
  s.exec("INSERT INTO public.users VALUES (1)");
  commitRequest(s);
  EXPECT_EQ(admin.value("SELECT changed_columns::text FROM flux.state_mutations"), "{id}");
}

// The C capture stores rows without an INSERT statement: columns it does not know take their
// defaults (also after the table changed under a live session) and an index a later version adds
// gets its entries; a table with what only an INSERT statement runs (row triggers, an expression
// index, forced row level security) goes through SQL.
TEST_P(CCaptureTest, StoreFollowsTheTableAsItChanges) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.users (id int PRIMARY KEY, name text)");
  beginRequest(s);
  s.exec("INSERT INTO public.users VALUES (1, 'a')");
  commitRequest(s);

  // A column a later version adds, with a default, and an index, while this session keeps its
  // backend.
  Session admin = session();
  admin.exec("ALTER TABLE flux.state_mutations ADD COLUMN origin text NOT NULL DEFAULT 'flux'");
  admin.exec("CREATE INDEX state_mutations_op_idx ON flux.state_mutations (op, origin)");
  beginRequest(s);
  s.exec("UPDATE public.users SET name = 'a2'");
  commitRequest(s);
  EXPECT_EQ(admin.value("SELECT count(*) FROM flux.state_mutations WHERE op = 'UPDATE'"), "1");
  // The index holds the row: an index-only scan answers from it alone.
  admin.exec("VACUUM flux.state_mutations");
  admin.exec("SET enable_seqscan = off");
  admin.exec("SET enable_bitmapscan = off");
  EXPECT_EQ(admin.value("SELECT count(*) FROM flux.state_mutations WHERE op = 'UPDATE' AND "
                        "origin = 'flux'"),
            "1");
  std::string plan;
  for (const Row& line : admin.query("EXPLAIN SELECT count(*) FROM flux.state_mutations WHERE "
                                     "op = 'UPDATE' AND origin = 'flux'")) {
    plan += line[0].value_or("") + "\n";
  }
  EXPECT_NE(plan.find("Index Only Scan using state_mutations_op_idx"), std::string::npos) << plan;
  admin.exec("RESET enable_seqscan");
  admin.exec("RESET enable_bitmapscan");
  admin.exec("DROP INDEX flux.state_mutations_op_idx");
  // An expression index: through SQL, which computes it.
  admin.exec("CREATE INDEX state_mutations_lower_op_idx ON flux.state_mutations (lower(op))");
  beginRequest(s);
  s.exec("UPDATE public.users SET name = 'a3'");
  commitRequest(s);
  admin.exec("SET enable_seqscan = off");
  EXPECT_EQ(admin.value("SELECT count(*) FROM flux.state_mutations WHERE lower(op) = 'update'"),
            "2");
  admin.exec("RESET enable_seqscan");
  admin.exec("DROP INDEX flux.state_mutations_lower_op_idx");
  admin.exec("CREATE TABLE flux.inserted (n int)");
  admin.exec(R"(CREATE FUNCTION flux.count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO flux.inserted VALUES (1);
  NEW.actor := coalesce(NEW.actor, 'set by a BEFORE trigger');
  RETURN NEW;
END $$)");
  admin.exec(
      "CREATE TRIGGER count_before BEFORE INSERT ON flux.state_mutations FOR EACH ROW "
      "EXECUTE FUNCTION flux.count_insert()");
  admin.exec(
      "CREATE TRIGGER count_after AFTER INSERT ON flux.state_mutations FOR EACH ROW "
      "EXECUTE FUNCTION flux.count_insert()");
  beginRequest(s);
  s.exec("UPDATE public.users SET name = 'b'");
  commitRequest(s);
  EXPECT_EQ(admin.query("SELECT op, origin, actor, rows_affected, id > 0 FROM flux.state_mutations "
                        "ORDER BY id"),
            (std::vector<Row>{{"INSERT", "flux", std::nullopt, "1", "t"},
                              {"UPDATE", "flux", std::nullopt, "1", "t"},
                              {"UPDATE", "flux", std::nullopt, "1", "t"},
                              {"UPDATE", "flux", "set by a BEFORE trigger", "1", "t"}}));
  EXPECT_EQ(admin.value("SELECT count(*) FROM flux.inserted"), "2");

  // Row level security that applies to the owner of flux.capture() (not a superuser here): the
  // rows go through an INSERT statement, which enforces the policy.
  std::string owner = makeRole("capture_owner");
  admin.exec("ALTER FUNCTION flux.capture() OWNER TO " + owner);
  admin.exec("GRANT SELECT, INSERT ON flux.state_mutations, flux.inserted TO " + owner);
  admin.exec("GRANT USAGE ON SEQUENCE flux.state_mutations_id_seq TO " + owner);
  admin.exec("ALTER TABLE flux.state_mutations ENABLE ROW LEVEL SECURITY");
  admin.exec("ALTER TABLE flux.state_mutations FORCE ROW LEVEL SECURITY");
  admin.exec(
      "CREATE POLICY no_deletes ON flux.state_mutations USING (true) "
      "WITH CHECK (op <> 'DELETE')");
  beginRequest(s);
  s.exec("INSERT INTO public.users VALUES (2, 'c')");
  commitRequest(s);
  beginRequest(s);
  s.exec("DELETE FROM public.users WHERE id = 2");
  EXPECT_EQ(s.failing("COMMIT"), "42501");
  EXPECT_EQ(s.rolledBackNotices().size(), 1u);
  EXPECT_EQ(admin.query("SELECT op, origin, pk FROM flux.state_mutations ORDER BY id DESC LIMIT 1"),
            (std::vector<Row>{{"INSERT", "flux", "2"}}));
  EXPECT_EQ(admin.value("SELECT count(*) FROM flux.inserted"), "4");
}

TEST(BeginRequestTransactionSql, InlinesACanonicalUuid) {
  auto sql = beginRequestTransactionSql("0190f3c2-7a1b-7c3d-8e4f-123456789ABC");
  ASSERT_TRUE(sql) << sql.error().toString();
  EXPECT_EQ(*sql,
            "BEGIN; SET LOCAL flux.request_id = '0190f3c2-7a1b-7c3d-8e4f-123456789ABC'; SET LOCAL "
            "flux.capture = 'on'");
}

TEST(BeginRequestTransactionSql, RejectsAnythingElse) {
  for (const char* id :
       {"", "not-a-uuid", "0190f3c27a1b7c3d8e4f123456789abc",
        "0190f3c2-7a1b-7c3d-8e4f-123456789abc0", "0190f3c2-7a1b-7c3d-8e4f-123456789ab",
        "0190f3c2-7a1b-7c3d-8e4f_123456789abc", "0190f3c2-7a1b-7c3d-8e4f-12345678'abc",
        "g190f3c2-7a1b-7c3d-8e4f-123456789abc", "{0190f3c2-7a1b-7c3d-8e4f-123456789abc}"}) {
    auto sql = beginRequestTransactionSql(id);
    ASSERT_FALSE(sql) << id;
    EXPECT_EQ(sql.error().code, ErrorCode::kInvalidArgument) << id;
  }
}

}  // namespace
}  // namespace flux::data

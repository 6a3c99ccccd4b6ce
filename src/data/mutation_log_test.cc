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

  std::vector<Notice> captureNotices() const {
    std::vector<Notice> out;
    for (const Notice& n : notices_) {
      if (n.sqlstate == kCaptureNoticeSqlstate) out.push_back(n);
    }
    return out;
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

constexpr char kRequestId[] = "0190f3c2-7a1b-7c3d-8e4f-123456789abc";

// Each test gets a database of its own on the shared cluster: the event trigger and schema flux
// are per database, and some tests need one where the mutation log is not installed yet.
class MutationLogTest : public ::testing::Test {
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

  void install() {
    auto installed = installMutationLog(conninfo_);
    ASSERT_TRUE(installed) << installed.error().toString();
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

  // Columns of flux.state_mutations as text, in id order.
  std::vector<Row> mutations(Session& s, const std::string& where = "true") {
    return s.query(
        "SELECT request_id, actor, schema_name, table_name, pk, op, old::text, new::text, "
        "changed_columns::text, txid, rolled_back, rows_affected FROM flux.state_mutations "
        "WHERE " +
        where + " ORDER BY id");
  }

  std::string db_;
  std::string conninfo_;
  std::vector<std::string> roles_;
};

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

TEST_F(MutationLogTest, InstallIsIdempotent) {
  install();
  install();
  ASSERT_TRUE(captureAllTables(conninfo_));
  ASSERT_TRUE(captureAllTables(conninfo_));
  Session s = session();
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations"), "0");
  EXPECT_EQ(s.value("SELECT count(*) FROM pg_indexes WHERE schemaname = 'flux' AND "
                    "tablename = 'state_mutations'"),
            "3");
  EXPECT_EQ(s.value("SELECT count(*) FROM pg_event_trigger WHERE evtname = 'flux_capture_ddl'"),
            "1");
  for (const char* function :
       {"flux.capture()", "flux.changed_columns(jsonb,jsonb)", "flux.install_capture(regclass)",
        "flux.install_capture_all()", "flux.capture_ddl()"}) {
    EXPECT_EQ(s.value("SELECT to_regprocedure($1) IS NOT NULL", {function}), "t") << function;
  }
}

TEST_F(MutationLogTest, ConcurrentInstallsTakeTurns) {
  std::vector<std::thread> threads;
  std::vector<Result<void>> results(4);
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([this, &results, i] { results[i] = installMutationLog(conninfo_); });
  }
  for (std::thread& t : threads) t.join();
  for (const Result<void>& result : results) {
    EXPECT_TRUE(result) << result.error().toString();
  }
}

TEST_F(MutationLogTest, EventTriggerCapturesTablesCreatedAfterInstall) {
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

TEST_F(MutationLogTest, CaptureAllTablesCoversTablesCreatedBeforeInstall) {
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

TEST_F(MutationLogTest, ExternalWritesAreLoggedWithTheSession) {
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
}

TEST_F(MutationLogTest, RequestTransactionSendsNoticesInsteadOfRows) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.users (id int PRIMARY KEY, name text)");
  s.exec("INSERT INTO public.users VALUES (1, NULL)");
  s.exec("TRUNCATE flux.state_mutations");

  auto begin = beginRequestTransactionSql(kRequestId);
  ASSERT_TRUE(begin) << begin.error().toString();
  s.script(*begin);
  s.exec("INSERT INTO public.users VALUES (2, 'Bob \"the\" builder')");
  s.exec("UPDATE public.users SET name = 'Alice Smith' WHERE id = 1");
  s.exec("DELETE FROM public.users WHERE id = 2");
  std::string txid = s.value("SELECT txid_current()::text");
  EXPECT_EQ(s.value("SELECT current_setting('flux.request_id')"), kRequestId);
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations"), "0");

  auto notices = s.captureNotices();
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

  // Stored before COMMIT, in the same transaction.
  s.query(kStoreCapturedSql, {jsonArray(notices), kRequestId, "f"});
  s.exec("COMMIT");
  auto rows = mutations(s);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0],
            (Row{kRequestId, std::nullopt, "public", "users", "2", "INSERT", std::nullopt,
                 R"({"id": 2, "name": "Bob \"the\" builder"})", "{id,name}", txid, "f", "1"}));
  EXPECT_EQ(rows[1], (Row{kRequestId, std::nullopt, "public", "users", "1", "UPDATE",
                          R"({"id": 1, "name": null})", R"({"id": 1, "name": "Alice Smith"})",
                          "{name}", txid, "f", "1"}));
  EXPECT_EQ(rows[2][kOp], "DELETE");
  EXPECT_EQ(rows[2][kChanged], "{id,name}");
  EXPECT_EQ(rows[2][kNew], std::nullopt);
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations "
                    "WHERE at = ($1::jsonb ->> 'at')::timestamptz",
                    {notices[1].message}),
            "1");
  // Outside the request's transaction, writes are logged directly again.
  s.exec("UPDATE public.users SET name = 'Al' WHERE id = 1");
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations WHERE request_id IS NULL"), "1");
}

TEST_F(MutationLogTest, NoticesArriveFromATransactionThatRollsBack) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.users (id int PRIMARY KEY, name text)");
  s.exec("INSERT INTO public.users VALUES (1, 'Alice')");
  s.exec("TRUNCATE flux.state_mutations");

  s.script(*beginRequestTransactionSql(kRequestId));
  s.exec("UPDATE public.users SET name = 'Alice Smith' WHERE id = 1");
  s.exec("INSERT INTO public.users VALUES (2, 'Bob')");
  std::string txid = s.value("SELECT txid_current()::text");
  EXPECT_EQ(s.failing("INSERT INTO public.users VALUES (1, 'duplicate')"), "23505");
  s.exec("ROLLBACK");
  EXPECT_EQ(s.value("SELECT name FROM public.users WHERE id = 1"), "Alice");
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations"), "0");

  auto notices = s.captureNotices();
  ASSERT_EQ(notices.size(), 2u);
  s.query(kStoreCapturedSql, {jsonArray(notices), kRequestId, "t"});
  auto rows = mutations(s);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0][kRequest], kRequestId);
  EXPECT_EQ(rows[0][kOp], "UPDATE");
  EXPECT_EQ(rows[0][kChanged], "{name}");
  EXPECT_EQ(rows[0][kRolledBack], "t");
  EXPECT_EQ(rows[1][kOp], "INSERT");
  EXPECT_EQ(rows[1][kPk], "2");
  EXPECT_EQ(rows[1][kRolledBack], "t");
  // The transaction id is the rolled-back one's, not the storing transaction's.
  EXPECT_EQ(rows[0][kTxid], txid);
  EXPECT_EQ(rows[1][kTxid], txid);
}

TEST_F(MutationLogTest, HiddenNoticesFailTheWriteInsteadOfLosingIt) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.users (id int PRIMARY KEY, name text)");
  s.exec("SET client_min_messages = warning");
  s.script(*beginRequestTransactionSql(kRequestId));
  EXPECT_EQ(s.failing("INSERT INTO public.users VALUES (1, 'Alice')"), "P0001");
  s.exec("ROLLBACK");
  // Outside a request the trigger inserts the row itself: notices do not matter.
  s.exec("INSERT INTO public.users VALUES (1, 'Alice')");
  EXPECT_EQ(s.value("SELECT count(*) FROM flux.state_mutations"), "1");
}

TEST_F(MutationLogTest, CompositeKeyInKeyOrder) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.memberships (a int, b int, role text, PRIMARY KEY (b, a))");
  EXPECT_EQ(triggerArgs(s, "public.memberships"), "b,a");
  s.exec("INSERT INTO public.memberships VALUES (2, 1, 'admin')");
  EXPECT_EQ(s.value("SELECT pk FROM flux.state_mutations"), "1,2");

  s.script(*beginRequestTransactionSql(kRequestId));
  s.exec("UPDATE public.memberships SET role = 'owner'");
  s.exec("COMMIT");
  auto notices = s.captureNotices();
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_EQ(s.value("SELECT $1::jsonb ->> 'pk'", {notices[0].message}), "1,2");
}

TEST_F(MutationLogTest, TableWithoutPrimaryKeyHasNullPk) {
  install();
  Session s = session();
  s.exec("CREATE TABLE public.events (kind text, payload jsonb)");
  EXPECT_EQ(triggerArgs(s, "public.events"), "");
  s.exec(R"(INSERT INTO public.events VALUES ('signup', '{"plan": "free"}'))");
  auto rows = mutations(s);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][kPk], std::nullopt);
  EXPECT_EQ(rows[0][kNew], R"({"kind": "signup", "payload": {"plan": "free"}})");

  s.script(*beginRequestTransactionSql(kRequestId));
  s.exec("DELETE FROM public.events");
  s.exec("COMMIT");
  auto notices = s.captureNotices();
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_EQ(s.value("SELECT ($1::jsonb -> 'pk')::text", {notices[0].message}), "null");
}

TEST_F(MutationLogTest, PrimaryKeyChangesReinstallTheTrigger) {
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

TEST_F(MutationLogTest, ZeroRowChangesAreStored) {
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

TEST_F(MutationLogTest, ChangedColumnsAreSortedOverBothRows) {
  install();
  Session s = session();
  EXPECT_EQ(s.value(R"(SELECT flux.changed_columns('{"b": 1, "a": 2, "c": 3}',
                                                   '{"b": 1, "a": 3, "Z": null}')::text)"),
            "{Z,a,c}");
  EXPECT_EQ(s.value(R"(SELECT flux.changed_columns(NULL, '{"b": 1, "a": null}')::text)"), "{a,b}");
  EXPECT_EQ(s.value(R"(SELECT flux.changed_columns('{"x": 1}', NULL)::text)"), "{x}");
  EXPECT_EQ(s.value(R"(SELECT flux.changed_columns('{"x": 1}', '{"x": 1}')::text)"), "{}");
}

TEST_F(MutationLogTest, OtherRolesWriteAndCreateTablesWithoutPrivilegesOnFlux) {
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
  s.script(*beginRequestTransactionSql(kRequestId));
  s.exec("INSERT INTO public.notes VALUES (1, 'hi')");
  s.exec("COMMIT");
  EXPECT_EQ(s.captureNotices().size(), 1u);
}

TEST_F(MutationLogTest, WithoutSuperuserInstallSkipsTheEventTrigger) {
  std::string owner = makeRole("owner");
  Session admin(test_support::pgConninfo());
  admin.exec("ALTER DATABASE " + db_ + " OWNER TO " + owner);
  // Created by the superuser: the owner role cannot put a trigger on it.
  session().exec("CREATE TABLE public.foreign_owned (id int PRIMARY KEY)");

  std::string as_owner = conninfo_ + " user=" + owner;
  auto installed = installMutationLog(as_owner);
  ASSERT_TRUE(installed) << installed.error().toString();
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

TEST_F(MutationLogTest, UnreachableServerIsUnavailable) {
  auto installed = installMutationLog("host=/nonexistent port=1 dbname=x password=hunter2");
  ASSERT_FALSE(installed);
  EXPECT_EQ(installed.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(installed.error().message.find("hunter2"), std::string::npos);
  auto malformed = captureAllTables("postgresql://u:hunter2@[bad");
  ASSERT_FALSE(malformed);
  EXPECT_EQ(malformed.error().message.find("hunter2"), std::string::npos);
}

TEST(BeginRequestTransactionSql, InlinesACanonicalUuid) {
  auto sql = beginRequestTransactionSql("0190f3c2-7a1b-7c3d-8e4f-123456789ABC");
  ASSERT_TRUE(sql) << sql.error().toString();
  EXPECT_EQ(*sql,
            "BEGIN; SELECT set_config('flux.request_id', '0190f3c2-7a1b-7c3d-8e4f-123456789ABC', "
            "true), set_config('flux.capture', 'on', true)");
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

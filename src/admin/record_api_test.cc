// GET /_flux/records/<id> and GET /_flux/records against a real PostgreSQL cluster: records
// stored by the real Recorder, mutations in the real flux.state_mutations, answers from the
// real AdminApi on an io_context. The query logic alone is tested in record_queries_test.cc.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "admin/admin_api.h"
#include "admin/record_queries.h"
#include "admin/test_cluster.h"
#include "record/execution_record.h"
#include "record/recorder.h"

namespace flux::admin {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using namespace std::string_literals;

constexpr const char* kToken = "records-test-token";
// 2026-03-10 09:14:22 UTC.
constexpr int64_t kStartUs = 1773134062000000;

// A, C share the handle 550e8400; their last 12 digits differ.
constexpr const char* kCheckout = "019cd81c-0000-7000-8000-0000550e8400";
constexpr const char* kSignup = "019cd81c-0001-7000-8000-00004f9a3b2c";
constexpr const char* kEmailJob = "019cd81c-0002-7000-8000-1111550e8400";
constexpr const char* kUsersGet = "019cd81c-0003-7000-8000-0000a3c91ef0";

using testing::exec;

record::Span span(uint32_t id, uint32_t parent, std::string name, int64_t start_us,
                  int64_t duration_us, record::SpanStatus status = record::SpanStatus::kOk,
                  std::optional<std::string> error = std::nullopt) {
  record::Span s;
  s.id = id;
  s.parent = parent;
  s.name = std::move(name);
  s.start_us = start_us;
  s.duration_us = duration_us;
  s.status = status;
  s.error = std::move(error);
  return s;
}

record::ExecutionRecord makeRecord(std::string id, std::string kind, std::string function,
                                   std::string method, std::string path, int status,
                                   int64_t offset_s) {
  record::ExecutionRecord r;
  r.id = std::move(id);
  r.kind = std::move(kind);
  r.function = std::move(function);
  r.method = std::move(method);
  r.path = std::move(path);
  r.status = status;
  r.started_at_us = kStartUs + offset_s * 1'000'000 + 250'000;
  r.duration_us = 44'000;
  r.request = {{"method", r.method},
               {"path", r.path},
               {"query", json::object()},
               {"headers", json::object()},
               {"body", {{"amount", 4900}}}};
  r.response = {{"status", status}, {"headers", json::object()}, {"body", nullptr}};
  return r;
}

std::vector<record::ExecutionRecord> records() {
  auto checkout = makeRecord(kCheckout, "http", "create_order", "POST", "/checkout", 500, 0);
  checkout.error = record::RecordedError{"Stripe API timeout after 10s", "payments/create.ts:42:7",
                                         "Error: ...", "user_code", 2};
  checkout.spans = {span(1, 0, "gateway", 0, 2000),
                    span(2, 1, "create_order", 2000, 40000, record::SpanStatus::kError,
                         "Stripe API timeout after 10s"),
                    span(3, 2, "stripe.charge", 3000, 30000, record::SpanStatus::kError,
                         "Stripe API timeout after 10s"),
                    span(4, 2, "send_slack", 34000, 0, record::SpanStatus::kSkipped)};
  checkout.logs = {"charging"};
  auto signup = makeRecord(kSignup, "http", "signup", "POST", "/signup", 201, 1);
  auto job = makeRecord(kEmailJob, "job", "send_email", "", "", 0, 2);
  auto users = makeRecord(kUsersGet, "http", "users", "GET", "/users/42", 404, 3);
  return {checkout, signup, job, users};
}

// The cluster, the record and mutation log tables, and the fixture's rows, once per binary.
class RecordsEnvironment : public testing::TestCluster {
 public:
  RecordsEnvironment() : TestCluster("flux-admin-records-test") {}
  void SetUp() override {
    TestCluster::SetUp();
    if (::testing::Test::HasFatalFailure()) return;
    conninfo_ = conninfo();
    exec(conninfo_, "CREATE TABLE public.users (id bigint PRIMARY KEY, email text, plan text)");

    {
      record::RecorderOptions options;
      options.conninfo = conninfo_;
      options.spill_dir = dir() / "spill";
      fs::create_directories(options.spill_dir);
      record::Recorder recorder(options);
      for (record::ExecutionRecord& r : records()) recorder.submit(std::move(r));
      // The destructor writes everything submitted.
    }

    // The checkout's writes (in log order): a 0-row update first, then the rolled-back plan
    // change; the signup's insert.
    exec(
        conninfo_,
        std::string(R"sql(
      INSERT INTO flux.state_mutations
        (request_id, schema_name, table_name, pk, row_key, op, old, new, changed_columns,
         rolled_back, rows_affected)
      VALUES
        (')sql") +
            kCheckout +
            R"sql(', 'public', 'subscriptions', NULL,
         flux.row_key('public', 'subscriptions', NULL), 'UPDATE',
         '{"customer_id": "cus_ABC"}', '{"status": "active"}', NULL, true, 0),
        (')sql" +
            kCheckout +
            R"sql(', 'public', 'users', '42', flux.row_key('public', 'users', '42'), 'UPDATE',
         '{"id": 42, "plan": "free"}', '{"id": 42, "plan": null}', '{plan}', true, 1),
        (')sql" +
            kSignup +
            R"sql(', 'public', 'users', '42', flux.row_key('public', 'users', '42'), 'INSERT', NULL,
         '{"id": 42, "email": "a@b.com", "plan": "free"}', '{email,id,plan}', false, 1))sql");
  }
  static inline std::string conninfo_;
};

[[maybe_unused]] const ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new RecordsEnvironment);

struct Answer {
  int status = 0;
  json body;
};

class RecordApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(RecordsEnvironment::conninfo_.empty()) << "no PostgreSQL for the tests";
    data::PoolOptions database;
    database.conninfo = RecordsEnvironment::conninfo_;
    api_.emplace(loop_, kToken, database);
  }

  Answer get(std::string target) {
    net::HttpRequest request;
    request.method = "GET";
    request.target = std::move(target);
    request.headers.push_back({"authorization", std::string("Bearer ") + kToken});
    auto response = std::make_shared<std::optional<net::HttpResponse>>();
    api_->handle(std::move(request), [this, response](net::HttpResponse r) {
      *response = std::move(r);
      loop_.stop();
    });
    if (!*response) {
      loop_.restart();
      loop_.run_for(10s);
    }
    Answer answer;
    if (!*response) {
      ADD_FAILURE() << "no answer";
      return answer;
    }
    answer.status = (*response)->status;
    answer.body = json::parse((*response)->body, nullptr, false);
    return answer;
  }

  static std::vector<std::string> ids(const json& list) {
    std::vector<std::string> out;
    for (const json& item : list) out.push_back(item.value("id", ""));
    return out;
  }

  boost::asio::io_context loop_;
  std::optional<AdminApi> api_;
};

TEST_F(RecordApiTest, ARecordComesBackAsItWasStored) {
  Answer answer = get(std::string("/_flux/records/") + kCheckout);
  ASSERT_EQ(answer.status, 200) << answer.body.dump();
  auto parsed = record::recordFromJson(answer.body["record"]);
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(*parsed, records()[0]);
  EXPECT_EQ(answer.body["record"]["started_at"], "2026-03-10T09:14:22.250000Z");

  const json& mutations = answer.body["mutations"];
  ASSERT_EQ(mutations.size(), 2u);
  EXPECT_EQ(mutations[0]["table"], "subscriptions");
  EXPECT_EQ(mutations[0]["rows_affected"], 0);
  EXPECT_TRUE(mutations[0]["pk"].is_null());
  EXPECT_EQ(mutations[1]["table"], "users");
  EXPECT_EQ(mutations[1]["pk"], "42");
  EXPECT_EQ(mutations[1]["key_columns"], json({"id"}));
  EXPECT_EQ(mutations[1]["old"]["plan"], "free");
  EXPECT_TRUE(mutations[1]["new"]["plan"].is_null());
  EXPECT_EQ(mutations[1]["changed_columns"], json({"plan"}));
  EXPECT_EQ(mutations[1]["rolled_back"], true);
  EXPECT_EQ(answer.body["mutations_total"], 2);
  EXPECT_EQ(answer.body["mutations_truncated"], false);
}

TEST_F(RecordApiTest, EveryFormOfTheIdFindsIt) {
  for (std::string ref : {std::string("019CD81C-0000-7000-8000-0000550E8400"),
                          std::string("req%3A0000550e8400"), std::string("req:0000550e8400"),
                          std::string("019cd81c-0000"), std::string("019cd81c0000")}) {
    Answer answer = get("/_flux/records/" + ref);
    ASSERT_EQ(answer.status, 200) << ref << ": " << answer.body.dump();
    EXPECT_EQ(answer.body["record"]["id"], kCheckout) << ref;
  }
  for (std::string ref : {"4f9a3b2c", "req:4f9a3b2c", "REQ:4F9A3B2C", "019cd81c-0001"}) {
    Answer answer = get("/_flux/records/" + ref);
    ASSERT_EQ(answer.status, 200) << ref << ": " << answer.body.dump();
    EXPECT_EQ(answer.body["record"]["id"], kSignup) << ref;
    EXPECT_EQ(answer.body["mutations"].size(), 1u);
  }
  // A job without a request body or spans.
  Answer job = get("/_flux/records/req:1111550e8400");
  ASSERT_EQ(job.status, 200);
  EXPECT_EQ(job.body["record"]["kind"], "job");
  EXPECT_EQ(job.body["mutations"], json::array());
}

// The plan PostgreSQL picks for a query with text parameters, one line per row.
std::string planOf(const std::string& sql, const data::QueryParams& params) {
  std::string types, values;
  for (size_t i = 0; i < params.size(); ++i) {
    types += (i > 0 ? ", " : "") + std::string("text");
    values += (i > 0 ? ", '" : "'") + *params[i] + "'";
  }
  PGconn* conn = PQconnectdb(RecordsEnvironment::conninfo_.c_str());
  // Without sequential scans, a query that cannot use an index says so in its plan (a scan
  // with disable_cost); the few rows here would not show it otherwise.
  PGresult* result = PQexec(conn, ("SET enable_seqscan = off; PREPARE q (" + types + ") AS " + sql +
                                   "; EXPLAIN EXECUTE q (" + values + ")")
                                      .c_str());
  std::string plan;
  EXPECT_EQ(PQresultStatus(result), PGRES_TUPLES_OK) << PQresultErrorMessage(result);
  for (int row = 0; row < PQntuples(result); ++row) plan += PQgetvalue(result, row, 0) + "\n"s;
  PQclear(result);
  PQfinish(conn);
  return plan;
}

TEST_F(RecordApiTest, HandlesOfEightDigitsOrMoreGoThroughTheHandleIndex) {
  for (std::string ref : {"req:4f9a3b2c", "req:00004f9a3b2c", "4f9a3b2c", "req:9a3b2c"}) {
    Answer answer = get("/_flux/records/" + ref);
    ASSERT_EQ(answer.status, 200) << ref << ": " << answer.body.dump();
    EXPECT_EQ(answer.body["record"]["id"], kSignup) << ref;

    SqlQuery query = resolveRecordQuery(*parseRecordRef(ref));
    std::string plan = planOf(query.sql, query.params);
    if (ref == "req:9a3b2c") {  // six digits: compared on every row
      EXPECT_EQ(plan.find("executions_handle_idx"), std::string::npos) << ref << ":\n" << plan;
      continue;
    }
    // An index scan of its own, or a bitmap one beside the primary key's (bare hex digits).
    bool scans_handle_index =
        plan.find("Index Scan using executions_handle_idx") != std::string::npos ||
        plan.find("Bitmap Index Scan on executions_handle_idx") != std::string::npos;
    EXPECT_TRUE(scans_handle_index) << ref << ":\n" << plan;
    EXPECT_EQ(plan.find("Seq Scan on executions"), std::string::npos) << ref << ":\n" << plan;
  }
}

TEST_F(RecordApiTest, AmbiguousUnknownAndBadIds) {
  Answer shared = get("/_flux/records/req:550e8400");
  ASSERT_EQ(shared.status, 409) << shared.body.dump();
  EXPECT_EQ(shared.body["error"], "'req:550e8400' matches 2 executions: use more digits");
  EXPECT_EQ(shared.body["total"], 2);
  EXPECT_EQ(ids(shared.body["candidates"]), (std::vector<std::string>{kEmailJob, kCheckout}));

  Answer prefix = get("/_flux/records/019cd81c");
  ASSERT_EQ(prefix.status, 409);
  EXPECT_EQ(prefix.body["total"], 4);

  Answer unknown = get("/_flux/records/req:deadbeef");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.body["error"], "no execution matches 'req:deadbeef'");

  for (const char* bad :
       {"/_flux/records/zz", "/_flux/records/", "/_flux/records/req:12", "/_flux/records/%zz"}) {
    Answer answer = get(bad);
    EXPECT_EQ(answer.status, 400) << bad << ": " << answer.body.dump();
  }
  EXPECT_EQ(get("/_flux/records/a/b").status, 404);
}

TEST_F(RecordApiTest, ListsArePagesOfSummariesNewestLast) {
  Answer all = get("/_flux/records");
  ASSERT_EQ(all.status, 200) << all.body.dump();
  EXPECT_EQ(ids(all.body["records"]),
            (std::vector<std::string>{kCheckout, kSignup, kEmailJob, kUsersGet}));
  EXPECT_EQ(all.body["more"], false);
  EXPECT_EQ(all.body["newest_started_at_us"], kStartUs + 3'250'000);

  const json& checkout = all.body["records"][0];
  EXPECT_EQ(checkout["status"], 500);
  EXPECT_EQ(checkout["error"], "Stripe API timeout after 10s");
  EXPECT_EQ(checkout["duration_us"], 44000);
  EXPECT_EQ(checkout["started_at_us"], kStartUs + 250'000);
  // The first write that changed a row, not the 0-row update logged before it.
  EXPECT_EQ(checkout["mutations"], (json{{"count", 2},
                                         {"first",
                                          {{"schema", "public"},
                                           {"table", "users"},
                                           {"pk", "42"},
                                           {"key_columns", {"id"}},
                                           {"op", "UPDATE"},
                                           {"rows_affected", 1},
                                           {"rolled_back", true}}}}));
  EXPECT_EQ(all.body["records"][2]["mutations"], (json{{"count", 0}, {"first", nullptr}}));

  Answer latest = get("/_flux/records?limit=2");
  EXPECT_EQ(ids(latest.body["records"]), (std::vector<std::string>{kEmailJob, kUsersGet}));

  Answer first = get("/_flux/records?since=2026-03-10T09:14:22Z&limit=2");
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(ids(first.body["records"]), (std::vector<std::string>{kCheckout, kSignup}));
  EXPECT_EQ(first.body["more"], true);
  Answer next =
      get(std::string("/_flux/records?since=2026-03-10T09:14:22Z&limit=2&after=") + kSignup);
  EXPECT_EQ(ids(next.body["records"]), (std::vector<std::string>{kEmailJob, kUsersGet}));
  EXPECT_EQ(next.body["more"], false);

  Answer later = get("/_flux/records?since=" + std::to_string(kStartUs + 2'000'000));
  EXPECT_EQ(ids(later.body["records"]), (std::vector<std::string>{kEmailJob, kUsersGet}));
  Answer after = get(std::string("/_flux/records?after=") + kEmailJob);
  EXPECT_EQ(ids(after.body["records"]), (std::vector<std::string>{kUsersGet}));
}

TEST_F(RecordApiTest, ListFilters) {
  struct Case {
    std::string query;
    std::vector<std::string> ids;
  };
  for (const Case& c :
       {Case{"fn=create_order", {kCheckout}}, Case{"function=signup", {kSignup}},
        Case{"status=5xx", {kCheckout}}, Case{"status=201", {kSignup}},
        Case{"errors_only=1", {kCheckout, kUsersGet}}, Case{"path=/users*", {kUsersGet}},
        Case{"path=/signup", {kSignup}}, Case{"path=/sign", {}}, Case{"kind=job", {kEmailJob}},
        Case{"type=http&method=post", {kCheckout, kSignup}},
        Case{"fn=create_order&status=2xx", {}}}) {
    Answer answer = get("/_flux/records?" + c.query);
    ASSERT_EQ(answer.status, 200) << c.query << ": " << answer.body.dump();
    EXPECT_EQ(ids(answer.body["records"]), c.ids) << c.query;
    // The newest start ignores the filters: tail's window moves with it.
    EXPECT_EQ(answer.body["newest_started_at_us"], kStartUs + 3'250'000) << c.query;
  }
  Answer bad = get("/_flux/records?status=teapot");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.value("error", "").find("(5xx)"), std::string::npos);
}

}  // namespace
}  // namespace flux::admin

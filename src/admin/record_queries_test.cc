#include "admin/record_queries.h"

#include <gtest/gtest.h>

#include <tuple>

namespace flux::admin {
namespace {

using nlohmann::json;
using Row = std::vector<std::optional<std::string>>;

constexpr const char* kId = "0195a1b2-c3d4-7e5f-8a6b-0000550e8400";

data::QueryResult resultOf(std::vector<std::string> columns, std::vector<Row> rows) {
  data::QueryResult result;
  for (std::string& name : columns) result.columns.push_back(data::PgColumn{std::move(name), 25});
  result.rows = std::move(rows);
  return result;
}

// ---- Request ids ------------------------------------------------------------------------------

TEST(RecordRefTest, AFullIdIsExactInLowerCase) {
  auto ref = parseRecordRef("0195A1B2-C3D4-7E5F-8A6B-0000550E8400");
  ASSERT_TRUE(ref.has_value()) << ref.error().message;
  EXPECT_EQ(ref->form, RecordRef::Form::kExact);
  EXPECT_EQ(ref->exact, kId);

  auto undashed = parseRecordRef("0195a1b2c3d47e5f8a6b0000550e8400");
  ASSERT_TRUE(undashed.has_value());
  EXPECT_EQ(undashed->form, RecordRef::Form::kExact);
  EXPECT_EQ(undashed->exact, kId);

  auto handle_of_all = parseRecordRef(std::string("req:") + kId);
  ASSERT_TRUE(handle_of_all.has_value());
  EXPECT_EQ(handle_of_all->form, RecordRef::Form::kExact);
  EXPECT_EQ(handle_of_all->exact, kId);
}

TEST(RecordRefTest, AHandleIsASuffix) {
  auto ref = parseRecordRef("req:550E8400");
  ASSERT_TRUE(ref.has_value()) << ref.error().message;
  EXPECT_EQ(ref->form, RecordRef::Form::kSuffix);
  EXPECT_EQ(ref->suffix, "550e8400");
  EXPECT_EQ(ref->text, "req:550E8400");

  auto upper = parseRecordRef("REQ:0e8400");
  ASSERT_TRUE(upper.has_value());
  EXPECT_EQ(upper->form, RecordRef::Form::kSuffix);
  EXPECT_EQ(upper->suffix, "0e8400");
}

TEST(RecordRefTest, BareHexIsAPrefixOrAHandle) {
  auto ref = parseRecordRef("550e8400");
  ASSERT_TRUE(ref.has_value());
  EXPECT_EQ(ref->form, RecordRef::Form::kPrefixOrSuffix);
  EXPECT_EQ(ref->suffix, "550e8400");
  EXPECT_EQ(ref->low, "550e8400-0000-0000-0000-000000000000");
  EXPECT_EQ(ref->high, "550e8400-ffff-ffff-ffff-ffffffffffff");

  // Too short to be a handle: a prefix only.
  auto short_ref = parseRecordRef("0195a");
  ASSERT_TRUE(short_ref.has_value());
  EXPECT_EQ(short_ref->form, RecordRef::Form::kPrefix);
  EXPECT_EQ(short_ref->low, "0195a000-0000-0000-0000-000000000000");
  EXPECT_EQ(short_ref->high, "0195afff-ffff-ffff-ffff-ffffffffffff");
}

TEST(RecordRefTest, ADashedPrefixIsAPrefixOnly) {
  auto ref = parseRecordRef("0195a1b2-c3D4-7");
  ASSERT_TRUE(ref.has_value()) << ref.error().message;
  EXPECT_EQ(ref->form, RecordRef::Form::kPrefix);
  EXPECT_EQ(ref->low, "0195a1b2-c3d4-7000-0000-000000000000");
  EXPECT_EQ(ref->high, "0195a1b2-c3d4-7fff-ffff-ffffffffffff");
  EXPECT_TRUE(ref->suffix.empty());

  auto trailing_dash = parseRecordRef("0195a1b2-");
  ASSERT_TRUE(trailing_dash.has_value());
  EXPECT_EQ(trailing_dash->form, RecordRef::Form::kPrefix);
}

TEST(RecordRefTest, AnythingElseSaysWhatToPass) {
  for (const char* bad :
       {"", "req:", "xyz", "550e84zz", "0195a1b2c-3d4", "0195-a1b2", "-0195", "req:0195a1b2-0000",
        "0195a1b2-c3d4-7e5f-8a6b-0000550e84001", "0195a1b2c3d47e5f8a6b0000550e84001", "550e 8400",
        "req: 550e8400", "'; drop table x; --"}) {
    auto ref = parseRecordRef(bad);
    EXPECT_FALSE(ref.has_value()) << bad;
    if (!ref) {
      EXPECT_EQ(ref.error().code, ErrorCode::kInvalidArgument);
      EXPECT_NE(ref.error().message.find("req:550e8400"), std::string::npos) << ref.error().message;
    }
  }
  auto too_short = parseRecordRef("req:0e840");
  ASSERT_FALSE(too_short.has_value());
  EXPECT_NE(too_short.error().message.find("at least 6 hex digits"), std::string::npos);
}

TEST(RecordRefTest, TheResolveQueryBindsEveryInput) {
  auto exact = parseRecordRef(kId);
  SqlQuery by_id = resolveRecordQuery(*exact);
  EXPECT_NE(by_id.sql.find("id = $1::uuid"), std::string::npos);
  EXPECT_EQ(by_id.params, (data::QueryParams{kId}));

  auto prefix = parseRecordRef("0195a1b2-c3");
  SqlQuery range = resolveRecordQuery(*prefix);
  EXPECT_NE(range.sql.find("BETWEEN $1::uuid AND $2::uuid"), std::string::npos);
  EXPECT_EQ(range.sql.find("right("), std::string::npos) << "a dashed prefix is no handle";
  EXPECT_EQ(range.params.size(), 2u);

  auto handle = parseRecordRef("req:550e8400");
  SqlQuery suffix = resolveRecordQuery(*handle);
  EXPECT_NE(suffix.sql.find("substr(uuid_send(id), 13) = decode($2::text, 'hex') AND "
                            "right(replace(id::text, '-', ''), length($1::text)) = $1::text"),
            std::string::npos);
  EXPECT_EQ(suffix.params, (data::QueryParams{"550e8400", "550e8400"}));
  // Under 8 digits, no index can answer: every row's digits are compared.
  SqlQuery short_suffix = resolveRecordQuery(*parseRecordRef("req:0e8400"));
  EXPECT_EQ(short_suffix.sql.find("uuid_send"), std::string::npos);
  EXPECT_EQ(short_suffix.params, (data::QueryParams{"0e8400"}));

  auto either = parseRecordRef("550e8400");
  SqlQuery both = resolveRecordQuery(*either);
  EXPECT_EQ(both.params.size(), 4u);
  for (const SqlQuery* query : {&by_id, &range, &suffix, &both}) {
    EXPECT_EQ(query->sql.find("550e8400"), std::string::npos) << query->sql;
    EXPECT_NE(query->sql.find("count(*) OVER ()"), std::string::npos);
    EXPECT_NE(query->sql.find("LIMIT 10"), std::string::npos);
  }
}

// ---- Summaries and resolution -----------------------------------------------------------------

const std::vector<std::string> kSummaryColumns = {"id",
                                                  "kind",
                                                  "function",
                                                  "method",
                                                  "path",
                                                  "status",
                                                  "error",
                                                  "started_at_us",
                                                  "started_at",
                                                  "duration_us",
                                                  "mutation_count",
                                                  "first_schema",
                                                  "first_table",
                                                  "first_pk",
                                                  "first_op",
                                                  "first_rows_affected",
                                                  "first_rolled_back",
                                                  "first_key_columns",
                                                  "total"};

Row summaryRow(std::string id, std::optional<std::string> error, std::string count,
               bool with_mutation, std::string total = "1") {
  Row row = {id,
             "http",
             "checkout",
             "POST",
             "/checkout",
             error ? "500" : "201",
             error,
             "1773152542000000",
             "2026-03-10T14:22:22.000000Z",
             "44000",
             count};
  if (with_mutation) {
    row.insert(row.end(), {"public", "users", "42", "UPDATE", "1", "t", R"(["id"])"});
  } else {
    row.insert(row.end(), 7, std::nullopt);
  }
  row.push_back(total);
  return row;
}

TEST(RecordSummaryTest, RowsBecomeTheSummaryJson) {
  auto summaries = parseRecordSummaries(
      resultOf(kSummaryColumns,
               {summaryRow(kId, "Stripe API timeout", "3", true),
                summaryRow("0195a1b2-c3d4-7e5f-8a6b-00004f9a3b2c", std::nullopt, "0", false)}));
  ASSERT_TRUE(summaries.has_value()) << summaries.error().message;
  ASSERT_EQ(summaries->size(), 2u);
  const json& failed = (*summaries)[0];
  EXPECT_EQ(failed["id"], kId);
  EXPECT_EQ(failed["kind"], "http");
  EXPECT_EQ(failed["function"], "checkout");
  EXPECT_EQ(failed["method"], "POST");
  EXPECT_EQ(failed["path"], "/checkout");
  EXPECT_EQ(failed["status"], 500);
  EXPECT_EQ(failed["duration_us"], 44000);
  EXPECT_EQ(failed["error"], "Stripe API timeout");
  EXPECT_EQ(failed["started_at_us"], 1773152542000000);
  EXPECT_EQ(failed["started_at"], "2026-03-10T14:22:22.000000Z");
  EXPECT_EQ(failed["mutations"]["count"], 3);
  EXPECT_EQ(failed["mutations"]["first"], (json{{"schema", "public"},
                                                {"table", "users"},
                                                {"pk", "42"},
                                                {"key_columns", {"id"}},
                                                {"op", "UPDATE"},
                                                {"rows_affected", 1},
                                                {"rolled_back", true}}));

  const json& ok = (*summaries)[1];
  EXPECT_TRUE(ok["error"].is_null());
  EXPECT_EQ(ok["mutations"], (json{{"count", 0}, {"first", nullptr}}));
}

TEST(RecordSummaryTest, ResolutionCountsEveryMatch) {
  auto none = parseResolution(resultOf(kSummaryColumns, {}));
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->total, 0);
  EXPECT_TRUE(none->found.empty());

  auto many = parseResolution(resultOf(
      kSummaryColumns,
      {summaryRow(kId, std::nullopt, "0", false, "14"),
       summaryRow("0195a1b2-c3d4-7e5f-8a6b-1111550e8400", std::nullopt, "0", false, "14")}));
  ASSERT_TRUE(many.has_value()) << many.error().message;
  EXPECT_EQ(many->total, 14);
  EXPECT_EQ(many->found.size(), 2u);

  auto ref = parseRecordRef("550e8400");
  json body = ambiguousRecordJson(*ref, *many);
  EXPECT_EQ(body["error"], "'550e8400' matches 14 executions: use more digits");
  EXPECT_EQ(body["total"], 14);
  ASSERT_EQ(body["candidates"].size(), 2u);
  EXPECT_EQ(body["candidates"][0]["id"], kId);
  EXPECT_EQ(unknownRecordMessage(*ref), "no execution matches '550e8400'");
}

TEST(RecordSummaryTest, BadRowsAreInternalErrorsNamingTheProblem) {
  Row bad_status = summaryRow(kId, std::nullopt, "0", false);
  bad_status[5] = "two hundred";
  auto parsed = parseRecordSummaries(resultOf(kSummaryColumns, {bad_status}));
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().code, ErrorCode::kInternal);
  EXPECT_NE(parsed.error().message.find("status"), std::string::npos);

  auto missing = parseRecordSummaries(resultOf({"id", "kind"}, {}));
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message.find("no column 'function'"), std::string::npos);
}

// ---- One record -------------------------------------------------------------------------------

const std::vector<std::string> kRecordColumns = {
    "id",          "kind",    "parent_id", "replay_of", "tenant",  "function",      "deployment_id",
    "git_commit",  "method",  "path",      "status",    "error",   "started_at_us", "started_at",
    "duration_us", "request", "response",  "spans",     "journal", "logs"};

Row recordRow() {
  return {
      kId,
      "http",
      std::nullopt,
      std::nullopt,
      "t_123",
      "create_order",
      "dep_1",
      std::nullopt,
      "POST",
      "/create_order",
      "500",
      R"({"message":"Stripe API timeout","location":"payments/create.ts:42:7","stack":"","code":"timeout"})",
      "1773152542123456",
      "2026-03-10T14:22:22.123456Z",
      "44000",
      R"({"method":"POST","path":"/create_order","body":{"amount":4900}})",
      R"({"status":500,"headers":{},"body":"timeout"})",
      R"([{"id":1,"parent":0,"name":"stripe.charge","status":"error","error":"Stripe API timeout"}])",
      std::nullopt,
      std::nullopt};
}

TEST(RecordRowTest, TheRowBecomesTheRecordJson) {
  auto parsed = parseRecordRow(resultOf(kRecordColumns, {recordRow()}));
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message;
  ASSERT_TRUE(parsed->has_value());
  const json& record = **parsed;
  EXPECT_EQ(record["id"], kId);
  EXPECT_EQ(record["kind"], "http");
  EXPECT_TRUE(record["parent_id"].is_null());
  EXPECT_EQ(record["tenant"], "t_123");
  EXPECT_EQ(record["function"], "create_order");
  EXPECT_TRUE(record["git_commit"].is_null());
  EXPECT_EQ(record["status"], 500);
  EXPECT_EQ(record["error"]["message"], "Stripe API timeout");
  EXPECT_EQ(record["error"]["code"], "timeout");
  EXPECT_EQ(record["started_at_us"], 1773152542123456);
  EXPECT_EQ(record["started_at"], "2026-03-10T14:22:22.123456Z");
  EXPECT_EQ(record["duration_us"], 44000);
  EXPECT_EQ(record["request"]["body"]["amount"], 4900);
  EXPECT_EQ(record["spans"][0]["name"], "stripe.charge");
  // SQL NULL jsonb arrays read as empty arrays, as the record model writes them.
  EXPECT_EQ(record["journal"], json::array());
  EXPECT_EQ(record["logs"], json::array());
}

TEST(RecordRowTest, NoRowIsNoRecordAndBadJsonIsAnError) {
  auto none = parseRecordRow(resultOf(kRecordColumns, {}));
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->has_value());

  Row bad = recordRow();
  bad[17] = "[{";
  auto parsed = parseRecordRow(resultOf(kRecordColumns, {bad}));
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().code, ErrorCode::kInternal);
  EXPECT_NE(parsed.error().message.find("spans"), std::string::npos);
}

TEST(RecordRowTest, MutationsComeInLogOrderWithTheirTable) {
  std::vector<std::string> columns = {
      "id", "schema_name", "table_name",    "pk",    "op",         "old", "new", "changed_columns",
      "at", "rolled_back", "rows_affected", "total", "key_columns"};
  auto parsed = parseRecordMutations(
      resultOf(columns, {{"7", "public", "users", "42", "UPDATE", R"({"id":42,"plan":"free"})",
                          R"({"id":42,"plan":null})", R"(["plan"])", "2026-03-10T14:22:01.000000Z",
                          "t", "1", "2", R"(["id"])"},
                         {"8", "public", "subscriptions", std::nullopt, "UPDATE",
                          R"({"customer_id":"cus_ABC"})", R"({"status":"active"})", std::nullopt,
                          "2026-03-10T14:22:01.100000Z", "t", "0", "2", std::nullopt}}));
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message;
  EXPECT_EQ(parsed->total, 2);
  ASSERT_EQ(parsed->mutations.size(), 2u);
  const json& update = parsed->mutations[0];
  EXPECT_EQ(update["id"], 7);
  EXPECT_EQ(update["table"], "users");
  EXPECT_EQ(update["pk"], "42");
  EXPECT_EQ(update["key_columns"], json({"id"}));
  EXPECT_EQ(update["old"]["plan"], "free");
  EXPECT_TRUE(update["new"]["plan"].is_null());
  EXPECT_EQ(update["changed_columns"], json({"plan"}));
  EXPECT_EQ(update["rolled_back"], true);
  const json& none = parsed->mutations[1];
  EXPECT_TRUE(none["pk"].is_null());
  EXPECT_EQ(none["rows_affected"], 0);
  EXPECT_EQ(none["key_columns"], json::array());

  json body = recordJson(json{{"id", kId}}, *parsed);
  EXPECT_EQ(body["record"]["id"], kId);
  EXPECT_EQ(body["mutations"].size(), 2u);
  EXPECT_EQ(body["mutations_total"], 2);
  EXPECT_EQ(body["mutations_truncated"], false);

  RecordMutations cut;
  cut.mutations.push_back(json::object());
  cut.total = 5;
  EXPECT_EQ(recordJson(json::object(), cut)["mutations_truncated"], true);
}

// ---- Lists ------------------------------------------------------------------------------------

TEST(RecordListTest, TimestampsAreMicrosecondsOrIso) {
  EXPECT_EQ(parseTimestamp("1773152542123456"), 1773152542123456);
  EXPECT_EQ(parseTimestamp("2026-03-10T14:22:22Z"), 1773152542000000);
  EXPECT_EQ(parseTimestamp("2026-03-10T14:22:22.5Z"), 1773152542500000);
  EXPECT_EQ(parseTimestamp("2026-03-10T14:22:22.123456789Z"), 1773152542123456);
  EXPECT_EQ(parseTimestamp("2026-03-10 14:22:22"), 1773152542000000);
  EXPECT_EQ(parseTimestamp("2026-03-10T15:22:22+01:00"), 1773152542000000);
  EXPECT_EQ(parseTimestamp("2026-03-10T09:22:22-0500"), 1773152542000000);
  EXPECT_EQ(parseTimestamp("2026-03-10T14:22"), 1773152520000000);
  EXPECT_EQ(parseTimestamp("2026-03-10"), 1773100800000000);
  for (const char* bad :
       {"", "yesterday", "2026-13-01", "2026-02-30", "2026-03-10T25:00", "2026-03-10T14:22:22.Z",
        "2026-03-10Tx", "99999999999999999999", "2026-03-10T14:22:22+1"}) {
    auto parsed = parseTimestamp(bad);
    EXPECT_FALSE(parsed.has_value()) << bad;
    if (!parsed) {
      EXPECT_NE(parsed.error().message.find("ISO 8601"), std::string::npos);
    }
  }
}

TEST(RecordListTest, ParsesFiltersAndAliases) {
  auto request = parseRecordListRequest(
      "since=2026-03-10T14%3A00%3A00Z&after=0195A1B2-C3D4-7E5F-8A6B-0000550E8400&limit=50&"
      "function=stripe_webhook&status=5xx&errors_only=1&path=%2Fapi%2F*&type=job&method=post&"
      "other=ignored");
  ASSERT_TRUE(request.has_value()) << request.error().message;
  EXPECT_EQ(request->since_us, 1773151200000000);
  EXPECT_EQ(request->after, kId);
  EXPECT_EQ(request->limit, 50);
  EXPECT_EQ(request->function, "stripe_webhook");
  EXPECT_EQ(request->status_low, 500);
  EXPECT_EQ(request->status_high, 599);
  EXPECT_TRUE(request->errors_only);
  EXPECT_EQ(request->path, "/api/");
  EXPECT_TRUE(request->path_is_prefix);
  EXPECT_EQ(request->kind, "job");
  EXPECT_EQ(request->method, "POST");

  auto plain = parseRecordListRequest("fn=checkout&status=404&path=/checkout&errors_only=0");
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->function, "checkout");
  EXPECT_EQ(plain->status_low, 404);
  EXPECT_EQ(plain->status_high, 404);
  EXPECT_FALSE(plain->errors_only);
  EXPECT_FALSE(plain->path_is_prefix);
  EXPECT_EQ(plain->limit, kDefaultRecordLimit);
  EXPECT_FALSE(plain->since_us.has_value());
}

TEST(RecordListTest, BadFiltersSayWhatToPass) {
  struct Case {
    const char* query;
    const char* says;
  };
  for (const Case& c : {Case{"limit=0", "1 to 1000"}, Case{"limit=1001", "1 to 1000"},
                        Case{"limit=ten", "1 to 1000"}, Case{"status=teapot", "(5xx)"},
                        Case{"status=6xx", "(5xx)"}, Case{"kind=lambda", "http, job"},
                        Case{"method=GET%20", "letters"}, Case{"after=550e8400", "full request"},
                        Case{"errors_only=maybe", "1 or 0"}, Case{"since=soon", "ISO 8601"},
                        Case{"fn=a&function=b", "given twice"}, Case{"path=%zz", "percent"}}) {
    auto request = parseRecordListRequest(c.query);
    ASSERT_FALSE(request.has_value()) << c.query;
    EXPECT_EQ(request.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(request.error().message.find(c.says), std::string::npos)
        << c.query << ": " << request.error().message;
  }
}

TEST(RecordListTest, TheQueryHasAClauseAndAParameterPerFilter) {
  RecordListRequest request;
  request.since_us = 1773152542000000;
  request.function = "o'brien";
  request.status_low = 500;
  request.status_high = 599;
  request.errors_only = true;
  request.path = "/api/";
  request.path_is_prefix = true;
  request.kind = "http";
  request.method = "POST";
  request.limit = 20;
  SqlQuery query = recordListQuery(request);
  // The window is a range of ids (UUIDv7: the lowest of since's millisecond on), the start
  // deciding within that millisecond.
  EXPECT_EQ(query.params,
            (data::QueryParams{"1773152542000000", "019cd820-9d30-7000-8000-000000000000",
                               "o'brien", "500", "599", "/api/", "http", "POST", "21"}));
  EXPECT_EQ(query.sql.find("o'brien"), std::string::npos);
  for (const char* clause :
       {"e.started_at >= 'epoch'::timestamptz + $1::bigint", "e.id >= $2::uuid", "e.function = $3",
        "e.status BETWEEN $4::int AND $5::int", "(e.status >= 400 OR e.error IS NOT NULL)",
        "starts_with(e.path, $6::text)", "e.kind = $7", "e.method = $8",
        "ORDER BY e.id\n  LIMIT $9::int"}) {
    EXPECT_NE(query.sql.find(clause), std::string::npos) << clause << "\n" << query.sql;
  }

  RecordListRequest latest;
  SqlQuery newest = recordListQuery(latest);
  EXPECT_EQ(newest.params, (data::QueryParams{"100"}));
  EXPECT_NE(newest.sql.find("ORDER BY e.id DESC\n  LIMIT $1::int"), std::string::npos);
  EXPECT_EQ(newest.sql.find("WHERE e."), std::string::npos);

  RecordListRequest after;
  after.after = kId;
  after.path = "/checkout";
  SqlQuery page = recordListQuery(after);
  EXPECT_EQ(page.params, (data::QueryParams{kId, "/checkout", "101"}));
  EXPECT_NE(page.sql.find("e.id > $1::uuid"), std::string::npos);
  EXPECT_NE(page.sql.find("e.path = $2"), std::string::npos);
}

TEST(RecordListTest, AForwardPageSaysWhetherMoreFollow) {
  RecordListRequest request;
  request.after = kId;
  request.limit = 2;
  std::vector<json> rows = {json{{"id", "a"}}, json{{"id", "b"}}, json{{"id", "c"}}};
  json page = recordListJson(rows, request, 1773152542000000);
  EXPECT_EQ(page["more"], true);
  ASSERT_EQ(page["records"].size(), 2u);
  EXPECT_EQ(page["records"][1]["id"], "b");
  EXPECT_EQ(page["newest_started_at_us"], 1773152542000000);

  rows.pop_back();
  EXPECT_EQ(recordListJson(rows, request, std::nullopt)["more"], false);
  EXPECT_TRUE(recordListJson(rows, request, std::nullopt)["newest_started_at_us"].is_null());

  // The latest page reads exactly `limit` rows: nothing follows it yet.
  RecordListRequest latest;
  latest.limit = 2;
  EXPECT_EQ(recordListJson(rows, latest, std::nullopt)["more"], false);
}

TEST(RecordListTest, TheNewestStartIsOptional) {
  auto empty = parseNewestRecord(resultOf({"newest_us"}, {{std::nullopt}}));
  ASSERT_TRUE(empty.has_value());
  EXPECT_FALSE(empty->has_value());
  auto some = parseNewestRecord(resultOf({"newest_us"}, {{"1773152542000000"}}));
  ASSERT_TRUE(some.has_value());
  EXPECT_EQ(*some, 1773152542000000);
}

// ---- The live stream ---------------------------------------------------------------------------

TEST(RecordStreamRequestTest, TakesSinceAndTheListsFilters) {
  // The filters mean for the stream what they mean for the list: one parser for both.
  auto fields = [](const RecordFilter& f) {
    return std::tuple(f.function, f.status_low, f.status_high, f.errors_only, f.path,
                      f.path_is_prefix, f.kind, f.method);
  };
  const std::string filters =
      "function=pay&status=5xx&errors_only=1&path=/api/*&type=job&method=post";
  auto request =
      parseRecordStreamRequest("since=2026-03-10T09:00:00Z&" + filters + "&limit=5&after=x");
  ASSERT_TRUE(request.has_value()) << request.error().message;
  auto list = parseRecordListRequest(filters);
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(fields(*request), fields(*list));
  EXPECT_EQ(request->function, "pay");
  EXPECT_EQ(request->since_us, 1773133200000000);

  auto live_only = parseRecordStreamRequest("");
  ASSERT_TRUE(live_only.has_value());
  EXPECT_FALSE(live_only->since_us.has_value());
  EXPECT_FALSE(live_only->function.has_value());

  for (const char* bad : {"since=soon", "status=6xx", "kind=lambda", "fn=a&fn=b"}) {
    EXPECT_FALSE(parseRecordStreamRequest(bad).has_value()) << bad;
  }
}

json summaryOf(std::string function, std::string path, int status, std::string kind = "http",
               std::string method = "POST", json error = nullptr) {
  return json{{"id", "0195a1b2-0000-7000-8000-0000550e8400"},
              {"kind", kind},
              {"function", function},
              {"method", method},
              {"path", path},
              {"status", status},
              {"error", error},
              {"duration_us", 1000},
              {"started_at_us", 1}};
}

RecordFilter filterOf(std::string_view query) {
  auto request = parseRecordStreamRequest(query);
  EXPECT_TRUE(request.has_value()) << query;
  return request.value_or(RecordStreamRequest{});
}

TEST(RecordMatchesTest, EachFilterAsTheSqlHasIt) {
  json ok = summaryOf("signup", "/signup", 201);
  json teapot = summaryOf("brew", "/api/brew", 418, "http", "GET");
  json failed = summaryOf("checkout", "/api/checkout", 500, "http", "POST", "Stripe API timeout");
  json job = summaryOf("send_email", "", 0, "job", "", "SMTP refused");
  json quiet_job = summaryOf("cleanup", "", 0, "job", "");

  struct Case {
    const char* query;
    std::vector<bool> passes;  // ok, teapot, failed, job, quiet_job
  };
  for (const Case& c : {
           Case{"", {true, true, true, true, true}},
           Case{"fn=checkout", {false, false, true, false, false}},
           Case{"function=signup", {true, false, false, false, false}},
           Case{"status=500", {false, false, true, false, false}},
           Case{"status=4xx", {false, true, false, false, false}},
           Case{"errors_only=1", {false, true, true, true, false}},
           Case{"errors_only=0", {true, true, true, true, true}},
           Case{"path=/api/checkout", {false, false, true, false, false}},
           Case{"path=/api/*", {false, true, true, false, false}},
           Case{"path=/api", {false, false, false, false, false}},
           Case{"type=job", {false, false, false, true, true}},
           Case{"kind=http", {true, true, true, false, false}},
           Case{"method=get", {false, true, false, false, false}},
           Case{"errors_only=1&type=job", {false, false, false, true, false}},
           Case{"path=/api/*&status=5xx", {false, false, true, false, false}},
       }) {
    RecordFilter filter = filterOf(c.query);
    std::vector<bool> got;
    for (const json* summary : {&ok, &teapot, &failed, &job, &quiet_job}) {
      got.push_back(recordMatches(filter, *summary));
    }
    EXPECT_EQ(got, c.passes) << c.query;
  }
  // Fields missing or mistyped do not pass a filter on them (nor throw).
  EXPECT_FALSE(recordMatches(filterOf("fn=x"), json::object()));
  EXPECT_TRUE(recordMatches(filterOf(""), json::object()));
  EXPECT_FALSE(recordMatches(filterOf("status=500"), json{{"status", "500"}}));
}

TEST(RecordStreamQueriesTest, ReadABatchByIdsOrByRange) {
  SqlQuery by_id = recordsByIdQuery(
      {"0195a1b2-0000-7000-8000-000000000001", "0195a1b2-0000-7000-8000-000000000002"});
  EXPECT_NE(by_id.sql.find("e.id = ANY($1::uuid[])"), std::string::npos) << by_id.sql;
  ASSERT_EQ(by_id.params.size(), 1u);
  EXPECT_EQ(by_id.params[0],
            "{0195a1b2-0000-7000-8000-000000000001,0195a1b2-0000-7000-8000-000000000002}");
  SqlQuery range = recordsInRangeQuery("0195a1b2-0000-7000-8000-000000000001",
                                       "0195a1b2-0000-7000-8000-000000000009");
  EXPECT_NE(range.sql.find("e.id BETWEEN $1::uuid AND $2::uuid"), std::string::npos);
  EXPECT_EQ(range.params.size(), 2u);
  // Both read the summary columns (with the first mutation) in id order.
  for (const SqlQuery* query : {&by_id, &range}) {
    EXPECT_NE(query->sql.find("mutation_count"), std::string::npos);
    EXPECT_NE(query->sql.find("ORDER BY e.id"), std::string::npos);
  }
}

TEST(RecordStreamQueriesTest, ThePastIsReadInPagesOfIds) {
  RecordFilter filter;
  filter.function = "pay";
  filter.errors_only = true;
  SqlQuery first = recordBackfillQuery(filter, 1773133200000000, std::nullopt, 1000);
  EXPECT_EQ(first.params,
            (data::QueryParams{"1773133200000000", "019cd6f9-7a80-7000-8000-000000000000", "pay",
                               "1001"}));
  for (const char* part :
       {"e.started_at >= 'epoch'::timestamptz + $1::bigint", "e.id >= $2::uuid", "e.function = $3",
        "(e.status >= 400 OR e.error IS NOT NULL)", "ORDER BY e.id\n  LIMIT $4::int"}) {
    EXPECT_NE(first.sql.find(part), std::string::npos) << part << " in\n" << first.sql;
  }
  // The next page goes on after the last record's id: a range of the primary key, however
  // large the table.
  SqlQuery next =
      recordBackfillQuery(filter, 1773133200000000, "0195a1b2-0000-7000-8000-000000000001", 1000);
  EXPECT_NE(next.sql.find("e.id > $3::uuid"), std::string::npos) << next.sql;
  EXPECT_EQ(next.params[2], "0195a1b2-0000-7000-8000-000000000001");
}

}  // namespace
}  // namespace flux::admin

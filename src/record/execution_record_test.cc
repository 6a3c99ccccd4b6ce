#include "record/execution_record.h"

#include <gtest/gtest.h>

#include <string>

namespace flux::record {
namespace {

using nlohmann::json;

ExecutionRecord sampleRecord() {
  ExecutionRecord record;
  record.id = "0192a4f3-7c1e-7d2a-9b3c-4e5f60718293";
  record.kind = "job";
  record.parent_id = "0192a4f3-7c1e-7d2a-9b3c-000000000001";
  record.tenant = "acme";
  record.function = "orders";
  record.deployment_id = "dep-7";
  record.git_commit = "abc123";
  record.method = "POST";
  record.path = "/orders/42";
  record.status = 500;
  record.error = RecordedError{"boom", "functions/orders/index.ts:12:5", "Error: boom\n  at x",
                               "user_code", 3};
  record.started_at_us = 1714560000123456;
  record.duration_us = 1234;
  record.request = {{"method", "POST"},
                    {"path", "/orders/42"},
                    {"query", {{"a", "1"}}},
                    {"headers", {{"content-type", "application/json"}}},
                    {"body", {{"item", "tea"}, {"qty", 2}}}};
  record.response = {{"status", 500}, {"headers", json::object()}, {"body", "oops"}};
  Span root;
  root.id = 1;
  root.name = "handler";
  root.duration_us = 1200;
  Span child;
  child.id = 2;
  child.parent = 1;
  child.name = "db.query";
  child.start_us = 10;
  child.duration_us = 300;
  child.input = {{"sql", "select 1"}};
  child.output = json::array({{{"x", 1}}});
  child.error = "relation does not exist";
  child.location = "functions/orders/index.ts:8:3";
  child.status = SpanStatus::kError;
  child.logs = {"one", "two"};
  Span skipped;
  skipped.id = 3;
  skipped.parent = 1;
  skipped.name = "fetch";
  skipped.status = SpanStatus::kSkipped;
  record.spans = {root, child, skipped};
  record.journal = json::array({{{"kind", "random"}, {"value", 0.25}}});
  record.logs = {"hello", "world"};
  return record;
}

TEST(ExecutionRecordTest, JsonRoundTripKeepsEveryField) {
  ExecutionRecord record = sampleRecord();
  json encoded = toJson(record);
  EXPECT_EQ(encoded["spans"][1]["status"], "error");
  EXPECT_EQ(encoded["error"]["code"], "user_code");
  auto decoded = recordFromJson(encoded);
  ASSERT_TRUE(decoded) << decoded.error().toString();
  EXPECT_EQ(*decoded, record);

  // Through text, as in the spill file.
  auto from_text = recordFromJsonText(dumpJson(encoded));
  ASSERT_TRUE(from_text) << from_text.error().toString();
  EXPECT_EQ(*from_text, record);
}

TEST(ExecutionRecordTest, MinimalRecordTakesDefaults) {
  auto decoded = recordFromJson(
      {{"id", "0192A4F3-7C1E-7D2A-9B3C-4E5F60718293"}, {"kind", "cron"}, {"started_at_us", 5}});
  ASSERT_TRUE(decoded) << decoded.error().toString();
  EXPECT_EQ(decoded->kind, "cron");
  EXPECT_FALSE(decoded->parent_id);
  EXPECT_FALSE(decoded->error);
  EXPECT_TRUE(decoded->spans.empty());
  EXPECT_TRUE(decoded->journal.is_array());
  EXPECT_EQ(decoded->status, 0);
}

TEST(ExecutionRecordTest, BadInputSaysWhichFieldAndWhy) {
  json good = toJson(sampleRecord());
  struct Case {
    std::string name;
    json input;
    std::string expected;  // a piece of the message
  };
  auto with = [&good](const json::json_pointer& at, json value) {
    json copy = good;
    copy[at] = std::move(value);
    return copy;
  };
  auto without = [&good](const char* key) {
    json copy = good;
    copy.erase(key);
    return copy;
  };
  std::vector<Case> cases = {
      {"not an object", json::array(), "execution record: expected a JSON object, got array"},
      {"no id", without("id"), "execution record: id: missing"},
      {"id not a uuid", with("/id"_json_pointer, "req-1"), "id: \"req-1\" is not a UUID"},
      {"id a number", with("/id"_json_pointer, 7), "id: expected a string, got integer"},
      {"kind unknown", with("/kind"_json_pointer, "batch"),
       "kind: \"batch\" is not one of http, job, cron, replay"},
      {"no started_at", without("started_at_us"), "started_at_us: missing"},
      {"started_at float", with("/started_at_us"_json_pointer, 1.5),
       "started_at_us: expected an integer, got number"},
      {"status too big", with("/status"_json_pointer, 1LL << 40), "status: out of range"},
      {"parent not uuid", with("/parent_id"_json_pointer, "x"), "parent_id: \"x\" is not a UUID"},
      {"spans not array", with("/spans"_json_pointer, json::object()),
       "spans: expected an array, got object"},
      {"span start string", with("/spans/1/start_us"_json_pointer, "10"),
       "spans[1].start_us: expected an integer, got string"},
      {"span id negative", with("/spans/0/id"_json_pointer, -1), "spans[0].id: out of range"},
      {"span status", with("/spans/2/status"_json_pointer, "maybe"),
       "spans[2].status: \"maybe\" is not one of ok, error, skipped"},
      {"span log", with("/spans/1/logs/1"_json_pointer, 3),
       "spans[1].logs[1]: expected a string, got integer"},
      {"error without message", with("/error"_json_pointer, {{"code", "x"}}),
       "error.message: missing"},
      {"journal object", with("/journal"_json_pointer, json::object()),
       "journal: expected an array, got object"},
      {"logs string", with("/logs"_json_pointer, "hello"),
       "logs: expected an array of strings, got string"},
  };
  for (const Case& c : cases) {
    auto decoded = recordFromJson(c.input);
    ASSERT_FALSE(decoded) << c.name;
    EXPECT_EQ(decoded.error().code, ErrorCode::kInvalidArgument) << c.name;
    EXPECT_NE(decoded.error().message.find(c.expected), std::string::npos)
        << c.name << ": " << decoded.error().message;
  }
  auto not_json = recordFromJsonText("{\"id\": ");
  ASSERT_FALSE(not_json);
  EXPECT_EQ(not_json.error().message, "execution record: not valid JSON");
}

TEST(ExecutionRecordTest, SummaryIsTheTailLine) {
  RecordSummary summary = RecordSummary::of(sampleRecord());
  EXPECT_EQ(summary.id, "0192a4f3-7c1e-7d2a-9b3c-4e5f60718293");
  EXPECT_EQ(summary.function, "orders");
  EXPECT_EQ(summary.status, 500);
  EXPECT_EQ(summary.error, "boom");
  EXPECT_EQ(summary.duration_us, 1234);
  json encoded = toJson(summary);
  EXPECT_EQ(encoded.size(), 9u);
  auto decoded = summaryFromJson(encoded);
  ASSERT_TRUE(decoded) << decoded.error().toString();
  EXPECT_EQ(*decoded, summary);

  ExecutionRecord ok = sampleRecord();
  ok.error.reset();
  EXPECT_TRUE(toJson(RecordSummary::of(ok))["error"].is_null());
  EXPECT_FALSE(summaryFromJson({{"id", 1}}));
}

TEST(ExecutionRecordTest, MaterializeBuildsWhatTheGatewayCapturedRaw) {
  ExecutionRecord record;
  record.method = "POST";
  record.path = "/orders";
  record.status = 201;
  record.captured_request =
      HttpCapture{"POST", "/orders", "a=1", 0, {{"Host", "x"}, {"Cookie", "s=1"}}, "{}"};
  record.captured_response = HttpCapture{"", "", "", 201, {{"content-type", "text/plain"}}, "ok"};
  Span root;
  root.id = 1;
  root.name = "gateway";
  Span child;
  child.id = 2;
  child.parent = 1;
  child.name = "orders";
  record.spans = {root, child};

  materialize(record);
  EXPECT_EQ(
      record.request,
      (json{{"method", "POST"},
            {"path", "/orders"},
            {"query", "a=1"},
            {"headers", json::array({json::array({"Host", "x"}), json::array({"Cookie", "s=1"})})},
            {"body", "{}"}}));
  EXPECT_EQ(record.response,
            (json{{"status", 201},
                  {"headers", json::array({json::array({"content-type", "text/plain"})})},
                  {"body", "ok"}}));
  EXPECT_FALSE(record.captured_request.has_value());
  EXPECT_FALSE(record.captured_response.has_value());
  EXPECT_EQ(record.spans[0].input, (json{{"method", "POST"}, {"path", "/orders"}}));
  EXPECT_EQ(record.spans[0].output, (json{{"status", 201}}));
  EXPECT_TRUE(record.spans[1].input.is_null());  // only the root's request line is implied

  ExecutionRecord again = record;
  materialize(again);
  EXPECT_EQ(again, record);
}

TEST(ExecutionRecordTest, LocateErrorNamesTheSpanTheErrorHappenedIn) {
  auto span = [](uint32_t id, uint32_t parent, std::string name, SpanStatus status,
                 std::optional<std::string> error, std::string location) {
    Span s;
    s.id = id;
    s.parent = parent;
    s.name = std::move(name);
    s.status = status;
    s.error = std::move(error);
    s.location = std::move(location);
    return s;
  };
  const std::string f = "functions/checkout/index.ts:";
  ExecutionRecord record;
  record.error = RecordedError{"Signal timed out after 200 ms.", f + "9:21", "", "user_code", 0};
  record.spans = {
      span(1, 0, "gateway", SpanStatus::kOk, {}, ""),
      span(2, 1, "checkout", SpanStatus::kError, "Signal timed out after 200 ms.", ""),
      span(3, 2, "db.query", SpanStatus::kError, "duplicate key", f + "4:9"),
      span(4, 2, "charge", SpanStatus::kError, "Signal timed out after 200 ms.", f + "8:3"),
      span(5, 4, "fetch", SpanStatus::kError, "timeout after 200 ms", f + "9:27"),
      span(6, 2, "db.update", SpanStatus::kSkipped, {}, f + "11:3")};
  locateError(record);
  EXPECT_EQ(record.error->span, 5u);  // the fetch at the error's line

  // Thrown by the handler after it caught the db error: the ctx.span that failed with it.
  record.error->location = f + "12:11";
  record.error->span = 0;
  locateError(record);
  EXPECT_EQ(record.error->span, 4u);

  record.error->message = "something else";
  record.error->span = 0;
  locateError(record);
  EXPECT_EQ(record.error->span, 2u);  // neither: the function's span

  record.error->span = 7;
  locateError(record);
  EXPECT_EQ(record.error->span, 7u);  // already located: kept
}

TEST(ExecutionRecordTest, DumpNeverThrowsOnInvalidUtf8) {
  json value = {{"body", std::string("ok \xff\xfe end")}};
  std::string text = dumpJson(value);
  EXPECT_NE(text.find("ok \xEF\xBF\xBD"), std::string::npos) << text;
  EXPECT_TRUE(isCanonicalUuid("0192a4f3-7c1e-7d2a-9b3c-4e5f60718293"));
  EXPECT_FALSE(isCanonicalUuid("0192a4f3-7c1e-7d2a-9b3c-4e5f6071829"));
  EXPECT_FALSE(isCanonicalUuid("0192a4f3x7c1e-7d2a-9b3c-4e5f60718293"));
  EXPECT_FALSE(isCanonicalUuid("0192a4f3-7c1e-7d2a-9b3c-4e5f6071829g"));
}

}  // namespace
}  // namespace flux::record

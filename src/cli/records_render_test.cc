#include "cli/records_render.h"

#include <gtest/gtest.h>

namespace flux::cli {
namespace {

using nlohmann::json;

constexpr const char* kFailedId = "019cd81c-4f3a-7e5f-8a6b-0000550e8400";
constexpr const char* kOkId = "019cd81c-4f3a-7e5f-8a6b-00004f9a3b2c";
// 2026-03-10 09:14:22.250 UTC
constexpr int64_t kStartUs = 1773134062250000;

json summary(const char* id, const char* method, const char* path, int status, int64_t duration_us,
             json error = nullptr, json mutations = nullptr) {
  return json{{"id", id},
              {"kind", "http"},
              {"function", "checkout"},
              {"method", method},
              {"path", path},
              {"status", status},
              {"duration_us", duration_us},
              {"error", std::move(error)},
              {"started_at_us", kStartUs},
              {"started_at", "2026-03-10T09:14:22.250000Z"},
              {"mutations", mutations.is_null() ? json{{"count", 0}, {"first", nullptr}}
                                                : std::move(mutations)}};
}

json span(int id, int parent, const char* name, int64_t start_us, int64_t duration_us,
          const char* status = "ok", json error = nullptr, json input = nullptr,
          json output = nullptr, const char* location = "") {
  return json{{"id", id},
              {"parent", parent},
              {"name", name},
              {"start_us", start_us},
              {"duration_us", duration_us},
              {"input", std::move(input)},
              {"output", std::move(output)},
              {"error", std::move(error)},
              {"location", location},
              {"status", status},
              {"logs", json::array()}};
}

// The product documents' checkout incident: the charge timed out, the plan change rolled back
// and the slack notification never ran.
json failedCheckout() {
  json record = {
      {"id", kFailedId},
      {"kind", "http"},
      {"parent_id", nullptr},
      {"replay_of", nullptr},
      {"tenant", nullptr},
      {"function", "create_order"},
      {"method", "POST"},
      {"path", "/checkout"},
      {"status", 500},
      {"error",
       {{"message", "Stripe API timeout after 10s"},
        {"location", "payments/create.ts:42:7"},
        {"stack", "Error: Stripe API timeout after 10s\n    at charge (payments/create.ts:42:7)"},
        {"code", "user_code"}}},
      {"started_at_us", kStartUs},
      {"started_at", "2026-03-10T09:14:22.250000Z"},
      {"duration_us", 194000},
      {"request",
       {{"method", "POST"},
        {"path", "/checkout"},
        {"query", ""},
        {"headers", json::object()},
        {"body", R"({"customer_id":"cus_ABC","amount":4900})"}}},
      {"response", {{"status", 500}, {"headers", json::object()}, {"body", "timeout"}}},
      {"spans",
       {span(1, 0, "gateway", 0, 2000),
        span(2, 1, "create_order", 2000, 8000, "error", "Stripe API timeout after 10s"),
        span(3, 2, "db.insert(orders)", 2500, 4000, "ok", nullptr, {{"table", "orders"}},
             {{"id", 7}}),
        span(4, 2, "stripe.charge", 6600, 180000, "error", "Stripe API timeout after 10s",
             {{"amount", 4900}}, nullptr, "payments/create.ts:42:7"),
        span(5, 2, "send_slack", 186600, 0, "skipped")}},
      {"journal", json::array()},
      {"logs", json::array()},
  };
  json plan = {{"id", 42}, {"email", "a@b.com"}, {"plan", "free"}};
  json cleared = plan;
  cleared["plan"] = nullptr;
  return json{
      {"record", record},
      {"mutations",
       {{{"id", 7},
         {"schema", "public"},
         {"table", "users"},
         {"pk", "42"},
         {"key_columns", {"id"}},
         {"op", "UPDATE"},
         {"old", plan},
         {"new", cleared},
         {"changed_columns", {"plan"}},
         {"at", "2026-03-10T09:14:22.300000Z"},
         {"rolled_back", true},
         {"rows_affected", 1}},
        {{"id", 8},
         {"schema", "public"},
         {"table", "subscriptions"},
         {"pk", nullptr},
         {"key_columns", {"id"}},
         {"op", "UPDATE"},
         {"old", {{"customer_id", "cus_ABC"}}},
         {"new", {{"status", "active"}}},
         {"changed_columns", json::array()},
         {"at", "2026-03-10T09:14:22.310000Z"},
         {"rolled_back", true},
         {"rows_affected", 0}}}},
      {"mutations_total", 2},
      {"mutations_truncated", false},
  };
}

// ---- Formatting -------------------------------------------------------------------------------

TEST(RecordFormatTest, Durations) {
  EXPECT_EQ(formatDuration(0), "0ms");
  EXPECT_EQ(formatDuration(400), "0.4ms");
  EXPECT_EQ(formatDuration(44'000), "44ms");
  EXPECT_EQ(formatDuration(44'999), "44ms");
  EXPECT_EQ(formatDuration(9'999'999), "9999ms");
  EXPECT_EQ(formatDuration(10'011'000), "10.0s");
  EXPECT_EQ(formatDuration(125'000'000), "125s");
}

TEST(RecordFormatTest, TimesAreUtc) {
  EXPECT_EQ(formatDateTime(kStartUs), "2026-03-10 09:14:22");
  EXPECT_EQ(formatClock(kStartUs), "09:14:22");
  EXPECT_EQ(formatDateTime(0), "1970-01-01 00:00:00");
}

TEST(RecordFormatTest, LocationsLoseTheirColumn) {
  EXPECT_EQ(fileAndLine("payments/create.ts:42:7"), "payments/create.ts:42");
  EXPECT_EQ(fileAndLine("payments/create.ts:42"), "payments/create.ts:42");
  EXPECT_EQ(fileAndLine("C:/x/y.ts"), "C:/x/y.ts");
  EXPECT_EQ(fileAndLine(""), "");
  EXPECT_EQ(fileAndLine("native"), "native");
}

// ---- flux tail --------------------------------------------------------------------------------

TEST(TailTest, OneLinePerRequestAsTheDocumentsShowIt) {
  TailPrinter printer(Color::kOff);
  EXPECT_EQ(printer.print(summary(kOkId, "POST", "/checkout", 201, 120'000)),
            "  POST /checkout  201  120ms  req:4f9a3b2c  09:14:22\n");
  EXPECT_EQ(printer.print(summary(kFailedId, "POST", "/checkout", 500, 44'000,
                                  "Stripe API timeout\n    at charge (x.ts:1:1)")),
            "  POST /checkout  500  44ms   req:550e8400  09:14:22\n"
            "     └─ Error: Stripe API timeout\n");
  // Columns widen for longer values and stay wide.
  EXPECT_EQ(printer.print(summary(kOkId, "GET", "/products/featured", 200, 9'000)),
            "  GET  /products/featured  200  9ms    req:4f9a3b2c  09:14:22\n");
  EXPECT_EQ(printer.print(summary(kOkId, "GET", "/users", 200, 12'000)),
            "  GET  /users              200  12ms   req:4f9a3b2c  09:14:22\n");
}

TEST(TailTest, AWriteAddsItsMutationLine) {
  TailPrinter printer(Color::kOff);
  json insert = {{"count", 1},
                 {"first",
                  {{"schema", "public"},
                   {"table", "users"},
                   {"pk", "42"},
                   {"key_columns", {"id"}},
                   {"op", "INSERT"},
                   {"rows_affected", 1},
                   {"rolled_back", false}}}};
  EXPECT_EQ(printer.print(summary(kOkId, "POST", "/create_user", 201, 81'000, nullptr, insert)),
            "  POST /create_user  201  81ms  req:4f9a3b2c  09:14:22\n"
            "     users.id=42  insert\n");

  json many = {{"count", 3},
               {"first",
                {{"schema", "shop"},
                 {"table", "order_items"},
                 {"pk", "7,2"},
                 {"key_columns", {"order_id", "line"}},
                 {"op", "UPDATE"},
                 {"rows_affected", 1},
                 {"rolled_back", true}}}};
  std::string failed =
      printer.print(summary(kFailedId, "POST", "/orders", 500, 44'000, "boom", many));
  EXPECT_NE(failed.find("     └─ Error: boom\n"
                        "     shop.order_items.(order_id,line)=(7,2)  update  +2 more  (rolled "
                        "back)\n"),
            std::string::npos)
      << failed;

  json none = {{"count", 1},
               {"first",
                {{"schema", "public"},
                 {"table", "subscriptions"},
                 {"pk", nullptr},
                 {"key_columns", {"id"}},
                 {"op", "UPDATE"},
                 {"rows_affected", 0},
                 {"rolled_back", false}}}};
  EXPECT_NE(printer.print(summary(kOkId, "POST", "/stripe_webhook", 200, 32'000, nullptr, none))
                .find("     subscriptions  update  0 rows\n"),
            std::string::npos);
}

TEST(TailTest, JobsShowTheirFunctionAndOutcome) {
  TailPrinter printer(Color::kOff);
  json job = summary(kOkId, "", "", 0, 220'000);
  job["kind"] = "job";
  job["function"] = "send_onboarding_email";
  EXPECT_EQ(printer.print(job),
            "  JOB  send_onboarding_email  done  220ms  req:4f9a3b2c  09:14:22\n");
  job["error"] = "User 42 not found";
  EXPECT_EQ(printer.print(job),
            "  JOB  send_onboarding_email  failed  220ms  req:4f9a3b2c  09:14:22\n"
            "     └─ Error: User 42 not found\n");
}

TEST(TailTest, StatusColoursOnlyWhenAsked) {
  TailPrinter plain(Color::kOff);
  EXPECT_EQ(plain.print(summary(kFailedId, "GET", "/x", 500, 1000)).find('\x1b'),
            std::string::npos);

  TailPrinter colour(Color::kOn);
  std::string ok = colour.print(summary(kOkId, "GET", "/x", 200, 1000));
  std::string warn = colour.print(summary(kOkId, "GET", "/x", 404, 1000));
  std::string bad = colour.print(summary(kOkId, "GET", "/x", 503, 1000));
  EXPECT_NE(ok.find("\x1b[32m200"), std::string::npos) << ok;      // green
  EXPECT_NE(warn.find("\x1b[33m404"), std::string::npos) << warn;  // yellow
  EXPECT_NE(bad.find("\x1b[31m503"), std::string::npos) << bad;    // red
}

TEST(TailTest, HostileTextCannotBreakTheLine) {
  TailPrinter printer(Color::kOff);
  std::string line =
      printer.print(summary(kOkId, "GET", "/a\nb\x1b[2J", 200, 1000, "two\x07 lines\nsecond line"));
  EXPECT_EQ(line.find('\x1b'), std::string::npos);
  EXPECT_EQ(line.find('\x07'), std::string::npos);
  EXPECT_NE(line.find("/a\\nb\\x1b[2J"), std::string::npos) << line;
  EXPECT_NE(line.find("└─ Error: two\\x07 lines\n"), std::string::npos) << line;
}

// ---- flux why ---------------------------------------------------------------------------------

TEST(WhyTest, TheIncidentFromTheDocuments) {
  EXPECT_EQ(renderWhy(failedCheckout(), Color::kOff),
            "  req:550e8400  POST /checkout  500  194ms  ·  create_order  ·  2026-03-10 09:14:22 "
            "UTC\n"
            "\n"
            "  ROOT CAUSE    Stripe API timeout after 10s\n"
            "  LOCATION      payments/create.ts:42  (in stripe.charge)\n"
            "  INPUT         POST /checkout  {\"amount\":4900,\"customer_id\":\"cus_ABC\"}\n"
            "                stripe.charge ← {\"amount\":4900}\n"
            "  DATA CHANGES  users id=42  plan: free → null  (rolled back)\n"
            "                subscriptions  UPDATE  0 rows affected  where customer_id=cus_ABC  "
            "(rolled back)\n"
            "  SUGGESTION    → Add a shorter timeout (e.g. 5s) + retry with an idempotency key\n"
            "                Consider moving the slow call to an async background step\n");
}

TEST(WhyTest, TheRootCauseIsTheDeepestEarliestError) {
  json record = failedCheckout()["record"];
  RootCause cause = findRootCause(record);
  EXPECT_TRUE(cause.failed);
  ASSERT_TRUE(cause.span_id.has_value());
  EXPECT_EQ(*cause.span_id, 4u);  // stripe.charge, not create_order that it failed
  EXPECT_EQ(cause.span_name, "stripe.charge");

  // Two failing leaves: the one that ended first started it.
  record["spans"].push_back(span(6, 2, "email.send", 3000, 1000, "error", "SMTP refused"));
  cause = findRootCause(record);
  EXPECT_EQ(cause.message, "SMTP refused");
  EXPECT_EQ(cause.location, "payments/create.ts:42") << "the record's location when the span "
                                                        "has none";

  // No failing span: the record's error.
  record["spans"] = json::array();
  cause = findRootCause(record);
  EXPECT_EQ(cause.message, "Stripe API timeout after 10s");
  EXPECT_FALSE(cause.span_id.has_value());

  // No error at all but a 4xx: what the response said.
  record["error"] = nullptr;
  record["status"] = 400;
  record["response"] = {{"status", 400}, {"body", R"({"error":"email required"})"}};
  cause = findRootCause(record);
  EXPECT_TRUE(cause.failed);
  EXPECT_EQ(cause.message, "POST /checkout answered 400: email required");

  record["status"] = 201;
  cause = findRootCause(record);
  EXPECT_FALSE(cause.failed);
  EXPECT_EQ(cause.message, "no error: POST /checkout answered 201");
}

TEST(WhyTest, ASuccessHasNoSuggestion) {
  json answer = failedCheckout();
  answer["record"]["status"] = 201;
  answer["record"]["error"] = nullptr;
  answer["record"]["spans"] = json::array();
  answer["mutations"] = json::array();
  answer["mutations_total"] = 0;
  std::string text = renderWhy(answer, Color::kOff);
  EXPECT_NE(text.find("  ROOT CAUSE    no error: POST /checkout answered 201\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("  DATA CHANGES  none\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("SUGGESTION"), std::string::npos) << text;
  EXPECT_EQ(text.find("LOCATION"), std::string::npos) << text;
}

TEST(WhyTest, AValidationFailureSuggestsValidation) {
  json answer = failedCheckout();
  json& record = answer["record"];
  record["status"] = 400;
  record["error"] = nullptr;
  record["spans"] = json::array();
  record["request"]["body"] = json{{"name", "Alice"}};
  record["response"] = {{"status", 400}, {"body", {{"error", "email required"}}}};
  answer["mutations"] = json::array();
  answer["mutations_total"] = 0;
  std::string text = renderWhy(answer, Color::kOff);
  EXPECT_NE(text.find("  ROOT CAUSE    POST /checkout answered 400: email required\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("  LOCATION      not recorded\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  INPUT         POST /checkout  {\"name\":\"Alice\"}\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("  SUGGESTION    → Validate the input early"), std::string::npos) << text;
}

TEST(WhyTest, AZeroRowWriteSuggestsCreationOrder) {
  json answer = failedCheckout();
  json& record = answer["record"];
  record["status"] = 500;
  record["spans"] = json::array();
  record["error"]["message"] = "subscription was not activated";
  std::string text = renderWhy(answer, Color::kOff);
  EXPECT_NE(text.find("→ The row did not exist when this ran"), std::string::npos) << text;
  EXPECT_NE(text.find("Check the creation order"), std::string::npos) << text;
}

TEST(WhyTest, UnknownFailuresPointToTheTrace) {
  json answer = failedCheckout();
  answer["record"]["spans"] = json::array();
  answer["record"]["error"]["message"] = "the moon is in the wrong phase";
  answer["mutations"] = json::array();
  std::string text = renderWhy(answer, Color::kOff);
  EXPECT_NE(text.find("  SUGGESTION    → Run flux trace req:550e8400"), std::string::npos) << text;
}

TEST(WhyTest, LongMutationListsAreCut) {
  json answer = failedCheckout();
  json one = answer["mutations"][0];
  answer["mutations"] = json::array();
  for (int i = 0; i < 30; ++i) answer["mutations"].push_back(one);
  answer["mutations_total"] = 1200;
  std::string text = renderWhy(answer, Color::kOff);
  size_t lines = 0;
  for (size_t at = text.find("users id=42"); at != std::string::npos;
       at = text.find("users id=42", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 20u);
  EXPECT_NE(text.find("… and 1180 more: flux why req:550e8400 --json lists them"),
            std::string::npos)
      << text;
}

TEST(WhyTest, AMalformedAnswerStillPrints) {
  for (const json& answer :
       {json(nullptr), json::object(), json{{"record", "nope"}},
        json{{"record", {{"spans", "nope"}, {"status", "500"}}}},
        json{{"record", {{"spans", {1, "x", nullptr}}}}, {"mutations", {1, {{"op", 5}}}}}}) {
    std::string why = renderWhy(answer, Color::kOff);
    std::string trace = renderTrace(answer, Color::kOff);
    EXPECT_NE(why.find("ROOT CAUSE"), std::string::npos) << answer.dump();
    EXPECT_NE(trace.find("── Spans:"), std::string::npos) << answer.dump();
  }
}

// ---- flux trace -------------------------------------------------------------------------------

TEST(TraceTest, TheSpanTreeAsTheDocumentsShowIt) {
  EXPECT_EQ(renderTrace(failedCheckout(), Color::kOff),
            "  req:550e8400  POST /checkout  500  194ms  ·  create_order  ·  2026-03-10 09:14:22 "
            "UTC\n"
            "\n"
            "  gateway                    2ms\n"
            "  └─ create_order            8ms  ✗ Stripe API timeout after 10s\n"
            "     ├─ db.insert(orders)    4ms  → {\"id\":7}\n"
            "     ├─ stripe.charge      180ms  ← timeout here\n"
            "     └─ send_slack         — skipped (upstream error)\n"
            "\n"
            "  ── Spans: 5  ·  Errors: 2  ·  DB writes: 1\n");
}

TEST(TraceTest, OtherFailuresSayWhatFailed) {
  json answer = failedCheckout();
  answer["record"]["spans"] = {
      span(1, 0, "stripe_webhook", 0, 28000, "error", "Row not found: subscriptions"),
      span(2, 1, "db.update(subscriptions)", 100, 3000)};
  std::string text = renderTrace(answer, Color::kOff);
  EXPECT_NE(text.find("  stripe_webhook               28ms  ← failed here: Row not found: "
                      "subscriptions\n"
                      "  └─ db.update(subscriptions)   3ms\n"),
            std::string::npos)
      << text;
}

TEST(TraceTest, OrphansCyclesAndNoSpans) {
  json answer = failedCheckout();
  // 7's parent is unknown: a root. 8 and 9 are each other's parent: shown, not lost.
  answer["record"]["spans"] = {span(7, 99, "orphan", 0, 1000), span(8, 9, "a", 10, 1000),
                               span(9, 8, "b", 20, 1000)};
  std::string text = renderTrace(answer, Color::kOff);
  EXPECT_NE(text.find("  orphan"), std::string::npos) << text;
  EXPECT_NE(text.find("a "), std::string::npos) << text;
  EXPECT_NE(text.find("b "), std::string::npos) << text;
  EXPECT_NE(text.find("Spans: 3"), std::string::npos) << text;

  answer["record"]["spans"] = json::array();
  answer["mutations"] = json::array();
  answer["mutations_total"] = 0;
  text = renderTrace(answer, Color::kOff);
  EXPECT_NE(text.find("  no spans recorded\n"), std::string::npos) << text;
  EXPECT_NE(text.find("── Spans: 0  ·  Errors: 0  ·  DB writes: 0"), std::string::npos) << text;
}

TEST(TraceTest, CandidatesOfAnAmbiguousId) {
  json body = {{"error", "'550e' matches 14 executions: use more digits"},
               {"total", 14},
               {"candidates",
                {summary(kFailedId, "POST", "/checkout", 500, 44'000),
                 summary(kOkId, "GET", "/users", 200, 12'000)}}};
  EXPECT_EQ(renderCandidates(body), std::string("  req:550e8400  ") + kFailedId +
                                        "  POST /checkout  500  2026-03-10 09:14:22\n"
                                        "  req:4f9a3b2c  " +
                                        kOkId +
                                        "  GET /users  200  2026-03-10 09:14:22\n"
                                        "  … and 12 more\n");
  EXPECT_EQ(renderCandidates(json::object()), "");
}

}  // namespace
}  // namespace flux::cli

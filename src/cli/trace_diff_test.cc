#include "cli/trace_diff.h"

#include <gtest/gtest.h>

#include <set>
#include <sstream>

namespace flux::cli {
namespace {

using nlohmann::json;

constexpr const char* kOkId = "019cd81c-4f3a-7e5f-8a6b-00004f9a3b2c";
constexpr const char* kFailedId = "019cd81c-4f3a-7e5f-8a6b-0000550e8400";
constexpr int64_t kStartUs = 1773134062250000;  // 2026-03-10 09:14:22.250 UTC

json span(int id, int parent, const char* name, int64_t start_us, int64_t duration_us,
          const char* status = "ok", json error = nullptr, json input = nullptr,
          json output = nullptr) {
  return json{{"id", id},
              {"parent", parent},
              {"name", name},
              {"start_us", start_us},
              {"duration_us", duration_us},
              {"input", std::move(input)},
              {"output", std::move(output)},
              {"error", std::move(error)},
              {"location", ""},
              {"status", status},
              {"logs", json::array()}};
}

json record(const char* id, const char* function, const char* method, const char* path, int status,
            json spans) {
  return json{{"id", id},
              {"kind", "http"},
              {"function", function},
              {"method", method},
              {"path", path},
              {"status", status},
              {"error", nullptr},
              {"started_at_us", kStartUs},
              {"duration_us", 50000},
              {"spans", std::move(spans)}};
}

json mutation(int id, const char* table, const char* op, json pk, json old_row, json new_row,
              bool rolled_back, int rows_affected = 1) {
  json changed = json::array();
  if (old_row.is_object() && new_row.is_object()) {
    for (const auto& [key, value] : new_row.items()) {
      if (!old_row.contains(key) || old_row[key] != value) changed.push_back(key);
    }
  }
  return json{{"id", id},
              {"schema", "public"},
              {"table", table},
              {"pk", std::move(pk)},
              {"key_columns", {"id"}},
              {"op", op},
              {"old", std::move(old_row)},
              {"new", std::move(new_row)},
              {"changed_columns", std::move(changed)},
              {"at", "2026-03-10T09:14:22.300000Z"},
              {"rolled_back", rolled_back},
              {"rows_affected", rows_affected}};
}

json answer(json rec, json mutations = json::array()) {
  size_t total = mutations.size();
  return json{{"record", std::move(rec)},
              {"mutations", std::move(mutations)},
              {"mutations_total", total},
              {"mutations_truncated", false}};
}

// The product documents' checkout: it passed once, then the charge timed out, the order's
// insert rolled back and the slack notification never ran.
json passingCheckout() {
  return answer(
      record(
          kOkId, "create_order", "POST", "/checkout", 201,
          {span(1, 0, "gateway", 0, 2000, "ok", nullptr, {{"method", "POST"}}, {{"status", 201}}),
           span(2, 1, "create_order", 2000, 81000, "ok", nullptr, nullptr, {{"status", 201}}),
           span(3, 2, "db.insert(orders)", 2500, 4000, "ok", nullptr,
                {{"sql", "INSERT INTO orders"}}, {{"rowCount", 1}}),
           span(4, 2, "stripe.charge", 6600, 68000, "ok", nullptr, {{"amount", 4900}},
                {{"id", "ch_1"}}),
           span(5, 2, "send_slack", 75000, 7000)}),
      {mutation(7, "orders", "INSERT", "41", nullptr, {{"id", 41}, {"amount", 4900}}, false)});
}

json failingCheckout() {
  return answer(
      record(
          kFailedId, "create_order", "POST", "/checkout", 500,
          {span(1, 0, "gateway", 0, 2000, "ok", nullptr, {{"method", "POST"}}, {{"status", 500}}),
           span(2, 1, "create_order", 2000, 44000, "error", "Stripe API timeout after 10s", nullptr,
                {{"status", 500}}),
           span(3, 2, "db.insert(orders)", 2500, 4100, "ok", nullptr,
                {{"sql", "INSERT INTO orders"}}, {{"rowCount", 1}}),
           span(4, 2, "stripe.charge", 6600, 180000, "error", "Stripe API timeout after 10s",
                {{"amount", 4900}}),
           span(5, 2, "send_slack", 186600, 0, "skipped")}),
      {mutation(9, "orders", "INSERT", "42", nullptr, {{"id", 42}, {"amount", 4900}}, true)});
}

std::vector<AlignItem> items(std::initializer_list<std::pair<const char*, size_t>> spans) {
  std::vector<AlignItem> out;
  for (const auto& [name, depth] : spans) out.push_back(AlignItem{name, depth, false});
  return out;
}

// Every index of both sides exactly once.
::testing::AssertionResult coversBothSides(const std::vector<AlignedSpan>& rows, size_t before,
                                           size_t after) {
  std::multiset<size_t> left, right;
  for (const AlignedSpan& row : rows) {
    if (!row.before && !row.after) return ::testing::AssertionFailure() << "an empty row";
    if (row.before) left.insert(*row.before);
    if (row.after) right.insert(*row.after);
  }
  for (size_t i = 0; i < before; ++i) {
    if (left.count(i) != 1) return ::testing::AssertionFailure() << "before " << i;
  }
  for (size_t i = 0; i < after; ++i) {
    if (right.count(i) != 1) return ::testing::AssertionFailure() << "after " << i;
  }
  if (left.size() != before || right.size() != after) {
    return ::testing::AssertionFailure() << "indices out of range";
  }
  return ::testing::AssertionSuccess();
}

AlignedSpan both(size_t b, size_t a, SpanMatch match = SpanMatch::kName) {
  return AlignedSpan{b, a, match};
}
AlignedSpan onlyBefore(size_t b) { return AlignedSpan{b, std::nullopt, SpanMatch::kName}; }
AlignedSpan onlyAfter(size_t a) { return AlignedSpan{std::nullopt, a, SpanMatch::kName}; }

// The line of `text` that contains `needle`, or "".
std::string lineWith(const std::string& text, std::string_view needle) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) return line;
  }
  return {};
}

// ---- Durations --------------------------------------------------------------------------------

TEST(TraceDiffTimingTest, TenPercentAndOneMillisecondAreNoise) {
  EXPECT_EQ(classifyDuration(10'000, 10'500), Timing::kSame);
  EXPECT_EQ(classifyDuration(10'000, 11'000), Timing::kSame);  // exactly 1 ms
  EXPECT_EQ(classifyDuration(10'000, 11'001), Timing::kSlower);
  EXPECT_EQ(classifyDuration(10'000, 8'000), Timing::kFaster);
  EXPECT_EQ(classifyDuration(200, 900), Timing::kSame);          // 0.7 ms: under 1 ms
  EXPECT_EQ(classifyDuration(100'000, 110'000), Timing::kSame);  // exactly 10%
  EXPECT_EQ(classifyDuration(100'000, 110'001), Timing::kSlower);
  EXPECT_EQ(classifyDuration(100'000, 89'000), Timing::kFaster);
  EXPECT_EQ(classifyDuration(81'000, 44'000), Timing::kFaster);
  EXPECT_EQ(classifyDuration(0, 0), Timing::kSame);
  EXPECT_EQ(classifyDuration(10'000, 12'000, DurationThreshold{0.5, 1000}), Timing::kSame);
  EXPECT_STREQ(timingName(Timing::kFaster), "faster");
}

// ---- Alignment --------------------------------------------------------------------------------

TEST(TraceDiffAlignTest, IdenticalTracesPairUp) {
  auto spans = items({{"gateway", 0}, {"fn", 1}, {"db.insert(a)", 2}, {"fetch", 2}});
  auto rows = alignSpans(spans, spans);
  EXPECT_EQ(rows, (std::vector<AlignedSpan>{both(0, 0), both(1, 1), both(2, 2), both(3, 3)}));
}

TEST(TraceDiffAlignTest, AnInsertedSpanDoesNotShiftTheRest) {
  auto before = items({{"gateway", 0}, {"fn", 1}, {"db.insert(a)", 2}, {"send", 2}});
  auto after =
      items({{"gateway", 0}, {"fn", 1}, {"db.insert(a)", 2}, {"stripe.charge", 2}, {"send", 2}});
  auto rows = alignSpans(before, after);
  EXPECT_EQ(rows, (std::vector<AlignedSpan>{both(0, 0), both(1, 1), both(2, 2), onlyAfter(3),
                                            both(3, 4)}));
  EXPECT_TRUE(coversBothSides(rows, before.size(), after.size()));
}

TEST(TraceDiffAlignTest, ADeletedSpanDoesNotShiftTheRest) {
  auto before =
      items({{"gateway", 0}, {"fn", 1}, {"db.insert(a)", 2}, {"stripe.charge", 2}, {"send", 2}});
  auto after = items({{"gateway", 0}, {"fn", 1}, {"db.insert(a)", 2}, {"send", 2}});
  auto rows = alignSpans(before, after);
  EXPECT_EQ(rows, (std::vector<AlignedSpan>{both(0, 0), both(1, 1), both(2, 2), onlyBefore(3),
                                            both(4, 3)}));
}

TEST(TraceDiffAlignTest, ARenamedSpanPairsWithItsNewName) {
  auto before = items({{"gateway", 0}, {"fn", 1}, {"db.insert(orders)", 2}, {"send", 2}});
  auto after = items({{"gateway", 0}, {"fn", 1}, {"db.insert(order_items)", 2}, {"send", 2}});
  auto rows = alignSpans(before, after);
  EXPECT_EQ(rows, (std::vector<AlignedSpan>{both(0, 0), both(1, 1), both(2, 2, SpanMatch::kRenamed),
                                            both(3, 3)}));
}

TEST(TraceDiffAlignTest, UnrelatedSpansAreMissingAndAddedNotRenamed) {
  auto before = items({{"gateway", 0}, {"fn", 1}, {"fetch", 2}});
  auto after = items({{"gateway", 0}, {"fn", 1}, {"db.insert(a)", 2}});
  auto rows = alignSpans(before, after);
  EXPECT_EQ(rows, (std::vector<AlignedSpan>{both(0, 0), both(1, 1), onlyBefore(2), onlyAfter(2)}));
}

TEST(TraceDiffAlignTest, TheFunctionSpansOfTwoEndpointsPairUp) {
  std::vector<AlignItem> before = {
      {"gateway", 0, false}, {"create_user", 1, true}, {"db.insert(users)", 2, false}};
  std::vector<AlignItem> after = {
      {"gateway", 0, false}, {"list_users", 1, true}, {"db.query", 2, false}};
  auto rows = alignSpans(before, after);
  EXPECT_EQ(rows, (std::vector<AlignedSpan>{both(0, 0), both(1, 1, SpanMatch::kRenamed),
                                            onlyBefore(2), onlyAfter(2)}));
}

TEST(TraceDiffAlignTest, SwappedSpansAreMovedNotMissingAndAdded) {
  auto before = items({{"gateway", 0}, {"fn", 1}, {"a", 2}, {"b", 2}, {"c", 2}});
  auto after = items({{"gateway", 0}, {"fn", 1}, {"a", 2}, {"c", 2}, {"b", 2}});
  auto rows = alignSpans(before, after);
  EXPECT_TRUE(coversBothSides(rows, before.size(), after.size()));
  ASSERT_EQ(rows.size(), 5u);
  size_t moved = 0;
  for (const AlignedSpan& row : rows) {
    ASSERT_TRUE(row.before && row.after);
    EXPECT_EQ(before[*row.before].name, after[*row.after].name);
    if (row.match == SpanMatch::kMoved) ++moved;
  }
  EXPECT_EQ(moved, 1u);
}

TEST(TraceDiffAlignTest, EmptySides) {
  auto spans = items({{"gateway", 0}, {"fn", 1}});
  EXPECT_EQ(alignSpans({}, spans), (std::vector<AlignedSpan>{onlyAfter(0), onlyAfter(1)}));
  EXPECT_EQ(alignSpans(spans, {}), (std::vector<AlignedSpan>{onlyBefore(0), onlyBefore(1)}));
  EXPECT_TRUE(alignSpans({}, {}).empty());
}

TEST(TraceDiffAlignTest, LongLoopsAlignWithoutLosingSpans) {
  std::vector<AlignItem> before = {{"gateway", 0, false}, {"fn", 1, false}};
  std::vector<AlignItem> after = before;
  for (int i = 0; i < 3000; ++i) before.push_back({"db.insert(t)", 2, false});
  for (int i = 0; i < 2990; ++i) after.push_back({"db.insert(t)", 2, false});
  after.push_back({"fetch", 2, false});
  auto rows = alignSpans(before, after);
  EXPECT_TRUE(coversBothSides(rows, before.size(), after.size()));
}

// ---- Values -----------------------------------------------------------------------------------

TEST(TraceDiffValuesTest, ObjectsAndArraysCompareMemberByMember) {
  json before = {{"sql", "INSERT"}, {"params", {"a@b.com", 1}}, {"gone", true}};
  json after = {{"sql", "INSERT"}, {"params", {"x@y.com", 1}}, {"new", 5}};
  auto changes = diffValues(before, after, "input");
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_EQ(changes[0].field, "input.gone");
  EXPECT_EQ(changes[0].before, json(true));
  EXPECT_FALSE(changes[0].after.has_value());
  EXPECT_EQ(changes[1].field, "input.new");
  EXPECT_FALSE(changes[1].before.has_value());
  EXPECT_EQ(changes[2].field, "input.params[0]");
  EXPECT_EQ(changes[2].after, json("x@y.com"));

  auto whole = diffValues(json::array({1, 2}), json::array({1, 2, 3}), "output.rows");
  ASSERT_EQ(whole.size(), 1u);
  EXPECT_EQ(whole[0].field, "output.rows");

  // A body stored as text holding JSON compares as that JSON.
  auto body =
      diffValues(R"({"plan":"pro","email":"a"})", json{{"plan", "free"}, {"email", "a"}}, "body");
  ASSERT_EQ(body.size(), 1u);
  EXPECT_EQ(body[0].field, "body.plan");
  EXPECT_TRUE(diffValues(json{{"a", 1}}, R"({"a":1})", "x").empty());
  EXPECT_EQ(diffValues(nullptr, json{{"a", 1}}, "output")[0].field, "output");
}

// ---- Spans ------------------------------------------------------------------------------------

const SpanDiff& rowNamed(const TraceDiff& diff, std::string_view name) {
  for (const SpanDiff& row : diff.spans) {
    const TraceSpan& span =
        row.row.after ? diff.after_spans[*row.row.after] : diff.before_spans[*row.row.before];
    if (span.name == name) return row;
  }
  static SpanDiff none;
  ADD_FAILURE() << "no row for " << name;
  return none;
}

TEST(TraceDiffSpansTest, PassingThenFailingCheckout) {
  TraceDiff diff = diffTraces(passingCheckout(), failingCheckout());
  EXPECT_TRUE(diff.same_endpoint);
  ASSERT_EQ(diff.spans.size(), 5u);
  EXPECT_EQ(rowNamed(diff, "gateway").verdict, SpanVerdict::kChanged);  // 201 -> 500
  EXPECT_EQ(rowNamed(diff, "create_order").verdict, SpanVerdict::kChanged);
  EXPECT_EQ(rowNamed(diff, "db.insert(orders)").verdict, SpanVerdict::kSame);  // 4 vs 4.1 ms
  const SpanDiff& charge = rowNamed(diff, "stripe.charge");
  EXPECT_EQ(charge.verdict, SpanVerdict::kChanged);
  EXPECT_EQ(charge.timing, Timing::kSlower);
  std::set<std::string> fields;
  for (const FieldChange& change : charge.changes) fields.insert(change.field);
  EXPECT_EQ(fields, (std::set<std::string>{"status", "error", "output"}));
  EXPECT_EQ(rowNamed(diff, "send_slack").verdict, SpanVerdict::kMissing);  // skipped after
}

TEST(TraceDiffSpansTest, OnlyDurationsDifferFasterOrSlower) {
  json fast = passingCheckout();
  json slow = passingCheckout();
  slow["record"]["spans"][1]["duration_us"] = 200000;  // create_order 81 -> 200 ms
  slow["record"]["spans"][4]["duration_us"] = 7400;    // send_slack 7 -> 7.4 ms: noise
  TraceDiff diff = diffTraces(slow, fast);
  EXPECT_EQ(rowNamed(diff, "create_order").verdict, SpanVerdict::kFaster);
  EXPECT_EQ(rowNamed(diff, "send_slack").verdict, SpanVerdict::kSame);
  TraceDiff back = diffTraces(fast, slow);
  EXPECT_EQ(rowNamed(back, "create_order").verdict, SpanVerdict::kSlower);
}

TEST(TraceDiffSpansTest, AddedAndSkippedSpans) {
  json before = passingCheckout();
  json after = passingCheckout();
  after["record"]["spans"].push_back(span(6, 2, "audit.log", 90000, 1000));
  before["record"]["spans"][4]["status"] = "skipped";  // send_slack did not run before
  TraceDiff diff = diffTraces(before, after);
  EXPECT_EQ(rowNamed(diff, "audit.log").verdict, SpanVerdict::kAdded);
  EXPECT_EQ(rowNamed(diff, "send_slack").verdict, SpanVerdict::kAdded);
}

// ---- Mutations --------------------------------------------------------------------------------

TEST(TraceDiffMutationsTest, PairsByKeyThenByTableAndOperation) {
  json before =
      json::array({mutation(1, "users", "UPDATE", "42", {{"id", 42}, {"plan", "free"}},
                            {{"id", 42}, {"plan", "pro"}}, false),
                   mutation(2, "orders", "INSERT", "7", nullptr, {{"id", 7}, {"total", 10}}, false),
                   mutation(3, "audit", "INSERT", "1", nullptr, {{"id", 1}}, false)});
  json after =
      json::array({mutation(11, "orders", "INSERT", "8", nullptr, {{"id", 8}, {"total", 10}}, true),
                   mutation(12, "users", "UPDATE", "42", {{"id", 42}, {"plan", "free"}},
                            {{"id", 42}, {"plan", "pro"}}, false),
                   mutation(13, "emails", "INSERT", "5", nullptr, {{"id", 5}}, false)});
  auto rows = diffMutations(before, after);
  ASSERT_EQ(rows.size(), 4u);
  // users 42: the same write in both (ids and times of the log aside).
  EXPECT_EQ(rows[0].verdict, MutationVerdict::kSame);
  EXPECT_EQ(rows[0].before, 0u);
  EXPECT_EQ(rows[0].after, 1u);
  // emails (after only) follows users, the write before it in the after log.
  EXPECT_EQ(rows[1].verdict, MutationVerdict::kOnlyAfter);
  EXPECT_EQ(rows[1].after, 2u);
  // orders: another id, and rolled back.
  EXPECT_EQ(rows[2].verdict, MutationVerdict::kChanged);
  EXPECT_EQ(rows[2].before, 1u);
  EXPECT_EQ(rows[2].after, 0u);
  std::set<std::string> fields;
  for (const FieldChange& change : rows[2].changes) fields.insert(change.field);
  EXPECT_EQ(fields, (std::set<std::string>{"pk", "state"}));  // total is the same; id is the key
  EXPECT_EQ(rows[3].verdict, MutationVerdict::kOnlyBefore);
  EXPECT_EQ(rows[3].before, 2u);
}

TEST(TraceDiffMutationsTest, ValuesAndZeroRowChangesAreCompared) {
  json before = json::array({mutation(1, "users", "UPDATE", "42", {{"id", 42}, {"plan", "free"}},
                                      {{"id", 42}, {"plan", "pro"}}, false)});
  json after = json::array({mutation(2, "users", "UPDATE", "42", {{"id", 42}, {"plan", "free"}},
                                     {{"id", 42}, {"plan", "enterprise"}}, false)});
  auto rows = diffMutations(before, after);
  ASSERT_EQ(rows.size(), 1u);
  ASSERT_EQ(rows[0].changes.size(), 1u);
  EXPECT_EQ(rows[0].changes[0].field, "new.plan");

  json zero = json::array({mutation(3, "subscriptions", "UPDATE", nullptr,
                                    {{"customer_id", "cus_A"}}, nullptr, false, 0)});
  json one =
      json::array({mutation(4, "subscriptions", "UPDATE", "9", {{"id", 9}, {"status", "new"}},
                            {{"id", 9}, {"status", "active"}}, false, 1)});
  auto rows2 = diffMutations(zero, one);
  ASSERT_EQ(rows2.size(), 1u);
  EXPECT_EQ(rows2[0].verdict, MutationVerdict::kChanged);
  std::set<std::string> fields;
  for (const FieldChange& change : rows2[0].changes) fields.insert(change.field);
  EXPECT_TRUE(fields.contains("rows_affected"));
  EXPECT_TRUE(fields.contains("pk"));
}

// ---- Rendering --------------------------------------------------------------------------------

TEST(TraceDiffRenderTest, TheSpanTableAndTheMutationDiff) {
  std::string text = renderTraceDiff(diffTraces(passingCheckout(), failingCheckout()), Color::kOff);
  EXPECT_EQ(text.find("\x1b["), std::string::npos);
  EXPECT_NE(lineWith(text, "BEFORE  req:4f9a3b2c").find("POST /checkout  201"), std::string::npos)
      << text;
  EXPECT_NE(lineWith(text, "AFTER   req:550e8400").find("500"), std::string::npos) << text;
  EXPECT_EQ(text.find("Different endpoints"), std::string::npos);

  std::string header = lineWith(text, "SPAN");
  EXPECT_LT(header.find("SPAN"), header.find("BEFORE"));
  EXPECT_LT(header.find("BEFORE"), header.find("AFTER"));

  EXPECT_NE(lineWith(text, "└─ create_order").find("81ms"), std::string::npos) << text;
  std::string insert = lineWith(text, "├─ db.insert(orders)");
  EXPECT_NE(insert.find("4ms"), std::string::npos) << text;
  EXPECT_NE(insert.find("— same"), std::string::npos) << text;
  std::string charge = lineWith(text, "├─ stripe.charge");
  EXPECT_NE(charge.find("68ms"), std::string::npos) << text;
  EXPECT_NE(charge.find("180ms timeout"), std::string::npos) << text;
  EXPECT_NE(charge.find("✗ changed"), std::string::npos) << text;
  EXPECT_NE(text.find("status: ok → error"), std::string::npos) << text;
  EXPECT_NE(text.find("error: — → Stripe API timeout after 10s"), std::string::npos) << text;
  std::string slack = lineWith(text, "└─ send_slack");
  EXPECT_NE(slack.find("7ms"), std::string::npos) << text;
  EXPECT_NE(slack.find("skipped"), std::string::npos) << text;
  EXPECT_NE(slack.find("✗ missing"), std::string::npos) << text;

  EXPECT_NE(text.find("MUTATION DIFF"), std::string::npos);
  std::string changed = lineWith(text, "✗ orders INSERT");
  EXPECT_NE(changed.find("key: 41 → 42"), std::string::npos) << text;
  EXPECT_NE(changed.find("state: committed → rolled back"), std::string::npos) << text;
  EXPECT_NE(lineWith(text, "− orders id=41").find("(committed)"), std::string::npos) << text;
  EXPECT_NE(lineWith(text, "+ orders id=42").find("(rolled back)"), std::string::npos) << text;

  std::string totals = lineWith(text, "── Spans:");
  EXPECT_NE(totals.find("1 same"), std::string::npos) << totals;
  EXPECT_NE(totals.find("3 changed"), std::string::npos) << totals;
  EXPECT_NE(totals.find("1 missing"), std::string::npos) << totals;
  EXPECT_NE(totals.find("Writes: 1 changed"), std::string::npos) << totals;
}

TEST(TraceDiffRenderTest, DifferentEndpointsSaySo) {
  json other = answer(record(kFailedId, "list_users", "GET", "/users", 200,
                             {span(1, 0, "gateway", 0, 2000), span(2, 1, "list_users", 100, 900)}));
  std::string text = renderTraceDiff(diffTraces(passingCheckout(), other), Color::kOff);
  EXPECT_NE(text.find("Different endpoints: POST /checkout (create_order) vs GET /users "
                      "(list_users)"),
            std::string::npos)
      << text;
  // The two functions' spans line up; the checkout's children are missing.
  EXPECT_NE(lineWith(text, "└─ list_users").find("✗ changed"), std::string::npos) << text;
  EXPECT_NE(text.find("name: create_order → list_users"), std::string::npos) << text;
  EXPECT_NE(lineWith(text, "stripe.charge").find("✗ missing"), std::string::npos) << text;
  EXPECT_NE(lineWith(text, "− orders id=41").find("before only"), std::string::npos) << text;
}

TEST(TraceDiffRenderTest, ColoursOnlyWhenAsked) {
  std::string text = renderTraceDiff(diffTraces(passingCheckout(), failingCheckout()), Color::kOn);
  EXPECT_NE(text.find("\x1b["), std::string::npos);
}

TEST(TraceDiffJsonTest, TheStructuredDiff) {
  json out = toJson(diffTraces(passingCheckout(), failingCheckout()));
  EXPECT_EQ(out["before"]["id"], kOkId);
  EXPECT_EQ(out["after"]["status"], 500);
  EXPECT_EQ(out["same_endpoint"], true);
  EXPECT_EQ(out["threshold"]["min_us"], 1000);
  ASSERT_EQ(out["spans"].size(), 5u);
  const json& charge = out["spans"][3];
  EXPECT_EQ(charge["name"], "stripe.charge");
  EXPECT_EQ(charge["verdict"], "changed");
  EXPECT_EQ(charge["timing"], "slower");
  EXPECT_EQ(charge["duration_delta_us"], 112000);
  EXPECT_EQ(charge["before"]["duration_us"], 68000);
  EXPECT_EQ(charge["after"]["error"], "Stripe API timeout after 10s");
  bool saw_status = false;
  for (const json& change : charge["changes"]) {
    if (change["field"] == "status") {
      saw_status = true;
      EXPECT_EQ(change["before"], "ok");
      EXPECT_EQ(change["after"], "error");
    }
  }
  EXPECT_TRUE(saw_status);
  EXPECT_EQ(out["spans"][4]["verdict"], "missing");
  ASSERT_EQ(out["mutations"].size(), 1u);
  EXPECT_EQ(out["mutations"][0]["verdict"], "changed");
  EXPECT_EQ(out["mutations"][0]["table"], "orders");
  EXPECT_EQ(out["totals"]["spans"]["changed"], 3);
  EXPECT_EQ(out["totals"]["mutations"]["changed"], 1);
}

}  // namespace
}  // namespace flux::cli

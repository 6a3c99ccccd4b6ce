#include "cli/tui/trace_debug.h"

#include <gtest/gtest.h>

#include <sstream>

namespace flux::cli {
namespace {

using nlohmann::json;
using tui::KeyCode;
using tui::KeyPress;

constexpr const char* kId = "019cd81c-4f3a-7e5f-8a6b-0000550e8400";
constexpr int64_t kStartUs = 1773134062250000;  // 2026-03-10 09:14:22.250 UTC

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

json mutation(int id, const char* table, const char* op, json pk, json old_row, json new_row,
              bool rolled_back = false, int rows_affected = 1) {
  return json{{"id", id},
              {"schema", "public"},
              {"table", table},
              {"pk", std::move(pk)},
              {"key_columns", {"id"}},
              {"op", op},
              {"old", std::move(old_row)},
              {"new", std::move(new_row)},
              {"changed_columns", json::array()},
              {"at", "2026-03-10T09:14:22.300000Z"},
              {"rolled_back", rolled_back},
              {"rows_affected", rows_affected}};
}

json dbOutput(int rows) {
  return json{{"command", "INSERT 0 1"}, {"rowCount", rows}, {"rows", json::array()}};
}

// A signup: two users inserted, an UPDATE that matched nothing, a charge that timed out, and a
// notification that never ran; the audit row a trigger wrote belongs to no statement.
json signup() {
  json record = {
      {"id", kId},
      {"kind", "http"},
      {"function", "create_user"},
      {"method", "POST"},
      {"path", "/signup"},
      {"status", 500},
      {"error", {{"message", "Stripe API timeout after 10s"}, {"location", "signup.ts:42:7"}}},
      {"started_at_us", kStartUs},
      {"duration_us", 44000},
      {"spans",
       {span(1, 0, "gateway", 0, 2000, "ok", nullptr, {{"method", "POST"}, {"path", "/signup"}},
             {{"status", 500}}),
        span(2, 1, "create_user", 100, 43000, "error", "Stripe API timeout after 10s",
             {{"method", "POST"}, {"path", "/signup"}}, {{"status", 500}}),
        span(3, 2, "db.insert(users)", 200, 3000, "ok", nullptr,
             {{"sql", "INSERT INTO \"users\" (email) VALUES ($1), ($2)"},
              {"params", {"a@b.com", "c@d.com"}}},
             dbOutput(2)),
        span(4, 2, "db.update(subscriptions)", 3300, 500, "ok", nullptr,
             {{"sql", "UPDATE subscriptions SET status = $1 WHERE customer_id = $2"}}, dbOutput(0)),
        span(5, 2, "stripe.charge", 4000, 10011000, "error", "Request timeout after 10011ms",
             {{"customer_id", "cus_123"}, {"amount", 2900}}, nullptr, "signup.ts:42:7"),
        span(6, 2, "send_slack", 40000, 0, "skipped")}},
  };
  return json{
      {"record", record},
      {"mutations",
       {mutation(1, "users", "INSERT", "42", nullptr, {{"id", 42}, {"email", "a@b.com"}}, true),
        mutation(2, "audit", "INSERT", "7", nullptr, {{"id", 7}, {"what", "signup"}}, true),
        mutation(3, "users", "INSERT", "43", nullptr, {{"id", 43}, {"email", "c@d.com"}}, true),
        mutation(4, "subscriptions", "UPDATE", nullptr, {{"customer_id", "cus_123"}}, nullptr, true,
                 0)}},
      {"mutations_total", 4},
      {"mutations_truncated", false}};
}

size_t stepNamed(const DebugTrace& trace, std::string_view name) {
  for (size_t i = 0; i < trace.steps.size(); ++i) {
    if (trace.steps[i].span.name == name) return i;
  }
  ADD_FAILURE() << "no step " << name;
  return 0;
}

// ---- Linking ----------------------------------------------------------------------------------

TEST(TraceDebugLinkTest, StatementsTakeTheirRowsInLogOrder) {
  DebugTrace trace = debugTrace(signup());
  ASSERT_EQ(trace.steps.size(), 6u);
  ASSERT_EQ(trace.owners.size(), 4u);
  size_t insert = stepNamed(trace, "db.insert(users)");
  size_t update = stepNamed(trace, "db.update(subscriptions)");
  size_t function = stepNamed(trace, "create_user");
  EXPECT_EQ(trace.owners[0].span, insert);
  EXPECT_EQ(trace.owners[0].link, MutationLink::kStatement);
  EXPECT_EQ(trace.owners[2].span, insert);         // the second row of the same INSERT
  EXPECT_EQ(trace.owners[3].span, update);         // the 0-row UPDATE
  EXPECT_FALSE(trace.owners[1].span.has_value());  // the trigger's audit row
  EXPECT_EQ(trace.owners[1].link, MutationLink::kRequest);
  EXPECT_EQ(trace.steps[insert].mutations, (std::vector<size_t>{0, 2}));
  EXPECT_EQ(trace.steps[update].mutations, (std::vector<size_t>{3}));
  EXPECT_EQ(trace.steps[function].mutations, (std::vector<size_t>{1}));  // the request's
  EXPECT_TRUE(trace.steps[insert].db_write);
  EXPECT_FALSE(trace.steps[stepNamed(trace, "stripe.charge")].db_write);
}

TEST(TraceDebugLinkTest, RawSqlAndExplicitLinks) {
  std::vector<TraceSpan> spans(4);
  spans[0].id = 1;
  spans[0].name = "fn";
  spans[1].id = 2;
  spans[1].name = "db.query";
  spans[1].start_us = 10;
  spans[1].input = {{"sql", "  insert into public.\"Orders\" (x) values (1)"}};
  spans[1].output = {{"rowCount", 1}};
  spans[2].id = 3;
  spans[2].name = "db.query";
  spans[2].start_us = 20;
  spans[2].input = {{"sql", "DELETE FROM ONLY items WHERE id = 1"}};  // no rowCount: all of them
  spans[3].id = 4;
  spans[3].name = "db.query";
  spans[3].start_us = 30;
  spans[3].status = "error";
  spans[3].error = "duplicate key";
  spans[3].input = {{"sql", "INSERT INTO Orders (x) VALUES (2)"}};
  json mutations = json::array({mutation(1, "items", "DELETE", "1", {{"id", 1}}, nullptr),
                                mutation(2, "Orders", "INSERT", "5", nullptr, {{"id", 5}}),
                                mutation(3, "items", "DELETE", "2", {{"id", 2}}, nullptr),
                                mutation(4, "orders", "INSERT", "6", nullptr, {{"id", 6}}),
                                mutation(5, "items", "DELETE", "3", {{"id", 3}}, nullptr)});
  mutations[4]["span"] = 1;  // linked by the record: rule 1 wins
  auto owners = linkMutations(spans, mutations);
  ASSERT_EQ(owners.size(), 5u);
  EXPECT_EQ(owners[1].span, 1u);  // "Orders", quoted, schema-qualified
  EXPECT_EQ(owners[0].span, 2u);
  EXPECT_EQ(owners[2].span, 2u);
  EXPECT_FALSE(owners[3].span.has_value());  // the failed INSERT takes nothing
  EXPECT_EQ(owners[4].span, 0u);
  EXPECT_EQ(owners[4].link, MutationLink::kSpan);
}

// ---- Rendering --------------------------------------------------------------------------------

TEST(TraceDebugRenderTest, AStepShowsItsInputOutputAndDbChanges) {
  DebugTrace trace = debugTrace(signup());
  std::string text = renderDebugStep(trace, stepNamed(trace, "db.insert(users)"),
                                     StepView::kCompact, Color::kOff, 100);
  EXPECT_NE(text.find("Span 3/6  db.insert(users)  ·  in create_user"), std::string::npos) << text;
  EXPECT_NE(text.find("Time:    3ms"), std::string::npos) << text;
  EXPECT_NE(text.find("Status:  ok"), std::string::npos) << text;
  EXPECT_NE(text.find("Input:   {\"params\":[\"a@b.com\",\"c@d.com\"]"), std::string::npos) << text;
  EXPECT_NE(text.find("Output:  {\"command\":\"INSERT 0 1\",\"rowCount\":2"), std::string::npos)
      << text;
  EXPECT_NE(text.find("DB:      users id=42  INSERT  email=a@b.com  (rolled back)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("         users id=43  INSERT  email=c@d.com"), std::string::npos) << text;
  EXPECT_EQ(text.find("audit"), std::string::npos) << text;
}

TEST(TraceDebugRenderTest, TheFailedSpanAndTheSkippedOne) {
  DebugTrace trace = debugTrace(signup());
  std::string charge = renderDebugStep(trace, stepNamed(trace, "stripe.charge"), StepView::kCompact,
                                       Color::kOff, 100);
  EXPECT_NE(charge.find("Span 5/6  stripe.charge"), std::string::npos) << charge;
  EXPECT_NE(charge.find("Time:    10.0s"), std::string::npos) << charge;
  EXPECT_NE(charge.find("Status:  error  ← timeout here"), std::string::npos) << charge;
  EXPECT_NE(charge.find("Input:   {\"amount\":2900,\"customer_id\":\"cus_123\"}"),
            std::string::npos)
      << charge;
  EXPECT_NE(charge.find("Error:   Request timeout after 10011ms"), std::string::npos) << charge;
  EXPECT_NE(charge.find("Where:   signup.ts:42"), std::string::npos) << charge;
  EXPECT_EQ(charge.find("Output:"), std::string::npos) << charge;
  EXPECT_EQ(charge.find("DB:"), std::string::npos) << charge;

  std::string skipped =
      renderDebugStep(trace, stepNamed(trace, "send_slack"), StepView::kCompact, Color::kOff, 100);
  EXPECT_NE(skipped.find("Span 6/6  send_slack"), std::string::npos) << skipped;
  EXPECT_NE(skipped.find("skipped (upstream error)"), std::string::npos) << skipped;
  EXPECT_EQ(skipped.find("Time:"), std::string::npos) << skipped;

  std::string function =
      renderDebugStep(trace, stepNamed(trace, "create_user"), StepView::kCompact, Color::kOff, 100);
  EXPECT_NE(function.find("audit id=7"), std::string::npos) << function;
  EXPECT_NE(function.find("no statement matched"), std::string::npos) << function;

  std::string update = renderDebugStep(trace, stepNamed(trace, "db.update(subscriptions)"),
                                       StepView::kCompact, Color::kOff, 100);
  EXPECT_NE(update.find("subscriptions  UPDATE  0 rows affected"), std::string::npos) << update;
}

TEST(TraceDebugRenderTest, ExpandedShowsWholeValues) {
  json answer = signup();
  std::string long_text(300, 'x');
  answer["record"]["spans"][2]["input"]["note"] = long_text;
  DebugTrace trace = debugTrace(answer);
  size_t insert = stepNamed(trace, "db.insert(users)");
  std::string compact = renderDebugStep(trace, insert, StepView::kCompact, Color::kOff, 80);
  std::string expanded = renderDebugStep(trace, insert, StepView::kExpanded, Color::kOff, 80);
  EXPECT_EQ(compact.find(long_text), std::string::npos);
  EXPECT_NE(compact.find("…"), std::string::npos);
  EXPECT_NE(expanded.find(long_text), std::string::npos) << expanded;
  EXPECT_NE(expanded.find("Input:   {\n"), std::string::npos) << expanded;
  EXPECT_NE(expanded.find("           \"params\": ["), std::string::npos) << expanded;
}

TEST(TraceDebugRenderTest, TheListingHasEveryStepAndNoEscapes) {
  std::string text = renderDebugListing(debugTrace(signup()), StepView::kCompact, Color::kOff);
  EXPECT_EQ(text.find("\x1b"), std::string::npos);
  EXPECT_NE(text.find("req:550e8400  POST /signup  500"), std::string::npos) << text;
  size_t at = 0;
  for (int i = 1; i <= 6; ++i) {
    size_t next = text.find("Span " + std::to_string(i) + "/6", at);
    ASSERT_NE(next, std::string::npos) << i << "\n" << text;
    at = next;
  }
  EXPECT_EQ(text.find("[q]uit"), std::string::npos);
}

TEST(TraceDebugRenderTest, TheScreenFitsTheTerminal) {
  json answer = signup();
  json big = json::object();
  for (int i = 0; i < 80; ++i) big["key" + std::to_string(i)] = i;
  answer["record"]["spans"][2]["input"] = big;
  DebugTrace trace = debugTrace(answer);
  DebugCursor cursor;
  cursor.index = stepNamed(trace, "db.insert(users)");
  cursor.view = StepView::kExpanded;
  std::string screen = renderDebugScreen(trace, cursor, Color::kOff, {24, 80});
  size_t lines = 0;
  for (char c : screen) lines += c == '\n';
  EXPECT_LE(lines, 24u);
  EXPECT_NE(screen.find("Span 3/6"), std::string::npos);
  EXPECT_NE(screen.find("more lines"), std::string::npos);
  EXPECT_NE(screen.find("[e] collapse"), std::string::npos);
  EXPECT_NE(screen.find("[q]uit"), std::string::npos);
}

TEST(TraceDebugJsonTest, StepsWithTheirMutations) {
  json out = debugJson(debugTrace(signup()));
  EXPECT_EQ(out["record"]["id"], kId);
  ASSERT_EQ(out["steps"].size(), 6u);
  const json& insert = out["steps"][2];
  EXPECT_EQ(insert["step"], 3);
  EXPECT_EQ(insert["of"], 6);
  EXPECT_EQ(insert["span"]["name"], "db.insert(users)");
  EXPECT_EQ(insert["span"]["depth"], 2);
  ASSERT_EQ(insert["mutations"].size(), 2u);
  EXPECT_EQ(insert["mutations"][0]["pk"], "42");
  EXPECT_EQ(insert["mutations"][0]["linked_by"], "statement");
  EXPECT_EQ(out["steps"][1]["mutations"][0]["linked_by"], "request");
  EXPECT_EQ(out["steps"][4]["span"]["root_cause"], true);
  EXPECT_EQ(out["steps"][4]["span"]["error"], "Request timeout after 10011ms");
}

// ---- Keys and the cursor ----------------------------------------------------------------------

TEST(TraceDebugKeysTest, KeysMoveTheCursor) {
  EXPECT_EQ(actionFor(KeyPress{KeyCode::kChar, 'n'}), DebugAction::kNext);
  EXPECT_EQ(actionFor(KeyPress{KeyCode::kRight, 0}), DebugAction::kNext);
  EXPECT_EQ(actionFor(KeyPress{KeyCode::kDown, 0}), DebugAction::kNext);
  EXPECT_EQ(actionFor(KeyPress{KeyCode::kChar, 'p'}), DebugAction::kPrev);
  EXPECT_EQ(actionFor(KeyPress{KeyCode::kLeft, 0}), DebugAction::kPrev);
  EXPECT_EQ(actionFor(KeyPress{KeyCode::kChar, 'e'}), DebugAction::kToggleExpand);
  EXPECT_EQ(actionFor(KeyPress{KeyCode::kChar, 'q'}), DebugAction::kQuit);
  EXPECT_EQ(actionFor(KeyPress{KeyCode::kCtrlC, 0}), DebugAction::kQuit);
  EXPECT_EQ(actionFor(KeyPress{KeyCode::kChar, 'z'}), DebugAction::kNone);

  DebugCursor cursor;
  EXPECT_FALSE(cursor.apply(DebugAction::kPrev, 3));  // already at the first
  EXPECT_TRUE(cursor.apply(DebugAction::kNext, 3));
  EXPECT_TRUE(cursor.apply(DebugAction::kNext, 3));
  EXPECT_FALSE(cursor.apply(DebugAction::kNext, 3));  // already at the last
  EXPECT_EQ(cursor.index, 2u);
  EXPECT_TRUE(cursor.apply(DebugAction::kFirst, 3));
  EXPECT_EQ(cursor.index, 0u);
  EXPECT_TRUE(cursor.apply(DebugAction::kToggleExpand, 3));
  EXPECT_EQ(cursor.view, StepView::kExpanded);
  EXPECT_TRUE(cursor.apply(DebugAction::kLast, 3));
  EXPECT_EQ(cursor.index, 2u);
  EXPECT_FALSE(cursor.apply(DebugAction::kNext, 0));
}

}  // namespace
}  // namespace flux::cli

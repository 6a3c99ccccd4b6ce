#include "cli/state_render.h"

#include <gtest/gtest.h>

#include <regex>

namespace flux::cli {
namespace {

using nlohmann::json;

constexpr const char* kReqInsert = "0195a1b2-0000-7000-8000-00004f9a3b2c";
constexpr const char* kReqName = "0195a1b2-0001-7000-8000-0000a3c91ef0";
constexpr const char* kReqFailed = "0195a1b2-0002-7000-8000-0000550e8400";

json mutation(int id, const char* request_id, const char* op, json old_row, json new_row,
              json changed, const char* at, bool rolled_back = false) {
  return json{{"id", id},
              {"request_id", request_id == nullptr ? json(nullptr) : json(request_id)},
              {"actor", nullptr},
              {"op", op},
              {"old", std::move(old_row)},
              {"new", std::move(new_row)},
              {"changed_columns", std::move(changed)},
              {"at", at},
              {"rolled_back", rolled_back},
              {"rows_affected", 1}};
}

// GET /_flux/state/history?table=users&id=42 for the product documents' story: created on a
// free plan, named, upgraded to pro, then a request that tried enterprise failed.
json usersHistory() {
  json created = {{"id", 42}, {"email", "a@b.com"}, {"name", nullptr}, {"plan", "free"}};
  json named = created;
  named["name"] = "Alice Smith";
  json pro = named;
  pro["plan"] = "pro";
  json enterprise = pro;
  enterprise["plan"] = "enterprise";
  return json{
      {"table", "users"},
      {"schema", "public"},
      {"pk", "42"},
      {"key_columns", {"id"}},
      {"total", 4},
      {"truncated", false},
      {"mutations",
       {
           mutation(1, kReqInsert, "INSERT", nullptr, created, json::array(),
                    "2026-03-10T12:00:00.000000Z"),
           mutation(2, kReqName, "UPDATE", created, named, {"name"}, "2026-03-10T14:21:59.250000Z"),
           mutation(3, kReqInsert, "UPDATE", named, pro, {"plan"}, "2026-03-10T14:22:01.100000Z"),
           mutation(4, kReqFailed, "UPDATE", pro, enterprise, {"plan"},
                    "2026-03-10T14:22:01.900000Z", /*rolled_back=*/true),
       }},
  };
}

json blameColumn(const char* column, json value, const char* request_id, const char* at,
                 bool rolled_back = false) {
  return json{{"column", column},
              {"value", std::move(value)},
              {"request_id", request_id == nullptr ? json(nullptr) : json(request_id)},
              {"actor", nullptr},
              {"at", at == nullptr ? json(nullptr) : json(at)},
              {"rolled_back", rolled_back},
              {"mutation_id", 1}};
}

json usersBlame() {
  return json{
      {"table", "users"},
      {"schema", "public"},
      {"pk", "42"},
      {"key_columns", {"id"}},
      {"deleted", false},
      {"truncated", false},
      {"columns",
       {
           blameColumn("id", 42, kReqInsert, "2026-03-10T12:00:00.000000Z"),
           blameColumn("email", "a@b.com", kReqInsert, "2026-03-10T12:00:00.000000Z"),
           blameColumn("name", "Alice Smith", kReqName, "2026-03-10T14:21:59.250000Z"),
           blameColumn("plan", "pro", kReqFailed, "2026-03-10T14:22:01.900000Z",
                       /*rolled_back=*/true),
       }},
  };
}

std::string withoutEscapes(const std::string& text) {
  return std::regex_replace(text, std::regex("\x1b\\[[0-9;]*m"), "");
}

TEST(StateRenderTest, HistoryOfTheSeedStory) {
  EXPECT_EQ(renderHistory(usersHistory(), Color::kOff),
            "  users id=42  (4 mutations)\n"
            "\n"
            "  2026-03-10 12:00:00  INSERT  email=a@b.com, plan=free               req:4f9a3b2c\n"
            "  2026-03-10 14:21:59  UPDATE  name: null → Alice Smith               req:a3c91ef0\n"
            "  2026-03-10 14:22:01  UPDATE  plan: free → pro                       req:4f9a3b2c\n"
            "  2026-03-10 14:22:01  UPDATE  plan: pro → enterprise  (rolled back)  req:550e8400\n");
}

TEST(StateRenderTest, BlameOfTheSeedStory) {
  EXPECT_EQ(renderBlame(usersBlame(), Color::kOff),
            "  email    a@b.com      req:4f9a3b2c  12:00:00\n"
            "  name     Alice Smith  req:a3c91ef0  14:21:59\n"
            "  plan     pro          req:550e8400  14:22:01  ✗ rolled back\n");
}

TEST(StateRenderTest, ColourWrapsTheSameText) {
  std::string history = renderHistory(usersHistory(), Color::kOn);
  EXPECT_NE(history.find("\x1b["), std::string::npos);
  EXPECT_EQ(withoutEscapes(history), renderHistory(usersHistory(), Color::kOff));
  std::string blame = renderBlame(usersBlame(), Color::kOn);
  EXPECT_NE(blame.find("\x1b[31m✗ rolled back"), std::string::npos);
  EXPECT_EQ(withoutEscapes(blame), renderBlame(usersBlame(), Color::kOff));
}

TEST(StateRenderTest, ExternalWritesZeroRowChangesAndDeletes) {
  json history = usersHistory();
  json& mutations = history["mutations"];
  json psql = mutation(5, nullptr, "UPDATE", mutations[2]["new"],
                       {{"id", 42}, {"email", "a@b.com"}, {"name", "Al"}, {"plan", "pro"}},
                       {"name"}, "2026-03-11T09:00:00.000000Z");
  psql["actor"] = "flux (psql)";
  mutations.push_back(psql);
  json zero = mutation(6, kReqName, "UPDATE", {{"id", 42}}, {{"plan", "gold"}}, json::array(),
                       "2026-03-11T09:30:00.000000Z");
  zero["rows_affected"] = 0;
  mutations.push_back(zero);
  mutations.push_back(mutation(7, kReqFailed, "DELETE", psql["new"], nullptr, json::array(),
                               "2026-03-11T10:00:00.000000Z"));
  history["total"] = 7;

  std::string text = renderHistory(history, Color::kOff);
  EXPECT_NE(text.find("  users id=42  (7 mutations)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  2026-03-11 09:00:00  UPDATE  name: Alice Smith → Al "), std::string::npos)
      << text;
  EXPECT_NE(text.find("  by flux (psql)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  2026-03-11 09:30:00  UPDATE  0 rows affected  where id=42 "),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("  2026-03-11 10:00:00  DELETE  email=a@b.com, name=Al, plan=pro "),
            std::string::npos)
      << text;
  // Every attribution starts in the same column.
  size_t column = std::string::npos;
  size_t start = text.find("\n\n") + 2;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    std::string line = text.substr(start, end - start);
    size_t at = line.find("req:") != std::string::npos ? line.find("req:") : line.find("by ");
    // Count code points up to the attribution ("→" is one column, three bytes).
    size_t width = 0;
    for (size_t i = 0; i < at; ++i) width += (static_cast<unsigned char>(line[i]) & 0xC0) != 0x80;
    if (column == std::string::npos) column = width;
    EXPECT_EQ(width, column) << line;
    start = end + 1;
  }
}

TEST(StateRenderTest, TruncatedHistorySaysHowManyAreHidden) {
  json history = usersHistory();
  history["total"] = 250;
  history["truncated"] = true;
  std::string text = renderHistory(history, Color::kOff);
  EXPECT_TRUE(text.starts_with("  users id=42  (latest 4 of 250 mutations)\n")) << text;
  EXPECT_NE(text.find("\n  246 older mutations not shown: --limit sets how many (up to 10000)\n"),
            std::string::npos)
      << text;
}

TEST(StateRenderTest, CompositeKeysAndSchemas) {
  json history = {
      {"table", "order_items"},
      {"schema", "shop"},
      {"pk", "7,2"},
      {"key_columns", {"order_id", "line"}},
      {"total", 1},
      {"mutations",
       {mutation(1, kReqInsert, "INSERT", nullptr, {{"order_id", 7}, {"line", 2}, {"qty", 1}},
                 json::array(), "2026-03-10T12:00:00Z")}},
  };
  EXPECT_EQ(renderHistory(history, Color::kOff),
            "  shop.order_items (order_id,line)=(7,2)  (1 mutation)\n"
            "\n"
            "  2026-03-10 12:00:00  INSERT  qty=1  req:4f9a3b2c\n");
}

TEST(StateRenderTest, DeletedRowAndUnrecordedColumns) {
  json deleted = {{"table", "users"},
                  {"schema", "public"},
                  {"pk", "42"},
                  {"key_columns", {"id"}},
                  {"deleted", true},
                  {"columns", json::array()},
                  {"deleted_by",
                   {{"request_id", nullptr},
                    {"actor", "flux (psql)"},
                    {"at", "2026-03-12T08:00:00.000000Z"},
                    {"rolled_back", false}}}};
  EXPECT_EQ(renderBlame(deleted, Color::kOff),
            "  users id=42 was deleted  2026-03-12 08:00:00  by flux (psql)\n"
            "  flux state history users --id 42 shows the values it had\n");

  json blame = usersBlame();
  blame["columns"][1] = blameColumn("email", "a@b.com", nullptr, nullptr);
  blame["columns"][2]["request_id"] = nullptr;
  blame["columns"][2]["actor"] = "flux (psql)";
  EXPECT_EQ(renderBlame(blame, Color::kOff),
            "  email    a@b.com      (not recorded)\n"
            "  name     Alice Smith  by flux (psql)  14:21:59\n"
            "  plan     pro          req:550e8400    14:22:01  ✗ rolled back\n");
}

TEST(StateRenderTest, ValuesAsPeopleReadThem) {
  EXPECT_EQ(formatValue("Alice"), "Alice");
  EXPECT_EQ(formatValue(nullptr), "null");
  EXPECT_EQ(formatValue(true), "true");
  EXPECT_EQ(formatValue(19.5), "19.5");
  EXPECT_EQ(formatValue(json{{"a", 1}, {"b", {1, 2}}}), R"({"a":1,"b":[1,2]})");
  EXPECT_EQ(formatValue("two\nlines\t!"), "two\\nlines\\t!");
  std::string long_text(100, 'x');
  std::string cut = formatValue(long_text);
  EXPECT_EQ(cut, std::string(59, 'x') + "…");
  std::string arrows;
  for (int i = 0; i < 70; ++i) arrows += "→";
  cut = formatValue(arrows);
  EXPECT_TRUE(cut.ends_with("→…"));
  EXPECT_EQ(cut.size(), 59 * 3 + 3u);
}

TEST(StateRenderTest, RequestHandlesAreTheLastEightHexDigits) {
  EXPECT_EQ(requestHandle(kReqFailed), "req:550e8400");
  EXPECT_EQ(requestHandle("0195A1B2-0002-7000-8000-0000550E8400"), "req:550E8400");
  EXPECT_EQ(requestHandle("abc"), "req:abc");
}

TEST(StateRenderTest, TimestampsInUtc) {
  EXPECT_EQ(formatUtcTimestamp("2026-03-10T14:22:01.123456Z"), "2026-03-10 14:22:01");
  EXPECT_EQ(formatUtcTimestamp("2026-03-10 14:22:01+00"), "2026-03-10 14:22:01");
  EXPECT_EQ(formatUtcTimestamp("2026-03-10T01:30:00+02:00"), "2026-03-09 23:30:00");
  EXPECT_EQ(formatUtcTimestamp("2026-12-31T23:30:00.5-0130"), "2027-01-01 01:00:00");
  EXPECT_EQ(formatUtcTimestamp("yesterday"), "yesterday");
  EXPECT_EQ(formatUtcTimestamp("2026-02-30T00:00:00Z"), "2026-02-30T00:00:00Z");
}

TEST(StateRenderTest, MalformedAnswersDoNotThrow) {
  EXPECT_NO_THROW(renderHistory(json::object(), Color::kOff));
  EXPECT_NO_THROW(renderHistory(json::array({1, 2}), Color::kOff));
  EXPECT_NO_THROW(renderBlame(json{{"columns", {1, "x", nullptr}}}, Color::kOff));
  EXPECT_NO_THROW(
      renderHistory(json{{"mutations", {{{"op", 3}, {"old", 1}, {"new", "x"}}}}}, Color::kOff));
}

}  // namespace
}  // namespace flux::cli

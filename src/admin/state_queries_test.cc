#include "admin/state_queries.h"

#include <gtest/gtest.h>

namespace flux::admin {
namespace {

using nlohmann::json;

constexpr const char* kReqInsert = "0195a1b2-0000-7000-8000-00004f9a3b2c";
constexpr const char* kReqName = "0195a1b2-0001-7000-8000-0000a3c91ef0";
constexpr const char* kReqFailed = "0195a1b2-0002-7000-8000-0000550e8400";

MutationRow mutation(int64_t id, std::optional<std::string> request_id, std::string op,
                     json old_row, json new_row, std::vector<std::string> changed, std::string at,
                     bool rolled_back = false) {
  MutationRow m;
  m.id = id;
  m.request_id = std::move(request_id);
  m.op = std::move(op);
  m.old_row = std::move(old_row);
  m.new_row = std::move(new_row);
  m.changed_columns = std::move(changed);
  m.at = std::move(at);
  m.rolled_back = rolled_back;
  return m;
}

// The users/42 story of the product documents: created with a free plan, named, upgraded to
// pro, then a request that tried to move it to enterprise failed and rolled back.
std::vector<MutationRow> usersStory() {
  json created = {{"id", 42}, {"email", "a@b.com"}, {"name", nullptr}, {"plan", "free"}};
  json named = created;
  named["name"] = "Alice Smith";
  json pro = named;
  pro["plan"] = "pro";
  json enterprise = pro;
  enterprise["plan"] = "enterprise";
  return {
      mutation(1, kReqInsert, "INSERT", nullptr, created, {}, "2026-03-10T12:00:00.000000Z"),
      mutation(2, kReqName, "UPDATE", created, named, {"name"}, "2026-03-10T14:21:59.000000Z"),
      mutation(3, kReqInsert, "UPDATE", named, pro, {"plan"}, "2026-03-10T14:22:01.100000Z"),
      mutation(4, kReqFailed, "UPDATE", pro, enterprise, {"plan"}, "2026-03-10T14:22:01.900000Z",
               /*rolled_back=*/true),
  };
}

const std::vector<std::string> kUserColumns = {"id", "email", "name", "plan"};

// ---- Requests -------------------------------------------------------------------------------

TEST(TableNameTest, DefaultsToPublicAndTakesASchema) {
  auto users = parseTableName("users");
  ASSERT_TRUE(users.has_value());
  EXPECT_EQ(users->schema, "public");
  EXPECT_EQ(users->table, "users");
  EXPECT_EQ(users->display(), "users");

  auto invoices = parseTableName("billing.invoices");
  ASSERT_TRUE(invoices.has_value());
  EXPECT_EQ(invoices->schema, "billing");
  EXPECT_EQ(invoices->table, "invoices");
  EXPECT_EQ(invoices->display(), "billing.invoices");
}

TEST(TableNameTest, RefusesMalformedNames) {
  for (const char* bad : {"", ".users", "billing.", "a.b.c"}) {
    auto name = parseTableName(bad);
    ASSERT_FALSE(name.has_value()) << bad;
    EXPECT_EQ(name.error().code, ErrorCode::kInvalidArgument);
  }
  EXPECT_FALSE(parseTableName(std::string(64, 'x')).has_value());
  EXPECT_TRUE(parseTableName(std::string(63, 'x')).has_value());
}

TEST(QueryStringTest, DecodesPercentAndPlus) {
  auto decoded = percentDecode("a%20b+c%2C%e2%86%92");
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(*decoded, "a b c,\xe2\x86\x92");
  for (const char* bad : {"%", "%2", "%zz", "x%g0"}) {
    EXPECT_FALSE(percentDecode(bad).has_value()) << bad;
  }
}

TEST(QueryStringTest, SplitsPairsInOrder) {
  auto params = parseQueryString("table=users&&id=4%262&flag&limit=");
  ASSERT_TRUE(params.has_value());
  ASSERT_EQ(params->size(), 4u);
  EXPECT_EQ((*params)[0], (std::pair<std::string, std::string>{"table", "users"}));
  EXPECT_EQ((*params)[1], (std::pair<std::string, std::string>{"id", "4&2"}));
  EXPECT_EQ((*params)[2], (std::pair<std::string, std::string>{"flag", ""}));
  EXPECT_EQ((*params)[3], (std::pair<std::string, std::string>{"limit", ""}));
}

TEST(StateRequestTest, ParsesHistoryWithDefaultsAndLimit) {
  auto request = parseStateRequest(StateEndpoint::kHistory, "table=users&id=42");
  ASSERT_TRUE(request.has_value()) << request.error().message;
  EXPECT_EQ(request->table.table, "users");
  EXPECT_EQ(request->pk, "42");
  EXPECT_EQ(request->limit, kDefaultHistoryLimit);

  request = parseStateRequest(StateEndpoint::kHistory, "id=7%2C2&table=shop.order_items&limit=3");
  ASSERT_TRUE(request.has_value()) << request.error().message;
  EXPECT_EQ(request->table.schema, "shop");
  EXPECT_EQ(request->table_text, "shop.order_items");
  EXPECT_EQ(request->pk, "7,2");
  EXPECT_EQ(request->limit, 3);
}

TEST(StateRequestTest, SaysWhatToPass) {
  auto missing_table = parseStateRequest(StateEndpoint::kBlame, "id=42");
  ASSERT_FALSE(missing_table.has_value());
  EXPECT_NE(missing_table.error().message.find("missing table"), std::string::npos);
  EXPECT_NE(missing_table.error().message.find("?table=users&id=42"), std::string::npos);

  auto missing_id = parseStateRequest(StateEndpoint::kBlame, "table=users&id=");
  ASSERT_FALSE(missing_id.has_value());
  EXPECT_NE(missing_id.error().message.find("missing id"), std::string::npos);

  for (const char* limit : {"0", "10001", "abc", "5x", "-1", ""}) {
    auto bad =
        parseStateRequest(StateEndpoint::kHistory, std::string("table=users&id=42&limit=") + limit);
    ASSERT_FALSE(bad.has_value()) << limit;
    EXPECT_NE(bad.error().message.find("from 1 to 10000"), std::string::npos);
  }
  EXPECT_TRUE(parseStateRequest(StateEndpoint::kHistory, "table=users&id=42&limit=10000"));
  EXPECT_FALSE(parseStateRequest(StateEndpoint::kBlame, "table=users&id=42&limit=5"));
  EXPECT_FALSE(parseStateRequest(StateEndpoint::kBlame, "table=users&id=42&id=43"));
  EXPECT_FALSE(parseStateRequest(StateEndpoint::kBlame, "table=users&id=4%002"));
  EXPECT_FALSE(parseStateRequest(StateEndpoint::kBlame, "table=users&id=%ff"));
  EXPECT_FALSE(parseStateRequest(StateEndpoint::kBlame, "table=users&id=%zz"));
  // Unknown parameters are ignored.
  EXPECT_TRUE(parseStateRequest(StateEndpoint::kBlame, "table=users&id=42&color=1"));
}

// ---- Parsing query results ------------------------------------------------------------------

data::QueryResult mutationResult() {
  data::QueryResult result;
  for (const char* name : {"id", "request_id", "actor", "op", "old", "new", "changed_columns", "at",
                           "rolled_back", "rows_affected", "total"}) {
    result.columns.push_back({name, 25});
  }
  // Newest first, as the SQL reads them.
  result.rows.push_back({"9", std::nullopt, "flux (psql)", "UPDATE", R"({"id": 42, "plan": "pro"})",
                         R"({"id": 42, "plan": "team"})", R"(["plan"])",
                         "2026-03-11T09:00:00.000000Z", "f", "1", "12"});
  result.rows.push_back({"7", kReqFailed, std::nullopt, "UPDATE", R"({"id": 42})",
                         R"({"plan": "x"})", std::nullopt, "2026-03-11T08:00:00.000000Z", "t", "0",
                         "12"});
  return result;
}

TEST(MutationPageTest, ParsesRowsOldestFirst) {
  auto page = parseMutationPage(mutationResult());
  ASSERT_TRUE(page.has_value()) << page.error().message;
  ASSERT_EQ(page->rows.size(), 2u);
  EXPECT_EQ(page->total, 12);
  EXPECT_TRUE(page->truncated());

  const MutationRow& zero = page->rows[0];
  EXPECT_EQ(zero.id, 7);
  EXPECT_EQ(zero.request_id, kReqFailed);
  EXPECT_FALSE(zero.actor.has_value());
  EXPECT_EQ(zero.rows_affected, 0);
  EXPECT_TRUE(zero.rolled_back);
  EXPECT_TRUE(zero.changed_columns.empty());
  EXPECT_EQ(zero.old_row, (json{{"id", 42}}));

  const MutationRow& external = page->rows[1];
  EXPECT_EQ(external.id, 9);
  EXPECT_FALSE(external.request_id.has_value());
  EXPECT_EQ(external.actor, "flux (psql)");
  EXPECT_EQ(external.changed_columns, std::vector<std::string>{"plan"});
  EXPECT_EQ(external.new_row["plan"], "team");
  EXPECT_EQ(external.at, "2026-03-11T09:00:00.000000Z");
  EXPECT_FALSE(external.rolled_back);
}

TEST(MutationPageTest, RejectsBadValuesAndMissingColumns) {
  data::QueryResult bad_json = mutationResult();
  bad_json.rows[0][4] = "{not json";
  EXPECT_FALSE(parseMutationPage(bad_json).has_value());

  data::QueryResult bad_id = mutationResult();
  bad_id.rows[0][0] = "nine";
  EXPECT_FALSE(parseMutationPage(bad_id).has_value());

  data::QueryResult missing = mutationResult();
  missing.columns[10].name = "count";
  auto page = parseMutationPage(missing);
  ASSERT_FALSE(page.has_value());
  EXPECT_EQ(page.error().code, ErrorCode::kInternal);

  data::QueryResult empty = mutationResult();
  empty.rows.clear();
  page = parseMutationPage(empty);
  ASSERT_TRUE(page.has_value());
  EXPECT_TRUE(page->rows.empty());
  EXPECT_FALSE(page->truncated());
}

TEST(TableInfoTest, ParsesColumnsAndKey) {
  data::QueryResult result;
  for (const char* name : {"known", "columns", "key_columns", "has_history"}) {
    result.columns.push_back({name, 25});
  }
  result.rows.push_back({"t", R"(["order_id", "line", "qty"])", R"(["order_id", "line"])", "f"});
  auto info = parseTableInfo(result);
  ASSERT_TRUE(info.has_value()) << info.error().message;
  EXPECT_TRUE(info->known);
  EXPECT_FALSE(info->has_history);
  EXPECT_EQ(info->columns, (std::vector<std::string>{"order_id", "line", "qty"}));
  EXPECT_EQ(info->key_columns, (std::vector<std::string>{"order_id", "line"}));

  result.rows[0] = {"f", std::nullopt, std::nullopt, "t"};
  info = parseTableInfo(result);
  ASSERT_TRUE(info.has_value());
  EXPECT_FALSE(info->known);
  EXPECT_TRUE(info->has_history);
  EXPECT_TRUE(info->columns.empty());
  EXPECT_TRUE(info->key_columns.empty());
}

// ---- History --------------------------------------------------------------------------------

TEST(HistoryTest, DescribesRowsByTheirKey) {
  TableName users{"public", "users"};
  EXPECT_EQ(describeRow(users, {"id"}, "42"), "users id=42");
  EXPECT_EQ(describeRow(users, {}, "42"), "users id=42");
  EXPECT_EQ(describeRow(TableName{"shop", "order_items"}, {"order_id", "line"}, "7,2"),
            "shop.order_items (order_id,line)=(7,2)");
}

TEST(HistoryTest, AnswersEveryFieldOldestFirst) {
  MutationPage page;
  page.rows = usersStory();
  page.total = 4;
  json history = historyJson(TableName{"public", "users"}, "42", {"id"}, page);
  EXPECT_EQ(history["table"], "users");
  EXPECT_EQ(history["schema"], "public");
  EXPECT_EQ(history["pk"], "42");
  EXPECT_EQ(history["key_columns"], json::array({"id"}));
  EXPECT_EQ(history["total"], 4);
  EXPECT_EQ(history["truncated"], false);
  ASSERT_EQ(history["mutations"].size(), 4u);
  const json& first = history["mutations"][0];
  EXPECT_EQ(first["id"], 1);
  EXPECT_EQ(first["op"], "INSERT");
  EXPECT_EQ(first["request_id"], kReqInsert);
  EXPECT_TRUE(first["actor"].is_null());
  EXPECT_TRUE(first["old"].is_null());
  EXPECT_EQ(first["new"]["email"], "a@b.com");
  EXPECT_EQ(first["changed_columns"], json::array());
  EXPECT_EQ(first["at"], "2026-03-10T12:00:00.000000Z");
  EXPECT_EQ(first["rows_affected"], 1);
  const json& last = history["mutations"][3];
  EXPECT_EQ(last["rolled_back"], true);
  EXPECT_EQ(last["changed_columns"], json::array({"plan"}));
  EXPECT_EQ(last["old"]["plan"], "pro");
  EXPECT_EQ(last["new"]["plan"], "enterprise");

  page.total = 9;
  EXPECT_EQ(historyJson(TableName{"public", "users"}, "42", {"id"}, page)["truncated"], true);
}

TEST(HistoryTest, KeepsZeroRowChangesAndExternalWrites) {
  MutationRow zero = mutation(5, kReqFailed, "UPDATE", {{"id", 7}}, {{"plan", "pro"}}, {},
                              "2026-03-10T15:00:00.000000Z");
  zero.rows_affected = 0;
  MutationRow external = mutation(6, std::nullopt, "DELETE", {{"id", 7}, {"plan", "free"}}, nullptr,
                                  {}, "2026-03-10T16:00:00.000000Z");
  external.actor = "flux (psql)";
  MutationPage page;
  page.rows = {zero, external};
  page.total = 2;
  json history = historyJson(TableName{"public", "users"}, "7", {"id"}, page);
  EXPECT_EQ(history["mutations"][0]["rows_affected"], 0);
  EXPECT_EQ(history["mutations"][0]["old"], (json{{"id", 7}}));
  EXPECT_EQ(history["mutations"][0]["new"], (json{{"plan", "pro"}}));
  EXPECT_TRUE(history["mutations"][1]["request_id"].is_null());
  EXPECT_EQ(history["mutations"][1]["actor"], "flux (psql)");
  EXPECT_TRUE(history["mutations"][1]["new"].is_null());
}

// ---- Blame ----------------------------------------------------------------------------------

TEST(BlameTest, TheLastWriterOwnsEachColumnEvenWhenItRolledBack) {
  Blame blame = blameRow(usersStory(), kUserColumns);
  ASSERT_EQ(blame.state, RowState::kExists);
  ASSERT_EQ(blame.columns.size(), 4u);

  EXPECT_EQ(blame.columns[0].column, "id");
  EXPECT_EQ(blame.columns[0].value, 42);
  ASSERT_TRUE(blame.columns[0].writer.has_value());
  EXPECT_EQ(blame.columns[0].writer->mutation_id, 1);

  EXPECT_EQ(blame.columns[1].column, "email");
  EXPECT_EQ(blame.columns[1].value, "a@b.com");
  EXPECT_EQ(blame.columns[1].writer->request_id, kReqInsert);
  EXPECT_EQ(blame.columns[1].writer->at, "2026-03-10T12:00:00.000000Z");

  EXPECT_EQ(blame.columns[2].column, "name");
  EXPECT_EQ(blame.columns[2].value, "Alice Smith");
  EXPECT_EQ(blame.columns[2].writer->request_id, kReqName);
  EXPECT_FALSE(blame.columns[2].writer->rolled_back);

  // The value is the committed one; the owner is the failed request that last wrote it.
  EXPECT_EQ(blame.columns[3].column, "plan");
  EXPECT_EQ(blame.columns[3].value, "pro");
  EXPECT_EQ(blame.columns[3].writer->request_id, kReqFailed);
  EXPECT_TRUE(blame.columns[3].writer->rolled_back);
  EXPECT_EQ(blame.columns[3].writer->mutation_id, 4);
}

TEST(BlameTest, ColumnsFollowTheTableOrderThenTheRowsOwn) {
  std::vector<MutationRow> rows = usersStory();
  // Without the table's order: the row's own key order.
  Blame blame = blameRow(rows, {});
  std::vector<std::string> names;
  for (const BlameEntry& entry : blame.columns) names.push_back(entry.column);
  EXPECT_EQ(names, (std::vector<std::string>{"email", "id", "name", "plan"}));

  // A column the table no longer lists (dropped since) comes after the listed ones.
  blame = blameRow(rows, {"plan", "id", "created_at", "email"});
  names.clear();
  for (const BlameEntry& entry : blame.columns) names.push_back(entry.column);
  EXPECT_EQ(names, (std::vector<std::string>{"plan", "id", "email", "name"}));
}

TEST(BlameTest, ADeletedRowSaysWhoDeletedIt) {
  std::vector<MutationRow> rows = usersStory();
  MutationRow deleted = mutation(5, std::nullopt, "DELETE", rows[2].new_row, nullptr, {},
                                 "2026-03-12T08:00:00.000000Z");
  deleted.actor = "flux (psql)";
  rows.push_back(deleted);
  Blame blame = blameRow(rows, kUserColumns);
  EXPECT_EQ(blame.state, RowState::kDeleted);
  EXPECT_TRUE(blame.columns.empty());
  ASSERT_TRUE(blame.deleted_by.has_value());
  EXPECT_EQ(blame.deleted_by->actor, "flux (psql)");
  EXPECT_FALSE(blame.deleted_by->request_id.has_value());
  EXPECT_EQ(blame.deleted_by->at, "2026-03-12T08:00:00.000000Z");

  json out = blameJson(TableName{"public", "users"}, "42", {"id"}, blame, false);
  EXPECT_EQ(out["deleted"], true);
  EXPECT_EQ(out["columns"], json::array());
  EXPECT_EQ(out["deleted_by"]["actor"], "flux (psql)");
  EXPECT_TRUE(out["deleted_by"]["request_id"].is_null());
}

TEST(BlameTest, ARolledBackDeleteLeavesTheRow) {
  std::vector<MutationRow> rows = usersStory();
  rows.push_back(mutation(5, kReqFailed, "DELETE", rows[2].new_row, nullptr, {},
                          "2026-03-12T08:00:00.000000Z", /*rolled_back=*/true));
  Blame blame = blameRow(rows, kUserColumns);
  ASSERT_EQ(blame.state, RowState::kExists);
  EXPECT_EQ(blame.columns[3].value, "pro");
  EXPECT_EQ(blame.columns[3].writer->mutation_id, 4);
}

TEST(BlameTest, AReinsertedRowStartsOver) {
  std::vector<MutationRow> rows = usersStory();
  rows.push_back(
      mutation(5, kReqName, "DELETE", rows[2].new_row, nullptr, {}, "2026-03-12T08:00:00.000000Z"));
  json again = {{"id", 42}, {"email", "new@b.com"}, {"plan", "free"}};
  rows.push_back(
      mutation(6, kReqFailed, "INSERT", nullptr, again, {}, "2026-03-12T09:00:00.000000Z"));
  Blame blame = blameRow(rows, kUserColumns);
  ASSERT_EQ(blame.state, RowState::kExists);
  ASSERT_EQ(blame.columns.size(), 3u);
  for (const BlameEntry& entry : blame.columns) {
    ASSERT_TRUE(entry.writer.has_value());
    EXPECT_EQ(entry.writer->mutation_id, 6) << entry.column;
  }
  EXPECT_EQ(blame.columns[1].value, "new@b.com");
}

TEST(BlameTest, ExternalWritesAreAttributedToTheirActor) {
  std::vector<MutationRow> rows = usersStory();
  json fixed = rows[2].new_row;
  fixed["email"] = "alice@example.com";
  MutationRow psql = mutation(5, std::nullopt, "UPDATE", rows[2].new_row, fixed, {"email"},
                              "2026-03-12T08:00:00.000000Z");
  psql.actor = "flux (psql)";
  rows.push_back(psql);
  Blame blame = blameRow(rows, kUserColumns);
  ASSERT_EQ(blame.state, RowState::kExists);
  EXPECT_EQ(blame.columns[1].value, "alice@example.com");
  EXPECT_FALSE(blame.columns[1].writer->request_id.has_value());
  EXPECT_EQ(blame.columns[1].writer->actor, "flux (psql)");

  json out = blameJson(TableName{"public", "users"}, "42", {"id"}, blame, false);
  EXPECT_TRUE(out["columns"][1]["request_id"].is_null());
  EXPECT_EQ(out["columns"][1]["actor"], "flux (psql)");
  EXPECT_EQ(out["columns"][3]["request_id"], kReqFailed);
  EXPECT_EQ(out["columns"][3]["rolled_back"], true);
  EXPECT_EQ(out["deleted"], false);
  EXPECT_FALSE(out.contains("deleted_by"));
}

TEST(BlameTest, ZeroRowChangesWriteNothing) {
  std::vector<MutationRow> rows = usersStory();
  MutationRow zero = mutation(5, kReqName, "UPDATE", {{"id", 42}}, {{"plan", "gold"}}, {"plan"},
                              "2026-03-12T08:00:00.000000Z");
  zero.rows_affected = 0;
  rows.push_back(zero);
  MutationRow zero_delete =
      mutation(6, kReqName, "DELETE", {{"id", 42}}, nullptr, {}, "2026-03-12T08:00:01.000000Z");
  zero_delete.rows_affected = 0;
  rows.push_back(zero_delete);
  Blame blame = blameRow(rows, kUserColumns);
  ASSERT_EQ(blame.state, RowState::kExists);
  EXPECT_EQ(blame.columns[3].value, "pro");
  EXPECT_EQ(blame.columns[3].writer->mutation_id, 4);
}

TEST(BlameTest, OnlyRolledBackChangesMeanTheRowNeverExisted) {
  json row = {{"order_id", 7}, {"line", 2}, {"qty", 1}};
  std::vector<MutationRow> rows = {
      mutation(1, kReqFailed, "INSERT", nullptr, row, {}, "2026-03-10T12:00:00.000000Z",
               /*rolled_back=*/true),
  };
  EXPECT_EQ(blameRow(rows, {"order_id", "line", "qty"}).state, RowState::kNeverExisted);
  EXPECT_EQ(blameRow({}, {}).state, RowState::kNeverExisted);
}

TEST(BlameTest, CompositeKeyRowsBlameLikeAnyOther) {
  json row = {{"order_id", 7}, {"line", 2}, {"qty", 1}};
  json more = row;
  more["qty"] = 3;
  std::vector<MutationRow> rows = {
      mutation(1, kReqInsert, "INSERT", nullptr, row, {}, "2026-03-10T12:00:00.000000Z"),
      mutation(2, kReqName, "UPDATE", row, more, {"qty"}, "2026-03-10T12:00:05.000000Z"),
  };
  Blame blame = blameRow(rows, {"order_id", "line", "qty"});
  ASSERT_EQ(blame.state, RowState::kExists);
  ASSERT_EQ(blame.columns.size(), 3u);
  EXPECT_EQ(blame.columns[2].value, 3);
  EXPECT_EQ(blame.columns[2].writer->request_id, kReqName);
  json out = blameJson(TableName{"shop", "order_items"}, "7,2", {"order_id", "line"}, blame, false);
  EXPECT_EQ(out["pk"], "7,2");
  EXPECT_EQ(out["schema"], "shop");
  EXPECT_EQ(out["key_columns"], json::array({"order_id", "line"}));
}

TEST(BlameTest, ARowOlderThanTheLogHasUnattributedColumns) {
  json before = {{"id", 1}, {"email", "x@y.z"}, {"plan", "free"}};
  json after = before;
  after["plan"] = "pro";
  // No changed_columns recorded: the columns whose values differ count as written.
  std::vector<MutationRow> rows = {
      mutation(1, kReqInsert, "UPDATE", before, after, {}, "2026-03-10T12:00:00.000000Z"),
  };
  Blame blame = blameRow(rows, {"id", "email", "plan"});
  ASSERT_EQ(blame.state, RowState::kExists);
  EXPECT_FALSE(blame.columns[0].writer.has_value());
  EXPECT_FALSE(blame.columns[1].writer.has_value());
  ASSERT_TRUE(blame.columns[2].writer.has_value());
  EXPECT_EQ(blame.columns[2].writer->request_id, kReqInsert);

  json out = blameJson(TableName{"public", "users"}, "1", {"id"}, blame, /*truncated=*/true);
  EXPECT_TRUE(out["columns"][1]["request_id"].is_null());
  EXPECT_TRUE(out["columns"][1]["at"].is_null());
  EXPECT_EQ(out["truncated"], true);
}

}  // namespace
}  // namespace flux::admin

// End-to-end tests of the data engine: ctx.db through real handlers, the mutation log in
// flux.state_mutations, `flux state history` / `blame` and the admin API, against the real
// `flux` binary and its embedded PostgreSQL.
//
// DataEngineTest shares ONE `flux dev` (SetUpTestSuite); each test works on its own rows (its
// own ids), so the tests do not depend on their order. Stopping and restarting PostgreSQL gets
// its own instance. The mutation log is read with psql over the cluster's unix socket (trust
// authentication), the CLI runs inside the project directory with NO_COLOR=1.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <expected>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/flux_process.h"
#include "support/http_client.h"
#include "support/postgres_tools.h"

namespace flux::tests {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr milliseconds kCommandTimeout{30000};

// ---- helpers ----

json parseJson(const std::string& text) {
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(parsed.is_discarded()) << "not JSON: " << text;
  return parsed;
}

// One request on a new connection; a transport failure is a test failure and a status of 0.
HttpResponse request(int port, std::string_view method, std::string_view path,
                     const HeaderList& headers = {}, std::string_view body = {},
                     milliseconds timeout = milliseconds(30000)) {
  auto response = httpRequest(port, method, path, headers, body, timeout);
  if (!response) {
    ADD_FAILURE() << method << " " << path << " failed: " << response.error();
    return HttpResponse{};
  }
  return std::move(*response);
}

HttpResponse postJson(int port, std::string_view path, const json& body) {
  return request(port, "POST", path, {{"content-type", "application/json"}}, body.dump());
}

// "req:" handle of a request id: its last 8 hex digits.
std::string handleOf(const std::string& request_id) {
  return "req:" + (request_id.size() >= 8 ? request_id.substr(request_id.size() - 8) : request_id);
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::vector<std::string> linesOf(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

// A query whose one row and column is a JSON value; null when it returns no row.
json pgJson(const FluxDev& dev, const std::string& sql) {
  auto out = psql(dev, sql);
  if (!out) {
    ADD_FAILURE() << out.error();
    return json();
  }
  if (out->empty()) return json();
  return parseJson(*out);
}

// flux.state_mutations rows matching `condition`, oldest first, as JSON objects.
json mutationsWhere(const FluxDev& dev, const std::string& condition) {
  return pgJson(dev,
                "select coalesce(json_agg(m order by m.id), '[]') from flux.state_mutations m "
                "where " +
                    condition);
}

json mutationsOfRequest(const FluxDev& dev, const std::string& request_id) {
  static const std::regex kUuid("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$");
  if (!std::regex_match(request_id, kUuid)) {
    ADD_FAILURE() << "not a request id: \"" << request_id << "\"";
    return json::array();
  }
  return mutationsWhere(dev, "request_id = '" + request_id + "'");
}

json usersRow(const FluxDev& dev, int64_t id) {
  return pgJson(dev, "select row_to_json(u) from users u where id = " + std::to_string(id));
}

struct CliRun {
  int status = -1;
  std::string output;  // stdout and stderr
};

// `flux <args>` in `cwd` with NO_COLOR=1 and without FLUX_URL / FLUX_TOKEN from our environment.
CliRun runCli(std::vector<std::string> args, const fs::path& cwd) {
  auto run = runProgram(FLUX_BINARY,
                        {.args = std::move(args),
                         .env = {{"NO_COLOR", "1"}, {"FLUX_URL", ""}, {"FLUX_TOKEN", ""}},
                         .cwd = cwd},
                        kCommandTimeout);
  if (!run) {
    ADD_FAILURE() << run.error();
    return {};
  }
  return {run->first, run->second};
}

// `flux state history` lines: "  2026-11-21 20:55:27  UPDATE  plan: free → pro  req:2b8c6ca8".
struct HistoryLine {
  std::string at, op, summary, by;
};

std::vector<HistoryLine> historyLines(const std::string& output) {
  static const std::regex kLine(
      "^  ([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2})  (INSERT|UPDATE|DELETE)\\s+"
      "(.*?)\\s+(req:[0-9a-f]{8}|by .+)$");
  std::vector<HistoryLine> out;
  for (const std::string& line : linesOf(output)) {
    std::smatch m;
    if (std::regex_match(line, m, kLine)) out.push_back({m[1], m[2], m[3], m[4]});
  }
  return out;
}

// `flux state blame` lines: "  plan     pro  req:2b8c6ca8  20:55:27  ✗ rolled back".
struct BlameLine {
  std::string column, value, by, time;
  bool rolled_back = false;
};

std::optional<BlameLine> blameLine(const std::string& output, const std::string& column) {
  static const std::regex kLine(
      "^  (\\S+)\\s+(.*?)\\s+(req:[0-9a-f]{8}|by .+?)\\s+([0-9]{2}:[0-9]{2}:[0-9]{2})(  ✗ "
      "rolled back)?$");
  for (const std::string& line : linesOf(output)) {
    std::smatch m;
    if (std::regex_match(line, m, kLine) && m[1] == column) {
      return BlameLine{m[1], m[2], m[3], m[4], m[5].matched};
    }
  }
  return std::nullopt;
}

// ---- the shared project ----

struct SourceFile {
  const char* path;
  const char* content;
};

const SourceFile kProjectFiles[] = {
    {"migrations/001_init.sql", R"sql(
create table users (id bigint primary key, email text unique, name text, plan text);
create table kinds (
  id serial primary key, i int, big bigint, num numeric(12, 2), flag bool, doc jsonb,
  at timestamptz, uid uuid, blob bytea, tags text[], nums int[], note text
);
create table accounts (id int primary key, owner text, balance int not null default 0);
create table notes (id serial primary key, body text);
create table gadgets (id int primary key, label text);
)sql"},

    // The whole ctx.db surface driven by a JSON body: {op, table, row | where, set | sql,
    // params, throwAfter}.
    {"functions/db/flux.json", R"({"route": "/db", "method": "POST"})"},
    {"functions/db/index.ts", R"ts(
type Input = {
  op: string;
  table?: string;
  row?: any;
  where?: Record<string, unknown>;
  set?: Record<string, unknown>;
  sql?: string;
  params?: unknown[];
  throwAfter?: string;
};

export default async function handler(req: Request, ctx: any) {
  const input: Input = await req.json();
  let result: unknown;
  switch (input.op) {
    case "insert":
      result = await ctx.db.insert(input.table, input.row);
      break;
    case "update":
      result = await ctx.db.update(input.table, input.where, input.set);
      break;
    case "delete":
      result = await ctx.db.delete(input.table, input.where);
      break;
    case "query":
      result = await ctx.db.query(input.sql, input.params ?? []);
      break;
    case "queryOne":
      result = { row: await ctx.db.queryOne(input.sql, input.params ?? []) };
      break;
    default:
      return new Response(`unknown op ${input.op}`, { status: 422 });
  }
  if (input.throwAfter) throw new Error(input.throwAfter);
  return result;
}
)ts"},

    // Every value type one way and back: written with ctx.db.insert, read with query/queryOne.
    {"functions/types/flux.json", R"({"route": "/types", "method": "POST"})"},
    {"functions/types/index.ts", R"ts(
function describe(row: Record<string, unknown> | null) {
  if (row === null) return null;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row)) {
    const type = value === null ? "null"
      : value instanceof Uint8Array ? "Uint8Array"
      : Array.isArray(value) ? "array"
      : typeof value;
    out[key] = { type, value: value instanceof Uint8Array ? Array.from(value) : value };
  }
  return out;
}

export default async function handler(req: Request, ctx: any) {
  const inserted = await ctx.db.insert("kinds", {
    i: 7,
    big: "9007199254740993",
    num: "1234.50",
    flag: true,
    doc: { a: [1, { b: null }], s: "é ✓", n: 1.5, t: true },
    at: new Date("2024-01-02T03:04:05.678Z"),
    uid: "0190c5f4-1f7b-7cde-8a7b-123456789abc",
    blob: new Uint8Array([0, 1, 127, 128, 255]),
    tags: ["a", "b,c", 'q"uote', "back\\slash", "NULL", null, "", "é ✓", "{x}"],
    nums: [1, -2, null, 3],
    note: null,
  });
  const selected = await ctx.db.queryOne("select * from kinds where id = $1", [inserted.id]);
  const listed = await ctx.db.query("select id from kinds where id = $1 or id = $2", [inserted.id, -1]);
  const missing = await ctx.db.queryOne("select * from kinds where id = $1", [-1]);
  const scalars = await ctx.db.queryOne(
    "select 42::bigint as small_big, 9007199254740993::bigint as big, " +
    "-9007199254740993::bigint as neg_big, 1234.50::numeric as num, 2.5::float8 as dbl, " +
    "'{}'::int[] as empty, array[1, 2]::bigint[] as bigs, null::text as nothing");
  const when = new Date("2025-06-07T08:09:10.123Z");
  const params = await ctx.db.queryOne(
    "select $1::bytea as blob, $2::jsonb as doc, $3::timestamptz as at, $4::int[] as nums, " +
    "$5::bool as flag, $6::text as nothing, $7::text[] as tags",
    [new Uint8Array([1, 2, 3]), { k: [1, "two"] }, when, [4, 5], false, null, ["x", "y,z"]]);
  return {
    inserted: describe(inserted),
    selected: describe(selected),
    listed: listed.length,
    listIsArray: Array.isArray(listed),
    missing,
    scalars: describe(scalars),
    params: describe(params),
    sameInstant: new Date(params.at).getTime() === when.getTime(),
  };
}
)ts"},

    // A released savepoint and a rolled-back one around the request's own write.
    {"functions/nested/flux.json", R"({"route": "/nested", "method": "POST"})"},
    {"functions/nested/index.ts", R"ts(
export default async function handler(req: Request, ctx: any) {
  const { id } = await req.json();
  await ctx.db.update("accounts", { id }, { owner: "outer" });
  let caught: string | null = null;
  try {
    await ctx.db.transaction(async (tx: any) => {
      await tx.update("accounts", { id }, { balance: 999 });
      throw new Error("inner failure");
    });
  } catch (error) {
    caught = (error as Error).message;
  }
  const released = await ctx.db.transaction(async (tx: any) =>
    tx.update("accounts", { id }, { balance: 7 }));
  const row = await ctx.db.queryOne("select * from accounts where id = $1", [id]);
  return { caught, releasedCount: released.count, row };
}
)ts"},
};

// The shared `flux dev`. Started once for the suite.
class DataEngineTest : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    dev_ = new FluxDev();
    for (const SourceFile& file : kProjectFiles) dev_->project().writeFile(file.path, file.content);
    FluxDev::Options options;
    options.workers = 2;
    auto started = dev_->start(std::move(options));
    if (!started) start_error_ = started.error();
  }

  static void TearDownTestSuite() {
    if (dev_->started()) {
      pid_t pid = dev_->process().pid();
      auto status = dev_->stop();
      EXPECT_EQ(status, std::optional<int>(0)) << dev_->output();
      EXPECT_FALSE(isAlive(pid));
      EXPECT_FALSE(fs::exists(dev_->root() / ".flux" / "dev.json"))
          << ".flux/dev.json outlived the server";
      EXPECT_TRUE(liveProcessesMentioning(dev_->pgDataDir().string()).empty());
    }
    delete dev_;
    dev_ = nullptr;
  }

 protected:
  void SetUp() override {
    ASSERT_TRUE(start_error_.empty()) << start_error_;
    ASSERT_TRUE(dev_->process().running()) << "flux dev exited:\n" << dev_->output();
  }

  static int port() { return dev_->port(); }
  static FluxDev& dev() { return *dev_; }

  static HttpResponse db(const json& input) { return postJson(port(), "/db", input); }

  // A /db call that must answer 200; its JSON body and request id.
  static std::pair<json, std::string> dbOk(const json& input) {
    HttpResponse r = db(input);
    EXPECT_EQ(r.status, 200) << input.dump() << " -> " << r.body;
    return {parseJson(r.body), r.header("x-request-id")};
  }

  static std::string token() {
    return parseJson(readFile(dev().root() / ".flux" / "dev.json")).value("token", "");
  }

  static CliRun cli(std::vector<std::string> args) { return runCli(std::move(args), dev().root()); }

  static inline FluxDev* dev_ = nullptr;
  static inline std::string start_error_;
};

// ---- 1. values and types through handlers ----

TEST_F(DataEngineTest, ValuesRoundTripWithTheirJsTypes) {
  HttpResponse r = postJson(port(), "/types", json::object());
  ASSERT_EQ(r.status, 200) << r.body;
  json body = parseJson(r.body);

  auto typed = [](const char* type, json value) { return json{{"type", type}, {"value", value}}; };
  json expected_row = {
      {"i", typed("number", 7)},
      {"big", typed("string", "9007199254740993")},
      {"num", typed("string", "1234.50")},
      {"flag", typed("boolean", true)},
      {"doc",
       typed("object", {{"a", {1, {{"b", nullptr}}}}, {"s", "é ✓"}, {"n", 1.5}, {"t", true}})},
      {"at", typed("string", "2024-01-02T03:04:05.678Z")},
      {"uid", typed("string", "0190c5f4-1f7b-7cde-8a7b-123456789abc")},
      {"blob", typed("Uint8Array", {0, 1, 127, 128, 255})},
      {"tags",
       typed("array", {"a", "b,c", "q\"uote", "back\\slash", "NULL", nullptr, "", "é ✓", "{x}"})},
      {"nums", typed("array", {1, -2, nullptr, 3})},
      {"note", typed("null", nullptr)},
  };
  for (const char* which : {"inserted", "selected"}) {
    SCOPED_TRACE(which);
    const json& row = body[which];
    ASSERT_TRUE(row.is_object()) << body.dump(2);
    EXPECT_EQ(row["id"]["type"], "number") << row.dump();
    for (const auto& [column, want] : expected_row.items()) {
      EXPECT_EQ(row[column], want) << "column " << column;
    }
  }
  EXPECT_EQ(body["inserted"]["id"], body["selected"]["id"]);
  EXPECT_EQ(body["listed"], 1);
  EXPECT_EQ(body["listIsArray"], true);
  EXPECT_TRUE(body.contains("missing") && body["missing"].is_null()) << "queryOne of no row";

  const json& s = body["scalars"];
  EXPECT_EQ(s["small_big"], typed("number", 42));
  EXPECT_EQ(s["big"], typed("string", "9007199254740993"));
  EXPECT_EQ(s["neg_big"], typed("string", "-9007199254740993"));
  EXPECT_EQ(s["num"], typed("string", "1234.50"));
  EXPECT_EQ(s["dbl"], typed("number", 2.5));
  EXPECT_EQ(s["empty"], typed("array", json::array()));
  EXPECT_EQ(s["bigs"], typed("array", {1, 2}));
  EXPECT_EQ(s["nothing"], typed("null", nullptr));

  // Parameters of query(): bound with their JS types.
  const json& p = body["params"];
  EXPECT_EQ(p["blob"], typed("Uint8Array", {1, 2, 3}));
  EXPECT_EQ(p["doc"], typed("object", {{"k", {1, "two"}}}));
  EXPECT_EQ(p["at"], typed("string", "2025-06-07T08:09:10.123Z"));
  EXPECT_EQ(body["sameInstant"], true);
  EXPECT_EQ(p["nums"], typed("array", {4, 5}));
  EXPECT_EQ(p["flag"], typed("boolean", false));
  EXPECT_EQ(p["nothing"], typed("null", nullptr));
  EXPECT_EQ(p["tags"], typed("array", {"x", "y,z"}));

  // What the database holds, as PostgreSQL itself prints it.
  ASSERT_TRUE(body["inserted"]["id"]["value"].is_number_integer());
  auto stored = psql(dev(),
                     "select big::text || '|' || num::text || '|' || encode(blob, 'hex') || "
                     "'|' || (at = '2024-01-02 03:04:05.678+00') || '|' || doc::text from "
                     "kinds where id = " +
                         std::to_string(body["inserted"]["id"]["value"].get<int64_t>()));
  ASSERT_TRUE(stored) << stored.error();
  EXPECT_EQ(*stored,
            "9007199254740993|1234.50|00017f80ff|true|"
            "{\"a\": [1, {\"b\": null}], \"n\": 1.5, \"s\": \"é ✓\", \"t\": true}\n");
}

TEST_F(DataEngineTest, InsertUpdateDeleteQueryReturnRowsAndCounts) {
  auto [inserted, insert_id] =
      dbOk({{"op", "insert"},
            {"table", "users"},
            {"row",
             {{{"id", 101}, {"email", "u101@example.com"}, {"plan", "free"}},
              {{"id", 102}, {"email", "u102@example.com"}}}}});
  EXPECT_EQ(
      inserted,
      json({{{"id", 101}, {"email", "u101@example.com"}, {"name", nullptr}, {"plan", "free"}},
            {{"id", 102}, {"email", "u102@example.com"}, {"name", nullptr}, {"plan", nullptr}}}));

  // An array in `where` is IN.
  auto [both, both_id] = dbOk({{"op", "update"},
                               {"table", "users"},
                               {"where", {{"id", {101, 102}}}},
                               {"set", {{"plan", "team"}}}});
  EXPECT_EQ(both["count"], 2) << both.dump();
  ASSERT_EQ(both["rows"].size(), 2u) << both.dump();
  for (const json& row : both["rows"]) EXPECT_EQ(row["plan"], "team") << both.dump();

  // null in `where` is IS NULL: it matches once, then no more.
  json name_where = {{"id", 102}, {"name", nullptr}};
  auto [named, named_id] = dbOk(
      {{"op", "update"}, {"table", "users"}, {"where", name_where}, {"set", {{"name", "Second"}}}});
  EXPECT_EQ(named, json({{"count", 1},
                         {"rows",
                          {{{"id", 102},
                            {"email", "u102@example.com"},
                            {"name", "Second"},
                            {"plan", "team"}}}}}));
  auto [again, again_id] = dbOk(
      {{"op", "update"}, {"table", "users"}, {"where", name_where}, {"set", {{"name", "Third"}}}});
  EXPECT_EQ(again, json({{"count", 0}, {"rows", json::array()}}));

  auto [one, one_id] =
      dbOk({{"op", "queryOne"}, {"sql", "select * from users where id = $1"}, {"params", {102}}});
  EXPECT_EQ(one["row"]["name"], "Second") << one.dump();
  auto [none, none_id] =
      dbOk({{"op", "queryOne"}, {"sql", "select * from users where id = $1"}, {"params", {-1}}});
  EXPECT_EQ(none, json({{"row", nullptr}}));
  auto [listed, listed_id] =
      dbOk({{"op", "query"},
            {"sql", "select id, plan from users where id = any($1) order by id"},
            {"params", {{101, 102}}}});
  EXPECT_EQ(listed, json({{{"id", 101}, {"plan", "team"}}, {{"id", 102}, {"plan", "team"}}}));

  auto [deleted, deleted_id] =
      dbOk({{"op", "delete"}, {"table", "users"}, {"where", {{"id", 101}}}});
  EXPECT_EQ(
      deleted,
      json(
          {{"count", 1},
           {"rows",
            {{{"id", 101}, {"email", "u101@example.com"}, {"name", nullptr}, {"plan", "team"}}}}}));
  auto [count, count_id] =
      dbOk({{"op", "query"}, {"sql", "select count(*) as n from users where id in (101, 102)"}});
  EXPECT_EQ(count, json({{{"n", 1}}})) << "count(*) is a bigint that fits: a number";
  EXPECT_TRUE(usersRow(dev(), 101).is_null());
  EXPECT_EQ(usersRow(dev(), 102)["name"], "Second");
}

TEST_F(DataEngineTest, DatabaseErrorsAnswerTheirStatus) {
  dbOk({{"op", "insert"},
        {"table", "users"},
        {"row", {{"id", 111}, {"email", "u111@example.com"}}}});

  struct Case {
    const char* what;
    json input;
    int status;
    const char* mentions;
  };
  const Case cases[] = {
      {"unique violation",
       {{"op", "insert"}, {"table", "users"}, {"row", {{"id", 111}, {"email", "other@x"}}}},
       409,
       "users_pkey"},
      {"bad value", {{"op", "insert"}, {"table", "users"}, {"row", {{"id", "abc"}}}}, 400, "abc"},
      {"unknown table",
       {{"op", "insert"}, {"table", "no_such_table"}, {"row", {{"id", 1}}}},
       400,
       "no_such_table"},
      {"unknown column",
       {{"op", "update"},
        {"table", "users"},
        {"where", {{"id", 111}}},
        {"set", {{"no_such_column", 1}}}},
       400,
       "no_such_column"},
      {"raw SQL error",
       {{"op", "query"}, {"sql", "select * from no_such_relation"}},
       500,
       "no_such_relation"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    HttpResponse r = db(c.input);
    EXPECT_EQ(r.status, c.status) << r.body;
    json body = parseJson(r.body);
    ASSERT_TRUE(body.is_object() && body.contains("error") && body["error"].is_string()) << r.body;
    EXPECT_NE(body["error"].get<std::string>().find(c.mentions), std::string::npos) << r.body;
  }
  EXPECT_EQ(usersRow(dev(), 111)["email"], "u111@example.com");
}

// ---- 2. the mutation log ----

TEST_F(DataEngineTest, EachChangeIsLoggedWithItsRequest) {
  auto [inserted, insert_id] =
      dbOk({{"op", "insert"},
            {"table", "users"},
            {"row", {{"id", 201}, {"email", "m201@example.com"}, {"plan", "free"}}}});
  auto [updated, update_id] = dbOk({{"op", "update"},
                                    {"table", "users"},
                                    {"where", {{"id", 201}}},
                                    {"set", {{"plan", "pro"}, {"name", "Mia"}}}});
  auto [deleted, delete_id] =
      dbOk({{"op", "delete"}, {"table", "users"}, {"where", {{"id", 201}}}});

  json before = {{"id", 201}, {"email", "m201@example.com"}, {"name", nullptr}, {"plan", "free"}};
  json after = {{"id", 201}, {"email", "m201@example.com"}, {"name", "Mia"}, {"plan", "pro"}};
  struct Expected {
    const char* op;
    json old_row, new_row, changed;
    std::string request_id;
  };
  const Expected expected[] = {
      {"INSERT", nullptr, before, {"email", "id", "name", "plan"}, insert_id},
      {"UPDATE", before, after, {"name", "plan"}, update_id},
      {"DELETE", after, nullptr, {"email", "id", "name", "plan"}, delete_id},
  };

  json rows = mutationsWhere(dev(), "table_name = 'users' and pk = '201'");
  ASSERT_EQ(rows.size(), 3u) << rows.dump(2);
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(expected[i].op);
    const json& m = rows[i];
    EXPECT_EQ(m["op"], expected[i].op);
    EXPECT_EQ(m["schema_name"], "public");
    EXPECT_EQ(m["old"], expected[i].old_row);
    EXPECT_EQ(m["new"], expected[i].new_row);
    EXPECT_EQ(m["changed_columns"], expected[i].changed);
    EXPECT_EQ(m["request_id"], expected[i].request_id) << "the response's x-request-id";
    EXPECT_EQ(m["rolled_back"], false);
    EXPECT_EQ(m["rows_affected"], 1);
    // Each request logged exactly this one change.
    EXPECT_EQ(mutationsOfRequest(dev(), expected[i].request_id).size(), 1u);
  }
}

// ---- 3. an error after a write ----

TEST_F(DataEngineTest, ThrowAfterUpdateRollsBackAndKeepsTheMutation) {
  dbOk({{"op", "insert"},
        {"table", "users"},
        {"row", {{"id", 301}, {"email", "r301@example.com"}, {"plan", "free"}}}});
  HttpResponse r = db({{"op", "update"},
                       {"table", "users"},
                       {"where", {{"id", 301}}},
                       {"set", {{"plan", "gold"}}},
                       {"throwAfter", "payment declined"}});
  EXPECT_EQ(r.status, 500) << r.body;
  std::string request_id = r.header("x-request-id");
  json body = parseJson(r.body);
  EXPECT_EQ(body.value("error", ""), "payment declined") << r.body;
  EXPECT_EQ(body.value("request_id", ""), request_id);

  EXPECT_EQ(usersRow(dev(), 301)["plan"], "free") << "the update was rolled back";

  json rows = mutationsOfRequest(dev(), request_id);
  ASSERT_EQ(rows.size(), 1u) << rows.dump(2);
  EXPECT_EQ(rows[0]["op"], "UPDATE");
  EXPECT_EQ(rows[0]["pk"], "301");
  EXPECT_EQ(rows[0]["old"]["plan"], "free");
  EXPECT_EQ(rows[0]["new"]["plan"], "gold");
  EXPECT_EQ(rows[0]["changed_columns"], json({"plan"}));
  EXPECT_EQ(rows[0]["rolled_back"], true);
  EXPECT_EQ(rows[0]["rows_affected"], 1);
}

// ---- 4. savepoints ----

TEST_F(DataEngineTest, TransactionRollsBackOnlyTheInnerPart) {
  dbOk({{"op", "insert"},
        {"table", "accounts"},
        {"row", {{"id", 401}, {"owner", "start"}, {"balance", 100}}}});
  HttpResponse r = postJson(port(), "/nested", {{"id", 401}});
  ASSERT_EQ(r.status, 200) << r.body;
  std::string request_id = r.header("x-request-id");
  json body = parseJson(r.body);
  EXPECT_EQ(body["caught"], "inner failure");
  EXPECT_EQ(body["releasedCount"], 1);
  EXPECT_EQ(body["row"], json({{"id", 401}, {"owner", "outer"}, {"balance", 7}}));

  EXPECT_EQ(pgJson(dev(), "select row_to_json(a) from accounts a where id = 401"),
            json({{"id", 401}, {"owner", "outer"}, {"balance", 7}}))
      << "the outer write and the released savepoint commit; the rolled-back one does not";

  json rows = mutationsOfRequest(dev(), request_id);
  ASSERT_EQ(rows.size(), 3u) << rows.dump(2);
  EXPECT_EQ(rows[0]["new"], json({{"id", 401}, {"owner", "outer"}, {"balance", 100}}));
  EXPECT_EQ(rows[0]["rolled_back"], false) << "the outer write";
  EXPECT_EQ(rows[1]["new"], json({{"id", 401}, {"owner", "outer"}, {"balance", 999}}));
  EXPECT_EQ(rows[1]["rolled_back"], true) << "the write inside the throwing transaction";
  EXPECT_EQ(rows[2]["old"], json({{"id", 401}, {"owner", "outer"}, {"balance", 100}}));
  EXPECT_EQ(rows[2]["new"], json({{"id", 401}, {"owner", "outer"}, {"balance", 7}}));
  EXPECT_EQ(rows[2]["rolled_back"], false) << "the write inside the released transaction";
  for (const json& m : rows) {
    EXPECT_EQ(m["op"], "UPDATE");
    EXPECT_EQ(m["pk"], "401");
    EXPECT_EQ(m["request_id"], request_id);
  }

  // History lists the changes in the order they happened; blame gives the current balance to
  // the released write, not to the rolled-back one.
  CliRun history = cli({"state", "history", "accounts", "--id", "401"});
  EXPECT_EQ(history.status, 0) << history.output;
  std::vector<std::string> summaries;
  for (const HistoryLine& line : historyLines(history.output)) summaries.push_back(line.summary);
  EXPECT_EQ(summaries,
            (std::vector<std::string>{"balance=100, owner=start", "owner: start → outer",
                                      "balance: 100 → 999  (rolled back)", "balance: 100 → 7"}))
      << history.output;
  CliRun blame = cli({"state", "blame", "accounts", "--id", "401"});
  EXPECT_EQ(blame.status, 0) << blame.output;
  auto balance = blameLine(blame.output, "balance");
  ASSERT_TRUE(balance) << blame.output;
  EXPECT_EQ(balance->value, "7");
  EXPECT_EQ(balance->by, handleOf(request_id));
  EXPECT_FALSE(balance->rolled_back) << blame.output;
}

// ---- 5. writes made outside Flux ----

TEST_F(DataEngineTest, PsqlWriteIsAttributedToItsSession) {
  dbOk({{"op", "insert"},
        {"table", "users"},
        {"row", {{"id", 501}, {"email", "p501@example.com"}}}});
  auto updated = psql(dev(), "update users set name = 'From psql' where id = 501", "psql-e2e");
  ASSERT_TRUE(updated) << updated.error();

  json rows = mutationsWhere(dev(), "table_name = 'users' and pk = '501'");
  ASSERT_EQ(rows.size(), 2u) << rows.dump(2);
  const json& m = rows[1];
  EXPECT_EQ(m["op"], "UPDATE");
  EXPECT_TRUE(m["request_id"].is_null()) << m.dump();
  ASSERT_TRUE(m["actor"].is_string()) << m.dump();
  EXPECT_NE(m["actor"].get<std::string>().find("psql-e2e"), std::string::npos) << m.dump();
  EXPECT_EQ(m["old"]["name"], nullptr);
  EXPECT_EQ(m["new"]["name"], "From psql");
  EXPECT_EQ(m["changed_columns"], json({"name"}));
  EXPECT_EQ(m["rolled_back"], false);

  CliRun history = cli({"state", "history", "users", "--id", "501"});
  EXPECT_EQ(history.status, 0) << history.output;
  std::vector<HistoryLine> lines = historyLines(history.output);
  ASSERT_EQ(lines.size(), 2u) << history.output;
  EXPECT_EQ(lines[1].summary, "name: null → From psql") << history.output;
  EXPECT_NE(lines[1].by.find("psql-e2e"), std::string::npos) << history.output;
}

// ---- 6. updates that match nothing ----

TEST_F(DataEngineTest, ZeroRowUpdateIsRecorded) {
  auto [result, request_id] = dbOk({{"op", "update"},
                                    {"table", "users"},
                                    {"where", {{"id", 990001}}},
                                    {"set", {{"plan", "ghost"}}}});
  EXPECT_EQ(result, json({{"count", 0}, {"rows", json::array()}}));

  json rows = mutationsOfRequest(dev(), request_id);
  ASSERT_EQ(rows.size(), 1u) << rows.dump(2);
  EXPECT_EQ(rows[0]["op"], "UPDATE");
  EXPECT_EQ(rows[0]["rows_affected"], 0);
  EXPECT_TRUE(rows[0]["pk"].is_null()) << rows[0].dump();
  EXPECT_EQ(rows[0]["old"], json({{"id", 990001}})) << "old is the where object";
  EXPECT_EQ(rows[0]["new"], json({{"plan", "ghost"}})) << "new is the set object";
  EXPECT_EQ(rows[0]["rolled_back"], false);

  CliRun history = cli({"state", "history", "users", "--id", "990001"});
  EXPECT_EQ(history.status, 0) << history.output;
  EXPECT_NE(history.output.find("users id=990001  (1 mutation)"), std::string::npos)
      << history.output;
  std::vector<HistoryLine> lines = historyLines(history.output);
  ASSERT_EQ(lines.size(), 1u) << history.output;
  EXPECT_EQ(lines[0].op, "UPDATE");
  EXPECT_NE(lines[0].summary.find("0 rows affected"), std::string::npos) << history.output;
  EXPECT_EQ(lines[0].by, handleOf(request_id));

  // A DELETE that matched nothing, and a 0-row UPDATE in a request that fails.
  auto [removed, delete_id] =
      dbOk({{"op", "delete"}, {"table", "users"}, {"where", {{"id", 990002}}}});
  EXPECT_EQ(removed, json({{"count", 0}, {"rows", json::array()}}));
  json deletes = mutationsOfRequest(dev(), delete_id);
  ASSERT_EQ(deletes.size(), 1u) << deletes.dump(2);
  EXPECT_EQ(deletes[0]["op"], "DELETE");
  EXPECT_EQ(deletes[0]["rows_affected"], 0);
  EXPECT_EQ(deletes[0]["old"], json({{"id", 990002}}));
  EXPECT_TRUE(deletes[0]["new"].is_null()) << deletes[0].dump();
  EXPECT_EQ(deletes[0]["rolled_back"], false);

  HttpResponse failed = db({{"op", "update"},
                            {"table", "users"},
                            {"where", {{"id", 990003}}},
                            {"set", {{"plan", "ghost"}}},
                            {"throwAfter", "nothing to update"}});
  EXPECT_EQ(failed.status, 500) << failed.body;
  json failed_rows = mutationsOfRequest(dev(), failed.header("x-request-id"));
  ASSERT_EQ(failed_rows.size(), 1u) << failed_rows.dump(2);
  EXPECT_EQ(failed_rows[0]["rows_affected"], 0);
  EXPECT_EQ(failed_rows[0]["rolled_back"], true);
}

// ---- 7. injection ----

TEST_F(DataEngineTest, InjectionAttemptsFailSafely) {
  dbOk({{"op", "insert"},
        {"table", "users"},
        {"row", {{"id", 701}, {"email", "i701@example.com"}}}});
  const std::string snapshot_sql = "select coalesce(json_agg(u order by u.id), '[]') from users u";
  json before = pgJson(dev(), snapshot_sql);
  ASSERT_FALSE(before.empty());

  struct Attempt {
    const char* what;
    json input;
    const char* named;  // what the error message must name
  };
  const Attempt attempts[] = {
      {"table name",
       {{"op", "insert"}, {"table", "users; drop table users"}, {"row", {{"id", 1}}}},
       "users; drop table users"},
      {"quoted table name",
       {{"op", "delete"}, {"table", "users\" where true; --"}, {"where", {{"id", 1}}}},
       "users\" where true; --"},
      {"where key",
       {{"op", "update"},
        {"table", "users"},
        {"where", {{"id\" = 1 or \"1", 1}}},
        {"set", {{"plan", "pwned"}}}},
       "id\" = 1 or \"1"},
      {"delete where key",
       {{"op", "delete"}, {"table", "users"}, {"where", {{"id\" = 1 or \"1", 1}}}},
       "id\" = 1 or \"1"},
      {"set key with a double quote",
       {{"op", "update"},
        {"table", "users"},
        {"where", {{"id", 701}}},
        {"set", {{"plan\" = 'pwned', \"name", "x"}}}},
       "plan\" = 'pwned', \"name"},
      {"set key with a single quote",
       {{"op", "update"}, {"table", "users"}, {"where", {{"id", 701}}}, {"set", {{"pl'an", "x"}}}},
       "pl'an"},
      {"insert column",
       {{"op", "insert"},
        {"table", "users"},
        {"row", {{"id", 702}, {"email) values (1, 'x'); drop table users; --", "x"}}}},
       "email) values (1, 'x'); drop table users; --"},
  };
  for (const Attempt& a : attempts) {
    SCOPED_TRACE(a.what);
    HttpResponse r = db(a.input);
    EXPECT_EQ(r.status, 400) << r.body;
    json body = parseJson(r.body);
    ASSERT_TRUE(body.is_object() && body["error"].is_string()) << r.body;
    EXPECT_NE(body["error"].get<std::string>().find(a.named), std::string::npos)
        << "the message names the bad identifier: " << r.body;
  }

  // Values are bound parameters: stored and matched literally.
  const std::vector<std::string> values = {"' or 1=1 --", "Robert'); drop table users;--", "$1",
                                           "\\'; select pg_sleep(10); --"};
  for (const std::string& value : values) {
    auto [row, insert_id] =
        dbOk({{"op", "insert"}, {"table", "notes"}, {"row", {{"body", value}}}});
    EXPECT_EQ(row["body"], value);
    auto stored = psql(
        dev(), "select body from notes where id = " + std::to_string(row["id"].get<int64_t>()));
    ASSERT_TRUE(stored) << stored.error();
    EXPECT_EQ(*stored, value + "\n");
  }
  auto [matched, match_id] = dbOk({{"op", "update"},
                                   {"table", "users"},
                                   {"where", {{"email", "' or 1=1 --"}}},
                                   {"set", {{"plan", "pwned"}}}});
  EXPECT_EQ(matched["count"], 0) << matched.dump();
  auto [bound, bound_id] =
      dbOk({{"op", "query"},
            {"sql", "select $1::text as v, count(*)::int as n from users where email = $1"},
            {"params", {"' or 1=1 --"}}});
  EXPECT_EQ(bound, json({{{"v", "' or 1=1 --"}, {"n", 0}}}));
  auto [text, text_id] =
      dbOk({{"op", "query"}, {"sql", "select $1 as v"}, {"params", {"1; drop table users; --"}}});
  EXPECT_EQ(text, json({{{"v", "1; drop table users; --"}}}));

  // The admin API takes the table and key as values too.
  HeaderList auth = {{"authorization", "Bearer " + token()}};
  HttpResponse admin_table = request(
      port(), "GET", "/_flux/state/history?table=users%3B%20drop%20table%20users&id=1", auth);
  EXPECT_EQ(admin_table.status, 404) << admin_table.body;
  HttpResponse admin_id =
      request(port(), "GET", "/_flux/state/blame?table=users&id=%27%20or%201%3D1%20--", auth);
  EXPECT_EQ(admin_id.status, 404) << admin_id.body;
  EXPECT_EQ(admin_id.body.find("i701@example.com"), std::string::npos) << admin_id.body;

  EXPECT_EQ(pgJson(dev(), "select to_json(to_regclass('public.users') is not null)"), true);
  EXPECT_EQ(pgJson(dev(), snapshot_sql), before) << "the users table changed";
}

// ---- 9. the story of users id=42 ----

TEST_F(DataEngineTest, HistoryAndBlameTellTheStoryOfARow) {
  auto [created, insert_id] = dbOk({{"op", "insert"},
                                    {"table", "users"},
                                    {"row", {{"id", 42}, {"email", "a@b.com"}, {"plan", "free"}}}});
  auto [renamed, rename_id] = dbOk({{"op", "update"},
                                    {"table", "users"},
                                    {"where", {{"id", 42}}},
                                    {"set", {{"name", "Alice Smith"}}}});
  auto [upgraded, upgrade_id] = dbOk(
      {{"op", "update"}, {"table", "users"}, {"where", {{"id", 42}}}, {"set", {{"plan", "pro"}}}});
  HttpResponse failed = db({{"op", "update"},
                            {"table", "users"},
                            {"where", {{"id", 42}}},
                            {"set", {{"plan", "enterprise"}}},
                            {"throwAfter", "card declined"}});
  EXPECT_EQ(failed.status, 500) << failed.body;
  std::string failed_id = failed.header("x-request-id");

  CliRun history = cli({"state", "history", "users", "--id", "42"});
  EXPECT_EQ(history.status, 0) << history.output;
  EXPECT_NE(history.output.find("  users id=42  (4 mutations)\n"), std::string::npos)
      << history.output;
  std::vector<HistoryLine> lines = historyLines(history.output);
  ASSERT_EQ(lines.size(), 4u) << history.output;
  const HistoryLine expected[] = {
      {"", "INSERT", "email=a@b.com, plan=free", handleOf(insert_id)},
      {"", "UPDATE", "name: null → Alice Smith", handleOf(rename_id)},
      {"", "UPDATE", "plan: free → pro", handleOf(upgrade_id)},
      {"", "UPDATE", "plan: pro → enterprise  (rolled back)", handleOf(failed_id)},
  };
  for (size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(expected[i].summary);
    EXPECT_EQ(lines[i].op, expected[i].op) << history.output;
    EXPECT_EQ(lines[i].summary, expected[i].summary) << history.output;
    EXPECT_EQ(lines[i].by, expected[i].by) << history.output;
  }
  EXPECT_EQ(history.output.find("\x1b["), std::string::npos) << "NO_COLOR is set";

  CliRun blame = cli({"state", "blame", "users", "--id", "42"});
  EXPECT_EQ(blame.status, 0) << blame.output;
  auto plan = blameLine(blame.output, "plan");
  ASSERT_TRUE(plan) << blame.output;
  EXPECT_EQ(plan->value, "pro");
  EXPECT_EQ(plan->by, handleOf(failed_id));
  EXPECT_TRUE(plan->rolled_back) << blame.output;
  auto name = blameLine(blame.output, "name");
  ASSERT_TRUE(name) << blame.output;
  EXPECT_EQ(name->value, "Alice Smith");
  EXPECT_EQ(name->by, handleOf(rename_id));
  EXPECT_FALSE(name->rolled_back) << blame.output;
  auto email = blameLine(blame.output, "email");
  ASSERT_TRUE(email) << blame.output;
  EXPECT_EQ(email->value, "a@b.com");
  EXPECT_EQ(email->by, handleOf(insert_id));

  // --json: the admin API's answer.
  CliRun history_json = cli({"state", "history", "users", "--id", "42", "--json"});
  EXPECT_EQ(history_json.status, 0) << history_json.output;
  json h = parseJson(history_json.output);
  EXPECT_EQ(h["table"], "users");
  EXPECT_EQ(h["pk"], "42");
  EXPECT_EQ(h["key_columns"], json({"id"}));
  EXPECT_EQ(h["total"], 4);
  ASSERT_EQ(h["mutations"].size(), 4u) << h.dump(2);
  const std::string ids[] = {insert_id, rename_id, upgrade_id, failed_id};
  const char* ops[] = {"INSERT", "UPDATE", "UPDATE", "UPDATE"};
  for (size_t i = 0; i < 4; ++i) {
    const json& m = h["mutations"][i];
    EXPECT_EQ(m["op"], ops[i]) << m.dump();
    EXPECT_EQ(m["request_id"], ids[i]) << m.dump();
    EXPECT_EQ(m["rolled_back"], i == 3) << m.dump();
  }
  EXPECT_EQ(h["mutations"][1]["old"]["name"], nullptr);
  EXPECT_EQ(h["mutations"][1]["new"]["name"], "Alice Smith");
  EXPECT_EQ(h["mutations"][3]["old"]["plan"], "pro");
  EXPECT_EQ(h["mutations"][3]["new"]["plan"], "enterprise");

  CliRun blame_json = cli({"state", "blame", "users", "--id", "42", "--json"});
  EXPECT_EQ(blame_json.status, 0) << blame_json.output;
  json b = parseJson(blame_json.output);
  EXPECT_EQ(b["deleted"], false);
  std::map<std::string, json> columns;
  for (const json& c : b["columns"]) columns[c.value("column", "")] = c;
  ASSERT_TRUE(columns.contains("plan") && columns.contains("name")) << b.dump(2);
  EXPECT_EQ(columns["plan"]["value"], "pro");
  EXPECT_EQ(columns["plan"]["request_id"], failed_id);
  EXPECT_EQ(columns["plan"]["rolled_back"], true);
  EXPECT_EQ(columns["name"]["value"], "Alice Smith");
  EXPECT_EQ(columns["name"]["request_id"], rename_id);
  EXPECT_EQ(columns["name"]["rolled_back"], false);
  EXPECT_EQ(columns["email"]["request_id"], insert_id);

  EXPECT_EQ(usersRow(dev(), 42),
            json({{"id", 42}, {"email", "a@b.com"}, {"name", "Alice Smith"}, {"plan", "pro"}}));
}

// ---- 10. the CLI's errors, the admin token, dev.json ----

TEST_F(DataEngineTest, CliAndAdminApiRefuseWhatTheyShould) {
  dbOk({{"op", "insert"}, {"table", "users"}, {"row", {{"id", 1001}, {"email", "c1001@x"}}}});

  CliRun table = cli({"state", "history", "no_such_table", "--id", "1"});
  EXPECT_EQ(table.status, 1) << table.output;
  EXPECT_NE(table.output.find("no_such_table"), std::string::npos) << table.output;

  CliRun row = cli({"state", "history", "users", "--id", "987654321"});
  EXPECT_EQ(row.status, 1) << row.output;
  EXPECT_NE(row.output.find("987654321"), std::string::npos) << row.output;
  CliRun blame_row = cli({"state", "blame", "users", "--id", "987654321"});
  EXPECT_EQ(blame_row.status, 1) << blame_row.output;

  CliRun wrong_token = cli({"state", "history", "users", "--id", "1001", "--token", "wrong"});
  EXPECT_EQ(wrong_token.status, 1) << wrong_token.output;
  EXPECT_NE(wrong_token.output.find("missing or wrong admin token"), std::string::npos)
      << wrong_token.output;
  EXPECT_EQ(wrong_token.output.find("c1001@x"), std::string::npos) << wrong_token.output;

  CliRun no_server = cli(
      {"state", "history", "users", "--id", "1001", "--url", "http://127.0.0.1:1", "--token", "x"});
  EXPECT_EQ(no_server.status, 2) << no_server.output;
  CliRun no_project = runCli({"state", "blame", "users", "--id", "1001"}, "/");
  EXPECT_EQ(no_project.status, 2) << no_project.output;

  // The right token from elsewhere works: the refusals above are about what they say.
  CliRun by_flags = runCli({"state", "history", "users", "--id", "1001", "--url",
                            "http://127.0.0.1:" + std::to_string(port()), "--token", token()},
                           "/");
  EXPECT_EQ(by_flags.status, 0) << by_flags.output;
  EXPECT_NE(by_flags.output.find("email=c1001@x"), std::string::npos) << by_flags.output;

  for (const char* path :
       {"/_flux/state/history?table=users&id=1001", "/_flux/state/blame?table=users&id=1001"}) {
    SCOPED_TRACE(path);
    for (const HeaderList& headers : {HeaderList{}, HeaderList{{"authorization", "Bearer wrong"}},
                                      HeaderList{{"authorization", token()}}}) {
      HttpResponse r = request(port(), "GET", path, headers);
      EXPECT_EQ(r.status, 401) << r.body;
      json body = parseJson(r.body);
      ASSERT_TRUE(body.is_object()) << r.body;
      EXPECT_EQ(body.size(), 1u) << "only the error: " << r.body;
      EXPECT_TRUE(body.contains("error")) << r.body;
      EXPECT_EQ(r.body.find("c1001@x"), std::string::npos) << r.body;
    }
    HttpResponse ok = request(port(), "GET", path, {{"authorization", "Bearer " + token()}});
    EXPECT_EQ(ok.status, 200) << ok.body;
    EXPECT_NE(ok.body.find("c1001@x"), std::string::npos) << ok.body;
  }

  fs::path dev_json = dev().root() / ".flux" / "dev.json";
  struct stat st {};
  ASSERT_EQ(stat(dev_json.c_str(), &st), 0) << dev_json;
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  json file = parseJson(readFile(dev_json));
  EXPECT_EQ(file.value("url", ""), "http://127.0.0.1:" + std::to_string(port()));
  EXPECT_EQ(file.value("pid", 0), dev().process().pid());
  EXPECT_GE(file.value("token", "").size(), 32u);
}

// ---- flux bugs found while writing these tests (each asserts the correct behaviour) ----

// timestamptz 'infinity' reaches JS as "infinityZ" (an ISO-ish suffix glued onto the special
// value); PostgreSQL's own spelling, "infinity" / "-infinity", is what a caller can test for.
TEST_F(DataEngineTest, TimestamptzInfinityIsNotMangled) {
  auto [rows, request_id] =
      dbOk({{"op", "query"},
            {"sql", "select 'infinity'::timestamptz as up, '-infinity'::timestamptz as down"}});
  EXPECT_EQ(rows, json({{{"up", "infinity"}, {"down", "-infinity"}}}));
}

// A column added while flux dev runs (psql, or a DDL query) must be writable through
// ctx.db.insert/update: the worker's catalogue is reloaded for unknown tables, but not for
// unknown columns of a known table.
TEST_F(DataEngineTest, ColumnAddedWhileRunningIsWritable) {
  // Load the catalogue on both workers (connections are spread over them).
  for (int i = 0; i < 6; ++i) {
    dbOk({{"op", "insert"}, {"table", "gadgets"}, {"row", {{"id", 1100 + i}, {"label", "warm"}}}});
  }
  auto altered = psql(dev(), "alter table gadgets add column color text");
  ASSERT_TRUE(altered) << altered.error();
  for (int i = 0; i < 4; ++i) {
    HttpResponse r = db({{"op", "insert"},
                         {"table", "gadgets"},
                         {"row", {{"id", 1200 + i}, {"label", "new"}, {"color", "red"}}}});
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status == 200) {
      EXPECT_EQ(parseJson(r.body)["color"], "red") << r.body;
    }
  }
}

// ---- 8. PostgreSQL going away and coming back (its own flux dev) ----

TEST(DataEngineRecoveryTest, PostgresGoingAwayIs503AndTheServerRecovers) {
  FluxDev dev;
  dev.project().writeFile("migrations/001_init.sql",
                          "create table pings (id serial primary key, note text);\n");
  dev.project().writeFile("functions/ping/index.ts", R"ts(
export default async function handler(req: Request, ctx: any) {
  return await ctx.db.insert("pings", { note: "ping" });
}
)ts");
  dev.project().writeFile("functions/hi/flux.json", R"({"method": "GET"})");
  dev.project().writeFile("functions/hi/index.ts", "export default () => \"hi\";\n");
  auto started = dev.start();
  ASSERT_TRUE(started) << started.error();

  fs::path dev_json = dev.root() / ".flux" / "dev.json";
  struct stat st {};
  ASSERT_EQ(stat(dev_json.c_str(), &st), 0) << dev_json;
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(parseJson(readFile(dev_json)).value("pid", 0), dev.process().pid());
  std::string token = parseJson(readFile(dev_json)).value("token", "");

  ASSERT_EQ(request(dev.port(), "POST", "/ping").status, 200);

  fs::path data_dir = dev.pgDataDir();
  ClusterControl cluster(dev);
  auto stopped = cluster.stop();
  ASSERT_TRUE(stopped) << stopped.error();

  // Every db request answers 503 at once (both workers), while other functions keep working.
  for (int i = 0; i < 4; ++i) {
    auto begin = steady_clock::now();
    HttpResponse r = request(dev.port(), "POST", "/ping", {}, {}, milliseconds(5000));
    EXPECT_EQ(r.status, 503) << r.body;
    EXPECT_LT(steady_clock::now() - begin, std::chrono::seconds(5));
    EXPECT_NE(parseJson(r.body).value("error", "").find("PostgreSQL"), std::string::npos) << r.body;
  }
  HttpResponse hi = request(dev.port(), "GET", "/hi", {}, {}, milliseconds(5000));
  EXPECT_EQ(hi.status, 200) << hi.body;
  EXPECT_EQ(hi.body, "hi");
  HttpResponse admin = request(dev.port(), "GET", "/_flux/state/history?table=pings&id=1",
                               {{"authorization", "Bearer " + token}}, {}, milliseconds(5000));
  EXPECT_EQ(admin.status, 503) << admin.body;

  auto restarted = cluster.start();
  ASSERT_TRUE(restarted) << restarted.error();

  // Back within ~10 s: several successes in a row, so both workers' pools are up again.
  auto deadline = steady_clock::now() + std::chrono::seconds(10);
  int in_a_row = 0;
  HttpResponse last;
  while (in_a_row < 6 && steady_clock::now() < deadline) {
    last = request(dev.port(), "POST", "/ping", {}, {}, milliseconds(5000));
    in_a_row = last.status == 200 ? in_a_row + 1 : 0;
    if (in_a_row == 0) std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_EQ(in_a_row, 6) << "db requests still fail 10 s after PostgreSQL came back: "
                         << last.status << " " << last.body;

  // Writes are logged again.
  HttpResponse ping = request(dev.port(), "POST", "/ping");
  ASSERT_EQ(ping.status, 200) << ping.body;
  json logged = mutationsOfRequest(dev, ping.header("x-request-id"));
  ASSERT_EQ(logged.size(), 1u) << logged.dump(2);
  EXPECT_EQ(logged[0]["table_name"], "pings");
  EXPECT_EQ(logged[0]["rolled_back"], false);

  pid_t pid = dev.process().pid();
  EXPECT_EQ(dev.stop(), std::optional<int>(0)) << dev.output();
  EXPECT_FALSE(isAlive(pid));
  EXPECT_FALSE(fs::exists(dev_json)) << ".flux/dev.json outlived the server";
  EXPECT_TRUE(liveProcessesMentioning(data_dir.string()).empty())
      << "the restarted PostgreSQL outlived flux";
}

}  // namespace
}  // namespace flux::tests

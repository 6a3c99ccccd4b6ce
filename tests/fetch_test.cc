// End-to-end tests of fetch(), ctx.span, the IO journal and skipped spans: the real `flux dev`
// (one worker, so that the span shape learned by one request is the one the next finds) with
// its embedded PostgreSQL, and a fake payment provider in this process (FakeHttpServer, plain
// HTTP and HTTPS with a self-signed certificate trusted through FLUX_FETCH_EXTRA_CA_FILE).
// Records are read back through the admin API (GET /_flux/records/<id>, token from
// <project>/.flux/dev.json); the recorder writes them after the response, so reads poll.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/fake_http_server.h"
#include "support/flux_process.h"
#include "support/http_client.h"

namespace flux::tests {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using std::chrono::milliseconds;

struct SourceFile {
  const char* path;
  const char* content;
};

// Line numbers matter: the tests check span locations against them.
const SourceFile kProjectFiles[] = {
    {"migrations/001_orders.sql",
     "create table orders (id serial primary key, item text not null, status text not null,\n"
     "  charge text);\n"},
    // POST /checkout {item, route}: the seeds' scenario. `route` picks the provider's answer.
    {"functions/checkout/index.ts",
     "export default async function handler(req: Request, ctx: any) {\n"
     "  const body = await req.json();\n"
     "  const order = await ctx.db.insert(\"orders\", { item: body.item, status: \"pending\" });\n"
     "  const res = await fetch(`${ctx.env.FLUX_PAY}/${body.route}`, {\n"
     "    method: \"POST\",\n"
     "    headers: { \"content-type\": \"application/json\", authorization: \"Bearer sk_1\" },\n"
     "    body: JSON.stringify({ order: order.id, amount: 4200 }),\n"
     "    signal: AbortSignal.timeout(200),\n"
     "  });\n"
     "  const payment = await res.json();\n"
     "  await ctx.db.update(\"orders\", { id: order.id }, { status: \"paid\", charge: payment.id "
     "});\n"
     "  return { order: order.id, payment };\n"
     "}\n"},
    {"functions/checkout/flux.json", R"({"method": "POST"})"},
    // GET /get?path=/json: a plain GET, everything a Response offers.
    {"functions/get/index.ts",
     "export default async (req: Request, ctx: any) => {\n"
     "  const path = new URL(req.url).searchParams.get(\"path\") ?? \"/json\";\n"
     "  const res = await fetch(ctx.env.FLUX_PAY + path);\n"
     "  return { status: res.status, statusText: res.statusText, ok: res.ok,\n"
     "    type: res.headers.get(\"content-type\"), url: res.url, redirected: res.redirected,\n"
     "    body: await res.json() };\n"
     "};\n"},
    {"functions/get/flux.json", R"({"method": "GET"})"},
    // POST /bodies: each body kind, echoed back by the provider.
    {"functions/bodies/index.ts",
     "export default async (req: Request, ctx: any) => {\n"
     "  const url = ctx.env.FLUX_PAY + \"/echo\";\n"
     "  const post = async (body: any, headers: any = {}) => {\n"
     "    const r = await fetch(url, { method: \"PUT\", body, headers });\n"
     "    return await r.json();\n"
     "  };\n"
     "  const bytes = new Uint8Array([104, 105, 0, 255]);\n"
     "  return {\n"
     "    text: await post(\"plain text\"),\n"
     "    json: await post(JSON.stringify({ a: 1 }), { \"content-type\": \"application/json\" }),\n"
     "    bytes: await post(bytes),\n"
     "    buffer: await post(bytes.buffer),\n"
     "    form: await post(new URLSearchParams({ q: \"a b\", n: \"1\" })),\n"
     "    headers: await post(\"x\", new Headers([[\"x-one\", \"1\"], [\"x-two\", \"2\"]])),\n"
     "    array: await (await fetch(url, { method: \"POST\", headers: [[\"x-arr\", \"y\"]] }))"
     ".json(),\n"
     "    request: await (await fetch(new Request(url, { method: \"DELETE\" }))).json(),\n"
     "    bin: Array.from(new Uint8Array(await (await fetch(ctx.env.FLUX_PAY + \"/binary\"))"
     ".arrayBuffer())),\n"
     "  };\n"
     "};\n"},
    // POST /nested: ctx.span blocks around db calls and a fetch.
    {"functions/nested/index.ts",
     "export default async (req: Request, ctx: any) => {\n"
     "  const value = await ctx.span(\"outer\", async () => {\n"
     "    const inner = await ctx.span(\"inner\", async () => {\n"
     "      await new Promise((r) => setTimeout(r, 5));\n"
     "      const r = await fetch(ctx.env.FLUX_PAY + \"/json\");\n"
     "      ctx.log(\"inside inner\");\n"
     "      return (await r.json()).ok;\n"
     "    });\n"
     "    await ctx.db.query(\"select 1 as one\");\n"
     "    await new Promise((r) => setTimeout(() => { ctx.log(\"timer in outer\"); r(0); }, 1));\n"
     "    return inner;\n"
     "  });\n"
     "  const after = await ctx.db.query(\"select 2 as two\");\n"
     "  const sync = await ctx.span(\"sync\", () => 7);\n"
     "  ctx.log(\"outside\");\n"
     "  return { value, two: after[0].two, sync };\n"
     "};\n"},
    // POST /spanerror: the callback of a ctx.span throws.
    {"functions/spanerror/index.ts",
     "export default async (req: Request, ctx: any) => {\n"
     "  await ctx.span(\"validate\", async () => {\n"
     "    throw new Error(\"card declined: insufficient funds\");\n"
     "  });\n"
     "  return \"unreachable\";\n"
     "};\n"},
    // POST /journal: every nondeterministic source once, in a known order.
    {"functions/journal/index.ts",
     "export default async (req: Request, ctx: any) => {\n"
     "  const t = Date.now();\n"
     "  const r = Math.random();\n"
     "  const u = crypto.randomUUID();\n"
     "  const bytes = crypto.getRandomValues(new Uint8Array(4));\n"
     "  const res = await fetch(ctx.env.FLUX_PAY + \"/json\");\n"
     "  const j = await res.json();\n"
     "  const rows = await ctx.db.query(\"select 41 + 1 as answer\");\n"
     "  const d = new Date();\n"
     "  return { t, r, u, bytes: Array.from(bytes), ok: j.ok, answer: rows[0].answer,\n"
     "    d: d.getTime() };\n"
     "};\n"},
    // POST /failures: fetch errors, caught: {name, message} of each.
    {"functions/failures/index.ts",
     "const caught = async (p: Promise<unknown>) => {\n"
     "  try { await p; return null; } catch (e: any) {\n"
     "    return { name: e.name, message: e.message, typeError: e instanceof TypeError,\n"
     "      domException: e instanceof DOMException };\n"
     "  }\n"
     "};\n"
     "export default async (req: Request, ctx: any) => {\n"
     "  const pay = ctx.env.FLUX_PAY;\n"
     "  const controller = new AbortController();\n"
     "  const pending = fetch(pay + \"/hang\", { signal: controller.signal });\n"
     "  setTimeout(() => controller.abort(), 50);\n"
     "  return {\n"
     "    refused: await caught(fetch(`http://127.0.0.1:${ctx.env.FLUX_CLOSED_PORT}/x`)),\n"
     "    aborted: await caught(pending),\n"
     "    preAborted: await caught(fetch(pay + \"/json\", { signal: AbortSignal.abort() })),\n"
     "    timeout: await caught(fetch(pay + \"/hang\", { signal: AbortSignal.timeout(100) })),\n"
     "    scheme: await caught(fetch(\"ftp://example.com/\")),\n"
     "    relative: await caught(fetch(\"/relative\")),\n"
     "    getBody: await caught(fetch(pay + \"/json\", { body: \"x\" })),\n"
     "    tooBig: await caught(fetch(pay + \"/big\")),\n"
     "    tooManyRedirects: await caught(fetch(pay + \"/loop\")),\n"
     "    redirectError: await caught(fetch(pay + \"/redirect\", { redirect: \"error\" })),\n"
     "    manual: (await fetch(pay + \"/redirect\", { redirect: \"manual\" })).status,\n"
     "  };\n"
     "};\n"},
    // POST /uncaught: a network error nobody catches.
    {"functions/uncaught/index.ts",
     "export default async (req: Request, ctx: any) => {\n"
     "  await fetch(`http://127.0.0.1:${ctx.env.FLUX_CLOSED_PORT}/charge`);\n"
     "  return \"unreachable\";\n"
     "};\n"},
    // POST /concurrent {tag, delay}: requests interleaving on one context.
    {"functions/concurrent/index.ts",
     "export default async (req: Request, ctx: any) => {\n"
     "  const { tag, delay } = await req.json();\n"
     "  return await ctx.span(\"work-\" + tag, async () => {\n"
     "    await new Promise((r) => setTimeout(r, delay));\n"
     "    const res = await fetch(ctx.env.FLUX_PAY + \"/json\");\n"
     "    ctx.log(\"tag \" + tag);\n"
     "    return { tag, ok: (await res.json()).ok, r: Math.random() };\n"
     "  });\n"
     "};\n"},
    // POST /leak: a fetch the handler does not wait for (it lets it reach the provider first).
    {"functions/leak/index.ts",
     "export default async (req: Request, ctx: any) => {\n"
     "  fetch(ctx.env.FLUX_PAY + \"/hang\").catch(() => {});\n"
     "  await new Promise((resolve) => setTimeout(resolve, 100));\n"
     "  return \"answered\";\n"
     "};\n"},
    // POST /tls: HTTPS to the provider's TLS port, by name (trusted) and by IP (not in the
    // certificate).
    {"functions/tls/index.ts",
     "export default async (req: Request, ctx: any) => {\n"
     "  const good = await fetch(`https://localhost:${ctx.env.FLUX_TLS_PORT}/json`);\n"
     "  let bad: any = null;\n"
     "  try { await fetch(`https://127.0.0.1:${ctx.env.FLUX_TLS_PORT}/json`); }\n"
     "  catch (e: any) { bad = { name: e.name, message: e.message }; }\n"
     "  return { status: good.status, body: await good.json(), bad };\n"
     "};\n"},
};

json parseJson(const std::string& text) {
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(parsed.is_discarded()) << "not JSON: " << text;
  return parsed;
}

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// A port nothing listens on (bound, read, released).
int closedPort() {
  auto server =
      FakeHttpServer::start([](const FakeHttpServer::Request&) { return FakeHttpServer::Reply{}; });
  return server ? (*server)->port() : 1;
}

// The fake payment provider's routes.
FakeHttpServer::Reply provider(const FakeHttpServer::Request& request) {
  using Reply = FakeHttpServer::Reply;
  const std::string& t = request.target;
  if (t == "/charge") {
    json in = json::parse(request.body, nullptr, false);
    json out = {{"id", "ch_" + (in.is_object() ? in.value("order", json(0)).dump() : "x")},
                {"status", "succeeded"},
                {"amount", in.is_object() ? in.value("amount", 0) : 0}};
    return Reply{200, {{"content-type", "application/json"}, {"x-provider", "fake"}}, out.dump()};
  }
  if (t == "/json") {
    return Reply{200, {{"content-type", "application/json"}}, R"({"ok":true,"n":1})"};
  }
  if (t == "/echo") {
    json out = {{"method", request.method},
                {"type", request.header("content-type")},
                {"length", request.header("content-length")},
                {"x", request.header("x-one") + request.header("x-two") + request.header("x-arr")},
                {"body", request.body}};
    return Reply{200,
                 {{"content-type", "application/json"}},
                 out.dump(-1, ' ', false, json::error_handler_t::replace)};
  }
  if (t == "/binary") return Reply{200, {}, std::string("\x00\x01\xfe\xff", 4)};
  if (t == "/redirect") return Reply{302, {{"location", "/json"}}, ""};
  if (t == "/loop") return Reply{302, {{"location", "/loop"}}, ""};
  if (t == "/big") return Reply{200, {}, std::string((32u << 20) + 1, 'x')};
  if (t == "/hang") {
    Reply hang;
    hang.hang = true;
    return hang;
  }
  return Reply{404, {}, "no route " + t};
}

class FetchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    certificate_dir_ = new TempProject();
    auto files = makeSelfSignedCertificate(certificate_dir_->root().string(), "localhost");
    if (files) {
      auto tls = FakeHttpServer::start(provider, *files);
      if (tls) tls_server_ = tls->release();
    } else {
      tls_error_ = files.error();
    }
    auto server = FakeHttpServer::start(provider);
    if (!server) {
      start_error_ = server.error();
      return;
    }
    server_ = server->release();
    closed_port_ = closedPort();

    dev_ = new FluxDev();
    for (const SourceFile& file : kProjectFiles) dev_->project().writeFile(file.path, file.content);
    FluxDev::Options options;
    options.workers = 1;
    options.env = {{"FLUX_PAY", "http://127.0.0.1:" + std::to_string(server_->port())},
                   {"FLUX_CLOSED_PORT", std::to_string(closed_port_)},
                   {"FLUX_TLS_PORT", std::to_string(tls_server_ ? tls_server_->port() : 1)}};
    if (files) options.env.emplace_back("FLUX_FETCH_EXTRA_CA_FILE", files->certificate);
    auto started = dev_->start(std::move(options));
    if (!started) {
      start_error_ = started.error();
      return;
    }
    json dev_file = json::parse(readFile(dev_->root() / ".flux" / "dev.json"), nullptr, false);
    if (dev_file.is_object()) token_ = dev_file.value("token", "");
  }

  static void TearDownTestSuite() {
    if (dev_ != nullptr && dev_->started()) {
      auto status = dev_->stop();
      EXPECT_EQ(status, std::optional<int>(0)) << dev_->output();
    }
    delete dev_;
    delete server_;
    delete tls_server_;
    delete certificate_dir_;
    dev_ = nullptr;
    server_ = nullptr;
    tls_server_ = nullptr;
    certificate_dir_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(start_error_.empty()) << start_error_;
    ASSERT_FALSE(token_.empty()) << "no admin token in .flux/dev.json";
  }

  static HttpResponse call(std::string_view method, std::string_view path,
                           const json& body = nullptr) {
    HeaderList headers;
    std::string text;
    if (!body.is_null()) {
      headers.emplace_back("content-type", "application/json");
      text = body.dump();
    }
    auto response = httpRequest(dev_->port(), method, path, headers, text, milliseconds(30000));
    if (!response) {
      ADD_FAILURE() << method << " " << path << ": " << response.error();
      return {};
    }
    return std::move(*response);
  }

  // The stored record of a request ({"record", "mutations", ...}), polled until the recorder
  // wrote it.
  static json recordOf(const HttpResponse& response) {
    std::string id = response.header("x-request-id");
    EXPECT_FALSE(id.empty());
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    HttpResponse last;
    while (std::chrono::steady_clock::now() < deadline) {
      auto got = httpRequest(dev_->port(), "GET", "/_flux/records/" + id,
                             {{"authorization", "Bearer " + token_}}, {}, milliseconds(10000));
      if (got && got->status == 200) return parseJson(got->body);
      if (got) last = *got;
      std::this_thread::sleep_for(milliseconds(50));
    }
    ADD_FAILURE() << "no record for " << id << " (last answer " << last.status << ": " << last.body
                  << ")";
    return json::object();
  }

  // The spans named `name`, in record order.
  static std::vector<json> spansNamed(const json& record, std::string_view name) {
    std::vector<json> out;
    for (const json& span : record["record"]["spans"]) {
      if (span.value("name", "") == name) out.push_back(span);
    }
    return out;
  }
  static json spanNamed(const json& record, std::string_view name) {
    auto spans = spansNamed(record, name);
    EXPECT_EQ(spans.size(), 1u) << "spans named " << name << " in " << record["record"]["spans"];
    return spans.empty() ? json::object() : spans.front();
  }
  static json spanById(const json& record, int64_t id) {
    for (const json& span : record["record"]["spans"]) {
      if (span.value("id", -1) == id) return span;
    }
    ADD_FAILURE() << "no span " << id;
    return json::object();
  }

  static inline TempProject* certificate_dir_ = nullptr;
  static inline FakeHttpServer* server_ = nullptr;
  static inline FakeHttpServer* tls_server_ = nullptr;
  static inline FluxDev* dev_ = nullptr;
  static inline int closed_port_ = 0;
  static inline std::string token_;
  static inline std::string start_error_;
  static inline std::string tls_error_;
};

TEST_F(FetchTest, GetReturnsAWebResponseAndARecordedSpan) {
  HttpResponse response = call("GET", "/get?path=/json");
  ASSERT_EQ(response.status, 200) << response.body;
  json body = parseJson(response.body);
  EXPECT_EQ(body["status"], 200);
  EXPECT_EQ(body["statusText"], "OK");
  EXPECT_EQ(body["ok"], true);
  EXPECT_EQ(body["type"], "application/json");
  EXPECT_EQ(body["redirected"], false);
  EXPECT_EQ(body["url"], "http://127.0.0.1:" + std::to_string(server_->port()) + "/json");
  EXPECT_EQ(body["body"], json::parse(R"({"ok":true,"n":1})"));

  json record = recordOf(response);
  json span = spanNamed(record, "fetch");
  EXPECT_EQ(span["status"], "ok");
  EXPECT_EQ(span["input"]["method"], "GET");
  EXPECT_EQ(span["input"]["url"], body["url"]);
  EXPECT_EQ(span["output"]["status"], 200);
  EXPECT_EQ(span["output"]["body"], R"({"ok":true,"n":1})");
  EXPECT_EQ(span["output"]["headers"]["content-type"], "application/json");
  EXPECT_EQ(span["location"].get<std::string>().rfind("functions/get/index.ts:3:", 0), 0u)
      << span["location"];
  EXPECT_GT(span["duration_us"].get<int64_t>(), 0);
  json function = spanNamed(record, "get");
  EXPECT_EQ(span["parent"], function["id"]);
}

TEST_F(FetchTest, FollowsRedirects) {
  HttpResponse response = call("GET", "/get?path=/redirect");
  ASSERT_EQ(response.status, 200) << response.body;
  json body = parseJson(response.body);
  EXPECT_EQ(body["redirected"], true);
  EXPECT_EQ(body["url"], "http://127.0.0.1:" + std::to_string(server_->port()) + "/json");
  EXPECT_EQ(body["body"]["ok"], true);
  json span = spanNamed(recordOf(response), "fetch");
  EXPECT_EQ(span["output"]["redirects"], 1);
}

TEST_F(FetchTest, SendsEveryBodyKind) {
  HttpResponse response = call("POST", "/bodies", json::object());
  ASSERT_EQ(response.status, 200) << response.body;
  json b = parseJson(response.body);
  EXPECT_EQ(b["text"]["method"], "PUT");
  EXPECT_EQ(b["text"]["body"], "plain text");
  EXPECT_EQ(b["text"]["type"], "text/plain;charset=UTF-8");
  EXPECT_EQ(b["json"]["body"], R"({"a":1})");
  EXPECT_EQ(b["json"]["type"], "application/json");
  EXPECT_EQ(b["bytes"]["length"], "4");
  EXPECT_EQ(b["bytes"]["type"], "");
  EXPECT_EQ(b["buffer"]["length"], "4");
  EXPECT_EQ(b["form"]["body"], "q=a+b&n=1");
  EXPECT_EQ(b["form"]["type"], "application/x-www-form-urlencoded;charset=UTF-8");
  EXPECT_EQ(b["headers"]["x"], "12");
  EXPECT_EQ(b["array"]["x"], "y");
  EXPECT_EQ(b["array"]["method"], "POST");
  EXPECT_EQ(b["array"]["length"], "0");
  EXPECT_EQ(b["request"]["method"], "DELETE");
  EXPECT_EQ(b["bin"], json::parse("[0, 1, 254, 255]"));

  json record = recordOf(response);
  auto fetches = spansNamed(record, "fetch");
  ASSERT_EQ(fetches.size(), 9u);
  EXPECT_EQ(fetches[2]["input"]["body"], "<4 bytes of binary data>");
  EXPECT_EQ(fetches[8]["output"]["body"], "<4 bytes of binary data>");
}

// The seeds' incident: the payment call times out, the request fails, the insert before it
// rolls back and the update after it never runs.
TEST_F(FetchTest, TimeoutFailsTheRequestAndMarksWhatNeverRan) {
  HttpResponse ok = call("POST", "/checkout", {{"item", "book"}, {"route", "charge"}});
  ASSERT_EQ(ok.status, 200) << ok.body;
  json paid = parseJson(ok.body);
  EXPECT_EQ(paid["payment"]["status"], "succeeded");
  EXPECT_EQ(paid["payment"]["amount"], 4200);
  json good = recordOf(ok);
  json fetch_ok = spanNamed(good, "fetch");
  EXPECT_EQ(fetch_ok["output"]["status"], 200);
  EXPECT_NE(fetch_ok["output"]["body"].get<std::string>().find("succeeded"), std::string::npos);
  EXPECT_EQ(fetch_ok["input"]["method"], "POST");
  EXPECT_EQ(fetch_ok["input"]["headers"]["authorization"], "[redacted]");
  EXPECT_NE(fetch_ok["input"]["body"].get<std::string>().find("4200"), std::string::npos);
  EXPECT_EQ(fetch_ok["output"]["headers"]["x-provider"], "fake");
  for (const json& m : good["mutations"]) EXPECT_FALSE(m["rolled_back"].get<bool>()) << m;
  // The provider saw the request as written (the authorization header included).
  auto seen = server_->requests();
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().header("authorization"), "Bearer sk_1");

  auto started = std::chrono::steady_clock::now();
  HttpResponse failed = call("POST", "/checkout", {{"item", "lamp"}, {"route", "hang"}});
  auto elapsed = std::chrono::steady_clock::now() - started;
  ASSERT_EQ(failed.status, 500) << failed.body;
  EXPECT_LT(elapsed, std::chrono::seconds(5)) << "the 200 ms timeout did not cut the wait";
  EXPECT_NE(failed.body.find("timed out"), std::string::npos) << failed.body;

  json record = recordOf(failed);
  const json& error = record["record"]["error"];
  EXPECT_NE(error["message"].get<std::string>().find("timed out after 200 ms"), std::string::npos)
      << error;
  // The TimeoutError has no frame of the user's: its location is the fetch's call site.
  EXPECT_EQ(error["location"].get<std::string>().rfind("functions/checkout/index.ts:4:", 0), 0u)
      << error;

  json insert = spanNamed(record, "db.insert(orders)");
  EXPECT_EQ(insert["status"], "ok");
  EXPECT_EQ(insert["location"].get<std::string>().rfind("functions/checkout/index.ts:3:", 0), 0u)
      << insert;
  json fetch = spanNamed(record, "fetch");
  EXPECT_EQ(fetch["status"], "error");
  EXPECT_EQ(fetch["error"], "timeout after 200 ms");
  EXPECT_EQ(fetch["location"].get<std::string>().rfind("functions/checkout/index.ts:4:", 0), 0u)
      << fetch;
  EXPECT_EQ(error["span"], fetch["id"]) << error;  // the span the error happened in
  json update = spanNamed(record, "db.update(orders)");
  EXPECT_EQ(update["status"], "skipped");
  EXPECT_EQ(update["duration_us"], 0);
  EXPECT_TRUE(update["input"].is_null());
  EXPECT_EQ(update["location"].get<std::string>().rfind("functions/checkout/index.ts:11:", 0), 0u)
      << update;
  json function = spanNamed(record, "checkout");
  EXPECT_EQ(function["status"], "error");
  EXPECT_EQ(update["parent"], function["id"]);

  // The insert before the timeout is in the mutation log, rolled back.
  ASSERT_EQ(record["mutations"].size(), 1u) << record["mutations"];
  EXPECT_EQ(record["mutations"][0]["op"], "INSERT");
  EXPECT_EQ(record["mutations"][0]["rolled_back"], true);

  // `flux why` finds the timeout in the fetch span.
  auto why = runProgram(FLUX_BINARY,
                        {.args = {"why", failed.header("x-request-id")},
                         .env = {{"NO_COLOR", "1"}, {"FLUX_URL", ""}, {"FLUX_TOKEN", ""}},
                         .cwd = dev_->root()},
                        milliseconds(30000));
  ASSERT_TRUE(why) << why.error();
  EXPECT_EQ(why->first, 0) << why->second;
  EXPECT_NE(why->second.find("timeout after 200 ms"), std::string::npos) << why->second;
  EXPECT_NE(why->second.find("functions/checkout/index.ts:4"), std::string::npos) << why->second;
  // The provider's connection was closed when the signal fired.
  for (int i = 0; i < 100 && server_->closedHanging() == 0; ++i) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_GE(server_->closedHanging(), 1);
}

TEST_F(FetchTest, SpansNestUnderCtxSpan) {
  HttpResponse response = call("POST", "/nested", json::object());
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(parseJson(response.body), json::parse(R"({"value": true, "two": 2, "sync": 7})"));
  json record = recordOf(response);
  json function = spanNamed(record, "nested");
  json outer = spanNamed(record, "outer");
  json inner = spanNamed(record, "inner");
  json sync = spanNamed(record, "sync");
  json fetch = spanNamed(record, "fetch");
  auto queries = spansNamed(record, "db.query");
  ASSERT_EQ(queries.size(), 2u);
  EXPECT_EQ(outer["parent"], function["id"]);
  EXPECT_EQ(inner["parent"], outer["id"]);
  EXPECT_EQ(fetch["parent"], inner["id"]);
  EXPECT_EQ(queries[0]["input"]["sql"], "select 1 as one");
  EXPECT_EQ(queries[0]["parent"], outer["id"]);
  EXPECT_EQ(queries[1]["input"]["sql"], "select 2 as two");
  EXPECT_EQ(queries[1]["parent"], function["id"]);
  EXPECT_EQ(sync["parent"], function["id"]);
  EXPECT_EQ(outer["location"].get<std::string>().rfind("functions/nested/index.ts:2:", 0), 0u)
      << outer;
  EXPECT_EQ(inner["location"].get<std::string>().rfind("functions/nested/index.ts:3:", 0), 0u)
      << inner;
  EXPECT_EQ(queries[0]["location"].get<std::string>().rfind("functions/nested/index.ts:9:", 0), 0u)
      << queries[0];
  EXPECT_GE(outer["duration_us"].get<int64_t>(), inner["duration_us"].get<int64_t>());
  EXPECT_GE(inner["duration_us"].get<int64_t>(), 5000);
  EXPECT_EQ(inner["logs"], json::parse(R"(["inside inner"])"));
  EXPECT_EQ(function["logs"], json::parse(R"(["outside"])"));
  EXPECT_EQ(outer["logs"], json::parse(R"(["timer in outer"])"));
  EXPECT_EQ(record["record"]["logs"],
            json::parse(R"(["inside inner", "timer in outer", "outside"])"));
  for (const json& span : record["record"]["spans"]) EXPECT_EQ(span["status"], "ok") << span;
}

// Requests in flight together on the one worker: each keeps its spans, logs and journal.
TEST_F(FetchTest, ConcurrentRequestsKeepTheirOwnSpans) {
  const int delays[] = {60, 10, 40, 20};
  std::vector<HttpResponse> responses(std::size(delays));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < std::size(delays); ++i) {
    threads.emplace_back([i, &delays, &responses] {
      responses[i] =
          call("POST", "/concurrent", {{"tag", std::to_string(i)}, {"delay", delays[i]}});
    });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < responses.size(); ++i) {
    ASSERT_EQ(responses[i].status, 200) << responses[i].body;
    json out = parseJson(responses[i].body);
    std::string tag = std::to_string(i);
    EXPECT_EQ(out["tag"], tag);
    json record = recordOf(responses[i]);
    json work = spanNamed(record, "work-" + tag);
    json fetch = spanNamed(record, "fetch");
    EXPECT_EQ(fetch["parent"], work["id"]);
    EXPECT_EQ(work["logs"], json::array({"tag " + tag}));
    EXPECT_EQ(record["record"]["logs"], json::array({"tag " + tag}));
    const json& journal = record["record"]["journal"];
    ASSERT_EQ(journal.size(), 2u) << journal;
    EXPECT_EQ(journal[0]["kind"], "fetch");
    EXPECT_EQ(journal[0]["span"], fetch["id"]);
    EXPECT_EQ(journal[1]["kind"], "random");
    EXPECT_EQ(journal[1]["value"], out["r"]);
  }
}

TEST_F(FetchTest, ErrorThrownInACtxSpanNamesThatSpan) {
  HttpResponse response = call("POST", "/spanerror", json::object());
  ASSERT_EQ(response.status, 500) << response.body;
  json record = recordOf(response);
  json span = spanNamed(record, "validate");
  EXPECT_EQ(span["status"], "error");
  EXPECT_EQ(span["error"], "card declined: insufficient funds");
  const json& error = record["record"]["error"];
  EXPECT_EQ(error["message"], "card declined: insufficient funds");
  EXPECT_EQ(error["location"].get<std::string>().rfind("functions/spanerror/index.ts:3:", 0), 0u)
      << error;
  EXPECT_EQ(error["span"], span["id"]) << error;
}

TEST_F(FetchTest, JournalHoldsEveryNondeterministicResultInOrder) {
  HttpResponse response = call("POST", "/journal", json::object());
  ASSERT_EQ(response.status, 200) << response.body;
  json out = parseJson(response.body);
  json record = recordOf(response);
  const json& journal = record["record"]["journal"];
  ASSERT_EQ(journal.size(), 7u) << journal;
  std::vector<std::string> kinds;
  for (const json& entry : journal) kinds.push_back(entry["kind"]);
  EXPECT_EQ(kinds, (std::vector<std::string>{"now", "random", "uuid", "random_values", "fetch",
                                             "db", "now"}));
  EXPECT_EQ(static_cast<int64_t>(journal[0]["value"].get<double>()), out["t"].get<int64_t>());
  EXPECT_EQ(journal[1]["value"], out["r"]);
  EXPECT_EQ(journal[2]["value"], out["u"]);
  std::string hex;
  for (const json& byte : out["bytes"]) {
    char buf[3];
    snprintf(buf, sizeof buf, "%02x", byte.get<int>());
    hex += buf;
  }
  EXPECT_EQ(journal[3]["value"], hex);
  EXPECT_EQ(journal[4]["span"], spanNamed(record, "fetch")["id"]);
  EXPECT_EQ(journal[4]["value"]["status"], 200);
  EXPECT_EQ(journal[4]["value"]["body"], R"({"ok":true,"n":1})");
  EXPECT_EQ(journal[5]["span"], spanNamed(record, "db.query")["id"]);
  EXPECT_EQ(journal[5]["value"]["rows"], json::parse(R"([{"answer": "42"}])"));
  EXPECT_EQ(journal[5]["value"]["rowCount"], 1);
  EXPECT_EQ(static_cast<int64_t>(journal[6]["value"].get<double>()), out["d"].get<int64_t>());
}

TEST_F(FetchTest, NothingNondeterministicMeansAnEmptyJournal) {
  HttpResponse response = call("POST", "/spanerror", json::object());
  json record = recordOf(response);
  EXPECT_EQ(record["record"]["journal"], json::array());
}

TEST_F(FetchTest, FailuresRejectLikeTheWebPlatform) {
  HttpResponse response = call("POST", "/failures", json::object());
  ASSERT_EQ(response.status, 200) << response.body;
  json f = parseJson(response.body);
  std::string port = std::to_string(closed_port_);
  EXPECT_EQ(f["refused"]["name"], "TypeError");
  EXPECT_EQ(f["refused"]["typeError"], true);
  EXPECT_EQ(f["refused"]["message"],
            "fetch failed: cannot connect to 127.0.0.1:" + port + ": Connection refused");
  EXPECT_EQ(f["aborted"]["name"], "AbortError");
  EXPECT_EQ(f["aborted"]["domException"], true);
  EXPECT_EQ(f["preAborted"]["name"], "AbortError");
  EXPECT_EQ(f["timeout"]["name"], "TimeoutError");
  EXPECT_EQ(f["timeout"]["message"], "Signal timed out after 100 ms.");
  EXPECT_EQ(f["scheme"]["name"], "TypeError");
  EXPECT_NE(f["scheme"]["message"].get<std::string>().find("ftp:"), std::string::npos);
  EXPECT_EQ(f["relative"]["name"], "TypeError");
  EXPECT_EQ(f["getBody"]["name"], "TypeError");
  EXPECT_EQ(f["tooBig"]["name"], "TypeError");
  EXPECT_NE(f["tooBig"]["message"].get<std::string>().find("larger than the limit of 32 MiB"),
            std::string::npos)
      << f["tooBig"];
  EXPECT_NE(f["tooManyRedirects"]["message"].get<std::string>().find("too many redirects (more "
                                                                     "than 20)"),
            std::string::npos)
      << f["tooManyRedirects"];
  EXPECT_NE(f["redirectError"]["message"].get<std::string>().find("redirect mode is 'error'"),
            std::string::npos);
  EXPECT_EQ(f["manual"], 302);

  json record = recordOf(response);
  auto fetches = spansNamed(record, "fetch");
  // refused, aborted, timeout, tooBig, tooManyRedirects, redirectError, manual: the others
  // never reached the host.
  ASSERT_EQ(fetches.size(), 7u) << record["record"]["spans"];
  std::vector<std::string> errors;
  for (const json& span : fetches) errors.push_back(span["error"].is_null() ? "" : span["error"]);
  // Spans open in call order: the aborted fetch started first.
  EXPECT_EQ(errors[0], "aborted");
  EXPECT_EQ(errors[1],
            "network error: cannot connect to 127.0.0.1:" + port + ": Connection refused");
  EXPECT_EQ(errors[2], "timeout after 100 ms");
  EXPECT_NE(errors[3].find("larger than the limit of 32 MiB"), std::string::npos);
  EXPECT_EQ(errors[6], "");
  EXPECT_EQ(record["record"]["status"], 200);
}

TEST_F(FetchTest, UncaughtNetworkErrorIsATypeErrorInTheRecord) {
  HttpResponse response = call("POST", "/uncaught", json::object());
  ASSERT_EQ(response.status, 500) << response.body;
  json record = recordOf(response);
  const json& error = record["record"]["error"];
  EXPECT_NE(error["message"].get<std::string>().find("fetch failed: cannot connect to 127.0.0.1:"),
            std::string::npos)
      << error;
  EXPECT_NE(error["stack"].get<std::string>().find("TypeError"), std::string::npos) << error;
  EXPECT_EQ(error["location"].get<std::string>().rfind("functions/uncaught/index.ts:2:", 0), 0u)
      << error;
  json fetch = spanNamed(record, "fetch");
  EXPECT_EQ(fetch["status"], "error");
  EXPECT_NE(fetch["error"].get<std::string>().find("network error: cannot connect"),
            std::string::npos);
}

TEST_F(FetchTest, FetchesEndWithTheirRequest) {
  int closed_before = server_->closedHanging();
  size_t seen_before = server_->requests().size();
  HttpResponse response = call("POST", "/leak", json::object());
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.body, "answered");
  json fetch = spanNamed(recordOf(response), "fetch");
  EXPECT_EQ(fetch["status"], "error");
  EXPECT_NE(fetch["error"].get<std::string>().find("aborted: the request ended"), std::string::npos)
      << fetch;
  for (int i = 0; i < 100 && server_->closedHanging() == closed_before; ++i) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_EQ(server_->requests().size(), seen_before + 1) << "the fetch never reached the provider";
  EXPECT_EQ(server_->requests().back().target, "/hang");
  EXPECT_EQ(server_->closedHanging(), closed_before + 1) << "the connection was not closed";
}

TEST_F(FetchTest, HttpsVerifiesTheCertificate) {
  if (tls_server_ == nullptr) GTEST_SKIP() << "no TLS server: " << tls_error_;
  HttpResponse response = call("POST", "/tls", json::object());
  ASSERT_EQ(response.status, 200) << response.body;
  json b = parseJson(response.body);
  EXPECT_EQ(b["status"], 200);
  EXPECT_EQ(b["body"]["ok"], true);
  EXPECT_EQ(b["bad"]["name"], "TypeError");
  std::string message = b["bad"]["message"];
  EXPECT_NE(message.find("TLS handshake with 127.0.0.1:" + std::to_string(tls_server_->port()) +
                         " failed: certificate not trusted"),
            std::string::npos)
      << message;
  // The server counts the refused handshake when it reads the client's alert, which may come
  // after the client has answered.
  for (int i = 0; i < 100 && tls_server_->failedHandshakes() == 0; ++i) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_GE(tls_server_->failedHandshakes(), 1);
}

}  // namespace
}  // namespace flux::tests

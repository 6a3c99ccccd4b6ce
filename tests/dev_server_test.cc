// End-to-end tests of `flux dev`: the real binary, its real PostgreSQL, real V8, real HTTP over
// loopback.
//
// DevServerTest starts ONE `flux dev` for a project with many functions (SetUpTestSuite), so
// that the suite pays for one PostgreSQL cluster and one round of bundling. Behaviour that
// needs its own command-line flags (the idle timeout) or its own lifecycle (init, shutdown) gets
// its own small instance.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/flux_process.h"
#include "support/http_client.h"

namespace flux::tests {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr milliseconds kLogWait{10000};
constexpr size_t kBodyLimit = 10 * 1024 * 1024;  // flux dev's request body limit

// ---- helpers ----

json parseJson(const std::string& text) {
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(parsed.is_discarded()) << "not JSON: " << text;
  return parsed;
}

// One request on a new connection; a transport failure is a test failure and a status of 0.
HttpResponse request(int port, std::string_view method, std::string_view path,
                     const HeaderList& headers = {}, std::string_view body = {}) {
  auto response = httpRequest(port, method, path, headers, body);
  if (!response) {
    ADD_FAILURE() << method << " " << path << " failed: " << response.error();
    return HttpResponse{};
  }
  return std::move(*response);
}

int64_t unixMillisNow() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A UUIDv7 (RFC 9562): version nibble 7, variant 10xx, and a 48-bit Unix-millisecond timestamp
// close to now.
::testing::AssertionResult isUuidV7(const std::string& id) {
  static const std::regex kShape(
      "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  if (!std::regex_match(id, kShape)) {
    return ::testing::AssertionFailure() << "\"" << id << "\" is not a lower-case UUIDv7";
  }
  std::string hex = id.substr(0, 8) + id.substr(9, 4);
  int64_t ms = std::stoll(hex, nullptr, 16);
  int64_t skew = ms - unixMillisNow();
  if (skew < -120'000 || skew > 120'000) {
    return ::testing::AssertionFailure()
           << id << ": its timestamp is " << skew << " ms away from the clock";
  }
  return ::testing::AssertionSuccess();
}

// "req:" handle of a request id: its last 8 hex digits.
std::string shortId(const std::string& id) {
  return id.size() >= 8 ? id.substr(id.size() - 8) : id;
}

// Waits for flux's access-log line "METHOD /path STATUS 1.2ms req:xxxxxxxx" of one request.
::testing::AssertionResult loggedRequest(const FluxDev& dev, const std::string& method,
                                         const std::string& path, int status,
                                         const std::string& request_id) {
  std::string handle = "req:" + shortId(request_id);
  static const std::regex kLine(
      "^(\\S+) (\\S+) ([0-9]{3}) [0-9]+(\\.[0-9]+)?ms (req:[0-9a-f]{8})$");
  auto deadline = steady_clock::now() + kLogWait;
  size_t from = 0;
  while (steady_clock::now() < deadline) {
    auto at = dev.waitForOutput(
        handle, std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now()), from);
    if (!at) break;
    // The whole line must be there: wait for its end.
    auto eol = dev.waitForOutput("\n", milliseconds(2000), *at);
    std::string text = dev.output();
    size_t begin = text.rfind('\n', *at);
    begin = begin == std::string::npos ? 0 : begin + 1;
    std::string line = text.substr(begin, (eol ? *eol : text.size()) - begin);
    std::smatch m;
    if (std::regex_match(line, m, kLine)) {
      if (m[1] == method && m[2] == path && m[3] == std::to_string(status) && m[5] == handle) {
        return ::testing::AssertionSuccess();
      }
      return ::testing::AssertionFailure()
             << "the log line for " << handle << " is \"" << line << "\", expected " << method
             << " " << path << " " << status;
    }
    from = *at + handle.size();  // another line that mentions the id (an error log): go on
  }
  return ::testing::AssertionFailure() << "no access-log line \"" << method << " " << path << " "
                                       << status << " ... " << handle << "\" in:\n"
                                       << dev.output();
}

// Every response flux sends carries a fresh UUIDv7 in x-request-id.
::testing::AssertionResult hasRequestId(const HttpResponse& r) {
  if (!r.hasHeader("x-request-id")) {
    return ::testing::AssertionFailure()
           << "no x-request-id header on a " << r.status << " response";
  }
  return isUuidV7(r.header("x-request-id"));
}

// ---- the shared project ----

struct SourceFile {
  const char* path;
  const char* content;
};

const SourceFile kProjectFiles[] = {
    {"migrations/001_init.sql", "create table notes (id bigserial primary key, body text);\n"},
    {".env", R"env(# a comment line
GREETING="hello\nworld"
PLAIN=plain value # trailing comment
export EXPORTED=yes
SINGLE='no $expansion\n'
EMPTY=
)env"},

    // Returns: JSON, text, Response.
    {"functions/json/flux.json", R"({"route": "/json", "method": "GET"})"},
    {"functions/json/index.ts", R"ts(
export default async function handler(req: Request) {
  return { ok: true, n: 42, list: [1, "two", null], nested: { unicode: "héllo ✓" } };
}
)ts"},
    {"functions/text/flux.json", R"({"route": "/text", "method": "GET"})"},
    {"functions/text/index.ts", R"ts(
export default async function handler() {
  return "plain text ✓";
}
)ts"},
    {"functions/response/flux.json", R"({"route": "/response", "method": "ANY"})"},
    {"functions/response/index.ts", R"ts(
export default async function handler(req: Request): Promise<Response> {
  const kind = new URL(req.url).searchParams.get("kind");
  if (kind === "json") {
    return Response.json({ created: true }, { status: 202, headers: { "X-Kind": "json" } });
  }
  if (kind === "bytes") {
    return new Response(new Uint8Array([0, 1, 2, 255]), {
      headers: { "content-type": "application/octet-stream" },
    });
  }
  const body = await req.text();
  return new Response(`created ${body}`, {
    status: 201,
    headers: { "X-Custom": "yes", "Content-Type": "text/x-flux; charset=utf-8" },
  });
}
)ts"},

    // Route parameters.
    {"functions/user-post/flux.json", R"({"route": "/users/:id/posts/:postId", "method": "GET"})"},
    {"functions/user-post/index.ts", R"ts(
export default async function handler(req: Request, ctx: { params: Record<string, string> }) {
  return { params: ctx.params, pathname: new URL(req.url).pathname };
}
)ts"},

    // defineFunction: the same route, POST (JSON body) and GET (query).
    {"functions/define-post/flux.json", R"({"route": "/define", "method": "POST"})"},
    {"functions/define-post/index.ts", R"ts(
import { defineFunction } from "@flux/functions";

export default defineFunction({
  name: "define-post",
  handler: async ({ input, ctx }: { input: unknown; ctx: { requestId: string } }) => ({
    kind: "post",
    input,
    requestId: ctx.requestId,
  }),
});
)ts"},
    {"functions/define-get/flux.json", R"({"route": "/define", "method": "GET"})"},
    {"functions/define-get/index.ts", R"ts(
import { defineFunction } from "@flux/functions";

export default defineFunction({
  name: "define-get",
  handler: async ({ input }: { input: Record<string, string | string[]> }) => ({ kind: "get", input }),
});
)ts"},

    // A local TypeScript module, type-only imports, an enum, and a module shared by functions.
    {"functions/imports/flux.json", R"({"method": "GET"})"},
    {"functions/imports/types.ts", R"ts(
export interface Greeting {
  text: string;
  loud: boolean;
}
)ts"},
    {"functions/imports/util.ts", R"ts(
import type { Greeting } from "./types.ts";

export enum Volume {
  Quiet = "quiet",
  Loud = "loud",
}

export function greet<T extends string>(name: T, volume: Volume): Greeting {
  const text = `hello, ${name}`;
  return volume === Volume.Loud ? { text: text.toUpperCase(), loud: true } : { text, loud: false };
}
)ts"},
    {"functions/_shared/math.ts", R"ts(
export const double = (x: number): number => x * 2;
)ts"},
    {"functions/imports/index.ts", R"ts(
import { greet, Volume } from "./util.ts";
import type { Greeting } from "./types.ts";
import { double } from "../_shared/math.ts";

export default async function handler(): Promise<{ greeting: Greeting; doubled: number }> {
  return { greeting: greet("flux", Volume.Loud), doubled: double(21) };
}
)ts"},

    // An uncaught error on line 5, column 9 of the TypeScript source (the types above it are
    // erased, so the bundle's line differs: only the source map gets this right).
    {"functions/boom/flux.json", R"({"route": "/boom", "method": "GET"})"},
    {"functions/boom/index.ts", R"ts(interface Payload {
  reason: string;
}
function explode(p: Payload): never {
  throw new Error(`boom: ${p.reason}`);
}
export default async function handler(req: Request) {
  explode({ reason: "on purpose" });
}
)ts"},

    // Limits: CPU, a promise that never settles, memory.
    {"functions/spin/flux.json", R"({"route": "/spin", "method": "GET", "timeout_ms": 500})"},
    {"functions/spin/index.ts", R"ts(
export default async function handler(req: Request) {
  console.log(`spinning ${new URL(req.url).searchParams.get("n")}`);
  while (true) {}
}
)ts"},
    {"functions/hang/flux.json", R"({"route": "/hang", "method": "GET", "timeout_ms": 500})"},
    {"functions/hang/index.ts", R"ts(
export default async function handler() {
  await new Promise(() => {});
  return "unreachable";
}
)ts"},
    {"functions/hog/flux.json", R"({"route": "/hog", "method": "GET", "timeout_ms": 20000})"},
    {"functions/hog/index.ts", R"ts(
export default async function handler() {
  const keep: number[][] = [];
  for (;;) keep.push(new Array(1 << 20).fill(Math.random()));
}
)ts"},
    {"functions/fast/flux.json", R"({"route": "/fast", "method": "GET"})"},
    {"functions/fast/index.ts", R"ts(
export default async function handler() {
  return "fast";
}
)ts"},

    // Echoes the request; accepts any method.
    {"functions/echo/flux.json", R"({"route": "/echo", "method": "ANY"})"},
    {"functions/echo/index.ts", R"ts(
export default async function handler(req: Request) {
  const body = await req.text();
  return {
    method: req.method,
    url: req.url,
    length: new TextEncoder().encode(body).length,
    body: body.length <= 1024 ? body : null,
    mixed: req.headers.get("x-MIXED-case"),
  };
}
)ts"},

    // ctx.env and ctx.log.
    {"functions/env/flux.json", R"({"route": "/env", "method": "GET"})"},
    {"functions/env/index.ts", R"ts(
export default async function handler(req: Request, ctx: any) {
  ctx.log("env checked", { keys: Object.keys(ctx.env).length });
  let writable = true;
  try {
    ctx.env.GREETING = "changed";
    writable = ctx.env.GREETING === "changed";
  } catch {
    writable = false;
  }
  return { env: ctx.env, writable };
}
)ts"},

    // Hot reload.
    {"functions/_shared/label.ts", "export const label = \"label 1\";\n"},
    {"functions/shared-user/flux.json", R"({"route": "/shared-user", "method": "GET"})"},
    {"functions/shared-user/index.ts", R"ts(
import { label } from "../_shared/label.ts";

export default async function handler() {
  return label;
}
)ts"},
    {"functions/reload/flux.json", R"({"route": "/reload", "method": "GET"})"},
    {"functions/reload/index.ts", R"ts(
export default async function handler() {
  return "version 1";
}
)ts"},
    {"functions/slow-reload/flux.json", R"({"route": "/slow-reload", "method": "GET"})"},
    {"functions/slow-reload/index.ts", R"ts(
export default async function handler() {
  console.log("slow-reload started");
  await new Promise((resolve) => setTimeout(resolve, 1500));
  return "old code";
}
)ts"},

    // The Web APIs, each exercised and reported as JSON.
    {"functions/webapis/flux.json", R"({"route": "/webapis", "method": "GET"})"},
    {"functions/webapis/index.ts", R"ts(
function threw(fn: () => unknown): string {
  try {
    fn();
    return "";
  } catch (e: any) {
    return e?.name ?? String(e);
  }
}

export default async function handler(req: Request) {
  const out: Record<string, any> = {};

  const u = new URL("https://user:pa%20ss@Example.COM:8080/a/b/../c/%7Euser?x=1&y=two%20words#frag");
  out.url = {
    href: u.href, protocol: u.protocol, username: u.username, password: u.password, host: u.host,
    hostname: u.hostname, port: u.port, pathname: u.pathname, search: u.search, hash: u.hash,
    origin: u.origin, y: u.searchParams.get("y"),
  };
  out.relativeUrl = new URL("../d?q=1", "https://example.com/a/b/c").href;
  out.defaultPortDropped = new URL("http://example.com:80/").href;
  out.invalidUrl = threw(() => new URL("not a url"));
  const self = new URL(req.url);
  out.requestUrl = { pathname: self.pathname, q: self.searchParams.get("q") };

  const sp = new URLSearchParams("a=1&b=2&a=3");
  sp.append("c", "x y&z=é");
  out.searchParams = { all: sp.getAll("a"), hasB: sp.has("b"), missing: sp.get("nope"), text: sp.toString() };
  sp.delete("b");
  sp.sort();
  out.searchParamsSorted = sp.toString();
  out.searchParamsFromRecord = new URLSearchParams({ k: "v w", e: "" }).toString();
  out.searchParamsEntries = [...new URLSearchParams("?p=1&q=%20")];

  const text = "héllo → 世界 🎉";
  const bytes = new TextEncoder().encode(text);
  out.text = {
    isUint8Array: bytes instanceof Uint8Array,
    hex: Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(""),
    roundTrip: new TextDecoder().decode(bytes),
    equal: new TextDecoder().decode(bytes) === text,
    encoding: new TextEncoder().encoding,
  };
  out.replacement = new TextDecoder().decode(new Uint8Array([0x61, 0xff, 0x62]));
  out.fatalDecode = threw(() => new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array([0xff])));
  out.encodeInto = new TextEncoder().encodeInto("aé", new Uint8Array(2));

  out.btoa = btoa("Hello, Flux!");
  out.atob = atob("SGVsbG8sIEZsdXgh");
  out.btoaBinary = btoa(String.fromCharCode(0, 255, 128));
  out.atobBinary = Array.from(atob("AP+A"), (c) => c.charCodeAt(0));
  out.atobWhitespace = atob(" SGVs bG8= ");
  out.btoaNonLatin1 = threw(() => btoa("€"));
  out.atobInvalid = threw(() => atob("abc*"));

  const when = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));
  const original: any = {
    m: new Map<string, any>([["k", { when, list: [1, { deep: true }] }]]),
    set: new Set([1, 2]),
    bytes: new Uint8Array([9, 8]),
  };
  original.self = original;
  const copy = structuredClone(original);
  const inner = copy.m.get("k");
  original.m.get("k").list[1].deep = false;
  out.clone = {
    distinct: copy !== original && inner !== original.m.get("k"),
    isMap: copy.m instanceof Map,
    isDate: inner.when instanceof Date && inner.when !== when,
    time: inner.when.toISOString(),
    deep: inner.list[1].deep,
    isSet: copy.set instanceof Set && copy.set.has(2),
    bytes: Array.from(copy.bytes as Uint8Array),
    cycle: copy.self === copy,
  };
  out.cloneFunction = threw(() => structuredClone(() => 1));

  out.uuids = [crypto.randomUUID(), crypto.randomUUID()];
  const buffer = new Uint8Array(64);
  const returned = crypto.getRandomValues(buffer);
  out.random = {
    sameArray: returned === buffer,
    distinctValues: new Set(buffer).size,
    u32: Array.from(crypto.getRandomValues(new Uint32Array(4))).every((x) => Number.isInteger(x)),
    tooLarge: threw(() => crypto.getRandomValues(new Uint8Array(65537))),
  };

  const order: string[] = [];
  const cancelled = setTimeout(() => order.push("cancelled"), 5);
  setTimeout(() => order.push("timeout-20"), 20);
  setTimeout(() => order.push("timeout-0"), 0);
  queueMicrotask(() => order.push("queueMicrotask"));
  Promise.resolve().then(() => order.push("promise"));
  clearTimeout(cancelled);
  order.push("sync");
  let ticks = 0;
  await new Promise<void>((resolve) => {
    const id = setInterval(() => {
      if (++ticks === 3) {
        clearInterval(id);
        resolve();
      }
    }, 5);
  });
  await new Promise((resolve) => setTimeout(resolve, 40));
  const args = await new Promise((resolve) => setTimeout((a: number, b: number) => resolve(a + b), 1, 2, 3));
  out.timers = { order, ticks, args };

  const h = new Headers({ "Content-Type": "text/html" });
  h.append("X-Multi", "1");
  h.append("x-MULTI", "2");
  out.headers = {
    get: h.get("CONTENT-TYPE"),
    has: h.has("content-TYPE"),
    multi: h.get("x-multi"),
    keys: [...h.keys()],
    request: req.headers.get("x-mixed-case"),
    requestUpper: req.headers.get("X-MIXED-CASE"),
  };
  h.delete("CONTENT-type");
  out.headers.afterDelete = h.has("content-type");

  const rj = Response.json({ a: [1, 2] }, { status: 201, headers: { "X-Extra": "e" } });
  out.responseJson = {
    status: rj.status,
    contentType: rj.headers.get("content-type"),
    extra: rj.headers.get("x-extra"),
    body: await rj.json(),
  };
  const made = new Request("https://example.com/x", { method: "post", body: "hi", headers: { "X-A": "b" } });
  out.request = { method: made.method, text: await made.text(), header: made.headers.get("x-a") };

  const resolved = new Intl.DateTimeFormat().resolvedOptions();
  out.intl = {
    timeZone: resolved.timeZone,
    locale: resolved.locale,
    number: (1234567.891).toLocaleString(),
    hours: new Date(0).getHours(),
    offset: new Date().getTimezoneOffset(),
    dateString: when.toString(),
    localeDate: when.toLocaleDateString(),
  };
  out.now = Date.now();
  out.mathRandom = Math.random();

  console.log("webapis console.log", { n: 1 });
  console.error("webapis console.error");
  return out;
}
)ts"},
};

// The shared `flux dev`. Started once for the suite.
class DevServerTest : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    dev_ = new FluxDev();
    for (const SourceFile& file : kProjectFiles) dev_->project().writeFile(file.path, file.content);
    FluxDev::Options options;
    options.workers = 2;
    options.extra_args = {"--heap-limit-mb", "64"};
    // Functions must see UTC and en-US whatever the machine's settings, and only FLUX_ vars.
    options.env = {{"TZ", "America/New_York"},
                   {"LANG", "de_DE.UTF-8"},
                   {"LC_ALL", "de_DE.UTF-8"},
                   {"FLUX_FROM_PROCESS", "from-process"},
                   {"NOT_FLUX_SECRET", "must-not-leak"}};
    auto started = dev_->start(std::move(options));
    if (!started) start_error_ = started.error();
  }

  static void TearDownTestSuite() {
    if (dev_->started()) {
      auto status = dev_->stop();
      EXPECT_EQ(status, std::optional<int>(0)) << dev_->output();
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

  static inline FluxDev* dev_ = nullptr;
  static inline std::string start_error_;
};

// ---- returns, routes, defineFunction, modules ----

TEST_F(DevServerTest, PlainObjectIsJson) {
  HttpResponse r = request(port(), "GET", "/json");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(parseJson(r.body), json::parse(R"({"ok": true, "n": 42, "list": [1, "two", null],
                                              "nested": {"unicode": "héllo ✓"}})"));
}

TEST_F(DevServerTest, StringIsTextPlain) {
  HttpResponse r = request(port(), "GET", "/text");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "text/plain;charset=UTF-8");
  EXPECT_EQ(r.body, "plain text ✓");
}

TEST_F(DevServerTest, ResponseKeepsStatusHeadersAndBody) {
  HttpResponse r = request(port(), "POST", "/response", {{"content-type", "text/plain"}}, "thing");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.header("x-custom"), "yes");
  EXPECT_EQ(r.header("content-type"), "text/x-flux; charset=utf-8");
  EXPECT_EQ(r.body, "created thing");

  HttpResponse j = request(port(), "GET", "/response?kind=json");
  EXPECT_EQ(j.status, 202);
  EXPECT_EQ(j.header("x-kind"), "json");
  EXPECT_EQ(j.header("content-type"), "application/json");
  EXPECT_EQ(parseJson(j.body), json::parse(R"({"created": true})"));

  HttpResponse b = request(port(), "GET", "/response?kind=bytes");
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(b.header("content-type"), "application/octet-stream");
  EXPECT_EQ(b.body, std::string("\x00\x01\x02\xff", 4));
}

TEST_F(DevServerTest, RouteParamsReachCtxParams) {
  HttpResponse r = request(port(), "GET", "/users/42/posts/hello-world?ignored=1");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(parseJson(r.body), json::parse(R"({"params": {"id": "42", "postId": "hello-world"},
                                              "pathname": "/users/42/posts/hello-world"})"));
  // A path with a missing segment is not the route.
  EXPECT_EQ(request(port(), "GET", "/users/42/posts").status, 404);
  EXPECT_EQ(request(port(), "GET", "/users/42/posts/7/extra").status, 404);
}

TEST_F(DevServerTest, DefineFunctionPostTakesJsonBodyAsInput) {
  HttpResponse r = request(port(), "POST", "/define", {{"content-type", "application/json"}},
                           R"({"name": "Ada", "tags": ["x", "y"], "n": 3})");
  ASSERT_EQ(r.status, 200) << r.body;
  json body = parseJson(r.body);
  EXPECT_EQ(body["kind"], "post");
  EXPECT_EQ(body["input"], json::parse(R"({"name": "Ada", "tags": ["x", "y"], "n": 3})"));
  EXPECT_EQ(body["requestId"], r.header("x-request-id"));

  HttpResponse bad =
      request(port(), "POST", "/define", {{"content-type", "application/json"}}, "{not json");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_TRUE(parseJson(bad.body).contains("error")) << bad.body;
}

TEST_F(DevServerTest, DefineFunctionGetTakesQueryAsInput) {
  HttpResponse r = request(port(), "GET", "/define?name=Ada%20L&tag=a&tag=b");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(parseJson(r.body),
            json::parse(R"({"kind": "get", "input": {"name": "Ada L", "tag": ["a", "b"]}})"));
}

TEST_F(DevServerTest, ImportsLocalModulesTypesAndSharedCode) {
  HttpResponse r = request(port(), "GET", "/imports");
  ASSERT_EQ(r.status, 200) << r.body << "\n" << dev().output();
  EXPECT_EQ(parseJson(r.body), json::parse(R"({"greeting": {"text": "HELLO, FLUX", "loud": true},
                                              "doubled": 42})"));
}

// ---- errors and limits ----

TEST_F(DevServerTest, ThrownErrorIs500WithRequestIdAndSourceMappedStack) {
  size_t from = dev().outputSize();
  HttpResponse r = request(port(), "GET", "/boom");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.header("content-type"), "application/json");
  std::string id = r.header("x-request-id");
  EXPECT_TRUE(isUuidV7(id));
  json body = parseJson(r.body);
  EXPECT_EQ(body["error"], "boom: on purpose");
  EXPECT_EQ(body["request_id"], id);

  // "[boom] req:xxxxxxxx Error: boom: on purpose\n    at explode (functions/boom/index.ts:5:9)"
  std::string handle = "[boom] req:" + shortId(id) + " Error: boom: on purpose";
  auto at = dev().waitForOutput(handle, kLogWait, from);
  ASSERT_TRUE(at) << "no error log \"" << handle << "\" in:\n" << dev().output();
  auto location = dev().waitForOutput("functions/boom/index.ts:5:9", kLogWait, *at);
  EXPECT_TRUE(location) << "the stack does not point at functions/boom/index.ts:5:9 (the throw):\n"
                        << dev().output().substr(*at);
  EXPECT_TRUE(loggedRequest(dev(), "GET", "/boom", 500, id));
}

TEST_F(DevServerTest, InfiniteLoopIs504WhileOtherFunctionsKeepAnswering) {
  size_t from = dev().outputSize();
  auto spin_started = steady_clock::now();
  auto spin = std::async(std::launch::async, [port = port()] {
    auto r = httpRequest(port, "GET", "/spin?n=1");
    return std::make_pair(std::move(r), steady_clock::now());
  });
  ASSERT_TRUE(dev().waitForOutput("[spin] spinning 1", kLogWait, from)) << dev().output();

  // One worker is stuck in the loop now. Connections are spread over the two workers by the
  // kernel: of 16, some reach the free worker, which must answer while the loop still runs.
  constexpr int kClients = 16;
  std::vector<
      std::future<std::pair<std::expected<HttpResponse, std::string>, steady_clock::time_point>>>
      clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::async(std::launch::async, [port = port()] {
      auto r = httpRequest(port, "GET", "/fast");
      return std::make_pair(std::move(r), steady_clock::now());
    }));
  }
  auto [spin_response, spin_done] = spin.get();
  ASSERT_TRUE(spin_response) << spin_response.error();
  EXPECT_EQ(spin_response->status, 504) << spin_response->body;
  json body = parseJson(spin_response->body);
  EXPECT_TRUE(body["error"].is_string());
  EXPECT_EQ(body["request_id"], spin_response->header("x-request-id"));
  EXPECT_LT(spin_done - spin_started, std::chrono::seconds(5)) << "the 500 ms limit took too long";

  int answered_during_loop = 0;
  for (auto& client : clients) {
    auto [response, done] = client.get();
    ASSERT_TRUE(response) << response.error();
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "fast");
    if (done < spin_done) ++answered_during_loop;
  }
  EXPECT_GT(answered_during_loop, 0)
      << "no other request was answered while one function looped forever";
  EXPECT_TRUE(loggedRequest(dev(), "GET", "/spin", 504, spin_response->header("x-request-id")));

  // The looping function's context is replaced: it times out again rather than wedging.
  HttpResponse again = request(port(), "GET", "/spin?n=2");
  EXPECT_EQ(again.status, 504);
}

TEST_F(DevServerTest, AwaitThatNeverResolvesIs504) {
  auto started = steady_clock::now();
  HttpResponse r = request(port(), "GET", "/hang");
  EXPECT_EQ(r.status, 504) << r.body;
  EXPECT_LT(steady_clock::now() - started, std::chrono::seconds(5));
  json body = parseJson(r.body);
  EXPECT_TRUE(body["error"].is_string());
  EXPECT_EQ(body["request_id"], r.header("x-request-id"));
  EXPECT_EQ(request(port(), "GET", "/fast").body, "fast");
}

TEST_F(DevServerTest, HeapExhaustionIs500AndTheServerKeepsAnswering) {
  for (int round = 0; round < 2; ++round) {
    HttpResponse r = request(port(), "GET", "/hog");
    EXPECT_EQ(r.status, 500) << "round " << round << ": " << r.body;
    json body = parseJson(r.body);
    EXPECT_TRUE(body["error"].is_string());
    EXPECT_EQ(body["request_id"], r.header("x-request-id"));
    ASSERT_TRUE(dev().process().running()) << "flux dev died:\n" << dev().output();
    // Fresh connections land on both workers.
    for (int i = 0; i < 6; ++i) {
      HttpResponse ok = request(port(), "GET", "/json");
      EXPECT_EQ(ok.status, 200) << ok.body;
    }
  }
}

TEST_F(DevServerTest, UnknownRouteIs404Json) {
  HttpResponse r = request(port(), "GET", "/no/such/function");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.header("content-type"), "application/json");
  json body = parseJson(r.body);
  EXPECT_TRUE(body["error"].is_string());
  EXPECT_EQ(body["request_id"], r.header("x-request-id"));
}

TEST_F(DevServerTest, WrongMethodIs405WithAllow) {
  HttpResponse r = request(port(), "DELETE", "/json");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "GET");
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(parseJson(r.body)["request_id"], r.header("x-request-id"));

  // /define is served for GET and POST by two functions.
  HttpResponse put = request(port(), "PUT", "/define", {}, "{}");
  EXPECT_EQ(put.status, 405);
  std::string allow = put.header("allow");
  EXPECT_NE(allow.find("GET"), std::string::npos) << allow;
  EXPECT_NE(allow.find("POST"), std::string::npos) << allow;
}

TEST_F(DevServerTest, BodyOverTenMebibytesIs413) {
  // Exactly the limit is accepted.
  std::string at_limit(kBodyLimit, 'a');
  HttpResponse ok = request(port(), "POST", "/echo", {{"content-type", "text/plain"}}, at_limit);
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(parseJson(ok.body)["length"], kBodyLimit);

  std::string over(kBodyLimit + 1, 'a');
  auto connection = HttpConnection::open(port());
  ASSERT_TRUE(connection) << connection.error();
  std::string head =
      "POST /echo HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: text/plain\r\n"
      "content-length: " +
      std::to_string(over.size()) + "\r\n\r\n";
  // The server may answer and close before reading the whole body: a failed send is fine.
  (void)connection->send(head + over);
  auto r = connection->readResponse();
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->status, 413);
  EXPECT_TRUE(parseJson(r->body)["error"].is_string()) << r->body;
  EXPECT_TRUE(hasRequestId(*r));
  EXPECT_EQ(request(port(), "GET", "/fast").status, 200);
}

TEST_F(DevServerTest, GarbageIs400) {
  for (std::string garbage :
       {std::string("NOT HTTP\r\n\r\n"),
        std::string("GET /json HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n"),
        std::string("GET /json HTTP/1.1\r\nno colon here\r\n\r\n")}) {
    RawReply reply = rawExchange(port(), garbage, milliseconds(10000));
    EXPECT_TRUE(reply.closed_by_peer) << "the server kept the connection open after garbage";
    EXPECT_TRUE(reply.received.starts_with("HTTP/1.1 400 ")) << reply.received;
    // Parse what came back as a response.
    auto connection = HttpConnection::open(port());
    ASSERT_TRUE(connection);
    ASSERT_TRUE(connection->send(garbage));
    auto r = connection->readResponse();
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(r->status, 400);
    EXPECT_TRUE(parseJson(r->body)["error"].is_string()) << r->body;
    EXPECT_TRUE(hasRequestId(*r)) << "for " << garbage;
  }
  EXPECT_EQ(request(port(), "GET", "/fast").status, 200);
}

// ---- connections ----

TEST_F(DevServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  auto connection = HttpConnection::open(port());
  ASSERT_TRUE(connection) << connection.error();
  auto first = connection->request("GET", "/json");
  ASSERT_TRUE(first) << first.error();
  EXPECT_EQ(first->status, 200);
  auto second = connection->request("POST", "/echo", {{"x-mixed-case", "Kept"}}, "second");
  ASSERT_TRUE(second) << second.error();
  EXPECT_EQ(second->status, 200);
  EXPECT_EQ(parseJson(second->body)["body"], "second");
  EXPECT_EQ(parseJson(second->body)["mixed"], "Kept");
  EXPECT_NE(first->header("x-request-id"), second->header("x-request-id"));

  // Pipelined: two requests in one write, two responses in order.
  ASSERT_TRUE(connection->send(
      "GET /text HTTP/1.1\r\nhost: x\r\n\r\nGET /fast HTTP/1.1\r\nhost: x\r\n\r\n"));
  auto third = connection->readResponse();
  ASSERT_TRUE(third) << third.error();
  EXPECT_EQ(third->body, "plain text ✓");
  auto fourth = connection->readResponse();
  ASSERT_TRUE(fourth) << fourth.error();
  EXPECT_EQ(fourth->body, "fast");

  // "connection: close" is honoured.
  auto last = connection->request("GET", "/fast", {{"connection", "close"}});
  ASSERT_TRUE(last) << last.error();
  EXPECT_EQ(last->status, 200);
  RawReply after = connection->readUntilClose(milliseconds(5000));
  EXPECT_TRUE(after.closed_by_peer);
  EXPECT_EQ(after.received, "");
}

// ---- request ids and the access log ----

TEST_F(DevServerTest, EveryResponseHasAUuidV7RequestIdThatIsLogged) {
  struct Case {
    std::string method, path, body;
    int status;
    std::string logged_path;
  };
  const std::vector<Case> cases = {
      {"GET", "/json", "", 200, "/json"},
      {"GET", "/text?x=1", "", 200, "/text"},
      {"POST", "/define", "{}", 200, "/define"},
      {"GET", "/users/7/posts/8", "", 200, "/users/7/posts/8"},
      {"GET", "/missing", "", 404, "/missing"},
      {"PATCH", "/json", "", 405, "/json"},
      {"GET", "/boom", "", 500, "/boom"},
  };
  std::set<std::string> ids;
  for (const Case& c : cases) {
    HttpResponse r = request(port(), c.method, c.path, {}, c.body);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.path;
    ASSERT_TRUE(hasRequestId(r)) << c.method << " " << c.path;
    std::string id = r.header("x-request-id");
    EXPECT_TRUE(ids.insert(id).second) << "request id reused: " << id;
    EXPECT_TRUE(loggedRequest(dev(), c.method, c.logged_path, c.status, id));
  }
}

// ---- Web APIs and ctx ----

TEST_F(DevServerTest, WebApis) {
  size_t from = dev().outputSize();
  HttpResponse r = request(port(), "GET", "/webapis?q=search%20me", {{"X-Mixed-Case", "Value"}});
  ASSERT_EQ(r.status, 200) << r.body << "\n" << dev().output();
  json out = parseJson(r.body);

  EXPECT_EQ(out["url"], json::parse(R"({
    "href": "https://user:pa%20ss@example.com:8080/a/c/%7Euser?x=1&y=two%20words#frag",
    "protocol": "https:", "username": "user", "password": "pa%20ss", "host": "example.com:8080",
    "hostname": "example.com", "port": "8080", "pathname": "/a/c/%7Euser",
    "search": "?x=1&y=two%20words", "hash": "#frag", "origin": "https://example.com:8080",
    "y": "two words"})"));
  EXPECT_EQ(out["relativeUrl"], "https://example.com/a/d?q=1");
  EXPECT_EQ(out["defaultPortDropped"], "http://example.com/");
  EXPECT_EQ(out["invalidUrl"], "TypeError");
  EXPECT_EQ(out["requestUrl"], json::parse(R"({"pathname": "/webapis", "q": "search me"})"));

  EXPECT_EQ(out["searchParams"], json::parse(R"({"all": ["1", "3"], "hasB": true, "missing": null,
                                                "text": "a=1&b=2&a=3&c=x+y%26z%3D%C3%A9"})"));
  EXPECT_EQ(out["searchParamsSorted"], "a=1&a=3&c=x+y%26z%3D%C3%A9");
  EXPECT_EQ(out["searchParamsFromRecord"], "k=v+w&e=");
  EXPECT_EQ(out["searchParamsEntries"], json::parse(R"([["p", "1"], ["q", " "]])"));

  // "héllo → 世界 🎉" in UTF-8.
  EXPECT_EQ(out["text"], json::parse(R"({"isUint8Array": true,
      "hex": "68c3a96c6c6f20e2869220e4b896e7958c20f09f8e89",
      "roundTrip": "héllo → 世界 🎉", "equal": true, "encoding": "utf-8"})"));
  EXPECT_EQ(out["replacement"], "a\uFFFDb");
  EXPECT_EQ(out["fatalDecode"], "TypeError");
  // Only the whole "a" fits in two bytes: "é" needs two more.
  EXPECT_EQ(out["encodeInto"], json::parse(R"({"read": 1, "written": 1})"));

  EXPECT_EQ(out["btoa"], "SGVsbG8sIEZsdXgh");
  EXPECT_EQ(out["atob"], "Hello, Flux!");
  EXPECT_EQ(out["btoaBinary"], "AP+A");
  EXPECT_EQ(out["atobBinary"], json::parse("[0, 255, 128]"));
  EXPECT_EQ(out["atobWhitespace"], "Hello");
  EXPECT_EQ(out["btoaNonLatin1"], "InvalidCharacterError");
  EXPECT_EQ(out["atobInvalid"], "InvalidCharacterError");

  EXPECT_EQ(out["clone"], json::parse(R"({"distinct": true, "isMap": true, "isDate": true,
      "time": "2024-01-02T03:04:05.000Z", "deep": true, "isSet": true, "bytes": [9, 8],
      "cycle": true})"));
  EXPECT_EQ(out["cloneFunction"], "DataCloneError");

  static const std::regex kUuidV4(
      "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  ASSERT_EQ(out["uuids"].size(), 2u);
  for (const json& uuid : out["uuids"]) {
    EXPECT_TRUE(std::regex_match(uuid.get<std::string>(), kUuidV4)) << uuid;
  }
  EXPECT_NE(out["uuids"][0], out["uuids"][1]);
  EXPECT_EQ(out["random"]["sameArray"], true);
  // 64 random bytes have at least 20 distinct values but for a one-in-10^20 chance.
  EXPECT_GE(out["random"]["distinctValues"].get<int>(), 20);
  EXPECT_EQ(out["random"]["u32"], true);
  EXPECT_EQ(out["random"]["tooLarge"], "QuotaExceededError");

  EXPECT_EQ(out["timers"], json::parse(R"({"order": ["sync", "queueMicrotask", "promise",
      "timeout-0", "timeout-20"], "ticks": 3, "args": 5})"));

  EXPECT_EQ(out["headers"], json::parse(R"({"get": "text/html", "has": true, "multi": "1, 2",
      "keys": ["content-type", "x-multi"], "request": "Value", "requestUpper": "Value",
      "afterDelete": false})"));
  EXPECT_EQ(out["responseJson"], json::parse(R"({"status": 201,
      "contentType": "application/json", "extra": "e", "body": {"a": [1, 2]}})"));
  EXPECT_EQ(out["request"], json::parse(R"({"method": "POST", "text": "hi", "header": "b"})"));

  // flux dev was started with TZ=America/New_York and a German locale.
  EXPECT_EQ(out["intl"], json::parse(R"json({"timeZone": "UTC", "locale": "en-US",
      "number": "1,234,567.891", "hours": 0, "offset": 0,
      "dateString": "Tue Jan 02 2024 03:04:05 GMT+0000 (Coordinated Universal Time)",
      "localeDate": "1/2/2024"})json"));
  EXPECT_LT(std::abs(out["now"].get<int64_t>() - unixMillisNow()), 60'000);
  double random = out["mathRandom"].get<double>();
  EXPECT_TRUE(random >= 0 && random < 1) << random;

  EXPECT_TRUE(dev().waitForOutput("[webapis] webapis console.log { n: 1 }", kLogWait, from))
      << dev().output();
  EXPECT_TRUE(dev().waitForOutput("[webapis] error: webapis console.error", kLogWait, from))
      << dev().output();
}

TEST_F(DevServerTest, CtxEnvComesFromDotEnvAndFluxPrefixedVariables) {
  size_t from = dev().outputSize();
  HttpResponse r = request(port(), "GET", "/env");
  ASSERT_EQ(r.status, 200) << r.body;
  json body = parseJson(r.body);
  EXPECT_EQ(body["env"], json::parse(R"({"GREETING": "hello\nworld", "PLAIN": "plain value",
      "EXPORTED": "yes", "SINGLE": "no $expansion\\n", "EMPTY": "",
      "FLUX_FROM_PROCESS": "from-process"})"));
  EXPECT_EQ(body["writable"], false) << "ctx.env can be changed by a function";
  EXPECT_TRUE(dev().waitForOutput("[env] env checked { keys: 6 }", kLogWait, from))
      << dev().output();
}

// ---- hot reload ----

TEST_F(DevServerTest, HotReloadServesTheNewCode) {
  ASSERT_EQ(request(port(), "GET", "/reload").body, "version 1");

  size_t from = dev().outputSize();
  dev().project().writeFile("functions/reload/index.ts",
                            "export default async function handler() {\n"
                            "  return \"version 2\";\n"
                            "}\n");
  ASSERT_TRUE(dev().waitForOutput("[reload] reloaded", kLogWait, from)) << dev().output();
  // Fresh connections, so that both workers are asked.
  for (int i = 0; i < 6; ++i) {
    HttpResponse r = request(port(), "GET", "/reload");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "version 2") << "request " << i << " after the reload";
  }

  // A change that does not build keeps the previous version serving.
  from = dev().outputSize();
  dev().project().writeFile("functions/reload/index.ts",
                            "export default async function handler( {\n  return ;;; \"x\n");
  ASSERT_TRUE(dev().waitForOutput("[reload] build failed", kLogWait, from)) << dev().output();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(request(port(), "GET", "/reload").body, "version 2");

  from = dev().outputSize();
  dev().project().writeFile("functions/reload/index.ts",
                            "export default async function handler() {\n"
                            "  return \"version 3\";\n"
                            "}\n");
  ASSERT_TRUE(dev().waitForOutput("[reload] reloaded", kLogWait, from)) << dev().output();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(request(port(), "GET", "/reload").body, "version 3");
}

TEST_F(DevServerTest, HotReloadAddsAndRemovesFunctions) {
  EXPECT_EQ(request(port(), "GET", "/added").status, 404);
  size_t from = dev().outputSize();
  dev().project().writeFile("functions/added/flux.json", R"({"route": "/added", "method": "GET"})");
  dev().project().writeFile("functions/added/index.ts", "export default () => \"added\";\n");
  ASSERT_TRUE(dev().waitForOutput("[added] reloaded", kLogWait, from)) << dev().output();
  for (int i = 0; i < 4; ++i) {
    HttpResponse r = request(port(), "GET", "/added");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "added");
  }

  from = dev().outputSize();
  fs::remove_all(dev().root() / "functions" / "added");
  ASSERT_TRUE(dev().waitForOutput("[added] removed", kLogWait, from)) << dev().output();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(request(port(), "GET", "/added").status, 404);
}

// functions/_shared/ has no index.ts: it is not a function, but the functions that import it
// are built from it and must be rebuilt when it changes.
TEST_F(DevServerTest, HotReloadRebuildsFunctionsThatImportAChangedSharedModule) {
  ASSERT_EQ(request(port(), "GET", "/shared-user").body, "label 1");
  size_t from = dev().outputSize();
  dev().project().writeFile("functions/_shared/label.ts", "export const label = \"label 2\";\n");
  EXPECT_TRUE(dev().waitForOutput("[shared-user] reloaded", milliseconds(5000), from))
      << "editing functions/_shared/label.ts did not reload functions/shared-user:\n"
      << dev().output().substr(from);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(request(port(), "GET", "/shared-user").body, "label 2") << "request " << i;
  }
}

TEST_F(DevServerTest, InFlightRequestFinishesOnTheOldCode) {
  size_t from = dev().outputSize();
  auto in_flight = std::async(std::launch::async,
                              [port = port()] { return httpRequest(port, "GET", "/slow-reload"); });
  ASSERT_TRUE(dev().waitForOutput("[slow-reload] slow-reload started", kLogWait, from))
      << dev().output();
  dev().project().writeFile("functions/slow-reload/index.ts",
                            "export default async function handler() {\n"
                            "  return \"new code\";\n"
                            "}\n");
  auto reloaded = dev().waitForOutput("[slow-reload] reloaded", kLogWait, from);
  ASSERT_TRUE(reloaded) << dev().output();
  EXPECT_EQ(request(port(), "GET", "/slow-reload").body, "new code");

  auto old = in_flight.get();
  ASSERT_TRUE(old) << old.error();
  EXPECT_EQ(old->status, 200);
  EXPECT_EQ(old->body, "old code");
  // Meaningful only if the reload happened while the old request ran.
  auto old_logged =
      dev().waitForOutput("req:" + shortId(old->header("x-request-id")), kLogWait, from);
  ASSERT_TRUE(old_logged) << dev().output();
  EXPECT_LT(*reloaded, *old_logged) << "the reload finished after the in-flight request";
}

// ---- instances of their own ----

// Every live process of the project's PostgreSQL cluster.
std::vector<ProcessInfo> postgresOf(const FluxDev& dev) {
  return liveProcessesMentioning(dev.pgDataDir().string());
}

TEST(FluxInitTest, InitThenDevServesHello) {
  TempProject parent;
  fs::path dir = parent.root() / "myapp";
  auto init = runFlux({"init", dir.string()}, milliseconds(30000));
  ASSERT_TRUE(init) << init.error();
  EXPECT_EQ(init->first, 0) << init->second;
  for (const char* file : {"functions/hello/index.ts", "functions/hello/flux.json",
                           "migrations/001_init.sql", ".gitignore", "README.md"}) {
    EXPECT_TRUE(fs::is_regular_file(dir / file)) << file;
  }

  {
    FluxDev dev(dir);
    auto started = dev.start();
    ASSERT_TRUE(started) << started.error();
    EXPECT_TRUE(dev.waitForOutput("migration applied: 001_init.sql", milliseconds(0)))
        << dev.output();
    HttpResponse r = request(dev.port(), "GET", "/hello?name=Flux");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("content-type"), "application/json");
    json body = parseJson(r.body);
    EXPECT_EQ(body["message"], "Hello, Flux!");
    EXPECT_TRUE(loggedRequest(dev, "GET", "/hello", 200, r.header("x-request-id")));
    EXPECT_EQ(dev.stop(), std::optional<int>(0)) << dev.output();
    EXPECT_TRUE(postgresOf(dev).empty());
  }

  // A second start reuses the cluster and does not apply the migration again.
  FluxDev again(dir);
  auto restarted = again.start();
  ASSERT_TRUE(restarted) << restarted.error();
  EXPECT_EQ(again.output().find("migration applied"), std::string::npos) << again.output();
  HttpResponse r = request(again.port(), "GET", "/hello");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(parseJson(r.body)["message"], "Hello, world!");
  EXPECT_EQ(again.stop(), std::optional<int>(0)) << again.output();
}

TEST(FluxShutdownTest, SigtermStopsFluxAndItsPostgres) {
  FluxDev dev;
  dev.project().writeFile("functions/hi/index.ts", "export default () => \"hi\";\n");
  auto started = dev.start();
  ASSERT_TRUE(started) << started.error();
  EXPECT_EQ(request(dev.port(), "POST", "/hi").body, "hi");

  // The check below can only pass for the right reason if it sees the cluster while it runs.
  std::vector<ProcessInfo> running = postgresOf(dev);
  ASSERT_FALSE(running.empty()) << "no process mentions " << dev.pgDataDir();
  bool has_postmaster = false;
  for (const ProcessInfo& p : running) {
    has_postmaster = has_postmaster || p.cmdline.find("postgres") != std::string::npos;
  }
  EXPECT_TRUE(has_postmaster);

  EXPECT_EQ(dev.stop(SIGTERM), std::optional<int>(0)) << dev.output();
  EXPECT_NE(dev.output().find("shutting down"), std::string::npos) << dev.output();
  for (const ProcessInfo& p : running) {
    EXPECT_FALSE(isAlive(p.pid)) << "still running after flux exited: " << p.pid << " "
                                 << p.cmdline;
  }
  EXPECT_TRUE(postgresOf(dev).empty());
  // The port is closed.
  EXPECT_FALSE(HttpConnection::open(dev.port(), milliseconds(2000)));
}

TEST(FluxIdleTimeoutTest, ServerClosesConnectionsWithoutACompleteRequest) {
  FluxDev dev;
  dev.project().writeFile("functions/hi/flux.json", R"({"method": "GET"})");
  dev.project().writeFile("functions/hi/index.ts", "export default () => \"hi\";\n");
  FluxDev::Options options;
  options.extra_args = {"--idle-timeout-ms", "300"};
  auto started = dev.start(std::move(options));
  ASSERT_TRUE(started) << started.error();

  // Half a request: the headers never end.
  RawReply half =
      rawExchange(dev.port(), "GET /hi HTTP/1.1\r\nhost: 127.0.0.1\r\n", milliseconds(5000));
  EXPECT_TRUE(half.closed_by_peer) << "a half request held the connection for 5 s";
  EXPECT_GE(half.elapsed, milliseconds(200)) << "closed before the idle timeout";
  EXPECT_EQ(half.received.find("HTTP/1.1 2"), std::string::npos) << half.received;

  // Nothing at all.
  RawReply silent = rawExchange(dev.port(), "", milliseconds(5000));
  EXPECT_TRUE(silent.closed_by_peer) << "a silent connection was held for 5 s";

  // A client trickling one byte every 50 ms never completes a request in 300 ms.
  {
    auto connection = HttpConnection::open(dev.port());
    ASSERT_TRUE(connection) << connection.error();
    const std::string slow =
        "GET /hi HTTP/1.1\r\nhost: 127.0.0.1\r\nx-padding: " + std::string(200, 'p') + "\r\n\r\n";
    auto start = steady_clock::now();
    bool closed = false;
    for (char c : slow) {
      if (!connection->send(std::string_view(&c, 1))) {
        closed = true;
        break;
      }
      RawReply r = connection->readUntilClose(milliseconds(50));
      if (r.closed_by_peer) {
        closed = true;
        break;
      }
      if (steady_clock::now() - start > std::chrono::seconds(5)) break;
    }
    EXPECT_TRUE(closed)
        << "a slow client kept its connection for "
        << std::chrono::duration_cast<milliseconds>(steady_clock::now() - start).count() << " ms";
  }

  // An idle keep-alive connection after a response is closed too; requests still work.
  auto connection = HttpConnection::open(dev.port());
  ASSERT_TRUE(connection) << connection.error();
  auto r = connection->request("GET", "/hi");
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->body, "hi");
  RawReply idle = connection->readUntilClose(milliseconds(5000));
  EXPECT_TRUE(idle.closed_by_peer) << "an idle keep-alive connection was held for 5 s";

  EXPECT_EQ(dev.stop(SIGINT), std::optional<int>(0)) << dev.output();
  EXPECT_NE(dev.output().find("interrupted"), std::string::npos) << dev.output();
  EXPECT_TRUE(postgresOf(dev).empty());
}

}  // namespace
}  // namespace flux::tests

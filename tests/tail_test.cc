// End-to-end tests of `flux tail`: the real `flux` binary streaming from a real `flux dev` (its
// embedded PostgreSQL, the recorder's NOTIFY, the admin API's live stream), its stdout a pipe
// (or a pseudo-terminal, for colour), while the test makes requests.
//
// TailTest shares ONE `flux dev` (SetUpTestSuite); each test starts its own `flux tail`
// processes and tells its requests apart by their request ids (x-request-id -> req:<8 hex>).
// Restarting the server gets its own instance.
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <expected>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
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

constexpr milliseconds kLineWait{15000};
// After the lines a tail must print have come, how long the ones it must not print get to
// show up anyway (records are stored in batches every 50 ms).
constexpr milliseconds kSettle{1500};
constexpr std::string_view kBanner = "Streaming live requests";

const std::vector<std::pair<std::string, std::string>> kProjectFiles = {
    {"migrations/001_users.sql",
     "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL);\n"},
    {"functions/signup/index.ts", R"ts(
export default async function handler(req: Request, ctx: any) {
  const { email } = await req.json();
  const user = await ctx.db.insert("users", { email });
  return new Response(JSON.stringify({ id: user.id }), { status: 201 });
}
)ts"},
    {"functions/checkout/index.ts", R"ts(
export default async function handler() {
  throw new Error("Stripe API timeout");
}
)ts"},
    {"functions/validate/index.ts", R"ts(
export default async function handler() {
  return new Response(JSON.stringify({ error: "email required" }), { status: 400 });
}
)ts"},
    {"functions/users/index.ts", R"ts(
export default async function handler() {
  return [{ id: 1, email: "a@b.com" }];
}
)ts"},
    {"functions/users/flux.json", R"({"method": "GET"})"},
};

void writeProject(TempProject& project) {
  for (const auto& [path, content] : kProjectFiles) project.writeFile(path, content);
}

std::string handleOf(const std::string& request_id) {
  return "req:" + (request_id.size() >= 8 ? request_id.substr(request_id.size() - 8) : request_id);
}

std::vector<std::string> linesOf(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

// The line of `text` that mentions `needle`, and the one after it ("" when none).
std::pair<std::string, std::string> lineWith(const std::string& text, const std::string& needle) {
  std::vector<std::string> lines = linesOf(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find(needle) != std::string::npos) {
      return {lines[i], i + 1 < lines.size() ? lines[i + 1] : std::string()};
    }
  }
  return {};
}

// One request; its request id (from x-request-id), or a test failure and "".
std::string call(int port, std::string_view method, std::string_view path, int expected_status,
                 std::string_view body = {}) {
  HeaderList headers;
  if (!body.empty()) headers.push_back({"content-type", "application/json"});
  auto response = httpRequest(port, method, path, headers, body);
  if (!response) {
    ADD_FAILURE() << method << " " << path << " failed: " << response.error();
    return {};
  }
  EXPECT_EQ(response->status, expected_status) << method << " " << path << ": " << response->body;
  std::string id = response->header("x-request-id");
  EXPECT_FALSE(id.empty()) << method << " " << path;
  return id;
}

// One of each: a read (200), a refusal (400), a failure (500), a write (201).
struct Requests {
  std::string users, validate, checkout, signup;
  std::vector<std::string> all() const { return {users, validate, checkout, signup}; }
};

Requests makeRequests(int port) {
  Requests r;
  r.users = call(port, "GET", "/users", 200);
  r.validate = call(port, "POST", "/validate", 400, "{}");
  r.checkout = call(port, "POST", "/checkout", 500, "{}");
  r.signup = call(port, "POST", "/signup", 201, R"({"email": "tail@example.com"})");
  return r;
}

// `flux tail <args>` in the project, stdout and stderr piped to the test.
std::unique_ptr<FluxProcess> startTail(const fs::path& root, std::vector<std::string> args,
                                       std::vector<std::pair<std::string, std::string>> env = {
                                           {"NO_COLOR", "1"}}) {
  args.insert(args.begin(), "tail");
  auto process = FluxProcess::start({.args = std::move(args), .env = std::move(env), .cwd = root});
  if (!process) {
    ADD_FAILURE() << "cannot start flux tail: " << process.error();
    return nullptr;
  }
  return std::move(*process);
}

// Waits for the banner that says the past is printed and live records follow.
::testing::AssertionResult waitLive(FluxProcess& tail) {
  if (tail.waitForOutput(kBanner, kLineWait)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "flux tail never went live:\n" << tail.output();
}

::testing::AssertionResult printed(FluxProcess& tail, const std::string& request_id) {
  if (tail.waitForOutput(handleOf(request_id), kLineWait)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << handleOf(request_id) << " never came:\n" << tail.output();
}

class TailTest : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    dev_ = new FluxDev();
    writeProject(dev_->project());
    auto started = dev_->start();
    if (!started) start_error_ = started.error();
  }
  static void TearDownTestSuite() {
    if (dev_->started()) dev_->stop();
    delete dev_;
    dev_ = nullptr;
  }

 protected:
  void SetUp() override {
    ASSERT_TRUE(start_error_.empty()) << start_error_;
    ASSERT_TRUE(dev_->process().running()) << "flux dev exited:\n" << dev_->output();
  }

  static int port() { return dev_->port(); }
  static const fs::path& root() { return dev_->root(); }

  // A job execution as a queue worker would store it (Flux has no queue yet): a row in
  // flux.executions and the recorder's NOTIFY for it. Its id.
  static std::string storeJob(const std::string& function) {
    auto out =
        psql(*dev_,
             "WITH j AS (INSERT INTO flux.executions (id, kind, function, method, path, status, "
             "started_at, duration_us) VALUES (gen_random_uuid(), 'job', '" +
                 function +
                 "', '', '', 0, now(), 220000) RETURNING id) "
                 "SELECT pg_notify('flux_records', json_build_object('count', 1, 'min_id', id, "
                 "'max_id', id)::text), id FROM j");
    EXPECT_TRUE(out.has_value()) << out.error();
    if (!out) return {};
    std::string text = *out;
    size_t bar = text.find('|');
    std::string id = bar == std::string::npos ? "" : text.substr(bar + 1);
    while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
    return id;
  }

  static inline FluxDev* dev_ = nullptr;
  static inline std::string start_error_;
};

// ---- lines ----

TEST_F(TailTest, EachExecutionIsOneLineAsItHappens) {
  auto tail = startTail(root(), {});
  ASSERT_NE(tail, nullptr);
  ASSERT_TRUE(waitLive(*tail));
  Requests r = makeRequests(port());
  for (const std::string& id : r.all()) ASSERT_TRUE(printed(*tail, id));
  std::string out = tail->output();

  // METHOD PATH STATUS DURATION req:<8 hex> HH:MM:SS, one line each.
  static const std::regex kLine(
      "^\\s+(GET|POST)\\s+(/\\w+)\\s+([0-9]{3})\\s+[0-9.]+m?s\\s+(req:[0-9a-f]{8})\\s+"
      "[0-9]{2}:[0-9]{2}:[0-9]{2}$");
  struct Expected {
    std::string id, method, path, status;
  };
  for (const Expected& e :
       {Expected{r.users, "GET", "/users", "200"}, Expected{r.validate, "POST", "/validate", "400"},
        Expected{r.checkout, "POST", "/checkout", "500"},
        Expected{r.signup, "POST", "/signup", "201"}}) {
    auto [line, next] = lineWith(out, handleOf(e.id));
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, kLine)) << "\"" << line << "\" in:\n" << out;
    EXPECT_EQ(m[1], e.method) << line;
    EXPECT_EQ(m[2], e.path) << line;
    EXPECT_EQ(m[3], e.status) << line;
    EXPECT_EQ(m[4], handleOf(e.id)) << line;
    if (e.id == r.checkout) {
      // A failure adds its error under the line.
      EXPECT_NE(next.find("└─ Error: Stripe API timeout"), std::string::npos) << out;
    } else if (e.id == r.signup) {
      // A write adds what it changed.
      EXPECT_NE(next.find("users.id="), std::string::npos) << out;
      EXPECT_NE(next.find("insert"), std::string::npos) << out;
    }
  }
  // Each execution once, and no colour into a pipe.
  for (const std::string& id : r.all()) {
    std::string handle = handleOf(id);
    EXPECT_EQ(out.find(handle), out.rfind(handle)) << handle << " twice:\n" << out;
  }
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << out;
  EXPECT_EQ(tail->stop(SIGINT), std::optional<int>(0)) << tail->output();
}

// ---- filters ----

TEST_F(TailTest, EachFilterLetsTheRightLinesThrough) {
  struct Case {
    std::vector<std::string> args;
    std::vector<std::string> passes;  // of users, validate, checkout, signup, job
  };
  std::vector<Case> cases = {
      {{"--fn", "checkout"}, {"checkout"}},
      {{"--errors-only"}, {"validate", "checkout"}},
      {{"--filter", "path=/signup"}, {"signup"}},
      {{"--filter", "status=500"}, {"checkout"}},
      {{"--filter", "status=4xx"}, {"validate"}},
      {{"--filter", "function=users"}, {"users"}},
      {{"--filter", "type=job"}, {"job"}},
      {{"--filter", "type=http", "--filter", "method=POST"}, {"validate", "checkout", "signup"}},
      {{"--filter", "path=/s*", "--filter", "status=201"}, {"signup"}},
  };
  std::vector<std::unique_ptr<FluxProcess>> tails;
  for (const Case& c : cases) {
    tails.push_back(startTail(root(), c.args));
    ASSERT_NE(tails.back(), nullptr);
  }
  for (auto& tail : tails) ASSERT_TRUE(waitLive(*tail));

  Requests r = makeRequests(port());
  std::string job = storeJob("send_onboarding_email");
  ASSERT_FALSE(job.empty());
  std::map<std::string, std::string> ids = {{"users", r.users},
                                            {"validate", r.validate},
                                            {"checkout", r.checkout},
                                            {"signup", r.signup},
                                            {"job", job}};
  for (size_t i = 0; i < cases.size(); ++i) {
    for (const std::string& name : cases[i].passes) {
      EXPECT_TRUE(printed(*tails[i], ids[name]))
          << "flux tail " << ::testing::PrintToString(cases[i].args);
    }
  }
  std::this_thread::sleep_for(kSettle);
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string out = tails[i]->output();
    for (const auto& [name, id] : ids) {
      bool passes =
          std::find(cases[i].passes.begin(), cases[i].passes.end(), name) != cases[i].passes.end();
      EXPECT_EQ(out.find(handleOf(id)) != std::string::npos, passes)
          << name << " with flux tail " << ::testing::PrintToString(cases[i].args) << ":\n"
          << out;
    }
  }
  // The job's line: JOB <function> done.
  auto [job_line, next] = lineWith(tails[6]->output(), handleOf(job));
  EXPECT_NE(job_line.find("JOB"), std::string::npos) << job_line;
  EXPECT_NE(job_line.find("send_onboarding_email"), std::string::npos) << job_line;
  EXPECT_NE(job_line.find("done"), std::string::npos) << job_line;
  for (auto& tail : tails) EXPECT_EQ(tail->stop(SIGINT), std::optional<int>(0));
}

TEST_F(TailTest, SincePrintsThePastFirstThenLive) {
  Requests before = makeRequests(port());
  // Stored before either tail starts.
  {
    auto probe = startTail(root(), {"--since", "10m", "--fn", "signup"});
    ASSERT_NE(probe, nullptr);
    ASSERT_TRUE(printed(*probe, before.signup));
  }

  auto since = startTail(root(), {"--since", "30m"});
  auto live_only = startTail(root(), {});
  auto filtered = startTail(root(), {"--since", "30m", "--errors-only"});
  for (auto* tail : {since.get(), live_only.get(), filtered.get()}) {
    ASSERT_NE(tail, nullptr);
    ASSERT_TRUE(waitLive(*tail));
  }
  Requests after = makeRequests(port());
  for (const std::string& id : after.all()) ASSERT_TRUE(printed(*since, id));
  ASSERT_TRUE(printed(*filtered, after.checkout));
  ASSERT_TRUE(printed(*live_only, after.signup));
  std::this_thread::sleep_for(kSettle);

  // --since: the earlier requests, before the banner, then the later ones after it.
  std::string out = since->output();
  size_t banner = out.find(kBanner);
  ASSERT_NE(banner, std::string::npos);
  for (const std::string& id : before.all()) {
    size_t at = out.find(handleOf(id));
    EXPECT_LT(at, banner) << handleOf(id) << " not in the past part:\n" << out;
    EXPECT_EQ(at, out.rfind(handleOf(id))) << handleOf(id) << " twice:\n" << out;
  }
  for (const std::string& id : after.all()) {
    size_t at = out.find(handleOf(id));
    EXPECT_GT(at, banner) << handleOf(id) << " not in the live part:\n" << out;
    EXPECT_NE(at, std::string::npos);
    EXPECT_EQ(at, out.rfind(handleOf(id))) << handleOf(id) << " twice:\n" << out;
  }
  // The past comes oldest first.
  EXPECT_LT(out.find(handleOf(before.users)), out.find(handleOf(before.signup))) << out;

  // Without --since: nothing of the past.
  std::string live = live_only->output();
  for (const std::string& id : before.all()) {
    EXPECT_EQ(live.find(handleOf(id)), std::string::npos) << live;
  }
  for (const std::string& id : after.all()) {
    EXPECT_NE(live.find(handleOf(id)), std::string::npos) << live;
  }
  // --since with a filter: the filter applies to the past too.
  std::string errors = filtered->output();
  for (const Requests* r : {&before, &after}) {
    EXPECT_NE(errors.find(handleOf(r->checkout)), std::string::npos) << errors;
    EXPECT_NE(errors.find(handleOf(r->validate)), std::string::npos) << errors;
    EXPECT_EQ(errors.find(handleOf(r->signup)), std::string::npos) << errors;
    EXPECT_EQ(errors.find(handleOf(r->users)), std::string::npos) << errors;
  }
}

// ---- the command line ----

TEST_F(TailTest, ABadFilterSaysWhichKeysThereAreAndExits2) {
  auto run = runProgram(FLUX_BINARY,
                        {.args = {"tail", "--filter", "colour=red"}, .env = {}, .cwd = root()},
                        milliseconds(30000));
  ASSERT_TRUE(run.has_value()) << run.error();
  EXPECT_EQ(run->first, 2) << run->second;
  EXPECT_NE(run->second.find("unknown key 'colour'"), std::string::npos) << run->second;
  EXPECT_NE(run->second.find("path, status, function (fn), type (kind), method"), std::string::npos)
      << run->second;

  for (std::vector<std::string> args :
       {std::vector<std::string>{"tail", "--filter", "status=teapot"},
        std::vector<std::string>{"tail", "--filter", "type=lambda"},
        std::vector<std::string>{"tail", "--since", "yesterday"}}) {
    auto bad =
        runProgram(FLUX_BINARY, {.args = args, .env = {}, .cwd = root()}, milliseconds(30000));
    ASSERT_TRUE(bad.has_value());
    EXPECT_EQ(bad->first, 2) << ::testing::PrintToString(args) << ": " << bad->second;
  }
}

TEST_F(TailTest, SigintAndSigtermExitCleanly) {
  for (int signal : {SIGINT, SIGTERM}) {
    auto tail = startTail(root(), {"--since", "1m"});
    ASSERT_NE(tail, nullptr);
    ASSERT_TRUE(waitLive(*tail));
    auto started = steady_clock::now();
    EXPECT_EQ(tail->stop(signal, milliseconds(5000)), std::optional<int>(0)) << tail->output();
    EXPECT_LT(steady_clock::now() - started, milliseconds(3000));
  }
}

TEST_F(TailTest, PipedIntoHeadItStopsWhenHeadIsDone) {
  // `flux tail | head -n 1`: each line reaches head as it is printed, and tail ends (rather
  // than hang) once head has gone.
  std::string command = std::string("'") + FLUX_BINARY + "' tail | head -n 1";
  auto shell = FluxProcess::startProgram(
      "/bin/sh", {.args = {"-c", command}, .env = {{"NO_COLOR", "1"}}, .cwd = root()});
  ASSERT_TRUE(shell.has_value()) << shell.error();
  ASSERT_TRUE((*shell)->waitForOutput(kBanner, kLineWait)) << (*shell)->output();
  std::string first = call(port(), "GET", "/users", 200);
  ASSERT_TRUE((*shell)->waitForOutput(handleOf(first), kLineWait)) << (*shell)->output();
  // The next line finds the pipe closed.
  call(port(), "GET", "/users", 200);
  EXPECT_EQ((*shell)->waitForExit(milliseconds(10000)), std::optional<int>(0))
      << (*shell)->output();
}

TEST_F(TailTest, TheStreamEndpointWantsTheToken) {
  for (const HeaderList& headers :
       {HeaderList{}, HeaderList{{"authorization", "Bearer wrong-token"}}}) {
    auto response =
        httpRequest(port(), "GET", "/_flux/records/stream", headers, {}, milliseconds(5000));
    ASSERT_TRUE(response.has_value()) << response.error();
    EXPECT_EQ(response->status, 401);
    EXPECT_EQ(response->header("content-type"), "application/json");
  }
  // With it: an event stream that goes live at once.
  std::ifstream dev_file(root() / ".flux" / "dev.json");
  json dev = json::parse(dev_file, nullptr, false);
  ASSERT_TRUE(dev.is_object());
  std::string request =
      "GET /_flux/records/stream HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: "
      "Bearer " +
      dev.value("token", "") + "\r\n\r\n";
  RawReply reply = rawExchange(port(), request, milliseconds(1500));
  EXPECT_NE(reply.received.find("HTTP/1.1 200"), std::string::npos) << reply.received;
  EXPECT_NE(reply.received.find("text/event-stream"), std::string::npos) << reply.received;
  EXPECT_NE(reply.received.find("transfer-encoding: chunked"), std::string::npos) << reply.received;
  EXPECT_NE(reply.received.find("event: live"), std::string::npos) << reply.received;
}

// ---- colour ----

// `flux tail` on a pseudo-terminal: what a person sees, escape codes included.
class PtyTail {
 public:
  explicit PtyTail(const fs::path& root, bool no_color) {
    int master = -1;
    pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
    if (pid == 0) {
      if (chdir(root.c_str()) != 0) _exit(126);
      unsetenv("NO_COLOR");
      unsetenv("DATABASE_URL");
      if (no_color) setenv("NO_COLOR", "1", 1);
      setenv("TERM", "xterm-256color", 1);
      execl(FLUX_BINARY, FLUX_BINARY, "tail", static_cast<char*>(nullptr));
      _exit(127);
    }
    pid_ = pid;
    master_ = master;
    reader_ = std::thread([this] {
      char buffer[4096];
      for (;;) {
        ssize_t n = read(master_, buffer, sizeof buffer);
        if (n <= 0) break;
        std::lock_guard lock(mutex_);
        output_.append(buffer, static_cast<size_t>(n));
      }
    });
  }
  ~PtyTail() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (reader_.joinable()) reader_.join();
    if (master_ >= 0) close(master_);
  }

  std::string output() const {
    std::lock_guard lock(mutex_);
    return output_;
  }
  bool waitFor(const std::string& needle, milliseconds timeout) const {
    auto deadline = steady_clock::now() + timeout;
    while (steady_clock::now() < deadline) {
      if (output().find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }
  // SIGINT, as Ctrl-C sends it; the exit status.
  std::optional<int> interrupt() {
    kill(pid_, SIGINT);
    for (int i = 0; i < 250; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return decodeWaitStatus(status);
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    return std::nullopt;
  }

 private:
  pid_t pid_ = -1;
  int master_ = -1;
  mutable std::mutex mutex_;
  std::string output_;
  std::thread reader_;
};

TEST_F(TailTest, ColourOnATerminalUnlessNoColor) {
  PtyTail coloured(root(), /*no_color=*/false);
  PtyTail plain(root(), /*no_color=*/true);
  ASSERT_TRUE(coloured.waitFor(std::string(kBanner), kLineWait)) << coloured.output();
  ASSERT_TRUE(plain.waitFor(std::string(kBanner), kLineWait)) << plain.output();
  Requests r = makeRequests(port());
  for (const std::string& id : r.all()) {
    ASSERT_TRUE(coloured.waitFor(handleOf(id), kLineWait)) << coloured.output();
    ASSERT_TRUE(plain.waitFor(handleOf(id), kLineWait)) << plain.output();
  }
  // Green 2xx, yellow 4xx, red 5xx (and the error line red too).
  std::string lit = coloured.output();
  EXPECT_NE(lit.find("\x1b[32m200"), std::string::npos) << lit;
  EXPECT_NE(lit.find("\x1b[32m201"), std::string::npos) << lit;
  EXPECT_NE(lit.find("\x1b[33m400"), std::string::npos) << lit;
  EXPECT_NE(lit.find("\x1b[31m500"), std::string::npos) << lit;
  EXPECT_NE(lit.find("\x1b[31m└─ Error: Stripe API timeout"), std::string::npos) << lit;
  std::string unlit = plain.output();
  EXPECT_EQ(unlit.find('\x1b'), std::string::npos) << unlit;
  EXPECT_NE(unlit.find("└─ Error: Stripe API timeout"), std::string::npos) << unlit;
  EXPECT_EQ(coloured.interrupt(), std::optional<int>(0));
  EXPECT_EQ(plain.interrupt(), std::optional<int>(0));
}

// ---- a lost server ----

TEST(TailReconnectTest, ARestartedServerIsFoundAgainAndNothingIsLost) {
  auto first = std::make_unique<FluxDev>();
  writeProject(first->project());
  ASSERT_TRUE(first->start()) << first->output();
  fs::path root = first->root();
  auto tail = startTail(root, {});
  ASSERT_NE(tail, nullptr);
  ASSERT_TRUE(waitLive(*tail));
  std::string before = call(first->port(), "GET", "/users", 200);
  ASSERT_TRUE(printed(*tail, before));

  // The server goes: the tail says so and keeps trying.
  size_t mark = tail->outputSize();
  ASSERT_EQ(first->stop(), std::optional<int>(0)) << first->output();
  EXPECT_TRUE(tail->waitForOutput("reconnecting", kLineWait, mark)) << tail->output();
  EXPECT_TRUE(tail->running());

  // It comes back on another port with another token (dev.json): the tail finds it, and
  // shows what was stored meanwhile, once.
  FluxDev second(root);
  ASSERT_TRUE(second.start()) << second.output();
  std::string during = call(second.port(), "POST", "/checkout", 500, "{}");
  EXPECT_TRUE(tail->waitForOutput("reconnected", milliseconds(30000), mark)) << tail->output();
  ASSERT_TRUE(printed(*tail, during));
  std::string after = call(second.port(), "POST", "/signup", 201, R"({"email": "back@x.io"})");
  ASSERT_TRUE(printed(*tail, after));
  std::string out = tail->output();
  for (const std::string& id : {before, during, after}) {
    EXPECT_EQ(out.find(handleOf(id)), out.rfind(handleOf(id))) << handleOf(id) << " twice:\n"
                                                               << out;
  }
  EXPECT_EQ(tail->stop(SIGINT), std::optional<int>(0)) << tail->output();
  EXPECT_EQ(second.stop(), std::optional<int>(0)) << second.output();
  first.reset();
}

}  // namespace
}  // namespace flux::tests

// End-to-end tests of `flux trace diff` and `flux trace debug`: the real `flux` binary on a
// project served by `flux dev` with its embedded PostgreSQL, its records read back through the
// admin API.
//
// TraceCliTest shares ONE `flux dev` (SetUpTestSuite) and one pair of requests to /order: the
// first inserts a row, updates it and succeeds; the second inserts a row and then throws, so
// its insert is rolled back and its update never happens. The CLI runs inside the project
// directory (it finds the server through .flux/dev.json) with NO_COLOR=1; the interactive view
// runs on a pseudo-terminal (forkpty) that the test types into.
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <utmp.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
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

constexpr milliseconds kCommandTimeout{30000};
constexpr milliseconds kScreenWait{15000};

struct SourceFile {
  const char* path;
  const char* content;
};

const SourceFile kProjectFiles[] = {
    {"migrations/001_orders.sql",
     "create table orders (id bigserial primary key, item text not null, qty int not null);\n"},
    // Inserts the order; `fail` throws before the update, so the insert rolls back.
    {"functions/order/flux.json", R"({"route": "/order", "method": "POST"})"},
    {"functions/order/index.ts", R"ts(
export default async function handler(req: Request, ctx: any) {
  const input = await req.json();
  const inserted = await ctx.db.insert("orders", { item: input.item, qty: input.qty });
  const row = Array.isArray(inserted) ? inserted[0] : inserted;
  if (input.fail) throw new Error("payment declined for " + input.item);
  await ctx.db.update("orders", { id: row.id }, { qty: input.qty + 1 });
  return { id: row.id };
}
)ts"},
    {"functions/ping/flux.json", R"({"route": "/ping", "method": "GET"})"},
    {"functions/ping/index.ts", R"ts(
export default async function handler() {
  return { pong: true };
}
)ts"},
};

json parseJson(const std::string& text) {
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(parsed.is_discarded()) << "not JSON: " << text;
  return parsed;
}

std::string handleOf(const std::string& id) {
  return "req:" + (id.size() >= 8 ? id.substr(id.size() - 8) : id);
}

// The line of `text` that contains `needle`, or "".
std::string lineWith(const std::string& text, std::string_view needle) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) return line;
  }
  return {};
}

struct CliRun {
  int status = -1;
  std::string output;  // stdout and stderr
};

class TraceCliTest : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    dev_ = new FluxDev();
    for (const SourceFile& file : kProjectFiles) dev_->project().writeFile(file.path, file.content);
    auto started = dev_->start();
    if (!started) {
      start_error_ = started.error();
      return;
    }
    // Two requests to the same endpoint that take different paths, and one to another.
    passing_ = post("/order", json{{"item", "book"}, {"qty", 1}}, 200);
    failing_ = post("/order", json{{"item", "pen"}, {"qty", 2}, {"fail", true}}, 500);
    auto ping = httpRequest(dev_->port(), "GET", "/ping");
    if (ping && ping->status == 200) other_ = ping->header("x-request-id");
    auto refused = httpRequest(dev_->port(), "GET", "/order");  // the route takes POST only
    if (refused && refused->status == 405) refused_ = refused->header("x-request-id");
    for (const std::string& id : {passing_, failing_, other_, refused_}) {
      if (id.empty() || !waitForRecord(id)) {
        start_error_ = "no record stored for request '" + id + "':\n" + dev_->output();
        return;
      }
    }
  }

  static void TearDownTestSuite() {
    if (dev_->started()) dev_->stop();
    delete dev_;
    dev_ = nullptr;
  }

  void SetUp() override { ASSERT_TRUE(start_error_.empty()) << start_error_; }

 protected:
  // `flux <args>` in the project directory with NO_COLOR=1 and without FLUX_URL / FLUX_TOKEN.
  static CliRun runCli(std::vector<std::string> args) {
    auto run = runProgram(FLUX_BINARY,
                          {.args = std::move(args),
                           .env = {{"NO_COLOR", "1"}, {"FLUX_URL", ""}, {"FLUX_TOKEN", ""}},
                           .cwd = dev_->root()},
                          kCommandTimeout);
    if (!run) {
      ADD_FAILURE() << run.error();
      return {};
    }
    return {run->first, run->second};
  }

  static std::string post(std::string_view path, const json& body, int expected_status) {
    auto response = httpRequest(dev_->port(), "POST", path, {{"content-type", "application/json"}},
                                body.dump());
    if (!response || response->status != expected_status) {
      start_error_ =
          "POST " + std::string(path) + " " + body.dump() + " -> " +
          (response ? std::to_string(response->status) + " " + response->body : response.error());
      return {};
    }
    return response->header("x-request-id");
  }

  // Records are stored after the response, by the recorder: ask until it has this one.
  static bool waitForRecord(const std::string& id) {
    auto deadline = steady_clock::now() + milliseconds(30000);
    while (steady_clock::now() < deadline) {
      CliRun run = runCli({"trace", id, "--json"});
      if (run.status == 0) return true;
      std::this_thread::sleep_for(milliseconds(200));
    }
    return false;
  }

  static FluxDev* dev_;
  static std::string start_error_;
  static std::string passing_;
  static std::string failing_;
  static std::string other_;
  static std::string refused_;
};

FluxDev* TraceCliTest::dev_ = nullptr;
std::string TraceCliTest::start_error_;
std::string TraceCliTest::passing_;
std::string TraceCliTest::failing_;
std::string TraceCliTest::other_;
std::string TraceCliTest::refused_;

// ---- flux trace diff --------------------------------------------------------------------------

TEST_F(TraceCliTest, DiffNamesTheChangedSpanAndTheMutationDifference) {
  // One id as its handle, the other in full: both resolve as every record command's do.
  CliRun run = runCli({"trace", "diff", handleOf(passing_), failing_});
  ASSERT_EQ(run.status, 0) << run.output;
  const std::string& out = run.output;
  EXPECT_EQ(out.find("\x1b["), std::string::npos) << out;
  EXPECT_NE(lineWith(out, "BEFORE  " + handleOf(passing_)).find("POST /order  200"),
            std::string::npos)
      << out;
  EXPECT_NE(lineWith(out, "AFTER   " + handleOf(failing_)).find("POST /order  500"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("Different endpoints"), std::string::npos) << out;

  // The function's span changed: it failed this time.
  std::string function = lineWith(out, "└─ order");
  EXPECT_NE(function.find("✗ changed"), std::string::npos) << out;
  EXPECT_NE(out.find("status: ok → error"), std::string::npos) << out;
  EXPECT_NE(out.find("payment declined for pen"), std::string::npos) << out;
  // Both inserted; only the passing request updated.
  EXPECT_NE(lineWith(out, "db.insert(orders)"), "") << out;
  EXPECT_NE(lineWith(out, "db.update(orders)").find("✗ missing"), std::string::npos) << out;

  // The mutation diff: the insert was committed before and rolled back after; the update only
  // happened before.
  EXPECT_NE(out.find("MUTATION DIFF"), std::string::npos) << out;
  EXPECT_NE(lineWith(out, "✗ orders INSERT").find("state: committed → rolled back"),
            std::string::npos)
      << out;
  EXPECT_NE(lineWith(out, "item=pen").find("(rolled back)"), std::string::npos) << out;
  std::string update = lineWith(out, "before only");
  EXPECT_NE(update.find("orders id="), std::string::npos) << out;
  EXPECT_NE(update.find("qty: 1 → 2"), std::string::npos) << out;
  EXPECT_NE(lineWith(out, "── Spans:").find("1 missing"), std::string::npos) << out;
}

TEST_F(TraceCliTest, DiffAsJson) {
  CliRun run = runCli({"trace", "diff", passing_, handleOf(failing_), "--json"});
  ASSERT_EQ(run.status, 0) << run.output;
  json diff = parseJson(run.output);
  EXPECT_EQ(diff["before"]["id"], passing_);
  EXPECT_EQ(diff["after"]["id"], failing_);
  EXPECT_EQ(diff["same_endpoint"], true);
  bool function_changed = false, update_missing = false;
  for (const json& span : diff["spans"]) {
    if (span["name"] == "order") function_changed = span["verdict"] == "changed";
    if (span["name"] == "db.update(orders)") update_missing = span["verdict"] == "missing";
  }
  EXPECT_TRUE(function_changed) << diff.dump(2);
  EXPECT_TRUE(update_missing) << diff.dump(2);
  bool insert_state = false;
  for (const json& mutation : diff["mutations"]) {
    if (mutation["table"] != "orders" || mutation["op"] != "INSERT") continue;
    EXPECT_EQ(mutation["verdict"], "changed");
    for (const json& change : mutation["changes"]) {
      if (change["field"] == "state") {
        insert_state = change["before"] == "committed" && change["after"] == "rolled back";
      }
    }
  }
  EXPECT_TRUE(insert_state) << diff.dump(2);
  EXPECT_EQ(diff["totals"]["mutations"]["only_before"], 1);
}

TEST_F(TraceCliTest, DiffOfTwoEndpointsSaysSo) {
  CliRun run = runCli({"trace", "diff", passing_, other_});
  ASSERT_EQ(run.status, 0) << run.output;
  EXPECT_NE(run.output.find("Different endpoints: POST /order (order) vs GET /ping (ping)"),
            std::string::npos)
      << run.output;
}

// A request the gateway refused ran no function: its one span, the gateway's, is the error.
TEST_F(TraceCliTest, ARefusedRequestFailsInTheGatewaySpan) {
  CliRun run = runCli({"trace", refused_});
  ASSERT_EQ(run.status, 0) << run.output;
  EXPECT_NE(lineWith(run.output, "gateway").find("does not accept GET"), std::string::npos)
      << run.output;
  EXPECT_NE(lineWith(run.output, "── Spans:").find("Spans: 1  ·  Errors: 1"), std::string::npos)
      << run.output;
}

TEST_F(TraceCliTest, UnknownAndAmbiguousIdsFailClearly) {
  const std::string unknown = "00000000-0000-7000-8000-000000000000";
  CliRun diff = runCli({"trace", "diff", passing_, unknown});
  EXPECT_EQ(diff.status, 1) << diff.output;
  EXPECT_NE(diff.output.find("flux trace diff: no execution matches '" + unknown + "'"),
            std::string::npos)
      << diff.output;

  CliRun debug = runCli({"trace", "debug", unknown});
  EXPECT_EQ(debug.status, 1) << debug.output;
  EXPECT_NE(debug.output.find("flux trace debug: no execution matches"), std::string::npos)
      << debug.output;

  // The first 6 hex digits of a UUIDv7 are its clock's top bits: every request here has them.
  std::string prefix = passing_.substr(0, 6);
  CliRun ambiguous = runCli({"trace", "diff", prefix, failing_});
  EXPECT_EQ(ambiguous.status, 1) << ambiguous.output;
  EXPECT_NE(ambiguous.output.find("matches"), std::string::npos) << ambiguous.output;
  EXPECT_NE(ambiguous.output.find(handleOf(failing_)), std::string::npos)
      << "the candidates are listed:\n"
      << ambiguous.output;

  CliRun malformed = runCli({"trace", "debug", "not-an-id!"});
  EXPECT_EQ(malformed.status, 1) << malformed.output;

  CliRun missing = runCli({"trace", "diff", passing_});
  EXPECT_NE(missing.status, 0) << missing.output;
  EXPECT_NE(missing.output.find("after"), std::string::npos) << missing.output;

  // `flux trace` without an id (and without a subcommand) still wants one.
  CliRun bare = runCli({"trace"});
  EXPECT_NE(bare.status, 0) << bare.output;
  EXPECT_NE(bare.output.find("id is required"), std::string::npos) << bare.output;
}

// ---- flux trace debug, not on a terminal ------------------------------------------------------

TEST_F(TraceCliTest, DebugIntoAPipePrintsThePlainListing) {
  CliRun run = runCli({"trace", "debug", handleOf(failing_)});
  ASSERT_EQ(run.status, 0) << run.output;
  const std::string& out = run.output;
  EXPECT_EQ(out.find('\x1b'), std::string::npos) << out;
  EXPECT_NE(out.find(handleOf(failing_) + "  POST /order  500"), std::string::npos) << out;
  // Every step, in order: gateway, the function, its insert (and no update: it never ran).
  size_t gateway = out.find("Span 1/");
  ASSERT_NE(gateway, std::string::npos) << out;
  std::string total =
      out.substr(gateway + 7, out.find_first_not_of("0123456789", gateway + 7) - (gateway + 7));
  int steps = std::atoi(total.c_str());
  EXPECT_GE(steps, 3) << out;
  for (int i = 1; i <= steps; ++i) {
    EXPECT_NE(out.find("Span " + std::to_string(i) + "/" + total), std::string::npos) << out;
  }
  EXPECT_NE(lineWith(out, "Span 1/").find("gateway"), std::string::npos) << out;
  EXPECT_NE(lineWith(out, "Span 2/").find("order"), std::string::npos) << out;
  EXPECT_NE(out.find("Error:   payment declined for pen"), std::string::npos) << out;
  // The insert's step shows the row it wrote, rolled back.
  EXPECT_NE(lineWith(out, "DB:").find("orders id="), std::string::npos) << out;
  EXPECT_NE(lineWith(out, "DB:").find("item=pen"), std::string::npos) << out;
  EXPECT_NE(lineWith(out, "DB:").find("(rolled back)"), std::string::npos) << out;
  EXPECT_EQ(out.find("[q]uit"), std::string::npos) << out;
}

TEST_F(TraceCliTest, DebugAsJson) {
  CliRun run = runCli({"trace", "debug", passing_, "--json"});
  ASSERT_EQ(run.status, 0) << run.output;
  json out = parseJson(run.output);
  EXPECT_EQ(out["record"]["id"], passing_);
  ASSERT_GE(out["steps"].size(), 4u);
  EXPECT_EQ(out["steps"][0]["span"]["name"], "gateway");
  bool insert_linked = false, update_linked = false;
  for (const json& step : out["steps"]) {
    EXPECT_EQ(step["of"], out["steps"].size());
    for (const json& mutation : step["mutations"]) {
      if (step["span"]["name"] == "db.insert(orders)" && mutation["op"] == "INSERT") {
        insert_linked = mutation["linked_by"] == "statement";
      }
      if (step["span"]["name"] == "db.update(orders)" && mutation["op"] == "UPDATE") {
        update_linked = mutation["linked_by"] == "statement";
      }
    }
  }
  EXPECT_TRUE(insert_linked) << out.dump(2);
  EXPECT_TRUE(update_linked) << out.dump(2);
}

// ---- flux trace debug on a pseudo-terminal ----------------------------------------------------

// `flux trace debug <id>` with a pseudo-terminal as its stdin, stdout and stderr.
class PtyFlux {
 public:
  PtyFlux(const fs::path& cwd, const std::vector<std::string>& args) {
    // Everything the child needs is built before fork(): after it, only async-signal-safe calls.
    std::vector<std::string> env_strings = {"TERM=xterm-256color", "NO_COLOR=1"};
    for (char** e = environ; *e != nullptr; ++e) {
      std::string_view entry(*e);
      if (entry.starts_with("TERM=") || entry.starts_with("NO_COLOR=") ||
          entry.starts_with("FLUX_URL=") || entry.starts_with("FLUX_TOKEN=") ||
          entry.starts_with("DATABASE_URL=")) {
        continue;
      }
      env_strings.emplace_back(entry);
    }
    std::vector<std::string> argv_strings = {FLUX_BINARY};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv, envp;
    for (std::string& s : argv_strings) argv.push_back(s.data());
    argv.push_back(nullptr);
    for (std::string& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string dir = cwd.string();

    winsize size{};
    size.ws_row = 40;
    size.ws_col = 120;
    if (openpty(&master_, &slave_, nullptr, nullptr, &size) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      // The terminal becomes the child's controlling terminal and its stdin, stdout, stderr.
      close(master_);
      if (login_tty(slave_) != 0) _exit(125);
      if (chdir(dir.c_str()) != 0) _exit(126);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
  }

  ~PtyFlux() {
    if (pid_ > 0 && !status_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0) close(master_);
    if (slave_ >= 0) close(slave_);
  }

  bool started() const { return pid_ > 0 && master_ >= 0; }
  // The terminal's own side, kept open here to look at its mode while and after the child
  // runs.
  int terminal() const { return slave_; }
  pid_t pid() const { return pid_; }

  // Reads what the child wrote until `needle` appears at or after `from`; its offset.
  std::optional<size_t> waitFor(std::string_view needle, size_t from = 0,
                                milliseconds timeout = kScreenWait) {
    auto deadline = steady_clock::now() + timeout;
    for (;;) {
      size_t at = screen_.find(needle, from);
      if (at != std::string::npos) return at;
      auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
      if (left.count() <= 0 || !readSome(left)) return std::nullopt;
    }
  }

  void type(std::string_view keys) {
    ASSERT_EQ(write(master_, keys.data(), keys.size()), static_cast<ssize_t>(keys.size()));
  }

  // The decoded exit status once the child ended (reading what it still writes meanwhile).
  std::optional<int> waitForExit(milliseconds timeout = kScreenWait) {
    auto deadline = steady_clock::now() + timeout;
    while (!status_ && steady_clock::now() < deadline) {
      int status = 0;
      pid_t done = waitpid(pid_, &status, WNOHANG);
      if (done == pid_) {
        status_ = decodeWaitStatus(status);
        break;
      }
      readSome(milliseconds(50));
    }
    while (readSome(milliseconds(50))) {
    }
    return status_;
  }

  const std::string& screen() const { return screen_; }

 private:
  // False at the end of the output or after `timeout` without any.
  bool readSome(milliseconds timeout) {
    pollfd fd{master_, POLLIN, 0};
    if (poll(&fd, 1, static_cast<int>(timeout.count())) <= 0) return false;
    char buffer[4096];
    ssize_t got = read(master_, buffer, sizeof buffer);
    if (got <= 0) return false;  // EIO: the child closed the terminal
    screen_.append(buffer, static_cast<size_t>(got));
    return true;
  }

  pid_t pid_ = -1;
  int master_ = -1;
  int slave_ = -1;
  std::optional<int> status_;
  std::string screen_;
};

bool cooked(int fd) {
  termios mode{};
  if (tcgetattr(fd, &mode) != 0) return false;
  return (mode.c_lflag & ICANON) && (mode.c_lflag & ECHO) && (mode.c_lflag & ISIG);
}

TEST_F(TraceCliTest, DebugStepsThroughOnATerminal) {
  PtyFlux flux(dev_->root(), {"trace", "debug", handleOf(passing_)});
  ASSERT_TRUE(flux.started());
  ASSERT_TRUE(flux.waitFor("\x1b[?1049h")) << flux.screen();  // the alternate screen
  auto first = flux.waitFor("Span 1/");
  ASSERT_TRUE(first) << flux.screen();
  std::string total = flux.screen().substr(*first + 7, 1);
  ASSERT_TRUE(flux.waitFor("[q]uit", *first)) << flux.screen();
  EXPECT_FALSE(cooked(flux.terminal())) << "the terminal should be in raw mode";
  EXPECT_NE(flux.screen().find("gateway", *first), std::string::npos);

  flux.type("n");
  auto second = flux.waitFor("Span 2/" + total, *first);
  ASSERT_TRUE(second) << flux.screen();
  ASSERT_TRUE(flux.waitFor("order", *second));
  flux.type("n");
  auto third = flux.waitFor("Span 3/" + total, *second);
  ASSERT_TRUE(third) << flux.screen();
  ASSERT_TRUE(flux.waitFor("db.insert(orders)", *third)) << flux.screen().substr(*third);
  flux.type("p");
  auto back = flux.waitFor("Span 2/" + total, *third);
  ASSERT_TRUE(back) << flux.screen().substr(*third);
  flux.type("e");
  auto expanded = flux.waitFor("[e] collapse", *back);
  ASSERT_TRUE(expanded) << flux.screen().substr(*back);
  // Expanded, the function's input is indented JSON over several lines.
  EXPECT_NE(flux.screen().find("\"method\": \"POST\"", *back), std::string::npos)
      << flux.screen().substr(*back);
  flux.type("q");
  EXPECT_EQ(flux.waitForExit(), std::optional<int>(0)) << flux.screen();
  // The terminal is given back: cursor shown, alternate screen left, cooked mode again.
  EXPECT_NE(flux.screen().find("\x1b[?25h\x1b[?1049l", *expanded), std::string::npos);
  EXPECT_TRUE(cooked(flux.terminal()));
}

TEST_F(TraceCliTest, DebugArrowsAndCtrlC) {
  PtyFlux flux(dev_->root(), {"trace", "debug", failing_});
  ASSERT_TRUE(flux.started());
  auto first = flux.waitFor("Span 1/");
  ASSERT_TRUE(first) << flux.screen();
  ASSERT_TRUE(flux.waitFor("[q]uit", *first));
  flux.type("\x1b[C");  // →
  auto second = flux.waitFor("Span 2/", *first);
  ASSERT_TRUE(second) << flux.screen();
  ASSERT_TRUE(flux.waitFor("payment declined for pen", *second)) << flux.screen();
  flux.type("\x1b[D");  // ←
  ASSERT_TRUE(flux.waitFor("Span 1/", *second)) << flux.screen().substr(*second);
  flux.type("\x03");  // Ctrl-C: a key in raw mode, a clean quit
  EXPECT_EQ(flux.waitForExit(), std::optional<int>(0)) << flux.screen();
  EXPECT_NE(flux.screen().find("\x1b[?1049l", *second), std::string::npos);
  EXPECT_TRUE(cooked(flux.terminal()));
}

TEST_F(TraceCliTest, DebugRestoresTheTerminalOnSigterm) {
  PtyFlux flux(dev_->root(), {"trace", "debug", passing_});
  ASSERT_TRUE(flux.started());
  auto first = flux.waitFor("[q]uit");
  ASSERT_TRUE(first) << flux.screen();
  EXPECT_FALSE(cooked(flux.terminal()));
  ASSERT_EQ(kill(flux.pid(), SIGTERM), 0);
  EXPECT_EQ(flux.waitForExit(), std::optional<int>(128 + SIGTERM)) << flux.screen();
  EXPECT_NE(flux.screen().find("\x1b[?1049l", *first), std::string::npos);
  EXPECT_TRUE(cooked(flux.terminal()));
}

}  // namespace
}  // namespace flux::tests

#include "cli/records_command.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

#include "cli/records_render.h"

namespace flux::cli {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr int kExitRefused = 1;
constexpr int kExitUnreachable = 2;

constexpr std::chrono::milliseconds kPollInterval{300};
constexpr std::chrono::milliseconds kRetryInterval{1000};
constexpr std::chrono::milliseconds kPollTimeout{10'000};
// How far behind the newest record each poll looks for records stored late (see the header).
constexpr int64_t kShortLagUs = 2'000'000;
constexpr int64_t kLongLagUs = 30'000'000;
constexpr int kLongLagEvery = 10;  // polls
constexpr int kPageSize = 500;
// A live poll reads at most this many pages (a flood beyond is skipped, not queued up); the
// first read (--since, or remembering what is already there) reads them all.
constexpr int kMaxPagesPerPoll = 20;
constexpr int kAllPages = std::numeric_limits<int>::max();

int exitCodeFor(const Error& error) {
  return error.code == ErrorCode::kUnavailable || error.code == ErrorCode::kTimeout
             ? kExitUnreachable
             : kExitRefused;
}

bool isUnreachable(const Error& error) { return exitCodeFor(error) == kExitUnreachable; }

std::string fieldOf(const Error& error, std::string_view key) {
  for (const auto& [name, value] : error.fields) {
    if (name == key) return value;
  }
  return {};
}

// main() blocks SIGINT and SIGTERM in every thread; commands that wait on the network only
// must let Ctrl-C end them as it ends any CLI tool.
void unblockTerminationSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
}

// Waits up to `timeout` for SIGINT or SIGTERM (blocked, so they stay pending until taken
// here). True when one came.
bool waitForTermination(std::chrono::milliseconds timeout) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(timeout);
  timespec wait{static_cast<time_t>(seconds.count()),
                static_cast<long>(std::chrono::nanoseconds(timeout - seconds).count())};
  for (;;) {
    int taken = sigtimedwait(&signals, nullptr, &wait);
    if (taken == SIGINT || taken == SIGTERM) return true;
    if (taken < 0 && errno == EINTR) continue;  // another signal: the wait restarts whole
    return false;
  }
}

// True when stdout is a pipe whose reader went away (`flux tail | head -3` after 3 lines): the
// tail stops then, not at the next record it would write.
bool stdoutClosed() {
  pollfd out{STDOUT_FILENO, 0, 0};
  return poll(&out, 1, 0) == 1 && (out.revents & (POLLERR | POLLHUP)) != 0;
}

// Writes all of `text` and flushes. False when stdout is gone (a closed pipe: `| head`).
bool writeOut(std::string_view text) {
  if (!text.empty() && std::fwrite(text.data(), 1, text.size(), stdout) != text.size()) {
    return false;
  }
  return std::fflush(stdout) == 0;
}

// ---- flux tail --------------------------------------------------------------------------------

class TailLoop {
 public:
  TailLoop(const TailOptions& options, UrlParams filters, Clock& clock)
      : options_(options), filters_(std::move(filters)), clock_(clock), printer_(stdoutColor()) {}

  int run();

 private:
  enum class Emit { kPrint, kRemember };
  enum class Outcome { kDone, kStop };  // kStop: Ctrl-C or stdout closed

  Result<void> findServer() {
    auto server = findAdminServer(adminServerSources(options_.url, options_.token));
    if (!server) return std::unexpected(server.error());
    server_ = std::move(*server);
    return {};
  }

  Result<json> fetch(UrlParams params) {
    return adminGet(server_, "/_flux/records", params, kPollTimeout);
  }

  // Reads every record that started at or after `since_us` (at most `max_pages` pages),
  // printing (or only remembering) those not seen before.
  Result<Outcome> readFrom(int64_t since_us, Emit emit, int max_pages);
  void forgetBefore(int64_t since_us);
  int64_t floorFor(int64_t lag_us) const {
    int64_t behind_newest = newest_us_ ? *newest_us_ - lag_us : 0;
    return std::max(start_us_, behind_newest);
  }
  void report(const Error& error) const {
    std::fprintf(stderr, "flux tail: %s\n", error.message.c_str());
  }

  const TailOptions& options_;
  const UrlParams filters_;
  Clock& clock_;
  TailPrinter printer_;
  AdminServer server_;
  // Nothing that started before this is printed.
  int64_t start_us_ = 0;
  // The latest start of any record on the server (filters aside).
  std::optional<int64_t> newest_us_;
  // The records printed (or remembered at start) that are still inside the widest window.
  std::unordered_map<std::string, int64_t> seen_;  // id -> started_at_us
};

Result<TailLoop::Outcome> TailLoop::readFrom(int64_t since_us, Emit emit, int max_pages) {
  std::optional<std::string> after;
  for (int page = 0; page < max_pages; ++page) {
    UrlParams params = filters_;
    params.emplace_back("since", std::to_string(since_us));
    params.emplace_back("limit", std::to_string(kPageSize));
    if (after) params.emplace_back("after", *after);
    auto answer = fetch(std::move(params));
    if (!answer) return std::unexpected(answer.error());

    const json& newest = (*answer)["newest_started_at_us"];
    if (newest.is_number_integer()) {
      newest_us_ = std::max(newest_us_.value_or(newest.get<int64_t>()), newest.get<int64_t>());
    }
    const json& records = (*answer)["records"];
    if (!records.is_array()) {
      return fail(ErrorCode::kInternal, "the server answered records that are not a list");
    }
    for (const json& summary : records) {
      if (!summary.is_object() || !summary.contains("id") || !summary["id"].is_string()) continue;
      std::string id = summary["id"].get<std::string>();
      auto started = summary.find("started_at_us");
      int64_t started_us =
          started != summary.end() && started->is_number_integer() ? started->get<int64_t>() : 0;
      if (!seen_.emplace(std::move(id), started_us).second) continue;
      if (emit == Emit::kRemember) continue;
      std::string text = options_.json
                             ? summary.dump(-1, ' ', false, json::error_handler_t::replace) + "\n"
                             : printer_.print(summary);
      if (!writeOut(text)) return Outcome::kStop;
    }
    if (!answer->value("more", false) || records.empty()) return Outcome::kDone;
    after = records.back().value("id", "");
    if (waitForTermination(0ms)) return Outcome::kStop;
  }
  return Outcome::kDone;
}

void TailLoop::forgetBefore(int64_t since_us) {
  std::erase_if(seen_, [since_us](const auto& entry) { return entry.second < since_us; });
}

int TailLoop::run() {
  if (auto found = findServer(); !found) {
    report(found.error());
    return found.error().code == ErrorCode::kNotFound ? kExitUnreachable : kExitRefused;
  }

  if (!options_.since.empty()) {
    auto span = parseSinceDuration(options_.since);
    if (!span) {
      report(span.error());
      return kExitRefused;
    }
    start_us_ = static_cast<int64_t>(clock_.nowMillis() * 1000) - *span;
    auto past = readFrom(start_us_, Emit::kPrint, kAllPages);
    if (!past) {
      report(past.error());
      return exitCodeFor(past.error());
    }
    if (*past == Outcome::kStop) return 0;
  } else {
    // Only what the server stores from now on: remember what is already inside the widest
    // window, so that no poll prints it.
    auto latest = fetch({{"limit", "1"}});
    if (!latest) {
      report(latest.error());
      return exitCodeFor(latest.error());
    }
    const json& newest = (*latest)["newest_started_at_us"];
    if (newest.is_number_integer()) newest_us_ = newest.get<int64_t>();
    start_us_ = newest_us_ ? *newest_us_ - kLongLagUs : 0;
    auto seeded = readFrom(start_us_, Emit::kRemember, kAllPages);
    if (!seeded) {
      report(seeded.error());
      return exitCodeFor(seeded.error());
    }
    if (*seeded == Outcome::kStop) return 0;
  }
  if (!options_.json) {
    std::fprintf(stderr, "  Streaming live requests… (Ctrl-C to stop)\n\n");
  }

  bool lost = false;
  int refusals_since_lost = 0;
  for (int poll = 1;; ++poll) {
    if (waitForTermination(lost ? kRetryInterval : kPollInterval) || stdoutClosed()) return 0;
    bool long_lag = poll % kLongLagEvery == 0;
    auto outcome =
        readFrom(floorFor(long_lag ? kLongLagUs : kShortLagUs), Emit::kPrint, kMaxPagesPerPoll);
    if (!outcome) {
      const Error& error = outcome.error();
      // A server that went away may come back restarted, with a new token in dev.json: a
      // refusal right after is worth a few more tries.
      bool refused_after_restart = lost && error.code == ErrorCode::kInvalidArgument &&
                                   ++refusals_since_lost <= kLongLagEvery;
      if (!isUnreachable(error) && !refused_after_restart) {
        report(error);
        return kExitRefused;
      }
      if (!lost) {
        std::fprintf(stderr, "flux tail: %s (retrying)\n", error.message.c_str());
        lost = true;
        refusals_since_lost = 0;
      }
      // `flux dev` may come back on another port or with another token: look for it again.
      (void)findServer();
      continue;
    }
    if (lost) {
      std::fprintf(stderr, "flux tail: reconnected to %s\n", server_.url.c_str());
      lost = false;
    }
    if (*outcome == Outcome::kStop) return 0;
    if (long_lag) forgetBefore(floorFor(kLongLagUs) - kShortLagUs);
  }
}

// ---- Commands ---------------------------------------------------------------------------------

void addTail(CLI::App& app) {
  auto options = std::make_shared<TailOptions>();
  CLI::App* tail = app.add_subcommand(
      "tail", "Stream requests as they are recorded: status, latency, errors and writes");
  tail->add_option("--fn", options->function, "Only this function's executions");
  tail->add_flag("--errors-only", options->errors_only, "Hide successful requests (2xx, 3xx)");
  tail->add_option("--since", options->since,
                   "First print the records of this last span of time (45s, 30m, 2h, 1d)");
  tail->add_option("--filter", options->filters,
                   "key=value, repeatable: path (a trailing * matches a prefix), status (500 or "
                   "5xx), function (fn), type (kind: http, job, cron, replay), method")
      ->allow_extra_args(false);
  tail->add_flag("--json", options->json, "Print one JSON summary per line");
  tail->add_option("--url", options->url,
                   "Flux server (default: FLUX_URL, then the project's .flux/dev.json)");
  tail->add_option("--token", options->token,
                   "Admin token (default: FLUX_TOKEN, then the project's .flux/dev.json)");
  tail->callback([options] {
    // SIGINT and SIGTERM stay blocked: the loop takes them with sigtimedwait and stops
    // cleanly between two polls.
    SystemClock clock;
    int code = runTail(*options, clock);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

void addRecordView(CLI::App& app, RecordView view) {
  auto options = std::make_shared<RecordOptions>();
  bool why = view == RecordView::kWhy;
  CLI::App* command = app.add_subcommand(
      why ? "why" : "trace",
      why ? "Why a request failed: root cause, location, input, data changes, a suggestion"
          : "The span tree of a request: each step, its time, and where it failed");
  command
      ->add_option("id", options->id,
                   "Request id: the full id, a prefix of it, or its handle (req:550e8400)")
      ->required();
  command->add_flag("--json", options->json, "Print the admin API's JSON (record and mutations)");
  command->add_option("--url", options->url,
                      "Flux server (default: FLUX_URL, then the project's .flux/dev.json)");
  command->add_option("--token", options->token,
                      "Admin token (default: FLUX_TOKEN, then the project's .flux/dev.json)");
  command->callback([view, options] {
    unblockTerminationSignals();
    int code = runRecord(view, *options);
    std::fflush(stdout);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace

Result<int64_t> parseSinceDuration(std::string_view text) {
  auto bad = [&] {
    return fail(ErrorCode::kInvalidArgument,
                "--since '" + std::string(text.substr(0, 40)) +
                    "' is not a span of time: pass e.g. 45s, 30m, 2h, 1d or 1h30m");
  };
  if (text.empty()) return bad();
  int64_t total_us = 0;
  size_t i = 0;
  while (i < text.size()) {
    int64_t number = 0;
    size_t digits = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (number > 1'000'000'000) return bad();
      number = number * 10 + (text[i] - '0');
      ++i;
      ++digits;
    }
    if (digits == 0 || i == text.size()) return bad();
    int64_t unit_us = 0;
    switch (text[i]) {
      case 's':
        unit_us = 1'000'000;
        break;
      case 'm':
        unit_us = 60'000'000;
        break;
      case 'h':
        unit_us = 3'600'000'000;
        break;
      case 'd':
        unit_us = 86'400'000'000;
        break;
      default:
        return bad();
    }
    ++i;
    total_us += number * unit_us;
    if (total_us > 3650 * 86'400'000'000LL) return bad();  // ten years
  }
  if (total_us == 0) return bad();
  return total_us;
}

Result<UrlParams> tailFilterParams(const TailOptions& options) {
  // --filter keys as people type them -> the API's parameter names.
  static const std::map<std::string, std::string, std::less<>> kKeys = {
      {"path", "path"}, {"status", "status"}, {"function", "fn"},  {"fn", "fn"},
      {"type", "kind"}, {"kind", "kind"},     {"method", "method"}};
  std::map<std::string, std::string, std::less<>> given;
  auto add = [&given](const std::string& key, std::string value,
                      std::string_view as) -> Result<void> {
    if (given.contains(key)) {
      return fail(ErrorCode::kInvalidArgument, std::string(as) + " names the " + key +
                                                   " filter a second time: pass each filter once");
    }
    given.emplace(key, std::move(value));
    return {};
  };
  if (!options.function.empty()) {
    if (auto ok = add("fn", options.function, "--fn"); !ok) return std::unexpected(ok.error());
  }
  for (const std::string& pair : options.filters) {
    size_t eq = pair.find('=');
    std::string key = pair.substr(0, eq);
    auto known = kKeys.find(key);
    if (eq == std::string::npos || known == kKeys.end()) {
      return fail(ErrorCode::kInvalidArgument,
                  "--filter '" + pair +
                      "': pass key=value with key one of path, status, function (fn), type "
                      "(kind), method");
    }
    std::string value = pair.substr(eq + 1);
    if (value.empty()) {
      return fail(ErrorCode::kInvalidArgument, "--filter '" + pair + "' has no value");
    }
    if (auto ok = add(known->second, std::move(value), "--filter " + key); !ok) {
      return std::unexpected(ok.error());
    }
  }
  UrlParams params(given.begin(), given.end());
  if (options.errors_only) params.emplace_back("errors_only", "1");
  return params;
}

int runTail(const TailOptions& options, Clock& clock) {
  // Line by line even into a pipe: `flux tail | grep 500` shows each line as it comes.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  auto filters = tailFilterParams(options);
  if (!filters) {
    std::fprintf(stderr, "flux tail: %s\n", filters.error().message.c_str());
    return kExitRefused;
  }
  if (!options.since.empty()) {
    if (auto span = parseSinceDuration(options.since); !span) {
      std::fprintf(stderr, "flux tail: %s\n", span.error().message.c_str());
      return kExitRefused;
    }
  }
  TailLoop loop(options, std::move(*filters), clock);
  return loop.run();
}

int runRecord(RecordView view, const RecordOptions& options) {
  const char* name = view == RecordView::kWhy ? "flux why" : "flux trace";
  auto server = findAdminServer(adminServerSources(options.url, options.token));
  if (!server) {
    std::fprintf(stderr, "%s: %s\n", name, server.error().message.c_str());
    return server.error().code == ErrorCode::kNotFound ? kExitUnreachable : kExitRefused;
  }
  auto answer = adminGet(*server, "/_flux/records/" + percentEncode(options.id), {});
  if (!answer) {
    std::fprintf(stderr, "%s: %s\n", name, answer.error().message.c_str());
    json body = json::parse(fieldOf(answer.error(), "body"), nullptr, /*allow_exceptions=*/false);
    if (!body.is_discarded()) {
      std::string candidates = renderCandidates(body);
      std::fwrite(candidates.data(), 1, candidates.size(), stderr);
    }
    return exitCodeFor(answer.error());
  }
  std::string text;
  if (options.json) {
    text = answer->dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  } else if (view == RecordView::kWhy) {
    text = renderWhy(*answer, stdoutColor());
  } else {
    text = renderTrace(*answer, stdoutColor());
  }
  writeOut(text);
  return 0;
}

void addRecordCommands(CLI::App& app) {
  addTail(app);
  addRecordView(app, RecordView::kWhy);
  addRecordView(app, RecordView::kTrace);
}

}  // namespace flux::cli

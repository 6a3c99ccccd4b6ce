#include "cli/tail_command.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

#include "cli/records_render.h"

namespace flux::cli {

namespace {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

constexpr int kExitRefused = 1;
constexpr int kExitUsage = 2;

constexpr std::string_view kStreamPath = "/_flux/records/stream";
// The head of the answer comes once the server's feed listens: quick, unless PostgreSQL is not.
constexpr std::chrono::milliseconds kOpenTimeout{15'000};
// The server sends a keep-alive comment every 15 s: this long without a byte is a dead link.
constexpr std::chrono::milliseconds kSilenceLimit{45'000};
constexpr std::chrono::milliseconds kRetryMin{500};
constexpr std::chrono::milliseconds kRetryMax{5'000};
// A reconnect asks for the records since this long before the last one it had (see header).
constexpr int64_t kResumeMarginUs = 60'000'000;
// After a restart the server has a new token: a 401 right after a lost connection is worth a
// few more tries (dev.json is read again each time).
constexpr int kRefusalsAfterLoss = 10;
// The ids printed are remembered this far behind the resume point, to print none twice.
constexpr size_t kPruneAt = 200'000;

const char* const kFilterKeys = "path, status, function (fn), type (kind), method";

// Writes all of `text` and flushes. False when stdout is gone (a closed pipe: `| head`).
bool writeOut(std::string_view text) {
  if (!text.empty() && std::fwrite(text.data(), 1, text.size(), stdout) != text.size()) {
    return false;
  }
  return std::fflush(stdout) == 0;
}

std::string fieldOf(const Error& error, std::string_view key) {
  for (const auto& [name, value] : error.fields) {
    if (name == key) return value;
  }
  return {};
}

int64_t intOf(const json& object, const char* key) {
  if (!object.is_object()) return 0;
  auto it = object.find(key);
  return it != object.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

void say(const std::string& message) {
  std::fprintf(stderr, "flux tail: %s\n", message.c_str());
  std::fflush(stderr);
}

// The value checks the server makes, made before asking it: a typo is a usage error (2).
Result<void> checkFilterValue(const std::string& key, const std::string& value,
                              std::string_view as) {
  auto bad = [&](std::string_view expected) {
    return fail(ErrorCode::kInvalidArgument,
                std::string(as) + " '" + value + "': " + std::string(expected));
  };
  if (key == "status") {
    bool code = value.size() == 3 && std::all_of(value.begin(), value.end(),
                                                 [](char c) { return c >= '0' && c <= '9'; });
    bool klass = value.size() == 3 && value[0] >= '1' && value[0] <= '5' &&
                 (value[1] == 'x' || value[1] == 'X') && (value[2] == 'x' || value[2] == 'X');
    if (!code && !klass) return bad("status is a code (500) or a class (5xx)");
  } else if (key == "kind") {
    if (value != "http" && value != "job" && value != "cron" && value != "replay") {
      return bad("type is one of http, job, cron, replay");
    }
  } else if (key == "method") {
    if (!std::all_of(value.begin(), value.end(),
                     [](char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; })) {
      return bad("method is letters (GET, POST, ...)");
    }
  }
  return {};
}

// ---- The stream loop ---------------------------------------------------------------------------

class TailLoop {
 public:
  TailLoop(const TailOptions& options, UrlParams filters, std::optional<int64_t> since_us,
           int64_t now_us, int signal_fd)
      : options_(options),
        filters_(std::move(filters)),
        since_us_(since_us),
        resume_us_(since_us ? *since_us : now_us - kResumeMarginUs),
        floor_us_(since_us),
        signal_fd_(signal_fd),
        printer_(stdoutColor()) {}

  int run();

 private:
  enum class End { kStop, kReconnect, kFail };

  // One connection: opens the stream and prints what it sends until it ends.
  End session();
  End readEvents();
  // Handles one event: nullopt goes on, anything else ends the session.
  std::optional<End> onEvent(const SseEvent& event);
  std::optional<End> onRecord(const SseEvent& event);
  End failWith(int code, const std::string& message) {
    say(message);
    exit_code_ = code;
    return End::kFail;
  }
  // Says (once per loss) that the connection is gone and that the tail tries again.
  End lose(const std::string& message) {
    if (!loss_reported_) say(message + ": reconnecting…");
    loss_reported_ = true;
    lost_ = true;
    return End::kReconnect;
  }
  // Waits `delay` unless a signal or a closed stdout comes first (then false).
  bool pause(std::chrono::milliseconds delay);
  bool stopRequested(short signal_events, short stdout_events);

  const TailOptions& options_;
  const UrlParams filters_;
  const std::optional<int64_t> since_us_;  // --since, as Unix microseconds
  // Where the next connection starts (the server's clock): --since at first, then a margin
  // before the latest record or "live" moment seen.
  int64_t resume_us_;
  // Nothing that started before this is asked for again: --since, or (without it) the server's
  // time when the tail first went live.
  std::optional<int64_t> floor_us_;
  int signal_fd_;
  TailPrinter printer_;
  AdminServer server_;
  std::unique_ptr<net::HttpStream> stream_;

  bool connected_once_ = false;  // a stream was opened at least once
  bool ever_live_ = false;
  bool lost_ = false;  // the last session ended without the user asking
  bool loss_reported_ = false;
  int refusals_after_loss_ = 0;
  int exit_code_ = 0;
  std::unordered_map<std::string, int64_t> printed_;  // id -> started_at_us
};

bool TailLoop::stopRequested(short signal_events, short stdout_events) {
  if ((signal_events & POLLIN) != 0) {
    signalfd_siginfo info;
    (void)!read(signal_fd_, &info, sizeof info);
    return true;
  }
  return (stdout_events & (POLLERR | POLLHUP)) != 0;
}

bool TailLoop::pause(std::chrono::milliseconds delay) {
  pollfd fds[2] = {{signal_fd_, POLLIN, 0}, {STDOUT_FILENO, 0, 0}};
  auto until = SteadyClock::now() + delay;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now());
    if (left.count() <= 0) return true;
    int ready = poll(fds, 2, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready > 0 && stopRequested(fds[0].revents, fds[1].revents)) return false;
  }
}

int TailLoop::run() {
  std::chrono::milliseconds retry = kRetryMin;
  for (;;) {
    bool was_live = ever_live_;
    End end = session();
    stream_.reset();
    if (end == End::kStop) return 0;
    if (end == End::kFail) return exit_code_;
    // A session that went live resets the backoff: the next loss starts over.
    if (ever_live_ && !was_live) retry = kRetryMin;
    if (!pause(retry)) return 0;
    retry = std::min(retry * 2, kRetryMax);
  }
}

TailLoop::End TailLoop::session() {
  auto server = findAdminServer(adminServerSources(options_.url, options_.token));
  if (!server) {
    if (!connected_once_) {
      return failWith(server.error().code == ErrorCode::kNotFound ? kExitUsage : kExitRefused,
                      server.error().message);
    }
    return lose(server.error().message);
  }
  server_ = std::move(*server);
  UrlParams params = filters_;
  if (since_us_ || connected_once_) {
    // Never before where the tail started: --since, or the moment it first went live.
    int64_t since = floor_us_ ? std::max(resume_us_, *floor_us_) : resume_us_;
    params.emplace_back("since", std::to_string(since));
  }
  auto opened = adminStream(server_, kStreamPath, params, kOpenTimeout);
  if (!opened) {
    const Error& error = opened.error();
    std::string status = fieldOf(error, "status");
    if (status.empty()) {
      // No answer at all: nothing to tail at the start; later, the server may come back.
      if (!connected_once_) return failWith(kExitUsage, error.message);
      return lose(error.message);
    }
    if (status == "401" && lost_ && ++refusals_after_loss_ <= kRefusalsAfterLoss) {
      return lose(error.message);
    }
    if (status == "400") return failWith(kExitUsage, error.message);
    if (status == "404") {
      return failWith(kExitRefused, "the server at " + server_.url +
                                        " has no live stream (GET /_flux/records/stream): it is "
                                        "older than this flux; upgrade it");
    }
    // 501: recording is off on that server, for good.
    if (status == "501") return failWith(kExitRefused, error.message);
    // 503: the server is there but cannot read records now (PostgreSQL is down or restarting).
    if (status.starts_with("5")) return lose(error.message);
    return failWith(kExitRefused, error.message);
  }
  stream_ = std::move(*opened);
  connected_once_ = true;
  refusals_after_loss_ = 0;
  return readEvents();
}

TailLoop::End TailLoop::readEvents() {
  SseParser parser;
  std::vector<SseEvent> events;
  std::string bytes;
  auto last_heard = SteadyClock::now();
  for (;;) {
    auto silent =
        std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - last_heard);
    if (silent >= kSilenceLimit) {
      return lose("no word from the server at " + server_.url + " for " +
                  std::to_string(kSilenceLimit.count() / 1000) + " s");
    }
    pollfd fds[3] = {{stream_->fd(), POLLIN, 0}, {signal_fd_, POLLIN, 0}, {STDOUT_FILENO, 0, 0}};
    // What came with the head is read at once, without waiting for the socket.
    int wait_ms = stream_->hasBuffered() ? 0 : static_cast<int>((kSilenceLimit - silent).count());
    int ready = poll(fds, 3, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready > 0 && stopRequested(fds[1].revents, fds[2].revents)) return End::kStop;
    if (!stream_->hasBuffered() && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
      continue;
    }

    last_heard = SteadyClock::now();
    bytes.clear();
    auto progress = stream_->read(bytes);
    events.clear();
    parser.feed(bytes, events);
    for (const SseEvent& event : events) {
      if (auto end = onEvent(event)) return *end;
    }
    if (!progress) return lose(progress.error().message);
    if (*progress == net::HttpStream::Progress::kEnded) {
      return lose("the server at " + server_.url + " closed the stream");
    }
  }
}

std::optional<TailLoop::End> TailLoop::onEvent(const SseEvent& event) {
  if (event.event == "record") return onRecord(event);
  json data = json::parse(event.data, nullptr, /*allow_exceptions=*/false);
  if (event.event == "live") {
    int64_t now_us = intOf(data, "now_us");
    if (now_us > 0) {
      if (!floor_us_) floor_us_ = now_us;
      resume_us_ = std::max(resume_us_, now_us - kResumeMarginUs);
    }
    if (!ever_live_) {
      if (!options_.json) {
        std::fprintf(stderr, "\n  Streaming live requests… (Ctrl-C to stop)\n\n");
        std::fflush(stderr);
      }
    } else if (lost_) {
      say("reconnected to " + server_.url);
    }
    ever_live_ = true;
    lost_ = false;
    loss_reported_ = false;
    return std::nullopt;
  }
  if (event.event == "end") {
    std::string message = data.is_object() ? data.value("message", "") : std::string();
    bool resume = data.is_object() && data.value("resume", false);
    if (message.empty()) message = "no reason given";
    if (!resume) return failWith(kExitRefused, "the server ended the stream: " + message);
    return lose("the server ended the stream (" + message + ")");
  }
  return std::nullopt;  // events of later versions
}

std::optional<TailLoop::End> TailLoop::onRecord(const SseEvent& event) {
  json summary = json::parse(event.data, nullptr, /*allow_exceptions=*/false);
  if (!summary.is_object()) return std::nullopt;
  std::string id = summary.value("id", event.id);
  int64_t started_us = intOf(summary, "started_at_us");
  if (id.empty() || !printed_.emplace(id, started_us).second) return std::nullopt;
  resume_us_ = std::max(resume_us_, started_us - kResumeMarginUs);
  std::string text = options_.json
                         ? summary.dump(-1, ' ', false, json::error_handler_t::replace) + "\n"
                         : printer_.print(summary);
  if (!writeOut(text)) return End::kStop;
  if (printed_.size() >= kPruneAt) {
    int64_t floor = resume_us_ - kResumeMarginUs;
    std::erase_if(printed_, [floor](const auto& entry) { return entry.second < floor; });
  }
  return std::nullopt;
}

// A signalfd for SIGINT and SIGTERM, which main() blocks in every thread.
class SignalFd {
 public:
  SignalFd() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    fd_ = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  }
  ~SignalFd() {
    if (fd_ >= 0) close(fd_);
  }
  SignalFd(const SignalFd&) = delete;
  SignalFd& operator=(const SignalFd&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

}  // namespace

// ---- Server-Sent Events
// --------------------------------------------------------------------------

void SseParser::feed(std::string_view bytes, std::vector<SseEvent>& out) {
  for (char c : bytes) {
    if (after_cr_) {
      after_cr_ = false;
      if (c == '\n') continue;  // the LF of a CRLF
    }
    if (c == '\r' || c == '\n') {
      after_cr_ = c == '\r';
      line(line_, out);
      line_.clear();
    } else {
      line_.push_back(c);
    }
  }
}

void SseParser::line(std::string_view text, std::vector<SseEvent>& out) {
  if (text.empty()) {
    if (has_data_) {
      if (!event_.data.empty() && event_.data.back() == '\n') event_.data.pop_back();
      out.push_back(std::move(event_));
    }
    std::string id = std::move(event_.id);
    event_ = SseEvent{};
    event_.id = std::move(id);  // the last event id carries over
    has_data_ = false;
    return;
  }
  if (text[0] == ':') return;  // a comment
  size_t colon = text.find(':');
  std::string_view field = text.substr(0, colon);
  std::string_view value =
      colon == std::string_view::npos ? std::string_view{} : text.substr(colon + 1);
  if (value.starts_with(' ')) value.remove_prefix(1);
  if (field == "event") {
    event_.event = value.empty() ? "message" : std::string(value);
  } else if (field == "data") {
    event_.data.append(value);
    event_.data.push_back('\n');
    has_data_ = true;
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) event_.id = std::string(value);
  }
}

// ---- Options
// -------------------------------------------------------------------------------------

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
    if (auto ok = checkFilterValue(key, value, as); !ok) return ok;
    given.emplace(key, std::move(value));
    return {};
  };
  if (!options.function.empty()) {
    if (auto ok = add("fn", options.function, "--fn"); !ok) return std::unexpected(ok.error());
  }
  for (const std::string& pair : options.filters) {
    size_t eq = pair.find('=');
    if (eq == std::string::npos) {
      return fail(ErrorCode::kInvalidArgument,
                  "--filter '" + pair + "': pass key=value with key one of " + kFilterKeys);
    }
    std::string key = pair.substr(0, eq);
    auto known = kKeys.find(key);
    if (known == kKeys.end()) {
      return fail(ErrorCode::kInvalidArgument, "--filter '" + pair + "': unknown key '" + key +
                                                   "': the keys are " + kFilterKeys);
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
    say(filters.error().message);
    return kExitUsage;
  }
  auto now_us = static_cast<int64_t>(clock.nowMillis() * 1000);
  std::optional<int64_t> since_us;
  if (!options.since.empty()) {
    auto span = parseSinceDuration(options.since);
    if (!span) {
      say(span.error().message);
      return kExitUsage;
    }
    since_us = now_us - *span;
  }
  SignalFd signals;
  if (signals.fd() < 0) {
    say(std::string("cannot watch for Ctrl-C: ") + std::strerror(errno));
    return kExitRefused;
  }
  TailLoop loop(options, std::move(*filters), since_us, now_us, signals.fd());
  return loop.run();
}

void addTailCommand(CLI::App& app) {
  auto options = std::make_shared<TailOptions>();
  CLI::App* tail = app.add_subcommand(
      "tail", "Stream requests as they are recorded: status, latency, errors and writes");
  tail->add_option("--fn", options->function, "Only this function's executions");
  tail->add_flag("--errors-only", options->errors_only, "Hide successful requests (2xx, 3xx)");
  tail->add_option("--since", options->since,
                   "First print the records of this last span of time (45s, 30m, 2h, 1d), "
                   "then the live ones");
  tail->add_option("--filter", options->filters,
                   "key=value, repeatable: path (a trailing * matches a prefix), status (500 or "
                   "5xx), function (fn), type (kind: http, job, cron, replay), method")
      ->allow_extra_args(false);
  tail->add_flag("--json", options->json, "Print one JSON summary per line");
  tail->add_option("--url", options->url,
                   "Flux server (default: FLUX_URL, then the project's .flux/dev.json)");
  tail->add_option("--token", options->token,
                   "Admin token (default: FLUX_TOKEN, then the project's .flux/dev.json)");
  tail->footer(
      "Exit codes: 0 after Ctrl-C (or when the reader of a pipe goes away), 1 the server "
      "refused, 2 a bad command line or no server to ask. A lost connection is said on stderr "
      "and retried.");
  tail->callback([options] {
    // SIGINT and SIGTERM stay blocked (main): the loop takes them from a signalfd and stops
    // cleanly.
    SystemClock clock;
    int code = runTail(*options, clock);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace flux::cli

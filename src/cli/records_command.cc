#include "cli/records_command.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>

#include "cli/records_render.h"
#include "cli/tail_command.h"
#include "cli/trace_command.h"

namespace flux::cli {

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr int kExitRefused = 1;
constexpr int kExitUnreachable = 2;

int exitCodeFor(const Error& error) {
  return error.code == ErrorCode::kUnavailable || error.code == ErrorCode::kTimeout
             ? kExitUnreachable
             : kExitRefused;
}

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

// Writes all of `text` and flushes. False when stdout is gone (a closed pipe: `| head`).
bool writeOut(std::string_view text) {
  if (!text.empty() && std::fwrite(text.data(), 1, text.size(), stdout) != text.size()) {
    return false;
  }
  return std::fflush(stdout) == 0;
}

// ---- Commands ---------------------------------------------------------------------------------

void addRecordView(CLI::App& app, RecordView view) {
  auto options = std::make_shared<RecordOptions>();
  bool why = view == RecordView::kWhy;
  CLI::App* command = app.add_subcommand(
      why ? "why" : "trace",
      why ? "Why a request failed: root cause, location, input, data changes, a suggestion"
          : "The span tree of a request: each step, its time, and where it failed (and `trace "
            "debug <id>`, `trace diff <a> <b>`)");
  CLI::Option* id = command->add_option(
      "id", options->id, "Request id: the full id, a prefix of it, or its handle (req:550e8400)");
  // `flux trace` has subcommands (debug, diff) that take their own ids.
  if (why) id->required();
  command->add_flag("--json", options->json, "Print the admin API's JSON (record and mutations)");
  command->add_option("--url", options->url,
                      "Flux server (default: FLUX_URL, then the project's .flux/dev.json)");
  command->add_option("--token", options->token,
                      "Admin token (default: FLUX_TOKEN, then the project's .flux/dev.json)");
  if (!why) addTraceSubcommands(*command);
  command->callback([view, options, command] {
    if (!command->get_subcommands().empty()) return;  // trace debug / diff ran instead
    if (options->id.empty()) throw CLI::RequiredError("id");
    unblockTerminationSignals();
    int code = runRecord(view, *options);
    std::fflush(stdout);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace

std::expected<AdminServer, int> findRecordServer(std::string_view command, const std::string& url,
                                                 const std::string& token) {
  auto server = findAdminServer(adminServerSources(url, token));
  if (!server) {
    std::fprintf(stderr, "%.*s: %s\n", static_cast<int>(command.size()), command.data(),
                 server.error().message.c_str());
    return std::unexpected(server.error().code == ErrorCode::kNotFound ? kExitUnreachable
                                                                       : kExitRefused);
  }
  return std::move(*server);
}

std::expected<nlohmann::json, int> fetchRecord(std::string_view command, const AdminServer& server,
                                               std::string_view id) {
  auto answer = adminGet(server, "/_flux/records/" + percentEncode(id), {});
  if (!answer) {
    std::fprintf(stderr, "%.*s: %s\n", static_cast<int>(command.size()), command.data(),
                 answer.error().message.c_str());
    json body = json::parse(fieldOf(answer.error(), "body"), nullptr, /*allow_exceptions=*/false);
    if (!body.is_discarded()) {
      std::string candidates = renderCandidates(body);
      std::fwrite(candidates.data(), 1, candidates.size(), stderr);
    }
    return std::unexpected(exitCodeFor(answer.error()));
  }
  return std::move(*answer);
}

int runRecord(RecordView view, const RecordOptions& options) {
  const char* name = view == RecordView::kWhy ? "flux why" : "flux trace";
  auto server = findRecordServer(name, options.url, options.token);
  if (!server) return server.error();
  auto answer = fetchRecord(name, *server, options.id);
  if (!answer) return answer.error();
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
  addTailCommand(app);
  addRecordView(app, RecordView::kWhy);
  addRecordView(app, RecordView::kTrace);
}

}  // namespace flux::cli

#include "cli/trace_command.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "cli/records_command.h"
#include "cli/trace_diff.h"
#include "cli/tui/terminal.h"
#include "cli/tui/trace_debug.h"

namespace flux::cli {

namespace {

using nlohmann::json;

// main() blocks SIGINT and SIGTERM in every thread; a command that only waits on the network
// lets Ctrl-C end it as it ends any CLI tool.
void unblockTerminationSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
}

void writeOut(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

std::string dumped(const json& value) {
  return value.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

// Closes a descriptor this command opened (the controlling terminal).
struct OwnedFd {
  int fd = -1;
  ~OwnedFd() {
    if (fd >= 0) close(fd);
  }
};

void addServerOptions(CLI::App& command, std::string& url, std::string& token) {
  command.add_option("--url", url,
                     "Flux server (default: FLUX_URL, then the project's .flux/dev.json)");
  command.add_option("--token", token,
                     "Admin token (default: FLUX_TOKEN, then the project's .flux/dev.json)");
}

}  // namespace

int runTraceDebug(const TraceDebugOptions& options) {
  constexpr const char* kName = "flux trace debug";
  // Ctrl-C ends the fetch as any CLI's; the interactive view blocks the signals again and
  // reads them itself (RawTerminal), to restore the terminal first.
  unblockTerminationSignals();
  bool interactive = !options.json && isatty(STDOUT_FILENO) == 1;
  auto server = findRecordServer(kName, options.url, options.token);
  if (!server) return server.error();
  auto answer = fetchRecord(kName, *server, options.id);
  if (!answer) return answer.error();
  DebugTrace trace = debugTrace(std::move(*answer));
  StepView view = options.expand ? StepView::kExpanded : StepView::kCompact;

  if (options.json) {
    writeOut(dumped(debugJson(trace)));
    return 0;
  }
  if (interactive) {
    // Keys come from stdin when it is the terminal, else from the controlling terminal
    // (`... | flux trace debug <id>`).
    OwnedFd tty;
    int in_fd = STDIN_FILENO;
    if (isatty(STDIN_FILENO) != 1) {
      tty.fd = open("/dev/tty", O_RDONLY | O_CLOEXEC);
      in_fd = tty.fd;
    }
    if (in_fd >= 0) {
      auto terminal = tui::RawTerminal::open(in_fd, STDOUT_FILENO);
      if (terminal) {
        int code = runDebugSession(trace, **terminal, stdoutColor(), view);
        (*terminal)->restore();
        return code;
      }
      std::fprintf(stderr, "%s: %s: printing the steps instead\n", kName,
                   terminal.error().message.c_str());
    }
  }
  writeOut(renderDebugListing(trace, view, stdoutColor()));
  return 0;
}

int runTraceDiff(const TraceDiffOptions& options) {
  constexpr const char* kName = "flux trace diff";
  unblockTerminationSignals();
  auto server = findRecordServer(kName, options.url, options.token);
  if (!server) return server.error();
  auto before = fetchRecord(kName, *server, options.before);
  if (!before) return before.error();
  auto after = fetchRecord(kName, *server, options.after);
  if (!after) return after.error();
  TraceDiff diff = diffTraces(std::move(*before), std::move(*after));
  writeOut(options.json ? dumped(toJson(diff)) : renderTraceDiff(diff, stdoutColor()));
  return 0;
}

void addTraceSubcommands(CLI::App& trace) {
  auto debug_options = std::make_shared<TraceDebugOptions>();
  CLI::App* debug = trace.add_subcommand(
      "debug",
      "Step through a request's spans: n/→ next, p/← prev, e expand, q quit (a plain listing "
      "when stdout is not a terminal)");
  debug
      ->add_option("id", debug_options->id,
                   "Request id: the full id, a prefix of it, or its handle (req:550e8400)")
      ->required();
  debug->add_flag("--json", debug_options->json, "Print the steps as JSON");
  debug->add_flag("--expand", debug_options->expand,
                  "Show full inputs, outputs and DB changes from the start");
  addServerOptions(*debug, debug_options->url, debug_options->token);
  debug->callback([debug_options] {
    int code = runTraceDebug(*debug_options);
    std::fflush(stdout);
    if (code != 0) throw CLI::RuntimeError(code);
  });

  auto diff_options = std::make_shared<TraceDiffOptions>();
  CLI::App* diff = trace.add_subcommand(
      "diff",
      "Compare two requests span by span (same, faster, slower, changed, missing, added) and "
      "write by write; any two, also of different endpoints");
  diff->add_option("before", diff_options->before, "The first request's id (or prefix, handle)")
      ->required();
  diff->add_option("after", diff_options->after, "The second request's id (or prefix, handle)")
      ->required();
  diff->add_flag("--json", diff_options->json, "Print the structured diff as JSON");
  addServerOptions(*diff, diff_options->url, diff_options->token);
  diff->callback([diff_options] {
    int code = runTraceDiff(*diff_options);
    std::fflush(stdout);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace flux::cli

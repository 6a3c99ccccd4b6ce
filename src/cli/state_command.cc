#include "cli/state_command.h"

#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

#include "cli/admin_client.h"
#include "cli/state_render.h"

namespace flux::cli {

namespace {

constexpr int kExitRefused = 1;
constexpr int kExitUnreachable = 2;

int exitCodeFor(const Error& error) {
  return error.code == ErrorCode::kUnavailable || error.code == ErrorCode::kTimeout
             ? kExitUnreachable
             : kExitRefused;
}

const char* commandName(StateView view) {
  return view == StateView::kHistory ? "flux state history" : "flux state blame";
}

void addSubcommand(CLI::App& state, StateView view, std::shared_ptr<StateOptions> options) {
  bool history = view == StateView::kHistory;
  CLI::App* command = state.add_subcommand(
      history ? "history" : "blame",
      history ? "Every change ever made to a row, oldest first, with the request that made it"
              : "Which request last wrote each column of a row's current value");
  command->add_option("table", options->table, "Table: <name> or <schema>.<name>")->required();
  command
      ->add_option("--id", options->id,
                   "The row's primary key (a composite key's values joined with ',')")
      ->required();
  if (history) {
    command->add_option("--limit", options->limit, "Show the latest N mutations")
        ->check(CLI::Range(1, 10000))
        ->default_val(100);
  }
  command->add_flag("--json", options->json, "Print the admin API's JSON");
  command->add_option("--url", options->url,
                      "Flux server (default: FLUX_URL, then the project's .flux/dev.json)");
  command->add_option("--token", options->token,
                      "Admin token (default: FLUX_TOKEN, then the project's .flux/dev.json)");
  command->callback([view, options] {
    // main() blocks SIGINT and SIGTERM for the commands that sigwait(); this one waits on the
    // network instead, so Ctrl-C must end it as it ends any CLI tool.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
    options->view = view;
    int code = runState(*options);
    std::fflush(stdout);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace

int runState(const StateOptions& options) {
  const char* name = commandName(options.view);
  auto server = findAdminServer(adminServerSources(options.url, options.token));
  if (!server) {
    std::fprintf(stderr, "%s: %s\n", name, server.error().message.c_str());
    return server.error().code == ErrorCode::kNotFound ? kExitUnreachable : kExitRefused;
  }

  UrlParams params{{"table", options.table}, {"id", options.id}};
  if (options.view == StateView::kHistory) {
    params.emplace_back("limit", std::to_string(options.limit));
  }
  const char* path =
      options.view == StateView::kHistory ? "/_flux/state/history" : "/_flux/state/blame";
  auto answer = adminGet(*server, path, params);
  if (!answer) {
    std::fprintf(stderr, "%s: %s\n", name, answer.error().message.c_str());
    return exitCodeFor(answer.error());
  }

  std::string text;
  if (options.json) {
    text = answer->dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  } else if (options.view == StateView::kHistory) {
    text = renderHistory(*answer, stdoutColor());
  } else {
    text = renderBlame(*answer, stdoutColor());
  }
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

void addStateCommand(CLI::App& app) {
  CLI::App* state =
      app.add_subcommand("state", "A row's change history and who set each of its values");
  state->require_subcommand(1);
  // Shared by the two subcommands' callbacks, which CLI11 copies and keeps as long as `app`
  // lives; the parsed values must live that long too.
  auto options = std::make_shared<StateOptions>();
  addSubcommand(*state, StateView::kHistory, options);
  addSubcommand(*state, StateView::kBlame, options);
}

}  // namespace flux::cli

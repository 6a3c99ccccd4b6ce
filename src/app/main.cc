// The composition root of the `flux` binary: parses the command line and runs a command.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "app/dev_server.h"
#include "cli/init_command.h"
#include "cli/records_command.h"
#include "cli/state_command.h"

int main(int argc, char** argv) {
  // Signals are taken synchronously (sigwait) by the command that waits for them; block them
  // before any thread starts so that every thread inherits the mask. SIGUSR1 / SIGUSR2 pause
  // and resume recording in `FLUX_RECORD=switchable flux dev` (for measurement); blocked, they
  // do nothing to any other command.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  sigaddset(&signals, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  CLI::App app{"Flux: a backend runtime that records every execution."};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("flux 0.1.0"));

  std::string init_dir;
  auto* init = app.add_subcommand("init", "Create a new project that `flux dev` runs as it is");
  init->add_option("dir", init_dir, "Directory to create")->required();

  flux::app::DevOptions dev_options;
  std::string project_dir = ".";
  int idle_timeout_ms = 30'000;
  auto* dev =
      app.add_subcommand("dev", "Serve the project's functions locally, reloading on change");
  dev->add_option("dir", project_dir, "Project directory (default: .)");
  dev->add_option("--port", dev_options.port, "Port to listen on (0: any free port)")
      ->default_val(4000);
  dev->add_option("--host", dev_options.host, "Address to listen on")->default_val("127.0.0.1");
  dev->add_option("--workers", dev_options.workers, "Worker threads (default: one per core)")
      ->check(CLI::Range(0, 256));
  dev->add_option("--heap-limit-mb", dev_options.heap_limit_mb, "V8 heap limit per worker")
      ->check(CLI::Range(16, 16384))
      ->default_val(256);
  dev->add_option("--idle-timeout-ms", idle_timeout_ms,
                  "Close connections with no complete request for this long")
      ->check(CLI::Range(100, 3'600'000))
      ->default_val(30'000);

  flux::cli::addStateCommand(app);
  flux::cli::addRecordCommands(app);

  CLI11_PARSE(app, argc, argv);

  if (init->parsed()) {
    if (auto made = flux::cli::initProject(init_dir); !made) {
      fprintf(stderr, "flux init: %s\n", made.error().message.c_str());
      return 1;
    }
    printf(
        "Created a Flux project in %s\n\n  cd %s\n  flux dev\n  curl "
        "'http://127.0.0.1:4000/hello?name=Flux'\n",
        init_dir.c_str(), init_dir.c_str());
    return 0;
  }
  if (dev->parsed()) {
    dev_options.project_dir = project_dir;
    dev_options.idle_timeout = std::chrono::milliseconds(idle_timeout_ms);
    return flux::app::runDev(dev_options);
  }
  return 0;
}

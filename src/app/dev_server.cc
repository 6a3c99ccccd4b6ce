#include "app/dev_server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <nlohmann/json.hpp>
#include <random>

#include "admin/admin_api.h"
#include "app/bundler.h"
#include "app/migrations.h"
#include "data/mutation_log.h"
#include "gateway/gateway.h"
#include "record/schema.h"

namespace flux::app {

namespace {

// 256 random bits from the OS, hex: the admin API's bearer token for this run.
std::string newAdminToken() {
  std::random_device device;
  std::string token;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 0; i < 16; ++i) {
    uint32_t r = device();
    token.push_back(kHex[r & 15]);
    token.push_back(kHex[(r >> 4) & 15]);
    token.push_back(kHex[(r >> 8) & 15]);
    token.push_back(kHex[(r >> 12) & 15]);
  }
  return token;
}

}  // namespace

Result<std::unique_ptr<DevServer>> DevServer::start(DevOptions options, LogSink& log) {
  std::unique_ptr<DevServer> dev(new DevServer(std::move(options), log));
  std::error_code ec;
  auto root = std::filesystem::absolute(dev->options_.project_dir, ec).lexically_normal();
  auto project = loadProject(root);
  if (!project) return std::unexpected(project.error());
  dev->project_ = std::move(*project);

  // The database: DATABASE_URL, or a private cluster under .flux/.
  std::string conninfo;
  if (const char* url = std::getenv("DATABASE_URL"); url != nullptr && *url != '\0') {
    conninfo = url;
    dev->database_description_ = "PostgreSQL from DATABASE_URL";
  } else {
    auto pg = EmbeddedPostgres::start(dev->project_.root / ".flux");
    if (!pg) return std::unexpected(pg.error());
    dev->postgres_ = std::move(*pg);
    conninfo = dev->postgres_->connectionString();
    dev->database_description_ = "embedded PostgreSQL in .flux/pg";
  }
  // FLUX_MUTATION_LOG=plpgsql exists for benchmarks only (bench/mutations.sh): the fallback
  // capture instead of the C one. The mutation log goes first, so that what migrations write is
  // logged too.
  const char* log_switch = std::getenv("FLUX_MUTATION_LOG");
  bool plpgsql_only = log_switch != nullptr && std::string_view(log_switch) == "plpgsql";
  if (plpgsql_only) {
    log.write("mutation log: plpgsql capture (FLUX_MUTATION_LOG=plpgsql): for measurement only");
  }
  auto installed = data::installMutationLog(
      conninfo, plpgsql_only ? data::CaptureChoice::kPlpgsqlOnly : data::CaptureChoice::kPreferC);
  if (!installed) return std::unexpected(installed.error());
  if (!installed->why_plpgsql.empty()) {
    log.write("mutation log: the plpgsql capture, slower than the C library: " +
              installed->why_plpgsql);
  }
  auto applied = applyMigrations(conninfo, dev->project_.root / "migrations");
  if (!applied) return std::unexpected(applied.error());
  for (const std::string& name : *applied) log.write("migration applied: " + name);
  if (auto captured = data::captureAllTables(conninfo); !captured) {
    return std::unexpected(captured.error());
  }

  // Every execution is recorded. FLUX_RECORD exists for benchmarks only: `off` makes no
  // recorder, `switchable` one that SIGUSR1 pauses and SIGUSR2 resumes (bench/record.sh
  // compares the two states in one process).
  const char* record_switch = std::getenv("FLUX_RECORD");
  std::string_view record_mode = record_switch == nullptr ? "" : record_switch;
  if (record_mode == "off") {
    log.write("recording OFF (FLUX_RECORD=off): for measurement only");
  } else {
    dev->recording_switchable_ = record_mode == "switchable";
    if (dev->recording_switchable_) {
      log.write(
          "recording switchable (FLUX_RECORD=switchable): SIGUSR1 pauses it, SIGUSR2 "
          "resumes it; for measurement only");
    }
    if (auto installed = record::installRecordSchema(conninfo); !installed) {
      return std::unexpected(installed.error());
    }
    record::RecorderOptions recorder_options;
    recorder_options.conninfo = conninfo;
    recorder_options.spill_dir = dev->project_.root / ".flux" / "spill";
    recorder_options.background_priority = true;
    recorder_options.log = [&log](std::string line) { log.write("recorder: " + line); };
    dev->recorder_ = std::make_unique<record::Recorder>(std::move(recorder_options));
    dev->record_feed_ = std::make_unique<admin::RecordFeed>(
        admin::RecordFeedOptions{.conninfo = conninfo, .channel = "flux_records"});
  }

  for (const FunctionSpec& spec : dev->project_.functions) {
    auto bundle = bundleFunction(dev->project_, spec, dev->next_version_++);
    if (!bundle) {
      log.write(fmt::format("[{}] build failed, not served until fixed:\n{}", spec.folder,
                            bundle.error().message));
      continue;
    }
    dev->bundles_[spec.folder] = std::move(*bundle);
  }

  dev->admin_token_ = newAdminToken();
  dev->platform_ = std::make_unique<runtime::V8Platform>();
  runtime::RuntimeOptions runtime_options;
  runtime_options.heap_limit_bytes = dev->options_.heap_limit_mb * 1024 * 1024;
  runtime_options.env = dev->project_.env;
  runtime_options.database = data::PoolOptions{.conninfo = conninfo};
  net::ServerOptions server_options;
  server_options.host = dev->options_.host;
  server_options.port = dev->options_.port;
  server_options.workers = dev->options_.workers;
  server_options.idle_timeout = dev->options_.idle_timeout;
  server_options.body_limit = dev->options_.body_limit;
  DevServer* self = dev.get();
  auto server =
      net::HttpServer::start(server_options, [self, runtime_options](net::WorkerLoop& loop) {
        return std::make_unique<gateway::Gateway>(
            std::make_unique<SystemRandom>(), self->clock_, self->log_,
            [self, &loop, runtime_options](Random& random) {
              return std::make_unique<runtime::IsolateWorker>(loop.context(), runtime_options,
                                                              self->log_, self->clock_, random);
            },
            std::make_unique<admin::AdminApi>(
                loop.context(), self->admin_token_,
                data::PoolOptions{.conninfo = runtime_options.database->conninfo, .size = 2},
                self->record_feed_.get()),
            self->recorder_.get());
      });
  if (!server) return std::unexpected(server.error());
  dev->server_ = std::move(*server);
  if (auto written = dev->writeDevFile(); !written) return std::unexpected(written.error());
  {
    std::lock_guard lock(dev->mutex_);
    if (auto published = dev->publish(); !published) return std::unexpected(published.error());
  }

  auto watcher = FileWatcher::start(dev->project_.root / "functions",
                                    [self](std::set<std::string>) { self->reload(); });
  if (!watcher) {
    log.write("hot reload is off: " + watcher.error().message);
  } else {
    dev->watcher_ = std::move(*watcher);
  }
  return dev;
}

// <project>/.flux/dev.json: where CLI commands run inside the project find this server.
// Readable by the owner only: it holds the admin token.
Result<void> DevServer::writeDevFile() {
  dev_file_ = project_.root / ".flux" / "dev.json";
  std::error_code ec;
  std::filesystem::create_directories(dev_file_.parent_path(), ec);
  std::string url = fmt::format("http://{}:{}", options_.host, server_->port());
  nlohmann::json doc = {{"url", url}, {"token", admin_token_}, {"pid", getpid()}};
  std::string tmp = dev_file_.string() + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail(ErrorCode::kUnavailable, "cannot write " + tmp + ": " + strerror(errno));
  std::string text = doc.dump(2) + "\n";
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (!ok || rename(tmp.c_str(), dev_file_.c_str()) != 0) {
    return fail(ErrorCode::kUnavailable, "cannot write " + dev_file_.string());
  }
  return {};
}

DevServer::~DevServer() {
  watcher_.reset();
  if (!dev_file_.empty()) {
    std::error_code ec;
    std::filesystem::remove(dev_file_, ec);
  }
  if (server_) server_->stop();
  server_.reset();
  record_feed_.reset();  // no admin API is left to subscribe: closes its LISTEN connection
  recorder_.reset();     // flushes what the workers submitted, while PostgreSQL still runs
  if (postgres_) {
    if (auto stopped = postgres_->stop(); !stopped) log_.write(stopped.error().message);
  }
}

Result<void> DevServer::publish() {
  std::vector<gateway::RouteSpec> routes;
  for (const FunctionSpec& spec : project_.functions) {
    auto it = bundles_.find(spec.folder);
    if (it != bundles_.end()) routes.push_back({spec.method, spec.route, it->second});
  }
  auto table = gateway::RouteTable::build(std::move(routes));
  if (!table) return std::unexpected(table.error());
  auto shared = std::make_shared<const gateway::RouteTable>(std::move(*table));
  std::vector<net::WorkerLoop*> workers = server_->workers();
  // Waits until every worker has installed the table, so that what is logged next is true.
  auto installed = std::make_shared<std::latch>(static_cast<std::ptrdiff_t>(workers.size()));
  for (net::WorkerLoop* worker : workers) {
    worker->post([shared, installed](net::RequestHandler& handler) {
      // The composition root made every worker's handler a Gateway.
      static_cast<gateway::Gateway&>(handler).setRoutes(shared);
      installed->count_down();
    });
  }
  installed->wait();
  return {};
}

void DevServer::reload() {
  std::lock_guard lock(mutex_);
  // A change anywhere may change any function (a shared module imported by several), so every
  // function is rebuilt; only the ones whose bundle or settings changed are swapped in, the
  // others keep their warm contexts.
  auto project = loadProject(project_.root);
  if (!project) {
    log_.write("not reloaded: " + project.error().message);
    return;
  }
  std::map<std::string, std::shared_ptr<const runtime::FunctionBundle>> next;
  std::vector<std::string> reloaded;
  for (const FunctionSpec& spec : project->functions) {
    auto old = bundles_.find(spec.folder);
    auto bundle = bundleFunction(*project, spec, next_version_++);
    if (!bundle) {
      log_.write(fmt::format("[{}] build failed{}:\n{}", spec.folder,
                             old != bundles_.end() ? ", still serving the previous version" : "",
                             bundle.error().message));
      if (old != bundles_.end()) next[spec.folder] = old->second;
      continue;
    }
    if (old != bundles_.end() && old->second->code == (*bundle)->code &&
        old->second->timeout == (*bundle)->timeout) {
      next[spec.folder] = old->second;
      continue;
    }
    next[spec.folder] = std::move(*bundle);
    reloaded.push_back(spec.folder);
  }
  std::vector<std::string> removed;
  for (const auto& [folder, bundle] : bundles_) {
    if (!next.contains(folder)) removed.push_back(folder);
  }
  bool routes_changed = project->functions.size() != project_.functions.size();
  for (size_t i = 0; !routes_changed && i < project->functions.size(); ++i) {
    const FunctionSpec& a = project->functions[i];
    const FunctionSpec& b = project_.functions[i];
    routes_changed = a.folder != b.folder || a.route != b.route || a.method != b.method;
  }
  if (reloaded.empty() && removed.empty() && !routes_changed) return;
  Project previous = std::exchange(project_, std::move(*project));
  auto previous_bundles = std::exchange(bundles_, std::move(next));
  if (auto published = publish(); !published) {
    log_.write("reload not applied: " + published.error().message);
    project_ = std::move(previous);
    bundles_ = std::move(previous_bundles);
    return;
  }
  // Printed once every worker serves the new version.
  for (const std::string& folder : reloaded) log_.write(fmt::format("[{}] reloaded", folder));
  for (const std::string& folder : removed) log_.write(fmt::format("[{}] removed", folder));
}

int runDev(const DevOptions& options) {
  LogSink log(stdout);
  auto dev = DevServer::start(options, log);
  if (!dev) {
    fprintf(stderr, "flux dev: %s\n", dev.error().toString().c_str());
    return 1;
  }
  std::string base = fmt::format("http://{}:{}", options.host, (*dev)->port());
  std::string banner = fmt::format("Flux dev server listening on {}\n  database: {}\n", base,
                                   (*dev)->databaseDescription());
  std::string example;
  const FunctionSpec* tried = nullptr;
  for (const FunctionSpec& f : (*dev)->project().functions) {
    banner += fmt::format("  {:6} {:24} functions/{}\n", f.method, f.route, f.folder);
    if (f.route.find(':') != std::string::npos) continue;
    // The first GET route is the friendliest to try; otherwise the first one at all.
    if (tried == nullptr || (tried->method != "GET" && f.method == "GET")) tried = &f;
  }
  if (tried != nullptr) {
    example = tried->method == "GET" || tried->method == "ANY"
                  ? fmt::format("curl {}{}", base, tried->route)
                  : fmt::format("curl -X {} {}{} -H 'content-type: application/json' -d '{{}}'",
                                tried->method, base, tried->route);
  }
  if (!example.empty()) banner += "Try: " + example + "\n";
  banner += "Ctrl-C stops the server.";
  log.write(banner);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  record::Recorder* switchable = (*dev)->switchableRecorder();
  if (switchable != nullptr) {
    sigaddset(&signals, SIGUSR1);
    sigaddset(&signals, SIGUSR2);
  }
  int received = 0;
  while (sigwait(&signals, &received) == 0 && (received == SIGUSR1 || received == SIGUSR2)) {
    switchable->setPaused(received == SIGUSR1);
    log.write(received == SIGUSR1 ? "recording paused (SIGUSR1)" : "recording resumed (SIGUSR2)");
  }
  log.write(fmt::format("\nflux dev: {}, shutting down",
                        received == SIGINT ? "interrupted" : "terminated"));
  dev->reset();
  return 0;
}

}  // namespace flux::app

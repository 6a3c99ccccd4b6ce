// DevServer: `flux dev`. Loads the project, brings up its database (the embedded cluster or
// DATABASE_URL), applies migrations, bundles every function, serves them on the worker loops
// and rebuilds a function whenever its files change. The control work (bundling, reloads) runs
// on the caller's and the file watcher's threads, never on a worker.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "admin/record_feed.h"
#include "app/embedded_postgres.h"
#include "app/file_watcher.h"
#include "app/project.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "net/http_server.h"
#include "record/recorder.h"
#include "runtime/function_bundle.h"
#include "runtime/v8_platform.h"

namespace flux::app {

struct DevOptions {
  std::filesystem::path project_dir = ".";
  std::string host = "127.0.0.1";
  uint16_t port = 4000;
  int workers = 0;  // 0: one per core
  size_t heap_limit_mb = 256;
  std::chrono::milliseconds idle_timeout{30'000};
  size_t body_limit = 10 * 1024 * 1024;
};

class DevServer {
 public:
  static Result<std::unique_ptr<DevServer>> start(DevOptions options, LogSink& log);
  ~DevServer();  // stops serving, then the database

  uint16_t port() const { return server_->port(); }
  const Project& project() const { return project_; }
  const std::string& databaseDescription() const { return database_description_; }
  // The recorder that SIGUSR1 / SIGUSR2 pause and resume (FLUX_RECORD=switchable, for
  // measurement only), or null.
  record::Recorder* switchableRecorder() const {
    return recording_switchable_ ? recorder_.get() : nullptr;
  }

 private:
  DevServer(DevOptions options, LogSink& log) : options_(std::move(options)), log_(log) {}
  // Rebuilds the project's functions and swaps the changed ones into every worker.
  void reload();
  Result<void> publish();
  Result<void> writeDevFile();

  DevOptions options_;
  LogSink& log_;
  Project project_;
  SystemClock clock_;
  std::unique_ptr<runtime::V8Platform> platform_;
  std::unique_ptr<EmbeddedPostgres> postgres_;
  // Outlives the server (workers submit to it); destroyed before PostgreSQL stops, flushing.
  std::unique_ptr<record::Recorder> recorder_;
  bool recording_switchable_ = false;
  // The live stream's one LISTEN connection (GET /_flux/records/stream), shared by every
  // worker's admin API: outlives the server, destroyed before PostgreSQL stops.
  std::unique_ptr<admin::RecordFeed> record_feed_;
  std::string database_description_;
  std::string admin_token_;
  std::filesystem::path dev_file_;
  std::unique_ptr<net::HttpServer> server_;
  std::unique_ptr<FileWatcher> watcher_;

  std::mutex mutex_;  // guards what reloads change: project_, bundles_, next_version_
  std::map<std::string, std::shared_ptr<const runtime::FunctionBundle>> bundles_;  // by folder
  uint64_t next_version_ = 1;
};

// Runs `flux dev` until SIGINT or SIGTERM (SIGUSR1 / SIGUSR2 pause and resume a switchable
// recorder); returns the process exit code.
int runDev(const DevOptions& options);

}  // namespace flux::app

// The real `flux` binary as a child process, for end-to-end tests.
//
// TempProject is a throw-away project directory; FluxProcess runs one `flux` command with its
// stdout and stderr captured; FluxDev ties the two together for `flux dev`: it writes a
// project, starts the server on a free port and stops it (and its PostgreSQL) when done.
//
// All methods are called from the test's main thread unless a comment says otherwise; output()
// and waitForOutput() may be called from any thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <expected>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace flux::tests {

using std::chrono::milliseconds;

// A directory made by mkdtemp under /tmp and opened to other users (0755): when the tests run
// as root, PostgreSQL runs as the `postgres` user and must be able to traverse it. Removed,
// with everything in it, on destruction.
class TempProject {
 public:
  TempProject();
  ~TempProject();
  TempProject(const TempProject&) = delete;
  TempProject& operator=(const TempProject&) = delete;

  const std::filesystem::path& root() const { return root_; }

  // Writes `content` to root()/relative, creating parent directories. The write is one
  // write(2) of the whole file after truncation, like an editor saving in place.
  void writeFile(const std::filesystem::path& relative, std::string_view content) const;

 private:
  std::filesystem::path root_;
};

// Exit status of a child as a shell reports it: the exit code, or 128 + the signal number.
int decodeWaitStatus(int status);

// One run of the flux binary (FLUX_BINARY), or of another program (startProgram). stdout and
// stderr go to one pipe that a reader thread drains into output(). The child gets its own
// process group and receives SIGTERM if this (forking) thread dies, so that a crashed test
// still lets flux stop its PostgreSQL.
class FluxProcess {
 public:
  struct Options {
    std::vector<std::string> args;  // after the binary name
    // Added to (or replacing in) this process's environment; DATABASE_URL is always removed
    // so that `flux dev` uses its own private cluster.
    std::vector<std::pair<std::string, std::string>> env;
    std::optional<std::filesystem::path> cwd;
  };

  static std::expected<std::unique_ptr<FluxProcess>, std::string> start(Options options);
  // The same for another program (psql, pg_ctl, runuser): `program` is the path of argv[0].
  static std::expected<std::unique_ptr<FluxProcess>, std::string> startProgram(std::string program,
                                                                               Options options);

  // Stops a child that is still running (SIGTERM, then SIGKILL to its process group after 15 s)
  // and reaps it.
  ~FluxProcess();
  FluxProcess(const FluxProcess&) = delete;
  FluxProcess& operator=(const FluxProcess&) = delete;

  pid_t pid() const { return pid_; }

  // Everything the child printed so far.
  std::string output() const;
  size_t outputSize() const;

  // Waits until output() contains `needle` at or after byte offset `from`. Returns the offset
  // of the match, or nullopt on timeout or when the output ended (the child closed it) without
  // a match.
  std::optional<size_t> waitForOutput(std::string_view needle, milliseconds timeout,
                                      size_t from = 0) const;

  // Waits until the child's output pipe is closed by every process holding it.
  bool waitForOutputEnd(milliseconds timeout) const;

  // Waits for the child to exit; its decoded exit status, or nullopt on timeout.
  std::optional<int> waitForExit(milliseconds timeout);
  bool running();

  // Sends `signal` and waits up to `timeout` for the exit; nullopt if it did not exit.
  std::optional<int> stop(int signal = SIGTERM, milliseconds timeout = milliseconds(20000));

 private:
  FluxProcess() = default;
  void readLoop();

  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  int output_fd_ = -1;
  int wake_fd_[2] = {-1, -1};  // written by the destructor to end the reader thread

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::string output_;
  bool output_ended_ = false;
  std::thread reader_;
};

// Runs a flux command to completion: {exit status, output}; an error if it cannot start or
// does not finish within `timeout`.
std::expected<std::pair<int, std::string>, std::string> runFlux(std::vector<std::string> args,
                                                                milliseconds timeout);
// The same for any program (FLUX_BINARY with an environment or a working directory, psql,
// pg_ctl), with the options FluxProcess::startProgram takes.
std::expected<std::pair<int, std::string>, std::string> runProgram(std::string program,
                                                                   FluxProcess::Options options,
                                                                   milliseconds timeout);

// `flux dev` on a TempProject.
//
//   FluxDev dev;
//   dev.project().writeFile("functions/hi/index.ts", "export default () => 'hi'");
//   ASSERT_TRUE(dev.start()) << ...;
//   HttpClient(dev.port()).request("POST", "/hi");
class FluxDev {
 public:
  struct Options {
    int workers = 2;
    std::vector<std::string> extra_args;  // e.g. {"--idle-timeout-ms", "300"}
    std::vector<std::pair<std::string, std::string>> env;
    milliseconds startup_timeout{60000};
  };

  FluxDev();
  // Uses an existing project directory that outlives this object (e.g. one `flux init` made).
  explicit FluxDev(std::filesystem::path existing_root);
  ~FluxDev();

  TempProject& project() { return *project_; }
  const std::filesystem::path& root() const { return root_; }
  // The embedded PostgreSQL's data directory: <root>/.flux/pg.
  std::filesystem::path pgDataDir() const { return root_ / ".flux" / "pg"; }

  // Starts `flux dev <root> --port 0 --workers N ...` and waits for the line
  // "Flux dev server listening on http://127.0.0.1:<port>". On failure the error says why
  // and carries the output so far.
  std::expected<void, std::string> start(Options options);
  std::expected<void, std::string> start() { return start(Options{}); }

  int port() const { return port_; }
  bool started() const { return process_ != nullptr; }
  FluxProcess& process() { return *process_; }

  std::string output() const;
  size_t outputSize() const;
  std::optional<size_t> waitForOutput(std::string_view needle, milliseconds timeout,
                                      size_t from = 0) const;

  // SIGTERM (or `signal`), then waits for the exit: the decoded exit status, or nullopt if
  // it did not exit within 20 s. Afterwards started() is still true and output() still works.
  std::optional<int> stop(int signal = SIGTERM);

 private:
  std::unique_ptr<TempProject> project_;  // null when running on an existing directory
  std::filesystem::path root_;
  std::unique_ptr<FluxProcess> process_;
  int port_ = 0;
};

// A live (not zombie) process, as /proc shows it.
struct ProcessInfo {
  pid_t pid = 0;
  pid_t parent = 0;
  std::string cmdline;  // NUL separators replaced by spaces
};

// Live processes whose command line contains `needle`, plus the live children of those.
// Zombies (state Z) are not listed: they have exited.
std::vector<ProcessInfo> liveProcessesMentioning(std::string_view needle);
// Whether `pid` names a live, non-zombie process.
bool isAlive(pid_t pid);

}  // namespace flux::tests

#include "support/flux_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace flux::tests {

namespace fs = std::filesystem;

namespace {

std::string errnoText(const char* what) { return std::string(what) + ": " + strerror(errno); }

// The contents of a /proc file; empty if the process is gone.
std::string readProcFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// State letter and parent pid from /proc/<pid>/stat. The command name in parentheses may
// contain spaces and parentheses: the fields start after the last ')'.
bool readStat(pid_t pid, char& state, pid_t& parent) {
  std::string stat = readProcFile(fs::path("/proc") / std::to_string(pid) / "stat");
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream fields(stat.substr(close + 1));
  fields >> state >> parent;
  return static_cast<bool>(fields);
}

}  // namespace

// ---- TempProject ----

TempProject::TempProject() {
  char pattern[] = "/tmp/flux-e2e-XXXXXX";
  if (mkdtemp(pattern) == nullptr) throw std::runtime_error(errnoText("mkdtemp"));
  root_ = pattern;
  if (chmod(pattern, 0755) != 0) throw std::runtime_error(errnoText("chmod"));
}

TempProject::~TempProject() {
  std::error_code ignored;
  fs::remove_all(root_, ignored);
}

void TempProject::writeFile(const fs::path& relative, std::string_view content) const {
  fs::path path = root_ / relative;
  fs::create_directories(path.parent_path());
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error(errnoText(("open " + path.string()).c_str()));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(fd);
      throw std::runtime_error(errnoText(("write " + path.string()).c_str()));
    }
    done += static_cast<size_t>(n);
  }
  close(fd);
}

// ---- FluxProcess ----

int decodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::expected<std::unique_ptr<FluxProcess>, std::string> FluxProcess::start(Options options) {
  return startProgram(FLUX_BINARY, std::move(options));
}

std::expected<std::unique_ptr<FluxProcess>, std::string> FluxProcess::startProgram(
    std::string program, Options options) {
  std::unique_ptr<FluxProcess> process(new FluxProcess());

  // Everything is prepared before fork: the child only calls async-signal-safe functions.
  std::vector<std::string> argv_storage;
  argv_storage.push_back(std::move(program));
  for (std::string& a : options.args) argv_storage.push_back(std::move(a));
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::map<std::string, std::string> env_map;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry = *e;
    size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    env_map[std::string(entry.substr(0, eq))] = std::string(entry.substr(eq + 1));
  }
  env_map.erase("DATABASE_URL");
  for (auto& [key, value] : options.env) env_map[key] = value;
  std::vector<std::string> env_storage;
  for (const auto& [key, value] : env_map) env_storage.push_back(key + "=" + value);
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string cwd = options.cwd ? options.cwd->string() : std::string();

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return std::unexpected(errnoText("pipe2"));
  if (pipe2(process->wake_fd_, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    return std::unexpected(errnoText("pipe2"));
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(out[0]);
    close(out[1]);
    return std::unexpected(errnoText("fork"));
  }
  if (pid == 0) {
    // Its own process group: a terminal's Ctrl-C reaches the test, which stops flux in order.
    setpgid(0, 0);
    // If the test dies, flux gets SIGTERM and stops its PostgreSQL as it does on Ctrl-C.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(125);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    dup2(out[1], STDOUT_FILENO);
    dup2(out[1], STDERR_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    execve(argv[0], argv.data(), envp.data());
    const char message[] = "flux_process: exec failed\n";
    (void)!write(STDERR_FILENO, message, sizeof message - 1);
    _exit(127);
  }
  close(out[1]);
  process->pid_ = pid;
  process->output_fd_ = out[0];
  process->reader_ = std::thread([p = process.get()] { p->readLoop(); });
  return process;
}

void FluxProcess::readLoop() {
  char buffer[8192];
  for (;;) {
    pollfd fds[2] = {{output_fd_, POLLIN, 0}, {wake_fd_[0], POLLIN, 0}};
    int ready = poll(fds, 2, -1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0 || (fds[1].revents & POLLIN) != 0) break;
    ssize_t n = read(output_fd_, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    {
      std::lock_guard lock(mutex_);
      output_.append(buffer, static_cast<size_t>(n));
    }
    changed_.notify_all();
  }
  {
    std::lock_guard lock(mutex_);
    output_ended_ = true;
  }
  changed_.notify_all();
}

FluxProcess::~FluxProcess() {
  if (pid_ > 0 && !exit_status_) {
    if (!stop(SIGTERM, milliseconds(15000))) {
      kill(-pid_, SIGKILL);
      kill(pid_, SIGKILL);
      waitForExit(milliseconds(5000));
    }
  }
  // The pipe may outlive flux (a grandchild holding it): wake the reader rather than wait
  // for an end of file that may never come.
  if (wake_fd_[1] >= 0) (void)!write(wake_fd_[1], "x", 1);
  if (reader_.joinable()) reader_.join();
  for (int fd : {output_fd_, wake_fd_[0], wake_fd_[1]}) {
    if (fd >= 0) close(fd);
  }
}

std::string FluxProcess::output() const {
  std::lock_guard lock(mutex_);
  return output_;
}

size_t FluxProcess::outputSize() const {
  std::lock_guard lock(mutex_);
  return output_.size();
}

std::optional<size_t> FluxProcess::waitForOutput(std::string_view needle, milliseconds timeout,
                                                 size_t from) const {
  std::unique_lock lock(mutex_);
  std::optional<size_t> found;
  changed_.wait_for(lock, timeout, [&] {
    size_t at = from <= output_.size() ? output_.find(needle, from) : std::string::npos;
    if (at != std::string::npos) found = at;
    return found.has_value() || output_ended_;
  });
  return found;
}

bool FluxProcess::waitForOutputEnd(milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [this] { return output_ended_; });
}

std::optional<int> FluxProcess::waitForExit(milliseconds timeout) {
  if (exit_status_) return exit_status_;
  if (pid_ <= 0) return std::nullopt;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_status_ = decodeWaitStatus(status);
      return exit_status_;
    }
    if (r < 0 && errno != EINTR) return std::nullopt;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    // waitpid has no timeout; a short poll keeps this simple and costs nothing measurable.
    std::this_thread::sleep_for(milliseconds(5));
  }
}

bool FluxProcess::running() { return !waitForExit(milliseconds(0)).has_value(); }

std::optional<int> FluxProcess::stop(int signal, milliseconds timeout) {
  if (exit_status_) return exit_status_;
  kill(pid_, signal);
  return waitForExit(timeout);
}

std::expected<std::pair<int, std::string>, std::string> runFlux(std::vector<std::string> args,
                                                                milliseconds timeout) {
  return runProgram(FLUX_BINARY, {.args = std::move(args), .env = {}, .cwd = std::nullopt},
                    timeout);
}

std::expected<std::pair<int, std::string>, std::string> runProgram(std::string program,
                                                                   FluxProcess::Options options,
                                                                   milliseconds timeout) {
  std::string name = program;
  auto process = FluxProcess::startProgram(std::move(program), std::move(options));
  if (!process) return std::unexpected(process.error());
  auto status = (*process)->waitForExit(timeout);
  if (!status) {
    return std::unexpected(name + " did not exit within " + std::to_string(timeout.count()) +
                           " ms; output:\n" + (*process)->output());
  }
  // The exit closes the write end unless a grandchild kept it; give the reader a moment.
  (*process)->waitForOutputEnd(milliseconds(2000));
  return std::pair<int, std::string>(*status, (*process)->output());
}

// ---- FluxDev ----

FluxDev::FluxDev() : project_(std::make_unique<TempProject>()), root_(project_->root()) {}

FluxDev::FluxDev(fs::path existing_root) : root_(std::move(existing_root)) {}

FluxDev::~FluxDev() {
  process_.reset();
  // Last resort after a failed test: a PostgreSQL that flux left behind must not outlive us.
  for (const ProcessInfo& p : liveProcessesMentioning(pgDataDir().string())) kill(p.pid, SIGKILL);
}

std::expected<void, std::string> FluxDev::start(Options options) {
  if (process_) return std::unexpected("FluxDev::start called twice");
  std::vector<std::string> args = {"dev", root_.string(), "--port",
                                   "0",   "--workers",    std::to_string(options.workers)};
  for (std::string& a : options.extra_args) args.push_back(std::move(a));
  auto process = FluxProcess::start(
      {.args = std::move(args), .env = std::move(options.env), .cwd = std::nullopt});
  if (!process) return std::unexpected(process.error());
  process_ = std::move(*process);

  static constexpr std::string_view kListening = "Flux dev server listening on http://127.0.0.1:";
  auto at = process_->waitForOutput(kListening, options.startup_timeout);
  if (!at) {
    return std::unexpected("flux dev did not print \"" + std::string(kListening) +
                           "<port>\" within " + std::to_string(options.startup_timeout.count()) +
                           " ms; output:\n" + process_->output());
  }
  // The port's digits end at the line's end; wait for that newline too.
  auto eol = process_->waitForOutput("\n", milliseconds(5000), *at);
  std::string text = process_->output();
  std::string digits = text.substr(*at + kListening.size(),
                                   eol ? *eol - *at - kListening.size() : std::string::npos);
  static const std::regex kPort("^([0-9]{1,5})\\s*$");
  std::smatch match;
  if (!std::regex_match(digits, match, kPort)) {
    return std::unexpected("cannot read the port from the banner; output:\n" + text);
  }
  port_ = std::stoi(match[1]);
  if (port_ <= 0 || port_ > 65535) {
    return std::unexpected("flux dev printed port " + match[1].str() + "; output:\n" + text);
  }
  return {};
}

std::string FluxDev::output() const { return process_ ? process_->output() : std::string(); }

size_t FluxDev::outputSize() const { return process_ ? process_->outputSize() : 0; }

std::optional<size_t> FluxDev::waitForOutput(std::string_view needle, milliseconds timeout,
                                             size_t from) const {
  if (!process_) return std::nullopt;
  return process_->waitForOutput(needle, timeout, from);
}

std::optional<int> FluxDev::stop(int signal) {
  if (!process_) return std::nullopt;
  return process_->stop(signal);
}

// ---- /proc ----

bool isAlive(pid_t pid) {
  char state = 0;
  pid_t parent = 0;
  return readStat(pid, state, parent) && state != 'Z' && state != 'X';
}

std::vector<ProcessInfo> liveProcessesMentioning(std::string_view needle) {
  std::vector<ProcessInfo> all;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    ProcessInfo info;
    info.pid = std::stoi(name);
    char state = 0;
    if (!readStat(info.pid, state, info.parent) || state == 'Z' || state == 'X') continue;
    info.cmdline = readProcFile(entry.path() / "cmdline");
    for (char& c : info.cmdline) {
      if (c == '\0') c = ' ';
    }
    all.push_back(std::move(info));
  }
  std::vector<ProcessInfo> matched;
  std::vector<pid_t> roots;
  for (const ProcessInfo& p : all) {
    if (p.cmdline.find(needle) != std::string::npos && p.pid != getpid()) {
      matched.push_back(p);
      roots.push_back(p.pid);
    }
  }
  // A postmaster's children ("postgres: checkpointer") do not repeat the data directory.
  for (const ProcessInfo& p : all) {
    if (p.cmdline.find(needle) != std::string::npos) continue;
    for (pid_t root : roots) {
      if (p.parent == root) matched.push_back(p);
    }
  }
  return matched;
}

}  // namespace flux::tests

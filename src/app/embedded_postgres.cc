#include "app/embedded_postgres.h"

#include <fcntl.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <optional>
#include <thread>
#include <vector>

#include "app/subprocess.h"
#include "base/shell.h"

namespace flux::app {
namespace {

namespace fs = std::filesystem;

constexpr char kPgBinDir[] = "/usr/lib/postgresql/15/bin";
constexpr char kServerUser[] = "postgres";  // who runs the server when flux runs as root
constexpr int kPort = 5432;
// sockaddr_un.sun_path is 108 bytes including the terminating NUL.
constexpr size_t kMaxSocketPathLength = 107;
constexpr std::chrono::seconds kReadyTimeout{60};

// pg_ctl's exit code for `status` when no server runs on the data directory.
constexpr int kPgCtlStatusNotRunning = 3;

constexpr char kSetupHint[] = "run scripts/setup.sh or set DATABASE_URL";

// Who initdb, pg_ctl and the server run as: nullopt for the current user.
struct ServerUser {
  std::optional<std::string> name;
  uid_t uid = 0;
  gid_t gid = 0;
};

Result<ServerUser> serverUser() {
  if (geteuid() != 0) return ServerUser{std::nullopt, geteuid(), getegid()};
  struct passwd* pw = getpwnam(kServerUser);
  if (pw == nullptr) {
    return fail(ErrorCode::kUnavailable,
                std::string("flux runs as root and PostgreSQL refuses to, but there is no `") +
                    kServerUser + "` system user to run it as: " + kSetupHint +
                    ", or run flux as a normal user");
  }
  return ServerUser{kServerUser, pw->pw_uid, pw->pw_gid};
}

SubprocessOptions optionsFor(const ServerUser& user, const fs::path& cwd) {
  return SubprocessOptions{.cwd = cwd.string(), .run_as_user = user.name};
}

fs::path binary(const char* name) { return fs::path(kPgBinDir) / name; }

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// The last lines of the server log, for start failures (the reason is usually only there).
std::string logTail(const fs::path& log_file) {
  std::ifstream in(log_file);
  if (!in) return "";
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(std::move(line));
    if (lines.size() > 10) lines.pop_front();
  }
  std::string out;
  for (const std::string& line : lines) out += line + "\n";
  return trimmed(std::move(out));
}

// A stable name for the socket directory fallback: the same data dir always maps to the same
// directory, across processes and builds (std::hash promises neither).
std::string fnv1aHex(const std::string& text) {
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  char buffer[17];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(hash));
  return buffer;
}

// Quotes a libpq conninfo value when it needs it (spaces, quotes, backslashes).
std::string conninfoValue(const std::string& value) {
  if (!value.empty() && value.find_first_of(" '\\") == std::string::npos) return value;
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

Result<void> chownTo(const fs::path& path, const ServerUser& user) {
  if (!user.name) return {};
  if (chown(path.c_str(), user.uid, user.gid) != 0) {
    return fail(ErrorCode::kInternal, "cannot chown " + path.string() + " to the `" + *user.name +
                                          "` user: " + std::strerror(errno));
  }
  return {};
}

// Creates the data directory (0700, owned by the server user) or checks the existing one.
Result<void> prepareDataDir(const fs::path& data_dir, const ServerUser& user) {
  struct stat st;
  if (lstat(data_dir.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      return fail(ErrorCode::kUnavailable,
                  "cannot stat " + data_dir.string() + ": " + std::strerror(errno));
    }
    if (mkdir(data_dir.c_str(), 0700) != 0) {
      return fail(ErrorCode::kUnavailable,
                  "cannot create " + data_dir.string() + ": " + std::strerror(errno));
    }
    return chownTo(data_dir, user);
  }
  if (!S_ISDIR(st.st_mode)) {
    return fail(ErrorCode::kInvalidArgument,
                data_dir.string() + " exists but is not a directory: remove it so flux can " +
                    "create its PostgreSQL cluster there");
  }
  if (st.st_uid == user.uid) return {};
  if (!fs::exists(data_dir / "PG_VERSION")) {
    // An empty directory left by an earlier attempt: initdb needs it to be the server's.
    return chownTo(data_dir, user);
  }
  return fail(ErrorCode::kUnavailable,
              "the PostgreSQL cluster in " + data_dir.string() + " is owned by uid " +
                  std::to_string(st.st_uid) + ", but the server would run as uid " +
                  std::to_string(user.uid) +
                  ": run flux as the user who owns it, remove the directory to start afresh, " +
                  "or set DATABASE_URL");
}

// When the server runs as another user, it must be able to reach the data directory through
// every parent: checked by asking that user (kernel rules, ACLs included) rather than guessing.
Result<void> checkReachable(const fs::path& data_dir, const ServerUser& user) {
  if (!user.name) return {};
  SubprocessOptions options{.cwd = std::nullopt, .run_as_user = user.name};
  auto canReach = [&options](const fs::path& dir) -> Result<bool> {
    auto result = runSubprocess({"test", "-x", dir.string()}, options);
    if (!result) return std::unexpected(result.error());
    return result->exit_code == 0;
  };
  auto reachable = canReach(data_dir);
  if (!reachable) return std::unexpected(reachable.error());
  if (*reachable) return {};
  fs::path blocking = data_dir;
  fs::path walked;
  for (const fs::path& part : data_dir) {
    walked /= part;
    auto ok = canReach(walked);
    if (ok && !*ok) {
      blocking = walked;
      break;
    }
  }
  return fail(ErrorCode::kUnavailable,
              "PostgreSQL refuses to run as root, so flux runs it as the `" + *user.name +
                  "` user, which cannot reach " + data_dir.string() + " (" + blocking.string() +
                  " is not traversable by it): make the parent directories traversable (chmod " +
                  "o+x " + blocking.string() + "), run flux as a normal user, or set DATABASE_URL");
}

// pg_ctl hands the data and log paths to `sh -c` inside double quotes, which cannot carry these.
Result<void> checkQuotable(const fs::path& path) {
  if (path.string().find_first_of("\"$`\\") == std::string::npos) return {};
  return fail(ErrorCode::kInvalidArgument,
              "pg_ctl cannot handle the path " + path.string() +
                  " (it contains \", $, ` or \\): move the project or set DATABASE_URL");
}

// The socket lives beside the data when the path fits in sun_path; otherwise in a directory
// under /tmp named from the data dir, so a restarted flux finds the same one.
Result<fs::path> socketDir(const fs::path& data_dir, const ServerUser& user) {
  const std::string socket_name = "/.s.PGSQL." + std::to_string(kPort);
  if (data_dir.string().size() + socket_name.size() <= kMaxSocketPathLength) return data_dir;
  fs::path dir = fs::path("/tmp") / ("flux-pg-" + fnv1aHex(data_dir.string()));
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0) {
    if (mkdir(dir.c_str(), 0755) != 0) {
      return fail(ErrorCode::kUnavailable,
                  "cannot create socket directory " + dir.string() + ": " + std::strerror(errno));
    }
    if (auto owned = chownTo(dir, user); !owned) return std::unexpected(owned.error());
    return dir;
  }
  // /tmp is shared: refuse a symlink or a directory someone else planted.
  if (!S_ISDIR(st.st_mode) || (st.st_uid != user.uid && st.st_uid != geteuid())) {
    return fail(ErrorCode::kUnavailable,
                "socket directory " + dir.string() +
                    " exists but is not a directory flux created: " + "remove it");
  }
  if (st.st_uid != user.uid) {
    if (auto owned = chownTo(dir, user); !owned) return std::unexpected(owned.error());
  }
  return dir;
}

// The server log is opened by the server's shell as the server user, who may not be able to
// create files in flux_dir: create it here and hand it over.
Result<void> prepareLogFile(const fs::path& log_file, const ServerUser& user) {
  int fd = open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    return fail(ErrorCode::kUnavailable,
                "cannot create " + log_file.string() + ": " + std::strerror(errno));
  }
  int rc = user.name ? fchown(fd, user.uid, user.gid) : 0;
  int saved_errno = errno;
  close(fd);
  if (rc != 0) {
    return fail(ErrorCode::kInternal,
                "cannot chown " + log_file.string() + ": " + std::strerror(saved_errno));
  }
  return {};
}

// --no-sync skips flushing the new cluster to disk, the same trade the server makes with
// fsync=off: a dev cluster lost to a power cut is re-created, and first start is seconds faster.
Result<void> initdb(const fs::path& data_dir, const ServerUser& user) {
  auto result = runSubprocess(
      {binary("initdb").string(), "-D", data_dir.string(), "-U", "postgres", "--auth=trust", "-E",
       "UTF8", "--locale=C.UTF-8", "--no-instructions", "--no-sync"},
      optionsFor(user, data_dir));
  if (!result) return std::unexpected(result.error());
  if (result->exit_code != 0) {
    return fail(ErrorCode::kUnavailable,
                "initdb failed for " + data_dir.string() + ": " + trimmed(result->output));
  }
  return {};
}

Result<bool> serverRunning(const fs::path& data_dir, const ServerUser& user) {
  auto result = runSubprocess({binary("pg_ctl").string(), "status", "-D", data_dir.string()},
                              optionsFor(user, data_dir));
  if (!result) return std::unexpected(result.error());
  return result->exit_code == 0;
}

Result<void> startServer(const fs::path& data_dir, const fs::path& socket_dir,
                         const fs::path& log_file, const ServerUser& user) {
  // Only a unix socket (no TCP port to collide with), reachable only by the server's user (and
  // root): authentication is `trust`. fsync off: a dev cluster trades crash safety for speed,
  // and so full-page writes, which only guard against torn pages after a crash, go too (they
  // double the WAL of every first write to a page after a checkpoint).
  std::string server_options =
      "-c listen_addresses= -c port=" + std::to_string(kPort) + " -c " +
      shellQuote("unix_socket_directories=\"" + socket_dir.string() + "\"") +
      " -c unix_socket_permissions=0700 -c fsync=off -c synchronous_commit=off"
      " -c full_page_writes=off";
  auto result = runSubprocess(
      {binary("pg_ctl").string(), "start", "-w", "-t", std::to_string(kReadyTimeout.count()), "-D",
       data_dir.string(), "-l", log_file.string(), "-o", server_options},
      optionsFor(user, data_dir));
  if (!result) return std::unexpected(result.error());
  if (result->exit_code != 0) {
    std::string message =
        "PostgreSQL did not start on " + data_dir.string() + ": " + trimmed(result->output);
    std::string tail = logTail(log_file);
    if (!tail.empty()) message += "\nlast lines of " + log_file.string() + ":\n" + tail;
    return std::unexpected(
        Error{ErrorCode::kUnavailable, message, {}}.with("log", log_file.string()));
  }
  return {};
}

// pg_ctl -w already waits for a server it starts; one found running may still be recovering.
Result<void> waitUntilAccepting(const std::string& conninfo, const fs::path& data_dir) {
  auto deadline = std::chrono::steady_clock::now() + kReadyTimeout;
  for (;;) {
    PGPing ping = PQping(conninfo.c_str());
    if (ping == PQPING_OK) return {};
    if (ping == PQPING_NO_ATTEMPT) {
      return fail(ErrorCode::kInternal, "invalid connection string for the embedded PostgreSQL");
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return fail(ErrorCode::kTimeout, "PostgreSQL on " + data_dir.string() +
                                           " did not accept connections within " +
                                           std::to_string(kReadyTimeout.count()) + "s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

Result<std::unique_ptr<EmbeddedPostgres>> EmbeddedPostgres::start(const fs::path& flux_dir) {
  for (const char* name : {"initdb", "pg_ctl"}) {
    if (access(binary(name).c_str(), X_OK) != 0) {
      return fail(ErrorCode::kUnavailable, std::string("PostgreSQL 15 server not found at ") +
                                               kPgBinDir + " (no " + name + "): " + kSetupHint);
    }
  }
  auto user = serverUser();
  if (!user) return std::unexpected(user.error());

  std::error_code ec;
  fs::path dir = fs::absolute(flux_dir, ec).lexically_normal();
  if (ec) return fail(ErrorCode::kInvalidArgument, "bad flux dir " + flux_dir.string());
  fs::create_directories(dir, ec);
  if (ec) {
    return fail(ErrorCode::kUnavailable, "cannot create " + dir.string() + ": " + ec.message());
  }
  if (user->name) {
    // The server user must traverse flux_dir. It is flux's own directory, so granting search
    // (not listing) to others is ours to do; parent directories are the user's and only checked.
    struct stat st;
    if (stat(dir.c_str(), &st) == 0 && (st.st_mode & S_IXOTH) == 0 &&
        chmod(dir.c_str(), (st.st_mode & 07777) | S_IXOTH) != 0) {
      return fail(ErrorCode::kUnavailable,
                  "cannot make " + dir.string() +
                      " traversable for the `postgres` user: " + std::strerror(errno));
    }
  }

  fs::path data_dir = dir / "pg";
  fs::path log_file = dir / "pg.log";
  for (const fs::path& path : {data_dir, log_file}) {
    if (auto ok = checkQuotable(path); !ok) return std::unexpected(ok.error());
  }
  if (auto ok = prepareDataDir(data_dir, *user); !ok) return std::unexpected(ok.error());
  if (auto ok = checkReachable(data_dir, *user); !ok) return std::unexpected(ok.error());
  auto socket_dir = socketDir(data_dir, *user);
  if (!socket_dir) return std::unexpected(socket_dir.error());

  if (!fs::exists(data_dir / "PG_VERSION")) {
    if (auto ok = initdb(data_dir, *user); !ok) return std::unexpected(ok.error());
  }

  std::unique_ptr<EmbeddedPostgres> pg(new EmbeddedPostgres());
  pg->data_dir_ = data_dir;
  pg->conninfo_ = "host=" + conninfoValue(socket_dir->string()) + " port=" + std::to_string(kPort) +
                  " dbname=postgres user=postgres";

  // A server left running by an earlier flux (one that crashed) is reused, and stopped by us.
  auto running = serverRunning(data_dir, *user);
  if (!running) return std::unexpected(running.error());
  if (!*running) {
    if (auto ok = prepareLogFile(log_file, *user); !ok) return std::unexpected(ok.error());
    if (auto ok = startServer(data_dir, *socket_dir, log_file, *user); !ok) {
      return std::unexpected(ok.error());
    }
  }
  pg->running_ = true;
  if (auto ok = waitUntilAccepting(pg->conninfo_, data_dir); !ok) {
    return std::unexpected(ok.error());  // the destructor stops the server
  }
  return pg;
}

EmbeddedPostgres::~EmbeddedPostgres() { (void)stop(); }

Result<void> EmbeddedPostgres::stop() {
  if (!running_) return {};
  auto user = serverUser();
  if (!user) return std::unexpected(user.error());
  auto result = runSubprocess(
      {binary("pg_ctl").string(), "stop", "-D", data_dir_.string(), "-m", "fast", "-w"},
      optionsFor(*user, data_dir_));
  if (!result) return std::unexpected(result.error());
  if (result->exit_code != 0) {
    // Someone else stopped it already: the goal is met.
    auto status = runSubprocess({binary("pg_ctl").string(), "status", "-D", data_dir_.string()},
                                optionsFor(*user, data_dir_));
    if (!status || status->exit_code != kPgCtlStatusNotRunning) {
      return fail(ErrorCode::kUnavailable,
                  "pg_ctl stop failed for " + data_dir_.string() + ": " + trimmed(result->output));
    }
  }
  running_ = false;
  return {};
}

}  // namespace flux::app

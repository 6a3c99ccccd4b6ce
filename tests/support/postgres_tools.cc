#include "support/postgres_tools.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "base/shell.h"

namespace flux::tests {
namespace {

namespace fs = std::filesystem;

constexpr std::chrono::milliseconds kCommandTimeout{30000};

// The arguments of the postmaster's command line as postmaster.opts records them
// (`/path/postgres "-D" "/dir" "-c" "name=value" ...`), without the binary and -D <dir>.
std::vector<std::string> postmasterOptions(const std::string& opts) {
  std::vector<std::string> args;
  std::string text = opts;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  size_t at = text.find(" \"");
  if (at == std::string::npos || text.back() != '"') return args;
  text = text.substr(at + 2, text.size() - at - 3);
  size_t from = 0;
  for (;;) {
    size_t end = text.find("\" \"", from);
    args.push_back(text.substr(from, end == std::string::npos ? std::string::npos : end - from));
    if (end == std::string::npos) break;
    from = end + 3;
  }
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "-D") {
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i),
                 args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      break;
    }
  }
  return args;
}

}  // namespace

std::string findProgram(std::string_view name, const std::vector<fs::path>& preferred) {
  std::vector<fs::path> dirs = preferred;
  if (const char* path = std::getenv("PATH")) {
    std::stringstream list(path);
    std::string dir;
    while (std::getline(list, dir, ':')) {
      if (!dir.empty()) dirs.emplace_back(dir);
    }
  }
  for (const fs::path& dir : dirs) {
    fs::path candidate = dir / name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return {};
}

std::expected<std::string, std::string> psql(const FluxDev& dev, const std::string& sql,
                                             const std::string& application_name) {
  static const std::string program = findProgram("psql", {kPgBin});
  if (program.empty())
    return std::unexpected(std::string("psql not found in ") + kPgBin + " or PATH");
  auto run = runProgram(
      program,
      {.args = {"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", dev.pgDataDir().string(),
                "-p", "5432", "-U", "postgres", "-d", "postgres", "-c", sql},
       .env = {{"PGAPPNAME", application_name}, {"PGOPTIONS", ""}},
       .cwd = dev.root()},
      kCommandTimeout);
  if (!run) return std::unexpected(run.error());
  if (run->first != 0) {
    return std::unexpected("psql exited " + std::to_string(run->first) + " for `" + sql + "`:\n" +
                           run->second);
  }
  return run->second;
}

std::expected<std::string, std::string> pgCtl(const FluxDev& dev, std::vector<std::string> args) {
  std::string pg_ctl = (fs::path(kPgBin) / "pg_ctl").string();
  std::string program = pg_ctl;
  if (geteuid() == 0) {
    program = findProgram("runuser", {"/usr/sbin", "/sbin"});
    if (program.empty()) return std::unexpected("runuser not found");
    args.insert(args.begin(), {"-u", "postgres", "--", pg_ctl});
  }
  auto run =
      runProgram(program, {.args = std::move(args), .env = {}, .cwd = dev.root()}, kCommandTimeout);
  if (!run) return std::unexpected(run.error());
  if (run->first != 0) {
    return std::unexpected("pg_ctl exited " + std::to_string(run->first) + ":\n" + run->second);
  }
  return run->second;
}

std::expected<void, std::string> ClusterControl::stop() {
  fs::path data_dir = dev_.pgDataDir();
  std::ifstream in(data_dir / "postmaster.opts");
  std::stringstream opts;
  opts << in.rdbuf();
  std::vector<std::string> options = postmasterOptions(opts.str());
  if (options.empty()) return std::unexpected("cannot read postmaster.opts: " + opts.str());
  options_.clear();
  for (const std::string& o : options) options_ += (options_.empty() ? "" : " ") + shellQuote(o);
  auto stopped = pgCtl(dev_, {"stop", "-D", data_dir.string(), "-m", "fast", "-w"});
  if (!stopped) return std::unexpected(stopped.error());
  return {};
}

std::expected<void, std::string> ClusterControl::start() {
  auto started = pgCtl(dev_, {"start", "-D", dev_.pgDataDir().string(), "-l",
                              (dev_.root() / ".flux" / "pg.log").string(), "-w", "-o", options_});
  if (!started) return std::unexpected(started.error());
  return {};
}

}  // namespace flux::tests

// Subprocess: runs a program (esbuild, initdb, pg_ctl) with arguments, no shell, optionally as
// another user, and collects its exit status and output. Control-path only: it blocks.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/error.h"

namespace flux::app {

struct SubprocessResult {
  int exit_code = -1;  // -1 when killed by a signal
  std::string output;  // stdout and stderr, interleaved
};

struct SubprocessOptions {
  std::optional<std::string> cwd;
  // Run as this system user (flux started as root running postgres as "postgres").
  std::optional<std::string> run_as_user;
};

// Fails only when the program could not be started; a non-zero exit is a result, not an error.
Result<SubprocessResult> runSubprocess(const std::vector<std::string>& argv,
                                       const SubprocessOptions& options = {});

}  // namespace flux::app

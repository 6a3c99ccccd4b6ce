// PostgreSQL's own tools against the embedded cluster of a `flux dev` under test: psql for
// reading what flux stored, pg_ctl for stopping and restarting the cluster under a running
// server. As role postgres over the cluster's unix socket (trust authentication); pg_ctl runs as
// the user that owns the cluster (`postgres` when the tests run as root, as flux does).
#pragma once

#include <expected>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "support/flux_process.h"

namespace flux::tests {

inline constexpr char kPgBin[] = "/usr/lib/postgresql/15/bin";  // PostgreSQL 15, as flux uses

// `name` in `preferred` directories first, then on PATH; "" when nowhere.
std::string findProgram(std::string_view name, const std::vector<std::filesystem::path>& preferred);

// One SQL command through psql: its unaligned, tuples-only output, or an error with psql's
// output.
std::expected<std::string, std::string> psql(const FluxDev& dev, const std::string& sql,
                                             const std::string& application_name = "flux-e2e");

// pg_ctl with `args`; its output, or an error with it.
std::expected<std::string, std::string> pgCtl(const FluxDev& dev, std::vector<std::string> args);

// Stops the cluster (fast shutdown, waiting for it) and starts it again later with the options
// flux started it with (read from postmaster.opts).
class ClusterControl {
 public:
  explicit ClusterControl(const FluxDev& dev) : dev_(dev) {}
  std::expected<void, std::string> stop();
  std::expected<void, std::string> start();

 private:
  const FluxDev& dev_;
  std::string options_;  // the postmaster's options, quoted for /bin/sh
};

}  // namespace flux::tests

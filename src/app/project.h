// Project: what `flux dev` (and later `flux deploy`) reads from a project directory.
//
//   <root>/functions/<name>/index.ts (or index.js)  the handler (default export)
//   <root>/functions/<name>/flux.json               optional: name, route, method, timeout_ms
//   <root>/migrations/*.sql                          applied in order by name
//   <root>/.env                                      KEY=VALUE lines, given to handlers as ctx.env
//
// Bad files never crash Flux: every problem comes back as an Error naming the file and saying
// what to fix.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"

namespace flux::app {

struct FunctionSpec {
  std::string name;                          // flux.json "name", default: the folder name
  std::string folder;                        // the folder name under functions/
  std::filesystem::path entry;               // absolute path of index.ts or index.js
  std::string route;                         // default "/<folder>"; may have ":param" segments
  std::string method = "POST";               // GET, POST, PUT, PATCH, DELETE or ANY
  std::chrono::milliseconds timeout{10'000};  // flux.json "timeout_ms"
};

struct Project {
  std::filesystem::path root;  // absolute
  std::vector<FunctionSpec> functions;  // sorted by folder name
  std::vector<std::pair<std::string, std::string>> env;  // .env, then FLUX_* process variables
};

Result<Project> loadProject(const std::filesystem::path& root);
// Loads one function folder (used on reload). kNotFound when the folder has no index.ts/js.
Result<FunctionSpec> loadFunction(const std::filesystem::path& root, const std::string& folder);

}  // namespace flux::app

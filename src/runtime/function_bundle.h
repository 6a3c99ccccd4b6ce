// FunctionBundle: one deployed version of one function, as the runtime runs it. Immutable once
// built; the control thread builds it and every worker shares it (shared_ptr<const>), so a
// request in flight keeps its version alive while a reload installs the next.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "runtime/source_map.h"

namespace flux::runtime {

struct FunctionBundle {
  std::string name;      // "hello" (the folder under functions/)
  uint64_t version = 0;  // increases with every rebuild of this function
  std::string code;      // one ESM module, esbuild's output
  SourceMap source_map;  // sources are project-relative ("functions/hello/index.ts")
  std::chrono::milliseconds timeout{10'000};  // CPU and wall budget per request
};

}  // namespace flux::runtime

// Bundler: turns a function's TypeScript into one ESM file and its source map with esbuild, at
// start-up and on reload, never on the request path. Runs the `esbuild` executable.
#pragma once

#include <cstdint>
#include <memory>

#include "app/project.h"
#include "base/error.h"
#include "runtime/function_bundle.h"

namespace flux::app {

// Bundles spec.entry and everything it imports into one ESM module; "@flux/functions" stays an
// import (the runtime provides it). The source map's sources are rewritten to be relative to
// the project root ("functions/hello/index.ts"). Output files go to <root>/.flux/build/.
// An esbuild failure returns kInvalidArgument with esbuild's own message (file:line: error).
Result<std::shared_ptr<const runtime::FunctionBundle>> bundleFunction(const Project& project,
                                                                      const FunctionSpec& spec,
                                                                      uint64_t version);

}  // namespace flux::app

// Whole-file reads for the control path (config, build output). Never on a worker loop.
#pragma once

#include <filesystem>
#include <string>

#include "base/error.h"

namespace flux {

// The file's bytes, or kNotFound / kUnavailable with a message naming the path and the reason.
Result<std::string> readFile(const std::filesystem::path& path);

}  // namespace flux

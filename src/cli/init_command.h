// `flux init <dir>`: scaffolds a new project that `flux dev` serves as it is.
#pragma once

#include <filesystem>

#include "base/error.h"

namespace flux::cli {

// Creates <dir> (or fills it if empty) with functions/hello/, migrations/, .gitignore and a
// README. Refuses a directory that already holds a Flux project or other files.
Result<void> initProject(const std::filesystem::path& dir);

}  // namespace flux::cli

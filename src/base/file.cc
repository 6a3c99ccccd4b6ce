#include "base/file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace flux {

Result<std::string> readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int error = errno;
    return fail(error == ENOENT ? ErrorCode::kNotFound : ErrorCode::kUnavailable,
                "cannot read " + path.string() + ": " + std::strerror(error));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return fail(ErrorCode::kUnavailable, "cannot read " + path.string());
  return buffer.str();
}

}  // namespace flux

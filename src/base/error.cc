#include "base/error.h"

namespace flux {

const char* errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kAlreadyExists: return "already_exists";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kResourceExhausted: return "resource_exhausted";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kUserCode: return "user_code";
  }
  return "internal";
}

std::string Error::toString() const {
  std::string out = message;
  for (const auto& [key, value] : fields) out += " " + key + "=" + value;
  return out;
}

}  // namespace flux

// Errors are data: a stable code a program can match, a message a person can act on, and
// optional fields. Expected failures return Result<T>; exceptions never cross a Flux API.
#pragma once

#include <expected>
#include <string>
#include <utility>
#include <vector>

namespace flux {

enum class ErrorCode {
  kInvalidArgument,   // bad input from outside: CLI args, config, HTTP, JS values
  kNotFound,
  kAlreadyExists,
  kUnavailable,       // a dependency (PostgreSQL, a subprocess) is not reachable
  kTimeout,
  kResourceExhausted, // heap, body size, queue bounds
  kInternal,
  kUserCode,          // the user's function threw
};

// Stable lower_snake name of a code ("invalid_argument"), used in JSON and records.
const char* errorCodeName(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  std::vector<std::pair<std::string, std::string>> fields;

  Error with(std::string key, std::string value) && {
    fields.emplace_back(std::move(key), std::move(value));
    return std::move(*this);
  }
  std::string toString() const;
};

template <typename T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(ErrorCode code, std::string message) {
  return std::unexpected<Error>(Error{code, std::move(message), {}});
}

}  // namespace flux

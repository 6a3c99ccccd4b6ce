// Request ids are UUIDv7: 48 bits of Unix milliseconds, then randomness, so they sort by time.
// The CLI prints the first 8 hex digits ("req:0192a4f3") and accepts any unique prefix.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "base/clock.h"

namespace flux {

class RequestId {
 public:
  RequestId() = default;
  static RequestId generate(Clock& clock, Random& random);

  // "0192a4f3-7c1e-7d2a-9b3c-4e5f60718293"
  std::string toString() const;
  // "0192a4f3"
  std::string shortForm() const;
  uint64_t unixMillis() const;
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }

 private:
  std::array<uint8_t, 16> bytes_{};
};

}  // namespace flux

// Request ids are UUIDv7: 48 bits of Unix milliseconds, then randomness, so they sort by time.
// The short handle people copy ("req:5d8f0a21") is the id's last 8 hex digits: random, so two
// requests of the same minute differ (the first 8 digits are the clock's high bits, shared by
// every request in a 65 s window).
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
  // "60718293": the last 8 hex digits
  std::string shortForm() const;
  uint64_t unixMillis() const;
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }

 private:
  std::array<uint8_t, 16> bytes_{};
};

}  // namespace flux

// Request ids are UUIDv7: 48 bits of Unix milliseconds, 12 bits of the millisecond's fraction
// (RFC 9562's "increased clock precision", so ids of one millisecond sort by time too), then 62
// random bits. An execution's id is made from its start time (generate(unix_us)), so that its
// records sort by (start, id) when sorted by id: flux.executions is ordered and windowed by
// id, with no index on the time.
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
  // For a start time in Unix microseconds: ids of different microseconds sort as their times
  // do (each microsecond has buckets of its own among the 4096 of its millisecond).
  static RequestId generate(int64_t unix_us, Random& random);
  // The smallest id of a millisecond: every id generated at unix_ms or later sorts at or after
  // it, every earlier one before.
  static RequestId lowestOf(uint64_t unix_ms);

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

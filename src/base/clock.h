// Injectable time and randomness. Nothing in Flux reads the system clock or a global RNG
// directly: tests substitute fixed sources, and replay feeds recorded values back.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace flux {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time in milliseconds since the Unix epoch (what Date.now() returns).
  virtual double nowMillis() = 0;
  // Monotonic time for durations.
  virtual std::chrono::steady_clock::time_point steadyNow() = 0;
};

class SystemClock final : public Clock {
 public:
  double nowMillis() override {
    using namespace std::chrono;
    return static_cast<double>(
               duration_cast<microseconds>(system_clock::now().time_since_epoch()).count()) /
           1000.0;
  }
  std::chrono::steady_clock::time_point steadyNow() override {
    return std::chrono::steady_clock::now();
  }
};

class Random {
 public:
  virtual ~Random() = default;
  virtual uint64_t next64() = 0;
  // Uniform in [0, 1), as Math.random().
  double nextDouble() { return static_cast<double>(next64() >> 11) * 0x1.0p-53; }
};

// Seeded from the OS once; one per worker thread (not thread-safe by design).
class SystemRandom final : public Random {
 public:
  SystemRandom() : engine_(std::random_device{}()) {}
  uint64_t next64() override { return engine_(); }

 private:
  std::mt19937_64 engine_;
};

}  // namespace flux

// V8Platform: the process's one V8 initialisation. Owned by the composition root, created
// before any IsolateWorker and destroyed after the last one. Fixes the isolates' time zone
// (UTC) and locale (en-US) so that functions behave the same on every machine.
#pragma once

#include <memory>

namespace v8 {
class Platform;
}

namespace flux::runtime {

class V8Platform {
 public:
  V8Platform();
  ~V8Platform();
  V8Platform(const V8Platform&) = delete;
  V8Platform& operator=(const V8Platform&) = delete;

  v8::Platform& platform() { return *platform_; }

 private:
  std::unique_ptr<v8::Platform> platform_;
};

}  // namespace flux::runtime

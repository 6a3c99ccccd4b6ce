#include "runtime/v8_platform.h"

#include <libplatform/libplatform.h>
#include <stdlib.h>
#include <time.h>
#include <v8.h>

namespace flux::runtime {

V8Platform::V8Platform() {
  // ICU reads the time zone and default locale from the environment when it first needs them.
  setenv("TZ", "UTC", 1);
  tzset();
  setenv("LC_ALL", "en_US.UTF-8", 1);
  v8::V8::InitializeICU();
  platform_ = v8::platform::NewDefaultPlatform(1);
  v8::V8::InitializePlatform(platform_.get());
  v8::V8::Initialize();
}

V8Platform::~V8Platform() {
  v8::V8::Dispose();
  v8::V8::DisposePlatform();
}

}  // namespace flux::runtime

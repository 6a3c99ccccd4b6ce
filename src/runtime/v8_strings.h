// Small V8 string helpers shared by the runtime's bindings (internal to src/runtime/).
#pragma once

#include <v8.h>

#include <string>
#include <string_view>

namespace flux::runtime {

// A V8 string from UTF-8 bytes. V8 only fails here beyond its maximum string length, which
// no caller reaches (bodies are capped far below it): a crash there is a defect.
inline v8::Local<v8::String> v8String(v8::Isolate* isolate, std::string_view s) {
  return v8::String::NewFromUtf8(isolate, s.data(), v8::NewStringType::kNormal,
                                 static_cast<int>(s.size()))
      .ToLocalChecked();
}

}  // namespace flux::runtime

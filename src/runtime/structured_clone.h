// structuredClone() on V8's ValueSerializer. In a file of its own because subclassing V8's
// delegates needs -fno-rtti (libnode is built without RTTI), and nothing else may share that.
#pragma once

#include <v8.h>

namespace flux::runtime {

// The clone of `value`, or empty with a DataCloneError pending on the isolate.
v8::MaybeLocal<v8::Value> structuredClone(v8::Local<v8::Context> context,
                                          v8::Local<v8::Value> value);

}  // namespace flux::runtime

#include "runtime/structured_clone.h"

#include <cstdlib>

namespace flux::runtime {

namespace {

class CloneDelegate final : public v8::ValueSerializer::Delegate,
                            public v8::ValueDeserializer::Delegate {
 public:
  explicit CloneDelegate(v8::Isolate* isolate) : isolate_(isolate) {}
  void ThrowDataCloneError(v8::Local<v8::String> message) override {
    isolate_->ThrowException(v8::Exception::Error(message));
  }

 private:
  v8::Isolate* isolate_;
};

}  // namespace

v8::MaybeLocal<v8::Value> structuredClone(v8::Local<v8::Context> context,
                                          v8::Local<v8::Value> value) {
  v8::Isolate* isolate = context->GetIsolate();
  CloneDelegate delegate(isolate);
  v8::ValueSerializer serializer(isolate, &delegate);
  serializer.WriteHeader();
  if (serializer.WriteValue(context, value).IsNothing()) return {};
  std::pair<uint8_t*, size_t> buffer = serializer.Release();
  v8::ValueDeserializer deserializer(isolate, buffer.first, buffer.second, &delegate);
  v8::MaybeLocal<v8::Value> copy;
  if (deserializer.ReadHeader(context).FromMaybe(false)) copy = deserializer.ReadValue(context);
  free(buffer.first);
  return copy;
}

}  // namespace flux::runtime

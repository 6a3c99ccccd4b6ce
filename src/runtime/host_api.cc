// The native functions behind the runtime's JS glue (js/glue.js): the only way JS reaches the
// host. Each takes plain JS values and the calling context's FunctionContext.
#include <v8.h>

#include <algorithm>
#include <boost/asio/steady_timer.hpp>

#include "base/ids.h"
#include "base/json.h"
#include "runtime/function_context.h"
#include "runtime/structured_clone.h"
#include "runtime/v8_strings.h"

namespace flux::runtime {

namespace {

void throwTypeError(v8::Isolate* isolate, std::string_view message) {
  isolate->ThrowException(v8::Exception::TypeError(v8String(isolate, message)));
}

bool isValidUtf8(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > n) return false;
    uint32_t cp = c & (0xff >> (len + 1));
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += len;
  }
  return true;
}

// Bytes of an ArrayBuffer or any ArrayBufferView; false if the value is neither.
bool bytesOf(v8::Local<v8::Value> value, const uint8_t*& data, size_t& size) {
  if (value->IsArrayBufferView()) {
    auto view = value.As<v8::ArrayBufferView>();
    data = static_cast<const uint8_t*>(view->Buffer()->Data()) + view->ByteOffset();
    size = view->ByteLength();
    return true;
  }
  if (value->IsArrayBuffer()) {
    auto buffer = value.As<v8::ArrayBuffer>();
    data = static_cast<const uint8_t*>(buffer->Data());
    size = buffer->ByteLength();
    return true;
  }
  return false;
}

// An error's message (or the value itself, for a thrown non-error).
std::string errorMessage(v8::Local<v8::Context> context, v8::Local<v8::Value> error) {
  v8::Isolate* isolate = context->GetIsolate();
  if (error->IsObject()) {
    v8::Local<v8::Value> message;
    if (error.As<v8::Object>()->Get(context, v8String(isolate, "message")).ToLocal(&message) &&
        !message->IsUndefined()) {
      return IsolateWorker::Host::toUtf8(isolate, message);
    }
  }
  return IsolateWorker::Host::toUtf8(isolate, error);
}

v8::Local<v8::Private> spanKey(v8::Isolate* isolate) {
  return v8::Private::ForApi(isolate, v8String(isolate, "flux.span"));
}

}  // namespace

void tagErrorSpan(v8::Local<v8::Context> context, v8::Local<v8::Value> error, uint32_t span_id) {
  if (!error->IsObject() || span_id == 0) return;
  auto object = error.As<v8::Object>();
  v8::Local<v8::Private> key = spanKey(context->GetIsolate());
  if (object->HasPrivate(context, key).FromMaybe(true)) return;
  discard(object->SetPrivate(context, key,
                             v8::Integer::NewFromUnsigned(context->GetIsolate(), span_id)));
}

uint32_t errorSpan(v8::Local<v8::Context> context, v8::Local<v8::Value> error) {
  if (!error->IsObject()) return 0;
  v8::Local<v8::Value> value;
  if (!error.As<v8::Object>()
           ->GetPrivate(context, spanKey(context->GetIsolate()))
           .ToLocal(&value) ||
      !value->IsUint32()) {
    return 0;
  }
  return value.As<v8::Uint32>()->Value();
}

std::string IsolateWorker::Host::toUtf8(v8::Isolate* isolate, v8::Local<v8::Value> value) {
  v8::String::Utf8Value utf8(isolate, value);
  return *utf8 ? std::string(*utf8, utf8.length()) : std::string("<unprintable value>");
}

v8::Local<v8::Object> IsolateWorker::Host::makeHostObject(v8::Isolate* isolate,
                                                          IsolateWorker& worker) {
  v8::Local<v8::Context> context = isolate->GetCurrentContext();
  v8::Local<v8::Object> host = v8::Object::New(isolate);
  v8::Local<v8::External> data = v8::External::New(isolate, &worker);
  auto define = [&](const char* name, v8::FunctionCallback callback) {
    auto fn = v8::Function::New(context, callback, data).ToLocalChecked();
    discard(host->Set(context, v8String(isolate, name), fn));
  };

  // log(level, text): console.* and ctx.log. The line goes to the request whose JS runs now
  // (also from its timers), on the innermost ctx.span block it was written in.
  define("log", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
    IsolateWorker& w = *static_cast<IsolateWorker*>(info.Data().As<v8::External>()->Value());
    v8::Isolate* iso = info.GetIsolate();
    v8::Local<v8::Context> context = iso->GetCurrentContext();
    FunctionContext& fc = FunctionContext::from(context);
    std::string level = toUtf8(iso, info[0]);
    std::string line = (level == "log" ? "" : level + ": ") + toUtf8(iso, info[1]);
    size_t span = 0;
    if (PendingRequest* request = w.currentRequest(context, &span)) {
      request->logs.push_back(line);
      if (span == 0) {
        request->function_logs.push_back(line);
      } else {
        request->spans[span].logs.push_back(line);
      }
    }
    w.log_.write("[" + fc.bundle->name + "] " + line);
  });

  // The nondeterministic sources: each result goes to the running request's IO journal.
  define("now", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
    IsolateWorker& w = *static_cast<IsolateWorker*>(info.Data().As<v8::External>()->Value());
    double now = w.clock_.nowMillis();
    if (PendingRequest* request = w.currentRequest(info.GetIsolate()->GetCurrentContext())) {
      request->journal.now(now);
    }
    info.GetReturnValue().Set(now);
  });

  define("random", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
    IsolateWorker& w = *static_cast<IsolateWorker*>(info.Data().As<v8::External>()->Value());
    double value = w.random_.nextDouble();
    if (PendingRequest* request = w.currentRequest(info.GetIsolate()->GetCurrentContext())) {
      request->journal.random(value);
    }
    info.GetReturnValue().Set(value);
  });

  // randomFill(view): crypto.getRandomValues.
  define("randomFill", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
    IsolateWorker& w = *static_cast<IsolateWorker*>(info.Data().As<v8::External>()->Value());
    const uint8_t* data;
    size_t size;
    if (!bytesOf(info[0], data, size))
      return throwTypeError(info.GetIsolate(), "expected a typed array");
    auto* out = const_cast<uint8_t*>(data);
    for (size_t i = 0; i < size; i += 8) {
      uint64_t r = w.random_.next64();
      for (size_t k = 0; k < 8 && i + k < size; ++k)
        out[i + k] = static_cast<uint8_t>(r >> (8 * k));
    }
    if (PendingRequest* request = w.currentRequest(info.GetIsolate()->GetCurrentContext())) {
      request->journal.randomValues(data, size);
    }
  });

  // randomUUID() -> a version 4 UUID string: crypto.randomUUID.
  define("randomUUID", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
    IsolateWorker& w = *static_cast<IsolateWorker*>(info.Data().As<v8::External>()->Value());
    uint8_t bytes[16];
    for (size_t i = 0; i < 16; i += 8) {
      uint64_t r = w.random_.next64();
      for (size_t k = 0; k < 8; ++k) bytes[i + k] = static_cast<uint8_t>(r >> (8 * k));
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    static constexpr char kHex[] = "0123456789abcdef";
    char text[36];
    for (size_t i = 0, o = 0; i < 16; ++i) {
      if (i == 4 || i == 6 || i == 8 || i == 10) text[o++] = '-';
      text[o++] = kHex[bytes[i] >> 4];
      text[o++] = kHex[bytes[i] & 15];
    }
    std::string_view uuid(text, sizeof text);
    if (PendingRequest* request = w.currentRequest(info.GetIsolate()->GetCurrentContext())) {
      request->journal.uuid(uuid);
    }
    info.GetReturnValue().Set(v8String(info.GetIsolate(), uuid));
  });

  // spanEnter(slot, name) -> index: opens a ctx.span block under the innermost one running
  // and makes it the span context of the callback about to run (0: no span, over the cap).
  define("spanEnter", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
    IsolateWorker& w = *static_cast<IsolateWorker*>(info.Data().As<v8::External>()->Value());
    v8::Isolate* iso = info.GetIsolate();
    v8::Local<v8::Context> context = iso->GetCurrentContext();
    uint32_t slot = info[0]->Uint32Value(context).FromMaybe(0);
    auto it = w.pending_.find(slot);
    if (it == w.pending_.end()) return info.GetReturnValue().Set(0);
    PendingRequest& request = *it->second;
    size_t parent = w.currentSpan(context, slot);
    size_t index = request.openSpan(toUtf8(iso, info[1]), nullptr, w.clock_.steadyNow(), parent,
                                    w.callSite(FunctionContext::from(context)));
    if (index == 0) return info.GetReturnValue().Set(0);
    v8::Local<v8::Value> saved = context->GetContinuationPreservedEmbedderData();
    request.open_user_spans.emplace_back(
        index, saved->IsNumber() ? saved.As<v8::Number>()->Value() : -1.0);
    context->SetContinuationPreservedEmbedderData(
        v8::Number::New(iso, encodeSpanContext(slot, index)));
    info.GetReturnValue().Set(static_cast<uint32_t>(index));
  });

  // spanLeave(slot, index): the block's callback returned (its promise may still run): the
  // caller's span context again.
  define("spanLeave", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
    IsolateWorker& w = *static_cast<IsolateWorker*>(info.Data().As<v8::External>()->Value());
    v8::Isolate* iso = info.GetIsolate();
    v8::Local<v8::Context> context = iso->GetCurrentContext();
    uint32_t slot = info[0]->Uint32Value(context).FromMaybe(0);
    size_t index = info[1]->Uint32Value(context).FromMaybe(0);
    auto it = w.pending_.find(slot);
    if (it == w.pending_.end() || index == 0) return;
    for (const auto& [open, saved] : it->second->open_user_spans) {
      if (open != index) continue;
      context->SetContinuationPreservedEmbedderData(
          saved >= 0 ? v8::Number::New(iso, saved).As<v8::Value>()
                     : v8::Undefined(iso).As<v8::Value>());
      return;
    }
  });

  // spanEnd(slot, index, failed, error): the block's callback settled; when it failed (threw
  // or rejected), the span records the error and the error remembers the span, unless a span
  // inside already claimed it.
  define("spanEnd", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
    IsolateWorker& w = *static_cast<IsolateWorker*>(info.Data().As<v8::External>()->Value());
    v8::Isolate* iso = info.GetIsolate();
    v8::Local<v8::Context> context = iso->GetCurrentContext();
    uint32_t slot = info[0]->Uint32Value(context).FromMaybe(0);
    size_t index = info[1]->Uint32Value(context).FromMaybe(0);
    auto it = w.pending_.find(slot);
    if (it == w.pending_.end() || index == 0 || index >= it->second->spans.size()) return;
    PendingRequest& request = *it->second;
    auto& open = request.open_user_spans;
    auto entry =
        std::find_if(open.begin(), open.end(), [index](const auto& e) { return e.first == index; });
    if (entry == open.end()) return;
    open.erase(entry);
    record::Span& span = request.spans[index];
    span.duration_us = request.sinceStartUs(w.clock_.steadyNow()) - span.start_us;
    if (info[2]->IsTrue()) {
      span.status = record::SpanStatus::kError;
      span.error = errorMessage(context, info[3]);
      tagErrorSpan(context, info[3], span.id);
    }
  });

  // utf8Encode(string) -> Uint8Array
  define("utf8Encode", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
    v8::Isolate* iso = info.GetIsolate();
    v8::Local<v8::String> s;
    if (!info[0]->ToString(iso->GetCurrentContext()).ToLocal(&s)) return;
    int length = s->Utf8Length(iso);
    auto store = v8::ArrayBuffer::NewBackingStore(iso, static_cast<size_t>(length));
    s->WriteUtf8(iso, static_cast<char*>(store->Data()), length, nullptr,
                 v8::String::NO_NULL_TERMINATION | v8::String::REPLACE_INVALID_UTF8);
    auto buffer = v8::ArrayBuffer::New(iso, std::move(store));
    info.GetReturnValue().Set(v8::Uint8Array::New(buffer, 0, static_cast<size_t>(length)));
  });

  // utf8Decode(bytes, fatal) -> string
  define("utf8Decode", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
    v8::Isolate* iso = info.GetIsolate();
    const uint8_t* data;
    size_t size;
    if (!bytesOf(info[0], data, size))
      return throwTypeError(iso, "expected an ArrayBuffer or a view");
    if (info[1]->IsTrue() && !isValidUtf8(data, size)) {
      return throwTypeError(iso, "The encoded data was not valid utf-8");
    }
    if (size > static_cast<size_t>(v8::String::kMaxLength))
      return throwTypeError(iso, "data too long");
    v8::Local<v8::String> s;
    if (v8::String::NewFromUtf8(iso, reinterpret_cast<const char*>(data),
                                v8::NewStringType::kNormal, static_cast<int>(size))
            .ToLocal(&s)) {
      info.GetReturnValue().Set(s);
    }
  });

  // structuredClone(value) via V8's serializer (the HTML algorithm's data model).
  define("structuredClone", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
    v8::Isolate* iso = info.GetIsolate();
    v8::Local<v8::Value> copy;
    if (structuredClone(iso->GetCurrentContext(), info[0]).ToLocal(&copy)) {
      info.GetReturnValue().Set(copy);
    }
  });

  // setTimer(id, ms, repeat): a timer on this worker's loop that calls the glue's fireTimer(id).
  define("setTimer", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
    IsolateWorker& w = *static_cast<IsolateWorker*>(info.Data().As<v8::External>()->Value());
    v8::Isolate* iso = info.GetIsolate();
    FunctionContext& fc = FunctionContext::from(iso->GetCurrentContext());
    uint32_t id = info[0]->Uint32Value(iso->GetCurrentContext()).FromMaybe(0);
    double ms = info[1]->NumberValue(iso->GetCurrentContext()).FromMaybe(0);
    if (!(ms >= 0)) ms = 0;
    auto delay = std::chrono::milliseconds(static_cast<int64_t>(std::min(ms, 2147483647.0)));
    FunctionContext::Timer timer;
    timer.timer = std::make_unique<boost::asio::steady_timer>(w.loop_, delay);
    if (info[2]->IsTrue()) timer.interval = std::max(delay, std::chrono::milliseconds(1));
    v8::Local<v8::Value> span_context =
        iso->GetCurrentContext()->GetContinuationPreservedEmbedderData();
    if (span_context->IsNumber()) timer.span_context = span_context.As<v8::Number>()->Value();
    timer.timer->async_wait([&w, serial = fc.serial, id](const boost::system::error_code& ec) {
      if (!ec) w.fireTimer(serial, id);
    });
    fc.timers[id] = std::move(timer);
  });

  define("clearTimer", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
    v8::Isolate* iso = info.GetIsolate();
    FunctionContext& fc = FunctionContext::from(iso->GetCurrentContext());
    uint32_t id = info[0]->Uint32Value(iso->GetCurrentContext()).FromMaybe(0);
    fc.timers.erase(id);  // destroying the timer cancels its wait
  });

  // complete(slot, status, headers [k, v, ...], body: string | Uint8Array | null)
  define("complete", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
    IsolateWorker& w = *static_cast<IsolateWorker*>(info.Data().As<v8::External>()->Value());
    v8::Isolate* iso = info.GetIsolate();
    v8::Local<v8::Context> ctx = iso->GetCurrentContext();
    uint32_t slot = info[0]->Uint32Value(ctx).FromMaybe(0);
    InvocationResult result;
    int status = info[1]->Int32Value(ctx).FromMaybe(200);
    result.response.status = (status >= 200 && status <= 599) ? status : 500;
    if (info[2]->IsArray()) {
      auto headers = info[2].As<v8::Array>();
      for (uint32_t i = 0; i + 1 < headers->Length(); i += 2) {
        result.response.headers.push_back({toUtf8(iso, headers->Get(ctx, i).ToLocalChecked()),
                                           toUtf8(iso, headers->Get(ctx, i + 1).ToLocalChecked())});
      }
    }
    const uint8_t* data;
    size_t size;
    if (info[3]->IsString()) {
      auto s = info[3].As<v8::String>();
      int length = s->Utf8Length(iso);
      result.response.body.resize(static_cast<size_t>(length));
      s->WriteUtf8(iso, result.response.body.data(), length, nullptr,
                   v8::String::NO_NULL_TERMINATION | v8::String::REPLACE_INVALID_UTF8);
    } else if (bytesOf(info[3], data, size)) {
      result.response.body.assign(reinterpret_cast<const char*>(data), size);
    }
    w.finish(slot, std::move(result));
  });

  // fail(slot, error, status): the handler threw or rejected. status is 500 unless the glue
  // knows better (400 for a body that is not JSON).
  define("fail", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
    IsolateWorker& w = *static_cast<IsolateWorker*>(info.Data().As<v8::External>()->Value());
    v8::Isolate* iso = info.GetIsolate();
    v8::Local<v8::Context> ctx = iso->GetCurrentContext();
    FunctionContext& fc = FunctionContext::from(ctx);
    uint32_t slot = info[0]->Uint32Value(ctx).FromMaybe(0);
    int status = info[2]->Int32Value(ctx).FromMaybe(500);
    if (status < 400 || status > 599) status = 500;
    std::string message;
    std::string stack;
    v8::Local<v8::Value> error = info[1];
    if (error->IsNativeError() || error->IsObject()) {
      auto object = error.As<v8::Object>();
      v8::Local<v8::Value> v;
      if (object->Get(ctx, v8String(iso, "message")).ToLocal(&v) && !v->IsUndefined()) {
        message = toUtf8(iso, v);
      } else {
        message = toUtf8(iso, error);
      }
      if (object->Get(ctx, v8String(iso, "stack")).ToLocal(&v) && v->IsString()) {
        stack = toUtf8(iso, v);
      }
    } else {
      message = toUtf8(iso, error);
    }
    auto it = w.pending_.find(slot);
    if (it == w.pending_.end()) return;
    Error e = w.userError(fc, stack, message);
    // The span it happened in: the one that tagged it (a failing fetch or db call, a ctx.span
    // block it escaped from), else the function's.
    PendingRequest& request = *it->second;
    uint32_t span = errorSpan(ctx, error);
    if (span < request.spans.front().id ||
        span - request.spans.front().id >= request.spans.size()) {
      span = request.spans.front().id;
    }
    e.fields.emplace(e.fields.begin(), "span", std::to_string(span));
    // An error made by the host (a fetch's TypeError, a TimeoutError from a timer) has no
    // frame of the user's: its location is the call site of the span it happened in.
    bool located = std::any_of(e.fields.begin(), e.fields.end(),
                               [](const auto& field) { return field.first == "location"; });
    const std::string& span_location = request.spans[span - request.spans.front().id].location;
    if (!located && !span_location.empty()) {
      e.fields.emplace(e.fields.begin(), "location", span_location);
    }
    std::string id = it->second->id.toString();
    w.log_.write("[" + fc.bundle->name + "] req:" + it->second->id.shortForm() + " " +
                 e.fields.back().second);
    InvocationResult result;
    result.response = net::HttpResponse::json(status, jsonError(message, id));
    result.error = std::move(e);
    w.finish(slot, std::move(result));
  });

  installDatabaseBindings(isolate, context, host, worker);
  installFetchBindings(isolate, context, host, worker);
  return host;
}

}  // namespace flux::runtime

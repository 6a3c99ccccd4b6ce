// Internal to the runtime: the per-version V8 state of one function on one worker, and the
// host bindings that the JS glue calls. Not included outside src/runtime/.
#pragma once

#include <v8.h>

#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <optional>
#include <unordered_map>

#include "base/error.h"
#include "data/request_transaction.h"
#include "record/execution_record.h"
#include "runtime/function_bundle.h"
#include "runtime/isolate_worker.h"

namespace flux::runtime {

// Embedder-data index of the FunctionContext* in every context we create.
inline constexpr int kFunctionContextSlot = 1;

struct FunctionContext {
  uint64_t serial = 0;
  std::shared_ptr<const FunctionBundle> bundle;
  IsolateWorker* worker = nullptr;
  v8::Global<v8::Context> context;
  std::unique_ptr<v8::MicrotaskQueue> microtasks;
  v8::Global<v8::Function>
      dispatch;  // glue: (slot, handler, method, url, headers, body, id, params)
  v8::Global<v8::Function> fire_timer;           // glue: (timer id)
  v8::Global<v8::Value> define_function;         // what `import { defineFunction }` resolves to
  v8::Global<v8::Function> make_database_error;  // glue: (message, code, status) -> DatabaseError
  v8::Global<v8::Value> handler;                 // the module's default export
  std::optional<Error> load_error;               // the module failed to load: every request gets it
  struct Timer {
    std::unique_ptr<boost::asio::steady_timer> timer;
    std::chrono::milliseconds interval{0};  // non-zero for setInterval
  };
  std::unordered_map<uint32_t, Timer> timers;
  int pending = 0;       // requests in flight on this context
  bool retired = false;  // a newer version (or a rebuild) replaced it

  static FunctionContext& from(v8::Local<v8::Context> context) {
    return *static_cast<FunctionContext*>(
        context->GetAlignedPointerFromEmbedderData(kFunctionContextSlot));
  }
};

// A request whose handler has not answered yet, by slot number.
struct IsolateWorker::PendingRequest {
  uint64_t context_serial = 0;
  RequestId id;
  InvocationDone done;
  std::chrono::steady_clock::time_point start;
  // The record's spans for this request: [0] is the function's; db calls follow.
  std::vector<record::Span> spans;
  std::vector<std::string> logs;

  int64_t sinceStartUs(std::chrono::steady_clock::time_point now) const {
    return std::chrono::duration_cast<std::chrono::microseconds>(now - start).count();
  }
  // Opens a child of the function span; returns its index in `spans`.
  size_t openSpan(std::string name, nlohmann::json input,
                  std::chrono::steady_clock::time_point now) {
    record::Span span;
    span.id = spans.front().id + static_cast<uint32_t>(spans.size());
    span.parent = spans.front().id;
    span.name = std::move(name);
    span.start_us = sinceStartUs(now);
    span.input = std::move(input);
    spans.push_back(std::move(span));
    return spans.size() - 1;
  }
  std::unique_ptr<boost::asio::steady_timer> deadline;    // only when the handler awaits
  std::unique_ptr<data::RequestTransaction> transaction;  // from the first ctx.db call
};

// Adds the ctx.db natives (db_binding.cc) to the host object.
void installDatabaseBindings(v8::Isolate* isolate, v8::Local<v8::Context> context,
                             v8::Local<v8::Object> host, IsolateWorker& worker);

// V8 marks most results "must use"; where failure only means a pending exception that the
// caller's TryCatch reports, the result is discarded explicitly.
template <typename T>
inline void discard(T&&) {}

// What host_api.cc exposes to the worker.
struct IsolateWorker::Host {
  // Builds the `host` object of native functions handed to the glue's install().
  static v8::Local<v8::Object> makeHostObject(v8::Isolate* isolate, IsolateWorker& worker);
  // JS value -> readable string (for errors that are not Error objects).
  static std::string toUtf8(v8::Isolate* isolate, v8::Local<v8::Value> value);
};

}  // namespace flux::runtime

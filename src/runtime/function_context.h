// Internal to the runtime: the per-version V8 state of one function on one worker, and the
// host bindings that the JS glue calls. Not included outside src/runtime/.
#pragma once

#include <v8.h>

#include <boost/asio/steady_timer.hpp>
#include <cmath>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "base/error.h"
#include "data/request_transaction.h"
#include "record/execution_record.h"
#include "runtime/function_bundle.h"
#include "runtime/io_journal.h"
#include "runtime/isolate_worker.h"
#include "runtime/span_shape.h"

namespace flux::runtime {

// Embedder-data index of the FunctionContext* in every context we create.
inline constexpr int kFunctionContextSlot = 1;

// The span context: which request and which of its spans the running JS belongs to, kept in
// V8's continuation-preserved embedder data (a value V8 saves with every promise reaction and
// restores when the reaction runs, so it follows `await` like AsyncLocalStorage). It is the
// number slot * 2^20 + span index (0: the function span), or undefined outside a request.
// dispatch sets it to the function span, ctx.span to its span while its callback starts,
// timers restore the one they were created under; every other host entry clears it.
inline constexpr double kSpanIndexRange = 1048576.0;  // 2^20
// Child spans recorded per request; later ones are counted (function span output), not kept.
inline constexpr size_t kMaxSpansPerRequest = 10'000;
static_assert(kMaxSpansPerRequest < 1048576);

inline double encodeSpanContext(uint32_t slot, size_t span_index) {
  return static_cast<double>(slot) * kSpanIndexRange + static_cast<double>(span_index);
}
// False for undefined (or anything that is not a span context).
inline bool decodeSpanContext(v8::Local<v8::Value> value, uint32_t& slot, size_t& span_index) {
  if (!value->IsNumber()) return false;
  double number = value.As<v8::Number>()->Value();
  if (!(number >= 0) || number >= 4294967296.0 * kSpanIndexRange) return false;
  double high = std::floor(number / kSpanIndexRange);
  slot = static_cast<uint32_t>(high);
  span_index = static_cast<size_t>(number - high * kSpanIndexRange);
  return true;
}

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
  int script_id = 0;                // the module's script id: its frames are the user's call sites
  std::optional<Error> load_error;  // the module failed to load: every request gets it
  struct Timer {
    std::unique_ptr<boost::asio::steady_timer> timer;
    std::chrono::milliseconds interval{0};  // non-zero for setInterval
    double span_context = -1;               // the span context it was created under; -1: none
  };
  std::unordered_map<uint32_t, Timer> timers;
  SpanShape shape;       // of the last successful execution (span_shape.h)
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
  // The record's spans for this request: [0] is the function's; its descendants (db calls,
  // fetches, ctx.span blocks) follow in the order they opened, span i having id
  // spans[0].id + i.
  std::vector<record::Span> spans;
  std::vector<std::string> logs;           // every line, in order (the record's logs)
  std::vector<std::string> function_logs;  // the lines written outside any ctx.span
  IoJournal journal;
  size_t dropped_spans = 0;  // over kMaxSpansPerRequest
  // ctx.span blocks whose callback has not settled: span index -> the span context to
  // restore when its callback returns (-1: undefined).
  std::vector<std::pair<size_t, double>> open_user_spans;
  std::vector<uint64_t> fetches;  // fetch ids in flight (IsolateWorker::fetches_)

  int64_t sinceStartUs(std::chrono::steady_clock::time_point now) const {
    return std::chrono::duration_cast<std::chrono::microseconds>(now - start).count();
  }
  // Opens a descendant of the function span under spans[parent_index]; returns its index in
  // `spans`, or 0 (no span) once kMaxSpansPerRequest are open.
  size_t openSpan(std::string name, nlohmann::json input, std::chrono::steady_clock::time_point now,
                  size_t parent_index = 0, std::string location = {}) {
    if (spans.size() > kMaxSpansPerRequest) {
      ++dropped_spans;
      return 0;
    }
    record::Span span;
    span.id = spans.front().id + static_cast<uint32_t>(spans.size());
    span.parent = spans[parent_index < spans.size() ? parent_index : 0].id;
    span.name = std::move(name);
    span.start_us = sinceStartUs(now);
    span.input = std::move(input);
    span.location = std::move(location);
    spans.push_back(std::move(span));
    return spans.size() - 1;
  }
  // Whether spans[index] is a ctx.span block that is still running.
  bool isOpenUserSpan(size_t index) const {
    for (const auto& [open, saved] : open_user_spans) {
      if (open == index) return true;
    }
    return false;
  }
  std::unique_ptr<boost::asio::steady_timer> deadline;    // only when the handler awaits
  std::unique_ptr<data::RequestTransaction> transaction;  // from the first ctx.db call
};

// A fetch in flight, by id (IsolateWorker::fetches_).
struct IsolateWorker::ActiveFetch {
  uint32_t slot = 0;
  uint64_t context_serial = 0;
  size_t span = 0;        // index in the request's spans; 0: none
  uint64_t exchange = 0;  // the net::FetchClient's id
  v8::Global<v8::Promise::Resolver> resolver;
};

// Adds the ctx.db natives (db_binding.cc) to the host object.
void installDatabaseBindings(v8::Isolate* isolate, v8::Local<v8::Context> context,
                             v8::Local<v8::Object> host, IsolateWorker& worker);
// Adds the fetch natives (fetch_binding.cc) to the host object.
void installFetchBindings(v8::Isolate* isolate, v8::Local<v8::Context> context,
                          v8::Local<v8::Object> host, IsolateWorker& worker);

// The span an error happened in, kept on the JS error object (a private property) from where
// it was thrown or rejected (a failing fetch or db call, a ctx.span whose callback threw) to
// where the request fails with it. tagErrorSpan keeps the first (innermost) tag.
void tagErrorSpan(v8::Local<v8::Context> context, v8::Local<v8::Value> error, uint32_t span_id);
uint32_t errorSpan(v8::Local<v8::Context> context, v8::Local<v8::Value> error);

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

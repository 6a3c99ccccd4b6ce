// IsolateWorker: one V8 isolate on one worker thread, with a warm context per installed
// function version, reused across requests.
//
// Design:
// - Created, used and destroyed on its worker thread; the isolate stays entered for its life.
// - Each FunctionBundle version gets its own context (with its own microtask queue) holding
//   the runtime's JS glue and the function's module. A reload installs a new version; requests
//   already running finish on the old context, which is dropped when its last one is done.
// - A request is a "slot": the JS glue calls back complete/fail with its number. Host events
//   (timers) re-enter the context and run its microtasks.
// - ctx.db work runs in the request's RequestTransaction (data/), committed or rolled back
//   before the response is handed back.
// - fetch() runs on the worker's net::FetchClient, on this loop. A request's fetches end with
//   it: whatever is still in flight when it answers is cancelled (its span says so).
// - Spans: the function span, then one per db call, fetch and ctx.span block, each with the
//   TypeScript call site (callSite()) and its parent: the innermost ctx.span block the call
//   was made in, followed across `await` through V8's continuation-preserved embedder data
//   (function_context.h). Failed executions get the spans they never reached as skipped
//   (span_shape.h). An uncaught error names the span it happened in (the "span" field of
//   InvocationResult::error; that span carries the error too).
// - The IO journal (io_journal.h): Date.now/new Date, Math.random, crypto.randomUUID /
//   getRandomValues, fetch responses and db results, in call order, per request.
// - Limits: a watchdog thread terminates JS that runs longer than the function's timeout (CPU),
//   a wall-clock timer answers 504 for a request that waits longer than that, and the heap
//   limit answers 500. In all three cases the context is rebuilt and the isolate keeps serving.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/error.h"
#include "base/ids.h"
#include "base/log.h"
#include "data/catalog.h"
#include "data/pg_pool.h"
#include "net/fetch_client.h"
#include "net/http_message.h"
#include "record/execution_record.h"
#include "runtime/function_bundle.h"
#include "runtime/io_journal.h"

namespace v8 {
class Context;
class Isolate;
template <class T>
class Local;
}  // namespace v8

namespace flux::runtime {

class V8Platform;
class Watchdog;
struct FunctionContext;

struct RuntimeOptions {
  size_t heap_limit_bytes = 256u * 1024 * 1024;          // per isolate (worker)
  std::vector<std::pair<std::string, std::string>> env;  // ctx.env
  // The worker's database pool; without one, ctx.db rejects with a clear error.
  std::optional<data::PoolOptions> database;
  // fetch(): body limit, redirects, extra trusted certificates. When fetch.extra_ca_file is
  // empty, the FLUX_FETCH_EXTRA_CA_FILE environment variable (a PEM file; meant for tests
  // against local TLS servers) is used, if set.
  net::FetchClientOptions fetch;
};

struct Invocation {
  net::HttpRequest request;
  RequestId id;
  std::vector<std::pair<std::string, std::string>> params;  // route parameters
  std::chrono::steady_clock::time_point start;              // when the gateway took the request
  uint32_t parent_span = 0;                                 // the gateway's span id in the record
};

struct InvocationResult {
  net::HttpResponse response;
  // Set when the function failed (threw, timed out, ran out of heap): what the server logs.
  // Fields: "location" (TypeScript file:line:column), "stack", and "span" (the id of the
  // span the error happened in) when known.
  std::optional<Error> error;
  // For the execution record: the function's span and its descendants (db calls, fetches,
  // ctx.span blocks, then the skipped ones), in start order, and the log lines the request
  // wrote.
  std::vector<record::Span> spans;
  std::vector<std::string> logs;
  // The IO journal, raw: ExecutionRecord::journal is journal.toJson(), to be built after the
  // response went out (empty() costs nothing to check).
  IoJournal journal;
};

using InvocationDone = std::move_only_function<void(InvocationResult)>;

class IsolateWorker {
 public:
  IsolateWorker(boost::asio::io_context& loop, RuntimeOptions options, LogSink& log, Clock& clock,
                Random& random);
  ~IsolateWorker();
  IsolateWorker(const IsolateWorker&) = delete;
  IsolateWorker& operator=(const IsolateWorker&) = delete;

  // Builds the bundle's context now, so the first request finds it warm. Later versions of
  // the same function retire earlier ones.
  void install(std::shared_ptr<const FunctionBundle> bundle);
  // Drops a function that no longer exists (its in-flight requests still finish).
  void uninstall(const std::string& name);

  // Runs the function on this request. `done` is called exactly once, on this thread.
  void invoke(const std::shared_ptr<const FunctionBundle>& bundle, Invocation invocation,
              InvocationDone done);

  // Called by the host bindings (host_api.cc); not for other users.
  struct Host;
  friend struct Host;
  struct Database;
  friend struct Database;
  struct Fetch;
  friend struct Fetch;

 private:
  struct PendingRequest;
  struct ActiveFetch;

  FunctionContext& contextFor(const std::shared_ptr<const FunctionBundle>& bundle);
  std::unique_ptr<FunctionContext> createContext(std::shared_ptr<const FunctionBundle> bundle);
  // Enters the context, runs `body`, then its microtasks, under the CPU watchdog. Handles
  // termination (timeout, heap) by failing the context's requests and rebuilding it.
  void runInContext(FunctionContext& fc, const std::function<void()>& body);
  void finish(uint32_t slot, InvocationResult result);
  // Ends the function's span and moves the request's spans and logs into the result.
  void closeFunctionSpan(PendingRequest& pending, InvocationResult& result);
  // The request whose JS is running now, from the span context (else the request the host
  // entered JS for), or null; `span_index` gets the innermost open ctx.span block of it (0:
  // the function span).
  PendingRequest* currentRequest(v8::Local<v8::Context> context, size_t* span_index = nullptr,
                                 uint32_t* slot = nullptr);
  // The innermost open ctx.span block of request `slot` that the running JS is in (0: none).
  size_t currentSpan(v8::Local<v8::Context> context, uint32_t slot);
  // The user's TypeScript position ("functions/x/index.ts:12:5") of the innermost frame of
  // fc's module on the current JS stack; empty when there is none.
  std::string callSite(const FunctionContext& fc);
  // Ends what a finishing request leaves running: fetches (cancelled), ctx.span blocks.
  void endRunning(PendingRequest& pending, const InvocationResult& result);
  // Skipped spans on failure, the remembered shape on success (span_shape.h).
  void applySpanShape(FunctionContext& fc, InvocationResult& result);
  net::FetchClient& fetchClient();
  void failContext(FunctionContext& fc, int status, const Error& error);
  void dropIfIdle(FunctionContext& fc);
  void fireTimer(uint64_t context_serial, uint32_t timer_id);
  Error userError(FunctionContext& fc, const std::string& stack, const std::string& message);

  boost::asio::io_context& loop_;
  RuntimeOptions options_;
  LogSink& log_;
  Clock& clock_;
  Random& random_;
  std::unique_ptr<data::PgPool> database_;  // outlives every transaction (destroyed last)
  std::optional<data::Catalog> catalog_;    // user tables, loaded at the first insert/update/delete
  v8::Isolate* isolate_ = nullptr;
  std::unique_ptr<Watchdog> watchdog_;
  struct IsolateState;
  std::unique_ptr<IsolateState> state_;  // V8 handles kept across calls

  uint64_t next_context_serial_ = 1;
  // Contexts by serial; `current_` maps a function name to its newest context's serial.
  std::map<uint64_t, std::unique_ptr<FunctionContext>> contexts_;
  std::unordered_map<std::string, uint64_t> current_;
  uint32_t next_slot_ = 1;
  uint32_t current_slot_ = 0;  // the request whose JS runs now; 0 when unknown (timers)
  std::unordered_map<uint32_t, std::unique_ptr<PendingRequest>> pending_;
  std::unique_ptr<net::FetchClient> fetch_client_;  // made at the first fetch
  std::unordered_map<uint64_t, std::unique_ptr<ActiveFetch>> fetches_;
  uint64_t next_fetch_id_ = 1;
  bool heap_exceeded_ = false;
  std::pair<v8::Isolate*, bool*> heap_callback_data_{nullptr, nullptr};  // for V8's callback
};

}  // namespace flux::runtime

#include "runtime/isolate_worker.h"

#include <v8.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "base/json.h"
#include "runtime/function_context.h"
#include "runtime/v8_strings.h"

namespace flux::runtime {

extern const std::string_view kRuntimeGlueJs;

namespace {

using std::chrono::milliseconds;

std::string bundleResourceName(const FunctionBundle& bundle) {
  return "flux-bundle/" + bundle.name + ".js";
}

// Rewrites every "flux-bundle/<name>.js:L:C" in a V8 stack into the TypeScript position the
// source map gives; returns the first mapped position as "file:line:column" in `location`.
std::string mapStack(const FunctionBundle& bundle, const std::string& stack,
                     std::string& location) {
  std::string resource = bundleResourceName(bundle);
  std::string out;
  size_t pos = 0;
  for (;;) {
    size_t hit = stack.find(resource, pos);
    if (hit == std::string::npos) break;
    size_t p = hit + resource.size();
    int line = 0, column = 0;
    auto readNumber = [&stack, &p](int& value) {
      if (p >= stack.size() || stack[p] != ':') return false;
      size_t start = ++p;
      while (p < stack.size() && isdigit(static_cast<unsigned char>(stack[p]))) ++p;
      if (p == start) return false;
      value = std::stoi(stack.substr(start, p - start));
      return true;
    };
    out.append(stack, pos, hit - pos);
    if (readNumber(line) && readNumber(column)) {
      if (auto original = bundle.source_map.lookup(line, column)) {
        std::string mapped = original->source + ":" + std::to_string(original->line) + ":" +
                             std::to_string(original->column);
        if (location.empty()) location = mapped;
        out += mapped;
      } else {
        out.append(stack, hit, p - hit);
      }
    } else {
      out.append(stack, hit, p - hit);
    }
    pos = p;
  }
  out.append(stack, pos, std::string::npos);
  return out;
}

size_t onNearHeapLimit(void* data, size_t current_limit, size_t /*initial_limit*/);

}  // namespace

// Terminates JS that runs past its budget. Arming is one atomic store on the request path; the
// watchdog thread polls. States of deadline_: > 0 armed (steady ns), 0 idle, kTerminating /
// kTerminated while and after it calls TerminateExecution, so that disarm() can tell whether
// the termination it may race with belongs to the run it just finished.
class Watchdog {
 public:
  explicit Watchdog(v8::Isolate* isolate) : isolate_(isolate), thread_([this] { run(); }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }

  void arm(milliseconds budget) {
    deadline_.store(nowNs() + std::chrono::nanoseconds(budget).count(), std::memory_order_release);
  }

  // True when this run was terminated by the watchdog.
  bool disarm() {
    int64_t d = deadline_.load(std::memory_order_acquire);
    for (;;) {
      if (d == kTerminating) {
        std::this_thread::yield();
        d = deadline_.load(std::memory_order_acquire);
        continue;
      }
      if (deadline_.compare_exchange_weak(d, 0, std::memory_order_acq_rel)) break;
    }
    return d == kTerminated;
  }

 private:
  static constexpr int64_t kTerminating = -1;
  static constexpr int64_t kTerminated = -2;
  static constexpr milliseconds kPollInterval{5};

  static int64_t nowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  void run() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      wake_.wait_for(lock, kPollInterval);
      int64_t d = deadline_.load(std::memory_order_acquire);
      if (d > 0 && nowNs() > d && deadline_.compare_exchange_strong(d, kTerminating)) {
        isolate_->TerminateExecution();
        deadline_.store(kTerminated, std::memory_order_release);
      }
    }
  }

  v8::Isolate* isolate_;
  std::atomic<int64_t> deadline_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

struct IsolateWorker::IsolateState {
  std::unique_ptr<v8::ArrayBuffer::Allocator> allocator;
  v8::Global<v8::UnboundScript> glue;  // compiled once per isolate, bound to every context
};

namespace {

size_t onNearHeapLimit(void* data, size_t current_limit, size_t /*initial_limit*/) {
  auto* worker_flag = static_cast<std::pair<v8::Isolate*, bool*>*>(data);
  *worker_flag->second = true;
  worker_flag->first->TerminateExecution();
  // Room for the terminated script to unwind; the limit is restored once the context is gone.
  return current_limit + 64 * 1024 * 1024;
}

}  // namespace

IsolateWorker::IsolateWorker(boost::asio::io_context& loop, RuntimeOptions options, LogSink& log,
                             Clock& clock, Random& random)
    : loop_(loop),
      options_(std::move(options)),
      log_(log),
      clock_(clock),
      random_(random),
      state_(std::make_unique<IsolateState>()) {
  if (options_.database) database_ = std::make_unique<data::PgPool>(loop_, *options_.database);
  if (options_.fetch.extra_ca_file.empty()) {
    // Test-only: lets end-to-end tests fetch from a local TLS server with its own certificate.
    if (const char* file = std::getenv("FLUX_FETCH_EXTRA_CA_FILE")) {
      options_.fetch.extra_ca_file = file;
    }
  }
  state_->allocator.reset(v8::ArrayBuffer::Allocator::NewDefaultAllocator());
  v8::Isolate::CreateParams params;
  params.array_buffer_allocator = state_->allocator.get();
  params.constraints.ConfigureDefaultsFromHeapSize(0, options_.heap_limit_bytes);
  isolate_ = v8::Isolate::New(params);
  isolate_->Enter();  // this thread owns the isolate for its whole life
  heap_callback_data_ = {isolate_, &heap_exceeded_};
  isolate_->AddNearHeapLimitCallback(onNearHeapLimit, &heap_callback_data_);
  watchdog_ = std::make_unique<Watchdog>(isolate_);

  v8::HandleScope scope(isolate_);
  auto context = v8::Context::New(isolate_);
  v8::Context::Scope context_scope(context);
  v8::ScriptOrigin origin(isolate_, v8String(isolate_, "flux:runtime/glue.js"));
  v8::ScriptCompiler::Source source(v8String(isolate_, kRuntimeGlueJs), origin);
  auto glue = v8::ScriptCompiler::CompileUnboundScript(isolate_, &source);
  // The glue is built into the binary: failing to compile it is a build defect.
  if (glue.IsEmpty()) {
    fprintf(stderr, "flux: internal error: the runtime glue does not compile\n");
    abort();
  }
  state_->glue.Reset(isolate_, glue.ToLocalChecked());
}

IsolateWorker::~IsolateWorker() {
  fetch_client_.reset();  // cancels every exchange: none calls back any more
  fetches_.clear();
  pending_.clear();
  contexts_.clear();
  state_->glue.Reset();
  watchdog_.reset();
  isolate_->Exit();
  isolate_->Dispose();
  database_.reset();
}

void IsolateWorker::install(std::shared_ptr<const FunctionBundle> bundle) { contextFor(bundle); }

void IsolateWorker::uninstall(const std::string& name) {
  auto it = current_.find(name);
  if (it == current_.end()) return;
  if (auto c = contexts_.find(it->second); c != contexts_.end()) {
    c->second->retired = true;
    dropIfIdle(*c->second);
  }
  current_.erase(it);
}

FunctionContext& IsolateWorker::contextFor(const std::shared_ptr<const FunctionBundle>& bundle) {
  auto current = current_.find(bundle->name);
  if (current != current_.end()) {
    FunctionContext& fc = *contexts_.at(current->second);
    if (fc.bundle == bundle) return fc;
    // An older request may still name an older bundle: it runs on the current version's
    // predecessor only if that context is still alive.
    if (fc.bundle->version > bundle->version) {
      for (auto& [serial, other] : contexts_) {
        if (other->bundle == bundle) return *other;
      }
    } else {
      fc.retired = true;
      dropIfIdle(fc);
    }
  }
  auto fc = createContext(bundle);
  FunctionContext& ref = *fc;
  if (current == current_.end() || contexts_.at(current->second)->retired) {
    current_[bundle->name] = fc->serial;
  }
  contexts_.emplace(fc->serial, std::move(fc));
  return ref;
}

std::unique_ptr<FunctionContext> IsolateWorker::createContext(
    std::shared_ptr<const FunctionBundle> bundle) {
  auto fc = std::make_unique<FunctionContext>();
  fc->serial = next_context_serial_++;
  fc->bundle = std::move(bundle);
  fc->worker = this;
  fc->microtasks = v8::MicrotaskQueue::New(isolate_, v8::MicrotasksPolicy::kExplicit);

  v8::HandleScope scope(isolate_);
  auto context = v8::Context::New(isolate_, nullptr, {}, {}, {}, fc->microtasks.get());
  context->SetAlignedPointerInEmbedderData(kFunctionContextSlot, fc.get());
  fc->context.Reset(isolate_, context);
  v8::Context::Scope context_scope(context);
  v8::TryCatch try_catch(isolate_);
  const FunctionBundle& bundle_ref = *fc->bundle;

  auto loadFailed = [&](const std::string& what) {
    std::string stack, message = what;
    if (try_catch.HasCaught() && !try_catch.HasTerminated()) {
      auto exception = try_catch.Exception();
      message = what + ": " + Host::toUtf8(isolate_, exception);
      if (exception->IsObject()) {
        v8::Local<v8::Value> s;
        if (exception.As<v8::Object>()->Get(context, v8String(isolate_, "stack")).ToLocal(&s)) {
          stack = Host::toUtf8(isolate_, s);
        }
      }
    }
    fc->load_error = userError(*fc, stack, message);
    log_.write("[" + bundle_ref.name + "] " + fc->load_error->message +
               (stack.empty() ? "" : "\n" + fc->load_error->fields.back().second));
  };

  watchdog_->arm(bundle_ref.timeout);
  // 1. The runtime's glue: Web APIs on globalThis, and the dispatch functions.
  v8::Local<v8::Value> glue_result;
  v8::Local<v8::Object> api;
  {
    auto glue = state_->glue.Get(isolate_)->BindToCurrentContext();
    v8::Local<v8::Value> install_fn;
    auto global = context->Global();
    auto glue_name = v8String(isolate_, "__fluxGlue");
    v8::Local<v8::Value> glue_ns;
    if (glue->Run(context).IsEmpty() || !global->Get(context, glue_name).ToLocal(&glue_ns) ||
        !glue_ns->IsObject() ||
        !glue_ns.As<v8::Object>()
             ->Get(context, v8String(isolate_, "install"))
             .ToLocal(&install_fn) ||
        !install_fn->IsFunction()) {
      fprintf(stderr, "flux: internal error: the runtime glue did not load\n");
      abort();
    }
    discard(global->Delete(context, glue_name));
    v8::Local<v8::Object> env = v8::Object::New(isolate_);
    for (const auto& [key, value] : options_.env) {
      discard(env->Set(context, v8String(isolate_, key), v8String(isolate_, value)));
    }
    v8::Local<v8::Value> args[] = {Host::makeHostObject(isolate_, *this), env};
    v8::Local<v8::Value> result;
    if (!install_fn.As<v8::Function>()->Call(context, global, 2, args).ToLocal(&result) ||
        !result->IsObject()) {
      fprintf(stderr, "flux: internal error: the runtime glue's install() failed\n");
      abort();
    }
    api = result.As<v8::Object>();
    auto getFn = [&](const char* name) {
      return api->Get(context, v8String(isolate_, name)).ToLocalChecked().As<v8::Function>();
    };
    fc->dispatch.Reset(isolate_, getFn("dispatch"));
    fc->fire_timer.Reset(isolate_, getFn("fireTimer"));
    fc->define_function.Reset(isolate_, getFn("defineFunction"));
    fc->make_database_error.Reset(isolate_, getFn("makeDatabaseError"));
  }

  // 2. The function's module.
  v8::ScriptOrigin origin(isolate_, v8String(isolate_, bundleResourceName(bundle_ref)), 0, 0, false,
                          -1, {}, false, false, /*is_module=*/true);
  v8::ScriptCompiler::Source source(v8String(isolate_, bundle_ref.code), origin);
  v8::Local<v8::Module> module;
  if (!v8::ScriptCompiler::CompileModule(isolate_, &source).ToLocal(&module)) {
    loadFailed("the function's module does not compile");
  } else {
    fc->script_id = module->ScriptId();
    auto resolve = [](v8::Local<v8::Context> ctx, v8::Local<v8::String> specifier,
                      v8::Local<v8::FixedArray>,
                      v8::Local<v8::Module>) -> v8::MaybeLocal<v8::Module> {
      v8::Isolate* isolate = ctx->GetIsolate();
      std::string name = Host::toUtf8(isolate, specifier);
      if (name != "@flux/functions") {
        isolate->ThrowException(v8::Exception::Error(
            v8String(isolate, "cannot import '" + name +
                                  "': imports are bundled at build time; only '@flux/functions' is "
                                  "provided by the runtime")));
        return {};
      }
      auto steps = [](v8::Local<v8::Context> c,
                      v8::Local<v8::Module> m) -> v8::MaybeLocal<v8::Value> {
        v8::Isolate* iso = c->GetIsolate();
        FunctionContext& owner = FunctionContext::from(c);
        if (m->SetSyntheticModuleExport(iso, v8String(iso, "defineFunction"),
                                        owner.define_function.Get(iso))
                .IsNothing()) {
          return {};
        }
        auto resolver = v8::Promise::Resolver::New(c).ToLocalChecked();
        discard(resolver->Resolve(c, v8::Undefined(iso)));
        return resolver->GetPromise();
      };
      return v8::Module::CreateSyntheticModule(isolate, v8String(isolate, "@flux/functions"),
                                               {v8String(isolate, "defineFunction")}, steps);
    };
    v8::Local<v8::Value> evaluated;
    if (!module->InstantiateModule(context, resolve).FromMaybe(false)) {
      loadFailed("the function's module does not link");
    } else if (!module->Evaluate(context).ToLocal(&evaluated)) {
      loadFailed("the function's module threw while loading");
    } else {
      fc->microtasks->PerformCheckpoint(isolate_);
      auto promise = evaluated.As<v8::Promise>();
      if (module->GetStatus() == v8::Module::kErrored ||
          promise->State() == v8::Promise::kRejected) {
        auto exception = module->GetStatus() == v8::Module::kErrored ? module->GetException()
                                                                     : promise->Result();
        try_catch.Reset();
        isolate_->ThrowException(exception);
        loadFailed("the function's module threw while loading");
      } else {
        auto ns = module->GetModuleNamespace().As<v8::Object>();
        v8::Local<v8::Value> handler;
        if (!ns->Get(context, v8String(isolate_, "default")).ToLocal(&handler) ||
            handler->IsUndefined()) {
          try_catch.Reset();
          loadFailed("functions/" + bundle_ref.name +
                     " has no default export: write `export default async function "
                     "handler(req, ctx) { ... }`");
        } else {
          fc->handler.Reset(isolate_, handler);
        }
      }
    }
  }
  if (watchdog_->disarm() || heap_exceeded_) {
    isolate_->CancelTerminateExecution();
    heap_exceeded_ = false;
    fc->load_error = Error{ErrorCode::kTimeout,
                           "the function's module did not finish loading within its time limit",
                           {}};
    log_.write("[" + bundle_ref.name + "] " + fc->load_error->message);
  }
  return fc;
}

void IsolateWorker::invoke(const std::shared_ptr<const FunctionBundle>& bundle,
                           Invocation invocation, InvocationDone done) {
  FunctionContext& fc = contextFor(bundle);
  if (fc.load_error) {
    InvocationResult result;
    result.response =
        net::HttpResponse::json(500, jsonError(fc.load_error->message, invocation.id.toString()));
    result.error = fc.load_error;
    done(std::move(result));
    return;
  }
  uint32_t slot = next_slot_++;
  auto pending = std::make_unique<PendingRequest>();
  pending->context_serial = fc.serial;
  pending->id = invocation.id;
  pending->done = std::move(done);
  pending->start = invocation.start;
  record::Span function_span;
  function_span.id = invocation.parent_span + 1;
  function_span.parent = invocation.parent_span;
  function_span.name = bundle->name;
  function_span.start_us = pending->sinceStartUs(clock_.steadyNow());
  nlohmann::json params = nlohmann::json::object();
  for (const auto& [key, value] : invocation.params) params[key] = value;
  // Member by member: an initializer list builds an array of pairs first (~2k instructions).
  nlohmann::json& input = function_span.input = nlohmann::json::object();
  input["method"] = invocation.request.method;
  input["path"] = invocation.request.path();
  input["params"] = std::move(params);
  pending->spans.push_back(std::move(function_span));
  pending_.emplace(slot, std::move(pending));
  ++fc.pending;

  current_slot_ = slot;
  runInContext(fc, [&] {
    v8::Local<v8::Context> context = isolate_->GetCurrentContext();
    const net::HttpRequest& request = invocation.request;
    auto headers = v8::Array::New(isolate_, static_cast<int>(request.headers.size() * 2));
    uint32_t i = 0;
    std::string_view host;
    for (const net::HttpHeader& h : request.headers) {
      if (net::equalsIgnoreCase(h.name, "host")) host = h.value;
      discard(headers->Set(context, i++, v8String(isolate_, h.name)));
      discard(headers->Set(context, i++, v8String(isolate_, h.value)));
    }
    std::string url = "http://";
    url += host.empty() ? std::string_view("localhost") : host;
    url += request.target;
    v8::Local<v8::Value> body = v8::Undefined(isolate_);
    if (!request.body.empty()) {
      auto store = v8::ArrayBuffer::NewBackingStore(isolate_, request.body.size());
      memcpy(store->Data(), request.body.data(), request.body.size());
      body = v8::ArrayBuffer::New(isolate_, std::move(store));
    }
    auto params = v8::Object::New(isolate_);
    for (const auto& [key, value] : invocation.params) {
      discard(params->Set(context, v8String(isolate_, key), v8String(isolate_, value)));
    }
    context->SetContinuationPreservedEmbedderData(
        v8::Number::New(isolate_, encodeSpanContext(slot, 0)));
    v8::Local<v8::Value> args[] = {
        v8::Integer::NewFromUnsigned(isolate_, slot),
        fc.handler.Get(isolate_),
        v8String(isolate_, request.method),
        v8String(isolate_, url),
        headers,
        body,
        v8String(isolate_, invocation.id.toString()),
        params,
    };
    discard(fc.dispatch.Get(isolate_)->Call(context, v8::Undefined(isolate_), 8, args));
  });
  current_slot_ = 0;

  // Still waiting (the handler awaits a timer, later a query or a fetch): bound the wait.
  auto it = pending_.find(slot);
  if (it == pending_.end()) return;
  it->second->deadline = std::make_unique<boost::asio::steady_timer>(loop_, bundle->timeout);
  it->second->deadline->async_wait([this, slot, timeout = bundle->timeout](
                                       const boost::system::error_code& ec) {
    if (ec) return;
    auto p = pending_.find(slot);
    if (p == pending_.end()) return;
    std::string message = "function timed out after " + std::to_string(timeout.count()) + " ms";
    InvocationResult result;
    result.response = net::HttpResponse::json(504, jsonError(message, p->second->id.toString()));
    result.error = Error{ErrorCode::kTimeout, message, {}};
    finish(slot, std::move(result));
  });
}

void IsolateWorker::runInContext(FunctionContext& fc, const std::function<void()>& body) {
  {
    v8::HandleScope scope(isolate_);
    v8::Local<v8::Context> context = fc.context.Get(isolate_);
    v8::Context::Scope context_scope(context);
    v8::TryCatch try_catch(isolate_);
    // No span context unless `body` sets one (dispatch, a timer): what the last JS left there
    // belongs to whatever ran then.
    context->SetContinuationPreservedEmbedderData(v8::Undefined(isolate_));
    watchdog_->arm(fc.bundle->timeout);
    body();
    if (!isolate_->IsExecutionTerminating()) fc.microtasks->PerformCheckpoint(isolate_);
    if (try_catch.HasCaught() && !try_catch.HasTerminated()) {
      log_.write("[" + fc.bundle->name + "] internal error in the runtime glue: " +
                 Host::toUtf8(isolate_, try_catch.Exception()));
    }
  }
  bool timed_out = watchdog_->disarm();
  if (!timed_out && !heap_exceeded_ && !isolate_->IsExecutionTerminating()) return;

  isolate_->CancelTerminateExecution();
  if (heap_exceeded_) {
    heap_exceeded_ = false;
    size_t mib = options_.heap_limit_bytes >> 20;
    failContext(fc, 500,
                Error{ErrorCode::kResourceExhausted,
                      "function exceeded the memory limit of " + std::to_string(mib) + " MiB",
                      {}});
    // Once the context is gone, give its memory back and restore the limit.
    boost::asio::post(loop_, [this] {
      isolate_->LowMemoryNotification();
      isolate_->RemoveNearHeapLimitCallback(onNearHeapLimit, options_.heap_limit_bytes);
      isolate_->AddNearHeapLimitCallback(onNearHeapLimit, &heap_callback_data_);
    });
  } else {
    failContext(fc, 504,
                Error{ErrorCode::kTimeout,
                      "function exceeded its CPU time limit of " +
                          std::to_string(fc.bundle->timeout.count()) + " ms",
                      {}});
  }
}

void IsolateWorker::failContext(FunctionContext& fc, int status, const Error& error) {
  log_.write("[" + fc.bundle->name + "] " + error.message + "; restarting its context");
  std::vector<uint32_t> slots;
  for (const auto& [slot, p] : pending_) {
    if (p->context_serial == fc.serial) slots.push_back(slot);
  }
  for (uint32_t slot : slots) {
    InvocationResult result;
    result.response =
        net::HttpResponse::json(status, jsonError(error.message, pending_[slot]->id.toString()));
    result.error = error;
    finish(slot, std::move(result));
  }
  // The context's JS state is unknown after a termination: the next request gets a fresh one.
  fc.retired = true;
  if (auto it = current_.find(fc.bundle->name); it != current_.end() && it->second == fc.serial) {
    current_.erase(it);
  }
  dropIfIdle(fc);
}

void IsolateWorker::finish(uint32_t slot, InvocationResult result) {
  auto it = pending_.find(slot);
  if (it == pending_.end()) return;  // already answered (timed out)
  std::unique_ptr<PendingRequest> pending = std::move(it->second);
  pending_.erase(it);
  if (pending->deadline) pending->deadline->cancel();
  endRunning(*pending, result);
  closeFunctionSpan(*pending, result);
  if (auto c = contexts_.find(pending->context_serial); c != contexts_.end()) {
    applySpanShape(*c->second, result);
    --c->second->pending;
    dropIfIdle(*c->second);
  }
  result.journal = std::move(pending->journal);
  data::RequestTransaction* transaction = pending->transaction.get();
  if (transaction == nullptr || !transaction->started()) {
    pending->done(std::move(result));
    return;
  }
  // The response waits for the transaction: a client that sees 200 can read what it wrote.
  auto outcome = result.error || result.response.status >= 500 ? data::TransactionOutcome::kRollback
                                                               : data::TransactionOutcome::kCommit;
  transaction->finish(outcome, [pending = std::move(pending),
                                result = std::move(result)](Result<void> ended) mutable {
    if (!ended) {
      std::string message = "the request's database transaction failed: " + ended.error().message;
      result.response = net::HttpResponse::json(500, jsonError(message, pending->id.toString()));
      result.error = Error{ended.error().code, message, {}};
    }
    pending->done(std::move(result));
  });
}

void IsolateWorker::dropIfIdle(FunctionContext& fc) {
  if (!fc.retired || fc.pending > 0) return;
  // Deferred: we may be inside this context's JS right now.
  boost::asio::post(loop_, [this, serial = fc.serial] {
    auto it = contexts_.find(serial);
    if (it != contexts_.end() && it->second->retired && it->second->pending == 0) {
      contexts_.erase(it);
    }
  });
}

void IsolateWorker::fireTimer(uint64_t context_serial, uint32_t timer_id) {
  auto c = contexts_.find(context_serial);
  if (c == contexts_.end()) return;
  FunctionContext& fc = *c->second;
  auto t = fc.timers.find(timer_id);
  if (t == fc.timers.end()) return;
  double span_context = t->second.span_context;
  if (t->second.interval.count() > 0) {
    t->second.timer->expires_after(t->second.interval);
    t->second.timer->async_wait(
        [this, context_serial, timer_id](const boost::system::error_code& ec) {
          if (!ec) fireTimer(context_serial, timer_id);
        });
  } else {
    fc.timers.erase(t);
  }
  runInContext(fc, [&] {
    v8::Local<v8::Context> context = isolate_->GetCurrentContext();
    if (span_context >= 0) {
      context->SetContinuationPreservedEmbedderData(v8::Number::New(isolate_, span_context));
    }
    v8::Local<v8::Value> args[] = {v8::Integer::NewFromUnsigned(isolate_, timer_id)};
    discard(fc.fire_timer.Get(isolate_)->Call(context, v8::Undefined(isolate_), 1, args));
  });
}

void IsolateWorker::closeFunctionSpan(PendingRequest& pending, InvocationResult& result) {
  record::Span& span = pending.spans.front();
  span.duration_us = pending.sinceStartUs(clock_.steadyNow()) - span.start_us;
  span.output = nlohmann::json::object();
  span.output["status"] = result.response.status;
  if (pending.dropped_spans > 0) span.output["spans_dropped"] = pending.dropped_spans;
  if (result.error) {
    span.status = record::SpanStatus::kError;
    span.error = result.error->message;
    for (const auto& [key, value] : result.error->fields) {
      if (key == "location") span.location = value;
    }
  }
  span.logs = std::move(pending.function_logs);
  result.spans = std::move(pending.spans);
  result.logs = std::move(pending.logs);
}

void IsolateWorker::endRunning(PendingRequest& pending, const InvocationResult& result) {
  if (pending.fetches.empty() && pending.open_user_spans.empty()) return;
  int64_t now_us = pending.sinceStartUs(clock_.steadyNow());
  std::string why =
      result.error ? result.error->message : std::string("the handler answered before it finished");
  for (uint64_t id : pending.fetches) {
    auto it = fetches_.find(id);
    if (it == fetches_.end()) continue;
    if (fetch_client_) fetch_client_->cancel(it->second->exchange);
    size_t index = it->second->span;
    fetches_.erase(it);
    if (index == 0 || index >= pending.spans.size()) continue;
    record::Span& span = pending.spans[index];
    span.duration_us = now_us - span.start_us;
    span.status = record::SpanStatus::kError;
    span.error = "aborted: the request ended (" + why + ")";
    pending.journal.fetchError(span.id, *span.error);
  }
  pending.fetches.clear();
  for (const auto& [index, saved] : pending.open_user_spans) {
    if (index >= pending.spans.size()) continue;
    record::Span& span = pending.spans[index];
    span.duration_us = now_us - span.start_us;
    if (result.error) {
      span.status = record::SpanStatus::kError;
      span.error = "did not finish: " + why;
    } else {
      span.output = {{"unfinished", true}};
    }
  }
  pending.open_user_spans.clear();
}

void IsolateWorker::applySpanShape(FunctionContext& fc, InvocationResult& result) {
  if (result.spans.empty()) return;
  uint64_t version = fc.bundle->version;
  if (result.error) {
    const record::Span& function_span = result.spans.front();
    if (fc.shape.version == version) {
      fc.shape.appendSkipped(result.spans, function_span.start_us + function_span.duration_us);
    }
    return;
  }
  if (result.response.status >= 500 || fc.shape.matches(version, result.spans)) return;
  fc.shape = SpanShape::of(version, result.spans);
}

IsolateWorker::PendingRequest* IsolateWorker::currentRequest(v8::Local<v8::Context> context,
                                                             size_t* span_index,
                                                             uint32_t* running_slot) {
  uint32_t slot = 0;
  size_t index = 0;
  if (!decodeSpanContext(context->GetContinuationPreservedEmbedderData(), slot, index)) {
    slot = current_slot_;
    index = 0;
  }
  auto it = pending_.find(slot);
  if (it == pending_.end()) return nullptr;
  if (span_index != nullptr) {
    *span_index = index != 0 && it->second->isOpenUserSpan(index) ? index : 0;
  }
  if (running_slot != nullptr) *running_slot = slot;
  return it->second.get();
}

size_t IsolateWorker::currentSpan(v8::Local<v8::Context> context, uint32_t slot) {
  uint32_t running_slot = 0;
  size_t index = 0;
  if (!decodeSpanContext(context->GetContinuationPreservedEmbedderData(), running_slot, index) ||
      running_slot != slot || index == 0) {
    return 0;
  }
  auto it = pending_.find(slot);
  if (it == pending_.end() || !it->second->isOpenUserSpan(index)) return 0;
  return index;
}

std::string IsolateWorker::callSite(const FunctionContext& fc) {
  static constexpr int kFrames = 24;
  v8::HandleScope scope(isolate_);
  auto trace = v8::StackTrace::CurrentStackTrace(
      isolate_, kFrames,
      static_cast<v8::StackTrace::StackTraceOptions>(
          v8::StackTrace::kLineNumber | v8::StackTrace::kColumnOffset | v8::StackTrace::kScriptId));
  for (int i = 0; i < trace->GetFrameCount(); ++i) {
    v8::Local<v8::StackFrame> frame = trace->GetFrame(isolate_, static_cast<uint32_t>(i));
    if (frame->GetScriptId() != fc.script_id) continue;
    int line = frame->GetLineNumber();
    int column = frame->GetColumn();
    if (auto original = fc.bundle->source_map.lookup(line, column)) {
      return original->source + ":" + std::to_string(original->line) + ":" +
             std::to_string(original->column);
    }
    return bundleResourceName(*fc.bundle) + ":" + std::to_string(line) + ":" +
           std::to_string(column);
  }
  return {};
}

net::FetchClient& IsolateWorker::fetchClient() {
  if (!fetch_client_) fetch_client_ = std::make_unique<net::FetchClient>(loop_, options_.fetch);
  return *fetch_client_;
}

Error IsolateWorker::userError(FunctionContext& fc, const std::string& stack,
                               const std::string& message) {
  std::string location;
  std::string mapped = mapStack(*fc.bundle, stack, location);
  Error error{ErrorCode::kUserCode, message, {}};
  if (!location.empty()) error.fields.emplace_back("location", location);
  error.fields.emplace_back("stack", mapped.empty() ? message : mapped);
  return error;
}

}  // namespace flux::runtime

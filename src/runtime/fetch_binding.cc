// The host natives behind fetch() (js/fetch.js): fetchStart and fetchAbort. The exchange runs
// on the worker's net::FetchClient; its result settles the promise back in the function's
// context, after the call's span and journal entry are written. The JS side builds the Request
// and the Response and owns AbortSignal handling; here a fetch belongs to the request whose
// JS called it (the span context), and ends with it at the latest.
#include <v8.h>

#include <memory>

#include "runtime/function_context.h"
#include "runtime/span_values.h"
#include "runtime/v8_strings.h"

namespace flux::runtime {

namespace {

void throwTypeError(v8::Isolate* isolate, std::string_view message) {
  isolate->ThrowException(v8::Exception::TypeError(v8String(isolate, message)));
}

// The bytes of a string (UTF-8), an ArrayBuffer or a view; false for anything else.
bool bodyBytes(v8::Isolate* isolate, v8::Local<v8::Value> value, std::string& out) {
  if (value->IsString()) {
    auto s = value.As<v8::String>();
    int length = s->Utf8Length(isolate);
    out.resize(static_cast<size_t>(length));
    s->WriteUtf8(isolate, out.data(), length, nullptr,
                 v8::String::NO_NULL_TERMINATION | v8::String::REPLACE_INVALID_UTF8);
    return true;
  }
  if (value->IsArrayBufferView()) {
    auto view = value.As<v8::ArrayBufferView>();
    out.resize(view->ByteLength());
    view->CopyContents(out.data(), out.size());
    return true;
  }
  if (value->IsArrayBuffer()) {
    auto buffer = value.As<v8::ArrayBuffer>();
    out.assign(static_cast<const char*>(buffer->Data()), buffer->ByteLength());
    return true;
  }
  return false;
}

}  // namespace

struct IsolateWorker::Fetch {
  static IsolateWorker& worker(const v8::FunctionCallbackInfo<v8::Value>& info) {
    return *static_cast<IsolateWorker*>(info.Data().As<v8::External>()->Value());
  }

  // fetchStart(method, url, headers [k, v, ...], body: string | Uint8Array | null,
  //            redirect: "follow" | "error" | "manual") -> [id, Promise<parts>]
  // parts: [status, statusText, headers [k, v, ...], body Uint8Array, url, redirected].
  // Rejects with a TypeError ("fetch failed: <cause>") on a network error.
  static void start(const v8::FunctionCallbackInfo<v8::Value>& info) {
    IsolateWorker& w = worker(info);
    v8::Isolate* iso = info.GetIsolate();
    v8::Local<v8::Context> context = iso->GetCurrentContext();
    FunctionContext& fc = FunctionContext::from(context);
    size_t parent = 0;
    uint32_t slot = 0;
    PendingRequest* request = w.currentRequest(context, &parent, &slot);
    if (request == nullptr) {
      return throwTypeError(iso,
                            "fetch() can only be called while a request is being handled (not "
                            "while the module loads, nor after the handler answered)");
    }
    net::FetchRequest fetch;
    fetch.method = Host::toUtf8(iso, info[0]);
    fetch.url = Host::toUtf8(iso, info[1]);
    if (info[2]->IsArray()) {
      auto flat = info[2].As<v8::Array>();
      for (uint32_t i = 0; i + 1 < flat->Length(); i += 2) {
        fetch.headers.push_back({Host::toUtf8(iso, flat->Get(context, i).ToLocalChecked()),
                                 Host::toUtf8(iso, flat->Get(context, i + 1).ToLocalChecked())});
      }
    }
    if (!info[3]->IsNullOrUndefined() && !bodyBytes(iso, info[3], fetch.body)) {
      return throwTypeError(iso, "fetch: the body must be a string or bytes");
    }
    std::string redirect = Host::toUtf8(iso, info[4]);
    fetch.redirect = redirect == "error"    ? net::RedirectMode::kError
                     : redirect == "manual" ? net::RedirectMode::kManual
                                            : net::RedirectMode::kFollow;

    auto resolver = v8::Promise::Resolver::New(context).ToLocalChecked();
    auto active = std::make_unique<ActiveFetch>();
    active->slot = slot;
    active->context_serial = fc.serial;
    active->resolver.Reset(iso, resolver);
    active->span = request->openSpan("fetch", fetchSpanInput(fetch), w.clock_.steadyNow(), parent,
                                     w.callSite(fc));
    uint64_t id = w.next_fetch_id_++;
    // `w` outlives the client: ~IsolateWorker destroys it first, and a destroyed or cancelling
    // client calls nothing back.
    active->exchange = w.fetchClient().start(
        std::move(fetch),
        [&w, id](Result<net::FetchResponse> result) { complete(w, id, std::move(result)); });
    request->fetches.push_back(id);
    w.fetches_.emplace(id, std::move(active));
    auto pair = v8::Array::New(iso, 2);
    discard(pair->Set(context, 0, v8::Number::New(iso, static_cast<double>(id))));
    discard(pair->Set(context, 1, resolver->GetPromise()));
    info.GetReturnValue().Set(pair);
  }

  static void complete(IsolateWorker& w, uint64_t id, Result<net::FetchResponse> result);

  // fetchAbort(id, reason, description): the signal fired. Stops the exchange; the span and
  // the journal get `description` ("timeout after 200 ms", "aborted"); the reason (what the
  // JS side rejects with) remembers the span. The promise from fetchStart never settles.
  static void abort(const v8::FunctionCallbackInfo<v8::Value>& info) {
    IsolateWorker& w = worker(info);
    v8::Isolate* iso = info.GetIsolate();
    v8::Local<v8::Context> context = iso->GetCurrentContext();
    auto id = static_cast<uint64_t>(info[0]->NumberValue(context).FromMaybe(0));
    auto it = w.fetches_.find(id);
    if (it == w.fetches_.end()) return;
    std::unique_ptr<ActiveFetch> active = std::move(it->second);
    w.fetches_.erase(it);
    w.fetchClient().cancel(active->exchange);
    auto p = w.pending_.find(active->slot);
    if (p == w.pending_.end()) return;
    PendingRequest& request = *p->second;
    std::erase(request.fetches, id);
    if (active->span == 0 || active->span >= request.spans.size()) return;
    record::Span& span = request.spans[active->span];
    span.duration_us = request.sinceStartUs(w.clock_.steadyNow()) - span.start_us;
    span.status = record::SpanStatus::kError;
    span.error = Host::toUtf8(iso, info[2]);
    request.journal.fetchError(span.id, *span.error);
    tagErrorSpan(context, info[1], span.id);
  }
};

void IsolateWorker::Fetch::complete(IsolateWorker& w, uint64_t id,
                                    Result<net::FetchResponse> result) {
  auto it = w.fetches_.find(id);
  if (it == w.fetches_.end()) return;
  std::unique_ptr<ActiveFetch> active = std::move(it->second);
  w.fetches_.erase(it);
  auto p = w.pending_.find(active->slot);
  if (p == w.pending_.end()) return;  // cannot happen: a request's end cancels its fetches
  PendingRequest& request = *p->second;
  std::erase(request.fetches, id);
  uint32_t span_id = 0;
  if (active->span != 0 && active->span < request.spans.size()) {
    record::Span& span = request.spans[active->span];
    span_id = span.id;
    span.duration_us = request.sinceStartUs(w.clock_.steadyNow()) - span.start_us;
    if (result) {
      span.output = fetchSpanOutput(*result);
      request.journal.fetch(span.id, fetchJournalValue(*result));
    } else {
      span.status = record::SpanStatus::kError;
      span.error = fetchSpanError(result.error());
      request.journal.fetchError(span.id, *span.error);
    }
  }
  auto c = w.contexts_.find(active->context_serial);
  if (c == w.contexts_.end()) return;
  w.current_slot_ = active->slot;
  w.runInContext(*c->second, [&] {
    v8::Isolate* iso = w.isolate_;
    v8::Local<v8::Context> context = iso->GetCurrentContext();
    v8::Local<v8::Promise::Resolver> resolver = active->resolver.Get(iso);
    if (!result) {
      auto error =
          v8::Exception::TypeError(v8String(iso, "fetch failed: " + result.error().message));
      tagErrorSpan(context, error, span_id);
      discard(resolver->Reject(context, error));
      return;
    }
    net::FetchResponse& response = *result;
    auto headers = v8::Array::New(iso, static_cast<int>(response.headers.size() * 2));
    uint32_t i = 0;
    for (const net::HttpHeader& h : response.headers) {
      discard(headers->Set(context, i++, v8String(iso, h.name)));
      discard(headers->Set(context, i++, v8String(iso, h.value)));
    }
    // The body's bytes move into the ArrayBuffer without a copy.
    size_t size = response.body.size();
    std::shared_ptr<v8::BackingStore> store;
    if (size == 0) {
      store = v8::ArrayBuffer::NewBackingStore(iso, 0);
    } else {
      auto* owned = new std::string(std::move(response.body));
      store = v8::ArrayBuffer::NewBackingStore(
          owned->data(), size,
          [](void*, size_t, void* deleter_data) { delete static_cast<std::string*>(deleter_data); },
          owned);
    }
    auto body = v8::Uint8Array::New(v8::ArrayBuffer::New(iso, std::move(store)), 0, size);
    v8::Local<v8::Value> parts[] = {
        v8::Integer::New(iso, response.status),
        v8String(iso, response.status_text),
        headers,
        body,
        v8String(iso, response.url),
        v8::Boolean::New(iso, response.redirects > 0),
    };
    discard(resolver->Resolve(context, v8::Array::New(iso, parts, std::size(parts))));
  });
  w.current_slot_ = 0;
}

void installFetchBindings(v8::Isolate* isolate, v8::Local<v8::Context> context,
                          v8::Local<v8::Object> host, IsolateWorker& worker) {
  v8::Local<v8::External> data = v8::External::New(isolate, &worker);
  auto define = [&](const char* name, v8::FunctionCallback callback) {
    discard(host->Set(context, v8String(isolate, name),
                      v8::Function::New(context, callback, data).ToLocalChecked()));
  };
  define("fetchStart", IsolateWorker::Fetch::start);
  define("fetchAbort", IsolateWorker::Fetch::abort);
}

}  // namespace flux::runtime

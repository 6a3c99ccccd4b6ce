// Gateway: the worker's request handler. Created, used and destroyed on one worker thread.
#pragma once

#include <memory>

#include "base/clock.h"
#include "base/log.h"
#include "gateway/route_table.h"
#include "net/http_message.h"
#include "record/recorder.h"
#include "runtime/isolate_worker.h"

namespace flux::gateway {

class Gateway final : public net::RequestHandler {
 public:
  // Owns the worker's randomness, runtime and admin API handler (for paths under /_flux/;
  // may be null); the clock, log and recorder (null: nothing is recorded) are shared and
  // outlive it.
  Gateway(std::unique_ptr<Random> random, Clock& clock, LogSink& log,
          std::function<std::unique_ptr<runtime::IsolateWorker>(Random&)> make_runtime,
          std::unique_ptr<net::RequestHandler> admin, record::Recorder* recorder);

  // Swaps in a new route table and warms the contexts of functions it adds or changes.
  void setRoutes(std::shared_ptr<const RouteTable> routes);

  void handle(net::HttpRequest request, net::Responder respond) override;
  void reject(net::ProtocolError error, net::Responder respond) override;

 private:
  std::unique_ptr<Random> random_;
  Clock& clock_;
  LogSink& log_;
  std::unique_ptr<runtime::IsolateWorker> runtime_;
  std::shared_ptr<const RouteTable> routes_;
  std::unique_ptr<net::RequestHandler> admin_;
  record::Recorder* recorder_;

  static constexpr size_t kCapturedBodyBytes = 64 * 1024;  // the recorder caps again
  static constexpr uint32_t kGatewaySpan = 1;

  // What the gateway knows of one execution until it is answered.
  struct Execution {
    RequestId id;
    std::string method;
    std::string path;
    std::chrono::steady_clock::time_point start;
    int64_t started_at_us = 0;
    std::optional<record::HttpCapture> request;  // captured only when recording
    std::string function;
  };
  Execution begin(std::string_view method, std::string_view target);
  // Whether this execution is recorded: there is a recorder, and it is not paused.
  bool recording() const { return recorder_ != nullptr && !recorder_->paused(); }
  void capture(Execution& execution, const net::HttpRequest& request) const;
  // Adds x-request-id, logs the request line, responds, then hands the record to the
  // recorder (off the response's path).
  void reply(Execution& execution, net::HttpResponse response, net::Responder& respond,
             runtime::InvocationResult* result = nullptr);
};

}  // namespace flux::gateway

// Gateway: the worker's request handler. Created, used and destroyed on one worker thread.
#pragma once

#include <memory>

#include "base/clock.h"
#include "base/log.h"
#include "gateway/route_table.h"
#include "net/http_message.h"
#include "runtime/isolate_worker.h"

namespace flux::gateway {

class Gateway final : public net::RequestHandler {
 public:
  // Owns the worker's randomness, runtime and admin API handler (for paths under /_flux/;
  // may be null); the clock and log are shared and outlive it.
  Gateway(std::unique_ptr<Random> random, Clock& clock, LogSink& log,
          std::function<std::unique_ptr<runtime::IsolateWorker>(Random&)> make_runtime,
          std::unique_ptr<net::RequestHandler> admin);

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

  // Adds x-request-id, logs the request line, responds.
  void reply(const RequestId& id, std::string_view method, std::string_view path,
             std::chrono::steady_clock::time_point start, net::HttpResponse response,
             net::Responder& respond);
};

}  // namespace flux::gateway

// HttpServer: N worker threads, each running one io_context with its own SO_REUSEPORT
// listener on the shared port, so the kernel spreads connections and a request never changes
// thread. Each worker owns one RequestHandler, made on that thread by the factory.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "net/http_message.h"

namespace flux::net {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 4000;  // 0 picks a free port; see HttpServer::port()
  int workers = 0;       // 0: one per core
  size_t body_limit = 10 * 1024 * 1024;
  // A connection with no complete request within this time is closed (idle keep-alive
  // connections and slow clients alike).
  std::chrono::milliseconds idle_timeout{30'000};
};

class WorkerLoop {
 public:
  int index() const { return index_; }
  boost::asio::io_context& context() { return context_; }
  // Runs fn on this worker's thread with its handler. Thread-safe; the control thread uses it
  // to hand workers new deployments.
  void post(std::function<void(RequestHandler&)> fn);

 private:
  friend class HttpServer;
  struct Listener;
  explicit WorkerLoop(int index) : index_(index), context_(1) {}

  int index_;
  boost::asio::io_context context_;
  std::unique_ptr<RequestHandler> handler_;  // lives on this worker's thread
  std::shared_ptr<Listener> listener_;
  std::thread thread_;
};

class HttpServer {
 public:
  using HandlerFactory = std::function<std::unique_ptr<RequestHandler>(WorkerLoop&)>;

  // Binds the port and starts the workers. The factory runs once on each worker thread,
  // before that worker accepts. Returns an error (never throws) if the address can't be bound.
  static Result<std::unique_ptr<HttpServer>> start(ServerOptions options, HandlerFactory factory);
  ~HttpServer();  // stop()

  uint16_t port() const { return port_; }
  std::vector<WorkerLoop*> workers();
  // Stops accepting, ends every worker loop, destroys the handlers on their threads, joins.
  void stop();

 private:
  HttpServer() = default;

  ServerOptions options_;
  uint16_t port_ = 0;
  std::vector<std::unique_ptr<WorkerLoop>> workers_;
};

}  // namespace flux::net

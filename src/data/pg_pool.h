// PgPool: a small set of PgConnections owned by one worker. Requests lease a connection for
// their transaction and give it back when the lease dies. When PostgreSQL is unreachable,
// acquire() fails fast with kUnavailable (the gateway answers 503) and the pool keeps trying to
// reconnect in the background, with backoff, so that service resumes on its own.
//
// Thread: one worker thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "data/pg_connection.h"

namespace flux::data {

struct PoolOptions {
  std::string conninfo;
  size_t size = 4;  // connections per worker
  std::chrono::milliseconds connect_timeout{3000};
  // How long acquire() waits for a free connection before failing with kResourceExhausted.
  std::chrono::milliseconds acquire_timeout{5000};
};

class PgPool;

// A leased connection. Returned to the pool when destroyed (or dropped if it broke).
class PgLease {
 public:
  PgLease() = default;
  PgLease(PgLease&&) noexcept;
  PgLease& operator=(PgLease&&) noexcept;
  ~PgLease();
  PgConnection& connection() { return *connection_; }
  explicit operator bool() const { return connection_ != nullptr; }

 private:
  friend class PgPool;
  PgLease(std::shared_ptr<PgPool*> pool, std::unique_ptr<PgConnection> connection)
      : pool_(std::move(pool)), connection_(std::move(connection)) {}
  void giveBack();
  // The pool, or null once it is gone: shared (not owned) so that a lease that outlives its
  // pool at shutdown (held by a callback in its own connection's queue) just closes.
  std::shared_ptr<PgPool*> pool_;
  std::unique_ptr<PgConnection> connection_;
};

class PgPool {
 public:
  using AcquireCallback = std::move_only_function<void(Result<PgLease>)>;

  PgPool(boost::asio::io_context& loop, PoolOptions options);
  // Pending acquire() callbacks are destroyed without being called. A lease still out (work
  // in flight at shutdown) closes its connection when it dies instead of returning it.
  ~PgPool();

  // Calls back with a connection (FIFO among waiters), or an error: kUnavailable when
  // PostgreSQL cannot be reached, kResourceExhausted after acquire_timeout.
  void acquire(AcquireCallback done);

 private:
  friend class PgLease;
  struct Impl;
  void release(std::unique_ptr<PgConnection> connection);
  std::unique_ptr<Impl> impl_;
  std::shared_ptr<PgPool*> home_ = std::make_shared<PgPool*>(this);  // see PgLease::pool_
};

}  // namespace flux::data

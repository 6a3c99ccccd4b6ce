#include "data/pg_pool.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <utility>  // must precede asio headers under g++ 12

namespace flux::data {

namespace asio = boost::asio;

namespace {

// Background reconnects while PostgreSQL is down: quick at first (a restart takes about a
// second), then every 2 s so that a long outage costs the server little.
constexpr std::chrono::milliseconds kMinBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{2000};

}  // namespace

struct PgPool::Impl {
  // An acquire() waiting for a connection to come free or to finish connecting.
  struct Waiter {
    uint64_t id = 0;
    AcquireCallback done;
    std::unique_ptr<asio::steady_timer> timer;
  };

  Impl(PgPool& pool, asio::io_context& loop, PoolOptions options)
      : pool_(pool), loop_(loop), options_(std::move(options)), reconnect_timer_(loop) {}
  ~Impl() { alive_.reset(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void acquire(AcquireCallback done);
  void release(std::unique_ptr<PgConnection> connection);
  void dispatch();
  void grant(std::unique_ptr<PgConnection> connection, AcquireCallback done);
  void startConnect();
  void onConnected(Result<std::unique_ptr<PgConnection>> connection);
  void goDown(Error error);
  void scheduleReconnect();
  void onReconnected(Result<std::unique_ptr<PgConnection>> connection);
  void rollBack(std::unique_ptr<PgConnection> connection);
  void timeOut(uint64_t waiter_id);
  void dropBrokenIdle();
  void failSoon(AcquireCallback done, Error error);

  PgPool& pool_;
  asio::io_context& loop_;
  PoolOptions options_;
  // Shared only for its weak_ptrs: handlers queued in asio and code that runs user callbacks
  // check through them whether the pool was destroyed meanwhile.
  std::shared_ptr<char> alive_ = std::make_shared<char>();

  std::vector<std::unique_ptr<PgConnection>> idle_;       // most recently used last
  std::vector<std::unique_ptr<PgConnection>> resetting_;  // running ROLLBACK before reuse
  size_t open_ = 0;        // connections counted against options_.size: every state above,
                           // leased, being granted, or being connected on demand
  size_t connecting_ = 0;  // on-demand connects in flight
  size_t leased_ = 0;      // PgLeases alive

  std::deque<Waiter> waiters_;  // FIFO
  uint64_t next_waiter_ = 0;

  // Set while PostgreSQL is unreachable: acquire() fails at once with it, and a background
  // reconnect with backoff clears it.
  std::optional<Error> down_;
  asio::steady_timer reconnect_timer_;
  std::chrono::milliseconds backoff_ = kMinBackoff;
  bool reconnecting_ = false;
};

void PgPool::Impl::acquire(AcquireCallback done) {
  dropBrokenIdle();
  if (!idle_.empty() && waiters_.empty()) {
    std::unique_ptr<PgConnection> connection = std::move(idle_.back());
    idle_.pop_back();
    return grant(std::move(connection), std::move(done));
  }
  if (down_ && idle_.empty()) return failSoon(std::move(done), *down_);

  Waiter waiter;
  waiter.id = ++next_waiter_;
  waiter.done = std::move(done);
  waiter.timer = std::make_unique<asio::steady_timer>(loop_);
  waiter.timer->expires_after(options_.acquire_timeout);
  waiter.timer->async_wait([this, alive = std::weak_ptr<char>(alive_),
                            id = waiter.id](const boost::system::error_code& ec) {
    if (alive.expired() || ec) return;
    timeOut(id);
  });
  waiters_.push_back(std::move(waiter));
  dispatch();
}

// Hands idle connections to waiters, first come first served, and opens connections on demand
// for the waiters that no connect in flight will serve.
void PgPool::Impl::dispatch() {
  dropBrokenIdle();
  while (!waiters_.empty() && !idle_.empty()) {
    Waiter waiter = std::move(waiters_.front());
    waiters_.pop_front();
    std::unique_ptr<PgConnection> connection = std::move(idle_.back());
    idle_.pop_back();
    grant(std::move(connection), std::move(waiter.done));
  }
  while (!down_ && waiters_.size() > connecting_ && open_ < options_.size) startConnect();
}

// Never calls back inside acquire(): the lease is made in a posted handler. If the pool dies
// first, the connection closes with that handler.
void PgPool::Impl::grant(std::unique_ptr<PgConnection> connection, AcquireCallback done) {
  asio::post(loop_, [this, alive = std::weak_ptr<char>(alive_), connection = std::move(connection),
                     done = std::move(done)]() mutable {
    if (alive.expired()) return;
    ++leased_;
    done(PgLease(pool_.home_, std::move(connection)));
  });
}

void PgPool::Impl::startConnect() {
  ++open_;
  ++connecting_;
  PgConnection::connect(
      loop_, options_.conninfo, options_.connect_timeout,
      [this, alive = std::weak_ptr<char>(alive_)](Result<std::unique_ptr<PgConnection>> result) {
        if (alive.expired()) return;  // a connection made for a pool that is gone closes here
        onConnected(std::move(result));
      });
}

void PgPool::Impl::onConnected(Result<std::unique_ptr<PgConnection>> connection) {
  --connecting_;
  if (!connection) {
    --open_;
    return goDown(std::move(connection.error()));
  }
  idle_.push_back(std::move(*connection));
  dispatch();
}

// A connect failed: PostgreSQL is unreachable. Every waiter fails now rather than after its
// timeout, and so does every acquire() until a background reconnect succeeds.
void PgPool::Impl::goDown(Error error) {
  down_ = error;
  scheduleReconnect();
  std::deque<Waiter> failed;
  failed.swap(waiters_);
  std::weak_ptr<char> alive = alive_;
  for (Waiter& waiter : failed) {
    waiter.timer->cancel();
    waiter.done(std::unexpected(error));
    if (alive.expired()) return;  // a callback destroyed the pool
  }
}

void PgPool::Impl::scheduleReconnect() {
  if (reconnecting_) return;
  reconnecting_ = true;
  reconnect_timer_.expires_after(backoff_);
  reconnect_timer_.async_wait(
      [this, alive = std::weak_ptr<char>(alive_)](const boost::system::error_code& ec) {
        if (alive.expired() || ec) return;
        PgConnection::connect(loop_, options_.conninfo, options_.connect_timeout,
                              [this, alive](Result<std::unique_ptr<PgConnection>> result) {
                                if (alive.expired()) return;
                                onReconnected(std::move(result));
                              });
      });
}

void PgPool::Impl::onReconnected(Result<std::unique_ptr<PgConnection>> connection) {
  reconnecting_ = false;
  if (!connection) {
    down_ = std::move(connection.error());
    backoff_ = std::min(backoff_ * 2, kMaxBackoff);
    return scheduleReconnect();
  }
  down_.reset();
  backoff_ = kMinBackoff;
  // The probe becomes a pool connection if there is room (the dead ones may still be leased).
  if (open_ < options_.size) {
    ++open_;
    idle_.push_back(std::move(*connection));
  }
  dispatch();
}

void PgPool::Impl::release(std::unique_ptr<PgConnection> connection) {
  --leased_;
  // The next lessee must not receive the last one's notices (nor keep its captures alive).
  connection->setNoticeHandler(nullptr);
  if (!connection->healthy() || !connection->idle()) {
    // Broken, or still running a statement its lessee gave up on: close it. Its pending
    // callbacks never run. (This may run inside that connection's own callback: it copes.)
    --open_;
    connection.reset();
    return dispatch();
  }
  if (connection->inTransaction()) return rollBack(std::move(connection));
  idle_.push_back(std::move(connection));
  dispatch();
}

// A lessee that failed mid-transaction returned its connection: roll back before reuse, so
// the next request cannot join (and commit) the abandoned transaction.
void PgPool::Impl::rollBack(std::unique_ptr<PgConnection> connection) {
  PgConnection* raw = connection.get();
  resetting_.push_back(std::move(connection));
  raw->execute(
      "ROLLBACK", [this, alive = std::weak_ptr<char>(alive_), raw](Result<QueryResult> result) {
        // The pool owns the connection, so while the pool lives, so does `raw`.
        if (alive.expired()) return;
        auto found = std::find_if(resetting_.begin(), resetting_.end(),
                                  [raw](const auto& c) { return c.get() == raw; });
        if (found == resetting_.end()) return;
        std::unique_ptr<PgConnection> connection = std::move(*found);
        resetting_.erase(found);
        if (result && connection->healthy() && connection->idle() && !connection->inTransaction()) {
          idle_.push_back(std::move(connection));
        } else {
          --open_;
          connection.reset();
        }
        dispatch();
      });
}

void PgPool::Impl::timeOut(uint64_t waiter_id) {
  auto found = std::find_if(waiters_.begin(), waiters_.end(),
                            [waiter_id](const Waiter& w) { return w.id == waiter_id; });
  if (found == waiters_.end()) return;  // served or failed meanwhile
  AcquireCallback done = std::move(found->done);
  waiters_.erase(found);
  std::string waited = std::to_string(options_.acquire_timeout.count()) + " ms";
  std::string message = connecting_ == 0
                            ? "all " + std::to_string(options_.size) +
                                  " database connections are busy: none came free within " + waited
                            : "no database connection became available within " + waited + " (" +
                                  std::to_string(connecting_) + " still connecting to PostgreSQL)";
  done(fail(ErrorCode::kResourceExhausted, std::move(message)));
}

// Idle connections the server hung up on (restart, pg_terminate_backend) are noticed by their
// read wait; they are dropped here rather than handed out.
void PgPool::Impl::dropBrokenIdle() {
  auto broken =
      std::remove_if(idle_.begin(), idle_.end(), [](const auto& c) { return !c->healthy(); });
  open_ -= static_cast<size_t>(idle_.end() - broken);
  idle_.erase(broken, idle_.end());
}

void PgPool::Impl::failSoon(AcquireCallback done, Error error) {
  asio::post(loop_, [alive = std::weak_ptr<char>(alive_), done = std::move(done),
                     error = std::move(error)]() mutable {
    if (alive.expired()) return;
    done(std::unexpected(std::move(error)));
  });
}

PgLease::PgLease(PgLease&& other) noexcept
    : pool_(std::move(other.pool_)), connection_(std::move(other.connection_)) {}

PgLease& PgLease::operator=(PgLease&& other) noexcept {
  if (this != &other) {
    giveBack();
    pool_ = std::move(other.pool_);
    connection_ = std::move(other.connection_);
  }
  return *this;
}

PgLease::~PgLease() { giveBack(); }

void PgLease::giveBack() {
  if (connection_ == nullptr) return;
  if (pool_ != nullptr && *pool_ != nullptr) {
    (*pool_)->release(std::move(connection_));
  } else {
    connection_.reset();  // the pool is gone (shutdown): close
  }
  pool_.reset();
}

PgPool::PgPool(boost::asio::io_context& loop, PoolOptions options)
    : impl_(std::make_unique<Impl>(*this, loop, std::move(options))) {}

PgPool::~PgPool() {
  // Leases still out (in-flight work at shutdown) close their connections instead.
  *home_ = nullptr;
}

void PgPool::acquire(AcquireCallback done) { impl_->acquire(std::move(done)); }

void PgPool::release(std::unique_ptr<PgConnection> connection) {
  impl_->release(std::move(connection));
}

}  // namespace flux::data

// RecordFeed: new execution records as they are stored, for every live stream of the process
// (GET /_flux/records/stream), from ONE PostgreSQL connection per process.
//
// The recorder of any node sends one NOTIFY per committed batch on `flux_records`: a JSON array
// of summaries, or {"count", "min_id", "max_id"} when the array would not fit in a NOTIFY. The
// feed's thread LISTENs on its own connection (opened when the first subscriber comes, closed
// a while after the last one left), and for each notification reads the batch's summaries
// (with their first mutation, which the NOTIFY does not carry) in one query, only for the ids
// that some subscriber's filter lets through. Each record is framed as an SSE event once, then
// every subscriber gets the records its filter passes, posted to its own worker loop: the feed
// never waits for a subscriber, and a subscriber's slowness is its own (it bounds its buffer).
//
// Records seen twice (a range that overlaps another batch's) are delivered once: the feed
// remembers the last kRememberedIds ids it delivered.
//
// Subscribers hear, on their io_context:
//   feedReady()   LISTEN is active: every batch committed from now on will be delivered
//                 (a record committed just before may come too: subscribers deduplicate)
//   feedRecords() records that pass their filter, in id order within a batch
//   feedLost()    the feed cannot deliver (cannot connect, or lost its connection): nothing
//                 more comes, and the subscriber is forgotten
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "admin/record_queries.h"
#include "base/error.h"

namespace flux::admin {

// One stored execution, ready to send.
struct FeedRecord {
  std::string id;
  nlohmann::json summary;  // as GET /_flux/records has it (with `mutations`)
  std::string event;       // the SSE event "record" carrying it, framed once for everybody
};

using FeedBatch = std::vector<std::shared_ptr<const FeedRecord>>;

// Frames a summary as the stream's "record" event.
std::shared_ptr<const FeedRecord> makeFeedRecord(nlohmann::json summary);

// What the live stream of one client implements. Called on the io_context it subscribed with.
class FeedSubscriber {
 public:
  virtual ~FeedSubscriber() = default;
  virtual void feedReady() = 0;
  virtual void feedRecords(const FeedBatch& batch) = 0;
  virtual void feedLost(const Error& why) = 0;
};

struct RecordFeedOptions {
  std::string conninfo;
  std::string channel = "flux_records";
  std::chrono::seconds connect_timeout{2};
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{5000};
  // How long the connection stays open once nobody listens.
  std::chrono::milliseconds idle_close{30'000};
};

struct RecordFeedStats {
  bool listening = false;
  uint64_t subscribers = 0;
  uint64_t connects = 0;       // connections opened (and LISTENing) so far
  uint64_t notifications = 0;  // NOTIFYs taken
  uint64_t delivered = 0;      // records handed to subscribers (each record once, however many)
};

class RecordFeed {
 public:
  explicit RecordFeed(RecordFeedOptions options);
  // Stops the thread and closes the connection. Subscribers must be gone (unsubscribed) or
  // their loops stopped: nothing is posted after the destructor returns.
  ~RecordFeed();
  RecordFeed(const RecordFeed&) = delete;
  RecordFeed& operator=(const RecordFeed&) = delete;

  // Any thread. `subscriber` hears on `loop` (feedReady() first, once LISTEN is active). The
  // feed holds it weakly. Returns an id for unsubscribe().
  uint64_t subscribe(boost::asio::io_context& loop, RecordFilter filter,
                     std::weak_ptr<FeedSubscriber> subscriber);
  // Any thread. Once it returns, nothing more is posted for this subscriber.
  void unsubscribe(uint64_t id);

  RecordFeedStats stats() const;

  // How many delivered ids the feed remembers to deliver each record once.
  static constexpr size_t kRememberedIds = 100'000;

 private:
  struct Entry {
    boost::asio::io_context* loop = nullptr;
    RecordFilter filter;
    std::weak_ptr<FeedSubscriber> subscriber;
    bool ready_sent = false;
  };
  struct Connection;

  void run();
  void connect();
  void disconnect(const Error& why);
  void tellReady();
  void handleNotification(const std::string& payload);
  // The summaries a payload names (read back with their mutations), only those some
  // subscriber's filter passes; an error when the connection failed.
  Result<std::vector<nlohmann::json>> summariesOf(const std::string& payload);
  void deliver(std::vector<nlohmann::json> summaries);
  bool remembered(const std::string& id);
  void wake();

  const RecordFeedOptions options_;

  mutable std::mutex mutex_;
  std::unordered_map<uint64_t, Entry> entries_;
  uint64_t next_id_ = 0;
  bool stopping_ = false;
  bool connect_now_ = false;  // a subscriber came while waiting for a reconnect
  RecordFeedStats stats_;

  // Feed thread only.
  std::unique_ptr<Connection> conn_;
  std::chrono::steady_clock::time_point next_connect_{};
  std::chrono::milliseconds backoff_;
  std::chrono::steady_clock::time_point idle_since_{};
  std::deque<std::string> delivered_order_;
  std::unordered_set<std::string> delivered_;

  int wake_fd_ = -1;    // eventfd: subscribe, unsubscribe and the destructor wake the thread
  std::thread thread_;  // last: starts after everything above exists
};

}  // namespace flux::admin

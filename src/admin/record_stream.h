// RecordStream: one client of GET /_flux/records/stream, on the worker that took its request.
//
// The answer is Server-Sent Events (text/event-stream, chunked):
//
//   event: record        one execution: the summary of GET /_flux/records (id: its id)
//   event: live          {"now_us", "backfilled"}: the past records (since=) are all sent;
//                        what follows arrives as it is stored
//   event: end           {"reason", "message", "resume"}: the last event before the server
//                        closes the stream. reason "slow" (the client did not keep up),
//                        "feed_lost" (the server lost its PostgreSQL feed), "error" (reading
//                        the past failed), "shutdown"; resume: whether reconnecting with
//                        since= makes sense
//   : keep-alive         a comment every keepalive_interval
//
// How the past and the live records meet without a gap or a duplicate: the stream subscribes
// to the RecordFeed first and waits until it LISTENs; only then does it read the past (pages
// of recordBackfillQuery from since=, in start order), so that every record committed before
// that read began is in it and every one committed after is delivered live. Live records that
// come during the read wait in a bounded list; when the read is done they are sent, less those
// the read sent already. Records are not committed in start order (a slow request is stored
// after quicker ones that started later), so the ids sent by the read are remembered (the last
// kSeamIds of them) for seam_window after going live, and a live record among them is not sent
// again.
//
// Bounds: the read of the past waits while the client has more than backfill_pause_bytes
// unread; live records are never waited for: a client with more than max_queued_bytes unread
// (or more than max_pending records waiting during the read) is sent a final "end" with reason
// "slow" and cut off. A client that goes away is unsubscribed at once.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "admin/record_feed.h"
#include "admin/record_queries.h"
#include "data/pg_pool.h"
#include "net/http_message.h"

namespace flux::admin {

struct RecordStreamOptions {
  std::chrono::milliseconds keepalive_interval{15'000};
  size_t max_queued_bytes = 4 * 1024 * 1024;  // live: more unread than this drops the client
  size_t backfill_pause_bytes = 256 * 1024;   // the past: waits while more than this is unread
  size_t max_pending = 50'000;                // live records waiting for the past to be read
  int backfill_page = kMaxRecordLimit;
  std::chrono::milliseconds seam_window{120'000};
};

class RecordStream final : public FeedSubscriber,
                           public std::enable_shared_from_this<RecordStream> {
 public:
  // `done` runs (on this loop) once the stream is over, whatever ended it; `pool` and `feed`
  // must outlive the stream or its shutdown().
  RecordStream(boost::asio::io_context& loop, data::PgPool& pool, RecordFeed& feed,
               RecordStreamRequest request, RecordStreamOptions options, net::Responder respond,
               std::function<void()> done);
  ~RecordStream() override;

  // Subscribes to the feed; the answer's head goes out once the feed listens (or a 503 when
  // it cannot).
  void start();
  // The server is stopping: a final "end" (reason "shutdown"), and the feed forgets this
  // stream. `done` is not called.
  void shutdown();

  void feedReady() override;
  void feedRecords(const FeedBatch& batch) override;
  void feedLost(const Error& why) override;

  // How many record ids are remembered across the seam.
  static constexpr size_t kSeamIds = 200'000;

 private:
  enum class Phase { kWaitingForFeed, kBackfill, kLive, kOver };

  void onStreamOpen(std::shared_ptr<net::ResponseStream> stream);
  void readPage();
  void onLease(Result<data::PgLease> lease);
  void onPage(Result<data::QueryResult> result);
  void goLive();
  void send(const FeedRecord& record);
  void sendEnd(std::string_view reason, std::string_view message, bool resume);
  void keepAlive();
  bool tooSlow() const;
  void remember(const std::string& id);
  // Ends everything: unsubscribes, cancels timers, and calls done_ when asked.
  void finish(bool call_done);

  boost::asio::io_context& loop_;
  data::PgPool& pool_;
  RecordFeed& feed_;
  RecordStreamRequest request_;
  RecordStreamOptions options_;
  net::Responder respond_;
  std::function<void()> done_;

  Phase phase_ = Phase::kWaitingForFeed;
  std::optional<uint64_t> feed_id_;
  std::shared_ptr<net::ResponseStream> stream_;
  boost::asio::steady_timer keepalive_timer_;
  boost::asio::steady_timer pause_timer_;
  std::optional<data::PgLease> lease_;
  std::optional<std::string> after_;  // the past: the id of the last record read
  int64_t backfilled_ = 0;
  FeedBatch pending_;  // live records that came during the read of the past
  std::unordered_set<std::string> seen_;
  std::deque<std::string> seen_order_;
  std::chrono::steady_clock::time_point live_since_{};
};

}  // namespace flux::admin

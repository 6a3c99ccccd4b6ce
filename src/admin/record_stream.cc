#include "admin/record_stream.h"

#include <algorithm>

#include "admin/sse.h"
#include "base/json.h"

namespace flux::admin {

namespace {

using nlohmann::json;

// While the client has more than backfill_pause_bytes unread, the read of the past looks
// again this often.
constexpr std::chrono::milliseconds kPauseRecheck{20};

int64_t nowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string dumpJson(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

RecordStream::RecordStream(boost::asio::io_context& loop, data::PgPool& pool, RecordFeed& feed,
                           RecordStreamRequest request, RecordStreamOptions options,
                           net::Responder respond, std::function<void()> done)
    : loop_(loop),
      pool_(pool),
      feed_(feed),
      request_(std::move(request)),
      options_(options),
      respond_(std::move(respond)),
      done_(std::move(done)),
      keepalive_timer_(loop),
      pause_timer_(loop) {}

RecordStream::~RecordStream() {
  if (feed_id_) feed_.unsubscribe(*feed_id_);
}

void RecordStream::start() {
  const RecordFilter& filter = request_;
  feed_id_ = feed_.subscribe(loop_, filter, weak_from_this());
}

void RecordStream::feedReady() {
  if (phase_ != Phase::kWaitingForFeed) return;
  // From here on live records wait in pending_ until the past is sent.
  phase_ = Phase::kBackfill;
  net::HttpResponse response;
  response.status = 200;
  response.headers = {{"content-type", "text/event-stream; charset=utf-8"},
                      {"cache-control", "no-store"},
                      {"x-accel-buffering", "no"}};
  response.stream = [weak = weak_from_this()](std::shared_ptr<net::ResponseStream> stream) {
    if (auto self = weak.lock()) {
      self->onStreamOpen(std::move(stream));
    } else {
      stream->end();
    }
  };
  net::Responder respond = std::move(respond_);
  respond_ = nullptr;
  respond(std::move(response));
}

void RecordStream::onStreamOpen(std::shared_ptr<net::ResponseStream> stream) {
  if (phase_ == Phase::kOver) {
    stream->end();
    return;
  }
  stream_ = std::move(stream);
  stream_->onClose([weak = weak_from_this()] {
    if (auto self = weak.lock()) self->finish(/*call_done=*/true);
  });
  if (phase_ == Phase::kOver) return;  // it was closed already
  keepAlive();
  if (request_.since_us) {
    readPage();
  } else {
    goLive();
  }
}

void RecordStream::keepAlive() {
  keepalive_timer_.expires_after(options_.keepalive_interval);
  keepalive_timer_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (ec || !self || self->phase_ == Phase::kOver || !self->stream_) return;
    // A client that reads nothing gets no more of them: it is dropped at the next record.
    if (self->stream_->queuedBytes() <= self->options_.backfill_pause_bytes) {
      self->stream_->write(sseComment("keep-alive"));
    }
    self->keepAlive();
  });
}

void RecordStream::readPage() {
  if (phase_ != Phase::kBackfill) return;
  if (stream_->queuedBytes() > options_.backfill_pause_bytes) {
    // The client has not read the last pages yet: wait for it rather than fill memory.
    pause_timer_.expires_after(kPauseRecheck);
    pause_timer_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (!ec && self) self->readPage();
    });
    return;
  }
  pool_.acquire([weak = weak_from_this()](Result<data::PgLease> lease) {
    if (auto self = weak.lock()) self->onLease(std::move(lease));
  });
}

void RecordStream::onLease(Result<data::PgLease> lease) {
  if (phase_ != Phase::kBackfill) return;
  if (!lease) {
    sendEnd("error", "cannot read the past records: " + lease.error().message, true);
    return finish(true);
  }
  lease_ = std::move(*lease);
  SqlQuery query =
      recordBackfillQuery(request_, *request_.since_us, after_, options_.backfill_page);
  // Unprepared, as the list endpoint's: built per filter set.
  lease_->connection().query(std::move(query.sql), std::move(query.params), data::Prepare::kNo,
                             [weak = weak_from_this()](Result<data::QueryResult> result) {
                               if (auto self = weak.lock()) self->onPage(std::move(result));
                             });
}

void RecordStream::onPage(Result<data::QueryResult> result) {
  lease_.reset();
  if (phase_ != Phase::kBackfill) return;
  if (!result) {
    sendEnd("error", "cannot read the past records: " + result.error().message, true);
    return finish(true);
  }
  auto summaries = parseRecordSummaries(*result);
  if (!summaries) {
    sendEnd("error", "cannot read the past records: " + summaries.error().message, false);
    return finish(true);
  }
  bool more = summaries->size() > static_cast<size_t>(options_.backfill_page);
  if (more) summaries->resize(static_cast<size_t>(options_.backfill_page));
  for (json& summary : *summaries) {
    auto record = makeFeedRecord(std::move(summary));
    if (record->id.empty()) continue;
    after_ = record->id;
    remember(record->id);
    send(*record);
    ++backfilled_;
  }
  if (phase_ != Phase::kBackfill) return;
  if (more && !summaries->empty()) return readPage();
  goLive();
}

void RecordStream::goLive() {
  phase_ = Phase::kLive;
  live_since_ = std::chrono::steady_clock::now();
  FeedBatch pending = std::move(pending_);
  pending_.clear();
  for (const auto& record : pending) {
    if (seen_.contains(record->id)) continue;
    send(*record);
  }
  if (stream_) {
    stream_->write(
        sseEvent("live", dumpJson(json{{"now_us", nowUs()}, {"backfilled", backfilled_}})));
  }
  if (seen_.empty()) seen_order_.clear();
  if (tooSlow()) {
    sendEnd("slow", "the client did not keep up with the stream", true);
    finish(true);
  }
}

void RecordStream::feedRecords(const FeedBatch& batch) {
  switch (phase_) {
    case Phase::kWaitingForFeed:
    case Phase::kBackfill:
      pending_.insert(pending_.end(), batch.begin(), batch.end());
      if (pending_.size() > options_.max_pending) {
        sendEnd("slow", "too many new records arrived while the past ones were read", true);
        finish(true);
      }
      return;
    case Phase::kLive:
      break;
    case Phase::kOver:
      return;
  }
  if (!seen_.empty() && std::chrono::steady_clock::now() - live_since_ > options_.seam_window) {
    // Past the seam: a record the read of the past sent cannot come live any more.
    seen_.clear();
    seen_order_.clear();
  }
  for (const auto& record : batch) {
    if (!seen_.empty() && seen_.contains(record->id)) continue;
    send(*record);
  }
  if (tooSlow()) {
    sendEnd("slow",
            "the client did not keep up with the stream: more than " +
                std::to_string(options_.max_queued_bytes / 1024) + " KiB unread",
            true);
    finish(true);
  }
}

void RecordStream::feedLost(const Error& why) {
  feed_id_.reset();  // the feed forgot this stream already
  if (phase_ == Phase::kOver) return;
  if (respond_) {
    net::Responder respond = std::move(respond_);
    respond_ = nullptr;
    net::HttpResponse response =
        net::HttpResponse::json(503, jsonError("live records are unavailable: " + why.message));
    response.headers.push_back({"cache-control", "no-store"});
    respond(std::move(response));
    return finish(true);
  }
  sendEnd("feed_lost", why.message, true);
  finish(true);
}

void RecordStream::shutdown() {
  if (phase_ == Phase::kOver) return;
  sendEnd("shutdown", "the server is stopping", true);
  finish(false);
}

void RecordStream::send(const FeedRecord& record) {
  if (stream_) stream_->write(record.event);
}

void RecordStream::sendEnd(std::string_view reason, std::string_view message, bool resume) {
  if (!stream_ || stream_->closed()) return;
  stream_->write(sseEvent(
      "end", dumpJson(json{{"reason", reason}, {"message", message}, {"resume", resume}})));
  stream_->end();
}

bool RecordStream::tooSlow() const {
  return stream_ && stream_->queuedBytes() > options_.max_queued_bytes;
}

void RecordStream::remember(const std::string& id) {
  if (!seen_.insert(id).second) return;
  seen_order_.push_back(id);
  if (seen_order_.size() > kSeamIds) {
    seen_.erase(seen_order_.front());
    seen_order_.pop_front();
  }
}

void RecordStream::finish(bool call_done) {
  if (phase_ == Phase::kOver) return;
  auto self = shared_from_this();  // done_ may drop the last other reference
  phase_ = Phase::kOver;
  if (feed_id_) {
    feed_.unsubscribe(*feed_id_);
    feed_id_.reset();
  }
  keepalive_timer_.cancel();
  pause_timer_.cancel();
  lease_.reset();
  pending_.clear();
  seen_.clear();
  seen_order_.clear();
  if (stream_) {
    stream_->onClose(nullptr);
    stream_->end();
    stream_.reset();
  }
  if (call_done && done_) {
    auto done = std::move(done_);
    done_ = nullptr;
    done();
  }
}

}  // namespace flux::admin

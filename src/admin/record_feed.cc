#include "admin/record_feed.h"

#include <libpq-fe.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <boost/asio/post.hpp>

#include "admin/sse.h"
#include "record/blocking_connection.h"
#include "record/execution_record.h"

namespace flux::admin {

namespace {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

constexpr const char* kApplicationName = "flux-live-records";
// The longest the thread sleeps in poll() while connected: it checks the connection's health
// (and the idle close) at least this often.
constexpr int kPollMs = 1000;

struct ResultClearer {
  void operator()(PGresult* result) const { PQclear(result); }
};
using PgResult = std::unique_ptr<PGresult, ResultClearer>;

std::string lowerCase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

json emptyMutations() { return json{{"count", 0}, {"first", nullptr}}; }

}  // namespace

std::shared_ptr<const FeedRecord> makeFeedRecord(json summary) {
  auto record = std::make_shared<FeedRecord>();
  record->id = summary.value("id", "");
  std::string data = summary.dump(-1, ' ', false, json::error_handler_t::replace);
  record->event = sseEvent("record", data, record->id);
  record->summary = std::move(summary);
  return record;
}

struct RecordFeed::Connection {
  record::BlockingConnection conn;

  PGconn* get() const { return conn.get(); }

  // Runs a statement with text parameters and returns all its rows.
  Result<data::QueryResult> query(const SqlQuery& query) {
    std::vector<const char*> values;
    for (const auto& param : query.params) values.push_back(param ? param->c_str() : nullptr);
    PgResult result(PQexecParams(get(), query.sql.c_str(), static_cast<int>(values.size()), nullptr,
                                 values.data(), nullptr, nullptr, 0));
    ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
    if (status != PGRES_TUPLES_OK) {
      std::string message = result ? PQresultErrorMessage(result.get()) : PQerrorMessage(get());
      while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
        message.pop_back();
      }
      bool gone = PQstatus(get()) != CONNECTION_OK;
      return fail(gone ? ErrorCode::kUnavailable : ErrorCode::kInternal,
                  "cannot read new execution records: " + message);
    }
    data::QueryResult out;
    int columns = PQnfields(result.get());
    for (int c = 0; c < columns; ++c) {
      out.columns.push_back({PQfname(result.get(), c), PQftype(result.get(), c)});
    }
    int rows = PQntuples(result.get());
    out.rows.reserve(static_cast<size_t>(rows));
    for (int r = 0; r < rows; ++r) {
      std::vector<std::optional<std::string>> row;
      row.reserve(static_cast<size_t>(columns));
      for (int c = 0; c < columns; ++c) {
        if (PQgetisnull(result.get(), r, c)) {
          row.emplace_back();
        } else {
          row.emplace_back(std::string(PQgetvalue(result.get(), r, c),
                                       static_cast<size_t>(PQgetlength(result.get(), r, c))));
        }
      }
      out.rows.push_back(std::move(row));
    }
    out.affected = static_cast<uint64_t>(rows);
    return out;
  }
};

RecordFeed::RecordFeed(RecordFeedOptions options)
    : options_(std::move(options)), backoff_(options_.reconnect_min) {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  thread_ = std::thread([this] { run(); });
}

RecordFeed::~RecordFeed() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake();
  if (thread_.joinable()) thread_.join();
  if (wake_fd_ >= 0) close(wake_fd_);
}

void RecordFeed::wake() {
  uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!write(wake_fd_, &one, sizeof one);
}

uint64_t RecordFeed::subscribe(boost::asio::io_context& loop, RecordFilter filter,
                               std::weak_ptr<FeedSubscriber> subscriber) {
  uint64_t id;
  {
    std::lock_guard lock(mutex_);
    id = ++next_id_;
    entries_.emplace(id, Entry{&loop, std::move(filter), std::move(subscriber), false});
    stats_.subscribers = entries_.size();
    connect_now_ = true;
  }
  wake();
  return id;
}

void RecordFeed::unsubscribe(uint64_t id) {
  {
    std::lock_guard lock(mutex_);
    entries_.erase(id);
    stats_.subscribers = entries_.size();
  }
  wake();
}

RecordFeedStats RecordFeed::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void RecordFeed::run() {
  for (;;) {
    bool wanted;
    bool connect_now;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) break;
      wanted = !entries_.empty();
      connect_now = std::exchange(connect_now_, false);
    }
    auto now = SteadyClock::now();
    if (wanted) {
      idle_since_ = {};
      if (!conn_ && (connect_now || now >= next_connect_)) connect();
      if (conn_) tellReady();
    } else if (conn_) {
      if (idle_since_ == SteadyClock::time_point{}) idle_since_ = now;
      if (now - idle_since_ >= options_.idle_close) {
        conn_.reset();
        std::lock_guard lock(mutex_);
        stats_.listening = false;
      }
    }

    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {-1, POLLIN, 0}};
    int timeout = -1;
    if (conn_) {
      fds[1].fd = PQsocket(conn_->get());
      timeout = kPollMs;
    } else if (wanted) {
      auto wait =
          std::chrono::duration_cast<std::chrono::milliseconds>(next_connect_ - SteadyClock::now());
      timeout = static_cast<int>(std::clamp<int64_t>(wait.count(), 0, kPollMs));
    }
    int ready = poll(fds, conn_ ? 2 : 1, timeout);
    if (ready > 0 && (fds[0].revents & POLLIN) != 0) {
      uint64_t count;
      (void)!read(wake_fd_, &count, sizeof count);
    }
    if (!conn_) continue;

    if (PQconsumeInput(conn_->get()) == 0 || PQstatus(conn_->get()) != CONNECTION_OK) {
      disconnect(Error{ErrorCode::kUnavailable,
                       "the live stream lost its PostgreSQL connection: " +
                           std::string(PQerrorMessage(conn_->get())),
                       {}});
      continue;
    }
    // Notifications that arrive while a batch is read back are parsed by libpq then and wait
    // in its queue, where poll() cannot see them: take them until the queue is empty.
    while (conn_) {
      std::vector<std::string> payloads;
      while (PGnotify* notify = PQnotifies(conn_->get())) {
        payloads.emplace_back(notify->extra != nullptr ? notify->extra : "");
        PQfreemem(notify);
      }
      if (payloads.empty()) break;
      {
        std::lock_guard lock(mutex_);
        stats_.notifications += payloads.size();
      }
      for (const std::string& payload : payloads) {
        handleNotification(payload);
        if (!conn_) break;
      }
    }
  }
  conn_.reset();
}

void RecordFeed::connect() {
  auto opened = record::BlockingConnection::open(options_.conninfo, "stream new execution records",
                                                 options_.connect_timeout);
  Result<void> listening = opened ? Result<void>() : std::unexpected(opened.error());
  if (opened) {
    char* channel =
        PQescapeIdentifier(opened->get(), options_.channel.c_str(), options_.channel.size());
    std::string listen = "SET application_name = '" + std::string(kApplicationName) + "'; LISTEN " +
                         (channel != nullptr ? channel : "flux_records");
    if (channel != nullptr) PQfreemem(channel);
    listening = opened->exec(listen);
  }
  if (!listening) {
    next_connect_ = SteadyClock::now() + backoff_;
    backoff_ = std::min(backoff_ * 2, options_.reconnect_max);
    // The ones waiting are told at once: they answer 503 rather than hang.
    Error why = listening.error();
    why.message = "the live stream cannot listen for new records: " + why.message;
    std::lock_guard lock(mutex_);
    for (auto& [id, entry] : entries_) {
      boost::asio::post(*entry.loop, [subscriber = entry.subscriber, why] {
        if (auto target = subscriber.lock()) target->feedLost(why);
      });
    }
    entries_.clear();
    stats_.subscribers = 0;
    return;
  }
  PQsetnonblocking(opened->get(), 0);
  conn_ = std::make_unique<Connection>(Connection{std::move(*opened)});
  backoff_ = options_.reconnect_min;
  std::lock_guard lock(mutex_);
  stats_.listening = true;
  ++stats_.connects;
}

void RecordFeed::disconnect(const Error& why) {
  conn_.reset();
  next_connect_ = SteadyClock::now() + backoff_;
  std::lock_guard lock(mutex_);
  stats_.listening = false;
  // Whatever committed while the connection was down was not heard: the streams end, and
  // their clients resume from where they were (with a backfill), which closes the gap.
  for (auto& [id, entry] : entries_) {
    if (!entry.ready_sent) continue;
    boost::asio::post(*entry.loop, [subscriber = entry.subscriber, why] {
      if (auto target = subscriber.lock()) target->feedLost(why);
    });
  }
  std::erase_if(entries_, [](const auto& item) { return item.second.ready_sent; });
  stats_.subscribers = entries_.size();
}

void RecordFeed::tellReady() {
  std::lock_guard lock(mutex_);
  for (auto& [id, entry] : entries_) {
    if (entry.ready_sent) continue;
    entry.ready_sent = true;
    boost::asio::post(*entry.loop, [subscriber = entry.subscriber] {
      if (auto target = subscriber.lock()) target->feedReady();
    });
  }
}

Result<std::vector<json>> RecordFeed::summariesOf(const std::string& payload) {
  json parsed = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  std::vector<RecordFilter> filters;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, entry] : entries_) {
      if (entry.ready_sent) filters.push_back(entry.filter);
    }
  }
  if (filters.empty()) return std::vector<json>{};

  if (parsed.is_object()) {
    // {"count", "min_id", "max_id"}: the batch did not fit in the NOTIFY.
    std::string min_id = parsed.value("min_id", "");
    std::string max_id = parsed.value("max_id", "");
    if (!record::isCanonicalUuid(min_id) || !record::isCanonicalUuid(max_id)) {
      return std::vector<json>{};
    }
    auto rows = conn_->query(recordsInRangeQuery(lowerCase(min_id), lowerCase(max_id)));
    if (!rows) return std::unexpected(rows.error());
    auto summaries = parseRecordSummaries(*rows);
    if (!summaries) return std::vector<json>{};
    std::erase_if(*summaries, [&filters](const json& summary) {
      return std::none_of(filters.begin(), filters.end(), [&summary](const RecordFilter& filter) {
        return recordMatches(filter, summary);
      });
    });
    return std::move(*summaries);
  }
  if (!parsed.is_array()) return std::vector<json>{};

  // An array of summaries: those that some filter passes are read back with their mutations.
  std::vector<json> wanted;
  std::vector<std::string> ids;
  for (const json& element : parsed) {
    auto summary = record::summaryFromJson(element);
    if (!summary || !record::isCanonicalUuid(summary->id)) continue;
    json shown = record::toJson(*summary);
    if (std::none_of(filters.begin(), filters.end(), [&shown](const RecordFilter& filter) {
          return recordMatches(filter, shown);
        })) {
      continue;
    }
    ids.push_back(lowerCase(summary->id));
    wanted.push_back(std::move(shown));
  }
  if (ids.empty()) return std::vector<json>{};
  auto rows = conn_->query(recordsByIdQuery(ids));
  if (!rows && rows.error().code == ErrorCode::kUnavailable) return std::unexpected(rows.error());
  std::unordered_map<std::string, json> read_back;
  if (rows) {
    if (auto summaries = parseRecordSummaries(*rows)) {
      for (json& summary : *summaries) {
        std::string id = summary.value("id", "");
        read_back.emplace(std::move(id), std::move(summary));
      }
    }
  }
  // A row that could not be read (deleted meanwhile, or the query failed) is shown as the
  // NOTIFY has it, without its writes.
  std::vector<json> out;
  out.reserve(wanted.size());
  for (size_t i = 0; i < wanted.size(); ++i) {
    auto found = read_back.find(ids[i]);
    if (found != read_back.end()) {
      out.push_back(std::move(found->second));
    } else {
      json summary = std::move(wanted[i]);
      summary["mutations"] = emptyMutations();
      out.push_back(std::move(summary));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const json& a, const json& b) { return a.value("id", "") < b.value("id", ""); });
  return out;
}

void RecordFeed::handleNotification(const std::string& payload) {
  auto summaries = summariesOf(payload);
  if (!summaries) {
    disconnect(summaries.error());
    return;
  }
  deliver(std::move(*summaries));
}

bool RecordFeed::remembered(const std::string& id) {
  if (!delivered_.insert(id).second) return true;
  delivered_order_.push_back(id);
  if (delivered_order_.size() > kRememberedIds) {
    delivered_.erase(delivered_order_.front());
    delivered_order_.pop_front();
  }
  return false;
}

void RecordFeed::deliver(std::vector<json> summaries) {
  FeedBatch batch;
  for (json& summary : summaries) {
    std::string id = summary.value("id", "");
    if (id.empty() || remembered(id)) continue;
    batch.push_back(makeFeedRecord(std::move(summary)));
  }
  if (batch.empty()) return;
  std::lock_guard lock(mutex_);
  stats_.delivered += batch.size();
  for (auto& [id, entry] : entries_) {
    if (!entry.ready_sent) continue;
    FeedBatch mine;
    for (const auto& record : batch) {
      if (recordMatches(entry.filter, record->summary)) mine.push_back(record);
    }
    if (mine.empty()) continue;
    boost::asio::post(*entry.loop, [subscriber = entry.subscriber, mine = std::move(mine)] {
      if (auto target = subscriber.lock()) target->feedRecords(mine);
    });
  }
}

}  // namespace flux::admin

#include "record/recorder.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "record/copy_encoder.h"
#include "record/cpu_priority.h"
#include "record/json_writer.h"

namespace flux::record {
namespace {

using Clock = std::chrono::steady_clock;

// NOTIFY's payload must be shorter than 8000 bytes.
constexpr size_t kNotifyPayloadLimit = 7999;
// After a failed append to the spill file, the next attempt waits this long.
constexpr std::chrono::seconds kSpillRetryDelay{1};
// Between two lines saying that records pile up on a saturated CPU, at least this long.
constexpr std::chrono::seconds kFallingBehindQuiet{10};

RecorderOptions normalized(RecorderOptions options) {
  options.batch_size = std::max<size_t>(1, options.batch_size);
  options.max_queued = std::max(options.max_queued, options.batch_size);
  options.flush_interval = std::max(options.flush_interval, std::chrono::milliseconds(1));
  options.reconnect_min = std::max(options.reconnect_min, std::chrono::milliseconds(1));
  options.reconnect_max = std::max(options.reconnect_max, options.reconnect_min);
  return options;
}

// The COPY column list without its parentheses, for INSERT ... SELECT.
std::string columnList() {
  std::string columns = kExecutionCopyColumns;
  return columns.substr(1, columns.size() - 2);
}

bool isDuplicateKey(const Error& error) { return sqlstateOf(error) == "23505"; }

// A value PostgreSQL refused (data exception, or a constraint other than the primary key):
// the batch holds a record it will never take.
bool isDataError(const Error& error) {
  std::string state = sqlstateOf(error);
  return (state.starts_with("22") || state.starts_with("23")) && state != "23505";
}

}  // namespace

Recorder::Recorder(RecorderOptions options)
    : options_(normalized(std::move(options))),
      redactor_(options_.redaction),
      idle_priority_(options_.background_priority && canRaiseCpuPriority()),
      raise_at_(std::max(options_.batch_size, options_.max_queued / 2)),
      spill_(options_.spill_dir, "records.jsonl"),
      rejected_file_(options_.spill_dir, "records.rejected.jsonl"),
      backoff_(options_.reconnect_min) {
  thread_ = std::thread([this] { run(); });
}

Recorder::~Recorder() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_one();
  thread_.join();
  // Nothing is left (the thread stops once it took every submission), unless a submit() broke
  // the contract and raced the destructor.
  for (Submitted* node = submitted_.exchange(nullptr); node != nullptr;) {
    std::unique_ptr<Submitted> owned(node);
    node = node->next;
  }
}

void Recorder::submit(ExecutionRecord record) {
  submit(std::make_unique<ExecutionRecord>(std::move(record)));
}

void Recorder::submit(std::unique_ptr<ExecutionRecord> record) {
  auto* node = new Submitted{std::move(record), submitted_.load(std::memory_order_relaxed)};
  while (!submitted_.compare_exchange_weak(node->next, node, std::memory_order_release,
                                           std::memory_order_relaxed)) {
  }
  size_t count = submitted_count_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (count > raise_at_) {
    raisePriority();
    if (count > options_.max_queued) overflowed_.fetch_add(1, std::memory_order_relaxed);
  }
  // Without the lock a notify can slip in before the recorder sleeps: it then wakes at the
  // flush interval instead, which bounds the delay.
  if (count >= wake_at_.load(std::memory_order_relaxed)) ready_.notify_one();
}

void Recorder::subscribe(std::function<void(const RecordSummary&)> subscriber) {
  std::lock_guard<std::mutex> lock(subscribers_mutex_);
  subscribers_.push_back(std::move(subscriber));
}

RecorderStats Recorder::stats() const {
  RecorderStats stats;
  stats.stored = stored_.load(std::memory_order_relaxed);
  stats.spilled = spilled_.load(std::memory_order_relaxed);
  stats.replayed = replayed_.load(std::memory_order_relaxed);
  stats.rejected = rejected_.load(std::memory_order_relaxed);
  stats.dropped = dropped_.load(std::memory_order_relaxed);
  stats.overflowed = overflowed_.load(std::memory_order_relaxed);
  stats.batches = batches_.load(std::memory_order_relaxed);
  stats.raised = raises_.load(std::memory_order_relaxed);
  stats.notifications = notifications_.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(stats_mutex_);
  stats.connected = connected_;
  stats.last_error = last_error_;
  return stats;
}

void Recorder::prepare(ExecutionRecord& record) {
  locateError(record);
  redactor_.apply(record);
}

void Recorder::run() {
  if (idle_priority_) {
    thread_id_.store(gettid(), std::memory_order_relaxed);
    lowerPriority();
  }
  connectIfDue(ConnectAttempt::kNow);
  spill_waiting_ = spill_.exists();
  next_flush_ = Clock::now() + options_.flush_interval;
  bool final_connect_tried = false;
  for (;;) {
    bool stopping = takeSubmitted();
    if (stopping && pending_.empty()) break;
    auto now = Clock::now();
    if (idle_priority_) {
      if (pending_.size() > raise_at_) raisePriority();
      bool raised = raised_.load(std::memory_order_relaxed);
      if (raised && !raised_since_) {
        raised_since_ = now;
        sayFallingBehind(now);
      } else if (raised && pending_.size() < options_.batch_size) {
        lowerPriority();
        auto took = std::chrono::duration_cast<std::chrono::milliseconds>(now - *raised_since_);
        raised_since_.reset();
        if (behind_said_) {
          say(fmt::format("caught up after {} ms: recording waits for idle CPU again",
                          took.count()));
        }
      }
    }

    // The memory bound: the oldest beyond max_queued go to disk now, whatever PostgreSQL does.
    if (pending_.size() > options_.max_queued) {
      Batch oldest = takeOldest(pending_.size() - options_.max_queued);
      for (auto& record : oldest) prepare(*record);
      if (now >= spill_retry_at_ && spillBatch(oldest)) {
        publish(oldest);
      } else {
        dropped_.fetch_add(oldest.size(), std::memory_order_relaxed);
        say(fmt::format("lost {} records: more than {} waited and {} could not take them",
                        oldest.size(), options_.max_queued, spill_.path().string()));
      }
    }

    if (stopping && !conn_ && !final_connect_tried) {
      final_connect_tried = true;
      connectIfDue(ConnectAttempt::kNow);
    } else {
      connectIfDue(ConnectAttempt::kWhenDue);
    }

    bool flush_due = stopping || now >= next_flush_;
    bool can_write = conn_.has_value() || now >= spill_retry_at_ || stopping;
    if (can_write && !pending_.empty() && (pending_.size() >= options_.batch_size || flush_due)) {
      Batch batch = takeOldest(std::min(options_.batch_size, pending_.size()));
      bool written = writeBatch(std::move(batch), stopping ? Unwritten::kDrop : Unwritten::kKeep);
      if (!written || pending_.empty()) next_flush_ = Clock::now() + options_.flush_interval;
      continue;
    }
    if (flush_due) next_flush_ = now + options_.flush_interval;
    // Replay only while caught up with live records: under load the disk absorbs the burst.
    if (!stopping && conn_ && spill_waiting_ && pending_.size() < options_.batch_size) {
      if (auto replayed = replayChunk(); !replayed) setError(replayed.error());
    }
  }
}

bool Recorder::takeSubmitted() {
  auto now = Clock::now();
  bool stalled = !conn_ && now < spill_retry_at_;
  bool batch_ready = !stalled && pending_.size() >= options_.batch_size;
  bool replay_ready = conn_.has_value() && spill_waiting_;
  bool stopping = false;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!stopping_ && !batch_ready && !replay_ready) {
      // Stalled (nowhere to write), wake only for the memory bound; otherwise for a full batch.
      size_t threshold = stalled ? options_.max_queued + 1 : options_.batch_size;
      size_t wanted = threshold - std::min(pending_.size(), threshold - 1);
      wake_at_.store(wanted, std::memory_order_relaxed);
      ready_.wait_until(lock, next_flush_, [this, wanted] {
        return stopping_ || submitted_count_.load(std::memory_order_relaxed) >= wanted;
      });
      wake_at_.store(SIZE_MAX, std::memory_order_relaxed);
    }
    stopping = stopping_;
  }
  // Newest first on the stack: reversed into submission order.
  Submitted* node = submitted_.exchange(nullptr, std::memory_order_acquire);
  Submitted* oldest_first = nullptr;
  size_t taken = 0;
  while (node != nullptr) {
    Submitted* next = node->next;
    node->next = oldest_first;
    oldest_first = node;
    node = next;
    ++taken;
  }
  submitted_count_.fetch_sub(taken, std::memory_order_relaxed);
  while (oldest_first != nullptr) {
    std::unique_ptr<Submitted> owned(oldest_first);
    oldest_first = oldest_first->next;
    pending_.push_back(std::move(owned->record));
  }
  return stopping;
}

Recorder::Batch Recorder::takeOldest(size_t count) {
  Batch batch;
  batch.reserve(count);
  for (size_t i = 0; i < count && !pending_.empty(); ++i) {
    batch.push_back(std::move(pending_.front()));
    pending_.pop_front();
  }
  return batch;
}

bool Recorder::writeBatch(Batch batch, Unwritten unwritten) {
  for (auto& record : batch) prepare(*record);
  rejectUnstorable(batch);
  if (batch.empty()) return true;
  if (conn_) {
    auto stored = storeLive(batch);
    if (stored) {
      stored_.fetch_add(*stored, std::memory_order_relaxed);
      batches_.fetch_add(1, std::memory_order_relaxed);
      publish(batch);
      return true;
    }
    disconnect(stored.error());
  }
  if (spillBatch(batch)) {
    publish(batch);
    return true;
  }
  if (unwritten == Unwritten::kDrop) {
    dropped_.fetch_add(batch.size(), std::memory_order_relaxed);
    say(fmt::format("lost {} records at shutdown: neither PostgreSQL nor {} took them",
                    batch.size(), spill_.path().string()));
    return false;
  }
  for (auto it = batch.rbegin(); it != batch.rend(); ++it) pending_.push_front(std::move(*it));
  return false;
}

bool Recorder::spillBatch(Batch& batch) {
  if (batch.empty()) return true;
  std::string lines;
  for (const auto& record : batch) {
    JsonWriter(lines, NulCharacter::kEscape).record(*record);
    lines += '\n';
  }
  if (auto appended = spill_.append(lines); !appended) {
    setError(appended.error());
    spill_retry_at_ = Clock::now() + kSpillRetryDelay;
    return false;
  }
  spilled_.fetch_add(batch.size(), std::memory_order_relaxed);
  spill_waiting_ = true;
  return true;
}

void Recorder::rejectUnstorable(Batch& batch) {
  auto storable = std::stable_partition(batch.begin(), batch.end(), [](const auto& record) {
    return checkStorable(*record).has_value();
  });
  if (storable == batch.end()) return;
  Batch rejected(std::make_move_iterator(storable), std::make_move_iterator(batch.end()));
  batch.erase(storable, batch.end());
  for (const auto& record : rejected) {
    reject(toJsonText(*record), checkStorable(*record).error());
  }
  publish(rejected);
}

Result<size_t> Recorder::storeLive(const Batch& batch) {
  std::string rows = encodeCopyData(batch);
  std::string payload = notifyPayload(batch);
  const std::string* notify = options_.notify_channel.empty() ? nullptr : &payload;
  auto attempt = [&]() -> Result<void> {
    if (auto ok = conn_->exec("BEGIN"); !ok) return ok;
    auto copied = conn_->copyIn(std::string("COPY flux.executions ") + kExecutionCopyFrom, rows);
    if (!copied) return std::unexpected(copied.error());
    if (notify != nullptr) {
      if (auto ok = conn_->query("SELECT pg_notify($1, $2)", {options_.notify_channel, *notify});
          !ok) {
        return std::unexpected(ok.error());
      }
    }
    return conn_->exec("COMMIT");
  };
  auto result = attempt();
  if (result) {
    if (notify != nullptr) notifications_.fetch_add(1, std::memory_order_relaxed);
    return batch.size();
  }
  if (!conn_->healthy()) return std::unexpected(result.error());
  (void)conn_->exec("ROLLBACK");
  // A record already stored (submitted twice, or its id reused): keep the first, store the rest.
  if (isDuplicateKey(result.error())) {
    result = storeDeduplicated(batch, notify);
    if (result) return batch.size();
  }
  if (isDataError(result.error())) return storeOneByOne(batch, notify);
  return std::unexpected(result.error());
}

Result<void> Recorder::storeDeduplicated(const Batch& batch, const std::string* notify_payload) {
  std::string rows = encodeCopyData(batch);
  auto attempt = [&]() -> Result<void> {
    for (const char* step :
         {"BEGIN",
          // ON COMMIT DELETE ROWS: the stage is empty at every transaction's start.
          "CREATE TEMP TABLE IF NOT EXISTS flux_record_stage (LIKE flux.executions) "
          "ON COMMIT DELETE ROWS"}) {
      if (auto ok = conn_->exec(step); !ok) return ok;
    }
    auto copied = conn_->copyIn(std::string("COPY flux_record_stage ") + kExecutionCopyFrom, rows);
    if (!copied) return std::unexpected(copied.error());
    std::string columns = columnList();
    if (auto ok = conn_->exec("INSERT INTO flux.executions (" + columns + ") SELECT " + columns +
                              " FROM flux_record_stage ON CONFLICT (id) DO NOTHING");
        !ok) {
      return ok;
    }
    if (notify_payload != nullptr) {
      auto notified =
          conn_->query("SELECT pg_notify($1, $2)", {options_.notify_channel, *notify_payload});
      if (!notified) return std::unexpected(notified.error());
    }
    return conn_->exec("COMMIT");
  };
  auto result = attempt();
  if (result) {
    if (notify_payload != nullptr) notifications_.fetch_add(1, std::memory_order_relaxed);
    return {};
  }
  if (conn_->healthy()) (void)conn_->exec("ROLLBACK");
  return result;
}

Result<size_t> Recorder::storeOneByOne(const Batch& batch, const std::string* notify_payload) {
  // Rare: a value PostgreSQL refuses. Each record in its own transaction finds the culprit.
  Batch one;
  one.push_back(nullptr);
  size_t stored_count = 0;
  for (const auto& boxed : batch) {
    const ExecutionRecord& record = *boxed;
    one[0] = std::make_unique<ExecutionRecord>(record);
    auto stored = storeDeduplicated(one, nullptr);
    if (stored) {
      ++stored_count;
      continue;
    }
    if (!isDataError(stored.error())) return std::unexpected(stored.error());
    reject(toJsonText(record), stored.error());
  }
  if (notify_payload != nullptr && stored_count > 0) {
    // Still one NOTIFY for the batch, after its records were committed one by one.
    if (conn_->query("SELECT pg_notify($1, $2)", {options_.notify_channel, *notify_payload})) {
      notifications_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return stored_count;
}

Result<void> Recorder::replayChunk() {
  std::optional<Error> store_error;
  auto outcome = spill_.replayChunk(
      options_.batch_size,
      [this, &store_error](const std::vector<std::string_view>& lines) -> Result<void> {
        Batch batch;
        std::vector<std::pair<std::string, Error>> unreadable;
        for (std::string_view line : lines) {
          auto record = recordFromJsonText(line);
          if (record) {
            redactor_.apply(*record);
            if (auto storable = checkStorable(*record); !storable) {
              unreadable.emplace_back(std::string(line), storable.error());
              continue;
            }
            batch.push_back(std::make_unique<ExecutionRecord>(std::move(*record)));
          } else {
            unreadable.emplace_back(std::string(line), record.error());
          }
        }
        if (!batch.empty()) {
          size_t count = batch.size();
          auto stored = storeDeduplicated(batch, nullptr);
          if (!stored && isDataError(stored.error())) {
            auto one_by_one = storeOneByOne(batch, nullptr);
            if (one_by_one) {
              count = *one_by_one;
              stored = {};
            } else {
              stored = std::unexpected(one_by_one.error());
            }
          }
          if (!stored) {
            store_error = stored.error();
            return stored;
          }
          replayed_.fetch_add(count, std::memory_order_relaxed);
        }
        for (const auto& [line, error] : unreadable) reject(line, error);
        return {};
      });
  if (outcome) {
    if (outcome->removed) {
      spill_waiting_ = false;
      say(fmt::format("{} replayed into flux.executions and removed", spill_.path().string()));
    }
    return {};
  }
  if (store_error) {
    disconnect(*store_error);
    return {};
  }
  // The file itself failed: leave it for the next spill or the next start rather than retry
  // it in a loop.
  spill_waiting_ = false;
  return std::unexpected(outcome.error());
}

void Recorder::connectIfDue(ConnectAttempt attempt) {
  if (conn_) return;
  auto now = Clock::now();
  if (attempt == ConnectAttempt::kWhenDue && now < next_connect_) return;
  auto conn =
      BlockingConnection::open(options_.conninfo, "record executions", options_.connect_timeout);
  if (!conn) {
    reportDown(conn.error());
    next_connect_ = Clock::now() + backoff_;
    backoff_ = std::min(backoff_ * 2, options_.reconnect_max);
    return;
  }
  conn_.emplace(std::move(*conn));
  if (idle_priority_) placeBackend();
  backoff_ = options_.reconnect_min;
  setConnected(true);
  // Records another process (or an earlier one) spilled wait there too.
  spill_waiting_ = spill_waiting_ || spill_.exists();
  if (down_reported_) {
    down_reported_ = false;
    say("PostgreSQL takes records again" +
        std::string(spill_waiting_ ? "; the spill file is replayed" : ""));
  }
}

void Recorder::placeBackend() {
  const char* host = PQhost(conn_->get());
  if (host == nullptr || host[0] != '/') return;  // not a Unix socket: not our machine's process
  auto pid = conn_->query("SELECT pg_backend_pid()", {});
  if (!pid || !*pid) return;
  backend_id_.store(static_cast<pid_t>(std::atoi((*pid)->c_str())), std::memory_order_relaxed);
  bool raised = raised_.load(std::memory_order_relaxed);
  setCpuPriority(backend_id_.load(std::memory_order_relaxed),
                 raised ? CpuPriority::kNormal : CpuPriority::kIdle);
}

void Recorder::raisePriority() {
  if (!idle_priority_ || raised_.load(std::memory_order_relaxed) ||
      raised_.exchange(true, std::memory_order_relaxed)) {
    return;
  }
  raises_.fetch_add(1, std::memory_order_relaxed);
  // Before the thread stored its id it runs at normal priority still: nothing to raise.
  if (pid_t thread = thread_id_.load(std::memory_order_relaxed); thread != 0) {
    setCpuPriority(thread, CpuPriority::kNormal);
  }
  if (pid_t backend = backend_id_.load(std::memory_order_relaxed); backend != 0) {
    setCpuPriority(backend, CpuPriority::kNormal);
  }
}

void Recorder::lowerPriority() {
  setCpuPriority(gettid(), CpuPriority::kIdle);
  if (pid_t backend = backend_id_.load(std::memory_order_relaxed); backend != 0) {
    setCpuPriority(backend, CpuPriority::kIdle);
  }
  // Cleared after lowering: a submit that finds it set meanwhile leaves the raise to the next.
  raised_.store(false, std::memory_order_relaxed);
}

void Recorder::disconnect(const Error& error) {
  reportDown(error);
  conn_.reset();
  backend_id_.store(0, std::memory_order_relaxed);
  setConnected(false);
  next_connect_ = Clock::now() + backoff_;
  backoff_ = std::min(backoff_ * 2, options_.reconnect_max);
}

void Recorder::publish(const Batch& batch) {
  std::vector<std::function<void(const RecordSummary&)>> subscribers;
  {
    std::lock_guard<std::mutex> lock(subscribers_mutex_);
    subscribers = subscribers_;
  }
  if (subscribers.empty()) return;
  for (const auto& record : batch) {
    RecordSummary summary = RecordSummary::of(*record);
    for (const auto& subscriber : subscribers) subscriber(summary);
  }
}

void Recorder::reject(const std::string& line, const Error& error) {
  nlohmann::json entry = {{"error", error.toString()}};
  nlohmann::json parsed = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    entry["line"] = line;
  } else {
    entry["record"] = std::move(parsed);
  }
  rejected_.fetch_add(1, std::memory_order_relaxed);
  setError(error);
  say(fmt::format("set aside a record flux.executions cannot hold ({}) in {}", error.message,
                  rejected_file_.path().string()));
  if (auto appended = rejected_file_.append(dumpJson(entry) + "\n"); !appended) {
    setError(appended.error());
  }
}

void Recorder::reportDown(const Error& error) {
  setError(error);
  if (down_reported_) return;
  down_reported_ = true;
  say(fmt::format("PostgreSQL cannot take records ({}): they go to {} until it can", error.message,
                  spill_.path().string()));
}

void Recorder::sayFallingBehind(SteadyTime now) {
  // Under sustained saturation this happens every few seconds: one line per quiet period.
  behind_said_ = now >= quiet_until_;
  if (!behind_said_) {
    ++behind_unsaid_;
    return;
  }
  std::string since = behind_unsaid_ == 0
                          ? ""
                          : fmt::format(" ({} more times since the last report)", behind_unsaid_);
  say(fmt::format(
      "{} records waiting and no idle CPU: recording runs at normal priority, taking its share "
      "from requests, until it caught up{}",
      pending_.size(), since));
  behind_unsaid_ = 0;
  quiet_until_ = now + kFallingBehindQuiet;
}

void Recorder::say(std::string line) {
  if (options_.log) options_.log(std::move(line));
}

void Recorder::setError(const Error& error) {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  last_error_ = error.toString();
}

void Recorder::setConnected(bool connected) {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  connected_ = connected;
}

std::string Recorder::notifyPayload(const Batch& batch) const {
  std::string payload = "[";
  bool fits = true;
  JsonWriter writer(payload, NulCharacter::kEscape);
  for (const auto& record : batch) {
    if (payload.size() > 1) payload += ',';
    writer.summary(RecordSummary::of(*record));
    if (payload.size() + 1 > kNotifyPayloadLimit) {
      fits = false;
      break;
    }
  }
  if (fits) return payload + "]";
  // Too many for one NOTIFY: other nodes read these ids' rows themselves (UUIDv7 ids sort by
  // time, so the range covers the batch).
  auto [min, max] = std::minmax_element(batch.begin(), batch.end(),
                                        [](const auto& a, const auto& b) { return a->id < b->id; });
  return dumpJson({{"count", batch.size()}, {"min_id", (*min)->id}, {"max_id", (*max)->id}});
}

}  // namespace flux::record

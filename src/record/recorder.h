// Recorder: takes finished execution records from any thread and stores them in
// flux.executions, off the request path.
//
// Design. Workers call submit() after the response is sent: a lock-free push of the (boxed)
// record onto a stack and, once a batch is full while the recorder sleeps, a condition-variable
// notify. The recorder thread takes the stack whole (workers never wait on it), wakes every
// flush_interval, and writes what it has in batches of batch_size:
//   BEGIN; COPY flux.executions FROM STDIN (binary); SELECT pg_notify(channel, summaries); COMMIT
// (one transaction, one NOTIFY per batch; the payload is a JSON array of RecordSummary, or
// {"count", "min_id", "max_id"} when the array would not fit in NOTIFY's 8000 bytes).
// Before anything leaves memory it is redacted (Redactor) on this thread.
//
// When PostgreSQL cannot take a batch (unreachable, restarting, or the statement failed), the
// batch is appended to <spill_dir>/records.jsonl (one record's JSON a line, fdatasync per
// batch) and the recorder reconnects with backoff (reconnect_min doubling to reconnect_max).
// Once connected, and caught up with live records, it replays the spill file in chunks of
// batch_size, each COPied into a temporary table and moved with INSERT ... ON CONFLICT (id) DO
// NOTHING, so a record stored twice (a COMMIT whose answer was lost, a replay cut short) is
// kept once; the file is removed only after its last chunk committed. A spill file left by an
// earlier process is replayed the same way at start.
//
// A record flux.executions cannot hold (an id that is not a UUID, a start before 1970, a value
// PostgreSQL refuses) is set aside in <spill_dir>/records.rejected.jsonl, never retried.
//
// Memory bound: the recorder holds at most max_queued records; beyond that it spills the
// oldest at once (disk, never PostgreSQL). submit() never blocks and never drops: between two
// steps of the recorder thread the submitted stack grows, by the submit rate x the longest step
// (one batch write; one connect attempt, bounded by connect_timeout; a stalled socket, bounded
// by TCP user timeout / keepalives of ~30 s). With background_priority the recorder and its
// backend run at idle priority, which under a saturated CPU means not at all: so once more than
// half of max_queued records wait, the first submit (or the recorder) to see it raises both to
// normal priority, and the recorder lowers them again once it caught up (under a batch waiting).
// Under sustained saturation recording then costs the workers its full price (~61k
// instructions a hello record, recorder and PostgreSQL together, about what serving the hello
// request takes) instead of deferring it: bench/record.sh's later seconds show ~0.8x.
// In bytes: a hello record holds ~2 KB, 200 MB at the default 100,000, as long as the gateway
// caps bodies when it captures them (Redactor::capBody), since the recorder's own cap comes
// later. Records are lost only when PostgreSQL and the spill file fail together while more
// than max_queued wait (counted in `dropped`).
//
// Cost, in instructions (timings swing by a third on this shared 2-core VM): a hello record
// takes ~28k on the recorder thread (redaction ~7k, JSON and COPY encoding ~15k, freeing it the
// rest; bench/request_instructions.sh) and ~33k in PostgreSQL to store
// (bench/record_instructions.sh; the primary key and the handle index ~16k of it). A worker
// pays 1-3k to capture and submit it. Past what the idle CPU can store, the priority rises as
// above.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "record/blocking_connection.h"
#include "record/execution_record.h"
#include "record/redactor.h"
#include "record/spill_file.h"

namespace flux::record {

struct RecorderOptions {
  std::string conninfo;
  std::filesystem::path spill_dir;  // .flux/ of the project, or a configured directory
  size_t batch_size = 1000;
  std::chrono::milliseconds flush_interval{50};
  size_t max_queued = 100000;
  std::string notify_channel = "flux_records";
  // Serving requests comes first: the recorder thread, and its PostgreSQL backend when that runs
  // on this machine (a Unix-socket connection, e.g. the embedded cluster), run at idle CPU
  // priority (cpu_priority.h) until records pile up (see the memory bound above). Only where the
  // process may raise them again (CAP_SYS_NICE or RLIMIT_NICE); elsewhere they stay at normal
  // priority, because the bound comes first.
  bool background_priority = false;
  RedactionOptions redaction;
  std::chrono::milliseconds reconnect_min{100};  // backoff after a failure, doubling
  std::chrono::milliseconds reconnect_max{5000};
  std::chrono::seconds connect_timeout{2};
  // Called on the recorder thread with a line for the operator when recording changes course:
  // PostgreSQL lost or back (records go to the spill file meanwhile), the spill file replayed,
  // records piling up on a saturated CPU and caught up again, records set aside or lost. Quick
  // and non-throwing, like a subscriber; unset, nothing is said.
  std::function<void(std::string)> log;
};

struct RecorderStats {
  uint64_t stored = 0;      // submitted records committed to flux.executions
  uint64_t spilled = 0;     // records appended to the spill file
  uint64_t replayed = 0;    // spill file records committed (those already there included)
  uint64_t rejected = 0;    // records set aside in records.rejected.jsonl
  uint64_t dropped = 0;     // records lost (see the design note)
  uint64_t overflowed = 0;  // submits that found more than max_queued records waiting
  uint64_t batches = 0;     // transactions that committed submitted records
  uint64_t raised = 0;      // times records piled up and the recorder left idle priority
  uint64_t notifications = 0;
  bool connected = false;
  std::string last_error;  // the last failure, for status pages; empty if none yet
};

class Recorder {
 public:
  // Starts the recorder thread, which connects (and replays a spill file left behind) at once.
  explicit Recorder(RecorderOptions options);
  // Writes everything submitted before (to PostgreSQL, else to the spill file), then joins.
  // No submit() may run concurrently with or after the destructor.
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // Any thread. Never blocks on I/O. The record travels boxed from here to its batch: a
  // record is ~1 KB of strings and optionals, and moving it costs more than the box.
  void submit(std::unique_ptr<ExecutionRecord> record);
  void submit(ExecutionRecord record);

  // Any thread. The subscriber is called on the recorder thread with the summary of every
  // submitted record, after its batch was committed or spilled (or set aside as rejected). It
  // must be quick: the recorder writes nothing while it runs.
  void subscribe(std::function<void(const RecordSummary&)> subscriber);

  RecorderStats stats() const;

  // Any thread. For measurement only (FLUX_RECORD=switchable, bench/record.sh): while paused,
  // the gateway builds and submits no record, as if it had no recorder.
  void setPaused(bool paused) { paused_.store(paused, std::memory_order_relaxed); }
  bool paused() const { return paused_.load(std::memory_order_relaxed); }

 private:
  using Batch = std::vector<std::unique_ptr<ExecutionRecord>>;
  using SteadyTime = std::chrono::steady_clock::time_point;
  // What writeBatch does with a batch that neither PostgreSQL nor the spill file took.
  enum class Unwritten { kKeep, kDrop };
  enum class ConnectAttempt { kWhenDue, kNow };

  // Recorder thread.
  void run();
  // Waits for work, then moves the submitted records into pending_. Returns whether the
  // destructor asked to stop.
  bool takeSubmitted();
  Batch takeOldest(size_t count);
  // Writes a batch to PostgreSQL, else to the spill file; false when neither took it.
  bool writeBatch(Batch batch, Unwritten unwritten);
  // Appends to the spill file; after a failure, callers wait until spill_retry_at_.
  bool spillBatch(Batch& batch);
  // Moves records that cannot be stored out of batch into records.rejected.jsonl.
  void rejectUnstorable(Batch& batch);
  // Each returns how many records it committed; a record PostgreSQL refuses is rejected.
  Result<size_t> storeLive(const Batch& batch);
  Result<void> storeDeduplicated(const Batch& batch, const std::string* notify_payload);
  Result<size_t> storeOneByOne(const Batch& batch, const std::string* notify_payload);
  Result<void> replayChunk();
  // Places the record's error in its span, then redacts it. What the request path captured raw
  // stays raw: the writers store it (JsonWriter::capture, JsonWriter::spans).
  void prepare(ExecutionRecord& record);
  void connectIfDue(ConnectAttempt attempt);
  void disconnect(const Error& error);
  // background_priority: the backend's process id when it runs here, at the recorder's priority.
  void placeBackend();
  // Any thread: normal CPU priority for the recorder and its backend, until it caught up.
  void raisePriority();
  // Recorder thread: back to idle priority.
  void lowerPriority();
  void publish(const Batch& batch);
  void reject(const std::string& line, const Error& error);
  void setError(const Error& error);
  void setConnected(bool connected);
  // options_.log, when set.
  void say(std::string line);
  // PostgreSQL cannot take records: said once, until it takes them again.
  void reportDown(const Error& error);
  // Records pile up on a saturated CPU (the priority was raised): said at most once a while.
  void sayFallingBehind(SteadyTime now);
  std::string notifyPayload(const Batch& batch) const;

  const RecorderOptions options_;
  const Redactor redactor_;
  const bool idle_priority_;  // background_priority, where it can be raised again
  const size_t raise_at_;     // more records waiting than this raise the priority

  // Shared with submitters, without a lock on their side: the recorder runs at SCHED_IDLE, and a
  // lock it held while the scheduler left it waiting would stall every worker (measured: p99
  // of tens of ms under saturation). Submissions form a lock-free stack that the recorder
  // takes whole.
  struct Submitted {
    std::unique_ptr<ExecutionRecord> record;
    Submitted* next = nullptr;
  };
  std::atomic<Submitted*> submitted_{nullptr};
  std::atomic<size_t> submitted_count_{0};
  // The recorder sleeps until this many records are submitted (or the flush interval ends);
  // a submitter that reaches it notifies. SIZE_MAX while the recorder is awake.
  std::atomic<size_t> wake_at_{SIZE_MAX};
  // Set once the recorder thread lowered itself / placed its backend; 0 before and between.
  std::atomic<pid_t> thread_id_{0};
  std::atomic<pid_t> backend_id_{0};
  std::atomic<bool> raised_{false};
  std::atomic<bool> paused_{false};
  std::mutex mutex_;  // the recorder's sleep, and stopping_
  std::condition_variable ready_;
  bool stopping_ = false;

  std::mutex subscribers_mutex_;
  std::vector<std::function<void(const RecordSummary&)>> subscribers_;

  // Recorder thread only.
  std::deque<std::unique_ptr<ExecutionRecord>> pending_;
  std::optional<BlockingConnection> conn_;
  SpillFile spill_;
  SpillFile rejected_file_;
  bool spill_waiting_ = false;  // the spill file may hold records to replay
  std::chrono::milliseconds backoff_;
  SteadyTime next_connect_{};
  SteadyTime next_flush_{};
  SteadyTime spill_retry_at_{};             // after a failed append, the next attempt
  bool down_reported_ = false;              // said that PostgreSQL cannot take records
  std::optional<SteadyTime> raised_since_;  // the priority was raised then, not lowered since
  bool behind_said_ = false;                // sayFallingBehind said it for this raise
  uint64_t behind_unsaid_ = 0;              // raises since the last line about one
  SteadyTime quiet_until_{};                // no line about a raise before

  mutable std::mutex stats_mutex_;
  std::string last_error_;
  bool connected_ = false;
  std::atomic<uint64_t> stored_{0}, spilled_{0}, replayed_{0}, rejected_{0}, dropped_{0},
      overflowed_{0}, batches_{0}, raises_{0}, notifications_{0};

  std::thread thread_;  // last: starts after everything above exists
};

}  // namespace flux::record

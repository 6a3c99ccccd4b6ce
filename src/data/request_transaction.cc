#include "data/request_transaction.h"

#include "data/mutation_log.h"

namespace flux::data {

namespace {

// The captured mutations as runs of one rolled_back flag, in capture order: each run becomes
// one store statement (a JSON array for kStoreCapturedSql), so the log's ids follow the order
// the writes happened in.
std::vector<std::pair<std::string, bool>> storeRuns(const std::vector<CapturedMutation>& captured,
                                                    bool all_rolled_back) {
  std::vector<std::pair<std::string, bool>> runs;
  for (const CapturedMutation& m : captured) {
    bool rolled_back = all_rolled_back || m.rolled_back;
    if (runs.empty() || runs.back().second != rolled_back) runs.emplace_back("[", rolled_back);
    std::string& json = runs.back().first;
    if (json.size() > 1) json.push_back(',');
    json += m.payloads;
  }
  for (auto& [json, rolled_back] : runs) json.push_back(']');
  return runs;
}

}  // namespace

RequestTransaction::RequestTransaction(PgPool& pool, std::string request_id)
    : pool_(pool), request_id_(std::move(request_id)) {}

RequestTransaction::~RequestTransaction() {
  *alive_ = false;
  if (lease_) lease_.connection().setNoticeHandler(nullptr);
}

void RequestTransaction::open() {
  state_ = State::kOpening;
  pool_.acquire([this, alive = alive_](Result<PgLease> lease) mutable {
    if (!*alive) return;
    auto begin = beginRequestTransactionSql(request_id_);
    if (!lease || !begin) {
      state_ = State::kFailed;
      failure_ = lease ? begin.error() : lease.error();
      auto waiting = std::move(waiting_);
      for (auto& step : waiting) step(std::unexpected(failure_));
      return;
    }
    lease_ = std::move(*lease);
    lease_.connection().setNoticeHandler([this](const PgNotice& notice) {
      if (notice.sqlstate == kCaptureNoticeSqlstate) {
        captured_.push_back({notice.message, false});
      } else if (notice.sqlstate == kRolledBackCaptureNoticeSqlstate) {
        // "[p1,p2,...]": kept without the brackets, so that storeRuns can join it with others.
        const std::string& array = notice.message;
        if (array.size() > 2 && array.front() == '[' && array.back() == ']') {
          captured_.push_back({array.substr(1, array.size() - 2), true});
        }
      }
    });
    // Queued behind BEGIN on the connection: the steps need not wait for its answer.
    lease_.connection().execute(std::move(*begin), [](Result<QueryResult>) {});
    state_ = State::kOpen;
    auto waiting = std::move(waiting_);
    for (auto& step : waiting) step(&lease_.connection());
  });
}

void RequestTransaction::whenOpen(std::move_only_function<void(Result<PgConnection*>)> step) {
  switch (state_) {
    case State::kOpen:
      return step(&lease_.connection());
    case State::kFailed:
      return step(std::unexpected(failure_));
    case State::kFinished:
      return step(std::unexpected(
          Error{ErrorCode::kInvalidArgument,
                "the request's transaction has ended: a db call after the response was sent",
                {}}));
    case State::kIdle:
      waiting_.push_back(std::move(step));
      return open();
    case State::kOpening:
      waiting_.push_back(std::move(step));
      return;
  }
}

void RequestTransaction::query(std::string sql, QueryParams params, Prepare prepare,
                               QueryCallback done) {
  whenOpen([sql = std::move(sql), params = std::move(params), prepare,
            done = std::move(done)](Result<PgConnection*> connection) mutable {
    if (!connection) return done(std::unexpected(connection.error()));
    (*connection)->query(std::move(sql), std::move(params), prepare, std::move(done));
  });
}

void RequestTransaction::savepoint(SavepointOp op, QueryCallback done) {
  std::string name;
  std::string script;
  switch (op) {
    case SavepointOp::kBegin:
      name = "flux_sp_" + std::to_string(savepoints_.size() + 1);
      savepoints_.push_back(captured_.size());
      savepoint_zero_rows_.push_back(zero_rows_.size());
      script = "savepoint " + name;
      break;
    case SavepointOp::kRelease:
    case SavepointOp::kRollback:
      if (savepoints_.empty()) {
        return done(std::unexpected(
            Error{ErrorCode::kInternal, "no open savepoint to release or roll back", {}}));
      }
      name = "flux_sp_" + std::to_string(savepoints_.size());
      script =
          (op == SavepointOp::kRelease ? "release savepoint " : "rollback to savepoint ") + name;
      break;
  }
  whenOpen([this, op, script = std::move(script), done = std::move(done),
            alive = alive_](Result<PgConnection*> connection) mutable {
    if (!connection) return done(std::unexpected(connection.error()));
    (*connection)
        ->execute(std::move(script),
                  [this, op, done = std::move(done), alive](Result<QueryResult> result) mutable {
                    if (*alive && op != SavepointOp::kBegin && !savepoints_.empty()) {
                      if (op == SavepointOp::kRollback && result) {
                        // The notices arrived before this answer: everything since the savepoint is
                        // undone.
                        for (size_t i = savepoints_.back(); i < captured_.size(); ++i) {
                          captured_[i].rolled_back = true;
                        }
                        for (size_t i = savepoint_zero_rows_.back(); i < zero_rows_.size(); ++i) {
                          zero_rows_[i].rolled_back = true;
                        }
                      }
                      savepoints_.pop_back();
                      savepoint_zero_rows_.pop_back();
                    }
                    done(std::move(result));
                  });
  });
}

void RequestTransaction::recordZeroRows(ZeroRowChange change) {
  zero_rows_.push_back(std::move(change));
}

void RequestTransaction::finish(TransactionOutcome outcome,
                                std::move_only_function<void(Result<void>)> done) {
  if (state_ == State::kIdle || state_ == State::kFinished) return done({});
  if (state_ == State::kFailed) {
    state_ = State::kFinished;
    return done({});
  }
  whenOpen([this, outcome, done = std::move(done),
            alive = alive_](Result<PgConnection*> connection) mutable {
    if (!*alive) return;
    if (!connection) {
      state_ = State::kFinished;
      return done({});
    }
    storeAndEnd(outcome, std::move(done));
  });
}

void RequestTransaction::storeAndEnd(TransactionOutcome outcome,
                                     std::move_only_function<void(Result<void>)> done) {
  state_ = State::kFinished;
  PgConnection& connection = lease_.connection();
  auto release = [this]() {
    lease_.connection().setNoticeHandler(nullptr);
    lease_ = PgLease();
  };
  if (outcome == TransactionOutcome::kRollback) {
    connection.execute("rollback", [this, done = std::move(done), release,
                                    alive = alive_](Result<QueryResult>) mutable {
      if (!*alive) return;
      storeRolledBack([done = std::move(done), release]() mutable {
        release();
        done({});
      });
    });
    return;
  }
  // Commit: store the mutations in the same transaction, then COMMIT.
  for (auto& [json, rolled_back] : storeRuns(captured_, false)) {
    connection.query(kStoreCapturedSql, {std::move(json), request_id_, rolled_back ? "t" : "f"},
                     Prepare::kYes, [](Result<QueryResult>) {});
  }
  for (const ZeroRowChange& z : zero_rows_) {
    connection.query(
        kStoreZeroRowSql,
        {request_id_, z.schema, z.table, z.op, z.where_json, z.set_json, z.rolled_back ? "t" : "f"},
        Prepare::kYes, [](Result<QueryResult>) {});
  }
  connection.execute("commit", [this, done = std::move(done), release,
                                alive = alive_](Result<QueryResult> result) mutable {
    if (!*alive) return;
    // COMMIT of an aborted transaction answers ROLLBACK: nothing was kept.
    bool committed_ok = result && result->command_tag == "COMMIT";
    if (committed_ok) {
      release();
      return done({});
    }
    for (CapturedMutation& m : captured_) m.rolled_back = true;
    for (ZeroRowChange& z : zero_rows_) z.rolled_back = true;
    Error error = result ? Error{ErrorCode::kInvalidArgument,
                                 "the transaction was rolled back because a statement in it "
                                 "failed",
                                 {}}
                         : result.error();
    storeRolledBack([done = std::move(done), release, error]() mutable {
      release();
      done(std::unexpected(error));
    });
  });
}

void RequestTransaction::storeRolledBack(std::move_only_function<void()> then) {
  PgConnection& connection = lease_.connection();
  for (auto& [json, rolled_back] : storeRuns(captured_, true)) {
    connection.query(kStoreCapturedSql, {std::move(json), request_id_, "t"}, Prepare::kYes,
                     [](Result<QueryResult>) {});
  }
  for (const ZeroRowChange& z : zero_rows_) {
    connection.query(kStoreZeroRowSql,
                     {request_id_, z.schema, z.table, z.op, z.where_json, z.set_json, "t"},
                     Prepare::kYes, [](Result<QueryResult>) {});
  }
  // An empty statement to learn when the stores above are done.
  connection.execute("select 1", [then = std::move(then)](Result<QueryResult>) mutable { then(); });
}

}  // namespace flux::data

// RequestTransaction: the one database transaction of one request.
//
// Opened at the request's first db call: a pooled connection, then "BEGIN" with
// flux.request_id and flux.capture set locally, so that the capture trigger logs every row the
// request changes (see mutation_log.h). With the C capture the server stores the rows itself at
// COMMIT; when the transaction aborts it reports them in one FX002 notice, which this class
// stores after the ROLLBACK, marked rolled back. With the plpgsql capture every row arrives as
// an FX001 notice (also from a transaction that later rolls back); this class stores them
// before COMMIT, in the same transaction, or after ROLLBACK (or ROLLBACK TO SAVEPOINT for the
// ones inside it), marked rolled back. So a rolled-back write stays visible in the history.
//
// Thread: one worker thread. Callbacks run on it, in issue order.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "data/pg_connection.h"
#include "data/pg_pool.h"

namespace flux::data {

struct CapturedMutation {
  // One change payload (an FX001 notice), or several joined with ',' (an FX002 notice's array
  // without its brackets).
  std::string payloads;
  bool rolled_back = false;
};

// An UPDATE or DELETE through ctx.db that matched no row: kept as a data change with 0 rows.
struct ZeroRowChange {
  std::string schema;
  std::string table;
  std::string op;  // "UPDATE" or "DELETE"
  std::string where_json;
  std::optional<std::string> set_json;
  bool rolled_back = false;
};

enum class SavepointOp { kBegin, kRelease, kRollback };
enum class TransactionOutcome { kCommit, kRollback };

class RequestTransaction {
 public:
  // request_id: a canonical UUID (it is inlined into the BEGIN script, validated there).
  RequestTransaction(PgPool& pool, std::string request_id);
  ~RequestTransaction();

  // Runs one statement in the transaction, opening it first if needed.
  void query(std::string sql, QueryParams params, Prepare prepare, QueryCallback done);
  // ctx.db.transaction(): SAVEPOINT / RELEASE / ROLLBACK TO the innermost savepoint.
  void savepoint(SavepointOp op, QueryCallback done);
  // Stored by this class, after the captured rows: before COMMIT that puts them after the
  // plpgsql capture's rows of the request but before the C capture's (the server inserts those
  // at COMMIT); after a ROLLBACK, after the reported rows either way.
  void recordZeroRows(ZeroRowChange change);

  // Ends the transaction (a no-op when none was opened) and stores the captured mutations.
  // On a failed COMMIT the mutations are stored as rolled back and the error is returned.
  void finish(TransactionOutcome outcome, std::move_only_function<void(Result<void>)> done);

  bool started() const { return state_ != State::kIdle; }
  const std::vector<CapturedMutation>& mutations() const { return captured_; }
  const std::vector<ZeroRowChange>& zeroRowChanges() const { return zero_rows_; }

 private:
  enum class State { kIdle, kOpening, kOpen, kFailed, kFinished };
  void open();
  void whenOpen(std::move_only_function<void(Result<PgConnection*>)> step);
  void storeAndEnd(TransactionOutcome outcome, std::move_only_function<void(Result<void>)> done);
  void storeRolledBack(std::move_only_function<void()> then);

  PgPool& pool_;
  std::string request_id_;
  State state_ = State::kIdle;
  PgLease lease_;
  Error failure_;
  std::vector<std::move_only_function<void(Result<PgConnection*>)>> waiting_;
  std::vector<CapturedMutation> captured_;
  std::vector<ZeroRowChange> zero_rows_;
  std::vector<size_t> savepoints_;  // captured_.size() and zero_rows_.size() at each SAVEPOINT
  std::vector<size_t> savepoint_zero_rows_;
  // Callbacks may outlive this object (a connection's queue); they check this token.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace flux::data

// flux.executions: one row per execution, the span tree, IO journal and logs as json in it, so
// that recording an execution is one write (COPY of 1,000-row batches sustains 115k-139k rows/s
// on this machine; ten INSERTs per request only 17k rows/s).
//
// Thread: installRecordSchema blocks (libpq, synchronous): the control path at start-up only.
#pragma once

#include <string>

#include "base/error.h"

namespace flux::record {

// Creates schema flux (if missing), the table flux.executions and its index on function + id
// (the primary key, a time-ordered id, is the time index); drops the time indexes an earlier
// Flux made. Idempotent and safe to run at every start, by several flux
// processes at once (they take turns on the advisory lock (1718383992, 2)). Run it before the
// Recorder starts writing: until it has, the recorder keeps spilling to its file.
Result<void> installRecordSchema(const std::string& conninfo);

// The DDL installRecordSchema runs (for docs and tests).
extern const char* const kRecordSchemaSql;

}  // namespace flux::record

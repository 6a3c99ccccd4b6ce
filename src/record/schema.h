// flux.executions: one row per execution, the span tree, IO journal and logs as json in it, so
// that recording an execution is one write (COPY of 1,000-row batches sustains 115k-139k rows/s
// on this machine; ten INSERTs per request only 17k rows/s).
//
// Thread: installRecordSchema blocks (libpq, synchronous): the control path at start-up only.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "base/error.h"

namespace flux::record {

// Creates schema flux (if missing), the table flux.executions and its handle index (the primary
// key, a time-ordered id, is the time index); drops the indexes an earlier Flux made.
// Idempotent and safe to run at every start, by several flux processes at once (they take turns
// on the advisory lock (1718383992, 2)). Run it before the Recorder starts writing: until it
// has, the recorder keeps spilling to its file.
Result<void> installRecordSchema(const std::string& conninfo);

// An execution's handle (req:<hex>: the id's last hex digits; `flux tail` prints 8) is looked up
// through a hash index on this expression: the id's last 4 bytes, its last 8 hex digits (the
// digits before them are random too, and compared on the rows found). A query uses the index
// when it spells the expression the same way (the column unqualified, as `id`). Measured by
// bench/record_instructions.sh: ~9k instructions a stored record (of ~33k); a B-tree on the
// reversed hex digits, which would serve handles of any length, cost ~17k.
inline constexpr std::string_view kHandleKeySql = "substr(uuid_send(id), 13)";
// The handle index answers handles of this many hex digits or more.
inline constexpr size_t kHandleKeyDigits = 8;

}  // namespace flux::record

// SpanShape: what a function version's spans looked like the last time it succeeded, so that a
// failed execution can show the spans it never reached.
//
// Design (skipped spans):
// - Each function version's context on a worker (FunctionContext::shape) remembers the shape
//   of its last execution that ended without an error and below 500: its child spans (db
//   calls, fetches, ctx.span blocks; not the function span itself) as (name, source location,
//   parent) in the order they started. Remembering costs nothing while the shape stays the
//   same (matches() compares in place); a new version, or a context rebuilt after a CPU or
//   heap limit, starts with no shape.
// - When an execution fails (an uncaught error, a timeout, the heap limit), the spans of the
//   remembered shape that come after the last span that did run are appended to the record
//   with SpanStatus::kSkipped: input and output empty, duration 0, started at the failure, the
//   name and location kept, the parent mapped onto the spans that ran (or onto other skipped
//   spans). The last span that ran is aligned with the shape by its position when name and
//   location agree there, else by its nearest occurrence in the shape; when it does not occur
//   at all the execution took another path and nothing is marked skipped.
// - The shape is per worker (shared-nothing): a worker that has not yet served a successful
//   execution of a version knows no shape, and its failures show no skipped spans.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "record/execution_record.h"

namespace flux::runtime {

struct SpanShape {
  struct Entry {
    std::string name;
    std::string location;
    int parent = -1;  // index into entries of the parent span; -1: the function span

    bool operator==(const Entry&) const = default;
  };

  uint64_t version = 0;  // the FunctionBundle version it was learned from
  std::vector<Entry> entries;

  // The shape of an execution's spans: spans[0] is the function span, the others are its
  // descendants in the order they were opened, with ids spans[0].id + index.
  static SpanShape of(uint64_t version, const std::vector<record::Span>& spans);

  // Whether of(version, spans) would equal *this, without building it.
  bool matches(uint64_t version, const std::vector<record::Span>& spans) const;

  // Appends the spans of this shape that the failed execution `spans` never reached, as
  // described in the design note; `at_us` is their start (the failure's time, relative to
  // the execution's start like every span). Returns how many were appended.
  size_t appendSkipped(std::vector<record::Span>& spans, int64_t at_us) const;
};

}  // namespace flux::runtime

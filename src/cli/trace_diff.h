// `flux trace diff <a> <b>`: how two executions differ, span by span, then write by write.
//
//   BEFORE  req:4f9a3b2c  POST /checkout  201  81ms  ·  create_order  ·  2026-03-10 09:14:21 UTC
//   AFTER   req:550e8400  POST /checkout  500  44ms  ·  create_order  ·  2026-03-10 09:14:22 UTC
//
//   SPAN                     BEFORE  AFTER
//   ────────────────────────────────────────────────────────────
//   gateway                     2ms  2ms            ✗ changed
//      output.status: 201 → 500
//   └─ create_order            81ms  44ms timeout   ✗ changed
//         status: ok → error
//         error: — → Stripe API timeout after 10s
//         output.status: 201 → 500
//      ├─ db.insert(orders)     4ms  4ms            — same
//      ├─ stripe.charge        68ms  180ms timeout  ✗ changed
//      │     status: ok → error
//      │     error: — → Stripe API timeout after 10s
//      │     output: {"id":"ch_1"} → null
//      └─ send_slack            7ms  skipped        ✗ missing
//
//   MUTATION DIFF
//   ✗ orders INSERT  key: 41 → 42  ·  state: committed → rolled back
//       − orders id=41  INSERT  amount=4900  (committed)
//       + orders id=42  INSERT  amount=4900  (rolled back)
//   − users id=7  plan: free → pro  (committed)  before only
//
//   ── Spans: 1 same · 3 changed · 1 missing  ·  Writes: 1 changed · 1 before only
//
// Spans are aligned on the `flux trace` order of each record (depth first, children by start
// time): the longest common subsequence of (depth, name) anchors them, so that one inserted or
// missing span does not shift the rest. Between two anchors, a span that left and one that came
// at the same depth are paired as renamed when their names share a base (`db.insert(orders)`
// and `db.insert(items)`: the text before '(' or ' ') or both are their execution's function
// span (two different endpoints); what is left over and has the same name on both sides
// (spans that swapped places) is paired as moved. Everything else is missing (ran before, not
// after: absent or skipped) or added (ran after, not before).
//
// A pair that both ran is `changed` when its name, status, error, input or output differ
// (the differing fields are listed, objects and same-length arrays compared member by member),
// else its durations decide: `same` within the noise threshold (the larger of 1 ms and 10% of
// the before duration), else `faster` or `slower`.
//
// Writes (the records' mutations) pair up by table, operation and key first, then by table and
// operation in log order (two requests insert different ids). A pair is `same` when the key,
// the values (an INSERT's new row, a DELETE's old row, an UPDATE's changed columns; the key
// columns and the log's own id and time aside), the rows affected and the state (committed or
// rolled back) agree, else `changed`; the others are only_before or only_after.
//
// Any two executions compare; when they are not of the same endpoint (kind and function, or
// method and path without a function) a line under the header says so: "Different endpoints:
// POST /checkout (create_order) vs GET /users (list_users)".
//
// Pure functions of the JSON of GET /_flux/records/<id>: the tests feed them fixtures.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/records_render.h"
#include "cli/state_render.h"

namespace flux::cli {

// ---- Durations ----------------------------------------------------------------------------

// A duration difference is noise unless it is larger than both bounds.
struct DurationThreshold {
  double ratio = 0.10;    // of the before duration
  int64_t min_us = 1000;  // 1 ms
};

enum class Timing { kSame, kFaster, kSlower };

const char* timingName(Timing timing);  // "same", "faster", "slower"

Timing classifyDuration(int64_t before_us, int64_t after_us, DurationThreshold threshold = {});

// ---- Span alignment -----------------------------------------------------------------------

// What the alignment looks at of one span.
struct AlignItem {
  std::string name;
  size_t depth = 0;
  bool function = false;  // the execution's function span (its name is the record's function)
};

std::vector<AlignItem> alignItems(const std::vector<TraceSpan>& spans, std::string_view function);

enum class SpanMatch { kName, kRenamed, kMoved };

const char* spanMatchName(SpanMatch match);  // "name", "renamed", "moved"

// One row of the aligned sequence: a pair, or a span of one side only.
struct AlignedSpan {
  std::optional<size_t> before;        // index into the before spans
  std::optional<size_t> after;         // index into the after spans
  SpanMatch match = SpanMatch::kName;  // when both are set

  bool operator==(const AlignedSpan&) const = default;
};

// Every index of both sides appears exactly once; each side's indices keep their order, except
// that a moved pair sits where its after span is.
std::vector<AlignedSpan> alignSpans(const std::vector<AlignItem>& before,
                                    const std::vector<AlignItem>& after);

// ---- The diff -----------------------------------------------------------------------------

// One field that differs; an absent side (a key one object lacks) is nullopt.
struct FieldChange {
  std::string field;  // "status", "output.rowCount", "input.params[0]", "new.email"
  std::optional<nlohmann::json> before;
  std::optional<nlohmann::json> after;
};

// The fields of `before` and `after` that differ, under `path` ("" for the whole value: then
// the field of a top-level difference is `path` itself, "value" when empty). Objects and
// same-length arrays are compared member by member (three levels down), strings that hold a
// JSON object or array as that JSON.
std::vector<FieldChange> diffValues(const nlohmann::json& before, const nlohmann::json& after,
                                    const std::string& path);

enum class SpanVerdict { kSame, kFaster, kSlower, kChanged, kMissing, kAdded };

const char* spanVerdictName(SpanVerdict verdict);  // "same", ..., "missing", "added"

struct SpanDiff {
  AlignedSpan row;
  size_t depth = 0;  // in the aligned tree: the after span's, else the before span's
  SpanVerdict verdict = SpanVerdict::kSame;
  std::optional<Timing> timing;      // both ran
  std::vector<FieldChange> changes;  // kChanged: what differs
};

enum class MutationVerdict { kSame, kChanged, kOnlyBefore, kOnlyAfter };

const char* mutationVerdictName(MutationVerdict verdict);  // "same", ..., "only_after"

struct MutationDiff {
  std::optional<size_t> before;  // index into the before answer's mutations
  std::optional<size_t> after;
  MutationVerdict verdict = MutationVerdict::kSame;
  std::vector<FieldChange> changes;  // kChanged: "pk", "state", "rows_affected", "new.<col>"...
};

// The writes of two answers ("mutations" arrays), diffed as the header says. Rows in the order
// of the before log, each only_after row after the pair or row that precedes it in the after
// log.
std::vector<MutationDiff> diffMutations(const nlohmann::json& before, const nlohmann::json& after);

struct TraceDiff {
  nlohmann::json before;  // the GET /_flux/records/<id> answers, as they came
  nlohmann::json after;
  std::vector<TraceSpan> before_spans;
  std::vector<TraceSpan> after_spans;
  bool same_endpoint = true;  // same kind and function (or method and path without one)
  DurationThreshold threshold;
  std::vector<SpanDiff> spans;
  std::vector<MutationDiff> mutations;
};

TraceDiff diffTraces(nlohmann::json before, nlohmann::json after, DurationThreshold threshold = {});

// The structured diff `--json` prints: {before, after (summaries), same_endpoint, threshold,
// spans: [{verdict, name, depth, match, timing, before, after (span summaries or null),
// duration_delta_us, changes: [{field, before, after}]}], mutations: [{verdict, table, op,
// before, after (mutations or null), changes}], totals: {spans: {...}, mutations: {...}}}.
nlohmann::json toJson(const TraceDiff& diff);

// The diff as the header shows it; ends with a newline.
std::string renderTraceDiff(const TraceDiff& diff, Color color);

}  // namespace flux::cli

// How `flux tail`, `flux why` and `flux trace` print what the admin API answers about
// execution records (GET /_flux/records and GET /_flux/records/<id>).
//
// flux tail, one line per execution, then what went wrong or what it wrote:
//
//   POST /checkout  201  120ms  req:4f9a3b2c  09:14:21
//      users.id=42  insert
//   POST /checkout  500   44ms  req:550e8400  09:14:22
//      └─ Error: Stripe API timeout
//
// flux why, the sections a person fixing the failure needs:
//
//   ROOT CAUSE    Stripe API timeout after 10s
//   LOCATION      payments/create.ts:42  (in stripe.charge)
//   INPUT         POST /checkout  {"amount":4900,"customer_id":"cus_ABC"}
//   DATA CHANGES  users id=42  plan: free → null  (rolled back)
//   SUGGESTION    → Add a shorter timeout (e.g. 5s) + retry with an idempotency key
//
// flux trace, the span tree:
//
//   gateway                2ms
//   └─ create_order        8ms
//      ├─ db.insert(orders)  4ms
//      ├─ stripe.charge    180ms  ← timeout here
//      └─ send_slack       — skipped (upstream error)
//
//   ── Spans: 5  ·  Errors: 1  ·  DB writes: 1
//
// Times are UTC, as in `flux state`. A request is shown by its handle (req: + the last 8 hex
// digits of its id). Pure functions of the JSON, tolerant of missing or mistyped fields (a
// record is shown as far as it can be): the tests feed them fixtures.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/state_render.h"
#include "cli/suggestions.h"
#include "cli/text_style.h"

namespace flux::cli {

// "0ms", "0.4ms", "44ms", "9999ms", "10.0s", "125s".
std::string formatDuration(int64_t duration_us);

// Unix microseconds -> "14:22:01" / "2026-03-10 14:22:01", UTC.
std::string formatClock(int64_t unix_us);
std::string formatDateTime(int64_t unix_us);

// "payments/create.ts:42:7" -> "payments/create.ts:42"; other text as it is.
std::string fileAndLine(std::string_view location);

// Prints `flux tail` lines. Columns widen as longer values arrive (it cannot know the future),
// so that a stream of similar requests lines up.
class TailPrinter {
 public:
  explicit TailPrinter(Color color) : color_(color) {}

  // One summary (an element of GET /_flux/records' "records"): its line, then an error line
  // or a mutation line when it has one. Each line ends with '\n'.
  std::string print(const nlohmann::json& summary);

 private:
  Color color_;
  size_t method_width_ = 4;
  size_t path_width_ = 0;
  size_t status_width_ = 3;
  size_t duration_width_ = 4;
};

// The failure `flux why` explains: the first error in the span tree, else the record's error,
// else a 4xx/5xx answer. Fields are empty when unknown.
struct RootCause {
  bool failed = false;
  std::string message;   // "no error: POST /checkout answered 201" when !failed
  std::string location;  // file:line
  std::optional<uint32_t> span_id;
  std::string span_name;
  nlohmann::json span_input;  // the failing span's input, null when none
};

RootCause findRootCause(const nlohmann::json& record);

// What the suggestion rules look at, from a GET /_flux/records/<id> body.
FailureFacts failureFacts(const nlohmann::json& answer, const RootCause& cause);

// The body of GET /_flux/records/<id>, printed as `flux why`; ends with a newline.
std::string renderWhy(const nlohmann::json& answer, Color color);

// The body of GET /_flux/records/<id>, printed as `flux trace`; ends with a newline.
std::string renderTrace(const nlohmann::json& answer, Color color);

// The candidates of a 409 ({"error", "total", "candidates": [summary...]}), one line each,
// for stderr; ends with a newline (empty when there are none).
std::string renderCandidates(const nlohmann::json& body);

// ---- Pieces the other record views (trace debug, trace diff) share ---------------------------

// A body, an input or an output as one line of at most `width` columns: JSON compact (a string
// holding JSON too), text as it is, printable.
std::string compactValue(const nlohmann::json& value, size_t width);

// One span of a record as `flux trace` lists it: depth first from the roots, children by start
// time, each with the tree drawing before its name ("", "└─ ", "   ├─ ").
struct TraceSpan {
  uint32_t id = 0;
  uint32_t parent = 0;  // 0: a root (also when the parent is not in the record)
  size_t depth = 0;     // 0 for a root
  std::string prefix;   // the tree drawing
  std::string name;     // printable
  int64_t start_us = 0;
  int64_t duration_us = 0;
  std::string status;  // "ok", "error", "skipped"
  std::string error;   // the message; empty when none
  std::string location;
  nlohmann::json input;   // null when none
  nlohmann::json output;  // null when none
  std::vector<std::string> logs;
  bool root_cause = false;  // the first error, the one `flux why` names

  bool failed() const { return status == "error" || !error.empty(); }
  bool skipped() const { return status == "skipped"; }
  // Failed with an error that reads as a timeout ("timeout", "timed out").
  bool timedOut() const;
};

// The spans of a record (the "record" of a GET /_flux/records/<id> answer) in `flux trace`
// order. Spans caught in a cycle of parents come last, each drawn as a root.
std::vector<TraceSpan> traceSpans(const nlohmann::json& record);

// "← timeout here" for an error that reads as a timeout, else "← failed here: <message>".
std::string failureMarker(const TraceSpan& span);

// The line `flux trace` and `flux why` start with: "  req:550e8400  POST /checkout  500  44ms
// ·  create_order  ·  2026-03-10 14:22:31 UTC"; ends with a newline.
std::string renderRecordHeader(const nlohmann::json& record, Color color);

// A mutation as `flux why` lists it under DATA CHANGES: "users id=42  plan: free → null
// (rolled back)", "subscriptions  UPDATE  0 rows affected  where customer_id=cus_ABC".
std::string renderMutationLine(const nlohmann::json& mutation, Color color);

}  // namespace flux::cli

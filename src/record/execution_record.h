// The execution record: everything one execution (an HTTP request, a job, a cron run, a replay)
// did, keyed by its request id. One record is one row of flux.executions; its span tree, IO
// journal and logs travel inside it as JSON, so storing an execution costs one write.
//
// The JSON shapes written here are the stored shapes: the spill file holds toJson(record) one
// per line, and the json columns of flux.executions hold the same pieces (`spans` is the array
// of toJson(span), `error` is toJson(error)). Readers (trace, why, replay) parse them with the
// fromJson functions below, which reject bad input with an error naming the field.
//
// Thread: plain values, no shared state.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace flux::record {

enum class SpanStatus { kOk, kError, kSkipped };

// "ok", "error", "skipped".
const char* spanStatusName(SpanStatus status);

// One instrumented boundary of an execution (a db call, a fetch, a log line's call site...).
struct Span {
  uint32_t id = 0;
  uint32_t parent = 0;   // 0: a root span
  std::string name;      // "db.query", "fetch", ...
  int64_t start_us = 0;  // from the execution's start
  int64_t duration_us = 0;
  nlohmann::json input;
  nlohmann::json output;
  std::optional<std::string> error;
  std::string location;  // "functions/x/index.ts:12:5", or empty when unknown
  SpanStatus status = SpanStatus::kOk;
  std::vector<std::string> logs;

  bool operator==(const Span&) const = default;
};

// The error an execution ended with (an uncaught exception, a timeout, a 5xx from Flux).
struct RecordedError {
  std::string message;
  std::string location;  // TypeScript file:line:column, or empty
  std::string stack;
  std::string code;   // errorCodeName() of the Flux error ("user_code", "timeout", ...)
  uint32_t span = 0;  // the span it happened in (locateError), 0 when none is known

  bool operator==(const RecordedError&) const = default;
};

// An HTTP message as the gateway captured it on the request path: raw values, cheap to copy.
// materialize() turns it into the stored JSON on the recorder's thread.
struct HttpCapture {
  std::string method;  // request only
  std::string path;    // request only
  std::string query;   // request only
  int status = 0;      // response only
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // capped by the gateway

  bool operator==(const HttpCapture&) const = default;
};

struct ExecutionRecord {
  // UUID text, canonical form (the request id): a UUIDv7 made from the clock reading that
  // started_at_us comes from (RequestId::generate), since records are ordered and found by
  // time through their ids.
  std::string id;
  std::string kind;                      // "http", "job", "cron", "replay"
  std::optional<std::string> parent_id;  // the execution that enqueued this job
  std::optional<std::string> replay_of;  // the execution this one replays
  std::optional<std::string> tenant;
  std::string function;
  std::optional<std::string> deployment_id;
  std::optional<std::string> git_commit;
  std::string method;
  std::string path;
  int status = 0;
  std::optional<RecordedError> error;
  int64_t started_at_us = 0;  // Unix time in microseconds
  int64_t duration_us = 0;
  nlohmann::json request;   // {method, path, query, headers, body}
  nlohmann::json response;  // {status, headers, body}
  std::vector<Span> spans;
  nlohmann::json journal = nlohmann::json::array();  // [{kind, value}, ...] in call order
  std::vector<std::string> logs;
  // Set by the gateway instead of `request` / `response`; see materialize().
  std::optional<HttpCapture> captured_request;
  std::optional<HttpCapture> captured_response;

  bool operator==(const ExecutionRecord&) const = default;
};

// Builds what the request path left raw, so that workers pay one copy per record and the JSON
// is built off the request path: `request` and `response` from the captures (which it
// clears), and the root (gateway) span's input and output (fillGatewaySpan). Does nothing to a
// record without captures. The recorder does not need it: it redacts captures in place and
// writes them straight as JSON (JsonWriter::capture); toJson() and readers see the same shape.
void materialize(ExecutionRecord& record);
// The root (gateway) span's input (request line) and output (status), when they are empty and
// the record has captures.
void fillGatewaySpan(ExecutionRecord& record);
// Sets error.span, unless already set, to the span the error happened in: the innermost failed
// span that was called at the error's file:line (a fetch that timed out, a db call the handler
// let through) or failed with the error's message (a ctx.span that threw), else the function's
// span (the root's first child), else the root.
void locateError(ExecutionRecord& record);
// A capture's stored JSON: {method, path, query, headers: [[name, value], ...], body} for a
// request, {status, headers, body} for a response.
nlohmann::json toJson(const HttpCapture& capture, bool request);

// The one line `flux tail` shows for an execution.
struct RecordSummary {
  std::string id;
  std::string kind;
  std::string function;
  std::string method;
  std::string path;
  int status = 0;
  int64_t duration_us = 0;
  std::optional<std::string> error;  // the error's message
  int64_t started_at_us = 0;

  static RecordSummary of(const ExecutionRecord& record);
  bool operator==(const RecordSummary&) const = default;
};

// The kinds an execution may have.
bool isExecutionKind(std::string_view kind);

// True for a UUID in canonical text form (8-4-4-4-12 hex digits, either case).
bool isCanonicalUuid(std::string_view text);

nlohmann::json toJson(const Span& span);
nlohmann::json toJson(const RecordedError& error);
nlohmann::json toJson(const ExecutionRecord& record);
nlohmann::json toJson(const RecordSummary& summary);

// Each fails with kInvalidArgument naming the field ("spans[2].start_us: expected an integer,
// got string"). Fields that are absent take their default, except the ones a record cannot do
// without: a record's id, kind and started_at_us, a span's id and name, an error's message.
Result<Span> spanFromJson(const nlohmann::json& json);
Result<RecordedError> recordedErrorFromJson(const nlohmann::json& json);
Result<ExecutionRecord> recordFromJson(const nlohmann::json& json);
Result<RecordSummary> summaryFromJson(const nlohmann::json& json);

// Parses one line of text (a spill file line) into a record.
Result<ExecutionRecord> recordFromJsonText(std::string_view text);

// Serializes JSON for storage or the wire: invalid UTF-8 in strings becomes U+FFFD instead of
// throwing (bodies come from outside).
std::string dumpJson(const nlohmann::json& json);

}  // namespace flux::record

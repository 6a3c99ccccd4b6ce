#include "record/execution_record.h"

#include <cctype>
#include <limits>
#include <utility>

namespace flux::record {
namespace {

using nlohmann::json;

const char* typeName(const json& value) {
  if (value.is_number_integer()) return "integer";
  if (value.is_number_float()) return "number";
  return value.type_name();
}

std::unexpected<Error> badField(const std::string& path, const std::string& problem) {
  return fail(ErrorCode::kInvalidArgument, path + ": " + problem);
}

std::unexpected<Error> wrongType(const std::string& path, const char* expected, const json& got) {
  return badField(path, std::string("expected ") + expected + ", got " + typeName(got));
}

enum class Presence { kOptional, kRequired };

std::string join(const std::string& prefix, const char* key) {
  return prefix.empty() ? std::string(key) : prefix + "." + key;
}

// Reads fields of one JSON object, each by its path for error messages. A field that is absent
// (or null, for optional ones) leaves the output untouched.
class FieldReader {
 public:
  FieldReader(const json& object, std::string path) : object_(object), path_(std::move(path)) {}

  Result<void> requireObject() const {
    if (object_.is_object()) return {};
    if (path_.empty()) {
      return fail(ErrorCode::kInvalidArgument,
                  std::string("expected a JSON object, got ") + typeName(object_));
    }
    return wrongType(path_, "an object", object_);
  }

  const json* find(const char* key) const {
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }

  Result<void> string(const char* key, std::string& out,
                      Presence presence = Presence::kOptional) const {
    const json* value = find(key);
    if (value == nullptr || (value->is_null() && presence == Presence::kOptional)) {
      if (presence == Presence::kRequired) return badField(join(path_, key), "missing");
      return {};
    }
    if (!value->is_string()) return wrongType(join(path_, key), "a string", *value);
    out = value->get<std::string>();
    return {};
  }

  Result<void> optionalString(const char* key, std::optional<std::string>& out) const {
    const json* value = find(key);
    if (value == nullptr || value->is_null()) return {};
    if (!value->is_string()) return wrongType(join(path_, key), "a string or null", *value);
    out = value->get<std::string>();
    return {};
  }

  template <typename Int>
  Result<void> integer(const char* key, Int& out, Presence presence = Presence::kOptional) const {
    const json* value = find(key);
    if (value == nullptr || (value->is_null() && presence == Presence::kOptional)) {
      if (presence == Presence::kRequired) return badField(join(path_, key), "missing");
      return {};
    }
    if (!value->is_number_integer()) return wrongType(join(path_, key), "an integer", *value);
    if (value->is_number_unsigned()) {
      auto number = value->get<uint64_t>();
      if (number > static_cast<uint64_t>(std::numeric_limits<Int>::max())) {
        return badField(join(path_, key), "out of range");
      }
      out = static_cast<Int>(number);
      return {};
    }
    auto number = value->get<int64_t>();
    if (number < static_cast<int64_t>(std::numeric_limits<Int>::min()) ||
        (number > 0 &&
         static_cast<uint64_t>(number) > static_cast<uint64_t>(std::numeric_limits<Int>::max()))) {
      return badField(join(path_, key), "out of range");
    }
    out = static_cast<Int>(number);
    return {};
  }

  Result<void> stringList(const char* key, std::vector<std::string>& out) const {
    const json* value = find(key);
    if (value == nullptr || value->is_null()) return {};
    if (!value->is_array()) return wrongType(join(path_, key), "an array of strings", *value);
    out.clear();
    out.reserve(value->size());
    for (size_t i = 0; i < value->size(); ++i) {
      const json& item = (*value)[i];
      if (!item.is_string()) {
        return wrongType(join(path_, key) + "[" + std::to_string(i) + "]", "a string", item);
      }
      out.push_back(item.get<std::string>());
    }
    return {};
  }

  // Any JSON value, kept as it is (null when absent).
  void value(const char* key, json& out) const {
    if (const json* value = find(key)) out = *value;
  }

  const std::string& path() const { return path_; }

 private:
  const json& object_;
  std::string path_;
};

#define FLUX_TRY(expr)                                        \
  do {                                                        \
    if (auto flux_try_ok = (expr); !flux_try_ok) {            \
      return std::unexpected(std::move(flux_try_ok).error()); \
    }                                                         \
  } while (false)

Result<Span> spanAt(const json& value, const std::string& path) {
  FieldReader in(value, path);
  FLUX_TRY(in.requireObject());
  Span span;
  FLUX_TRY(in.integer("id", span.id, Presence::kRequired));
  FLUX_TRY(in.integer("parent", span.parent));
  FLUX_TRY(in.string("name", span.name, Presence::kRequired));
  FLUX_TRY(in.integer("start_us", span.start_us));
  FLUX_TRY(in.integer("duration_us", span.duration_us));
  in.value("input", span.input);
  in.value("output", span.output);
  FLUX_TRY(in.optionalString("error", span.error));
  FLUX_TRY(in.string("location", span.location));
  std::string status = "ok";
  FLUX_TRY(in.string("status", status));
  if (status == "ok") {
    span.status = SpanStatus::kOk;
  } else if (status == "error") {
    span.status = SpanStatus::kError;
  } else if (status == "skipped") {
    span.status = SpanStatus::kSkipped;
  } else {
    return badField(join(path, "status"),
                    "\"" + status.substr(0, 40) + "\" is not one of ok, error, skipped");
  }
  FLUX_TRY(in.stringList("logs", span.logs));
  return span;
}

Result<RecordedError> errorAt(const json& value, const std::string& path) {
  FieldReader in(value, path);
  FLUX_TRY(in.requireObject());
  RecordedError error;
  FLUX_TRY(in.string("message", error.message, Presence::kRequired));
  FLUX_TRY(in.string("location", error.location));
  FLUX_TRY(in.string("stack", error.stack));
  FLUX_TRY(in.string("code", error.code));
  FLUX_TRY(in.integer("span", error.span));
  return error;
}

Result<void> uuidField(const FieldReader& in, const char* key, std::optional<std::string>& out) {
  FLUX_TRY(in.optionalString(key, out));
  if (out && !isCanonicalUuid(*out)) {
    return badField(join(in.path(), key), "\"" + out->substr(0, 40) + "\" is not a UUID");
  }
  return {};
}

json optionalJson(const std::optional<std::string>& value) {
  return value ? json(*value) : json(nullptr);
}

}  // namespace

const char* spanStatusName(SpanStatus status) {
  switch (status) {
    case SpanStatus::kOk:
      return "ok";
    case SpanStatus::kError:
      return "error";
    case SpanStatus::kSkipped:
      return "skipped";
  }
  return "ok";
}

bool isExecutionKind(std::string_view kind) {
  return kind == "http" || kind == "job" || kind == "cron" || kind == "replay";
}

bool isCanonicalUuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    bool dash_position = i == 8 || i == 13 || i == 18 || i == 23;
    bool ok =
        dash_position ? text[i] == '-' : std::isxdigit(static_cast<unsigned char>(text[i])) != 0;
    if (!ok) return false;
  }
  return true;
}

RecordSummary RecordSummary::of(const ExecutionRecord& record) {
  RecordSummary summary;
  summary.id = record.id;
  summary.kind = record.kind;
  summary.function = record.function;
  summary.method = record.method;
  summary.path = record.path;
  summary.status = record.status;
  summary.duration_us = record.duration_us;
  if (record.error) summary.error = record.error->message;
  summary.started_at_us = record.started_at_us;
  return summary;
}

namespace {

json capturedHeaders(const HttpCapture& capture) {
  json headers = json::array();
  for (const auto& [name, value] : capture.headers) headers.push_back({name, value});
  return headers;
}

}  // namespace

json toJson(const HttpCapture& capture, bool request) {
  if (request) {
    return {{"method", capture.method},
            {"path", capture.path},
            {"query", capture.query},
            {"headers", capturedHeaders(capture)},
            {"body", capture.body}};
  }
  return {
      {"status", capture.status}, {"headers", capturedHeaders(capture)}, {"body", capture.body}};
}

void fillGatewaySpan(ExecutionRecord& record) {
  if (!record.captured_request && !record.captured_response) return;
  if (record.spans.empty() || record.spans.front().parent != 0) return;
  Span& root = record.spans.front();  // the gateway's
  if (root.input.is_null()) root.input = {{"method", record.method}, {"path", record.path}};
  if (root.output.is_null()) root.output = {{"status", record.status}};
}

namespace {

// "file:line" of a "file:line:column" location (the whole text without a second colon).
std::string_view fileAndLine(std::string_view location) {
  size_t last = location.rfind(':');
  if (last == std::string_view::npos || location.find(':') == last) return location;
  return location.substr(0, last);
}

}  // namespace

void locateError(ExecutionRecord& record) {
  if (!record.error || record.error->span != 0 || record.spans.empty()) return;
  // Spans are stored in start order, so a child comes after its parent: the last match is the
  // innermost (or the latest). The host call that failed (a fetch that timed out, a db call)
  // was made where the error's stack points; a throw fails the spans around it with its
  // message.
  std::string_view at = fileAndLine(record.error->location);
  const Span* last = nullptr;
  for (const Span& span : record.spans) {
    if (span.status != SpanStatus::kError) continue;
    bool same_place = !at.empty() && fileAndLine(span.location) == at;
    bool same_message = span.error && *span.error == record.error->message;
    if (same_place || same_message) last = &span;
  }
  const Span& root = record.spans.front();
  const Span* function = nullptr;
  for (const Span& span : record.spans) {
    if (span.parent == root.id && &span != &root) {
      function = &span;
      break;
    }
  }
  const Span* chosen = last ? last : function ? function : &root;
  record.error->span = chosen->id;
}

void materialize(ExecutionRecord& record) {
  fillGatewaySpan(record);
  if (record.captured_request) {
    record.request = toJson(*record.captured_request, true);
    record.captured_request.reset();
  }
  if (record.captured_response) {
    record.response = toJson(*record.captured_response, false);
    record.captured_response.reset();
  }
}

json toJson(const Span& span) {
  return json{{"id", span.id},
              {"parent", span.parent},
              {"name", span.name},
              {"start_us", span.start_us},
              {"duration_us", span.duration_us},
              {"input", span.input},
              {"output", span.output},
              {"error", optionalJson(span.error)},
              {"location", span.location},
              {"status", spanStatusName(span.status)},
              {"logs", span.logs}};
}

json toJson(const RecordedError& error) {
  return json{{"message", error.message},
              {"location", error.location},
              {"stack", error.stack},
              {"code", error.code},
              {"span", error.span}};
}

json toJson(const ExecutionRecord& record) {
  json spans = json::array();
  for (const Span& span : record.spans) spans.push_back(toJson(span));
  return json{{"id", record.id},
              {"kind", record.kind},
              {"parent_id", optionalJson(record.parent_id)},
              {"replay_of", optionalJson(record.replay_of)},
              {"tenant", optionalJson(record.tenant)},
              {"function", record.function},
              {"deployment_id", optionalJson(record.deployment_id)},
              {"git_commit", optionalJson(record.git_commit)},
              {"method", record.method},
              {"path", record.path},
              {"status", record.status},
              {"error", record.error ? toJson(*record.error) : json(nullptr)},
              {"started_at_us", record.started_at_us},
              {"duration_us", record.duration_us},
              {"request",
               record.captured_request ? toJson(*record.captured_request, true) : record.request},
              {"response", record.captured_response ? toJson(*record.captured_response, false)
                                                    : record.response},
              {"spans", std::move(spans)},
              {"journal", record.journal},
              {"logs", record.logs}};
}

json toJson(const RecordSummary& summary) {
  return json{{"id", summary.id},
              {"kind", summary.kind},
              {"function", summary.function},
              {"method", summary.method},
              {"path", summary.path},
              {"status", summary.status},
              {"duration_us", summary.duration_us},
              {"error", optionalJson(summary.error)},
              {"started_at_us", summary.started_at_us}};
}

Result<Span> spanFromJson(const json& value) { return spanAt(value, "span"); }

Result<RecordedError> recordedErrorFromJson(const json& value) { return errorAt(value, "error"); }

namespace {

Result<ExecutionRecord> recordAt(const json& value) {
  FieldReader in(value, "");
  FLUX_TRY(in.requireObject());
  ExecutionRecord record;
  FLUX_TRY(in.string("id", record.id, Presence::kRequired));
  if (!isCanonicalUuid(record.id)) {
    return badField("id", "\"" + record.id.substr(0, 40) + "\" is not a UUID");
  }
  FLUX_TRY(in.string("kind", record.kind, Presence::kRequired));
  if (!isExecutionKind(record.kind)) {
    return badField("kind",
                    "\"" + record.kind.substr(0, 40) + "\" is not one of http, job, cron, replay");
  }
  FLUX_TRY(uuidField(in, "parent_id", record.parent_id));
  FLUX_TRY(uuidField(in, "replay_of", record.replay_of));
  FLUX_TRY(in.optionalString("tenant", record.tenant));
  FLUX_TRY(in.string("function", record.function));
  FLUX_TRY(in.optionalString("deployment_id", record.deployment_id));
  FLUX_TRY(in.optionalString("git_commit", record.git_commit));
  FLUX_TRY(in.string("method", record.method));
  FLUX_TRY(in.string("path", record.path));
  FLUX_TRY(in.integer("status", record.status));
  if (const json* error = in.find("error"); error != nullptr && !error->is_null()) {
    auto parsed = errorAt(*error, "error");
    if (!parsed) return std::unexpected(std::move(parsed).error());
    record.error = std::move(*parsed);
  }
  FLUX_TRY(in.integer("started_at_us", record.started_at_us, Presence::kRequired));
  FLUX_TRY(in.integer("duration_us", record.duration_us));
  in.value("request", record.request);
  in.value("response", record.response);
  if (const json* spans = in.find("spans"); spans != nullptr && !spans->is_null()) {
    if (!spans->is_array()) return wrongType("spans", "an array", *spans);
    record.spans.reserve(spans->size());
    for (size_t i = 0; i < spans->size(); ++i) {
      auto span = spanAt((*spans)[i], "spans[" + std::to_string(i) + "]");
      if (!span) return std::unexpected(std::move(span).error());
      record.spans.push_back(std::move(*span));
    }
  }
  if (const json* journal = in.find("journal"); journal != nullptr && !journal->is_null()) {
    if (!journal->is_array()) return wrongType("journal", "an array", *journal);
    record.journal = *journal;
  }
  FLUX_TRY(in.stringList("logs", record.logs));
  return record;
}

}  // namespace

Result<ExecutionRecord> recordFromJson(const json& value) {
  auto record = recordAt(value);
  if (!record) record.error().message = "execution record: " + record.error().message;
  return record;
}

Result<RecordSummary> summaryFromJson(const json& value) {
  FieldReader in(value, "summary");
  FLUX_TRY(in.requireObject());
  RecordSummary summary;
  FLUX_TRY(in.string("id", summary.id, Presence::kRequired));
  FLUX_TRY(in.string("kind", summary.kind));
  FLUX_TRY(in.string("function", summary.function));
  FLUX_TRY(in.string("method", summary.method));
  FLUX_TRY(in.string("path", summary.path));
  FLUX_TRY(in.integer("status", summary.status));
  FLUX_TRY(in.integer("duration_us", summary.duration_us));
  FLUX_TRY(in.optionalString("error", summary.error));
  FLUX_TRY(in.integer("started_at_us", summary.started_at_us));
  return summary;
}

Result<ExecutionRecord> recordFromJsonText(std::string_view text) {
  json parsed = json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return fail(ErrorCode::kInvalidArgument, "execution record: not valid JSON");
  }
  return recordFromJson(parsed);
}

std::string dumpJson(const json& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
}

#undef FLUX_TRY

}  // namespace flux::record

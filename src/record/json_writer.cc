#include "record/json_writer.h"

#include <charconv>
#include <cmath>

#include "record/utf8.h"

namespace flux::record {
namespace {

// Bytes a JSON string can hold as they are: printable ASCII other than '"' and '\\'.
bool isPlain(unsigned char byte) {
  return byte >= 0x20 && byte < 0x80 && byte != '"' && byte != '\\';
}

void appendEscapedControl(std::string& out, unsigned char byte) {
  switch (byte) {
    case '\b':
      out += "\\b";
      return;
    case '\f':
      out += "\\f";
      return;
    case '\n':
      out += "\\n";
      return;
    case '\r':
      out += "\\r";
      return;
    case '\t':
      out += "\\t";
      return;
    default: {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\u00";
      out += kHex[byte >> 4];
      out += kHex[byte & 0xF];
    }
  }
}

}  // namespace

void JsonWriter::string(std::string_view text) {
  out_.reserve(out_.size() + text.size() + 2);
  out_ += '"';
  size_t at = 0;
  while (at < text.size()) {
    size_t run = at;
    while (run < text.size() && isPlain(static_cast<unsigned char>(text[run]))) ++run;
    out_.append(text.data() + at, run - at);
    if (run == text.size()) break;
    at = run;
    auto byte = static_cast<unsigned char>(text[at]);
    if (byte == '"' || byte == '\\') {
      out_ += '\\';
      out_ += static_cast<char>(byte);
      ++at;
    } else if (byte == 0 && nul_ == NulCharacter::kReplace) {
      out_ += kReplacementCharacter;
      ++at;
    } else if (byte < 0x20) {
      appendEscapedControl(out_, byte);
      ++at;
    } else {
      size_t length = utf8SequenceLength(text, at);
      if (length == 0) {
        out_ += kReplacementCharacter;
        ++at;
      } else {
        out_.append(text.data() + at, length);
        at += length;
      }
    }
  }
  out_ += '"';
}

void JsonWriter::optionalString(const std::optional<std::string>& text) {
  if (text) {
    string(*text);
  } else {
    out_ += "null";
  }
}

void JsonWriter::integer(int64_t value) {
  char buffer[24];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  out_.append(buffer, end);
}

void JsonWriter::value(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded:
      out_ += "null";
      return;
    case nlohmann::json::value_t::boolean:
      out_ += value.get<bool>() ? "true" : "false";
      return;
    case nlohmann::json::value_t::number_integer:
      integer(value.get<int64_t>());
      return;
    case nlohmann::json::value_t::number_unsigned: {
      char buffer[24];
      auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value.get<uint64_t>());
      out_.append(buffer, end);
      return;
    }
    case nlohmann::json::value_t::number_float:
      number(value.get<double>());
      return;
    case nlohmann::json::value_t::string:
      string(value.get_ref<const std::string&>());
      return;
    case nlohmann::json::value_t::array: {
      out_ += '[';
      bool first = true;
      for (const nlohmann::json& item : value) {
        if (!first) out_ += ',';
        first = false;
        this->value(item);
      }
      out_ += ']';
      return;
    }
    case nlohmann::json::value_t::object: {
      out_ += '{';
      bool first = true;
      // The map itself: items() builds an index string for every member.
      for (const auto& [name, item] : value.get_ref<const nlohmann::json::object_t&>()) {
        if (!first) out_ += ',';
        first = false;
        string(name);
        out_ += ':';
        this->value(item);
      }
      out_ += '}';
      return;
    }
    case nlohmann::json::value_t::binary:
      break;
  }
  // Binary values never come from JSON text; nlohmann writes them as an object.
  out_ += dumpJson(value);
}

void JsonWriter::number(double value) {
  if (!std::isfinite(value)) {
    out_ += "null";  // as nlohmann writes NaN and infinities
    return;
  }
  char buffer[32];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value);
  std::string_view text(buffer, static_cast<size_t>(end - buffer));
  out_.append(text);
  // Keep it a float when read back: 2.0, not 2.
  if (text.find_first_of(".eE") == std::string_view::npos) out_ += ".0";
}

void JsonWriter::strings(const std::vector<std::string>& list) {
  out_ += '[';
  for (size_t i = 0; i < list.size(); ++i) {
    if (i > 0) out_ += ',';
    string(list[i]);
  }
  out_ += ']';
}

void JsonWriter::span(const Span& span, const ExecutionRecord* gateway_of) {
  out_ += '{';
  firstKey("id");
  integer(span.id);
  key("parent");
  integer(span.parent);
  key("name");
  string(span.name);
  key("start_us");
  integer(span.start_us);
  key("duration_us");
  integer(span.duration_us);
  key("input");
  if (gateway_of != nullptr && span.input.is_null()) {
    raw("{\"method\":");  // in nlohmann's (sorted) key order, as toJson() writes them
    string(gateway_of->method);
    key("path");
    string(gateway_of->path);
    out_ += '}';
  } else {
    value(span.input);
  }
  key("output");
  if (gateway_of != nullptr && span.output.is_null()) {
    raw("{\"status\":");
    integer(gateway_of->status);
    out_ += '}';
  } else {
    value(span.output);
  }
  key("error");
  optionalString(span.error);
  key("location");
  string(span.location);
  key("status");
  string(spanStatusName(span.status));
  key("logs");
  strings(span.logs);
  out_ += '}';
}

void JsonWriter::spans(const ExecutionRecord& record) {
  const std::vector<Span>& spans = record.spans;
  bool captured = record.captured_request || record.captured_response;
  out_ += '[';
  for (size_t i = 0; i < spans.size(); ++i) {
    if (i > 0) out_ += ',';
    bool gateway = i == 0 && captured && spans[i].parent == 0;
    span(spans[i], gateway ? &record : nullptr);
  }
  out_ += ']';
}

void JsonWriter::error(const RecordedError& error) {
  out_ += '{';
  firstKey("message");
  string(error.message);
  key("location");
  string(error.location);
  key("stack");
  string(error.stack);
  key("code");
  string(error.code);
  key("span");
  integer(error.span);
  out_ += '}';
}

void JsonWriter::capture(const HttpCapture& capture, bool request) {
  out_ += '{';
  if (request) {
    firstKey("method");
    string(capture.method);
    key("path");
    string(capture.path);
    key("query");
    string(capture.query);
  } else {
    firstKey("status");
    integer(capture.status);
  }
  key("headers");
  out_ += '[';
  for (size_t i = 0; i < capture.headers.size(); ++i) {
    out_ += i == 0 ? "[" : ",[";
    string(capture.headers[i].first);
    out_ += ',';
    string(capture.headers[i].second);
    out_ += ']';
  }
  out_ += ']';
  key("body");
  string(capture.body);
  out_ += '}';
}

void JsonWriter::request(const ExecutionRecord& record) {
  if (record.captured_request) return capture(*record.captured_request, true);
  value(record.request);
}

void JsonWriter::response(const ExecutionRecord& record) {
  if (record.captured_response) return capture(*record.captured_response, false);
  value(record.response);
}

void JsonWriter::record(const ExecutionRecord& record) {
  out_ += '{';
  firstKey("id");
  string(record.id);
  key("kind");
  string(record.kind);
  key("parent_id");
  optionalString(record.parent_id);
  key("replay_of");
  optionalString(record.replay_of);
  key("tenant");
  optionalString(record.tenant);
  key("function");
  string(record.function);
  key("deployment_id");
  optionalString(record.deployment_id);
  key("git_commit");
  optionalString(record.git_commit);
  key("method");
  string(record.method);
  key("path");
  string(record.path);
  key("status");
  integer(record.status);
  key("error");
  if (record.error) {
    error(*record.error);
  } else {
    out_ += "null";
  }
  key("started_at_us");
  integer(record.started_at_us);
  key("duration_us");
  integer(record.duration_us);
  key("request");
  request(record);
  key("response");
  response(record);
  key("spans");
  spans(record);
  key("journal");
  value(record.journal);
  key("logs");
  strings(record.logs);
  out_ += '}';
}

void JsonWriter::summary(const RecordSummary& summary) {
  out_ += '{';
  firstKey("id");
  string(summary.id);
  key("kind");
  string(summary.kind);
  key("function");
  string(summary.function);
  key("method");
  string(summary.method);
  key("path");
  string(summary.path);
  key("status");
  integer(summary.status);
  key("duration_us");
  integer(summary.duration_us);
  key("error");
  optionalString(summary.error);
  key("started_at_us");
  integer(summary.started_at_us);
  out_ += '}';
}

std::string toJsonText(const ExecutionRecord& record) {
  std::string out;
  JsonWriter(out, NulCharacter::kEscape).record(record);
  return out;
}

}  // namespace flux::record

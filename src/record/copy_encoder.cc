#include "record/copy_encoder.h"

#include <cstdio>
#include <ctime>

#include "record/json_writer.h"
#include "record/utf8.h"

namespace flux::record {
namespace {

// Escapes for COPY text format text that is already valid UTF-8 without NUL (JSON that
// JsonWriter wrote for PostgreSQL).
void appendCopyEscaped(std::string& out, std::string_view text) {
  out.reserve(out.size() + text.size());
  size_t at = 0;
  while (at < text.size()) {
    size_t run = at;
    while (run < text.size() && text[run] != '\\' && text[run] != '\t' && text[run] != '\n' &&
           text[run] != '\r') {
      ++run;
    }
    out.append(text.data() + at, run - at);
    if (run == text.size()) break;
    switch (text[run]) {
      case '\\':
        out += "\\\\";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += "\\r";
    }
    at = run + 1;
  }
}

// Writes one json column: JSON text from `write`, escaped for COPY.
template <typename Write>
void appendJsonColumn(std::string& out, std::string& scratch, Write&& write) {
  scratch.clear();
  JsonWriter writer(scratch, NulCharacter::kReplace);
  write(writer);
  appendCopyEscaped(out, scratch);
}

void appendNullableText(std::string& out, const std::optional<std::string>& text) {
  if (text) {
    appendCopyText(out, *text);
  } else {
    out += "\\N";
  }
}

void appendJson(std::string& out, std::string& scratch, const nlohmann::json& value) {
  if (value.is_null()) {
    out += "\\N";
  } else {
    appendJsonColumn(out, scratch, [&value](JsonWriter& writer) { writer.value(value); });
  }
}

void appendUuid(std::string& out, const std::optional<std::string>& id) {
  if (id && isCanonicalUuid(*id)) {
    out += *id;
  } else {
    out += "\\N";
  }
}

}  // namespace

const char* const kExecutionCopyColumns =
    "(id, kind, parent_id, replay_of, tenant, function, deployment_id, git_commit, method, path, "
    "status, error, started_at, duration_us, request, response, spans, journal, logs)";

Result<void> checkStorable(const ExecutionRecord& record) {
  if (!isCanonicalUuid(record.id)) {
    return fail(
        ErrorCode::kInvalidArgument,
        "execution record id \"" + sanitizedUtf8(record.id.substr(0, 40)) + "\" is not a UUID");
  }
  if (record.started_at_us < 0) {
    return fail(ErrorCode::kInvalidArgument, "execution record " + record.id + ": started_at_us " +
                                                 std::to_string(record.started_at_us) +
                                                 " is before 1970");
  }
  return {};
}

void appendCopyRow(std::string& out, const ExecutionRecord& record) {
  // JSON columns are written here first, then escaped into out.
  thread_local std::string scratch;
  out += record.id;
  out += '\t';
  appendCopyText(out, record.kind);
  out += '\t';
  appendUuid(out, record.parent_id);
  out += '\t';
  appendUuid(out, record.replay_of);
  out += '\t';
  appendNullableText(out, record.tenant);
  out += '\t';
  appendCopyText(out, record.function);
  out += '\t';
  appendNullableText(out, record.deployment_id);
  out += '\t';
  appendNullableText(out, record.git_commit);
  out += '\t';
  appendCopyText(out, record.method);
  out += '\t';
  appendCopyText(out, record.path);
  out += '\t';
  out += std::to_string(record.status);
  out += '\t';
  if (record.error) {
    appendJsonColumn(out, scratch, [&record](JsonWriter& writer) { writer.error(*record.error); });
  } else {
    out += "\\N";
  }
  out += '\t';
  out += timestampText(record.started_at_us);
  out += '\t';
  out += std::to_string(record.duration_us);
  out += '\t';
  if (record.captured_request || !record.request.is_null()) {
    appendJsonColumn(out, scratch, [&record](JsonWriter& writer) { writer.request(record); });
  } else {
    out += "\\N";
  }
  out += '\t';
  if (record.captured_response || !record.response.is_null()) {
    appendJsonColumn(out, scratch, [&record](JsonWriter& writer) { writer.response(record); });
  } else {
    out += "\\N";
  }
  out += '\t';
  appendJsonColumn(out, scratch, [&record](JsonWriter& writer) { writer.spans(record.spans); });
  out += '\t';
  appendJson(out, scratch, record.journal);
  out += '\t';
  appendJsonColumn(out, scratch, [&record](JsonWriter& writer) { writer.strings(record.logs); });
  out += '\n';
}

void appendCopyText(std::string& out, std::string_view text) {
  out.reserve(out.size() + text.size());
  size_t at = 0;
  while (at < text.size()) {
    // Plain ASCII runs go in whole; everything else is looked at byte by byte.
    size_t run = at;
    while (run < text.size()) {
      auto byte = static_cast<unsigned char>(text[run]);
      if (byte == 0 || byte >= 0x80 || byte == '\\' || byte == '\t' || byte == '\n' ||
          byte == '\r') {
        break;
      }
      ++run;
    }
    out.append(text.data() + at, run - at);
    if (run == text.size()) break;
    at = run;
    size_t length = text[at] == '\0' ? 0 : utf8SequenceLength(text, at);
    if (length == 0) {
      out += kReplacementCharacter;
      at += 1;
    } else if (length > 1) {
      out.append(text.data() + at, length);
      at += length;
    } else {
      appendCopyEscaped(out, text.substr(at, 1));
      at += 1;
    }
  }
}

std::string jsonForPostgres(const nlohmann::json& value) {
  std::string text;
  JsonWriter(text, NulCharacter::kReplace).value(value);
  return text;
}

std::string sanitizedUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t at = 0; at < text.size();) {
    size_t length = utf8SequenceLength(text, at);
    if (length == 0 || text[at] == '\0') {
      out += kReplacementCharacter;
      at += 1;
    } else {
      out.append(text.substr(at, length));
      at += length;
    }
  }
  return out;
}

std::string timestampText(int64_t unix_us) {
  std::time_t seconds = static_cast<std::time_t>(unix_us / 1000000);
  auto micros = static_cast<long>(unix_us % 1000000);
  std::tm parts{};
  gmtime_r(&seconds, &parts);
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02d %02d:%02d:%02d.%06ld+00",
                parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min,
                parts.tm_sec, micros);
  return buffer;
}

}  // namespace flux::record

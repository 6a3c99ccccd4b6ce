#include "record/copy_encoder.h"

#include "record/json_writer.h"
#include "record/utf8.h"

namespace flux::record {
namespace {

// PostgreSQL's timestamps count microseconds from 2000-01-01 00:00:00 UTC.
constexpr int64_t kPostgresEpochUnixUs = 946'684'800'000'000;

template <typename Int>
void appendBigEndian(std::string& out, Int value) {
  auto bits = static_cast<std::make_unsigned_t<Int>>(value);
  for (int shift = 8 * (sizeof(Int) - 1); shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((bits >> shift) & 0xff));
  }
}

void appendNull(std::string& out) { appendBigEndian<int32_t>(out, -1); }

// A field whose bytes `write` appends: its length goes in front once they are known.
template <typename Write>
void appendField(std::string& out, Write&& write) {
  size_t length_at = out.size();
  out.append(4, '\0');
  write(out);
  auto length = static_cast<uint32_t>(out.size() - length_at - 4);
  for (int i = 0; i < 4; ++i) out[length_at + i] = static_cast<char>(length >> (24 - 8 * i));
}

// Appends text as valid UTF-8 without NUL: each invalid sequence (and each NUL) becomes U+FFFD.
void appendSanitized(std::string& out, std::string_view text) {
  size_t at = 0;
  while (at < text.size()) {
    size_t run = at;  // plain ASCII goes in whole
    while (run < text.size() && text[run] != '\0' && static_cast<unsigned char>(text[run]) < 0x80) {
      ++run;
    }
    out.append(text.data() + at, run - at);
    if (run == text.size()) break;
    at = run;
    size_t length = text[at] == '\0' ? 0 : utf8SequenceLength(text, at);
    if (length == 0) {
      out += kReplacementCharacter;
      at += 1;
    } else {
      out.append(text.data() + at, length);
      at += length;
    }
  }
}

void appendText(std::string& out, std::string_view text) {
  appendField(out, [text](std::string& field) { appendSanitized(field, text); });
}

void appendNullableText(std::string& out, const std::optional<std::string>& text) {
  if (text) {
    appendText(out, *text);
  } else {
    appendNull(out);
  }
}

// JSON written by `write` (JsonWriter: valid UTF-8, NUL replaced).
template <typename Write>
void appendJson(std::string& out, Write&& write) {
  appendField(out, [&write](std::string& field) {
    JsonWriter writer(field, NulCharacter::kReplace);
    write(writer);
  });
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  return (c | 0x20) - 'a' + 10;
}

// A canonical UUID's 16 bytes; NULL for anything else.
void appendUuid(std::string& out, const std::optional<std::string>& id) {
  if (!id || !isCanonicalUuid(*id)) return appendNull(out);
  appendBigEndian<int32_t>(out, 16);
  for (size_t i = 0; i < id->size(); i += 2) {
    if ((*id)[i] == '-') ++i;
    out.push_back(static_cast<char>(hexValue((*id)[i]) << 4 | hexValue((*id)[i + 1])));
  }
}

}  // namespace

#define FLUX_EXECUTION_COLUMNS                                                                   \
  "(id, kind, parent_id, replay_of, tenant, function, deployment_id, git_commit, method, path, " \
  "status, error, started_at, duration_us, request, response, spans, journal, logs)"
const char* const kExecutionCopyColumns = FLUX_EXECUTION_COLUMNS;
const char* const kExecutionCopyFrom = FLUX_EXECUTION_COLUMNS " FROM STDIN WITH (FORMAT binary)";
#undef FLUX_EXECUTION_COLUMNS

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

void appendCopyHeader(std::string& out) {
  static constexpr char kSignature[] = "PGCOPY\n\xff\r\n";  // and its NUL
  out.append(kSignature, sizeof kSignature);
  appendBigEndian<int32_t>(out, 0);  // flags: no OIDs
  appendBigEndian<int32_t>(out, 0);  // no header extension
}

void appendCopyTrailer(std::string& out) { appendBigEndian<int16_t>(out, -1); }

void appendCopyTuple(std::string& out, const ExecutionRecord& record) {
  appendBigEndian<int16_t>(out, 19);  // the columns of kExecutionCopyColumns
  appendUuid(out, record.id);
  appendText(out, record.kind);
  appendUuid(out, record.parent_id);
  appendUuid(out, record.replay_of);
  appendNullableText(out, record.tenant);
  appendText(out, record.function);
  appendNullableText(out, record.deployment_id);
  appendNullableText(out, record.git_commit);
  appendText(out, record.method);
  appendText(out, record.path);
  appendBigEndian<int32_t>(out, 4);
  appendBigEndian<int32_t>(out, record.status);
  if (record.error) {
    appendJson(out, [&record](JsonWriter& writer) { writer.error(*record.error); });
  } else {
    appendNull(out);
  }
  appendBigEndian<int32_t>(out, 8);
  appendBigEndian<int64_t>(out, record.started_at_us - kPostgresEpochUnixUs);
  appendBigEndian<int32_t>(out, 8);
  appendBigEndian<int64_t>(out, record.duration_us);
  if (record.captured_request || !record.request.is_null()) {
    appendJson(out, [&record](JsonWriter& writer) { writer.request(record); });
  } else {
    appendNull(out);
  }
  if (record.captured_response || !record.response.is_null()) {
    appendJson(out, [&record](JsonWriter& writer) { writer.response(record); });
  } else {
    appendNull(out);
  }
  appendJson(out, [&record](JsonWriter& writer) { writer.spans(record); });
  if (record.journal.is_null()) {
    appendNull(out);
  } else {
    appendJson(out, [&record](JsonWriter& writer) { writer.value(record.journal); });
  }
  appendJson(out, [&record](JsonWriter& writer) { writer.strings(record.logs); });
}

std::string jsonForPostgres(const nlohmann::json& value) {
  std::string text;
  JsonWriter(text, NulCharacter::kReplace).value(value);
  return text;
}

std::string sanitizedUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  appendSanitized(out, text);
  return out;
}

}  // namespace flux::record

// COPY text encoding of execution records: one line per record, columns in
// kExecutionCopyColumns order, for `COPY flux.executions (...) FROM STDIN` (text format).
//
// PostgreSQL refuses two things a record may well contain: a NUL character (in text, and as
// \u0000 in jsonb) and invalid UTF-8. Both become U+FFFD here, in text columns and inside JSON
// strings, so one odd request body can never fail a batch. Everything else is stored exactly:
// backslash, tab, newline and carriage return are escaped for COPY, and JSON's own escapes
// travel inside that.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/error.h"
#include "record/execution_record.h"

namespace flux::record {

// "(id, kind, parent_id, ...)": the column list of every COPY into flux.executions (or a table
// LIKE it).
extern const char* const kExecutionCopyColumns;

// Whether flux.executions can hold the record: its id is a canonical UUID and started_at_us is
// not before 1970 (PostgreSQL's timestamptz cannot hold every int64 of microseconds). A record
// that fails this is rejected by the recorder, never stored.
Result<void> checkStorable(const ExecutionRecord& record);

// Appends the record as one COPY text line, newline included. Precondition: checkStorable.
// parent_id / replay_of that are not UUIDs are written as NULL.
void appendCopyRow(std::string& out, const ExecutionRecord& record);

// Appends text as one COPY text field: invalid UTF-8 and NUL replaced by U+FFFD, then
// backslash, tab, newline and carriage return escaped.
void appendCopyText(std::string& out, std::string_view text);

// JSON text that jsonb accepts: dumpJson() with every \u0000 escape turned into \ufffd.
std::string jsonForPostgres(const nlohmann::json& value);

// Valid UTF-8 without NUL: each invalid sequence (and each NUL) becomes U+FFFD.
std::string sanitizedUtf8(std::string_view text);

// "2024-05-01 12:34:56.789012+00" for Unix microseconds (not negative).
std::string timestampText(int64_t unix_us);

}  // namespace flux::record

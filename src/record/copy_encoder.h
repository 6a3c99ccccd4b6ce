// COPY binary encoding of execution records, for
// `COPY flux.executions (...) FROM STDIN WITH (FORMAT binary)` (kExecutionCopyFrom): a header,
// one tuple per record with the columns of kExecutionCopyColumns in order, a trailer.
//
// Binary, not text: PostgreSQL then reads each field by its length and converts uuid, int and
// timestamptz from their fixed-size forms, instead of scanning every byte for escapes and
// parsing text (a recorded hello request: ~46k instructions a row against ~76k;
// bench/record_instructions.sh).
//
// PostgreSQL refuses two things a record may well contain: a NUL character and invalid UTF-8.
// Both become U+FFFD here, in text columns and inside JSON strings, so one odd request body can
// never fail a batch. Everything else is stored exactly.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/error.h"
#include "record/execution_record.h"

namespace flux::record {

// "(id, kind, parent_id, ...)": the column list of every COPY into flux.executions (or a table
// LIKE it).
extern const char* const kExecutionCopyColumns;

// "<kExecutionCopyColumns> FROM STDIN WITH (FORMAT binary)": follows "COPY <table> ".
extern const char* const kExecutionCopyFrom;

// Whether flux.executions can hold the record: its id is a canonical UUID and started_at_us is
// not before 1970 (PostgreSQL's timestamptz cannot hold every int64 of microseconds). A record
// that fails this is rejected by the recorder, never stored.
Result<void> checkStorable(const ExecutionRecord& record);

// The COPY data for records (each checkStorable): header, tuples, trailer. parent_id /
// replay_of that are not UUIDs are written as NULL.
template <typename Records>
std::string encodeCopyData(const Records& records);

// The pieces of encodeCopyData.
void appendCopyHeader(std::string& out);
void appendCopyTuple(std::string& out, const ExecutionRecord& record);
void appendCopyTrailer(std::string& out);

// JSON text that PostgreSQL accepts: dumpJson() with every \u0000 escape turned into \ufffd.
std::string jsonForPostgres(const nlohmann::json& value);

// Valid UTF-8 without NUL: each invalid sequence (and each NUL) becomes U+FFFD.
std::string sanitizedUtf8(std::string_view text);

inline const ExecutionRecord& recordOf(const ExecutionRecord& record) { return record; }
inline const ExecutionRecord& recordOf(const std::unique_ptr<ExecutionRecord>& record) {
  return *record;
}

template <typename Records>
std::string encodeCopyData(const Records& records) {
  std::string out;
  appendCopyHeader(out);
  for (const auto& record : records) appendCopyTuple(out, recordOf(record));
  appendCopyTrailer(out);
  return out;
}

}  // namespace flux::record

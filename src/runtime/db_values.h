// Conversions between JS values and PostgreSQL's text format, the one place where a JS value
// becomes a bound SQL parameter and a result column becomes a JS value.
//
// To SQL: null/undefined -> NULL; string; number; bigint; boolean; Date -> ISO 8601; bytes
// (Uint8Array, ArrayBuffer) -> bytea hex; array -> a PostgreSQL array literal (or JSON for a
// json/jsonb column or when it holds objects); other objects -> JSON.
// To JS: bool; int2/int4/float -> number; int8 -> number when exact, else string; numeric ->
// string; json/jsonb -> parsed; timestamptz -> ISO string; bytea -> Uint8Array; arrays of
// these -> arrays; anything else -> its text.
#pragma once

#include <v8.h>

#include <optional>
#include <string>

#include "base/error.h"
#include "data/pg_connection.h"

namespace flux::runtime {

// column_type: format_type() of the target column when known ("jsonb", "integer[]"), else empty.
Result<std::optional<std::string>> toSqlValue(v8::Local<v8::Context> context,
                                              v8::Local<v8::Value> value,
                                              std::string_view column_type = {});

v8::Local<v8::Value> fromSqlValue(v8::Local<v8::Context> context, uint32_t type_oid,
                                  const std::string& text);

// Rows as an array of plain objects keyed by column name.
v8::Local<v8::Array> rowsToJs(v8::Local<v8::Context> context, const data::QueryResult& result);

}  // namespace flux::runtime

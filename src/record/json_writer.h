// JsonWriter: writes records as JSON text straight into a string, without building a JSON
// tree first (the recorder's hot path: building and freeing an nlohmann tree per record costs
// several times the writing). The text parses to exactly what toJson() gives; keys come in
// declaration order rather than sorted.
//
// Strings are written like dumpJson(): invalid UTF-8 becomes U+FFFD. What a NUL character
// becomes is the writer's choice: "\u0000" (exact JSON), or U+FFFD for PostgreSQL, whose JSON
// functions refuse to unescape \u0000. Floats are written in their shortest round-trip form
// (2.0 keeps its ".0"); NaN and infinities as null, as nlohmann does.
#pragma once

#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "record/execution_record.h"

namespace flux::record {

enum class NulCharacter { kEscape, kReplace };

class JsonWriter {
 public:
  JsonWriter(std::string& out, NulCharacter nul) : out_(out), nul_(nul) {}

  void string(std::string_view text);
  void optionalString(const std::optional<std::string>& text);
  void integer(int64_t value);
  void number(double value);
  void value(const nlohmann::json& value);
  void strings(const std::vector<std::string>& list);
  // `"name":` for an object's first member, `,"name":` for the others, name a literal: one
  // append of bytes put together on the stack (three appends cost ~3k instructions a record).
  template <size_t N>
  void firstKey(const char (&name)[N]) {
    appendKey<N, false>(name);
  }
  template <size_t N>
  void key(const char (&name)[N]) {
    appendKey<N, true>(name);
  }
  void raw(std::string_view text) { out_.append(text); }

  void record(const ExecutionRecord& record);
  // `gateway_of`: the record whose root span this is, when its input and output are to be
  // written from the record's captures (see spans()).
  void span(const Span& span, const ExecutionRecord* gateway_of = nullptr);
  // The record's spans. A record with captures (the gateway's, still raw) has its root span's
  // empty input and output written as fillGatewaySpan() would fill them: {method, path} and
  // {status}, without building them as JSON values first.
  void spans(const ExecutionRecord& record);
  void error(const RecordedError& error);
  // As toJson(capture, request) has it.
  void capture(const HttpCapture& capture, bool request);
  // The record's request / response: its capture when it has one, else the JSON.
  void request(const ExecutionRecord& record);
  void response(const ExecutionRecord& record);
  void summary(const RecordSummary& summary);

 private:
  template <size_t N, bool kComma>
  void appendKey(const char (&name)[N]) {
    char text[N + 3];
    size_t at = 0;
    if constexpr (kComma) text[at++] = ',';
    text[at++] = '"';
    std::memcpy(text + at, name, N - 1);
    at += N - 1;
    text[at++] = '"';
    text[at++] = ':';
    out_.append(text, at);
  }

  std::string& out_;
  NulCharacter nul_;
};

// The record as one line of JSON text (no newline), as the spill file holds it.
std::string toJsonText(const ExecutionRecord& record);

}  // namespace flux::record

// How fetch calls appear in an execution record: the fetch span's input and output, and the
// fetch entry of the IO journal. Pure functions, unit-tested (span_values_test.cc).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "net/fetch_client.h"
#include "net/http_message.h"

namespace flux::runtime {

// Bodies shown in a fetch span (request and response): at most this many bytes.
inline constexpr size_t kSpanBodyBytes = 4 * 1024;
// Response bodies kept in the IO journal: at most this many bytes.
inline constexpr size_t kJournalBodyBytes = 1024 * 1024;

// A body as a record shows it: the text when it is UTF-8 (cut at `cap` bytes, at a character
// boundary, into the record's truncation marker {"truncated": true, "bytes": N, "head": ...}),
// "<N bytes of binary data>" otherwise; null when empty.
nlohmann::json recordedBody(std::string_view body, size_t cap);

// Headers as a span shows them: {lower-case name: value}, repeated names joined with ", ";
// authorization, proxy-authorization, cookie, set-cookie and x-api-key as "[redacted]".
nlohmann::json recordedHeaders(const std::vector<net::HttpHeader>& headers);

// The fetch span's input: {method, url, headers, body}.
nlohmann::json fetchSpanInput(const net::FetchRequest& request);
// The fetch span's output: {status, statusText, headers, body} and, after redirects,
// {url, redirects}.
nlohmann::json fetchSpanOutput(const net::FetchResponse& response);
// The journal's value for a response: {status, statusText, headers: [[name, value], ...] as
// received, body (UTF-8 text, or {"base64": ...} for binary; over kJournalBodyBytes the
// truncation marker), url}.
nlohmann::json fetchJournalValue(const net::FetchResponse& response);

// The text of a fetch span's error: "network error: <cause>" (or the cause itself for a bad
// URL or an oversized body).
std::string fetchSpanError(const Error& error);

}  // namespace flux::runtime

// Redactor: keeps secrets and oversized bodies out of execution records.
//
// Two rules decide what is a secret:
//   - header names, compared case-insensitively and exactly ("authorization", "cookie", ...);
//   - field names, compared after normalizing both sides (lower case, only letters and digits
//     kept: "card_number", "cardNumber" and "Card Number" are all "cardnumber"), matching any key
//     that contains one ("api_token", "client_secret", "userPassword"). A header whose name
//     matches a field rule ("X-Auth-Token") is a secret too.
// A secret's value, whatever its type, becomes the string "[redacted]"; the key stays, so a
// reader sees that a value was there.
//
// apply() covers a whole record: the request's headers, query and body, the response's headers
// and body (captured or JSON), every span's input and output and, unless switched off, the IO
// journal's values.
// JSON bodies are walked recursively; a body held as a string is parsed when its content-type
// says JSON (or it looks like a JSON object/array) and redacted as form fields when it is
// application/x-www-form-urlencoded; a string under the key "url" (a fetch span's) has its
// query parameters redacted as form fields. Other free text (logs, error messages) is not
// inspected.
//
// Bodies (and span inputs/outputs) longer than body_cap_bytes, measured as their JSON text
// (or the string's bytes), are replaced by {"truncated": true, "bytes": N, "head": "<first
// body_cap_bytes bytes, cut at a UTF-8 boundary>"}. Journal values are never truncated: replay
// needs them whole.
//
// Redacting twice is the same as once. Thread: const methods, safe from any thread.
#pragma once

#include <bitset>
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "record/execution_record.h"

namespace flux::record {

inline constexpr std::string_view kRedacted = "[redacted]";

struct RedactionOptions {
  std::vector<std::string> header_names = {"authorization", "proxy-authorization", "cookie",
                                           "set-cookie", "x-api-key"};
  std::vector<std::string> field_names = {"password",    "passwd", "token",   "secret",
                                          "card_number", "cvv",    "api_key", "private_key"};
  size_t body_cap_bytes = 64 * 1024;
  // The journal feeds replay: a redacted value replays as "[redacted]". Secrets stay out of
  // the record by default all the same.
  enum class Journal { kRedact, kKeep } journal = Journal::kRedact;
};

class Redactor {
 public:
  explicit Redactor(RedactionOptions options = {});

  bool isSecretHeader(std::string_view name) const;
  bool isSecretField(std::string_view key) const;

  // A header list in any of the shapes the gateway may capture: an object {name: value or
  // [values]}, an array of [name, value] pairs, or an array of {"name", "value"} objects.
  void redactHeaders(nlohmann::json& headers) const;
  // A JSON value (object keys at any depth) or a string body interpreted by content_type.
  void redactBody(nlohmann::json& body, std::string_view content_type = {}) const;
  // Replaces a value longer than the cap by the truncation marker.
  void capBody(nlohmann::json& body) const;

  // Headers, query and body of a capture, in place (bodies are not capped here).
  void redactCapture(HttpCapture& capture) const;

  void apply(ExecutionRecord& record) const;

  const RedactionOptions& options() const { return options_; }

 private:
  // `parent_key`: the key `value` sits under, if any (a field is matched with it prefixed).
  void redactValue(nlohmann::json& value, std::string_view parent_key = {}) const;
  void redactString(std::string& text, std::string_view content_type) const;
  // The query parameters of a URL (a span's "url": a fetch's), as form fields.
  void redactUrlQuery(std::string& url) const;

  RedactionOptions options_;
  std::vector<std::string> header_names_;  // lower case
  std::vector<std::string> field_names_;   // normalized
  std::bitset<65536> field_starts_;        // the first two bytes of field_names_ (as 256 a + b)
  std::bitset<256> one_letter_fields_;     // field names of one letter
};

// The first value of a header (case-insensitive name) in any of the shapes redactHeaders()
// accepts, or empty.
std::string headerValue(const nlohmann::json& headers, std::string_view name);

}  // namespace flux::record

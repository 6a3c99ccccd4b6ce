#include "record/redactor.h"

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

namespace flux::record {
namespace {

using nlohmann::json;

// Field names meet lower case, letters and digits only ("Card Number", "card_number" and
// "cardNumber" are all "cardnumber"): each byte's normalized form, 0 for a byte dropped. A
// table, not isalnum/tolower: every key of every record goes through it.
constexpr std::array<char, 256> kFieldChar = [] {
  std::array<char, 256> table{};
  for (int c = '0'; c <= '9'; ++c) table[c] = static_cast<char>(c);
  for (int c = 'a'; c <= 'z'; ++c) table[c] = static_cast<char>(c);
  for (int c = 'A'; c <= 'Z'; ++c) table[c] = static_cast<char>(c - 'A' + 'a');
  return table;
}();

size_t pairIndex(char first, char second) {
  return static_cast<unsigned char>(first) * 256u + static_cast<unsigned char>(second);
}

char lowerAscii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lowerCase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = lowerAscii(c);
  return out;
}

std::string normalizedField(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (char normal = kFieldChar[static_cast<unsigned char>(c)]) out += normal;
  }
  return out;
}

bool isRedacted(const json& value) {
  return value.is_string() && value.get_ref<const std::string&>() == kRedacted;
}

// Sets value to the redaction marker; returns whether anything changed.
bool redact(json& value) {
  if (isRedacted(value)) return false;
  value = std::string(kRedacted);
  return true;
}

// The marker capBody() leaves, recognized so that capping twice changes nothing.
bool isTruncationMarker(const json& value) {
  if (!value.is_object() || value.size() != 3) return false;
  auto truncated = value.find("truncated");
  return truncated != value.end() && truncated->is_boolean() && truncated->get<bool>() &&
         value.contains("bytes") && value.contains("head");
}

// The longest prefix of text no longer than limit that does not end inside a UTF-8 sequence.
std::string_view utf8Prefix(std::string_view text, size_t limit) {
  if (text.size() <= limit) return text;
  size_t end = limit;
  // Step back over continuation bytes (10xxxxxx) to the start of the cut sequence.
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

// An upper bound of value's JSON text length (exact but for numbers, counted at their longest,
// strings of up to 64 bytes, counted as if every byte were escaped, and bytes of invalid UTF-8,
// counted as their replacement); stops once past limit.
size_t jsonSizeBound(const json& value, size_t limit) {
  auto string_bound = [](const std::string& text) {
    // A short string at its worst (every byte a \u00XX escape): no need to look.
    if (text.size() <= 64) return text.size() * 6 + 2;
    size_t size = 2;
    for (char c : text) {
      auto byte = static_cast<unsigned char>(c);
      size += byte == '"' || byte == '\\' ? 2 : byte < 0x20 ? 6 : byte >= 0x80 ? 3 : 1;
    }
    return size;
  };
  switch (value.type()) {
    case json::value_t::null:
    case json::value_t::discarded:
      return 4;
    case json::value_t::boolean:
      return 5;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return 20;
    case json::value_t::number_float:
      return 25;
    case json::value_t::string:
      return string_bound(value.get_ref<const std::string&>());
    case json::value_t::array: {
      size_t size = 2;
      for (const json& item : value) {
        size += jsonSizeBound(item, limit) + 1;
        if (size > limit) break;
      }
      return size;
    }
    case json::value_t::object: {
      size_t size = 2;
      for (const auto& [key, item] : value.get_ref<const json::object_t&>()) {
        size += string_bound(key) + 2 + jsonSizeBound(item, limit);
        if (size > limit) break;
      }
      return size;
    }
    case json::value_t::binary:
      break;
  }
  return dumpJson(value).size();
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding of one name ('+' is a space, %XX a byte).
std::string formDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && hexValue(text[i + 1]) >= 0 &&
               hexValue(text[i + 2]) >= 0) {
      out += static_cast<char>(hexValue(text[i + 1]) * 16 + hexValue(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// parent + key in a scratch buffer of this thread (valid until the next call).
std::string_view joined(std::string_view parent, std::string_view key) {
  thread_local std::string both;
  both.assign(parent);
  both.append(key);
  return both;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return lowerAscii(x) == lowerAscii(y);
         });
}

bool looksLikeJson(std::string_view text) {
  size_t first = text.find_first_not_of(" \t\r\n");
  return first != std::string_view::npos && (text[first] == '{' || text[first] == '[');
}

// Reads JSON text for a key that redactValue() would act on, without building a tree: most
// bodies have none, and then their text stays as it is without being parsed into a tree and
// written out twice. It stops at the first such key (a secret one, or "url" / "headers", whose
// values redactValue() looks into); redactValue() on the parsed tree then decides.
class KeyScan final : public nlohmann::json_sax<json> {
 public:
  explicit KeyScan(const Redactor& redactor) : redactor_(redactor) {}

  // Whether the text is valid JSON and has such a key; false for invalid JSON.
  bool mayNeedRedaction(std::string_view text) { return !json::sax_parse(text, this) && !invalid_; }

  bool key(string_t& name) override {
    const std::string& context = frames_.back().context;
    if (redactor_.isSecretHeader(name) ||
        (!context.empty() && redactor_.isSecretField(joined(context, name))) ||
        equalsIgnoreCase(name, "url") || equalsIgnoreCase(name, "headers")) {
      return false;
    }
    frames_.back().key = name;
    return true;
  }
  bool start_object(std::size_t) override { return open(true); }
  bool start_array(std::size_t) override { return open(false); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    invalid_ = true;
    return false;
  }

 private:
  // An open object or array, and the parent key redactValue() judges its items with: an
  // object's own key for the value under it, an array's context for its items.
  struct Frame {
    bool object = false;
    std::string context;
    std::string key;
  };

  bool open(bool object) {
    std::string context;
    if (!frames_.empty())
      context = frames_.back().object ? frames_.back().key : frames_.back().context;
    frames_.push_back({object, std::move(context), {}});
    return true;
  }
  bool close() {
    frames_.pop_back();
    return true;
  }

  const Redactor& redactor_;
  std::vector<Frame> frames_;
  bool invalid_ = false;
};

}  // namespace

Redactor::Redactor(RedactionOptions options) : options_(std::move(options)) {
  for (const std::string& name : options_.header_names) {
    if (!name.empty()) header_names_.push_back(lowerCase(name));
  }
  for (const std::string& name : options_.field_names) {
    std::string normalized = normalizedField(name);
    // A name with no letter or digit would match every key.
    if (normalized.empty()) continue;
    if (normalized.size() == 1) {
      one_letter_fields_.set(static_cast<unsigned char>(normalized[0]));
    } else {
      field_starts_.set(pairIndex(normalized[0], normalized[1]));
    }
    field_names_.push_back(std::move(normalized));
  }
}

// Both run for every object key and header name of every record (~30 a hello request): no
// allocation for keys up to kKeyBuffer bytes, and field names are compared only where the key
// holds the first two letters of one.
bool Redactor::isSecretField(std::string_view key) const {
  constexpr size_t kKeyBuffer = 128;
  char buffer[kKeyBuffer];
  std::string long_key;
  char* normal = buffer;
  if (key.size() > kKeyBuffer) {
    long_key.resize(key.size());
    normal = long_key.data();
  }
  size_t size = 0;
  for (char c : key) {
    if (char n = kFieldChar[static_cast<unsigned char>(c)]) normal[size++] = n;
  }
  std::string_view normalized(normal, size);
  for (size_t at = 0; at < size; ++at) {
    if (one_letter_fields_.test(static_cast<unsigned char>(normalized[at]))) return true;
    if (at + 1 == size || !field_starts_.test(pairIndex(normalized[at], normalized[at + 1]))) {
      continue;
    }
    std::string_view rest = normalized.substr(at);
    for (const std::string& field : field_names_) {
      if (rest.starts_with(field)) return true;
    }
  }
  return false;
}

bool Redactor::isSecretHeader(std::string_view name) const {
  return std::any_of(
             header_names_.begin(), header_names_.end(),
             [name](const std::string& header) { return equalsIgnoreCase(name, header); }) ||
         isSecretField(name);
}

void Redactor::redactHeaders(json& headers) const {
  if (headers.is_object()) {
    for (auto& [name, value] : headers.get_ref<json::object_t&>()) {
      if (isSecretHeader(name)) redact(value);
    }
    return;
  }
  if (!headers.is_array()) return;
  for (json& entry : headers) {
    if (entry.is_array() && entry.size() >= 2 && entry[0].is_string()) {
      if (isSecretHeader(entry[0].get_ref<const std::string&>())) {
        for (size_t i = 1; i < entry.size(); ++i) redact(entry[i]);
      }
    } else if (entry.is_object()) {
      auto name = entry.find("name");
      auto value = entry.find("value");
      if (name != entry.end() && name->is_string() && value != entry.end() &&
          isSecretHeader(name->get_ref<const std::string&>())) {
        redact(*value);
      }
    }
  }
}

void Redactor::redactValue(json& value, std::string_view parent_key) const {
  if (value.is_object()) {
    // The map itself: items() builds an index string for every member.
    for (auto& [key, item] : value.get_ref<json::object_t&>()) {
      // A field counts with its parent's name too: {"card": {"number": ...}} is a card number.
      if (isSecretHeader(key) || (!parent_key.empty() && isSecretField(joined(parent_key, key)))) {
        redact(item);
      } else if (item.is_string() && equalsIgnoreCase(key, "url")) {
        redactUrlQuery(item.get_ref<std::string&>());
      } else if (equalsIgnoreCase(key, "headers")) {
        redactHeaders(item);
      } else {
        redactValue(item, key);
      }
    }
  } else if (value.is_array()) {
    for (json& item : value) redactValue(item, parent_key);
  }
}

void Redactor::redactString(std::string& text, std::string_view content_type) const {
  std::string type = lowerCase(content_type);
  if (type.find("json") != std::string::npos || (type.empty() && looksLikeJson(text))) {
    if (!KeyScan(*this).mayNeedRedaction(text)) return;
    json parsed = json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) return;
    std::string before = dumpJson(parsed);
    redactValue(parsed);
    std::string after = dumpJson(parsed);
    // Untouched bodies keep their exact bytes.
    if (after != before) text = std::move(after);
    return;
  }
  if (type.find("application/x-www-form-urlencoded") == std::string::npos) return;
  std::string out;
  out.reserve(text.size());
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('&', start);
    if (end == std::string::npos) end = text.size();
    std::string_view pair = std::string_view(text).substr(start, end - start);
    size_t equals = pair.find('=');
    if (start > 0) out += '&';
    if (equals != std::string_view::npos && isSecretField(formDecode(pair.substr(0, equals)))) {
      out.append(pair.substr(0, equals + 1));
      out.append(kRedacted);
    } else {
      out.append(pair);
    }
    start = end + 1;
  }
  text = std::move(out);
}

void Redactor::redactUrlQuery(std::string& url) const {
  size_t query = url.find('?');
  if (query == std::string::npos) return;
  size_t fragment = url.find('#', query);
  size_t end = fragment == std::string::npos ? url.size() : fragment;
  std::string params = url.substr(query + 1, end - query - 1);
  redactString(params, "application/x-www-form-urlencoded");
  url.replace(query + 1, end - query - 1, params);
}

void Redactor::redactBody(json& body, std::string_view content_type) const {
  if (body.is_string()) {
    redactString(body.get_ref<std::string&>(), content_type);
  } else {
    redactValue(body);
  }
}

void Redactor::capBody(json& body) const {
  if (body.is_null() || isTruncationMarker(body)) return;
  if (body.is_string()) {
    const std::string& text = body.get_ref<const std::string&>();
    if (text.size() <= options_.body_cap_bytes) return;
    size_t bytes = text.size();
    std::string head(utf8Prefix(text, options_.body_cap_bytes));
    body = json{{"truncated", true}, {"bytes", bytes}, {"head", std::move(head)}};
    return;
  }
  if (!body.is_structured()) return;  // a number or a boolean is never long
  // Most bodies are far below the cap: only a close one is serialized to measure it.
  if (jsonSizeBound(body, options_.body_cap_bytes) <= options_.body_cap_bytes) return;
  std::string text = dumpJson(body);
  if (text.size() <= options_.body_cap_bytes) return;
  size_t bytes = text.size();
  std::string head(utf8Prefix(text, options_.body_cap_bytes));
  body = json{{"truncated", true}, {"bytes", bytes}, {"head", std::move(head)}};
}

void Redactor::redactCapture(HttpCapture& capture) const {
  std::string_view content_type;
  for (auto& [name, value] : capture.headers) {
    if (isSecretHeader(name)) {
      value = kRedacted;
    } else if (content_type.empty() && equalsIgnoreCase(name, "content-type")) {
      content_type = value;
    }
  }
  if (!capture.query.empty()) redactString(capture.query, "application/x-www-form-urlencoded");
  if (!capture.body.empty()) redactString(capture.body, content_type);
}

void Redactor::apply(ExecutionRecord& record) const {
  // Captures are redacted in place and stored as they are (JsonWriter::capture), unless a body
  // needs the truncation marker, which only the JSON form can hold.
  auto too_long = [this](const std::optional<HttpCapture>& capture) {
    return capture && capture->body.size() > options_.body_cap_bytes;
  };
  if (too_long(record.captured_request) || too_long(record.captured_response)) {
    materialize(record);
  }
  for (std::optional<HttpCapture>* capture :
       {&record.captured_request, &record.captured_response}) {
    if (*capture) redactCapture(**capture);
  }
  for (json* message : {&record.request, &record.response}) {
    if (!message->is_object()) continue;
    std::string content_type;
    if (auto headers = message->find("headers"); headers != message->end()) {
      content_type = headerValue(*headers, "content-type");
      redactHeaders(*headers);
    }
    if (auto query = message->find("query"); query != message->end()) {
      if (query->is_string()) {
        redactString(query->get_ref<std::string&>(), "application/x-www-form-urlencoded");
      } else {
        redactValue(*query);
      }
    }
    if (auto body = message->find("body"); body != message->end()) {
      redactBody(*body, content_type);
      capBody(*body);
    }
  }
  for (Span& span : record.spans) {
    redactValue(span.input);
    redactValue(span.output);
    capBody(span.input);
    capBody(span.output);
  }
  if (options_.journal == RedactionOptions::Journal::kRedact) redactValue(record.journal);
}

std::string headerValue(const json& headers, std::string_view name) {
  std::string wanted = lowerCase(name);
  auto text = [](const json& value) -> std::string {
    if (value.is_string()) return value.get<std::string>();
    if (value.is_array() && !value.empty() && value[0].is_string())
      return value[0].get<std::string>();
    return "";
  };
  if (headers.is_object()) {
    for (const auto& [key, value] : headers.items()) {
      if (lowerCase(key) == wanted) return text(value);
    }
  } else if (headers.is_array()) {
    for (const json& entry : headers) {
      if (entry.is_array() && entry.size() >= 2 && entry[0].is_string() &&
          lowerCase(entry[0].get_ref<const std::string&>()) == wanted) {
        return text(entry[1]);
      }
      if (entry.is_object()) {
        auto key = entry.find("name");
        auto value = entry.find("value");
        if (key != entry.end() && key->is_string() && value != entry.end() &&
            lowerCase(key->get_ref<const std::string&>()) == wanted) {
          return text(*value);
        }
      }
    }
  }
  return "";
}

}  // namespace flux::record

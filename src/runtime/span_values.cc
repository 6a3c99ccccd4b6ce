#include "runtime/span_values.h"

#include <cctype>

#include "record/redactor.h"
#include "record/utf8.h"

namespace flux::runtime {

namespace {

bool isUtf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    size_t n = record::utf8SequenceLength(text, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string_view utf8Prefix(std::string_view text, size_t limit) {
  if (text.size() <= limit) return text;
  size_t end = limit;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

nlohmann::json truncated(std::string_view text, size_t cap) {
  return {
      {"truncated", true}, {"bytes", text.size()}, {"head", std::string(utf8Prefix(text, cap))}};
}

std::string lowerCase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool isSecretHeader(std::string_view lower_name) {
  return lower_name == "authorization" || lower_name == "proxy-authorization" ||
         lower_name == "cookie" || lower_name == "set-cookie" || lower_name == "x-api-key";
}

std::string base64(std::string_view data) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(data[i]) << 16 | static_cast<uint8_t>(data[i + 1]) << 8 |
                 static_cast<uint8_t>(data[i + 2]);
    out += kAlphabet[n >> 18];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  if (i + 1 == data.size()) {
    uint32_t n = static_cast<uint8_t>(data[i]) << 16;
    out += kAlphabet[n >> 18];
    out += kAlphabet[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == data.size()) {
    uint32_t n = static_cast<uint8_t>(data[i]) << 16 | static_cast<uint8_t>(data[i + 1]) << 8;
    out += kAlphabet[n >> 18];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

}  // namespace

nlohmann::json recordedBody(std::string_view body, size_t cap) {
  if (body.empty()) return nullptr;
  if (!isUtf8(body)) return "<" + std::to_string(body.size()) + " bytes of binary data>";
  if (body.size() > cap) return truncated(body, cap);
  return std::string(body);
}

nlohmann::json recordedHeaders(const std::vector<net::HttpHeader>& headers) {
  nlohmann::json out = nlohmann::json::object();
  for (const net::HttpHeader& h : headers) {
    std::string name = lowerCase(h.name);
    std::string value = isSecretHeader(name) ? std::string(record::kRedacted) : h.value;
    auto it = out.find(name);
    if (it == out.end()) {
      out.emplace(std::move(name), std::move(value));
    } else if (!isSecretHeader(name)) {
      *it = it->get<std::string>() + ", " + value;
    }
  }
  return out;
}

nlohmann::json fetchSpanInput(const net::FetchRequest& request) {
  nlohmann::json input = {{"method", request.method},
                          {"url", request.url},
                          {"headers", recordedHeaders(request.headers)}};
  if (!request.body.empty()) input["body"] = recordedBody(request.body, kSpanBodyBytes);
  return input;
}

nlohmann::json fetchSpanOutput(const net::FetchResponse& response) {
  nlohmann::json output = {{"status", response.status},
                           {"statusText", response.status_text},
                           {"headers", recordedHeaders(response.headers)},
                           {"body", recordedBody(response.body, kSpanBodyBytes)}};
  if (response.redirects > 0) {
    output["url"] = response.url;
    output["redirects"] = response.redirects;
  }
  return output;
}

nlohmann::json fetchJournalValue(const net::FetchResponse& response) {
  nlohmann::json headers = nlohmann::json::array();
  for (const net::HttpHeader& h : response.headers) headers.push_back({h.name, h.value});
  nlohmann::json body;
  std::string_view text = response.body;
  if (!isUtf8(text)) {
    body = text.size() > kJournalBodyBytes
               ? nlohmann::json{{"truncated", true}, {"bytes", text.size()}}
               : nlohmann::json{{"base64", base64(text)}};
  } else if (text.size() > kJournalBodyBytes) {
    body = truncated(text, kJournalBodyBytes);
  } else {
    body = std::string(text);
  }
  return {{"status", response.status},
          {"statusText", response.status_text},
          {"headers", std::move(headers)},
          {"body", std::move(body)},
          {"url", response.url}};
}

std::string fetchSpanError(const Error& error) {
  if (error.code == ErrorCode::kUnavailable) return "network error: " + error.message;
  return error.message;
}

}  // namespace flux::runtime

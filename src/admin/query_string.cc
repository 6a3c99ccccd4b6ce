#include "admin/query_string.h"

namespace flux::admin {

namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool isValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t extra;
    uint32_t min;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      min = 0x10000;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;
    uint32_t cp = c & (0x3F >> extra);
    for (size_t k = 1; k <= extra; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

Result<std::string> percentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      int hi = i + 1 < text.size() ? hexValue(text[i + 1]) : -1;
      int lo = i + 2 < text.size() ? hexValue(text[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return fail(ErrorCode::kInvalidArgument,
                    "bad percent-encoding in the query string: '%' must be followed by two hex "
                    "digits");
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Result<std::vector<std::pair<std::string, std::string>>> parseQueryString(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> params;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view piece = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (piece.empty()) continue;
    size_t eq = piece.find('=');
    auto name = percentDecode(piece.substr(0, eq));
    if (!name) return std::unexpected(name.error());
    auto value =
        percentDecode(eq == std::string_view::npos ? std::string_view{} : piece.substr(eq + 1));
    if (!value) return std::unexpected(value.error());
    params.emplace_back(std::move(*name), std::move(*value));
  }
  return params;
}

Result<Parameters> knownParameters(std::string_view query,
                                   const std::map<std::string_view, std::string_view>& names,
                                   size_t max_bytes) {
  auto params = parseQueryString(query);
  if (!params) return std::unexpected(params.error());
  Parameters given;
  for (auto& [name, value] : *params) {
    auto known = names.find(name);
    if (known == names.end()) continue;  // others are ignored
    std::string canonical(known->second);
    if (given.contains(canonical)) {
      return fail(ErrorCode::kInvalidArgument, "'" + canonical + "' is given twice: pass it once");
    }
    if (value.size() > max_bytes || value.find('\0') != std::string::npos || !isValidUtf8(value)) {
      return fail(ErrorCode::kInvalidArgument, "'" + name + "' must be UTF-8 text of at most " +
                                                   std::to_string(max_bytes) +
                                                   " bytes without NUL characters");
    }
    given.emplace(std::move(canonical), std::move(value));
  }
  return given;
}

bool isTrueFlag(std::string_view value) {
  return value == "1" || value == "true" || value == "yes";
}

bool isFalseFlag(std::string_view value) {
  return value.empty() || value == "0" || value == "false" || value == "no";
}

}  // namespace flux::admin

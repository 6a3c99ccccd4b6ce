#include "cli/text_style.h"

#include <algorithm>

namespace flux::cli {

using nlohmann::json;

size_t displayWidth(std::string_view text) {
  return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

std::string padded(std::string_view text, size_t width) {
  std::string out(text);
  size_t have = displayWidth(text);
  if (have < width) out.append(width - have, ' ');
  return out;
}

std::string paddedLeft(std::string_view text, size_t width) {
  size_t have = displayWidth(text);
  return std::string(have < width ? width - have : 0, ' ') + std::string(text);
}

std::string truncated(std::string_view text, size_t width) {
  if (displayWidth(text) <= width) return std::string(text);
  size_t kept = 0, i = 0;
  for (; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      if (kept + 1 == width) break;
      ++kept;
    }
  }
  return std::string(text.substr(0, i)) + "…";
}

std::string printable(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

const json& field(const json& object, const char* key) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

std::string stringField(const json& object, const char* key) {
  const json& value = field(object, key);
  return value.is_string() ? value.get<std::string>() : std::string();
}

int64_t intField(const json& object, const char* key, int64_t fallback) {
  const json& value = field(object, key);
  return value.is_number_integer() ? value.get<int64_t>() : fallback;
}

bool boolField(const json& object, const char* key) {
  const json& value = field(object, key);
  return value.is_boolean() && value.get<bool>();
}

const json& arrayField(const json& object, const char* key) {
  static const json kEmpty = json::array();
  const json& value = field(object, key);
  return value.is_array() ? value : kEmpty;
}

std::vector<std::string> stringList(const json& array) {
  std::vector<std::string> out;
  if (!array.is_array()) return out;
  for (const json& item : array) {
    if (item.is_string()) out.push_back(item.get<std::string>());
  }
  return out;
}

}  // namespace flux::cli

#include "base/json.h"

#include <cstdio>

namespace flux {

void appendJsonString(std::string& out, std::string_view value) {
  out.push_back('"');
  for (char c : value) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

std::string jsonError(std::string_view message, std::string_view request_id) {
  std::string out = "{\"error\":";
  appendJsonString(out, message);
  if (!request_id.empty()) {
    out += ",\"request_id\":";
    appendJsonString(out, request_id);
  }
  out.push_back('}');
  return out;
}

}  // namespace flux

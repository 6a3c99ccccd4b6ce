#include "admin/sse.h"

namespace flux::admin {

namespace {

// A field value that must stay on one line.
std::string oneLine(std::string_view text, char replacement) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\r' || c == '\n' || c == '\0') {
      if (replacement != '\0') out.push_back(replacement);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

std::string sseEvent(std::string_view event, std::string_view data, std::string_view id) {
  std::string out;
  out.reserve(data.size() + event.size() + id.size() + 32);
  out += "event: ";
  out += oneLine(event, '\0');
  out += '\n';
  if (std::string line = oneLine(id, '\0'); !line.empty()) {
    out += "id: ";
    out += line;
    out += '\n';
  }
  size_t start = 0;
  for (;;) {
    size_t end = data.find_first_of("\r\n", start);
    out += "data: ";
    out += data.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    out += '\n';
    if (end == std::string_view::npos) break;
    start = end + 1;
    if (data[end] == '\r' && start < data.size() && data[start] == '\n') ++start;
  }
  out += '\n';
  return out;
}

std::string sseComment(std::string_view text) { return ": " + oneLine(text, ' ') + "\n\n"; }

}  // namespace flux::admin

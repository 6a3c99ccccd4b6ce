#include "cli/records_render.h"

#include <fmt/color.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <vector>

namespace flux::cli {

namespace {

using nlohmann::json;

constexpr std::string_view kArrowRight = "→";
// Widths past which text is cut with "…".
constexpr size_t kMaxTailPath = 48;
constexpr size_t kMaxTailError = 120;
constexpr size_t kMaxInputWidth = 100;
constexpr size_t kMaxSpanNote = 60;
constexpr size_t kMaxSpanOutput = 48;
constexpr size_t kMaxTraceName = 60;
// `flux why` lists this many mutations; --json has them all.
constexpr size_t kMaxWhyMutations = 20;
// Section labels of `flux why` take this many columns ("DATA CHANGES" and two spaces).
constexpr size_t kLabelWidth = 14;

// The first line of a message (a stack may follow), printable.
std::string firstLine(std::string_view text) {
  size_t end = text.find('\n');
  return printable(text.substr(0, end));
}

std::string compactJson(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool isJobKind(std::string_view kind) { return kind == "job" || kind == "cron"; }

std::string upper(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string lowerCase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// What a line shows in the method and path columns: "POST" "/checkout", or "JOB"
// "send_onboarding_email" for a job.
std::pair<std::string, std::string> methodAndPath(const json& item) {
  std::string kind = stringField(item, "kind");
  std::string function = stringField(item, "function");
  std::string path = stringField(item, "path");
  if (isJobKind(kind)) return {upper(kind), function.empty() ? path : function};
  std::string method = stringField(item, "method");
  return {method.empty() ? std::string("-") : method, path.empty() ? function : path};
}

bool hasError(const json& item) {
  const json& error = field(item, "error");
  return (error.is_string() && !error.get_ref<const std::string&>().empty()) || error.is_object();
}

// "500", or for a job "done" / "failed".
std::string statusText(const json& item) {
  int64_t status = intField(item, "status");
  if (isJobKind(stringField(item, "kind"))) {
    return hasError(item) || status >= 500 ? "failed" : "done";
  }
  return status == 0 ? std::string("-") : std::to_string(status);
}

std::string paintStatus(const Painter& paint, const json& item, std::string text) {
  int64_t status = intField(item, "status");
  if (isJobKind(stringField(item, "kind"))) {
    return hasError(item) || status >= 500 ? paint.red(text) : paint.green(text);
  }
  if (status >= 500) return paint.red(text);
  if (status >= 400) return paint.yellow(text);
  if (status >= 200 && status < 300) return paint.green(text);
  return text;
}

std::string tableName(const json& mutation) {
  std::string schema = stringField(mutation, "schema");
  std::string table = stringField(mutation, "table");
  return schema.empty() || schema == "public" ? table : schema + "." + table;
}

// "id=42", "(order_id,line)=(7,2)", "pk=42" when the key's columns are unknown; empty when the
// mutation has no key (a 0-row change).
std::string keyText(const json& mutation) {
  const json& pk = field(mutation, "pk");
  if (!pk.is_string()) return {};
  std::vector<std::string> keys = stringList(field(mutation, "key_columns"));
  std::string value = printable(pk.get<std::string>());
  if (keys.empty()) return "pk=" + value;
  if (keys.size() == 1) return keys[0] + "=" + value;
  std::string names;
  for (size_t i = 0; i < keys.size(); ++i) names += (i > 0 ? "," : "") + keys[i];
  return "(" + names + ")=(" + value + ")";
}

// The tail's one-line summary of a record's writes: "users.id=42  insert  +2 more".
std::string tailMutationText(const json& mutations, const Painter& paint) {
  int64_t count = intField(mutations, "count");
  const json& first = field(mutations, "first");
  if (count <= 0 || !first.is_object()) return {};
  std::string key = keyText(first);
  std::string text = tableName(first) + (key.empty() ? "" : "." + key) + "  " +
                     lowerCase(stringField(first, "op"));
  if (intField(first, "rows_affected", 1) == 0) text += "  0 rows";
  if (count > 1) text += fmt::format("  +{} more", count - 1);
  if (boolField(first, "rolled_back")) text += "  " + paint.red("(rolled back)");
  return text;
}

// ---- Spans ------------------------------------------------------------------------------------

struct SpanView {
  uint32_t id = 0;
  uint32_t parent = 0;
  std::string name;
  int64_t start_us = 0;
  int64_t duration_us = 0;
  std::string status;  // ok, error, skipped
  std::string error;
  std::string location;
  const json* input = nullptr;
  const json* output = nullptr;
};

bool isErrorSpan(const SpanView& span) { return span.status == "error" || !span.error.empty(); }

std::vector<SpanView> spansOf(const json& record) {
  std::vector<SpanView> spans;
  for (const json& item : arrayField(record, "spans")) {
    if (!item.is_object()) continue;
    SpanView span;
    span.id = static_cast<uint32_t>(intField(item, "id"));
    span.parent = static_cast<uint32_t>(intField(item, "parent"));
    span.name = printable(stringField(item, "name"));
    span.start_us = intField(item, "start_us");
    span.duration_us = intField(item, "duration_us");
    span.status = stringField(item, "status");
    if (span.status.empty()) span.status = "ok";
    span.error = stringField(item, "error");
    span.location = stringField(item, "location");
    span.input = &field(item, "input");
    span.output = &field(item, "output");
    spans.push_back(std::move(span));
  }
  return spans;
}

// The span tree: children of each span (and of the roots, under parent 0) by start time.
// A span whose parent is missing (or itself) is a root.
struct SpanTree {
  std::vector<SpanView> spans;
  std::map<uint32_t, size_t> index;                  // id -> position
  std::map<uint32_t, std::vector<size_t>> children;  // parent id (0: roots) -> positions

  explicit SpanTree(std::vector<SpanView> all) : spans(std::move(all)) {
    for (size_t i = 0; i < spans.size(); ++i) index.emplace(spans[i].id, i);
    for (size_t i = 0; i < spans.size(); ++i) {
      uint32_t parent = spans[i].parent;
      if (parent == spans[i].id || !index.contains(parent)) parent = 0;
      children[parent].push_back(i);
    }
    for (auto& [parent, list] : children) {
      std::stable_sort(list.begin(), list.end(), [this](size_t a, size_t b) {
        if (spans[a].start_us != spans[b].start_us) return spans[a].start_us < spans[b].start_us;
        return spans[a].id < spans[b].id;
      });
    }
  }

  // The parent's position, or nullopt for a root.
  std::optional<size_t> parentOf(size_t i) const {
    uint32_t parent = spans[i].parent;
    if (parent == spans[i].id) return std::nullopt;
    auto it = index.find(parent);
    if (it == index.end()) return std::nullopt;
    return it->second;
  }
};

// The error spans no other error span descends from (the errors that started it all), and of
// those the one that ended first.
std::optional<size_t> rootCauseSpan(const SpanTree& tree) {
  std::set<size_t> has_error_below;
  for (size_t i = 0; i < tree.spans.size(); ++i) {
    if (!isErrorSpan(tree.spans[i])) continue;
    std::optional<size_t> up = tree.parentOf(i);
    // Bounded: a cycle of parents must not loop forever.
    for (size_t steps = 0; up && steps < tree.spans.size(); ++steps) {
      has_error_below.insert(*up);
      up = tree.parentOf(*up);
    }
  }
  std::optional<size_t> best;
  for (size_t i = 0; i < tree.spans.size(); ++i) {
    const SpanView& span = tree.spans[i];
    if (!isErrorSpan(span) || has_error_below.contains(i)) continue;
    if (!best) {
      best = i;
      continue;
    }
    const SpanView& other = tree.spans[*best];
    auto key = [](const SpanView& s) {
      return std::tuple(s.start_us + s.duration_us, s.start_us, s.id);
    };
    if (key(span) < key(other)) best = i;
  }
  return best;
}

bool looksLikeTimeout(std::string_view message) {
  std::string lower = lowerCase(message);
  return lower.find("timeout") != std::string::npos || lower.find("timed out") != std::string::npos;
}

// ---- Records ----------------------------------------------------------------------------------

// A response body's error message: {"error": "..."} / {"message": "..."} (also inside a string
// holding JSON), or short text.
std::string responseMessage(const json& response) {
  json body = field(response, "body");
  if (body.is_string()) {
    json parsed = json::parse(body.get_ref<const std::string&>(), nullptr, false);
    if (!parsed.is_discarded()) body = std::move(parsed);
  }
  for (const char* key : {"error", "message"}) {
    const json& value = field(body, key);
    if (value.is_string()) return firstLine(value.get<std::string>());
    if (value.is_object() && field(value, "message").is_string()) {
      return firstLine(field(value, "message").get<std::string>());
    }
  }
  if (body.is_string()) return truncated(firstLine(body.get<std::string>()), 100);
  return {};
}

// "POST /checkout", "job send_email".
std::string describeExecution(const json& record) {
  auto [method, path] = methodAndPath(record);
  if (isJobKind(stringField(record, "kind"))) return lowerCase(method) + " " + path;
  return method + " " + path;
}

// "  req:550e8400  POST /checkout  500  44ms  ·  create_order  ·  2026-03-10 14:22:31 UTC"
std::string headerLine(const json& record, const Painter& paint) {
  auto [method, path] = methodAndPath(record);
  std::string out = "  " + paint.bold(requestHandle(stringField(record, "id"))) + "  " + method +
                    " " + printable(path) + "  " + paintStatus(paint, record, statusText(record)) +
                    "  " + formatDuration(intField(record, "duration_us"));
  std::string details;
  std::string function = stringField(record, "function");
  if (!function.empty() && function != path) details += "  ·  " + function;
  details += "  ·  " + formatDateTime(intField(record, "started_at_us")) + " UTC";
  std::string replay_of = stringField(record, "replay_of");
  if (!replay_of.empty()) details += "  ·  replay of " + requestHandle(replay_of);
  return out + paint.dim(details) + "\n";
}

// A section of `flux why`: the label, then its lines aligned after it.
std::string section(const Painter& paint, std::string_view label,
                    const std::vector<std::string>& lines) {
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    out += "  " + (i == 0 ? paint.bold(padded(label, kLabelWidth)) : std::string(kLabelWidth, ' '));
    out += lines[i] + "\n";
  }
  return out;
}

// "users id=42  plan: free → null  (rolled back)", "subscriptions  UPDATE  0 rows affected".
std::string whyMutationLine(const json& mutation, const Painter& paint) {
  std::string op = stringField(mutation, "op");
  std::string table = tableName(mutation);
  std::string key = keyText(mutation);
  std::vector<std::string> keys = stringList(field(mutation, "key_columns"));
  std::string text;
  if (intField(mutation, "rows_affected", 1) == 0) {
    text = table + "  " + op + "  0 rows affected";
    std::string where = formatRowValues(field(mutation, "old"), {});
    if (!where.empty()) text += "  where " + where;
  } else {
    text = table + (key.empty() ? "" : " " + key) + "  ";
    if (op == "INSERT") {
      text += "INSERT  " + formatRowValues(field(mutation, "new"), keys);
    } else if (op == "DELETE") {
      text += "DELETE";
    } else {
      text += formatChanges(mutation);
    }
  }
  if (boolField(mutation, "rolled_back")) text += "  " + paint.red("(rolled back)");
  return text;
}

std::vector<std::string> inputLines(const json& record, const RootCause& cause) {
  const json& request = field(record, "request");
  std::string line;
  if (!isJobKind(stringField(record, "kind"))) {
    std::string method = stringField(request, "method");
    std::string path = stringField(request, "path");
    if (method.empty()) method = stringField(record, "method");
    if (path.empty()) path = stringField(record, "path");
    line = method + " " + printable(path);
    const json& query = field(request, "query");
    if (query.is_string() && !query.get_ref<const std::string&>().empty()) {
      line += "?" + printable(query.get<std::string>());
    } else if (query.is_object() && !query.empty()) {
      std::string text;
      for (const auto& [name, value] : query.items()) {
        text += (text.empty() ? "" : "&") + name + "=" +
                (value.is_string() ? value.get<std::string>() : compactJson(value));
      }
      line += "?" + printable(text);
    }
  }
  const json& body = field(request, "body");
  bool has_body =
      !body.is_null() && !(body.is_string() && body.get_ref<const std::string&>().empty());
  if (has_body) line += (line.empty() ? "" : "  ") + compactValue(body, kMaxInputWidth);
  if (line.empty()) line = "no input recorded";
  std::vector<std::string> lines = {truncated(line, kMaxInputWidth + 40)};
  if (cause.span_id && !cause.span_input.is_null()) {
    lines.push_back(cause.span_name + " ← " + compactValue(cause.span_input, kMaxInputWidth));
  }
  return lines;
}

}  // namespace

// ---- Formatting -------------------------------------------------------------------------------

std::string compactValue(const json& value, size_t width) {
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!parsed.is_discarded() && (parsed.is_object() || parsed.is_array())) {
      return truncated(compactJson(parsed), width);
    }
    return truncated(printable(text), width);
  }
  return truncated(compactJson(value), width);
}

std::string formatDuration(int64_t duration_us) {
  if (duration_us <= 0) return "0ms";
  if (duration_us < 1000) return fmt::format("{:.1f}ms", static_cast<double>(duration_us) / 1000);
  if (duration_us < 10'000'000) return fmt::format("{}ms", duration_us / 1000);
  if (duration_us < 100'000'000) {
    return fmt::format("{:.1f}s", static_cast<double>(duration_us / 100'000) / 10);
  }
  return fmt::format("{}s", duration_us / 1'000'000);
}

std::string formatDateTime(int64_t unix_us) {
  using namespace std::chrono;
  sys_time<microseconds> at{microseconds(unix_us)};
  sys_days day = floor<days>(at);
  year_month_day date(day);
  hh_mm_ss time(floor<seconds>(at - day));
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", static_cast<int>(date.year()),
                     static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                     time.hours().count(), time.minutes().count(), time.seconds().count());
}

std::string formatClock(int64_t unix_us) { return formatDateTime(unix_us).substr(11); }

std::string fileAndLine(std::string_view location) {
  // file:line:column -> file:line, when the last two pieces are numbers.
  auto isNumber = [](std::string_view text) {
    return !text.empty() &&
           std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  size_t last = location.rfind(':');
  if (last == std::string_view::npos) return std::string(location);
  size_t before = location.rfind(':', last - 1);
  if (last == 0 || before == std::string_view::npos) return std::string(location);
  if (isNumber(location.substr(last + 1)) &&
      isNumber(location.substr(before + 1, last - before - 1))) {
    return std::string(location.substr(0, last));
  }
  return std::string(location);
}

// ---- flux tail --------------------------------------------------------------------------------

std::string TailPrinter::print(const json& summary) {
  Painter paint(color_);
  auto [method, path] = methodAndPath(summary);
  path = truncated(printable(path), kMaxTailPath);
  std::string status = statusText(summary);
  std::string duration = formatDuration(intField(summary, "duration_us"));
  method_width_ = std::max(method_width_, displayWidth(method));
  path_width_ = std::max(path_width_, displayWidth(path));
  status_width_ = std::max(status_width_, displayWidth(status));
  duration_width_ = std::max(duration_width_, displayWidth(duration));

  std::string out = "  " + padded(method, method_width_) + " " + padded(path, path_width_) + "  " +
                    paintStatus(paint, summary, padded(status, status_width_)) + "  " +
                    padded(duration, duration_width_) + "  " +
                    requestHandle(stringField(summary, "id")) + "  " +
                    paint.dim(formatClock(intField(summary, "started_at_us")));
  if (stringField(summary, "kind") == "replay") out += "  " + paint.dim("(replay)");
  out += "\n";

  const json& error = field(summary, "error");
  std::string message = error.is_string()   ? error.get<std::string>()
                        : error.is_object() ? stringField(error, "message")
                                            : std::string();
  if (!message.empty()) {
    out += "     " + paint.red("└─ Error: " + truncated(firstLine(message), kMaxTailError)) + "\n";
  }
  std::string writes = tailMutationText(field(summary, "mutations"), paint);
  if (!writes.empty()) out += "     " + writes + "\n";
  return out;
}

// ---- flux why ---------------------------------------------------------------------------------

RootCause findRootCause(const json& record) {
  RootCause cause;
  const json& error = field(record, "error");
  std::string error_location = stringField(error, "location");

  SpanTree tree(spansOf(record));
  if (std::optional<size_t> at = rootCauseSpan(tree)) {
    const SpanView& span = tree.spans[*at];
    cause.failed = true;
    cause.message = span.error.empty() ? span.name + " failed" : firstLine(span.error);
    cause.location = fileAndLine(span.location.empty() ? error_location : span.location);
    cause.span_id = span.id;
    cause.span_name = span.name;
    // The entry spans (the gateway, the function itself) were given the request, which INPUT
    // shows already.
    bool entry = !tree.parentOf(*at) || span.name == stringField(record, "function");
    if (span.input != nullptr && !entry) cause.span_input = *span.input;
    return cause;
  }
  if (error.is_object()) {
    cause.failed = true;
    cause.message = firstLine(stringField(error, "message"));
    if (cause.message.empty()) cause.message = "an error without a message";
    cause.location = fileAndLine(error_location);
    return cause;
  }
  int64_t status = intField(record, "status");
  std::string what = describeExecution(record);
  if (status >= 400) {
    cause.failed = true;
    cause.message = fmt::format("{} answered {}", what, status);
    std::string said = responseMessage(field(record, "response"));
    if (!said.empty()) cause.message += ": " + said;
    return cause;
  }
  cause.message = isJobKind(stringField(record, "kind"))
                      ? "no error: " + what + " finished"
                      : fmt::format("no error: {} answered {}", what, status);
  return cause;
}

FailureFacts failureFacts(const json& answer, const RootCause& cause) {
  const json& record = field(answer, "record");
  FailureFacts facts;
  facts.message = cause.message;
  facts.error_code = stringField(field(record, "error"), "code");
  facts.status = static_cast<int>(intField(record, "status"));
  for (const json& mutation : arrayField(answer, "mutations")) {
    std::string op = stringField(mutation, "op");
    if (intField(mutation, "rows_affected", 1) == 0 && (op == "UPDATE" || op == "DELETE")) {
      facts.zero_row_write = true;
    }
  }
  return facts;
}

std::string renderWhy(const json& answer, Color color) {
  Painter paint(color);
  const json& record = field(answer, "record");
  RootCause cause = findRootCause(record);

  std::string out = headerLine(record, paint) + "\n";
  out += section(paint, "ROOT CAUSE", {cause.failed ? cause.message : paint.green(cause.message)});

  std::string location = cause.location.empty() ? paint.dim("not recorded") : cause.location;
  if (!cause.span_name.empty()) location += "  " + paint.dim("(in " + cause.span_name + ")");
  if (cause.failed || !cause.location.empty()) out += section(paint, "LOCATION", {location});

  out += section(paint, "INPUT", inputLines(record, cause));

  std::vector<std::string> changes;
  const json& mutations = arrayField(answer, "mutations");
  for (const json& mutation : mutations) {
    if (changes.size() == kMaxWhyMutations) break;
    changes.push_back(whyMutationLine(mutation, paint));
  }
  int64_t total = intField(answer, "mutations_total", static_cast<int64_t>(mutations.size()));
  if (total > static_cast<int64_t>(changes.size())) {
    changes.push_back(paint.dim(fmt::format("… and {} more: flux why {} --json lists them",
                                            total - static_cast<int64_t>(changes.size()),
                                            requestHandle(stringField(record, "id")))));
  }
  if (changes.empty()) changes.push_back(paint.dim("none"));
  out += section(paint, "DATA CHANGES", changes);

  if (cause.failed) {
    std::vector<std::string> lines;
    if (const SuggestionRule* rule = matchSuggestion(failureFacts(answer, cause))) {
      for (std::string_view line : rule->lines) lines.emplace_back(line);
    } else {
      lines.push_back(std::string(kArrowRight) + " Run flux trace " +
                      requestHandle(stringField(record, "id")) +
                      " to see the span that failed and what it was given");
    }
    out += section(paint, "SUGGESTION", lines);
  }
  return out;
}

// ---- flux trace -------------------------------------------------------------------------------

std::vector<TraceSpan> traceSpans(const json& record) {
  SpanTree tree(spansOf(record));
  std::optional<size_t> cause = rootCauseSpan(tree);
  std::vector<TraceSpan> out;
  std::vector<bool> visited(tree.spans.size(), false);
  // Depth-first; the stack holds (position, its own label prefix, drawing for its children).
  struct Frame {
    size_t span;
    size_t depth;
    std::string prefix;  // drawn before this span's name
    std::string indent;  // drawn before its children's connectors
  };
  std::vector<Frame> stack;
  auto pushChildren = [&](uint32_t parent, size_t depth, const std::string& indent) {
    auto it = tree.children.find(parent);
    if (it == tree.children.end()) return;
    const std::vector<size_t>& kids = it->second;
    for (size_t k = kids.size(); k-- > 0;) {
      bool last = k + 1 == kids.size();
      stack.push_back(
          Frame{kids[k], depth, indent + (last ? "└─ " : "├─ "), indent + (last ? "   " : "│  ")});
    }
  };
  // Roots have no connector.
  if (auto roots = tree.children.find(0); roots != tree.children.end()) {
    for (size_t k = roots->second.size(); k-- > 0;) {
      stack.push_back(Frame{roots->second[k], 0, "", ""});
    }
  }
  const json& items = arrayField(record, "spans");
  auto drain = [&] {
    while (!stack.empty()) {
      Frame frame = std::move(stack.back());
      stack.pop_back();
      if (visited[frame.span]) continue;
      visited[frame.span] = true;
      const SpanView& view = tree.spans[frame.span];
      TraceSpan span;
      span.id = view.id;
      span.parent = tree.parentOf(frame.span) ? view.parent : 0;
      span.depth = frame.depth;
      span.prefix = frame.prefix;
      span.name = view.name;
      span.start_us = view.start_us;
      span.duration_us = view.duration_us;
      span.status = view.status;
      span.error = view.error;
      span.location = view.location;
      if (view.input != nullptr) span.input = *view.input;
      if (view.output != nullptr) span.output = *view.output;
      span.root_cause = cause && *cause == frame.span;
      out.push_back(std::move(span));
      if (view.id != 0) pushChildren(view.id, frame.depth + 1, frame.indent);
    }
  };
  drain();
  // Spans in a cycle of parents reach no root: each is shown as one, never lost.
  for (size_t i = 0; i < tree.spans.size(); ++i) {
    if (visited[i]) continue;
    stack.push_back(Frame{i, 0, "", ""});
    drain();
  }
  // The logs, by id (spansOf keeps only what `flux trace` shows).
  std::map<uint32_t, const json*> logs;
  for (const json& item : items) {
    if (item.is_object()) logs.emplace(static_cast<uint32_t>(intField(item, "id")), &item);
  }
  for (TraceSpan& span : out) {
    if (auto it = logs.find(span.id); it != logs.end()) {
      for (const std::string& line : stringList(field(*it->second, "logs"))) {
        span.logs.push_back(printable(line));
      }
    }
  }
  return out;
}

bool TraceSpan::timedOut() const { return failed() && looksLikeTimeout(firstLine(error)); }

std::string failureMarker(const TraceSpan& span) {
  std::string message = firstLine(span.error);
  if (span.timedOut()) return "← timeout here";
  return "← failed here" +
         (message.empty() ? std::string() : ": " + truncated(message, kMaxSpanNote));
}

std::string renderRecordHeader(const json& record, Color color) {
  return headerLine(record, Painter(color));
}

std::string renderMutationLine(const json& mutation, Color color) {
  return whyMutationLine(mutation, Painter(color));
}

std::string renderTrace(const json& answer, Color color) {
  Painter paint(color);
  const json& record = field(answer, "record");
  std::string out = headerLine(record, paint) + "\n";

  std::vector<TraceSpan> spans = traceSpans(record);
  size_t label_width = 0, duration_width = 0;
  for (const TraceSpan& span : spans) {
    label_width =
        std::max(label_width, displayWidth(span.prefix + truncated(span.name, kMaxTraceName)));
    if (!span.skipped()) {
      duration_width = std::max(duration_width, displayWidth(formatDuration(span.duration_us)));
    }
  }

  size_t errors = 0;
  for (const TraceSpan& span : spans) {
    std::string text =
        "  " + padded(span.prefix + truncated(span.name, kMaxTraceName), label_width) + "  ";
    if (span.skipped()) {
      out += text + paint.dim("— skipped (upstream error)") + "\n";
      continue;
    }
    text += paddedLeft(formatDuration(span.duration_us), duration_width);
    if (span.failed()) {
      ++errors;
      std::string message = firstLine(span.error);
      if (span.root_cause) {
        text += "  " + paint.red(failureMarker(span));
      } else {
        text += "  " + paint.red("✗" + (message.empty() ? std::string()
                                                        : " " + truncated(message, kMaxSpanNote)));
      }
    } else if (!span.output.is_null()) {
      text += "  " + paint.dim("→ " + compactValue(span.output, kMaxSpanOutput));
    }
    out += text + "\n";
  }
  if (spans.empty()) out += "  " + paint.dim("no spans recorded") + "\n";

  int64_t writes = 0;
  const json& mutations = arrayField(answer, "mutations");
  for (const json& mutation : mutations) {
    if (intField(mutation, "rows_affected", 1) != 0) ++writes;
  }
  int64_t total = intField(answer, "mutations_total", static_cast<int64_t>(mutations.size()));
  writes += std::max<int64_t>(0, total - static_cast<int64_t>(mutations.size()));
  out += "\n  " +
         paint.dim(fmt::format("── Spans: {}  ·  Errors: {}  ·  DB writes: {}", spans.size(),
                               errors, writes)) +
         "\n";
  return out;
}

std::string renderCandidates(const json& body) {
  const json& candidates = arrayField(body, "candidates");
  std::string out;
  for (const json& item : candidates) {
    auto [method, path] = methodAndPath(item);
    out += "  " + requestHandle(stringField(item, "id")) + "  " + stringField(item, "id") + "  " +
           method + " " + printable(path) + "  " + statusText(item) + "  " +
           formatDateTime(intField(item, "started_at_us")) + "\n";
  }
  int64_t total = intField(body, "total", static_cast<int64_t>(candidates.size()));
  if (total > static_cast<int64_t>(candidates.size())) {
    out += fmt::format("  … and {} more\n", total - static_cast<int64_t>(candidates.size()));
  }
  return out;
}

}  // namespace flux::cli

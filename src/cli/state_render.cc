#include "cli/state_render.h"

#include <fmt/color.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <vector>

namespace flux::cli {

namespace {

using nlohmann::json;

constexpr size_t kMaxValueWidth = 60;
constexpr std::string_view kArrow = " → ";
constexpr std::string_view kRolledBackNote = "(rolled back)";
constexpr std::string_view kRolledBackMark = "✗ rolled back";
// Blame's column names get at least this width, so that short names still leave a clear gap.
constexpr size_t kMinColumnNameWidth = 7;

bool contains(const std::vector<std::string>& list, std::string_view item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

// "users id=42", "shop.order_items (order_id,line)=(7,2)".
std::string describeRow(const json& answer) {
  std::string schema = stringField(answer, "schema");
  std::string table = stringField(answer, "table");
  std::string pk = stringField(answer, "pk");
  std::vector<std::string> keys = stringList(arrayField(answer, "key_columns"));
  std::string out = schema.empty() || schema == "public" ? table : schema + "." + table;
  out += ' ';
  if (keys.size() > 1) {
    out += "(";
    for (size_t i = 0; i < keys.size(); ++i) out += (i > 0 ? "," : "") + keys[i];
    return out + ")=(" + pk + ")";
  }
  return out + (keys.empty() ? std::string("id") : keys[0]) + "=" + pk;
}

// "email=a@b.com, plan=free": a row's values, without the key columns (the header has them)
// and without nulls (nothing was set). Falls back to every value when that leaves nothing.
std::string rowValues(const json& row, const std::vector<std::string>& keys) {
  if (!row.is_object()) return row.is_null() ? std::string() : formatValue(row);
  std::string out;
  for (const auto& [column, value] : row.items()) {
    if (contains(keys, column) || value.is_null()) continue;
    if (!out.empty()) out += ", ";
    out += column + "=" + formatValue(value);
  }
  if (!out.empty()) return out;
  for (const auto& [column, value] : row.items()) {
    if (!out.empty()) out += ", ";
    out += column + "=" + formatValue(value);
  }
  return out;
}

// "plan: free → pro, name: null → Alice": the columns an UPDATE changed.
std::string changedValues(const json& mutation) {
  const json& old_row = mutation.contains("old") ? mutation["old"] : json();
  const json& new_row = mutation.contains("new") ? mutation["new"] : json();
  std::vector<std::string> columns = stringList(arrayField(mutation, "changed_columns"));
  if (columns.empty() && new_row.is_object()) {
    for (const auto& [column, value] : new_row.items()) {
      if (!old_row.is_object() || !old_row.contains(column) || old_row[column] != value) {
        columns.push_back(column);
      }
    }
  }
  if (columns.empty()) return "no values changed";
  std::string out;
  for (const std::string& column : columns) {
    json before = old_row.is_object() && old_row.contains(column) ? old_row[column] : json();
    json after = new_row.is_object() && new_row.contains(column) ? new_row[column] : json();
    if (!out.empty()) out += ", ";
    out += column + ": " + formatValue(before) + std::string(kArrow) + formatValue(after);
  }
  return out;
}

// What a mutation did, without the rolled-back note.
std::string mutationSummary(const json& mutation, const std::vector<std::string>& keys) {
  std::string op = stringField(mutation, "op");
  if (intField(mutation, "rows_affected", 1) == 0) {
    std::string where = rowValues(mutation.contains("old") ? mutation["old"] : json(), {});
    return "0 rows affected" + (where.empty() ? std::string() : "  where " + where);
  }
  if (op == "INSERT") return rowValues(mutation.contains("new") ? mutation["new"] : json(), keys);
  if (op == "DELETE") return rowValues(mutation.contains("old") ? mutation["old"] : json(), keys);
  return changedValues(mutation);
}

// "req:550e8400", or "by flux (psql)" for a write made outside Flux.
std::string attribution(const json& entry) {
  std::string request_id = stringField(entry, "request_id");
  if (!request_id.empty()) return requestHandle(request_id);
  std::string actor = stringField(entry, "actor");
  return "by " + (actor.empty() ? std::string("an unknown session") : actor);
}

bool parseDigits(std::string_view text, size_t at, size_t count, int& value) {
  if (at + count > text.size()) return false;
  value = 0;
  for (size_t i = at; i < at + count; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    value = value * 10 + (text[i] - '0');
  }
  return true;
}

}  // namespace

std::string formatRowValues(const json& row, const std::vector<std::string>& keys) {
  return rowValues(row, keys);
}

std::string formatChanges(const json& mutation) { return changedValues(mutation); }

Color stdoutColor() {
  // https://no-color.org: set and not empty turns colour off; empty counts as unset.
  const char* no_color = std::getenv("NO_COLOR");
  bool refused = no_color != nullptr && *no_color != '\0';
  return isatty(STDOUT_FILENO) && !refused ? Color::kOn : Color::kOff;
}

std::string requestHandle(std::string_view request_id) {
  std::string hex;
  for (char c : request_id) {
    if (std::isxdigit(static_cast<unsigned char>(c))) hex.push_back(c);
  }
  if (hex.size() < 8) return "req:" + std::string(request_id);
  return "req:" + hex.substr(hex.size() - 8);
}

std::string formatUtcTimestamp(std::string_view iso) {
  // YYYY-MM-DD[T ]HH:MM:SS[.fraction][Z|+HH|+HH:MM|+HHMM]
  int year, month, day, hour, minute, second;
  if (!parseDigits(iso, 0, 4, year) || iso.size() < 19 || iso[4] != '-' ||
      !parseDigits(iso, 5, 2, month) || iso[7] != '-' || !parseDigits(iso, 8, 2, day) ||
      (iso[10] != 'T' && iso[10] != ' ') || !parseDigits(iso, 11, 2, hour) || iso[13] != ':' ||
      !parseDigits(iso, 14, 2, minute) || iso[16] != ':' || !parseDigits(iso, 17, 2, second)) {
    return std::string(iso);
  }
  size_t at = 19;
  if (at < iso.size() && iso[at] == '.') {
    ++at;
    while (at < iso.size() && iso[at] >= '0' && iso[at] <= '9') ++at;
  }
  int offset_minutes = 0;
  if (at < iso.size() && (iso[at] == '+' || iso[at] == '-')) {
    int sign = iso[at] == '-' ? -1 : 1;
    int offset_hours = 0, offset_mins = 0;
    if (!parseDigits(iso, at + 1, 2, offset_hours)) return std::string(iso);
    size_t m = at + 3;
    if (m < iso.size() && iso[m] == ':') ++m;
    if (m < iso.size() && !parseDigits(iso, m, 2, offset_mins)) return std::string(iso);
    offset_minutes = sign * (offset_hours * 60 + offset_mins);
  } else if (at < iso.size() && iso[at] != 'Z') {
    return std::string(iso);
  }

  using namespace std::chrono;
  year_month_day date{std::chrono::year(year), std::chrono::month(static_cast<unsigned>(month)),
                      std::chrono::day(static_cast<unsigned>(day))};
  if (!date.ok()) return std::string(iso);
  sys_seconds local = sys_days(date) + hours(hour) + minutes(minute) + seconds(second);
  sys_seconds utc = local - minutes(offset_minutes);
  sys_days utc_day = floor<days>(utc);
  year_month_day utc_date(utc_day);
  hh_mm_ss time(utc - utc_day);
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", static_cast<int>(utc_date.year()),
                     static_cast<unsigned>(utc_date.month()), static_cast<unsigned>(utc_date.day()),
                     time.hours().count(), time.minutes().count(), time.seconds().count());
}

std::string formatValue(const json& value) {
  std::string text;
  if (value.is_string()) {
    for (char c : value.get_ref<const std::string&>()) {
      switch (c) {
        case '\n':
          text += "\\n";
          break;
        case '\r':
          text += "\\r";
          break;
        case '\t':
          text += "\\t";
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
            text += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
          } else {
            text.push_back(c);
          }
      }
    }
  } else {
    text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  }
  if (displayWidth(text) <= kMaxValueWidth) return text;
  // Cut at a code point boundary, leaving room for the ellipsis.
  size_t kept = 0, i = 0;
  for (; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
      if (kept == kMaxValueWidth - 1) break;
      ++kept;
    }
  }
  return text.substr(0, i) + "…";
}

std::string renderHistory(const json& history, Color color) {
  Painter paint(color);
  std::vector<std::string> keys = stringList(arrayField(history, "key_columns"));
  const json& mutations = arrayField(history, "mutations");
  int64_t total = intField(history, "total", static_cast<int64_t>(mutations.size()));
  size_t shown = mutations.size();

  std::string count;
  if (total > static_cast<int64_t>(shown)) {
    count = fmt::format("latest {} of {} mutations", shown, total);
  } else {
    count = fmt::format("{} mutation{}", shown, shown == 1 ? "" : "s");
  }
  std::string out = "  " + paint.bold(describeRow(history)) + "  (" + count + ")\n\n";

  struct Line {
    std::string at, op, summary, by;
    bool rolled_back;
  };
  std::vector<Line> lines;
  size_t summary_width = 0;
  for (const json& m : mutations) {
    Line line{formatUtcTimestamp(stringField(m, "at")), stringField(m, "op"),
              mutationSummary(m, keys), attribution(m), boolField(m, "rolled_back")};
    size_t width = displayWidth(line.summary);
    if (line.rolled_back) width += 2 + displayWidth(kRolledBackNote);
    summary_width = std::max(summary_width, width);
    lines.push_back(std::move(line));
  }
  for (const Line& line : lines) {
    size_t width = displayWidth(line.summary);
    std::string summary = line.summary;
    if (line.rolled_back) {
      summary += "  " + paint.red(kRolledBackNote);
      width += 2 + displayWidth(kRolledBackNote);
    }
    summary.append(summary_width - width, ' ');
    out += "  " + paint.dim(line.at) + "  " + padded(line.op, 6) + "  " + summary + "  " + line.by +
           "\n";
  }
  if (total > static_cast<int64_t>(shown)) {
    out += "\n  " +
           paint.dim(fmt::format("{} older mutation{} not shown: --limit sets how many (up to "
                                 "10000)",
                                 total - static_cast<int64_t>(shown),
                                 total - static_cast<int64_t>(shown) == 1 ? "" : "s")) +
           "\n";
  }
  return out;
}

std::string renderBlame(const json& blame, Color color) {
  Painter paint(color);
  if (boolField(blame, "deleted")) {
    const json& by = blame.contains("deleted_by") ? blame["deleted_by"] : json();
    std::string out = "  " + paint.bold(describeRow(blame)) + " was deleted";
    if (by.is_object()) {
      out += "  " + paint.dim(formatUtcTimestamp(stringField(by, "at"))) + "  " + attribution(by);
    }
    std::string table = stringField(blame, "table");
    std::string schema = stringField(blame, "schema");
    if (!schema.empty() && schema != "public") table = schema + "." + table;
    out += "\n  " +
           paint.dim("flux state history " + table + " --id " + stringField(blame, "pk") +
                     " shows the values it had") +
           "\n";
    return out;
  }

  std::vector<std::string> keys = stringList(arrayField(blame, "key_columns"));
  const json& columns = arrayField(blame, "columns");
  bool only_keys = std::all_of(columns.begin(), columns.end(), [&](const json& c) {
    return contains(keys, stringField(c, "column"));
  });

  struct Line {
    std::string column, value, by, time;
    bool rolled_back;
  };
  std::vector<Line> lines;
  size_t column_width = kMinColumnNameWidth, value_width = 0, by_width = 0;
  for (const json& c : columns) {
    Line line;
    line.column = stringField(c, "column");
    if (!only_keys && contains(keys, line.column)) continue;
    line.value = formatValue(c.contains("value") ? c["value"] : json());
    std::string at = stringField(c, "at");
    if (at.empty()) {
      line.by = "(not recorded)";
    } else {
      line.by = attribution(c);
      std::string stamp = formatUtcTimestamp(at);
      line.time = stamp.size() >= 19 ? stamp.substr(11, 8) : stamp;
    }
    line.rolled_back = boolField(c, "rolled_back");
    column_width = std::max(column_width, displayWidth(line.column));
    value_width = std::max(value_width, displayWidth(line.value));
    by_width = std::max(by_width, displayWidth(line.by));
    lines.push_back(std::move(line));
  }

  std::string out;
  for (const Line& line : lines) {
    std::string text =
        "  " + padded(line.column, column_width + 2) + padded(line.value, value_width + 2);
    if (line.time.empty()) {
      text += line.by;
    } else {
      text += padded(line.by, by_width + 2) + paint.dim(line.time);
      if (line.rolled_back) text += "  " + paint.red(kRolledBackMark);
    }
    out += text + "\n";
  }
  return out;
}

}  // namespace flux::cli

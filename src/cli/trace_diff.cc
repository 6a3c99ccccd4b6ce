#include "cli/trace_diff.h"

#include <fmt/color.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <set>

namespace flux::cli {

namespace {

using nlohmann::json;

// Beyond this many cells (before spans x after spans, once the common ends are set aside) the
// alignment falls back from the exact LCS to a greedy match: 16M cells are 64 MB.
constexpr size_t kMaxLcsCells = 16'000'000;
// How far ahead the greedy fallback looks for a span's partner.
constexpr size_t kGreedyWindow = 200;
// diffValues goes this many levels into objects and arrays.
constexpr int kMaxDiffDepth = 3;
// Text limits of the rendering (--json has everything).
constexpr size_t kMaxSpanLabel = 60;
constexpr size_t kMaxChangeLines = 6;
constexpr size_t kMaxChangeValue = 40;
constexpr size_t kMaxMutationRows = 40;
constexpr size_t kMaxMutationSummary = 110;

// ---- Alignment --------------------------------------------------------------------------------

// "db.insert(orders)" -> "db.insert", "fetch GET https://..." -> "fetch".
std::string_view baseName(std::string_view name) {
  size_t end = name.find_first_of("( ");
  return name.substr(0, end);
}

bool sameKey(const AlignItem& a, const AlignItem& b) {
  return a.depth == b.depth && a.name == b.name;
}

// Two spans that are the same step under another name.
bool renamedPair(const AlignItem& before, const AlignItem& after) {
  if (before.depth != after.depth) return false;
  return (before.function && after.function) || baseName(before.name) == baseName(after.name);
}

// Pairs of equal keys, in order on both sides, as many as there can be.
std::vector<std::pair<size_t, size_t>> anchorsOf(const std::vector<AlignItem>& before,
                                                 const std::vector<AlignItem>& after) {
  size_t n = before.size(), m = after.size();
  std::vector<std::pair<size_t, size_t>> anchors;
  size_t head = 0;
  while (head < n && head < m && sameKey(before[head], after[head])) {
    anchors.emplace_back(head, head);
    ++head;
  }
  size_t tail = 0;
  while (tail < n - head && tail < m - head && sameKey(before[n - 1 - tail], after[m - 1 - tail])) {
    ++tail;
  }
  size_t rows = n - head - tail, cols = m - head - tail;
  if (rows > 0 && cols > 0 && rows <= kMaxLcsCells / cols) {
    // lcs[i][j]: the longest common subsequence of before[head+i..] and after[head+j..].
    std::vector<uint32_t> lcs((rows + 1) * (cols + 1), 0);
    auto at = [&](size_t i, size_t j) -> uint32_t& { return lcs[i * (cols + 1) + j]; };
    for (size_t i = rows; i-- > 0;) {
      for (size_t j = cols; j-- > 0;) {
        at(i, j) = sameKey(before[head + i], after[head + j])
                       ? at(i + 1, j + 1) + 1
                       : std::max(at(i + 1, j), at(i, j + 1));
      }
    }
    size_t i = 0, j = 0;
    while (i < rows && j < cols) {
      if (sameKey(before[head + i], after[head + j])) {
        anchors.emplace_back(head + i, head + j);
        ++i;
        ++j;
      } else if (at(i + 1, j) >= at(i, j + 1)) {
        ++i;
      } else {
        ++j;
      }
    }
  } else if (rows > 0 && cols > 0) {
    size_t next = head;
    for (size_t i = head; i < n - tail && next < m - tail; ++i) {
      size_t limit = std::min(m - tail, next + kGreedyWindow);
      for (size_t j = next; j < limit; ++j) {
        if (sameKey(before[i], after[j])) {
          anchors.emplace_back(i, j);
          next = j + 1;
          break;
        }
      }
    }
  }
  for (size_t k = 0; k < tail; ++k) anchors.emplace_back(n - tail + k, m - tail + k);
  return anchors;
}

// The rows between two anchors: renamed pairs where a span that left and one that came look
// like the same step, the rest missing (first) and added.
void alignGap(const std::vector<AlignItem>& before, const std::vector<AlignItem>& after,
              size_t before_begin, size_t before_end, size_t after_begin, size_t after_end,
              std::vector<AlignedSpan>& rows) {
  size_t next_after = after_begin;  // the first after span not emitted yet
  size_t search = after_begin;      // renamed partners are searched from here on
  for (size_t i = before_begin; i < before_end; ++i) {
    std::optional<size_t> partner;
    for (size_t j = search; j < after_end; ++j) {
      if (renamedPair(before[i], after[j])) {
        partner = j;
        break;
      }
    }
    if (!partner) {
      rows.push_back(AlignedSpan{i, std::nullopt, SpanMatch::kName});
      continue;
    }
    for (; next_after < *partner; ++next_after) {
      rows.push_back(AlignedSpan{std::nullopt, next_after, SpanMatch::kName});
    }
    rows.push_back(AlignedSpan{i, *partner, SpanMatch::kRenamed});
    next_after = *partner + 1;
    search = next_after;
  }
  for (; next_after < after_end; ++next_after) {
    rows.push_back(AlignedSpan{std::nullopt, next_after, SpanMatch::kName});
  }
}

// Spans that only swapped places: a missing and an added row with the same name become one
// moved row, where the added one was. Same depth first, then any depth.
void pairMoved(const std::vector<AlignItem>& before, const std::vector<AlignItem>& after,
               std::vector<AlignedSpan>& rows) {
  std::vector<bool> gone(rows.size(), false);
  for (bool same_depth : {true, false}) {
    for (size_t r = 0; r < rows.size(); ++r) {
      if (gone[r] || !rows[r].before || rows[r].after) continue;
      const AlignItem& left = before[*rows[r].before];
      for (size_t k = 0; k < rows.size(); ++k) {
        if (gone[k] || rows[k].before || !rows[k].after) continue;
        const AlignItem& came = after[*rows[k].after];
        if (came.name != left.name || (same_depth && came.depth != left.depth)) continue;
        rows[k].before = rows[r].before;
        rows[k].match = SpanMatch::kMoved;
        gone[r] = true;
        break;
      }
    }
  }
  std::vector<AlignedSpan> kept;
  kept.reserve(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    if (!gone[r]) kept.push_back(rows[r]);
  }
  rows = std::move(kept);
}

// ---- Values -----------------------------------------------------------------------------------

// A string that holds a JSON object or array, as that JSON (bodies are stored as text).
json normalized(const json& value) {
  if (value.is_string()) {
    json parsed = json::parse(value.get_ref<const std::string&>(), nullptr, false);
    if (!parsed.is_discarded() && (parsed.is_object() || parsed.is_array())) return parsed;
  }
  return value;
}

void diffInto(const json& before, const json& after, const std::string& path, int depth,
              std::vector<FieldChange>& out) {
  json left = normalized(before), right = normalized(after);
  if (left == right) return;
  std::string here = path.empty() ? "value" : path;
  if (depth < kMaxDiffDepth && left.is_object() && right.is_object()) {
    std::set<std::string> keys;
    for (const auto& [key, value] : left.items()) keys.insert(key);
    for (const auto& [key, value] : right.items()) keys.insert(key);
    for (const std::string& key : keys) {
      std::string sub = path.empty() ? key : path + "." + key;
      auto l = left.find(key);
      auto r = right.find(key);
      if (l == left.end()) {
        out.push_back(FieldChange{sub, std::nullopt, *r});
      } else if (r == right.end()) {
        out.push_back(FieldChange{sub, *l, std::nullopt});
      } else {
        diffInto(*l, *r, sub, depth + 1, out);
      }
    }
    return;
  }
  if (depth < kMaxDiffDepth && left.is_array() && right.is_array() && left.size() == right.size()) {
    for (size_t i = 0; i < left.size(); ++i) {
      diffInto(left[i], right[i], fmt::format("{}[{}]", here, i), depth + 1, out);
    }
    return;
  }
  out.push_back(FieldChange{here, left, right});
}

// "a@b.com", "null", "—" for an absent side; one line, cut.
std::string valueText(const std::optional<json>& value, size_t width = kMaxChangeValue) {
  if (!value) return "—";
  return truncated(printable(formatValue(*value)), width);
}

std::string changeText(const FieldChange& change, std::string_view name) {
  return fmt::format("{}: {} → {}", name, valueText(change.before), valueText(change.after));
}

// ---- Spans ------------------------------------------------------------------------------------

bool ran(const TraceSpan* span) { return span != nullptr && !span->skipped(); }

std::vector<FieldChange> spanChanges(const TraceSpan& before, const TraceSpan& after) {
  std::vector<FieldChange> out;
  if (before.name != after.name) out.push_back(FieldChange{"name", before.name, after.name});
  if (before.status != after.status) {
    out.push_back(FieldChange{"status", before.status, after.status});
  }
  // An empty error or location is none: shown as "—", left out of the JSON.
  auto side = [](const std::string& text) -> std::optional<json> {
    if (text.empty()) return std::nullopt;
    return json(text);
  };
  if (before.error != after.error) {
    out.push_back(FieldChange{"error", side(before.error), side(after.error)});
  }
  if ((before.failed() || after.failed()) && before.location != after.location) {
    out.push_back(FieldChange{"location", side(before.location), side(after.location)});
  }
  for (FieldChange& change : diffValues(before.input, after.input, "input")) {
    out.push_back(std::move(change));
  }
  for (FieldChange& change : diffValues(before.output, after.output, "output")) {
    out.push_back(std::move(change));
  }
  return out;
}

SpanDiff diffRow(const AlignedSpan& row, const std::vector<TraceSpan>& before_spans,
                 const std::vector<TraceSpan>& after_spans, DurationThreshold threshold) {
  const TraceSpan* before = row.before ? &before_spans[*row.before] : nullptr;
  const TraceSpan* after = row.after ? &after_spans[*row.after] : nullptr;
  SpanDiff diff;
  diff.row = row;
  diff.depth = after != nullptr ? after->depth : before->depth;
  if (ran(before) && !ran(after)) {
    diff.verdict = SpanVerdict::kMissing;
  } else if (!ran(before) && ran(after)) {
    diff.verdict = SpanVerdict::kAdded;
  } else if (before == nullptr || after == nullptr) {
    // A skipped span on one side only.
    diff.verdict = before != nullptr ? SpanVerdict::kMissing : SpanVerdict::kAdded;
  } else {
    diff.changes = spanChanges(*before, *after);
    if (ran(before)) {
      diff.timing = classifyDuration(before->duration_us, after->duration_us, threshold);
    }
    if (!diff.changes.empty()) {
      diff.verdict = SpanVerdict::kChanged;
    } else if (diff.timing == Timing::kFaster) {
      diff.verdict = SpanVerdict::kFaster;
    } else if (diff.timing == Timing::kSlower) {
      diff.verdict = SpanVerdict::kSlower;
    } else {
      diff.verdict = SpanVerdict::kSame;
    }
  }
  return diff;
}

// ---- Mutations --------------------------------------------------------------------------------

std::string tableOf(const json& mutation) {
  std::string schema = stringField(mutation, "schema");
  std::string table = stringField(mutation, "table");
  return schema.empty() || schema == "public" ? table : schema + "." + table;
}

bool rolledBack(const json& mutation) { return boolField(mutation, "rolled_back"); }

std::string stateName(const json& mutation) {
  return rolledBack(mutation) ? "rolled back" : "committed";
}

bool zeroRows(const json& mutation) { return intField(mutation, "rows_affected", 1) == 0; }

// The row values a mutation is compared on, under the name its changes get: an INSERT's or an
// UPDATE's new row ("new"), a DELETE's old row ("old"), a 0-row change's criteria ("where").
// An UPDATE keeps only its changed columns; the key columns are left out (the key is compared
// on its own).
std::pair<std::string, json> comparedValues(const json& mutation,
                                            const std::set<std::string>& changed_columns) {
  std::string op = stringField(mutation, "op");
  std::string name = zeroRows(mutation) ? "where" : op == "DELETE" ? "old" : "new";
  json row = field(mutation, name == "new" ? "new" : "old");
  if (!row.is_object()) return {name, row};
  if (op == "UPDATE" && name == "new" && !changed_columns.empty()) {
    json kept = json::object();
    for (const auto& [key, value] : row.items()) {
      if (changed_columns.contains(key)) kept[key] = value;
    }
    row = std::move(kept);
  }
  for (const json& key : arrayField(mutation, "key_columns")) {
    if (key.is_string() && name != "where") row.erase(key.get<std::string>());
  }
  return {name, row};
}

std::vector<FieldChange> mutationChanges(const json& before, const json& after) {
  std::vector<FieldChange> out;
  const json& before_pk = field(before, "pk");
  const json& after_pk = field(after, "pk");
  if (before_pk != after_pk) out.push_back(FieldChange{"pk", before_pk, after_pk});
  if (rolledBack(before) != rolledBack(after)) {
    out.push_back(FieldChange{"state", stateName(before), stateName(after)});
  }
  int64_t before_rows = intField(before, "rows_affected", 1);
  int64_t after_rows = intField(after, "rows_affected", 1);
  if (before_rows != after_rows) {
    out.push_back(FieldChange{"rows_affected", before_rows, after_rows});
  }
  std::set<std::string> changed;
  for (const json* side : {&before, &after}) {
    for (const json& column : arrayField(*side, "changed_columns")) {
      if (column.is_string()) changed.insert(column.get<std::string>());
    }
  }
  auto [name, left] = comparedValues(before, changed);
  auto [after_name, right] = comparedValues(after, changed);
  if (name == after_name) {
    for (FieldChange& change : diffValues(left, right, name)) out.push_back(std::move(change));
  }
  return out;
}

// "email: a@b.com → x@y.com" with the row prefix ("new.") dropped, "key: 41 → 42".
std::string mutationChangeText(const FieldChange& change) {
  std::string name = change.field;
  if (name == "pk") {
    name = "key";
  } else if (name.starts_with("new.") || name.starts_with("old.")) {
    name = name.substr(4);
  }
  return changeText(change, name);
}

// ---- Records ----------------------------------------------------------------------------------

// What identifies an endpoint: the kind and function, or the method and path without one (a
// request the gateway answered itself).
std::string endpointOf(const json& record) {
  std::string function = stringField(record, "function");
  if (!function.empty()) return stringField(record, "kind") + " " + function;
  return stringField(record, "method") + " " + stringField(record, "path");
}

// "POST /checkout (create_order)", "job send_email".
std::string describeEndpoint(const json& record) {
  std::string kind = stringField(record, "kind");
  std::string function = stringField(record, "function");
  if (kind == "job" || kind == "cron") return kind + " " + function;
  std::string out = stringField(record, "method") + " " + printable(stringField(record, "path"));
  if (!function.empty()) out += " (" + function + ")";
  return out;
}

json recordSummary(const json& record) {
  const json& error = field(record, "error");
  json message =
      error.is_object() && field(error, "message").is_string() ? field(error, "message") : json();
  return json{{"id", field(record, "id")},
              {"kind", field(record, "kind")},
              {"function", field(record, "function")},
              {"method", field(record, "method")},
              {"path", field(record, "path")},
              {"status", field(record, "status")},
              {"duration_us", field(record, "duration_us")},
              {"started_at_us", field(record, "started_at_us")},
              {"error", std::move(message)}};
}

json spanSummary(const TraceSpan* span) {
  if (span == nullptr) return nullptr;
  json out{
      {"id", span->id},         {"name", span->name},         {"depth", span->depth},
      {"status", span->status}, {"start_us", span->start_us}, {"duration_us", span->duration_us}};
  if (!span->error.empty()) out["error"] = span->error;
  return out;
}

json changesJson(const std::vector<FieldChange>& changes) {
  json out = json::array();
  for (const FieldChange& change : changes) {
    json item{{"field", change.field}};
    if (change.before) item["before"] = *change.before;
    if (change.after) item["after"] = *change.after;
    out.push_back(std::move(item));
  }
  return out;
}

// A cell of the BEFORE or AFTER column: "68ms", "180ms timeout", "44ms error", "skipped", "—".
std::string spanCell(const TraceSpan* span) {
  if (span == nullptr) return "—";
  if (span->skipped()) return "skipped";
  std::string text = formatDuration(span->duration_us);
  if (span->failed()) text += span->timedOut() ? " timeout" : " error";
  return text;
}

std::string verdictText(const SpanDiff& diff, const Painter& paint) {
  std::string moved = diff.row.match == SpanMatch::kMoved ? " (moved)" : "";
  switch (diff.verdict) {
    case SpanVerdict::kSame:
      return paint.dim("— same" + moved);
    case SpanVerdict::kFaster:
      return paint.green("— faster" + moved);
    case SpanVerdict::kSlower:
      return paint.yellow("— slower" + moved);
    case SpanVerdict::kChanged:
      return paint.red("✗ changed" + moved);
    case SpanVerdict::kMissing:
      return paint.red("✗ missing");
    case SpanVerdict::kAdded:
      return paint.green("+ added");
  }
  return {};
}

// The tree drawing of each row of the aligned sequence, from the rows' depths (as
// traceSpans() draws one record).
std::vector<std::pair<std::string, std::string>> treeDrawing(const std::vector<size_t>& depths) {
  size_t n = depths.size();
  // last[i]: no later sibling (a row at the same depth before one that is shallower).
  std::vector<bool> last(n, true);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n && depths[j] >= depths[i]; ++j) {
      if (depths[j] == depths[i]) {
        last[i] = false;
        break;
      }
    }
  }
  std::vector<std::pair<std::string, std::string>> out;  // {prefix, indent of its details}
  std::vector<bool> open;  // open[k]: the current ancestor at depth k has later siblings
  for (size_t i = 0; i < n; ++i) {
    size_t depth = depths[i];
    open.resize(depth + 1, false);
    std::string indent;
    for (size_t k = 1; k < depth; ++k) indent += open[k] ? "│  " : "   ";
    std::string prefix = depth == 0 ? "" : indent + (last[i] ? "└─ " : "├─ ");
    std::string below = depth == 0 ? "" : indent + (last[i] ? "   " : "│  ");
    open[depth] = !last[i];
    out.emplace_back(std::move(prefix), std::move(below));
  }
  return out;
}

}  // namespace

// ---- Public -----------------------------------------------------------------------------------

const char* timingName(Timing timing) {
  switch (timing) {
    case Timing::kSame:
      return "same";
    case Timing::kFaster:
      return "faster";
    case Timing::kSlower:
      return "slower";
  }
  return "same";
}

Timing classifyDuration(int64_t before_us, int64_t after_us, DurationThreshold threshold) {
  int64_t delta = after_us - before_us;
  double bound = std::max(static_cast<double>(threshold.min_us),
                          threshold.ratio * static_cast<double>(std::max<int64_t>(before_us, 0)));
  if (static_cast<double>(std::llabs(delta)) <= bound) return Timing::kSame;
  return delta < 0 ? Timing::kFaster : Timing::kSlower;
}

std::vector<AlignItem> alignItems(const std::vector<TraceSpan>& spans, std::string_view function) {
  std::vector<AlignItem> items;
  items.reserve(spans.size());
  for (const TraceSpan& span : spans) {
    items.push_back(AlignItem{span.name, span.depth, !function.empty() && span.name == function});
  }
  return items;
}

const char* spanMatchName(SpanMatch match) {
  switch (match) {
    case SpanMatch::kName:
      return "name";
    case SpanMatch::kRenamed:
      return "renamed";
    case SpanMatch::kMoved:
      return "moved";
  }
  return "name";
}

std::vector<AlignedSpan> alignSpans(const std::vector<AlignItem>& before,
                                    const std::vector<AlignItem>& after) {
  std::vector<AlignedSpan> rows;
  rows.reserve(before.size() + after.size());
  size_t next_before = 0, next_after = 0;
  for (const auto& [b, a] : anchorsOf(before, after)) {
    alignGap(before, after, next_before, b, next_after, a, rows);
    rows.push_back(AlignedSpan{b, a, SpanMatch::kName});
    next_before = b + 1;
    next_after = a + 1;
  }
  alignGap(before, after, next_before, before.size(), next_after, after.size(), rows);
  pairMoved(before, after, rows);
  return rows;
}

std::vector<FieldChange> diffValues(const json& before, const json& after,
                                    const std::string& path) {
  std::vector<FieldChange> out;
  diffInto(before, after, path, 0, out);
  return out;
}

const char* spanVerdictName(SpanVerdict verdict) {
  switch (verdict) {
    case SpanVerdict::kSame:
      return "same";
    case SpanVerdict::kFaster:
      return "faster";
    case SpanVerdict::kSlower:
      return "slower";
    case SpanVerdict::kChanged:
      return "changed";
    case SpanVerdict::kMissing:
      return "missing";
    case SpanVerdict::kAdded:
      return "added";
  }
  return "same";
}

const char* mutationVerdictName(MutationVerdict verdict) {
  switch (verdict) {
    case MutationVerdict::kSame:
      return "same";
    case MutationVerdict::kChanged:
      return "changed";
    case MutationVerdict::kOnlyBefore:
      return "only_before";
    case MutationVerdict::kOnlyAfter:
      return "only_after";
  }
  return "same";
}

std::vector<MutationDiff> diffMutations(const json& before, const json& after) {
  const json& left = before.is_array() ? before : json::array();
  const json& right = after.is_array() ? after : json::array();
  std::vector<std::optional<size_t>> partner(left.size());
  std::vector<bool> taken(right.size(), false);
  auto pairUp = [&](bool by_key) {
    for (size_t i = 0; i < left.size(); ++i) {
      if (partner[i]) continue;
      const json& l = left[i];
      if (by_key && !field(l, "pk").is_string()) continue;
      for (size_t j = 0; j < right.size(); ++j) {
        if (taken[j]) continue;
        const json& r = right[j];
        if (tableOf(l) != tableOf(r) || stringField(l, "op") != stringField(r, "op")) continue;
        if (by_key && field(l, "pk") != field(r, "pk")) continue;
        partner[i] = j;
        taken[j] = true;
        break;
      }
    }
  };
  pairUp(/*by_key=*/true);
  pairUp(/*by_key=*/false);

  std::vector<MutationDiff> rows;
  std::vector<std::optional<size_t>> row_of_after(right.size());
  for (size_t i = 0; i < left.size(); ++i) {
    MutationDiff diff;
    diff.before = i;
    if (partner[i]) {
      diff.after = *partner[i];
      diff.changes = mutationChanges(left[i], right[*partner[i]]);
      diff.verdict = diff.changes.empty() ? MutationVerdict::kSame : MutationVerdict::kChanged;
      row_of_after[*partner[i]] = rows.size();
    } else {
      diff.verdict = MutationVerdict::kOnlyBefore;
    }
    rows.push_back(std::move(diff));
  }
  // Each write only the after log has goes after the row of the paired write before it there.
  std::vector<std::vector<size_t>> inserted(rows.size() + 1);  // [0]: first; [k + 1]: after k
  std::optional<size_t> anchor;
  for (size_t j = 0; j < right.size(); ++j) {
    if (row_of_after[j]) {
      anchor = row_of_after[j];
      continue;
    }
    inserted[anchor ? *anchor + 1 : 0].push_back(j);
  }
  std::vector<MutationDiff> out;
  out.reserve(left.size() + right.size());
  for (size_t slot = 0; slot <= rows.size(); ++slot) {
    if (slot > 0) out.push_back(std::move(rows[slot - 1]));
    for (size_t j : inserted[slot]) {
      MutationDiff diff;
      diff.after = j;
      diff.verdict = MutationVerdict::kOnlyAfter;
      out.push_back(std::move(diff));
    }
  }
  return out;
}

TraceDiff diffTraces(json before, json after, DurationThreshold threshold) {
  TraceDiff diff;
  diff.before = std::move(before);
  diff.after = std::move(after);
  diff.threshold = threshold;
  const json& before_record = field(diff.before, "record");
  const json& after_record = field(diff.after, "record");
  diff.before_spans = traceSpans(before_record);
  diff.after_spans = traceSpans(after_record);
  diff.same_endpoint = endpointOf(before_record) == endpointOf(after_record);
  std::vector<AlignedSpan> rows =
      alignSpans(alignItems(diff.before_spans, stringField(before_record, "function")),
                 alignItems(diff.after_spans, stringField(after_record, "function")));
  for (const AlignedSpan& row : rows) {
    diff.spans.push_back(diffRow(row, diff.before_spans, diff.after_spans, threshold));
  }
  diff.mutations =
      diffMutations(arrayField(diff.before, "mutations"), arrayField(diff.after, "mutations"));
  return diff;
}

json toJson(const TraceDiff& diff) {
  const json& before_mutations = arrayField(diff.before, "mutations");
  const json& after_mutations = arrayField(diff.after, "mutations");
  json spans = json::array();
  json span_totals = json::object();
  for (const char* name : {"same", "faster", "slower", "changed", "missing", "added"}) {
    span_totals[name] = 0;
  }
  for (const SpanDiff& row : diff.spans) {
    const TraceSpan* before = row.row.before ? &diff.before_spans[*row.row.before] : nullptr;
    const TraceSpan* after = row.row.after ? &diff.after_spans[*row.row.after] : nullptr;
    json item{{"verdict", spanVerdictName(row.verdict)},
              {"name", after != nullptr ? after->name : before->name},
              {"depth", row.depth},
              {"match",
               before != nullptr && after != nullptr ? json(spanMatchName(row.row.match)) : json()},
              {"timing", row.timing ? json(timingName(*row.timing)) : json()},
              {"before", spanSummary(before)},
              {"after", spanSummary(after)},
              {"duration_delta_us",
               ran(before) && ran(after) ? json(after->duration_us - before->duration_us) : json()},
              {"changes", changesJson(row.changes)}};
    spans.push_back(std::move(item));
    span_totals[spanVerdictName(row.verdict)] =
        span_totals[spanVerdictName(row.verdict)].get<int>() + 1;
  }
  json mutations = json::array();
  json mutation_totals = json::object();
  for (const char* name : {"same", "changed", "only_before", "only_after"}) {
    mutation_totals[name] = 0;
  }
  for (const MutationDiff& row : diff.mutations) {
    const json* before = row.before ? &before_mutations[*row.before] : nullptr;
    const json* after = row.after ? &after_mutations[*row.after] : nullptr;
    const json& either = after != nullptr ? *after : *before;
    mutations.push_back(json{{"verdict", mutationVerdictName(row.verdict)},
                             {"table", tableOf(either)},
                             {"op", field(either, "op")},
                             {"before", before != nullptr ? *before : json()},
                             {"after", after != nullptr ? *after : json()},
                             {"changes", changesJson(row.changes)}});
    const char* name = mutationVerdictName(row.verdict);
    mutation_totals[name] = mutation_totals[name].get<int>() + 1;
  }
  return json{
      {"before", recordSummary(field(diff.before, "record"))},
      {"after", recordSummary(field(diff.after, "record"))},
      {"same_endpoint", diff.same_endpoint},
      {"threshold", {{"ratio", diff.threshold.ratio}, {"min_us", diff.threshold.min_us}}},
      {"spans", std::move(spans)},
      {"mutations", std::move(mutations)},
      {"mutations_truncated", boolField(diff.before, "mutations_truncated") ||
                                  boolField(diff.after, "mutations_truncated")},
      {"totals", {{"spans", std::move(span_totals)}, {"mutations", std::move(mutation_totals)}}},
  };
}

std::string renderTraceDiff(const TraceDiff& diff, Color color) {
  Painter paint(color);
  const json& before_record = field(diff.before, "record");
  const json& after_record = field(diff.after, "record");
  auto header = [&](std::string_view label, const json& record) {
    std::string line = renderRecordHeader(record, color);
    if (line.starts_with("  ")) line.erase(0, 2);
    return "  " + paint.bold(padded(label, 8)) + line;
  };
  std::string out = header("BEFORE", before_record) + header("AFTER", after_record);
  if (!diff.same_endpoint) {
    out += "  " +
           paint.yellow("Different endpoints: " + describeEndpoint(before_record) + " vs " +
                        describeEndpoint(after_record)) +
           "\n";
  }
  out += "\n";

  // ---- Spans
  std::vector<size_t> depths;
  for (const SpanDiff& row : diff.spans) depths.push_back(row.depth);
  auto drawing = treeDrawing(depths);
  struct Line {
    std::string label, before, after;
  };
  std::vector<Line> lines;
  size_t label_width = displayWidth("SPAN"), before_width = displayWidth("BEFORE"),
         after_width = displayWidth("AFTER");
  for (size_t r = 0; r < diff.spans.size(); ++r) {
    const SpanDiff& row = diff.spans[r];
    const TraceSpan* before = row.row.before ? &diff.before_spans[*row.row.before] : nullptr;
    const TraceSpan* after = row.row.after ? &diff.after_spans[*row.row.after] : nullptr;
    Line line{
        drawing[r].first + truncated(after != nullptr ? after->name : before->name, kMaxSpanLabel),
        spanCell(before), spanCell(after)};
    label_width = std::max(label_width, displayWidth(line.label));
    before_width = std::max(before_width, displayWidth(line.before));
    after_width = std::max(after_width, displayWidth(line.after));
    lines.push_back(std::move(line));
  }
  size_t rule_width = label_width + before_width + after_width + 6 + 12;
  out += "  " +
         paint.bold(padded("SPAN", label_width) + "  " + paddedLeft("BEFORE", before_width) +
                    "  AFTER") +
         "\n";
  std::string rule;
  for (size_t i = 0; i < rule_width; ++i) rule += "─";
  out += "  " + paint.dim(rule) + "\n";
  for (size_t r = 0; r < diff.spans.size(); ++r) {
    const SpanDiff& row = diff.spans[r];
    const Line& line = lines[r];
    out += "  " + padded(line.label, label_width) + "  " + paddedLeft(line.before, before_width) +
           "  " + padded(line.after, after_width) + "  " + verdictText(row, paint) + "\n";
    size_t shown = 0;
    for (const FieldChange& change : row.changes) {
      if (shown == kMaxChangeLines) {
        out += "  " + drawing[r].second + "   " +
               paint.dim(fmt::format("… {} more (--json lists them)",
                                     row.changes.size() - kMaxChangeLines)) +
               "\n";
        break;
      }
      out += "  " + drawing[r].second + "   " + paint.dim(changeText(change, change.field)) + "\n";
      ++shown;
    }
  }
  if (diff.spans.empty()) out += "  " + paint.dim("neither record has spans") + "\n";

  // ---- Mutations
  const json& before_mutations = arrayField(diff.before, "mutations");
  const json& after_mutations = arrayField(diff.after, "mutations");
  out += "\n  " + paint.bold("MUTATION DIFF") + "\n";
  auto mutationLine = [&](const json& mutation) {
    std::string line = renderMutationLine(mutation, color);
    if (!rolledBack(mutation)) line += "  " + paint.dim("(committed)");
    return line;
  };
  size_t shown = 0;
  for (const MutationDiff& row : diff.mutations) {
    if (shown == kMaxMutationRows) {
      out += "  " +
             paint.dim(fmt::format("… {} more (--json lists them)",
                                   diff.mutations.size() - kMaxMutationRows)) +
             "\n";
      break;
    }
    ++shown;
    const json* before = row.before ? &before_mutations[*row.before] : nullptr;
    const json* after = row.after ? &after_mutations[*row.after] : nullptr;
    switch (row.verdict) {
      case MutationVerdict::kSame:
        out +=
            "  " + paint.dim("= ") + mutationLine(*after) + "  " + paint.dim("same in both") + "\n";
        break;
      case MutationVerdict::kChanged: {
        std::string summary;
        for (const FieldChange& change : row.changes) {
          summary += (summary.empty() ? "" : "  ·  ") + mutationChangeText(change);
        }
        out += "  " + paint.red("✗ ") + tableOf(*after) + " " + stringField(*after, "op") + "  " +
               truncated(summary, kMaxMutationSummary) + "\n";
        out += "      " + paint.red("− ") + mutationLine(*before) + "\n";
        out += "      " + paint.green("+ ") + mutationLine(*after) + "\n";
        break;
      }
      case MutationVerdict::kOnlyBefore:
        out +=
            "  " + paint.red("− ") + mutationLine(*before) + "  " + paint.dim("before only") + "\n";
        break;
      case MutationVerdict::kOnlyAfter:
        out +=
            "  " + paint.green("+ ") + mutationLine(*after) + "  " + paint.dim("after only") + "\n";
        break;
    }
  }
  if (diff.mutations.empty()) out += "  " + paint.dim("none: neither request wrote a row") + "\n";
  if (boolField(diff.before, "mutations_truncated") ||
      boolField(diff.after, "mutations_truncated")) {
    out += "  " + paint.dim("(only the first writes of each request were compared)") + "\n";
  }

  // ---- Totals
  auto counts = [](const std::vector<std::pair<const char*, size_t>>& items) {
    std::string text;
    for (const auto& [name, count] : items) {
      if (count == 0) continue;
      text += fmt::format("{}{} {}", text.empty() ? "" : " · ", count, name);
    }
    return text.empty() ? std::string("none") : text;
  };
  size_t span_counts[6] = {};
  for (const SpanDiff& row : diff.spans) ++span_counts[static_cast<size_t>(row.verdict)];
  size_t mutation_counts[4] = {};
  for (const MutationDiff& row : diff.mutations)
    ++mutation_counts[static_cast<size_t>(row.verdict)];
  std::string totals = "── Spans: " +
                       counts({{"same", span_counts[0]},
                               {"faster", span_counts[1]},
                               {"slower", span_counts[2]},
                               {"changed", span_counts[3]},
                               {"missing", span_counts[4]},
                               {"added", span_counts[5]}}) +
                       "  ·  Writes: " +
                       counts({{"same", mutation_counts[0]},
                               {"changed", mutation_counts[1]},
                               {"before only", mutation_counts[2]},
                               {"after only", mutation_counts[3]}});
  out += "\n  " + paint.dim(totals) + "\n";
  return out;
}

}  // namespace flux::cli

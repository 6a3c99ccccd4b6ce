#include "admin/record_queries.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <map>
#include <tuple>
#include <utility>

#include "admin/query_string.h"
#include "base/ids.h"
#include "record/execution_record.h"
#include "record/schema.h"

namespace flux::admin {

namespace {

using nlohmann::json;

constexpr size_t kUuidHexDigits = 32;
constexpr std::string_view kHandlePrefix = "req:";
// A path filter longer than this is not one anybody types.
constexpr size_t kMaxFilterBytes = 2048;

bool isHex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool isDashPosition(size_t i) { return i == 8 || i == 13 || i == 18 || i == 23; }

// 32 hex digits -> 8-4-4-4-12.
std::string canonicalUuid(std::string_view hex) {
  std::string out;
  out.reserve(36);
  for (size_t i = 0; i < hex.size(); ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) out.push_back('-');
    out.push_back(hex[i]);
  }
  return out;
}

std::unexpected<Error> notAnId(std::string_view text) {
  std::string shown(text.substr(0, 60));
  return fail(ErrorCode::kInvalidArgument,
              "'" + shown +
                  "' is not a request id: pass the full id, a prefix of it, or its handle "
                  "(req:550e8400, the last 8 hex digits)");
}

// ---- Query results ----------------------------------------------------------------------------

// Index of each named column, or an error naming the first one missing.
Result<std::vector<size_t>> columnIndexes(const data::QueryResult& result,
                                          std::initializer_list<std::string_view> names) {
  std::vector<size_t> indexes;
  for (std::string_view name : names) {
    size_t i = 0;
    while (i < result.columns.size() && result.columns[i].name != name) ++i;
    if (i == result.columns.size()) {
      return fail(ErrorCode::kInternal,
                  "the execution records query returned no column '" + std::string(name) + "'");
    }
    indexes.push_back(i);
  }
  return indexes;
}

std::optional<size_t> optionalColumn(const data::QueryResult& result, std::string_view name) {
  for (size_t i = 0; i < result.columns.size(); ++i) {
    if (result.columns[i].name == name) return i;
  }
  return std::nullopt;
}

Result<int64_t> parseInt(const std::optional<std::string>& text, std::string_view what) {
  int64_t value = 0;
  if (!text) return value;
  auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || ptr != text->data() + text->size()) {
    return fail(ErrorCode::kInternal,
                "an execution record has a bad " + std::string(what) + ": '" + *text + "'");
  }
  return value;
}

// json text (jsonb or json) -> value; SQL NULL -> null.
Result<json> parseJsonCell(const std::optional<std::string>& text, std::string_view what) {
  if (!text) return json(nullptr);
  json value = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return fail(ErrorCode::kInternal,
                "an execution record has a bad " + std::string(what) + " (not JSON)");
  }
  return value;
}

json textOrNull(const std::optional<std::string>& text) {
  return text ? json(*text) : json(nullptr);
}

// Parses one summary row; `c` holds the indexes of kSummaryColumns in order.
Result<json> summaryAt(const std::vector<std::optional<std::string>>& row,
                       const std::vector<size_t>& c) {
  record::RecordSummary summary;
  summary.id = row[c[0]].value_or("");
  summary.kind = row[c[1]].value_or("");
  summary.function = row[c[2]].value_or("");
  summary.method = row[c[3]].value_or("");
  summary.path = row[c[4]].value_or("");
  auto status = parseInt(row[c[5]], "status");
  if (!status) return std::unexpected(status.error());
  summary.status = static_cast<int>(*status);
  summary.error = row[c[6]];
  auto started = parseInt(row[c[7]], "started_at");
  if (!started) return std::unexpected(started.error());
  summary.started_at_us = *started;
  auto duration = parseInt(row[c[9]], "duration_us");
  if (!duration) return std::unexpected(duration.error());
  summary.duration_us = *duration;

  json out = record::toJson(summary);
  out["started_at"] = row[c[8]].value_or("");
  auto count = parseInt(row[c[10]], "mutation count");
  if (!count) return std::unexpected(count.error());
  json first = nullptr;
  if (row[c[12]]) {
    auto affected = parseInt(row[c[15]], "rows_affected");
    if (!affected) return std::unexpected(affected.error());
    auto keys = parseJsonCell(row[c[17]], "key column list");
    if (!keys) return std::unexpected(keys.error());
    first = json{{"schema", row[c[11]].value_or("public")},
                 {"table", *row[c[12]]},
                 {"pk", textOrNull(row[c[13]])},
                 {"key_columns", keys->is_array() ? *keys : json::array()},
                 {"op", row[c[14]].value_or("")},
                 {"rows_affected", row[c[15]] ? *affected : 1},
                 {"rolled_back", row[c[16]] == "t"}};
  }
  out["mutations"] = json{{"count", *count}, {"first", std::move(first)}};
  return out;
}

// ---- SQL pieces -------------------------------------------------------------------------------

// A UTC timestamp as "2026-03-10T14:22:01.123456Z", whatever the session's TimeZone.
#define FLUX_ISO_UTC(column) \
  "to_char(" column " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

// The primary key columns of the table a mutation row `m` names (json text, or NULL).
#define FLUX_KEY_COLUMNS                                                             \
  "(SELECT json_agg(a.attname::text ORDER BY k.n)\n"                                 \
  "   FROM pg_index i\n"                                                             \
  "   CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)\n" \
  "   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum\n"      \
  "  WHERE i.indrelid = to_regclass(quote_ident(m.schema_name) || '.' ||\n"          \
  "                                 quote_ident(m.table_name))::oid\n"               \
  "    AND i.indisprimary)::text"

// The inner query `e` selects these from flux.executions; the outer one adds each record's
// mutation count and first mutation.
constexpr std::string_view kInnerColumns =
    "e.id, e.kind, e.function, e.method, e.path, e.status, e.error, e.started_at, "
    "e.duration_us";

std::string summarySelect(std::string_view inner_sql, std::string_view extra_columns,
                          std::string_view order) {
  std::string sql =
      "SELECT e.id::text AS id, e.kind, e.function, e.method, e.path, e.status,\n"
      "  e.error::json ->> 'message' AS error,\n"
      "  (extract(epoch FROM e.started_at) * 1000000)::bigint AS started_at_us,\n"
      "  " FLUX_ISO_UTC("e.started_at") " AS started_at,\n"
      "  e.duration_us,\n"
      "  (SELECT count(*) FROM flux.state_mutations c WHERE c.request_id = e.id)\n"
      "    AS mutation_count,\n"
      "  f.schema_name AS first_schema, f.table_name AS first_table, f.pk AS first_pk,\n"
      "  f.op AS first_op, f.rows_affected AS first_rows_affected,\n"
      "  f.rolled_back AS first_rolled_back, f.key_columns AS first_key_columns";
  sql += extra_columns;
  sql += "\nFROM (";
  sql += inner_sql;
  sql +=
      ") e\n"
      "LEFT JOIN LATERAL (\n"
      "  SELECT m.schema_name, m.table_name, m.pk, m.op, m.rows_affected, m.rolled_back,\n"
      "    " FLUX_KEY_COLUMNS
      " AS key_columns\n"
      "  FROM flux.state_mutations m WHERE m.request_id = e.id\n"
      "  ORDER BY m.rows_affected = 0, m.id LIMIT 1) f ON true\n"
      "ORDER BY ";
  sql += order;
  return sql;
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

std::unexpected<Error> badParameter(std::string message) {
  return fail(ErrorCode::kInvalidArgument, std::move(message));
}

}  // namespace

// ---- Request ids ------------------------------------------------------------------------------

Result<RecordRef> parseRecordRef(std::string_view text) {
  RecordRef ref;
  ref.text = std::string(text);
  std::string_view body = text;
  bool handle = false;
  if (body.size() >= kHandlePrefix.size() &&
      std::equal(kHandlePrefix.begin(), kHandlePrefix.end(), body.begin(),
                 [](char a, char b) { return a == lower(b); })) {
    body.remove_prefix(kHandlePrefix.size());
    handle = true;
  }
  if (body.empty() || body.size() > 36) return notAnId(text);

  if (record::isCanonicalUuid(body)) {
    ref.form = RecordRef::Form::kExact;
    for (char c : body) ref.exact.push_back(lower(c));
    return ref;
  }

  std::string hex;
  bool dashed = false;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c == '-') {
      // Dashes only where the canonical text has them: the text is a prefix of an id.
      if (handle || !isDashPosition(i)) return notAnId(text);
      dashed = true;
    } else if (isHex(c)) {
      hex.push_back(lower(c));
    } else {
      return notAnId(text);
    }
  }
  if (dashed) {
    // Digits where a dash belongs ("0195a1b2c..." with dashes later) are not an id's prefix.
    for (size_t i = 0; i < body.size(); ++i) {
      if (isDashPosition(i) != (body[i] == '-')) return notAnId(text);
    }
  }
  if (hex.size() > kUuidHexDigits) return notAnId(text);

  if (handle) {
    if (hex.size() < kMinSuffixDigits) {
      return fail(ErrorCode::kInvalidArgument,
                  "'" + ref.text + "' is too short: a handle has at least 6 hex digits (req:" +
                      "550e8400, the last 8 digits of the id)");
    }
    ref.form = hex.size() == kUuidHexDigits ? RecordRef::Form::kExact : RecordRef::Form::kSuffix;
    if (ref.form == RecordRef::Form::kExact) {
      ref.exact = canonicalUuid(hex);
    } else {
      ref.suffix = std::move(hex);
    }
    return ref;
  }
  if (hex.size() == kUuidHexDigits) {
    ref.form = RecordRef::Form::kExact;
    ref.exact = canonicalUuid(hex);
    return ref;
  }
  ref.low = canonicalUuid(hex + std::string(kUuidHexDigits - hex.size(), '0'));
  ref.high = canonicalUuid(hex + std::string(kUuidHexDigits - hex.size(), 'f'));
  if (!dashed && hex.size() >= kMinSuffixDigits) {
    ref.form = RecordRef::Form::kPrefixOrSuffix;
    ref.suffix = std::move(hex);
  } else {
    ref.form = RecordRef::Form::kPrefix;
  }
  return ref;
}

namespace {

// The ids that end in the suffix's digits, with parameters from $first. From
// record::kHandleKeyDigits digits on, the last ones go through the handle index and the rest are
// compared on the rows it finds; fewer are compared on every row.
std::pair<std::string, data::QueryParams> handleMatch(const std::string& suffix, int first) {
  std::string compare = "right(replace(id::text, '-', ''), length($" + std::to_string(first) +
                        "::text)) = $" + std::to_string(first) + "::text";
  if (suffix.size() < record::kHandleKeyDigits) return {compare, {suffix}};
  std::string key = std::string(record::kHandleKeySql) + " = decode($" + std::to_string(first + 1) +
                    "::text, 'hex')";
  return {key + " AND " + compare,
          {suffix, suffix.substr(suffix.size() - record::kHandleKeyDigits)}};
}

}  // namespace

SqlQuery resolveRecordQuery(const RecordRef& ref) {
  // A prefix is a range of ids (the primary key's index), a handle a key of the handle index.
  std::string where;
  data::QueryParams params;
  switch (ref.form) {
    case RecordRef::Form::kExact:
      where = "id = $1::uuid";
      params = {ref.exact};
      break;
    case RecordRef::Form::kPrefix:
      where = "id BETWEEN $1::uuid AND $2::uuid";
      params = {ref.low, ref.high};
      break;
    case RecordRef::Form::kSuffix:
      std::tie(where, params) = handleMatch(ref.suffix, 1);
      break;
    case RecordRef::Form::kPrefixOrSuffix: {
      auto [match, match_params] = handleMatch(ref.suffix, 3);
      where = "id BETWEEN $1::uuid AND $2::uuid\n   OR (" + match + ")";
      params = {ref.low, ref.high};
      params.insert(params.end(), match_params.begin(), match_params.end());
      break;
    }
  }
  std::string inner = "SELECT " + std::string(kInnerColumns) +
                      ", count(*) OVER () AS total\n"
                      "  FROM flux.executions e\n"
                      "  WHERE " +
                      where + "\n  ORDER BY e.id DESC\n  LIMIT " + std::to_string(kMaxCandidates);
  return SqlQuery{summarySelect(inner, ",\n  e.total", "e.id DESC"), std::move(params)};
}

Result<Resolution> parseResolution(const data::QueryResult& result) {
  auto summaries = parseRecordSummaries(result);
  if (!summaries) return std::unexpected(summaries.error());
  Resolution resolution;
  resolution.found = std::move(*summaries);
  if (!resolution.found.empty()) {
    auto total_at = optionalColumn(result, "total");
    if (!total_at) {
      return fail(ErrorCode::kInternal, "the execution records query returned no column 'total'");
    }
    auto total = parseInt(result.rows[0][*total_at], "total");
    if (!total) return std::unexpected(total.error());
    resolution.total = *total;
  }
  return resolution;
}

std::string unknownRecordMessage(const RecordRef& ref) {
  return "no execution matches '" + ref.text + "'";
}

json ambiguousRecordJson(const RecordRef& ref, const Resolution& resolution) {
  json candidates = json::array();
  for (const json& summary : resolution.found) candidates.push_back(summary);
  return json{{"error", "'" + ref.text + "' matches " + std::to_string(resolution.total) +
                            " executions: use more digits"},
              {"total", resolution.total},
              {"candidates", std::move(candidates)}};
}

// ---- One record -------------------------------------------------------------------------------

const char* const kRecordSql =
    "SELECT id::text AS id, kind, parent_id::text AS parent_id, replay_of::text AS replay_of,\n"
    "  tenant, function, deployment_id, git_commit, method, path, status, error::text AS error,\n"
    "  (extract(epoch FROM started_at) * 1000000)::bigint AS started_at_us,\n"
    "  " FLUX_ISO_UTC("started_at") " AS started_at,\n"
    "  duration_us, request::text AS request, response::text AS response,\n"
    "  spans::text AS spans, journal::text AS journal, logs::text AS logs\n"
    "FROM flux.executions WHERE id = $1::uuid";

Result<std::optional<json>> parseRecordRow(const data::QueryResult& result) {
  auto at = columnIndexes(
      result, {"id",       "kind",          "parent_id",     "replay_of",  "tenant",
               "function", "deployment_id", "git_commit",    "method",     "path",
               "status",   "error",         "started_at_us", "started_at", "duration_us",
               "request",  "response",      "spans",         "journal",    "logs"});
  if (!at) return std::unexpected(at.error());
  if (result.rows.empty()) return std::optional<json>();
  const std::vector<size_t>& c = *at;
  const auto& row = result.rows[0];

  json out = json::object();
  out["id"] = row[c[0]].value_or("");
  out["kind"] = row[c[1]].value_or("");
  out["parent_id"] = textOrNull(row[c[2]]);
  out["replay_of"] = textOrNull(row[c[3]]);
  out["tenant"] = textOrNull(row[c[4]]);
  out["function"] = row[c[5]].value_or("");
  out["deployment_id"] = textOrNull(row[c[6]]);
  out["git_commit"] = textOrNull(row[c[7]]);
  out["method"] = row[c[8]].value_or("");
  out["path"] = row[c[9]].value_or("");
  auto status = parseInt(row[c[10]], "status");
  if (!status) return std::unexpected(status.error());
  out["status"] = *status;
  auto error = parseJsonCell(row[c[11]], "error");
  if (!error) return std::unexpected(error.error());
  out["error"] = std::move(*error);
  auto started = parseInt(row[c[12]], "started_at");
  if (!started) return std::unexpected(started.error());
  out["started_at_us"] = *started;
  out["started_at"] = row[c[13]].value_or("");
  auto duration = parseInt(row[c[14]], "duration_us");
  if (!duration) return std::unexpected(duration.error());
  out["duration_us"] = *duration;
  // The jsonb columns as stored; absent ones as toJson(ExecutionRecord) has them.
  struct JsonColumn {
    size_t index;
    const char* name;
    json fallback;
  };
  for (const JsonColumn& column :
       {JsonColumn{c[15], "request", nullptr}, JsonColumn{c[16], "response", nullptr},
        JsonColumn{c[17], "spans", json::array()}, JsonColumn{c[18], "journal", json::array()},
        JsonColumn{c[19], "logs", json::array()}}) {
    auto value = parseJsonCell(row[column.index], column.name);
    if (!value) return std::unexpected(value.error());
    out[column.name] = value->is_null() ? column.fallback : std::move(*value);
  }
  return std::optional<json>(std::move(out));
}

const char* const kRecordMutationsSql =
    "SELECT m.id, m.schema_name, m.table_name, m.pk, m.op, m.old::text AS old,\n"
    "  m.new::text AS new, array_to_json(m.changed_columns)::text AS changed_columns,\n"
    "  " FLUX_ISO_UTC("m.at") " AS at,\n"
    "  m.rolled_back, m.rows_affected, count(*) OVER () AS total,\n"
    "  " FLUX_KEY_COLUMNS
    " AS key_columns\n"
    "FROM flux.state_mutations m\n"
    "WHERE m.request_id = $1::uuid\n"
    "ORDER BY m.id\n"
    "LIMIT $2";

Result<RecordMutations> parseRecordMutations(const data::QueryResult& result) {
  auto at = columnIndexes(
      result, {"id", "schema_name", "table_name", "pk", "op", "old", "new", "changed_columns", "at",
               "rolled_back", "rows_affected", "total", "key_columns"});
  if (!at) return std::unexpected(at.error());
  const std::vector<size_t>& c = *at;
  RecordMutations out;
  for (const auto& row : result.rows) {
    auto id = parseInt(row[c[0]], "mutation id");
    if (!id) return std::unexpected(id.error());
    auto old_row = parseJsonCell(row[c[5]], "mutation's old row");
    if (!old_row) return std::unexpected(old_row.error());
    auto new_row = parseJsonCell(row[c[6]], "mutation's new row");
    if (!new_row) return std::unexpected(new_row.error());
    auto changed = parseJsonCell(row[c[7]], "mutation's changed_columns");
    if (!changed) return std::unexpected(changed.error());
    auto affected = parseInt(row[c[10]], "rows_affected");
    if (!affected) return std::unexpected(affected.error());
    auto total = parseInt(row[c[11]], "mutation total");
    if (!total) return std::unexpected(total.error());
    auto keys = parseJsonCell(row[c[12]], "key column list");
    if (!keys) return std::unexpected(keys.error());
    out.total = *total;
    out.mutations.push_back(json{
        {"id", *id},
        {"schema", row[c[1]].value_or("public")},
        {"table", row[c[2]].value_or("")},
        {"pk", textOrNull(row[c[3]])},
        {"key_columns", keys->is_array() ? *keys : json::array()},
        {"op", row[c[4]].value_or("")},
        {"old", std::move(*old_row)},
        {"new", std::move(*new_row)},
        {"changed_columns", changed->is_array() ? *changed : json::array()},
        {"at", row[c[8]].value_or("")},
        {"rolled_back", row[c[9]] == "t"},
        {"rows_affected", row[c[10]] ? *affected : 1},
    });
  }
  return out;
}

json recordJson(json record, RecordMutations mutations) {
  bool truncated = mutations.total > static_cast<int64_t>(mutations.mutations.size());
  return json{{"record", std::move(record)},
              {"mutations", std::move(mutations.mutations)},
              {"mutations_total", mutations.total},
              {"mutations_truncated", truncated}};
}

// ---- Lists ------------------------------------------------------------------------------------

Result<int64_t> parseTimestamp(std::string_view text) {
  constexpr std::string_view kUsage =
      ": pass Unix microseconds or an ISO 8601 time (2026-03-10T14:00:00Z)";
  if (text.empty()) return badParameter("since is empty" + std::string(kUsage));
  if (std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    int64_t value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || ptr != text.data() + text.size()) {
      return badParameter("since '" + std::string(text.substr(0, 40)) + "' is out of range" +
                          std::string(kUsage));
    }
    return value;
  }
  auto bad = [&] {
    return badParameter("since '" + std::string(text.substr(0, 40)) + "' is not a time" +
                        std::string(kUsage));
  };
  int year, month, day, hour = 0, minute = 0, second = 0;
  if (!parseDigits(text, 0, 4, year) || text.size() < 10 || text[4] != '-' ||
      !parseDigits(text, 5, 2, month) || text[7] != '-' || !parseDigits(text, 8, 2, day)) {
    return bad();
  }
  size_t at = 10;
  int64_t fraction_us = 0;
  if (at < text.size() && (text[at] == 'T' || text[at] == 't' || text[at] == ' ')) {
    if (!parseDigits(text, at + 1, 2, hour) || at + 3 >= text.size() || text[at + 3] != ':' ||
        !parseDigits(text, at + 4, 2, minute)) {
      return bad();
    }
    at += 6;
    if (at < text.size() && text[at] == ':') {
      if (!parseDigits(text, at + 1, 2, second)) return bad();
      at += 3;
      if (at < text.size() && text[at] == '.') {
        ++at;
        int64_t scale = 100000;
        size_t digits = 0;
        while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
          fraction_us += (text[at] - '0') * scale;
          scale /= 10;
          ++at;
          ++digits;
        }
        if (digits == 0) return bad();
      }
    }
  }
  int offset_minutes = 0;
  if (at < text.size()) {
    if (text[at] == 'Z' || text[at] == 'z') {
      ++at;
    } else if (text[at] == '+' || text[at] == '-') {
      int sign = text[at] == '-' ? -1 : 1;
      int offset_hours = 0, offset_mins = 0;
      if (!parseDigits(text, at + 1, 2, offset_hours)) return bad();
      at += 3;
      if (at < text.size() && text[at] == ':') ++at;
      if (at < text.size()) {
        if (!parseDigits(text, at, 2, offset_mins)) return bad();
        at += 2;
      }
      offset_minutes = sign * (offset_hours * 60 + offset_mins);
    }
  }
  if (at != text.size() || hour > 23 || minute > 59 || second > 60) return bad();

  using namespace std::chrono;
  year_month_day date{std::chrono::year(year), std::chrono::month(static_cast<unsigned>(month)),
                      std::chrono::day(static_cast<unsigned>(day))};
  if (!date.ok()) return bad();
  sys_seconds utc =
      sys_days(date) + hours(hour) + minutes(minute) + seconds(second) - minutes(offset_minutes);
  return duration_cast<microseconds>(utc.time_since_epoch()).count() + fraction_us;
}

namespace {

// Filter names as the API takes them (aliases take the name the CLI's --filter keys use).
const std::map<std::string_view, std::string_view> kFilterNames = {
    {"fn", "fn"},     {"function", "fn"}, {"status", "status"}, {"errors_only", "errors_only"},
    {"path", "path"}, {"kind", "kind"},   {"type", "kind"},     {"method", "method"}};

std::map<std::string_view, std::string_view> withFilterNames(
    std::initializer_list<std::pair<const std::string_view, std::string_view>> others) {
  std::map<std::string_view, std::string_view> names = kFilterNames;
  names.insert(others);
  return names;
}

Result<void> parseFilter(const Parameters& given, RecordFilter& filter) {
  if (auto it = given.find("fn"); it != given.end() && !it->second.empty()) {
    filter.function = it->second;
  }
  if (auto it = given.find("status"); it != given.end() && !it->second.empty()) {
    const std::string& text = it->second;
    bool is_class = text.size() == 3 && text[0] >= '1' && text[0] <= '5' &&
                    (text[1] == 'x' || text[1] == 'X') && (text[2] == 'x' || text[2] == 'X');
    int value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (is_class) {
      filter.status_low = (text[0] - '0') * 100;
      filter.status_high = *filter.status_low + 99;
    } else if (ec == std::errc() && ptr == text.data() + text.size() && value >= 0 &&
               value <= 999) {
      filter.status_low = value;
      filter.status_high = value;
    } else {
      return badParameter("status must be a status code (500) or a class (5xx), not '" +
                          text.substr(0, 40) + "'");
    }
  }
  if (auto it = given.find("errors_only"); it != given.end()) {
    if (isTrueFlag(it->second)) {
      filter.errors_only = true;
    } else if (!isFalseFlag(it->second)) {
      return badParameter("errors_only must be 1 or 0, not '" + it->second.substr(0, 40) + "'");
    }
  }
  if (auto it = given.find("path"); it != given.end() && !it->second.empty()) {
    std::string path = it->second;
    if (path.back() == '*') {
      path.pop_back();
      filter.path_is_prefix = true;
    }
    filter.path = std::move(path);
  }
  if (auto it = given.find("kind"); it != given.end() && !it->second.empty()) {
    if (!record::isExecutionKind(it->second)) {
      return badParameter("kind must be one of http, job, cron, replay, not '" +
                          it->second.substr(0, 40) + "'");
    }
    filter.kind = it->second;
  }
  if (auto it = given.find("method"); it != given.end() && !it->second.empty()) {
    std::string method;
    for (char c : it->second) {
      if (!std::isalpha(static_cast<unsigned char>(c))) {
        return badParameter("method must be letters (GET, POST, ...), not '" +
                            it->second.substr(0, 40) + "'");
      }
      method.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    }
    filter.method = std::move(method);
  }
  return {};
}

Result<std::optional<int64_t>> parseSince(const Parameters& given) {
  auto it = given.find("since");
  if (it == given.end()) return std::optional<int64_t>();
  auto since = parseTimestamp(it->second);
  if (!since) return std::unexpected(since.error());
  return std::optional<int64_t>(*since);
}

}  // namespace

Result<RecordListRequest> parseRecordListRequest(std::string_view query) {
  auto given = knownParameters(
      query, withFilterNames({{"since", "since"}, {"after", "after"}, {"limit", "limit"}}),
      kMaxFilterBytes);
  if (!given) return std::unexpected(given.error());

  RecordListRequest request;
  auto since = parseSince(*given);
  if (!since) return std::unexpected(since.error());
  request.since_us = *since;
  if (auto it = given->find("after"); it != given->end()) {
    if (!record::isCanonicalUuid(it->second)) {
      return badParameter("after must be a full request id (8-4-4-4-12 hex digits), not '" +
                          it->second.substr(0, 40) + "'");
    }
    std::string id;
    for (char c : it->second) id.push_back(lower(c));
    request.after = std::move(id);
  }
  if (auto it = given->find("limit"); it != given->end()) {
    int value = 0;
    const std::string& text = it->second;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || ptr != text.data() + text.size() || value < 1 ||
        value > kMaxRecordLimit) {
      return badParameter("limit must be a whole number from 1 to 1000, not '" + text + "'");
    }
    request.limit = value;
  }
  if (auto ok = parseFilter(*given, request); !ok) return std::unexpected(ok.error());
  return request;
}

Result<RecordStreamRequest> parseRecordStreamRequest(std::string_view query) {
  auto given = knownParameters(query, withFilterNames({{"since", "since"}}), kMaxFilterBytes);
  if (!given) return std::unexpected(given.error());
  RecordStreamRequest request;
  auto since = parseSince(*given);
  if (!since) return std::unexpected(since.error());
  request.since_us = *since;
  if (auto ok = parseFilter(*given, request); !ok) return std::unexpected(ok.error());
  return request;
}

bool recordMatches(const RecordFilter& filter, const json& summary) {
  auto text = [&summary](const char* key) -> std::string_view {
    auto it = summary.find(key);
    return it != summary.end() && it->is_string()
               ? std::string_view(it->get_ref<const std::string&>())
               : std::string_view();
  };
  auto status_it = summary.find("status");
  int64_t status =
      status_it != summary.end() && status_it->is_number_integer() ? status_it->get<int64_t>() : 0;
  auto error_it = summary.find("error");
  bool has_error = error_it != summary.end() && !error_it->is_null();
  if (filter.function && text("function") != *filter.function) return false;
  if (filter.status_low && filter.status_high &&
      (status < *filter.status_low || status > *filter.status_high)) {
    return false;
  }
  if (filter.errors_only && status < 400 && !has_error) return false;
  if (filter.path) {
    std::string_view path = text("path");
    if (filter.path_is_prefix ? !path.starts_with(*filter.path) : path != *filter.path) {
      return false;
    }
  }
  if (filter.kind && text("kind") != *filter.kind) return false;
  if (filter.method && text("method") != *filter.method) return false;
  return true;
}

namespace {

// Adds a parameter and returns its placeholder ("$3").
struct ParamList {
  data::QueryParams params;
  std::string operator()(std::string value) {
    params.push_back(std::move(value));
    return "$" + std::to_string(params.size());
  }
};

// The records that started at or after unix_us. Ids are UUIDv7 made from the clock reading of
// the start, so the range of ids from that millisecond's lowest on is the index range to read;
// the start itself then decides within the millisecond.
std::string startedAtLeast(ParamList& param, int64_t unix_us) {
  std::string start = param(std::to_string(unix_us));
  auto ms = static_cast<uint64_t>(std::max<int64_t>(unix_us, 0) / 1000);
  std::string lowest = param(RequestId::lowestOf(ms).toString());
  return "e.started_at >= 'epoch'::timestamptz + " + start +
         "::bigint * interval '1 microsecond' AND e.id >= " + lowest + "::uuid";
}

// The WHERE conditions of a filter (recordMatches is the same test in memory).
void addFilterConditions(const RecordFilter& filter, ParamList& param,
                         std::vector<std::string>& where) {
  if (filter.function) where.push_back("e.function = " + param(*filter.function));
  if (filter.status_low && filter.status_high) {
    // Numbered in order: the operands of one `+` chain are evaluated in no fixed order.
    std::string low = param(std::to_string(*filter.status_low));
    std::string high = param(std::to_string(*filter.status_high));
    where.push_back("e.status BETWEEN " + low + "::int AND " + high + "::int");
  }
  if (filter.errors_only) where.push_back("(e.status >= 400 OR e.error IS NOT NULL)");
  if (filter.path) {
    if (filter.path_is_prefix) {
      where.push_back("starts_with(e.path, " + param(*filter.path) + "::text)");
    } else {
      where.push_back("e.path = " + param(*filter.path));
    }
  }
  if (filter.kind) where.push_back("e.kind = " + param(*filter.kind));
  if (filter.method) where.push_back("e.method = " + param(*filter.method));
}

std::string innerSelect(const std::vector<std::string>& where) {
  std::string inner = "SELECT " + std::string(kInnerColumns) + "\n  FROM flux.executions e\n";
  for (size_t i = 0; i < where.size(); ++i) {
    inner += (i == 0 ? "  WHERE " : "    AND ") + where[i] + "\n";
  }
  return inner;
}

}  // namespace

SqlQuery recordListQuery(const RecordListRequest& request) {
  ParamList param;
  std::vector<std::string> where;
  if (request.since_us) where.push_back(startedAtLeast(param, *request.since_us));
  if (request.after) where.push_back("e.id > " + param(*request.after) + "::uuid");
  addFilterConditions(request, param, where);

  bool forward = request.since_us || request.after;
  std::string inner = innerSelect(where);
  // Forward pages read one row more than they answer: it only tells whether another follows.
  std::string limit = param(std::to_string(forward ? request.limit + 1 : request.limit));
  inner += forward ? "  ORDER BY e.id\n  LIMIT " : "  ORDER BY e.id DESC\n  LIMIT ";
  inner += limit + "::int";
  return SqlQuery{summarySelect(inner, "", "e.id"), std::move(param.params)};
}

SqlQuery recordBackfillQuery(const RecordFilter& filter, int64_t since_us,
                             const std::optional<std::string>& after_id, int limit) {
  ParamList param;
  std::vector<std::string> where;
  where.push_back(startedAtLeast(param, since_us));
  if (after_id) where.push_back("e.id > " + param(*after_id) + "::uuid");
  addFilterConditions(filter, param, where);
  std::string inner = innerSelect(where);
  inner += "  ORDER BY e.id\n  LIMIT " + param(std::to_string(limit + 1)) + "::int";
  return SqlQuery{summarySelect(inner, "", "e.id"), std::move(param.params)};
}

const char* const kNewestRecordSql =
    "SELECT (SELECT (extract(epoch FROM started_at) * 1000000)::bigint\n"
    "        FROM flux.executions ORDER BY id DESC LIMIT 1) AS newest_us";

Result<std::vector<json>> parseRecordSummaries(const data::QueryResult& result) {
  auto at =
      columnIndexes(result, {"id", "kind", "function", "method", "path", "status", "error",
                             "started_at_us", "started_at", "duration_us", "mutation_count",
                             "first_schema", "first_table", "first_pk", "first_op",
                             "first_rows_affected", "first_rolled_back", "first_key_columns"});
  if (!at) return std::unexpected(at.error());
  std::vector<json> summaries;
  summaries.reserve(result.rows.size());
  for (const auto& row : result.rows) {
    auto summary = summaryAt(row, *at);
    if (!summary) return std::unexpected(summary.error());
    summaries.push_back(std::move(*summary));
  }
  return summaries;
}

json recordListJson(std::vector<json> summaries, const RecordListRequest& request,
                    std::optional<int64_t> newest_started_at_us) {
  bool forward = request.since_us || request.after;
  bool more = forward && summaries.size() > static_cast<size_t>(request.limit);
  if (more) summaries.resize(static_cast<size_t>(request.limit));
  json records = json::array();
  for (json& summary : summaries) records.push_back(std::move(summary));
  return json{
      {"records", std::move(records)},
      {"more", more},
      {"newest_started_at_us", newest_started_at_us ? json(*newest_started_at_us) : json(nullptr)}};
}

Result<std::optional<int64_t>> parseNewestRecord(const data::QueryResult& result) {
  auto at = columnIndexes(result, {"newest_us"});
  if (!at) return std::unexpected(at.error());
  if (result.rows.empty() || !result.rows[0][(*at)[0]]) return std::optional<int64_t>();
  auto newest = parseInt(result.rows[0][(*at)[0]], "newest started_at");
  if (!newest) return std::unexpected(newest.error());
  return std::optional<int64_t>(*newest);
}

// ---- The live stream --------------------------------------------------------------------------

SqlQuery recordsByIdQuery(const std::vector<std::string>& ids) {
  // One array parameter: '{id,id,...}' (ids are checked UUIDs, nothing to quote).
  std::string array = "{";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) array += ',';
    array += ids[i];
  }
  array += "}";
  std::string inner = "SELECT " + std::string(kInnerColumns) +
                      "\n  FROM flux.executions e\n  WHERE e.id = ANY($1::uuid[])";
  return SqlQuery{summarySelect(inner, "", "e.id"), {std::move(array)}};
}

SqlQuery recordsInRangeQuery(const std::string& min_id, const std::string& max_id) {
  std::string inner = "SELECT " + std::string(kInnerColumns) +
                      "\n  FROM flux.executions e\n  WHERE e.id BETWEEN $1::uuid AND $2::uuid";
  return SqlQuery{summarySelect(inner, "", "e.id"), {min_id, max_id}};
}

#undef FLUX_KEY_COLUMNS
#undef FLUX_ISO_UTC

}  // namespace flux::admin

#include "admin/state_queries.h"

#include <algorithm>
#include <charconv>
#include <map>

namespace flux::admin {

namespace {

using nlohmann::json;

// PostgreSQL truncates longer identifiers (NAMEDATALEN - 1).
constexpr size_t kMaxIdentifierBytes = 63;
// A primary key value longer than this is not one anybody types.
constexpr size_t kMaxPkBytes = 4096;
// Any parameter: longer ones are refused before they are looked at.
constexpr size_t kMaxParameterBytes = 64 * 1024;

// Index of each named column in a result, or an error naming the first one missing.
Result<std::vector<size_t>> columnIndexes(const data::QueryResult& result,
                                          std::initializer_list<std::string_view> names) {
  std::vector<size_t> indexes;
  for (std::string_view name : names) {
    size_t i = 0;
    while (i < result.columns.size() && result.columns[i].name != name) ++i;
    if (i == result.columns.size()) {
      return fail(ErrorCode::kInternal,
                  "the mutation log query returned no column '" + std::string(name) + "'");
    }
    indexes.push_back(i);
  }
  return indexes;
}

Result<int64_t> parseInt(const std::optional<std::string>& text, std::string_view what) {
  int64_t value = 0;
  if (!text) return value;
  auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || ptr != text->data() + text->size()) {
    return fail(ErrorCode::kInternal,
                "the mutation log has a bad " + std::string(what) + ": '" + *text + "'");
  }
  return value;
}

// json text (jsonb or json) -> value; SQL NULL -> null.
Result<json> parseJsonCell(const std::optional<std::string>& text, std::string_view what) {
  if (!text) return json(nullptr);
  json value = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return fail(ErrorCode::kInternal,
                "the mutation log has a bad " + std::string(what) + " value (not JSON)");
  }
  return value;
}

Result<std::vector<std::string>> parseNameArray(const std::optional<std::string>& text,
                                                std::string_view what) {
  auto value = parseJsonCell(text, what);
  if (!value) return std::unexpected(value.error());
  std::vector<std::string> names;
  if (value->is_null()) return names;
  if (!value->is_array()) {
    return fail(ErrorCode::kInternal, "the mutation log has a bad " + std::string(what));
  }
  for (const json& name : *value) {
    if (!name.is_string()) {
      return fail(ErrorCode::kInternal, "the mutation log has a bad " + std::string(what));
    }
    names.push_back(name.get<std::string>());
  }
  return names;
}

json optionalString(const std::optional<std::string>& s) { return s ? json(*s) : json(nullptr); }

Attribution attributionOf(const MutationRow& m) {
  return Attribution{m.id, m.request_id, m.actor, m.at, m.rolled_back};
}

// The columns a mutation wrote. An UPDATE's changed_columns when the log has them, else the
// columns whose value differs between old and new.
std::vector<std::string> columnsWritten(const MutationRow& m) {
  std::vector<std::string> written;
  if (m.op == "INSERT") {
    if (m.new_row.is_object()) {
      for (const auto& [key, value] : m.new_row.items()) written.push_back(key);
    }
  } else if (m.op == "UPDATE") {
    if (!m.changed_columns.empty()) return m.changed_columns;
    if (m.new_row.is_object()) {
      for (const auto& [key, value] : m.new_row.items()) {
        if (!m.old_row.is_object() || !m.old_row.contains(key) || m.old_row[key] != value) {
          written.push_back(key);
        }
      }
    }
  }
  return written;
}

json attributionFields(json entry, const std::optional<Attribution>& writer) {
  if (writer) {
    entry["request_id"] = optionalString(writer->request_id);
    entry["actor"] = optionalString(writer->actor);
    entry["at"] = writer->at;
    entry["rolled_back"] = writer->rolled_back;
    entry["mutation_id"] = writer->mutation_id;
  } else {
    entry["request_id"] = nullptr;
    entry["actor"] = nullptr;
    entry["at"] = nullptr;
    entry["rolled_back"] = false;
    entry["mutation_id"] = nullptr;
  }
  return entry;
}

}  // namespace

// ---- Table names and requests ---------------------------------------------------------------

std::string TableName::display() const { return schema == "public" ? table : schema + "." + table; }

Result<TableName> parseTableName(std::string_view text) {
  if (text.empty()) {
    return fail(ErrorCode::kInvalidArgument,
                "pass the table: table=<name> or table=<schema>.<name>");
  }
  TableName name;
  size_t dot = text.find('.');
  if (dot == std::string_view::npos) {
    name.schema = "public";
    name.table = std::string(text);
  } else {
    name.schema = std::string(text.substr(0, dot));
    name.table = std::string(text.substr(dot + 1));
    if (name.schema.empty() || name.table.empty() || name.table.find('.') != std::string::npos) {
      return fail(ErrorCode::kInvalidArgument,
                  "bad table name '" + std::string(text) + "': pass <name> or <schema>.<name>");
    }
  }
  if (name.schema.size() > kMaxIdentifierBytes || name.table.size() > kMaxIdentifierBytes) {
    return fail(ErrorCode::kInvalidArgument,
                "bad table name '" + std::string(text) + "': names are at most 63 bytes");
  }
  return name;
}

Result<StateRequest> parseStateRequest(StateEndpoint endpoint, std::string_view query) {
  auto given = knownParameters(query, {{"table", "table"}, {"id", "id"}, {"limit", "limit"}},
                               kMaxParameterBytes);
  if (!given) return std::unexpected(given.error());

  constexpr std::string_view kUsage =
      "pass table=<table> and id=<primary key>, e.g. ?table=users&id=42 (a composite key's "
      "values joined with ',')";
  StateRequest request;
  request.endpoint = endpoint;
  auto table = given->find("table");
  if (table == given->end() || table->second.empty()) {
    return fail(ErrorCode::kInvalidArgument, "missing table: " + std::string(kUsage));
  }
  request.table_text = table->second;
  auto name = parseTableName(request.table_text);
  if (!name) return std::unexpected(name.error());
  request.table = std::move(*name);

  auto id = given->find("id");
  if (id == given->end() || id->second.empty()) {
    return fail(ErrorCode::kInvalidArgument, "missing id: " + std::string(kUsage));
  }
  if (id->second.size() > kMaxPkBytes) {
    return fail(ErrorCode::kInvalidArgument, "id is longer than 4096 bytes: pass a primary key");
  }
  request.pk = id->second;

  if (auto limit = given->find("limit"); limit != given->end()) {
    if (endpoint != StateEndpoint::kHistory) {
      return fail(ErrorCode::kInvalidArgument, "limit applies to history only: drop it");
    }
    int value = 0;
    const std::string& text = limit->second;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || ptr != text.data() + text.size() || value < 1 ||
        value > kMaxHistoryLimit) {
      return fail(ErrorCode::kInvalidArgument,
                  "limit must be a whole number from 1 to 10000, not '" + text + "'");
    }
    request.limit = value;
  }
  return request;
}

// ---- SQL --------------------------------------------------------------------------------------

const char* const kTableInfoSql = R"(SELECT
  r.oid IS NOT NULL AS known,
  (SELECT json_agg(a.attname::text ORDER BY a.attnum)
     FROM pg_attribute a
    WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped)::text AS columns,
  (SELECT json_agg(a.attname::text ORDER BY k.n)
     FROM pg_index i
     CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = r.oid AND i.indisprimary)::text AS key_columns,
  EXISTS (SELECT 1 FROM flux.state_mutations m
           WHERE m.row_key IN (flux.row_key($1, $2, $3), flux.row_key($1, $2, NULL))
             AND m.schema_name = $1 AND m.table_name = $2) AS has_history
FROM (SELECT to_regclass(quote_ident($1::text) || '.' || quote_ident($2::text))::oid AS oid) r)";

// The mutation columns both reads select, in the shape parseMutationPage expects. `at` is
// rendered in UTC here, whatever the session's TimeZone. `total` counts before the LIMIT.
#define FLUX_MUTATION_COLUMNS                                                            \
  "id, request_id::text AS request_id, actor, op, old::text AS old, new::text AS new,\n" \
  "  array_to_json(changed_columns)::text AS changed_columns,\n"                         \
  "  to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS at,\n"       \
  "  rolled_back, rows_affected, count(*) OVER () AS total\n"

// A 0-row change has no pk: it belongs to this row when its where object (in `old`) has every
// key column and their values, joined with ',' as the log joins a composite key, give the pk.
const char* const kHistorySql =
    "SELECT " FLUX_MUTATION_COLUMNS
    "FROM flux.state_mutations\n"
    "WHERE row_key IN (flux.row_key($1, $2, $3), flux.row_key($1, $2, NULL))\n"
    "  AND schema_name = $1 AND table_name = $2\n"
    "  AND (pk = $3\n"
    "       OR (pk IS NULL AND rows_affected = 0 AND $5::jsonb IS NOT NULL\n"
    "           AND json_typeof(old) = 'object'\n"
    "           AND old::jsonb ?& ARRAY(SELECT jsonb_array_elements_text($5::jsonb))\n"
    "           AND (SELECT string_agg(old ->> k.name, ',' ORDER BY k.n)\n"
    "                  FROM jsonb_array_elements_text($5::jsonb) WITH ORDINALITY AS k(name, n))\n"
    "               = $3))\n"
    "ORDER BY id DESC\n"
    "LIMIT $4";

// Blame needs the row's current incarnation only: from its last committed INSERT on.
const char* const kBlameSql =
    "SELECT " FLUX_MUTATION_COLUMNS
    "FROM flux.state_mutations\n"
    "WHERE row_key = flux.row_key($1, $2, $3)\n"
    "  AND schema_name = $1 AND table_name = $2 AND pk = $3\n"
    "  AND id >= COALESCE((SELECT max(id) FROM flux.state_mutations\n"
    "                       WHERE row_key = flux.row_key($1, $2, $3)\n"
    "                         AND schema_name = $1 AND table_name = $2 AND pk = $3\n"
    "                         AND op = 'INSERT' AND NOT rolled_back), 0)\n"
    "ORDER BY id DESC\n"
    "LIMIT $4";

#undef FLUX_MUTATION_COLUMNS

Result<TableInfo> parseTableInfo(const data::QueryResult& result) {
  auto at = columnIndexes(result, {"known", "columns", "key_columns", "has_history"});
  if (!at) return std::unexpected(at.error());
  if (result.rows.size() != 1) {
    return fail(ErrorCode::kInternal,
                "the table lookup returned " + std::to_string(result.rows.size()) + " rows, not 1");
  }
  const auto& row = result.rows[0];
  TableInfo info;
  info.known = row[(*at)[0]] == "t";
  auto columns = parseNameArray(row[(*at)[1]], "column list");
  if (!columns) return std::unexpected(columns.error());
  info.columns = std::move(*columns);
  auto key = parseNameArray(row[(*at)[2]], "primary key list");
  if (!key) return std::unexpected(key.error());
  info.key_columns = std::move(*key);
  info.has_history = row[(*at)[3]] == "t";
  return info;
}

// ---- Mutations --------------------------------------------------------------------------------

Result<MutationPage> parseMutationPage(const data::QueryResult& result) {
  auto at =
      columnIndexes(result, {"id", "request_id", "actor", "op", "old", "new", "changed_columns",
                             "at", "rolled_back", "rows_affected", "total"});
  if (!at) return std::unexpected(at.error());
  const std::vector<size_t>& c = *at;
  MutationPage page;
  page.rows.reserve(result.rows.size());
  // The query reads newest first (so that LIMIT keeps the latest); the page is oldest first.
  for (auto it = result.rows.rbegin(); it != result.rows.rend(); ++it) {
    const auto& row = *it;
    MutationRow m;
    auto id = parseInt(row[c[0]], "mutation id");
    if (!id) return std::unexpected(id.error());
    m.id = *id;
    m.request_id = row[c[1]];
    m.actor = row[c[2]];
    m.op = row[c[3]].value_or("");
    auto old_row = parseJsonCell(row[c[4]], "old");
    if (!old_row) return std::unexpected(old_row.error());
    m.old_row = std::move(*old_row);
    auto new_row = parseJsonCell(row[c[5]], "new");
    if (!new_row) return std::unexpected(new_row.error());
    m.new_row = std::move(*new_row);
    auto changed = parseNameArray(row[c[6]], "changed_columns");
    if (!changed) return std::unexpected(changed.error());
    m.changed_columns = std::move(*changed);
    m.at = row[c[7]].value_or("");
    m.rolled_back = row[c[8]] == "t";
    if (row[c[9]]) {
      auto affected = parseInt(row[c[9]], "rows_affected");
      if (!affected) return std::unexpected(affected.error());
      m.rows_affected = *affected;
    }
    auto total = parseInt(row[c[10]], "total");
    if (!total) return std::unexpected(total.error());
    page.total = *total;
    page.rows.push_back(std::move(m));
  }
  return page;
}

std::string describeRow(const TableName& table, const std::vector<std::string>& key_columns,
                        std::string_view pk) {
  std::string out = table.display() + " ";
  if (key_columns.empty()) {
    out += "id=";
  } else if (key_columns.size() == 1) {
    out += key_columns[0] + "=";
  } else {
    out += "(";
    for (size_t i = 0; i < key_columns.size(); ++i) {
      if (i > 0) out += ",";
      out += key_columns[i];
    }
    out += ")=(";
    out += pk;
    out += ")";
    return out;
  }
  out += pk;
  return out;
}

nlohmann::json historyJson(const TableName& table, std::string_view pk,
                           const std::vector<std::string>& key_columns, const MutationPage& page) {
  json mutations = json::array();
  for (const MutationRow& m : page.rows) {
    mutations.push_back({
        {"id", m.id},
        {"request_id", optionalString(m.request_id)},
        {"actor", optionalString(m.actor)},
        {"op", m.op},
        {"old", m.old_row},
        {"new", m.new_row},
        {"changed_columns", m.changed_columns},
        {"at", m.at},
        {"rolled_back", m.rolled_back},
        {"rows_affected", m.rows_affected},
    });
  }
  return json{
      {"table", table.table},
      {"schema", table.schema},
      {"pk", pk},
      {"key_columns", key_columns},
      {"mutations", std::move(mutations)},
      {"total", page.total},
      {"truncated", page.truncated()},
  };
}

// ---- Blame ------------------------------------------------------------------------------------

Blame blameRow(const std::vector<MutationRow>& rows, const std::vector<std::string>& column_order) {
  std::optional<json> current;  // the committed row, once some committed mutation made it
  bool ever_committed = false;
  std::optional<Attribution> deleted_by;
  std::map<std::string, Attribution, std::less<>> writers;

  for (const MutationRow& m : rows) {
    if (m.rows_affected == 0) continue;  // matched no row: wrote nothing
    if (!m.rolled_back) {
      if (m.op == "INSERT" || m.op == "UPDATE") {
        if (m.new_row.is_object()) {
          // A committed INSERT starts a new life of the row: earlier writers no longer own
          // any of its values.
          if (m.op == "INSERT") writers.clear();
          current = m.new_row;
          ever_committed = true;
          deleted_by.reset();
        }
      } else if (m.op == "DELETE") {
        current.reset();
        ever_committed = true;
        writers.clear();
        deleted_by = attributionOf(m);
        continue;
      }
    }
    for (std::string& column : columnsWritten(m))
      writers.insert_or_assign(column, attributionOf(m));
  }

  Blame blame;
  if (!ever_committed) return blame;  // kNeverExisted
  if (!current) {
    blame.state = RowState::kDeleted;
    blame.deleted_by = std::move(deleted_by);
    return blame;
  }
  blame.state = RowState::kExists;
  std::vector<std::string> order;
  for (const std::string& column : column_order) {
    if (current->contains(column)) order.push_back(column);
  }
  for (const auto& [column, value] : current->items()) {
    if (std::find(order.begin(), order.end(), column) == order.end()) order.push_back(column);
  }
  for (std::string& column : order) {
    BlameEntry entry;
    entry.value = (*current)[column];
    if (auto w = writers.find(column); w != writers.end()) entry.writer = w->second;
    entry.column = std::move(column);
    blame.columns.push_back(std::move(entry));
  }
  return blame;
}

nlohmann::json blameJson(const TableName& table, std::string_view pk,
                         const std::vector<std::string>& key_columns, const Blame& blame,
                         bool truncated) {
  json columns = json::array();
  for (const BlameEntry& entry : blame.columns) {
    columns.push_back(
        attributionFields(json{{"column", entry.column}, {"value", entry.value}}, entry.writer));
  }
  json out{
      {"table", table.table},
      {"schema", table.schema},
      {"pk", pk},
      {"key_columns", key_columns},
      {"deleted", blame.state == RowState::kDeleted},
      {"columns", std::move(columns)},
      {"truncated", truncated},
  };
  if (blame.state == RowState::kDeleted) {
    out["deleted_by"] =
        blame.deleted_by ? attributionFields(json::object(), blame.deleted_by) : json(nullptr);
  }
  return out;
}

}  // namespace flux::admin

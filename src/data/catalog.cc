#include "data/catalog.h"

#include <algorithm>
#include <cstdlib>

namespace flux::data {

const char* const Catalog::kQuery = R"(
select n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
       coalesce(array_position(i.indkey::int2[], a.attnum), 0)
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
left join pg_index i on i.indrelid = c.oid and i.indisprimary
where c.relkind in ('r', 'p', 'v', 'm', 'f')
  and n.nspname not in ('pg_catalog', 'information_schema', 'flux', 'pg_toast')
order by n.nspname, c.relname, a.attnum)";

const ColumnInfo* TableInfo::column(std::string_view column_name) const {
  for (const ColumnInfo& c : columns) {
    if (c.name == column_name) return &c;
  }
  return nullptr;
}

std::string TableInfo::qualifiedName() const {
  return quoteIdentifier(schema) + "." + quoteIdentifier(name);
}

Result<Catalog> Catalog::fromResult(const QueryResult& result) {
  if (result.columns.size() != 5) {
    return fail(ErrorCode::kInternal, "catalog query returned an unexpected shape");
  }
  Catalog catalog;
  std::map<std::string, std::vector<std::pair<int, std::string>>> keys;
  for (const auto& row : result.rows) {
    if (!row[0] || !row[1] || !row[2] || !row[3]) continue;
    std::string key = *row[0] + "." + *row[1];
    TableInfo& table = catalog.tables_[key];
    table.schema = *row[0];
    table.name = *row[1];
    table.columns.push_back({*row[2], *row[3]});
    int key_position = row[4] ? std::atoi(row[4]->c_str()) : 0;
    if (key_position > 0) keys[key].emplace_back(key_position, *row[2]);
  }
  for (auto& [key, columns] : keys) {
    std::sort(columns.begin(), columns.end());
    for (auto& [position, name] : columns) catalog.tables_[key].primary_key.push_back(name);
  }
  return catalog;
}

const TableInfo* Catalog::find(std::string_view table) const {
  std::string key(table);
  if (key.find('.') == std::string::npos) key = "public." + key;
  auto it = tables_.find(key);
  return it == tables_.end() ? nullptr : &it->second;
}

std::string quoteIdentifier(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

}  // namespace flux::data

#include "data/query_builder.h"

#include <set>

namespace flux::data {

namespace {

Result<const TableInfo*> findTable(const Catalog& catalog, std::string_view table) {
  const TableInfo* info = catalog.find(table);
  if (info == nullptr) {
    return fail(ErrorCode::kInvalidArgument,
                "unknown table '" + std::string(table) +
                    "': create it in a migration (migrations/*.sql) first");
  }
  return info;
}

Result<const ColumnInfo*> findColumn(const TableInfo& table, std::string_view column) {
  const ColumnInfo* info = table.column(column);
  if (info == nullptr) {
    return fail(ErrorCode::kInvalidArgument,
                "unknown column '" + std::string(column) + "' in table '" + table.name + "'");
  }
  return info;
}

std::string placeholder(QueryParams& params, SqlValue value) {
  params.push_back(std::move(value));
  return "$" + std::to_string(params.size());
}

Result<std::string> whereClause(const TableInfo& table, const std::vector<WhereCondition>& where,
                                QueryParams& params, std::string_view what) {
  if (where.empty()) {
    return fail(ErrorCode::kInvalidArgument,
                std::string(what) + " needs a `where` naming at least one column (refusing to " +
                    "touch every row of '" + table.name + "')");
  }
  std::string sql = " where ";
  bool first = true;
  for (const WhereCondition& condition : where) {
    auto column = findColumn(table, condition.column);
    if (!column) return std::unexpected(column.error());
    if (!first) sql += " and ";
    first = false;
    sql += quoteIdentifier(condition.column);
    if (const auto* list = std::get_if<std::vector<SqlValue>>(&condition.value)) {
      // The type comes from the catalogue (format_type), never from the caller.
      sql += " = any(" + placeholder(params, arrayLiteral(*list)) + "::" + (*column)->type + "[])";
    } else {
      const SqlValue& value = std::get<SqlValue>(condition.value);
      if (value) {
        sql += " = " + placeholder(params, value);
      } else {
        sql += " is null";
      }
    }
  }
  return sql;
}

}  // namespace

std::string arrayLiteral(const std::vector<SqlValue>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out.push_back(',');
    if (!values[i]) {
      out += "NULL";
      continue;
    }
    out.push_back('"');
    for (char c : *values[i]) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

Result<BuiltQuery> buildInsert(const Catalog& catalog, std::string_view table,
                               const std::vector<InsertRow>& rows) {
  auto info = findTable(catalog, table);
  if (!info) return std::unexpected(info.error());
  if (rows.empty()) return fail(ErrorCode::kInvalidArgument, "insert needs at least one row");
  // The statement's columns: every column any row sets, in table order.
  std::set<std::string> named;
  for (const InsertRow& row : rows) {
    for (const auto& [column, value] : row.values) {
      auto c = findColumn(**info, column);
      if (!c) return std::unexpected(c.error());
      named.insert(column);
    }
  }
  BuiltQuery q;
  q.table = *info;
  q.sql = "insert into " + (*info)->qualifiedName();
  std::vector<std::string> columns;
  for (const ColumnInfo& c : (*info)->columns) {
    if (named.contains(c.name)) columns.push_back(c.name);
  }
  if (columns.empty()) {
    if (rows.size() != 1) {
      return fail(ErrorCode::kInvalidArgument, "insert of several empty rows is not supported");
    }
    q.sql += " default values returning *";
    return q;
  }
  q.sql += " (";
  for (size_t i = 0; i < columns.size(); ++i) q.sql += (i ? "," : "") + quoteIdentifier(columns[i]);
  q.sql += ") values ";
  for (size_t r = 0; r < rows.size(); ++r) {
    q.sql += r ? ",(" : "(";
    for (size_t i = 0; i < columns.size(); ++i) {
      if (i) q.sql.push_back(',');
      const SqlValue* value = nullptr;
      for (const auto& [column, v] : rows[r].values) {
        if (column == columns[i]) value = &v;
      }
      q.sql += value ? placeholder(q.params, *value) : "default";
    }
    q.sql.push_back(')');
  }
  q.sql += " returning *";
  return q;
}

Result<BuiltQuery> buildUpdate(const Catalog& catalog, std::string_view table,
                               const std::vector<WhereCondition>& where,
                               const std::vector<std::pair<std::string, SqlValue>>& set) {
  auto info = findTable(catalog, table);
  if (!info) return std::unexpected(info.error());
  if (set.empty()) {
    return fail(ErrorCode::kInvalidArgument, "update needs at least one column to set");
  }
  BuiltQuery q;
  q.table = *info;
  q.sql = "update " + (*info)->qualifiedName() + " set ";
  for (size_t i = 0; i < set.size(); ++i) {
    auto c = findColumn(**info, set[i].first);
    if (!c) return std::unexpected(c.error());
    q.sql += (i ? "," : "") + quoteIdentifier(set[i].first) + " = " +
             placeholder(q.params, set[i].second);
  }
  auto clause = whereClause(**info, where, q.params, "update");
  if (!clause) return std::unexpected(clause.error());
  q.sql += *clause + " returning *";
  return q;
}

Result<BuiltQuery> buildDelete(const Catalog& catalog, std::string_view table,
                               const std::vector<WhereCondition>& where) {
  auto info = findTable(catalog, table);
  if (!info) return std::unexpected(info.error());
  BuiltQuery q;
  q.table = *info;
  q.sql = "delete from " + (*info)->qualifiedName();
  auto clause = whereClause(**info, where, q.params, "delete");
  if (!clause) return std::unexpected(clause.error());
  q.sql += *clause + " returning *";
  return q;
}

}  // namespace flux::data

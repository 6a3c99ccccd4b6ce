// QueryBuilder: the SQL behind ctx.db.insert / update / delete. Every table and column name is
// checked against the Catalog and quoted; every value is a bound parameter. An unknown name is
// an error that names it (kInvalidArgument: the handler's mistake, a 4xx).
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/error.h"
#include "data/catalog.h"
#include "data/pg_connection.h"

namespace flux::data {

// A value in text form as PostgreSQL parses it; nullopt is NULL.
using SqlValue = std::optional<std::string>;

struct InsertRow {
  // Columns the row sets; a column of the statement that a row omits gets DEFAULT.
  std::vector<std::pair<std::string, SqlValue>> values;
};

// One `where` entry: column = value, column IS NULL (nullopt), or column IN (list).
struct WhereCondition {
  std::string column;
  std::variant<SqlValue, std::vector<SqlValue>> value;
};

struct BuiltQuery {
  std::string sql;
  QueryParams params;
  const TableInfo* table = nullptr;
};

Result<BuiltQuery> buildInsert(const Catalog& catalog, std::string_view table,
                               const std::vector<InsertRow>& rows);
// Refuses an empty `where` (that would touch every row).
Result<BuiltQuery> buildUpdate(const Catalog& catalog, std::string_view table,
                               const std::vector<WhereCondition>& where,
                               const std::vector<std::pair<std::string, SqlValue>>& set);
Result<BuiltQuery> buildDelete(const Catalog& catalog, std::string_view table,
                               const std::vector<WhereCondition>& where);

// A PostgreSQL array literal ({"a","b",NULL}) for `= ANY($n)`.
std::string arrayLiteral(const std::vector<SqlValue>& values);

}  // namespace flux::data

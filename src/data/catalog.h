// Catalog: the user tables' columns, types and primary keys, as ctx.db.insert/update/delete
// need them to check and quote names. Loaded from pg_catalog with one query, kept per worker,
// reloaded when a name is not found (a table created since).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "data/pg_connection.h"

namespace flux::data {

struct ColumnInfo {
  std::string name;
  std::string type;  // format_type(): "integer", "text", "timestamp with time zone", ...
};

struct TableInfo {
  std::string schema;
  std::string name;
  std::vector<ColumnInfo> columns;       // in attnum order
  std::vector<std::string> primary_key;  // column names in key order

  const ColumnInfo* column(std::string_view name) const;
  std::string qualifiedName() const;  // "public"."users", quoted
};

class Catalog {
 public:
  // The query that load() parses; exposed for tests and the pool's first connection.
  static const char* const kQuery;
  static Result<Catalog> fromResult(const QueryResult& result);

  // "users" looks in public; "billing.invoices" in that schema. nullptr if unknown.
  const TableInfo* find(std::string_view table) const;
  size_t size() const { return tables_.size(); }

 private:
  std::map<std::string, TableInfo, std::less<>> tables_;  // "schema.table"
};

// "name" with embedded quotes doubled: always quoted, so no name is ever SQL.
std::string quoteIdentifier(std::string_view name);

}  // namespace flux::data

// State queries: the database-free half of GET /_flux/state/history and /_flux/state/blame.
//
// The admin API reads flux.state_mutations with the SQL below, parses the rows into
// MutationRow, and shapes them here into the JSON it answers. Everything in this file is a pure
// function of its arguments, so the history and blame logic is tested without a database.
//
// Blame replays the committed mutations of a row in log order (INSERT and UPDATE set the row to
// their `new`, DELETE removes it) to find the current row, and attributes each of its columns to
// the last mutation that wrote that column, committed or rolled back: a rolled-back write is
// exactly what a person asking "who touched this field?" needs to see.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "admin/query_string.h"
#include "base/error.h"
#include "data/pg_connection.h"

namespace flux::admin {

// A table as the admin API takes it: "users" is public.users, "billing.invoices" is that
// schema's. Names are taken literally (no case folding, no quoting).
struct TableName {
  std::string schema;
  std::string table;

  // "users" for public tables, "billing.invoices" otherwise.
  std::string display() const;
};

// kInvalidArgument with a message saying what to pass.
Result<TableName> parseTableName(std::string_view text);

// ---- Requests ------------------------------------------------------------------------------

enum class StateEndpoint { kHistory, kBlame };

struct StateRequest {
  StateEndpoint endpoint = StateEndpoint::kHistory;
  std::string table_text;  // as given, for messages
  TableName table;
  std::string pk;   // primary key value as text; a composite key's parts joined with ','
  int limit = 100;  // history only
};

inline constexpr int kDefaultHistoryLimit = 100;
inline constexpr int kMaxHistoryLimit = 10000;

// Validates the query of a history or blame request: table, id, and for history an optional
// limit (1..10000, default 100). kInvalidArgument with a message saying what to pass.
Result<StateRequest> parseStateRequest(StateEndpoint endpoint, std::string_view query);

// ---- SQL ------------------------------------------------------------------------------------

// Every statement takes its inputs as parameters; none is ever spliced into the SQL.
//
// kTableInfoSql($1 schema, $2 table, $3 pk) -> one row: known (bool: to_regclass found the
// relation), columns (json array of the table's column names in attnum order, or NULL),
// key_columns (json array of the primary key's columns in key order, or NULL), has_history
// (bool: the log has a mutation of that row, or a 0-row change of that table).
// Every read finds a row's mutations through the row index on flux.row_key(schema, table, pk)
// (the key of 0-row changes is the table's with a NULL pk) and matches the columns too.
extern const char* const kTableInfoSql;
// kHistorySql($1 schema, $2 table, $3 pk, $4 limit, $5 key columns as a json array or NULL)
// -> the latest $4 mutations of the row, newest first, each with `total` (the count before the
// limit). A 0-row UPDATE/DELETE (pk NULL) belongs to the row when its where object names
// exactly this key.
extern const char* const kHistorySql;
// kBlameSql($1 schema, $2 table, $3 pk, $4 limit) -> the latest $4 mutations of the row since
// its last committed INSERT (all of them when there is none), newest first, with `total`.
extern const char* const kBlameSql;

struct TableInfo {
  bool known = false;                    // the relation exists now
  bool has_history = false;              // of the row asked about (kTableInfoSql)
  std::vector<std::string> columns;      // attnum order; empty when unknown
  std::vector<std::string> key_columns;  // primary key order; empty when unknown
};

Result<TableInfo> parseTableInfo(const data::QueryResult& result);

// ---- Mutations ------------------------------------------------------------------------------

// One row of flux.state_mutations.
struct MutationRow {
  int64_t id = 0;
  std::optional<std::string> request_id;  // nullopt: a write made outside Flux
  std::optional<std::string> actor;       // who made an outside write, e.g. "flux (psql)"
  std::string op;                         // "INSERT", "UPDATE" or "DELETE"
  nlohmann::json old_row;  // the full row before (null for INSERT); a 0-row change's where
  nlohmann::json new_row;  // the full row after (null for DELETE); a 0-row UPDATE's set
  std::vector<std::string> changed_columns;
  std::string at;  // ISO 8601 in UTC: "2026-03-10T14:22:01.123456Z"
  bool rolled_back = false;
  int64_t rows_affected = 1;  // 0: an UPDATE/DELETE that matched no row
};

// A page of mutations read with kHistorySql or kBlameSql.
struct MutationPage {
  std::vector<MutationRow> rows;  // oldest first
  int64_t total = 0;              // how many matched before the limit
  bool truncated() const { return total > static_cast<int64_t>(rows.size()); }
};

// Parses the result of kHistorySql or kBlameSql (columns found by name; rows newest first) into
// a page, oldest first. kInternal when a column is missing or a value does not parse.
Result<MutationPage> parseMutationPage(const data::QueryResult& result);

// "users id=42", "order_items (order_id,line)=(7,2)"; "id=42" when the key is not known.
std::string describeRow(const TableName& table, const std::vector<std::string>& key_columns,
                        std::string_view pk);

// The 200 body of GET /_flux/state/history: {"table","schema","pk","key_columns","mutations":
// [{id, request_id, actor, op, old, new, changed_columns, at, rolled_back, rows_affected}],
// "total","truncated"}, mutations oldest first.
nlohmann::json historyJson(const TableName& table, std::string_view pk,
                           const std::vector<std::string>& key_columns, const MutationPage& page);

// ---- Blame ----------------------------------------------------------------------------------

// The mutation that last wrote a column (or deleted the row).
struct Attribution {
  int64_t mutation_id = 0;
  std::optional<std::string> request_id;
  std::optional<std::string> actor;
  std::string at;
  bool rolled_back = false;
};

struct BlameEntry {
  std::string column;
  nlohmann::json value;  // the current (committed) value
  // nullopt when no recorded mutation wrote the column (the row predates the log).
  std::optional<Attribution> writer;
};

enum class RowState {
  kNeverExisted,  // no committed mutation made the row: no history, or only rolled-back ones
  kExists,
  kDeleted,  // the last committed mutation deleted it
};

struct Blame {
  RowState state = RowState::kNeverExisted;
  std::vector<BlameEntry> columns;        // kExists only
  std::optional<Attribution> deleted_by;  // kDeleted only
};

// `rows`: the row's mutations oldest first (0-row changes are ignored: they wrote nothing).
// `column_order`: the table's columns in table order, when known; the row's columns come in
// that order, any others (e.g. since dropped) after them in the order of the row's JSON.
Blame blameRow(const std::vector<MutationRow>& rows, const std::vector<std::string>& column_order);

// The 200 body of GET /_flux/state/blame: {"table","schema","pk","key_columns","deleted",
// "columns":[{column,value,request_id,actor,at,rolled_back}], "deleted_by" (when deleted),
// "truncated"}. `blame.state` must not be kNeverExisted.
nlohmann::json blameJson(const TableName& table, std::string_view pk,
                         const std::vector<std::string>& key_columns, const Blame& blame,
                         bool truncated);

}  // namespace flux::admin

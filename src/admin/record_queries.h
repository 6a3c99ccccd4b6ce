// Record queries: the database-free half of GET /_flux/records/<id> and GET /_flux/records.
//
// The admin API reads flux.executions (and the record's rows of flux.state_mutations) with the
// SQL built here, and shapes the rows into the JSON it answers. Everything in this file is a
// pure function of its arguments, so id resolution, filters and row parsing are tested without
// a database.
//
// A request id reaches the API as a person typed it: the full UUID, any prefix of it (with or
// without dashes), `req:` + its handle (the last 8 hex digits: the first 8 are a clock and
// repeat), or the bare handle. parseRecordRef() turns that text into bounds the SQL matches;
// the query answers at most kMaxCandidates rows plus a count, so the API tells "unknown" (404)
// from "ambiguous" (409, with the candidates) without reading any record in full.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "data/pg_connection.h"

namespace flux::admin {

// ---- Request ids as typed -------------------------------------------------------------------

struct RecordRef {
  enum class Form {
    kExact,           // a whole id: `exact` is its canonical text
    kPrefix,          // the leading digits of an id: ids from `low` to `high` match
    kSuffix,          // req:<hex>: ids whose last hex digits are `suffix`
    kPrefixOrSuffix,  // bare hex of 6+ digits: a prefix or a handle, whichever matches
  };
  Form form = Form::kExact;
  std::string text;    // as given, for messages
  std::string exact;   // kExact
  std::string low;     // kPrefix, kPrefixOrSuffix: canonical UUID text, the prefix padded with 0
  std::string high;    // ... padded with f
  std::string suffix;  // kSuffix, kPrefixOrSuffix: lower-case hex digits
};

// The fewest hex digits a handle (a suffix) may have: fewer would match too many requests.
inline constexpr size_t kMinSuffixDigits = 6;

// kInvalidArgument, with a message saying what to pass, for anything that is not one of the
// forms above (empty, not hex, dashes out of place, longer than an id).
Result<RecordRef> parseRecordRef(std::string_view text);

// A statement and its parameters (always bound: no input is ever spliced into the SQL).
struct SqlQuery {
  std::string sql;
  data::QueryParams params;
};

// How many candidates a 409 lists.
inline constexpr int kMaxCandidates = 10;

// The ids `ref` matches, newest first, at most kMaxCandidates, each row with the columns of a
// summary (see parseRecordSummaries) and `total`, the count before the limit.
SqlQuery resolveRecordQuery(const RecordRef& ref);

struct Resolution {
  int64_t total = 0;                  // how many executions matched
  std::vector<nlohmann::json> found;  // their summaries (at most kMaxCandidates), newest first
};

Result<Resolution> parseResolution(const data::QueryResult& result);

// The 404 and 409 bodies for a reference that matched none or several executions.
std::string unknownRecordMessage(const RecordRef& ref);
nlohmann::json ambiguousRecordJson(const RecordRef& ref, const Resolution& resolution);

// ---- One record -----------------------------------------------------------------------------

// kRecordSql($1 id) -> the execution's row (none when the id is unknown).
extern const char* const kRecordSql;

// The row of kRecordSql as the record's JSON: the shape of record::toJson(ExecutionRecord)
// (started_at_us, error as {message, location, stack, code}, spans, ...) plus `started_at`,
// the start in ISO 8601 UTC. The jsonb columns are passed on as stored. nullopt for no row;
// kInternal when a column is missing or a value does not parse.
Result<std::optional<nlohmann::json>> parseRecordRow(const data::QueryResult& result);

// The record's mutations in log order, at most this many.
inline constexpr int kMaxRecordMutations = 1000;

// kRecordMutationsSql($1 request id, $2 limit) -> its rows of flux.state_mutations in log
// order, with `total` and the table's primary key columns (json array, NULL when the table is
// gone or has no primary key).
extern const char* const kRecordMutationsSql;

struct RecordMutations {
  nlohmann::json mutations = nlohmann::json::array();  // [{id, schema, table, pk, key_columns,
                                                       //   op, old, new, changed_columns, at,
                                                       //   rolled_back, rows_affected}]
  int64_t total = 0;
};

Result<RecordMutations> parseRecordMutations(const data::QueryResult& result);

// The 200 body of GET /_flux/records/<id>:
// {"record": {...}, "mutations": [...], "mutations_total": N, "mutations_truncated": bool}.
nlohmann::json recordJson(nlohmann::json record, RecordMutations mutations);

// ---- Lists ----------------------------------------------------------------------------------

inline constexpr int kDefaultRecordLimit = 100;
inline constexpr int kMaxRecordLimit = 1000;

// Which executions a list or a stream shows (fn=&status=&errors_only=&path=&kind=&method=).
struct RecordFilter {
  std::optional<std::string> function;
  std::optional<int> status_low;  // status=500 -> 500..500; status=5xx -> 500..599
  std::optional<int> status_high;
  bool errors_only = false;           // status >= 400 or an error recorded
  std::optional<std::string> path;    // exact, or a prefix when it ends with '*' (see below)
  bool path_is_prefix = false;        // `path` holds the prefix without its '*'
  std::optional<std::string> kind;    // http, job, cron, replay
  std::optional<std::string> method;  // upper case
};

// GET /_flux/records?since=&after=&limit=&fn=&status=&errors_only=&path=&kind=&method=
struct RecordListRequest : RecordFilter {
  std::optional<int64_t> since_us;   // started at or after (Unix microseconds)
  std::optional<std::string> after;  // ids greater than this one (canonical UUID)
  int limit = kDefaultRecordLimit;
};

// Validates the query string. kInvalidArgument with a message saying what to pass.
Result<RecordListRequest> parseRecordListRequest(std::string_view query);

// GET /_flux/records/stream?since=&fn=&status=&errors_only=&path=&kind=&method=
struct RecordStreamRequest : RecordFilter {
  std::optional<int64_t> since_us;  // first the records that started at or after this
};

Result<RecordStreamRequest> parseRecordStreamRequest(std::string_view query);

// Whether a summary (the JSON of parseRecordSummaries, or record::toJson(RecordSummary))
// passes the filter: the same test as the WHERE clause recordListQuery builds from it.
bool recordMatches(const RecordFilter& filter, const nlohmann::json& summary);

// "1741600000000000" (Unix microseconds) or ISO 8601: "2026-03-10", "2026-03-10T14:00:00Z",
// with a fraction and/or an offset ("+01:00"); without an offset it is UTC.
Result<int64_t> parseTimestamp(std::string_view text);

// The page of summaries: with `since` or `after`, the oldest `limit` matches from there on
// (page onwards with after=<last id>); with neither, the latest `limit`. Either way the rows
// come oldest first (newest last). Reads limit + 1 rows: the extra one only says "more".
SqlQuery recordListQuery(const RecordListRequest& request);

// A page of the past for the live stream: the records that pass `filter` and started at or
// after since_us, in start order (id order: ids are UUIDv7 made from the start's clock
// reading), after the id `after_id` (the last record of the page before) when given; limit + 1
// rows, the last one only telling that more follow. Each page is a range of the primary key,
// whatever the table's size.
SqlQuery recordBackfillQuery(const RecordFilter& filter, int64_t since_us,
                             const std::optional<std::string>& after_id, int limit);

// kNewestRecordSql() -> one row: newest_us, the start of the newest record (any
// record, whatever the filters; NULL when there is none). `flux tail` moves its window with it,
// so that a filter that matches nothing does not make it scan from where it started.
extern const char* const kNewestRecordSql;

// Summaries from the rows of resolveRecordQuery or recordListQuery, in the rows' order:
// record::toJson(RecordSummary) (id, kind, function, method, path, status, duration_us, error
// (the message), started_at_us) plus `started_at` (ISO 8601 UTC) and `mutations`: {count,
// first: {schema, table, pk, key_columns, op, rows_affected, rolled_back} or null}, `first`
// being the earliest write that changed a row (a 0-row change only when there is no other).
Result<std::vector<nlohmann::json>> parseRecordSummaries(const data::QueryResult& result);

// The 200 body of GET /_flux/records: {"records": [...] (oldest first), "more": bool (another
// page follows: ask again with after=<the last id>), "newest_started_at_us": int or null}.
// `summaries` are the rows of recordListQuery (limit + 1 of them when there are more).
nlohmann::json recordListJson(std::vector<nlohmann::json> summaries,
                              const RecordListRequest& request,
                              std::optional<int64_t> newest_started_at_us);

Result<std::optional<int64_t>> parseNewestRecord(const data::QueryResult& result);

// ---- The live stream -------------------------------------------------------------------------

// The summaries (columns as recordListQuery's) of the executions with these ids, in id order:
// what a NOTIFY's array of summaries names.
SqlQuery recordsByIdQuery(const std::vector<std::string>& ids);
// The same for every execution from min_id to max_id: what a NOTIFY's {count, min_id, max_id}
// names (UUIDv7 ids sort by time, so the range covers the batch, and maybe others).
SqlQuery recordsInRangeQuery(const std::string& min_id, const std::string& max_id);

}  // namespace flux::admin

// The host natives behind ctx.db (js/db.js): dbQuery, dbInsert, dbUpdate, dbDelete,
// dbSavepoint. Each returns a promise, runs its SQL in the request's RequestTransaction on the
// worker's pool, and settles the promise back in the function's context. Database errors
// become DatabaseError objects whose `status` is what the request answers if uncaught.
#include <v8.h>

#include "data/query_builder.h"
#include "data/request_transaction.h"
#include "runtime/db_values.h"
#include "runtime/function_context.h"
#include "runtime/v8_strings.h"

namespace flux::runtime {

namespace {

// The HTTP status an uncaught database error answers, and its `code`.
std::pair<int, std::string> classify(const Error& error) {
  std::string sqlstate;
  for (const auto& [key, value] : error.fields) {
    if (key == "sqlstate") sqlstate = value;
  }
  switch (error.code) {
    case ErrorCode::kUnavailable:
      return {503, "unavailable"};
    case ErrorCode::kResourceExhausted:
      return {503, "busy"};
    case ErrorCode::kInvalidArgument:
      if (sqlstate.empty()) return {400, "invalid_argument"};
      if (sqlstate == "23505") return {409, sqlstate};  // unique_violation
      if (sqlstate.starts_with("22") || sqlstate.starts_with("23")) return {400, sqlstate};
      return {500, sqlstate};
    default:
      return {500, errorCodeName(error.code)};
  }
}

}  // namespace

struct IsolateWorker::Database {
  using Shape =
      std::function<v8::Local<v8::Value>(v8::Local<v8::Context>, const data::QueryResult&)>;

  static IsolateWorker& worker(const v8::FunctionCallbackInfo<v8::Value>& info) {
    return *static_cast<IsolateWorker*>(info.Data().As<v8::External>()->Value());
  }

  // Settles `resolver` in its context once the request's work is back on the loop.
  // A rejection's DatabaseError remembers `span_id`, the call's span (0: none).
  static void settle(IsolateWorker& w, uint64_t serial, uint32_t slot,
                     v8::Global<v8::Promise::Resolver> resolver, Result<data::QueryResult> result,
                     const Shape& shape, uint32_t span_id = 0) {
    auto c = w.contexts_.find(serial);
    if (c == w.contexts_.end()) return;  // the context is gone: nobody awaits this any more
    FunctionContext& fc = *c->second;
    w.current_slot_ = slot;
    w.runInContext(fc, [&] {
      v8::Local<v8::Context> context = w.isolate_->GetCurrentContext();
      auto r = resolver.Get(w.isolate_);
      if (result) {
        discard(r->Resolve(context, shape(context, *result)));
        return;
      }
      auto [status, code] = classify(result.error());
      v8::Local<v8::Value> args[] = {v8String(w.isolate_, result.error().message),
                                     v8String(w.isolate_, code),
                                     v8::Integer::New(w.isolate_, status)};
      v8::Local<v8::Value> error;
      if (fc.make_database_error.Get(w.isolate_)
              ->Call(context, v8::Undefined(w.isolate_), 3, args)
              .ToLocal(&error)) {
        tagErrorSpan(context, error, span_id);
        discard(r->Reject(context, error));
      }
    });
    w.current_slot_ = 0;
  }

  // The request's transaction, created at its first db call; nullptr (and a rejection) when
  // there is no database or the request is over.
  static data::RequestTransaction* transaction(IsolateWorker& w, uint32_t slot, std::string& why) {
    auto it = w.pending_.find(slot);
    if (it == w.pending_.end()) {
      why = "ctx.db used after the request finished";
      return nullptr;
    }
    if (w.database_ == nullptr) {
      why = "no database is configured for this server";
      return nullptr;
    }
    PendingRequest& p = *it->second;
    if (!p.transaction) {
      p.transaction = std::make_unique<data::RequestTransaction>(*w.database_, p.id.toString());
    }
    return p.transaction.get();
  }

  // Common prologue: a promise, the caller's context serial and its transaction.
  struct Call {
    IsolateWorker* worker = nullptr;
    uint64_t serial = 0;
    uint32_t slot = 0;
    v8::Global<v8::Promise::Resolver> resolver;
    data::RequestTransaction* transaction = nullptr;
    size_t span = 0;       // index of this call's span in the request's spans; 0: none
    size_t parent = 0;     // index of the span it was called in (the innermost ctx.span block)
    std::string location;  // the TypeScript call site
  };

  // The call's span in the execution record: the SQL and parameters in, the command tag and
  // row count (and the first rows) out, or the error.
  static void openSpan(Call& call, std::string name, const std::string& sql,
                       const data::QueryParams& params) {
    auto it = call.worker->pending_.find(call.slot);
    if (it == call.worker->pending_.end()) return;
    nlohmann::json values = nlohmann::json::array();
    for (const auto& v : params) values.push_back(v ? nlohmann::json(*v) : nlohmann::json());
    call.span = it->second->openSpan(std::move(name), {{"sql", sql}, {"params", std::move(values)}},
                                     call.worker->clock_.steadyNow(), call.parent,
                                     std::move(call.location));
  }

  // The first `limit` rows as objects of text values (null for NULL).
  static nlohmann::json rowsJson(const data::QueryResult& result, size_t limit) {
    nlohmann::json rows = nlohmann::json::array();
    for (size_t r = 0; r < result.rows.size() && r < limit; ++r) {
      nlohmann::json row = nlohmann::json::object();
      for (size_t c = 0; c < result.columns.size(); ++c) {
        const auto& cell = result.rows[r][c];
        row[result.columns[c].name] = cell ? nlohmann::json(*cell) : nlohmann::json();
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  // Ends the call's span (output: command, rowCount, the first rows; or the error) and
  // journals the result (all rows, up to kJournalRows). Returns the span's id (0: none).
  static uint32_t closeSpan(Call& call, const Result<data::QueryResult>& result) {
    static constexpr size_t kRowsShown = 3;
    static constexpr size_t kJournalRows = 10'000;
    auto it = call.worker->pending_.find(call.slot);
    if (it == call.worker->pending_.end() || call.span == 0) return 0;
    PendingRequest& request = *it->second;
    if (call.span >= request.spans.size()) return 0;
    record::Span& span = request.spans[call.span];
    span.duration_us = request.sinceStartUs(call.worker->clock_.steadyNow()) - span.start_us;
    if (!result) {
      span.status = record::SpanStatus::kError;
      span.error = result.error().message;
      request.journal.dbError(span.id, result.error().message);
      return span.id;
    }
    span.output = {{"command", result->command_tag},
                   {"rowCount", result->affected},
                   {"rows", rowsJson(*result, kRowsShown)}};
    nlohmann::json value = {{"command", result->command_tag},
                            {"rowCount", result->affected},
                            {"rows", rowsJson(*result, kJournalRows)}};
    if (result->rows.size() > kJournalRows) value["rows_truncated"] = true;
    request.journal.db(span.id, std::move(value));
    return span.id;
  }

  static std::optional<Call> begin(const v8::FunctionCallbackInfo<v8::Value>& info) {
    IsolateWorker& w = worker(info);
    v8::Local<v8::Context> context = w.isolate_->GetCurrentContext();
    auto resolver = v8::Promise::Resolver::New(context).ToLocalChecked();
    info.GetReturnValue().Set(resolver->GetPromise());
    Call call;
    call.worker = &w;
    call.serial = FunctionContext::from(context).serial;
    call.slot = info[0]->Uint32Value(context).FromMaybe(0);
    call.resolver.Reset(w.isolate_, resolver);
    // Where and under which span the user made the call: only known now, while its JS runs.
    call.parent = w.currentSpan(context, call.slot);
    call.location = w.callSite(FunctionContext::from(context));
    std::string why;
    call.transaction = transaction(w, call.slot, why);
    if (call.transaction == nullptr) {
      settle(w, call.serial, call.slot, std::move(call.resolver),
             std::unexpected(Error{ErrorCode::kInvalidArgument, why, {}}), {});
      return std::nullopt;
    }
    return call;
  }

  static void reject(Call& call, Error error) {
    settle(*call.worker, call.serial, call.slot, std::move(call.resolver),
           std::unexpected(std::move(error)), {});
  }

  using CatalogStep =
      std::move_only_function<void(Call&, const data::Catalog&, v8::Local<v8::Context>)>;

  // Runs `then` inside the caller's function context with the worker's catalogue, loading it
  // (or reloading it when `table` or one of `columns` is not in it: created or altered since)
  // through the request's transaction. Nothing runs if that context is gone meanwhile.
  static void withCatalog(Call& call, std::string table, std::vector<std::string> columns,
                          CatalogStep then) {
    auto deliver = [](Call& call, CatalogStep& then) {
      IsolateWorker& w = *call.worker;
      auto c = w.contexts_.find(call.serial);
      if (c == w.contexts_.end()) return;
      v8::HandleScope scope(w.isolate_);
      v8::Local<v8::Context> context = c->second->context.Get(w.isolate_);
      v8::Context::Scope context_scope(context);
      then(call, *w.catalog_, context);
    };
    IsolateWorker& w = *call.worker;
    if (w.catalog_) {
      const data::TableInfo* info = w.catalog_->find(table);
      bool known = info != nullptr;
      for (size_t i = 0; known && i < columns.size(); ++i) {
        known = info->column(columns[i]) != nullptr;
      }
      if (known) return deliver(call, then);
    }
    call.transaction->query(data::Catalog::kQuery, {}, data::Prepare::kYes,
                            [call = std::move(call), then = std::move(then),
                             deliver](Result<data::QueryResult> r) mutable {
                              IsolateWorker& w = *call.worker;
                              if (!r) return reject(call, r.error());
                              auto catalog = data::Catalog::fromResult(*r);
                              if (!catalog) return reject(call, catalog.error());
                              w.catalog_ = std::move(*catalog);
                              deliver(call, then);
                            });
  }

  // The column names of [[column, value], ...] lists (one list, or a list of them for insert).
  static void collectColumns(v8::Local<v8::Context> context, v8::Local<v8::Value> list, int depth,
                             std::vector<std::string>& out) {
    if (!list->IsArray()) return;
    auto array = list.As<v8::Array>();
    for (uint32_t i = 0; i < array->Length(); ++i) {
      v8::Local<v8::Value> item;
      if (!array->Get(context, i).ToLocal(&item) || !item->IsArray()) continue;
      if (depth > 0) {
        collectColumns(context, item, depth - 1, out);
      } else {
        v8::Local<v8::Value> name;
        if (item.As<v8::Array>()->Get(context, 0).ToLocal(&name)) {
          out.push_back(Host::toUtf8(context->GetIsolate(), name));
        }
      }
    }
  }

  static v8::Local<v8::Value> countAndRows(v8::Local<v8::Context> context,
                                           const data::QueryResult& r) {
    v8::Isolate* isolate = context->GetIsolate();
    auto out = v8::Object::New(isolate);
    discard(out->Set(context, v8String(isolate, "rows"), rowsToJs(context, r)));
    discard(out->Set(context, v8String(isolate, "count"),
                     v8::Number::New(isolate, static_cast<double>(r.affected))));
    return out;
  }

  // [[column, value], ...] -> SQL values, checked against the table's columns when known.
  static Result<std::vector<std::pair<std::string, data::SqlValue>>> entries(
      v8::Local<v8::Context> context, v8::Local<v8::Value> list, const data::TableInfo* table) {
    std::vector<std::pair<std::string, data::SqlValue>> out;
    if (!list->IsArray()) return out;
    auto array = list.As<v8::Array>();
    v8::Isolate* isolate = context->GetIsolate();
    for (uint32_t i = 0; i < array->Length(); ++i) {
      auto pair = array->Get(context, i).ToLocalChecked().As<v8::Array>();
      std::string column = Host::toUtf8(isolate, pair->Get(context, 0).ToLocalChecked());
      const data::ColumnInfo* info = table ? table->column(column) : nullptr;
      auto value = toSqlValue(context, pair->Get(context, 1).ToLocalChecked(),
                              info ? std::string_view(info->type) : std::string_view());
      if (!value) {
        return fail(ErrorCode::kInvalidArgument,
                    "column '" + column + "': " + value.error().message);
      }
      out.emplace_back(std::move(column), std::move(*value));
    }
    return out;
  }

  static Result<std::vector<data::WhereCondition>> where(v8::Local<v8::Context> context,
                                                         v8::Local<v8::Value> list,
                                                         const data::TableInfo* table) {
    std::vector<data::WhereCondition> out;
    auto array = list.As<v8::Array>();
    v8::Isolate* isolate = context->GetIsolate();
    for (uint32_t i = 0; i < array->Length(); ++i) {
      auto pair = array->Get(context, i).ToLocalChecked().As<v8::Array>();
      std::string column = Host::toUtf8(isolate, pair->Get(context, 0).ToLocalChecked());
      v8::Local<v8::Value> value = pair->Get(context, 1).ToLocalChecked();
      const data::ColumnInfo* info = table ? table->column(column) : nullptr;
      std::string_view type = info ? std::string_view(info->type) : std::string_view();
      if (value->IsArray()) {
        std::vector<data::SqlValue> values;
        auto items = value.As<v8::Array>();
        for (uint32_t k = 0; k < items->Length(); ++k) {
          auto v = toSqlValue(context, items->Get(context, k).ToLocalChecked(), type);
          if (!v) return std::unexpected(v.error());
          values.push_back(std::move(*v));
        }
        out.push_back({std::move(column), std::move(values)});
      } else {
        auto v = toSqlValue(context, value, type);
        if (!v) return std::unexpected(v.error());
        out.push_back({std::move(column), std::move(*v)});
      }
    }
    return out;
  }

  static std::string jsonOf(v8::Local<v8::Context> context, v8::Local<v8::Value> entries) {
    v8::Isolate* isolate = context->GetIsolate();
    auto object = v8::Object::New(isolate);
    if (entries->IsArray()) {
      auto array = entries.As<v8::Array>();
      for (uint32_t i = 0; i < array->Length(); ++i) {
        auto pair = array->Get(context, i).ToLocalChecked().As<v8::Array>();
        discard(object->Set(context, pair->Get(context, 0).ToLocalChecked(),
                            pair->Get(context, 1).ToLocalChecked()));
      }
    }
    v8::Local<v8::String> json;
    return v8::JSON::Stringify(context, object).ToLocal(&json) ? Host::toUtf8(isolate, json) : "{}";
  }

  static bool isTransactionControl(std::string_view sql) {
    size_t i = sql.find_first_not_of(" \t\r\n(");
    if (i == std::string_view::npos) return false;
    std::string word;
    for (; i < sql.size() && isalpha(static_cast<unsigned char>(sql[i])); ++i) {
      word.push_back(static_cast<char>(tolower(static_cast<unsigned char>(sql[i]))));
    }
    return word == "begin" || word == "commit" || word == "rollback" || word == "savepoint" ||
           word == "release" || word == "end" || word == "abort" || word == "start";
  }

  // dbUpdate(slot, table, where, set) / dbDelete(slot, table, where) -> {rows, count}
  static void changeRows(const v8::FunctionCallbackInfo<v8::Value>& info, const char* op) {
    auto call = begin(info);
    if (!call) return;
    v8::Isolate* iso = info.GetIsolate();
    std::string table = Host::toUtf8(iso, info[1]);
    v8::Global<v8::Value> where_list(iso, info[2]);
    v8::Global<v8::Value> set_list(
        iso, std::string_view(op) == "UPDATE" ? info[3] : v8::Undefined(iso).As<v8::Value>());
    std::vector<std::string> columns;
    collectColumns(iso->GetCurrentContext(), info[2], 0, columns);
    if (std::string_view(op) == "UPDATE")
      collectColumns(iso->GetCurrentContext(), info[3], 0, columns);
    withCatalog(
        *call, table, std::move(columns),
        [table, op, where_list = std::move(where_list), set_list = std::move(set_list)](
            Call& call, const data::Catalog& catalog, v8::Local<v8::Context> context) mutable {
          IsolateWorker& w = *call.worker;
          const data::TableInfo* info = catalog.find(table);
          auto conditions = where(context, where_list.Get(w.isolate_), info);
          if (!conditions) return reject(call, conditions.error());
          bool is_update = std::string_view(op) == "UPDATE";
          Result<data::BuiltQuery> q;
          if (is_update) {
            auto set = entries(context, set_list.Get(w.isolate_), info);
            if (!set) return reject(call, set.error());
            q = data::buildUpdate(catalog, table, *conditions, *set);
          } else {
            q = data::buildDelete(catalog, table, *conditions);
          }
          if (!q) return reject(call, q.error());
          data::ZeroRowChange zero{
              q->table->schema,
              q->table->name,
              op,
              jsonOf(context, where_list.Get(w.isolate_)),
              is_update ? std::optional<std::string>(jsonOf(context, set_list.Get(w.isolate_)))
                        : std::nullopt,
              false};
          data::RequestTransaction* txn = call.transaction;
          openSpan(call, (is_update ? "db.update(" : "db.delete(") + q->table->name + ")", q->sql,
                   q->params);
          txn->query(std::move(q->sql), std::move(q->params), data::Prepare::kYes,
                     [call = std::move(call),
                      zero = std::move(zero)](Result<data::QueryResult> r) mutable {
                       uint32_t span = closeSpan(call, r);
                       if (r && r->affected == 0) call.transaction->recordZeroRows(std::move(zero));
                       settle(*call.worker, call.serial, call.slot, std::move(call.resolver),
                              std::move(r), countAndRows, span);
                     });
        });
  }

  static void install(v8::Isolate* isolate, v8::Local<v8::Context> context,
                      v8::Local<v8::Object> host, IsolateWorker& w) {
    v8::Local<v8::External> data = v8::External::New(isolate, &w);
    auto define = [&](const char* name, v8::FunctionCallback callback) {
      discard(host->Set(context, v8String(isolate, name),
                        v8::Function::New(context, callback, data).ToLocalChecked()));
    };

    // dbQuery(slot, sql, params) -> Promise<{rows, count}>
    define("dbQuery", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
      auto call = begin(info);
      if (!call) return;
      v8::Local<v8::Context> context = info.GetIsolate()->GetCurrentContext();
      std::string sql = Host::toUtf8(info.GetIsolate(), info[1]);
      if (isTransactionControl(sql)) {
        return reject(*call, Error{ErrorCode::kInvalidArgument,
                                   "ctx.db.query: transaction control statements are managed by "
                                   "Flux (one transaction per request); use ctx.db.transaction()",
                                   {}});
      }
      data::QueryParams params;
      if (info[2]->IsArray()) {
        auto array = info[2].As<v8::Array>();
        for (uint32_t i = 0; i < array->Length(); ++i) {
          auto v = toSqlValue(context, array->Get(context, i).ToLocalChecked());
          if (!v) {
            return reject(*call,
                          Error{ErrorCode::kInvalidArgument,
                                "parameter $" + std::to_string(i + 1) + ": " + v.error().message,
                                {}});
          }
          params.push_back(std::move(*v));
        }
      }
      data::RequestTransaction* txn = call->transaction;
      openSpan(*call, "db.query", sql, params);
      // Prepared once per connection (parsing and planning cost PostgreSQL more than running a
      // one-row statement); the connection keeps at most 256 and runs the rest unnamed.
      txn->query(std::move(sql), std::move(params), data::Prepare::kYes,
                 [call = std::move(*call)](Result<data::QueryResult> r) mutable {
                   uint32_t span = closeSpan(call, r);
                   settle(*call.worker, call.serial, call.slot, std::move(call.resolver),
                          std::move(r), countAndRows, span);
                 });
    });

    // dbInsert(slot, table, rows: [[[column, value], ...], ...]) -> Promise<{rows, count}>
    define("dbInsert", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
      auto call = begin(info);
      if (!call) return;
      v8::Isolate* iso = info.GetIsolate();
      std::string table = Host::toUtf8(iso, info[1]);
      v8::Global<v8::Value> rows(iso, info[2]);
      std::vector<std::string> columns;
      collectColumns(iso->GetCurrentContext(), info[2], 1, columns);
      withCatalog(*call, table, std::move(columns),
                  [table, rows = std::move(rows)](Call& call, const data::Catalog& catalog,
                                                  v8::Local<v8::Context> context) mutable {
                    IsolateWorker& w = *call.worker;
                    const data::TableInfo* info = catalog.find(table);
                    std::vector<data::InsertRow> insert_rows;
                    auto list = rows.Get(w.isolate_);
                    if (list->IsArray()) {
                      auto array = list.As<v8::Array>();
                      for (uint32_t i = 0; i < array->Length(); ++i) {
                        auto values =
                            entries(context, array->Get(context, i).ToLocalChecked(), info);
                        if (!values) return reject(call, values.error());
                        insert_rows.push_back({std::move(*values)});
                      }
                    }
                    auto q = data::buildInsert(catalog, table, insert_rows);
                    if (!q) return reject(call, q.error());
                    openSpan(call, "db.insert(" + q->table->name + ")", q->sql, q->params);
                    call.transaction->query(
                        std::move(q->sql), std::move(q->params), data::Prepare::kYes,
                        [call = std::move(call)](Result<data::QueryResult> r) mutable {
                          uint32_t span = closeSpan(call, r);
                          settle(*call.worker, call.serial, call.slot, std::move(call.resolver),
                                 std::move(r), countAndRows, span);
                        });
                  });
    });

    define("dbUpdate",
           [](const v8::FunctionCallbackInfo<v8::Value>& info) { changeRows(info, "UPDATE"); });
    define("dbDelete",
           [](const v8::FunctionCallbackInfo<v8::Value>& info) { changeRows(info, "DELETE"); });

    // dbSavepoint(slot, "begin" | "release" | "rollback") -> Promise<undefined>
    define("dbSavepoint", [](const v8::FunctionCallbackInfo<v8::Value>& info) {
      auto call = begin(info);
      if (!call) return;
      std::string op = Host::toUtf8(info.GetIsolate(), info[1]);
      data::SavepointOp kind = op == "begin"     ? data::SavepointOp::kBegin
                               : op == "release" ? data::SavepointOp::kRelease
                                                 : data::SavepointOp::kRollback;
      data::RequestTransaction* txn = call->transaction;
      txn->savepoint(kind, [call = std::move(*call)](Result<data::QueryResult> r) mutable {
        settle(*call.worker, call.serial, call.slot, std::move(call.resolver), std::move(r),
               [](v8::Local<v8::Context> context, const data::QueryResult&) {
                 return v8::Undefined(context->GetIsolate()).As<v8::Value>();
               });
      });
    });
  }
};

void installDatabaseBindings(v8::Isolate* isolate, v8::Local<v8::Context> context,
                             v8::Local<v8::Object> host, IsolateWorker& worker) {
  IsolateWorker::Database::install(isolate, context, host, worker);
}

}  // namespace flux::runtime

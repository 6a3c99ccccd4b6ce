// flux_capture: the mutation log's trigger function flux.capture() in C (see
// src/data/mutation_log.h for the contract, and README.md beside this file).
//
// In a Flux request's transaction (flux.capture = 'on') a row change is appended to a buffer of
// this backend, in TopTransactionContext; nothing is sent to the client. At
// XACT_EVENT_PRE_COMMIT (or PRE_PREPARE) the buffered rows are inserted into
// flux.state_mutations, in the same transaction and in capture order. A ROLLBACK TO SAVEPOINT
// marks the rows written inside it rolled back (they are stored anyway). When the transaction
// aborts, the buffered rows are sent to the client in one NOTICE with SQLSTATE FX002 whose
// message is a JSON array of the FX001 payloads of the plpgsql capture, so that the client can
// store them, marked rolled back, after the ROLLBACK. Outside a request (psql, migrations) the
// row is logged at once through flux.record_external(), as the plpgsql capture does.
//
// Per-backend state is static, as in any PostgreSQL extension: the buffer (reset at every
// transaction end), two SPI plans and the table's layout, kept across transactions.

// postgres.h comes first in every file compiled into the server.
// clang-format off
#include "postgres.h"
// clang-format on

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "common/jsonapi.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "rewrite/rewriteHandler.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/uuid.h"

PG_MODULE_MAGIC;

void _PG_init(void);
PG_FUNCTION_INFO_V1(flux_capture);

// One captured row change. Strings are NUL-terminated, in TopTransactionContext.
typedef struct CapturedRow {
  char* schema;
  char* table;
  const char* op;      // "INSERT", "UPDATE" or "DELETE" (static)
  char* pk;            // the key's values joined with ','; NULL without a key
  char* old_row;       // row_to_json text; NULL for an INSERT
  char* new_row;       // row_to_json text; NULL for a DELETE
  ArrayType* changed;  // text[] of the changed columns (changedColumns)
  int64 txid;
  TimestampTz at;
  int nest_level;  // the (sub)transaction that wrote it, lowered as subtransactions commit
  bool rolled_back;
} CapturedRow;

typedef struct CaptureBuffer {
  LocalTransactionId lxid;  // the transaction the rows belong to
  CapturedRow* rows;        // NULL when empty
  int count;
  int capacity;
  int stored;    // rows [0, stored) are in flux.state_mutations (this transaction's snapshot)
  bool storing;  // inside the PRE_COMMIT INSERT: a capture there would recurse
  Oid owner;     // who stores the rows: the owner of flux.capture(), as SECURITY DEFINER would
} CaptureBuffer;

static CaptureBuffer buffer;

static ArrayType* changedColumns(TupleDesc desc, HeapTuple old_tuple, HeapTuple new_tuple);
static SPIPlanPtr store_plan;
static SPIPlanPtr external_plan;

#define FX002 MAKE_SQLSTATE('F', 'X', '0', '0', '2')

// One row, executed once per buffered row in capture order, so the ids follow the order of the
// writes. Every value is computed beforehand and typed as its column: nothing resolves through
// the session's search_path while this runs as the function's owner. (One INSERT ... SELECT
// over unnest()ed arrays costs more for the usual one or two rows: ~20 us of function scans.)
static const char* const kStoreSql =
    "INSERT INTO flux.state_mutations (request_id, schema_name, table_name, pk, row_key, op, old, "
    "new, changed_columns, txid, at, rolled_back) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

static const char* const kExternalSql =
    "SELECT flux.record_external($1, $2, $3, $4, $5::pg_catalog.jsonb, $6::pg_catalog.jsonb)";

// Every transaction end resets the buffer, so a callback only needs to know it is not empty;
// the trigger also checks the transaction (ProcArrayEndTransaction clears MyProc->lxid before
// the COMMIT and ABORT callbacks run, so they cannot).
static bool bufferIsCurrent(void) { return buffer.rows != NULL && buffer.lxid == MyProc->lxid; }

static void resetBuffer(void) { memset(&buffer, 0, sizeof buffer); }

// ---- A row's JSON ------------------------------------------------------------------------------
// Written exactly as row_to_json writes it (json.c: composite_to_json, datum_to_json), from what
// each column needs, found once per table (row_to_json looks every column's type and output
// function up again on each call: ~1k instructions a column). A table with a column that
// row_to_json writes recursively or through a cast (an array, a composite, a type with a cast to
// json) goes through row_to_json itself.

// json.c's categories, for the types written here.
typedef enum JsonKind {
  kJsonBool,
  kJsonNumber,    // as is when its text is a JSON number, else a string ('NaN')
  kJsonDateTime,  // date, timestamp, timestamptz: JsonEncodeDateTime's ISO form, as a string
  kJsonVerbatim,  // json and jsonb: their text is JSON already
  kJsonString     // everything else: the output text as a JSON string
} JsonKind;

typedef struct ColumnJson {
  bool dropped;
  JsonKind kind;
  Oid type;         // the base type (json.c looks through domains too)
  FmgrInfo output;  // its output function; unused for bool and dates
  char* key;        // "name": as JSON, with a ',' before every column's but the first
} ColumnJson;

// Per table, in a hash table keyed by relid, rebuilt after a relcache invalidation of it.
typedef struct RowShape {
  Oid relid;
  MemoryContext context;  // holds columns; NULL until built
  bool stale;             // true until built, and after an invalidation
  bool general;           // row_to_json writes this table's rows
  int natts;
  ColumnJson* columns;
} RowShape;

static HTAB* row_shapes;

// Marks shapes stale rather than freeing them: an invalidation can arrive while a trigger call
// still reads its table's shape (an output function that takes a lock processes them).
static void invalidateRowShapes(Oid relid) {
  HASH_SEQ_STATUS scan;
  RowShape* shape;
  if (row_shapes == NULL) return;
  if (relid != InvalidOid) {
    shape = hash_search(row_shapes, &relid, HASH_FIND, NULL);
    if (shape != NULL) shape->stale = true;
    return;
  }
  hash_seq_init(&scan, row_shapes);
  while ((shape = hash_seq_search(&scan)) != NULL) shape->stale = true;
}

static bool castsToJson(Oid type) {
  Oid function;
  return type >= FirstNormalObjectId &&
         find_coercion_pathway(JSONOID, type, COERCION_EXPLICIT, &function) == COERCION_PATH_FUNC &&
         OidIsValid(function);
}

static void buildRowShape(RowShape* shape, TupleDesc desc) {
  MemoryContext caller;
  bool first = true;
  shape->stale = true;  // until the end: an error on the way leaves it to be built again
  if (shape->context != NULL) MemoryContextDelete(shape->context);
  shape->context =
      AllocSetContextCreate(CacheMemoryContext, "flux_capture row shape", ALLOCSET_SMALL_SIZES);
  caller = MemoryContextSwitchTo(shape->context);
  shape->general = false;
  shape->natts = desc->natts;
  shape->columns = palloc0(desc->natts * sizeof(ColumnJson));
  for (int a = 0; a < desc->natts; ++a) {
    Form_pg_attribute attribute = TupleDescAttr(desc, a);
    ColumnJson* column = &shape->columns[a];
    StringInfoData key;
    Oid type;
    column->dropped = attribute->attisdropped;
    if (column->dropped) continue;
    initStringInfo(&key);
    if (!first) appendStringInfoChar(&key, ',');
    first = false;
    escape_json(&key, NameStr(attribute->attname));
    appendStringInfoChar(&key, ':');
    column->key = key.data;
    type = column->type = getBaseType(attribute->atttypid);
    switch (type) {
      case BOOLOID:
        column->kind = kJsonBool;
        break;
      case INT2OID:
      case INT4OID:
      case INT8OID:
      case FLOAT4OID:
      case FLOAT8OID:
      case NUMERICOID:
        column->kind = kJsonNumber;
        break;
      case DATEOID:
      case TIMESTAMPOID:
      case TIMESTAMPTZOID:
        column->kind = kJsonDateTime;
        break;
      case JSONOID:
      case JSONBOID:
        column->kind = kJsonVerbatim;
        break;
      default:
        if (OidIsValid(get_element_type(type)) || type_is_rowtype(type) || castsToJson(type)) {
          shape->general = true;
        }
        column->kind = kJsonString;
        break;
    }
    if (column->kind == kJsonNumber || column->kind == kJsonVerbatim ||
        column->kind == kJsonString) {
      Oid output;
      bool varlena;
      getTypeOutputInfo(type, &output, &varlena);
      fmgr_info_cxt(output, &column->output, shape->context);
    }
  }
  MemoryContextSwitchTo(caller);
  shape->stale = false;
}

static RowShape* rowShape(Relation rel) {
  Oid relid = RelationGetRelid(rel);
  RowShape* shape;
  bool found;
  if (row_shapes == NULL) {
    HASHCTL control;
    control.keysize = sizeof(Oid);
    control.entrysize = sizeof(RowShape);
    control.hcxt = CacheMemoryContext;
    row_shapes =
        hash_create("flux_capture row shapes", 64, &control, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
  }
  shape = hash_search(row_shapes, &relid, HASH_ENTER, &found);
  if (!found) {
    shape->context = NULL;
    shape->stale = true;
  }
  if (shape->stale || shape->natts != RelationGetDescr(rel)->natts) {
    buildRowShape(shape, RelationGetDescr(rel));
  }
  return shape;
}

static char* rowJson(const RowShape* shape, HeapTuple tuple, TupleDesc desc) {
  StringInfoData json;
  if (shape->general) {
    Datum composite = heap_copy_tuple_as_datum(tuple, desc);
    return text_to_cstring(DatumGetTextPP(DirectFunctionCall1(row_to_json, composite)));
  }
  initStringInfo(&json);
  appendStringInfoChar(&json, '{');
  for (int a = 0; a < shape->natts; ++a) {
    const ColumnJson* column = &shape->columns[a];
    char date[MAXDATELEN + 1];
    char* text;
    bool is_null;
    Datum value;
    if (column->dropped) continue;
    appendStringInfoString(&json, column->key);
    value = heap_getattr(tuple, a + 1, desc, &is_null);
    if (is_null) {
      appendStringInfoString(&json, "null");
      continue;
    }
    switch (column->kind) {
      case kJsonBool:
        appendStringInfoString(&json, DatumGetBool(value) ? "true" : "false");
        break;
      case kJsonDateTime:
        JsonEncodeDateTime(date, value, column->type, NULL);
        appendStringInfoChar(&json, '"');
        appendStringInfoString(&json, date);
        appendStringInfoChar(&json, '"');
        break;
      case kJsonNumber:
      case kJsonVerbatim:
      case kJsonString:
        text = OutputFunctionCall((FmgrInfo*)&column->output, value);
        if (column->kind == kJsonVerbatim ||
            (column->kind == kJsonNumber && IsValidJsonNumber(text, strlen(text)))) {
          appendStringInfoString(&json, text);
        } else {
          escape_json(&json, text);
        }
        pfree(text);
        break;
    }
  }
  appendStringInfoChar(&json, '}');
  return json.data;
}

// True for the types whose `row_to_json(row) ->> column` is their output function's text (no
// special JSON form: not boolean, date and time, json, array, composite or domain types).
static bool keyTextIsOutputText(Oid type) {
  switch (type) {
    case INT2OID:
    case INT4OID:
    case INT8OID:
    case NUMERICOID:
    case TEXTOID:
    case VARCHAROID:
    case BPCHAROID:
    case UUIDOID:
      return true;
    default:
      return false;
  }
}

// One key column's value as `row_json ->> column` (NULL when missing or null). The common key
// types skip parsing the row's JSON.
static char* keyValue(const char* column, const RowShape* shape, HeapTuple tuple, TupleDesc desc,
                      const char* row_json) {
  int attnum = SPI_fnumber(desc, column);
  LOCAL_FCINFO(call, 2);
  Datum value;
  if (attnum > 0 && keyTextIsOutputText(TupleDescAttr(desc, attnum - 1)->atttypid)) {
    bool is_null;
    value = heap_getattr(tuple, attnum, desc, &is_null);
    if (is_null) return NULL;
    return OutputFunctionCall((FmgrInfo*)&shape->columns[attnum - 1].output, value);
  }
  InitFunctionCallInfoData(*call, NULL, 2, InvalidOid, NULL, NULL);
  call->args[0].value = PointerGetDatum(cstring_to_text(row_json));
  call->args[0].isnull = false;
  call->args[1].value = CStringGetTextDatum(column);
  call->args[1].isnull = false;
  value = json_object_field_text(call);
  return call->isnull ? NULL : text_to_cstring(DatumGetTextPP(value));
}

// The key as the plpgsql capture computes it: each key column's value as `row_json ->> column`
// (so a timestamp or a boolean reads as in the row's JSON), joined with ','; NULL without key
// columns or when one is missing or null.
static char* primaryKey(Trigger* trigger, const RowShape* shape, HeapTuple tuple, TupleDesc desc,
                        const char* row_json) {
  StringInfoData pk;
  if (trigger->tgnargs == 0) return NULL;
  initStringInfo(&pk);
  for (int i = 0; i < trigger->tgnargs; ++i) {
    char* value = keyValue(trigger->tgargs[i], shape, tuple, desc, row_json);
    if (value == NULL) return NULL;
    if (i > 0) appendStringInfoChar(&pk, ',');
    appendStringInfoString(&pk, value);
  }
  return pk.data;
}

static Oid functionOwner(Oid function) {
  HeapTuple tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(function));
  Oid owner;
  if (!HeapTupleIsValid(tuple)) elog(ERROR, "cache lookup failed for function %u", function);
  owner = ((Form_pg_proc)GETSTRUCT(tuple))->proowner;
  ReleaseSysCache(tuple);
  return owner;
}

static void bufferRow(const CapturedRow* row, Oid function) {
  if (buffer.storing) {
    ereport(ERROR, (errmsg("flux cannot log a change made while it stores the mutation log")));
  }
  if (!bufferIsCurrent()) {
    resetBuffer();
    buffer.capacity = 16;
    buffer.rows = MemoryContextAlloc(TopTransactionContext, buffer.capacity * sizeof(CapturedRow));
    buffer.lxid = MyProc->lxid;
    buffer.owner = functionOwner(function);
  }
  if (buffer.count == buffer.capacity) {
    buffer.rows = repalloc_huge(buffer.rows, 2 * (Size)buffer.capacity * sizeof(CapturedRow));
    buffer.capacity *= 2;
  }
  buffer.rows[buffer.count++] = *row;
}

static char* transactionCopy(const char* text) {
  return text == NULL ? NULL : MemoryContextStrdup(TopTransactionContext, text);
}

static void recordExternal(const char* schema, const char* table, const char* op, const char* pk,
                           const char* old_row, const char* new_row) {
  Oid types[6] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
  const char* args[6] = {schema, table, op, pk, old_row, new_row};
  Datum values[6];
  char nulls[6];
  int rc;
  for (int i = 0; i < 6; ++i) {
    values[i] = args[i] == NULL ? (Datum)0 : CStringGetTextDatum(args[i]);
    nulls[i] = args[i] == NULL ? 'n' : ' ';
  }
  if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "flux_capture: SPI_connect failed");
  if (external_plan == NULL) {
    SPIPlanPtr plan = SPI_prepare_cursor(kExternalSql, 6, types, CURSOR_OPT_GENERIC_PLAN);
    if (plan == NULL) {
      elog(ERROR, "flux_capture: cannot prepare flux.record_external: %s",
           SPI_result_code_string(SPI_result));
    }
    SPI_keepplan(plan);
    external_plan = plan;
  }
  rc = SPI_execute_plan(external_plan, values, nulls, false, 0);
  if (rc != SPI_OK_SELECT) {
    elog(ERROR, "flux_capture: flux.record_external failed: %s", SPI_result_code_string(rc));
  }
  SPI_finish();
}

Datum flux_capture(PG_FUNCTION_ARGS) {
  TriggerData* data = (TriggerData*)fcinfo->context;
  TupleDesc desc;
  const RowShape* shape;
  HeapTuple old_tuple = NULL;
  HeapTuple new_tuple = NULL;
  const char* op;
  char* old_row;
  char* new_row;
  char* pk;
  const char* capture;

  if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(data->tg_event) ||
      !TRIGGER_FIRED_FOR_ROW(data->tg_event)) {
    ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                    errmsg("flux.capture() must run as an AFTER ... FOR EACH ROW trigger")));
  }
  if (TRIGGER_FIRED_BY_INSERT(data->tg_event)) {
    op = "INSERT";
    new_tuple = data->tg_trigtuple;
  } else if (TRIGGER_FIRED_BY_UPDATE(data->tg_event)) {
    op = "UPDATE";
    old_tuple = data->tg_trigtuple;
    new_tuple = data->tg_newtuple;
  } else if (TRIGGER_FIRED_BY_DELETE(data->tg_event)) {
    op = "DELETE";
    old_tuple = data->tg_trigtuple;
  } else {
    ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                    errmsg("flux.capture() runs on INSERT, UPDATE and DELETE only")));
  }
  desc = RelationGetDescr(data->tg_relation);
  shape = rowShape(data->tg_relation);
  old_row = old_tuple == NULL ? NULL : rowJson(shape, old_tuple, desc);
  new_row = new_tuple == NULL ? NULL : rowJson(shape, new_tuple, desc);
  pk = new_tuple != NULL ? primaryKey(data->tg_trigger, shape, new_tuple, desc, new_row)
                         : primaryKey(data->tg_trigger, shape, old_tuple, desc, old_row);

  capture = GetConfigOption("flux.capture", true, false);
  if (capture != NULL && strcmp(capture, "on") == 0) {
    CapturedRow row;
    if (client_min_messages > NOTICE) {
      // A rollback could not report the change to Flux: fail rather than lose it.
      ereport(ERROR, (errcode(ERRCODE_RAISE_EXCEPTION),
                      errmsg("flux cannot log this change: client_min_messages is %s",
                             GetConfigOption("client_min_messages", false, false)),
                      errhint("the capture notices need client_min_messages at notice or below")));
    }
    row.schema = transactionCopy(get_namespace_name(RelationGetNamespace(data->tg_relation)));
    row.table = transactionCopy(RelationGetRelationName(data->tg_relation));
    row.op = op;
    row.pk = transactionCopy(pk);
    row.old_row = transactionCopy(old_row);
    row.new_row = transactionCopy(new_row);
    {
      MemoryContext caller = MemoryContextSwitchTo(TopTransactionContext);
      row.changed = changedColumns(desc, old_tuple, new_tuple);
      MemoryContextSwitchTo(caller);
    }
    row.txid = (int64)U64FromFullTransactionId(GetTopFullTransactionId());
    row.at = GetCurrentTimestamp();
    row.nest_level = GetCurrentTransactionNestLevel();
    row.rolled_back = false;
    bufferRow(&row, fcinfo->flinfo->fn_oid);
  } else {
    recordExternal(get_namespace_name(RelationGetNamespace(data->tg_relation)),
                   RelationGetRelationName(data->tg_relation), op, pk, old_row, new_row);
  }
  return PointerGetDatum(NULL);
}

static Datum jsonOrNull(const char* json, bool* is_null) {
  *is_null = json == NULL;
  // json is text inside: the row_to_json text goes in as it is, never parsed again.
  return json == NULL ? (Datum)0 : CStringGetTextDatum(json);
}

// Byte order, as COLLATE "C".
static int compareNames(const void* a, const void* b) {
  return strcmp(*(const char* const*)a, *(const char* const*)b);
}

// Whether an UPDATE left a column's value as it was, as flux.row_diff (the plpgsql capture)
// judges it on the JSON forms: the same bytes (an unchanged toasted value keeps its pointer),
// or else equal by the type's equality (numeric 1 = 1.00, jsonb by value) unless the type is
// collatable (text compares by its bytes, as JSON strings do); json as jsonb. Other types
// without equality count as changed. A rare type whose equality ignores its text form (interval '1
// day' = '24 hours') counts as unchanged here and changed in plpgsql.
static bool sameValue(Form_pg_attribute attribute, Datum a, Datum b) {
  TypeCacheEntry* type;
  if (datumIsEqual(a, b, attribute->attbyval, attribute->attlen)) return true;
  if (OidIsValid(attribute->attcollation)) return false;
  switch (attribute->atttypid) {  // equal exactly when their bits are
    case BOOLOID:
    case INT2OID:
    case INT4OID:
    case INT8OID:
    case OIDOID:
    case DATEOID:
    case TIMESTAMPOID:
    case TIMESTAMPTZOID:
      return false;
  }
  if (attribute->atttypid == JSONOID) {  // no equality of its own: compared as jsonb
    return DatumGetBool(DirectFunctionCall2(
        jsonb_eq, DirectFunctionCall1(jsonb_in, CStringGetDatum(TextDatumGetCString(a))),
        DirectFunctionCall1(jsonb_in, CStringGetDatum(TextDatumGetCString(b)))));
  }
  type = lookup_type_cache(attribute->atttypid, TYPECACHE_EQ_OPR_FINFO);
  if (!OidIsValid(type->eq_opr_finfo.fn_oid)) return false;
  return DatumGetBool(FunctionCall2Coll(&type->eq_opr_finfo, InvalidOid, a, b));
}

// The columns a row change touched, in byte order: every column for an INSERT (old NULL) or a
// DELETE (new NULL); for an UPDATE those that went from NULL to a value, or back, or whose
// value differs (sameValue). Computed on the tuples: parsing both rows' JSON into jsonb to
// diff them cost more than storing the row.
static ArrayType* changedColumns(TupleDesc desc, HeapTuple old_tuple, HeapTuple new_tuple) {
  const char** names = palloc((desc->natts + 1) * sizeof(char*));
  Datum* texts;
  int count = 0;
  for (int a = 0; a < desc->natts; ++a) {
    Form_pg_attribute attribute = TupleDescAttr(desc, a);
    if (attribute->attisdropped) continue;
    if (old_tuple != NULL && new_tuple != NULL) {
      bool old_null;
      bool new_null;
      Datum old_value = heap_getattr(old_tuple, a + 1, desc, &old_null);
      Datum new_value = heap_getattr(new_tuple, a + 1, desc, &new_null);
      if (old_null && new_null) continue;
      if (!old_null && !new_null && sameValue(attribute, old_value, new_value)) {
        continue;
      }
    }
    names[count++] = NameStr(attribute->attname);
  }
  qsort(names, count, sizeof(char*), compareNames);
  texts = palloc((count + 1) * sizeof(Datum));
  for (int i = 0; i < count; ++i) texts[i] = CStringGetTextDatum(names[i]);
  return construct_array(texts, count, TEXTOID, -1, false, TYPALIGN_INT);
}

// The columns a captured row sets, in kStoreSql's order; the others take their defaults.
enum StoredColumn {
  kRequest,
  kSchema,
  kTable,
  kPk,
  kRowKey,
  kOp,
  kOld,
  kNew,
  kChanged,
  kTxid,
  kAt,
  kRolledBack,
  kStoredColumns
};
static const char* const kStoredColumnNames[kStoredColumns] = {
    "request_id", "schema_name", "table_name",      "pk",   "row_key", "op",
    "old",        "new",         "changed_columns", "txid", "at",      "rolled_back"};
static const Oid kStoredColumnTypes[kStoredColumns] = {
    UUIDOID, TEXTOID, TEXTOID,      TEXTOID, INT8OID,        TEXTOID,
    JSONOID, JSONOID, TEXTARRAYOID, INT8OID, TIMESTAMPTZOID, BOOLOID};

// flux.row_key(schema, table, pk), the row index's key: the same bytes hashed the same way
// (hashtextextended under COLLATE "C" hashes the text's bytes).
static int64 rowKey(const char* schema, const char* table, const char* pk) {
  StringInfoData key;
  initStringInfo(&key);
  appendStringInfoString(&key, schema);
  appendStringInfoChar(&key, '.');
  appendStringInfoString(&key, table);
  appendStringInfoChar(&key, '.');
  if (pk != NULL) appendStringInfoString(&key, pk);
  return DatumGetInt64(hash_any_extended((const unsigned char*)key.data, key.len, 0));
}

// The values of a row, in the memory context current at the call.
static void storedValues(const CapturedRow* row, Datum request_uuid, bool request_null,
                         Datum* values, bool* nulls) {
  values[kRequest] = request_uuid;
  nulls[kRequest] = request_null;
  values[kSchema] = CStringGetTextDatum(row->schema);
  nulls[kSchema] = false;
  values[kTable] = CStringGetTextDatum(row->table);
  nulls[kTable] = false;
  nulls[kPk] = row->pk == NULL;
  values[kPk] = row->pk == NULL ? (Datum)0 : CStringGetTextDatum(row->pk);
  values[kRowKey] = Int64GetDatum(rowKey(row->schema, row->table, row->pk));
  nulls[kRowKey] = false;
  values[kOp] = CStringGetTextDatum(row->op);
  nulls[kOp] = false;
  values[kOld] = jsonOrNull(row->old_row, &nulls[kOld]);
  values[kNew] = jsonOrNull(row->new_row, &nulls[kNew]);
  values[kChanged] = PointerGetDatum(row->changed);
  nulls[kChanged] = false;
  values[kTxid] = Int64GetDatum(row->txid);
  nulls[kTxid] = false;
  values[kAt] = TimestampTzGetDatum(row->at);
  nulls[kAt] = false;
  values[kRolledBack] = BoolGetDatum(row->rolled_back);
  nulls[kRolledBack] = false;
}

// How captured rows map onto flux.state_mutations' attributes: kept across transactions until
// a relcache invalidation of the table (ALTER TABLE, DROP) or of every relation.
typedef struct TableLayout {
  MemoryContext context;  // holds the arrays and the expressions; NULL until built
  Oid relid;
  int natts;
  int* source;           // per attribute: the StoredColumn it takes, or -1
  ExprState** defaults;  // per attribute without a source: its default, ready to run, or NULL
} TableLayout;

static TableLayout layout;
static bool layout_stale;

static void onRelcacheInvalidation(Datum arg, Oid relid) {
  if (relid == InvalidOid || relid == layout.relid) layout_stale = true;
  invalidateRowShapes(relid);
}

static void buildLayout(Relation rel) {
  TupleDesc desc = RelationGetDescr(rel);
  MemoryContext caller;
  if (layout.context != NULL) MemoryContextDelete(layout.context);
  memset(&layout, 0, sizeof layout);
  layout_stale = false;  // an invalidation while this runs makes the next use build again
  layout.context =
      AllocSetContextCreate(CacheMemoryContext, "flux_capture layout", ALLOCSET_SMALL_SIZES);
  caller = MemoryContextSwitchTo(layout.context);
  layout.natts = desc->natts;
  layout.source = palloc(desc->natts * sizeof(int));
  layout.defaults = palloc0(desc->natts * sizeof(ExprState*));
  for (int a = 0; a < desc->natts; ++a) {
    Form_pg_attribute attribute = TupleDescAttr(desc, a);
    layout.source[a] = -1;
    if (attribute->attisdropped) continue;
    for (int c = 0; c < kStoredColumns; ++c) {
      if (strcmp(NameStr(attribute->attname), kStoredColumnNames[c]) == 0) layout.source[a] = c;
    }
    if (layout.source[a] >= 0 && attribute->atttypid != kStoredColumnTypes[layout.source[a]]) {
      MemoryContextSwitchTo(caller);
      layout_stale = true;
      ereport(ERROR, (errmsg("flux cannot store captured rows: flux.state_mutations.%s has an "
                             "unexpected type",
                             NameStr(attribute->attname))));
    }
    if (layout.source[a] < 0 && !attribute->attgenerated) {
      Node* expression = build_column_default(rel, a + 1);
      // No executor node: the state outlives the transaction that builds it (nextval() and
      // constants; a default with a subquery is not allowed).
      if (expression != NULL) {
        layout.defaults[a] = ExecInitExpr(expression_planner((Expr*)expression), NULL);
      }
    }
  }
  MemoryContextSwitchTo(caller);
  layout.relid = RelationGetRelid(rel);
}

// Whether the fast path may store into the table: a plain table as Flux makes it, with no row
// triggers, CHECK constraints or generated columns, that row level security does not apply to.
// Its indexes are checked as they are opened (storeDirectly).
static bool plainTable(Relation rel) {
  TupleConstr* constraints = RelationGetDescr(rel)->constr;
  return rel->rd_rel->relkind == RELKIND_RELATION && rel->trigdesc == NULL &&
         (constraints == NULL ||
          (constraints->num_check == 0 && !constraints->has_generated_stored));
}

// The fast path: heap_insert and one index_insert per index, the way a catalogue row is stored
// (CatalogTupleInsert), without the executor state, result relation and tuple slot of
// ExecSimpleRelationInsert (~10k instructions a commit). Columns the capture does not set (id,
// and any a later version adds) get their defaults; NOT NULL is checked here, as nothing else
// would. Returns false, having stored nothing, when the table or one of its indexes is beyond
// it (an expression, partial, exclusion or deferred unique index): storeWithSql handles those.
static bool storeDirectly(Oid relid, Datum request_uuid, bool request_null) {
  Relation rel;
  TupleDesc desc;
  List* index_oids;
  Relation* indexes;
  IndexInfo** infos;
  int opened = 0;
  bool direct;
  ListCell* cell;

  if (check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED) return false;
  if (pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK) {
    ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                    errmsg("flux cannot store captured rows: the owner of flux.capture() may "
                           "not insert into flux.state_mutations")));
  }
  // Taking the lock processes pending invalidations: the layout is current after it.
  rel = table_open(relid, RowExclusiveLock);
  if (layout_stale && (strcmp(RelationGetRelationName(rel), "state_mutations") != 0 ||
                       RelationGetNamespace(rel) != get_namespace_oid("flux", false))) {
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("flux cannot store captured rows: flux.state_mutations was renamed "
                           "or moved while this transaction ran")));
  }
  desc = RelationGetDescr(rel);
  direct = plainTable(rel);
  if (direct && (layout.context == NULL || layout_stale || layout.relid != relid ||
                 layout.natts != desc->natts)) {
    buildLayout(rel);
  }
  index_oids = RelationGetIndexList(rel);
  indexes = palloc(Max(list_length(index_oids), 1) * sizeof(Relation));
  infos = palloc(Max(list_length(index_oids), 1) * sizeof(IndexInfo*));
  foreach (cell, index_oids) {
    if (!direct) break;
    indexes[opened] = index_open(lfirst_oid(cell), RowExclusiveLock);
    infos[opened] = BuildIndexInfo(indexes[opened]);
    direct = infos[opened]->ii_Expressions == NIL && infos[opened]->ii_Predicate == NIL &&
             infos[opened]->ii_ExclusionOps == NULL &&
             (!infos[opened]->ii_Unique || indexes[opened]->rd_index->indimmediate);
    ++opened;
  }

  if (direct) {
    // The defaults run in its per-tuple memory, which also holds each row's values and tuple.
    ExprContext* econtext = CreateStandaloneExprContext();
    Datum* attributes = palloc(desc->natts * sizeof(Datum));
    bool* attribute_nulls = palloc(desc->natts * sizeof(bool));
    for (int i = buffer.stored; i < buffer.count; ++i) {
      MemoryContext caller = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
      Datum values[kStoredColumns];
      bool nulls[kStoredColumns];
      HeapTuple tuple;
      storedValues(&buffer.rows[i], request_uuid, request_null, values, nulls);
      for (int a = 0; a < desc->natts; ++a) {
        Form_pg_attribute attribute = TupleDescAttr(desc, a);
        int from = layout.source[a];
        if (from >= 0) {
          attributes[a] = values[from];
          attribute_nulls[a] = nulls[from];
        } else if (layout.defaults[a] != NULL) {
          attributes[a] = ExecEvalExpr(layout.defaults[a], econtext, &attribute_nulls[a]);
        } else {
          attributes[a] = (Datum)0;
          attribute_nulls[a] = true;
        }
        if (attribute_nulls[a] && attribute->attnotnull && !attribute->attisdropped) {
          ereport(ERROR, (errcode(ERRCODE_NOT_NULL_VIOLATION),
                          errmsg("flux cannot store captured rows: no value for "
                                 "flux.state_mutations.%s, which is NOT NULL without a default",
                                 NameStr(attribute->attname))));
        }
      }
      tuple = heap_form_tuple(desc, attributes, attribute_nulls);
      heap_insert(rel, tuple, GetCurrentCommandId(true), 0, NULL);
      for (int x = 0; x < opened; ++x) {
        Datum key[INDEX_MAX_KEYS];
        bool key_nulls[INDEX_MAX_KEYS];
        if (!infos[x]->ii_ReadyForInserts) continue;
        for (int k = 0; k < infos[x]->ii_NumIndexAttrs; ++k) {
          AttrNumber column = infos[x]->ii_IndexAttrNumbers[k];
          key[k] = attributes[column - 1];
          key_nulls[k] = attribute_nulls[column - 1];
        }
        index_insert(indexes[x], key, key_nulls, &tuple->t_self, rel,
                     infos[x]->ii_Unique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO, false, infos[x]);
      }
      MemoryContextSwitchTo(caller);
      ResetExprContext(econtext);
    }
    FreeExprContext(econtext, true);
  }

  for (int x = 0; x < opened; ++x) index_close(indexes[x], NoLock);
  table_close(rel, NoLock);
  return direct;
}

// The general path, through SPI: one INSERT ... VALUES per row.
static void storeWithSql(Datum request_uuid, bool request_null) {
  MemoryContext per_row =
      AllocSetContextCreate(CurrentMemoryContext, "flux_capture store", ALLOCSET_SMALL_SIZES);
  if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "flux_capture: SPI_connect failed");
  if (store_plan == NULL) {
    SPIPlanPtr plan = SPI_prepare_cursor(kStoreSql, kStoredColumns, (Oid*)kStoredColumnTypes,
                                         CURSOR_OPT_GENERIC_PLAN);
    if (plan == NULL) {
      elog(ERROR, "flux_capture: cannot prepare the mutation log INSERT: %s",
           SPI_result_code_string(SPI_result));
    }
    SPI_keepplan(plan);
    store_plan = plan;
  }
  for (int i = buffer.stored; i < buffer.count; ++i) {
    MemoryContext spi = MemoryContextSwitchTo(per_row);
    Datum values[kStoredColumns];
    bool nulls[kStoredColumns];
    char null_flags[kStoredColumns];
    int rc;
    storedValues(&buffer.rows[i], request_uuid, request_null, values, nulls);
    for (int c = 0; c < kStoredColumns; ++c) null_flags[c] = nulls[c] ? 'n' : ' ';
    MemoryContextSwitchTo(spi);
    rc = SPI_execute_plan(store_plan, values, null_flags, false, 0);
    if (rc != SPI_OK_INSERT) {
      elog(ERROR, "flux_capture: storing a captured row failed: %s", SPI_result_code_string(rc));
    }
    MemoryContextReset(per_row);
  }
  SPI_finish();
  MemoryContextDelete(per_row);
}

static int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// flux.request_id as a uuid. The canonical form Flux sets (8-4-4-4-12 hex digits) is parsed
// here (uuid_in cost a tenth of storing a row); anything else goes through uuid_in, which says
// what is wrong with it.
static Datum requestUuid(const char* text) {
  pg_uuid_t* uuid = palloc(sizeof(pg_uuid_t));
  int length = 0;
  for (const char* c = text; *c != '\0'; ++c, ++length) {
    bool dash = length == 8 || length == 13 || length == 18 || length == 23;
    if (length >= 36 || (dash ? *c != '-' : hexDigit(*c) < 0)) {
      return DirectFunctionCall1(uuid_in, CStringGetDatum(text));
    }
  }
  if (length != 36) return DirectFunctionCall1(uuid_in, CStringGetDatum(text));
  for (int i = 0, at = 0; i < UUID_LEN; ++i, at += 2) {
    if (text[at] == '-') ++at;
    uuid->data[i] = (unsigned char)(hexDigit(text[at]) << 4 | hexDigit(text[at + 1]));
  }
  return UUIDPGetDatum(uuid);
}

// Inserts the rows not stored yet into flux.state_mutations, as the owner of flux.capture()
// (like SECURITY DEFINER). An error fails the COMMIT (or PREPARE).
static void storeBuffered(void) {
  const char* request_id;
  Datum request_uuid = (Datum)0;
  bool request_null = true;
  Oid relid;
  Oid saved_user;
  int saved_context;

  if (buffer.rows == NULL || buffer.stored == buffer.count) return;
  request_id = GetConfigOption("flux.request_id", true, false);
  if (request_id != NULL && request_id[0] != '\0') {
    request_uuid = requestUuid(request_id);
    request_null = false;
  }
  // The table the layout was built for while no invalidation has touched it since (one arriving
  // now is seen when storeDirectly locks the table, which then checks the name again).
  relid = layout.context != NULL && !layout_stale
              ? layout.relid
              : get_relname_relid("state_mutations", get_namespace_oid("flux", false));
  if (!OidIsValid(relid)) {
    ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
                    errmsg("flux cannot store captured rows: flux.state_mutations is missing")));
  }

  // On an error the transaction aborts, which restores the user and the snapshot stack.
  buffer.storing = true;
  GetUserIdAndSecContext(&saved_user, &saved_context);
  SetUserIdAndSecContext(buffer.owner, saved_context | SECURITY_LOCAL_USERID_CHANGE);
  // The portals are closed by now, and their snapshots with them.
  PushActiveSnapshot(GetTransactionSnapshot());
  if (!storeDirectly(relid, request_uuid, request_null)) storeWithSql(request_uuid, request_null);
  PopActiveSnapshot();
  SetUserIdAndSecContext(saved_user, saved_context);
  buffer.storing = false;
  buffer.stored = buffer.count;
}

static void appendPayload(StringInfo out, const CapturedRow* row) {
  char at[MAXDATELEN + 1];
  appendStringInfoString(out, "{\"s\":");
  escape_json(out, row->schema);
  appendStringInfoString(out, ",\"t\":");
  escape_json(out, row->table);
  appendStringInfo(out, ",\"op\":\"%s\",\"pk\":", row->op);
  if (row->pk == NULL) {
    appendStringInfoString(out, "null");
  } else {
    escape_json(out, row->pk);
  }
  appendStringInfoString(out, ",\"old\":");
  appendStringInfoString(out, row->old_row == NULL ? "null" : row->old_row);
  appendStringInfoString(out, ",\"new\":");
  appendStringInfoString(out, row->new_row == NULL ? "null" : row->new_row);
  JsonEncodeDateTime(at, TimestampTzGetDatum(row->at), TIMESTAMPTZOID, NULL);
  appendStringInfo(out, ",\"tx\":" INT64_FORMAT ",\"at\":\"%s\"}", row->txid, at);
}

// Sends every buffered row (stored or not: the INSERT is undone too) in one FX002 notice. Runs
// inside AbortTransaction, where an error must not escape: if the report cannot be built or sent
// (out of memory), the rows are lost and the server log says so.
static void reportAborted(void) {
  MemoryContext caller = CurrentMemoryContext;
  int count = buffer.count;
  if (buffer.rows == NULL || count == 0) return;
  PG_TRY();
  {
    StringInfoData json;
    MemoryContextSwitchTo(TopTransactionContext);
    initStringInfo(&json);
    appendStringInfoChar(&json, '[');
    for (int i = 0; i < count; ++i) {
      if (i > 0) appendStringInfoChar(&json, ',');
      appendPayload(&json, &buffer.rows[i]);
    }
    appendStringInfoChar(&json, ']');
    // A session that hides notices gets a warning (the capture refused to run when even
    // warnings are hidden, unless the setting changed since).
    ereport(client_min_messages > NOTICE ? WARNING : NOTICE,
            (errcode(FX002), errmsg_internal("%s", json.data), errhidestmt(true),
             errhidecontext(true)));
    MemoryContextSwitchTo(caller);
  }
  PG_CATCH();
  {
    MemoryContextSwitchTo(caller);
    FlushErrorState();
    ereport(LOG, (errmsg("flux_capture: could not report %d rolled-back row changes to the "
                         "client; they are missing from flux.state_mutations",
                         count)));
  }
  PG_END_TRY();
}

static void onTransactionEvent(XactEvent event, void* arg) {
  switch (event) {
    case XACT_EVENT_PRE_COMMIT:
    case XACT_EVENT_PRE_PREPARE:
      storeBuffered();
      break;
    case XACT_EVENT_ABORT:
      reportAborted();
      resetBuffer();
      break;
    case XACT_EVENT_COMMIT:
    case XACT_EVENT_PARALLEL_COMMIT:
    case XACT_EVENT_PARALLEL_ABORT:
    case XACT_EVENT_PREPARE:
      resetBuffer();
      break;
    case XACT_EVENT_PARALLEL_PRE_COMMIT:
      break;
  }
}

// While the subtransaction ending at the current nesting level calls back, rows at that level
// or deeper belong to it: they move to the parent, rolled back when it aborts.
static void onSubtransactionEvent(SubXactEvent event, SubTransactionId subtransaction,
                                  SubTransactionId parent, void* arg) {
  int level;
  if (buffer.rows == NULL) return;
  if (event != SUBXACT_EVENT_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB) return;
  level = GetCurrentTransactionNestLevel();
  for (int i = 0; i < buffer.count; ++i) {
    CapturedRow* row = &buffer.rows[i];
    if (row->nest_level < level) continue;
    row->nest_level = level - 1;
    if (event == SUBXACT_EVENT_ABORT_SUB) row->rolled_back = true;
  }
}

void _PG_init(void) {
  CacheRegisterRelcacheCallback(onRelcacheInvalidation, (Datum)0);
  RegisterXactCallback(onTransactionEvent, NULL);
  RegisterSubXactCallback(onSubtransactionEvent, NULL);
}

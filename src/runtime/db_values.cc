#include "runtime/db_values.h"

#include <cmath>
#include <cstdio>
#include <ctime>

#include "runtime/v8_strings.h"

namespace flux::runtime {

namespace {

std::string utf8(v8::Isolate* isolate, v8::Local<v8::Value> value) {
  v8::String::Utf8Value s(isolate, value);
  return *s ? std::string(*s, s.length()) : std::string();
}

bool isJsonType(std::string_view type) { return type == "json" || type == "jsonb"; }
bool isArrayType(std::string_view type) { return type.ends_with("[]"); }

Result<std::optional<std::string>> jsonText(v8::Local<v8::Context> context,
                                            v8::Local<v8::Value> value) {
  v8::Local<v8::String> json;
  if (!v8::JSON::Stringify(context, value).ToLocal(&json)) {
    return fail(ErrorCode::kInvalidArgument, "value cannot be converted to JSON");
  }
  return utf8(context->GetIsolate(), json);
}

std::string isoTime(double ms) {
  auto seconds = static_cast<time_t>(std::floor(ms / 1000));
  int millis = static_cast<int>(ms - static_cast<double>(seconds) * 1000);
  struct tm tm;
  gmtime_r(&seconds, &tm);
  char buf[96];
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  return buf;
}

// Element type of a PostgreSQL array type, or 0.
uint32_t arrayElementType(uint32_t oid) {
  switch (oid) {
    case 1000:
      return 16;  // bool[]
    case 1001:
      return 17;  // bytea[]
    case 1005:
      return 21;  // int2[]
    case 1007:
      return 23;  // int4[]
    case 1016:
      return 20;  // int8[]
    case 1021:
      return 700;  // float4[]
    case 1022:
      return 701;  // float8[]
    case 1231:
      return 1700;  // numeric[]
    case 1009:
      return 25;  // text[]
    case 1015:
      return 1043;  // varchar[]
    case 1014:
      return 1042;  // bpchar[]
    case 2951:
      return 2950;  // uuid[]
    case 199:
      return 114;  // json[]
    case 3807:
      return 3802;  // jsonb[]
    case 1185:
      return 1184;  // timestamptz[]
    case 1115:
      return 1114;  // timestamp[]
    case 1182:
      return 1082;  // date[]
    default:
      return 0;
  }
}

// "2026-03-10 14:22:01.123456+00" -> "2026-03-10T14:22:01.123Z" (sessions run in UTC).
std::string isoFromTimestamp(const std::string& text, bool with_zone) {
  // infinity, -infinity and BC dates have no ISO 8601 form that Date parses: kept as text.
  if (text.empty() || !isdigit(static_cast<unsigned char>(text[0])) || text.ends_with(" BC")) {
    return text;
  }
  std::string out = text;
  if (out.size() > 10 && out[10] == ' ') out[10] = 'T';
  std::string zone;
  if (with_zone) {
    size_t z = out.find_last_of("+-");
    if (z != std::string::npos && z > 10) {
      zone = out.substr(z);
      out.resize(z);
    }
  }
  size_t dot = out.find('.');
  if (dot != std::string::npos && out.size() > dot + 4) out.resize(dot + 4);
  if (with_zone) out += (zone == "+00" || zone.empty()) ? "Z" : zone + ":00";
  return out;
}

v8::Local<v8::Value> parseArray(v8::Local<v8::Context> context, uint32_t element_oid,
                                const std::string& text, size_t& pos);

v8::Local<v8::Value> parseArrayText(v8::Local<v8::Context> context, uint32_t element_oid,
                                    const std::string& text) {
  size_t pos = 0;
  if (!text.empty() && text[0] == '[') pos = text.find('=') + 1;  // "[0:2]={...}"
  return parseArray(context, element_oid, text, pos);
}

v8::Local<v8::Value> parseArray(v8::Local<v8::Context> context, uint32_t element_oid,
                                const std::string& text, size_t& pos) {
  v8::Isolate* isolate = context->GetIsolate();
  auto array = v8::Array::New(isolate);
  uint32_t index = 0;
  if (pos >= text.size() || text[pos] != '{') return v8String(isolate, text);
  ++pos;
  while (pos < text.size() && text[pos] != '}') {
    v8::Local<v8::Value> element;
    if (text[pos] == '{') {
      element = parseArray(context, element_oid, text, pos);
    } else if (text[pos] == '"') {
      std::string item;
      for (++pos; pos < text.size() && text[pos] != '"'; ++pos) {
        if (text[pos] == '\\' && pos + 1 < text.size()) ++pos;
        item.push_back(text[pos]);
      }
      ++pos;
      element = fromSqlValue(context, element_oid, item);
    } else {
      size_t end = text.find_first_of(",}", pos);
      std::string item = text.substr(pos, end - pos);
      pos = end;
      element = item == "NULL" ? v8::Null(isolate).As<v8::Value>()
                               : fromSqlValue(context, element_oid, item);
    }
    (void)array->Set(context, index++, element).FromMaybe(false);
    if (pos < text.size() && text[pos] == ',') ++pos;
  }
  ++pos;
  return array;
}

}  // namespace

Result<std::optional<std::string>> toSqlValue(v8::Local<v8::Context> context,
                                              v8::Local<v8::Value> value,
                                              std::string_view column_type) {
  v8::Isolate* isolate = context->GetIsolate();
  if (value->IsNullOrUndefined()) return std::optional<std::string>();
  if (isJsonType(column_type) && !value->IsString()) return jsonText(context, value);
  if (value->IsString()) return utf8(isolate, value);
  if (value->IsBoolean()) return std::string(value->IsTrue() ? "true" : "false");
  if (value->IsNumber()) {
    double d = value.As<v8::Number>()->Value();
    if (std::isfinite(d) && d == std::trunc(d) && std::fabs(d) < 9007199254740992.0) {
      return std::to_string(static_cast<int64_t>(d));
    }
    return utf8(isolate, value);  // JS formatting: "0.1", "1e+21", "NaN", "Infinity"
  }
  if (value->IsBigInt()) return utf8(isolate, value);
  if (value->IsDate()) {
    double ms = value.As<v8::Date>()->ValueOf();
    if (!std::isfinite(ms)) return fail(ErrorCode::kInvalidArgument, "Invalid Date");
    return isoTime(ms);
  }
  if (value->IsArrayBufferView() || value->IsArrayBuffer()) {
    const uint8_t* data;
    size_t size;
    if (value->IsArrayBufferView()) {
      auto view = value.As<v8::ArrayBufferView>();
      data = static_cast<const uint8_t*>(view->Buffer()->Data()) + view->ByteOffset();
      size = view->ByteLength();
    } else {
      auto buffer = value.As<v8::ArrayBuffer>();
      data = static_cast<const uint8_t*>(buffer->Data());
      size = buffer->ByteLength();
    }
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "\\x";
    out.reserve(2 + size * 2);
    for (size_t i = 0; i < size; ++i) {
      out.push_back(kHex[data[i] >> 4]);
      out.push_back(kHex[data[i] & 15]);
    }
    return out;
  }
  if (value->IsArray()) {
    auto array = value.As<v8::Array>();
    bool primitive = true;
    for (uint32_t i = 0; i < array->Length() && primitive; ++i) {
      v8::Local<v8::Value> e;
      if (!array->Get(context, i).ToLocal(&e))
        return fail(ErrorCode::kInvalidArgument, "bad array");
      primitive = !e->IsObject() || e->IsDate() || e->IsArrayBufferView() || e->IsArray();
    }
    if (!primitive && !isArrayType(column_type)) return jsonText(context, value);
    std::string out = "{";
    for (uint32_t i = 0; i < array->Length(); ++i) {
      v8::Local<v8::Value> e = array->Get(context, i).ToLocalChecked();
      if (i) out.push_back(',');
      auto element = toSqlValue(context, e);
      if (!element) return element;
      if (!*element) {
        out += "NULL";
      } else if (e->IsArray()) {
        out += **element;
      } else {
        out.push_back('"');
        for (char c : **element) {
          if (c == '"' || c == '\\') out.push_back('\\');
          out.push_back(c);
        }
        out.push_back('"');
      }
    }
    out.push_back('}');
    return out;
  }
  if (value->IsObject()) return jsonText(context, value);
  return fail(ErrorCode::kInvalidArgument,
              "cannot use a " + utf8(isolate, value->TypeOf(isolate)) + " as a SQL value");
}

v8::Local<v8::Value> fromSqlValue(v8::Local<v8::Context> context, uint32_t oid,
                                  const std::string& text) {
  v8::Isolate* isolate = context->GetIsolate();
  switch (oid) {
    case 16:  // bool
      return v8::Boolean::New(isolate, text == "t");
    case 21:
    case 23:
    case 26:  // int2, int4, oid
    case 700:
    case 701:  // float4, float8
      return v8::Number::New(isolate, std::strtod(text.c_str(), nullptr));
    case 20: {  // int8: a number only when exact
      long long v = std::strtoll(text.c_str(), nullptr, 10);
      if (v > -9007199254740992LL && v < 9007199254740992LL) {
        return v8::Number::New(isolate, static_cast<double>(v));
      }
      return v8String(isolate, text);
    }
    case 114:
    case 3802: {  // json, jsonb
      v8::Local<v8::Value> parsed;
      if (v8::JSON::Parse(context, v8String(isolate, text)).ToLocal(&parsed)) return parsed;
      return v8String(isolate, text);
    }
    case 1184:  // timestamptz
      return v8String(isolate, isoFromTimestamp(text, true));
    case 1114:  // timestamp
      return v8String(isolate, isoFromTimestamp(text, false));
    case 17: {  // bytea, hex format
      size_t n = text.size() >= 2 ? (text.size() - 2) / 2 : 0;
      auto store = v8::ArrayBuffer::NewBackingStore(isolate, n);
      auto* out = static_cast<uint8_t*>(store->Data());
      for (size_t i = 0; i < n; ++i) {
        out[i] = static_cast<uint8_t>(std::stoi(text.substr(2 + 2 * i, 2), nullptr, 16));
      }
      return v8::Uint8Array::New(v8::ArrayBuffer::New(isolate, std::move(store)), 0, n);
    }
    default:
      if (uint32_t element = arrayElementType(oid)) return parseArrayText(context, element, text);
      return v8String(isolate, text);
  }
}

v8::Local<v8::Array> rowsToJs(v8::Local<v8::Context> context, const data::QueryResult& result) {
  v8::Isolate* isolate = context->GetIsolate();
  std::vector<v8::Local<v8::Value>> names;
  for (const data::PgColumn& c : result.columns) names.push_back(v8String(isolate, c.name));
  auto rows = v8::Array::New(isolate, static_cast<int>(result.rows.size()));
  for (size_t r = 0; r < result.rows.size(); ++r) {
    auto row = v8::Object::New(isolate);
    for (size_t c = 0; c < result.columns.size(); ++c) {
      const auto& cell = result.rows[r][c];
      v8::Local<v8::Value> value = cell ? fromSqlValue(context, result.columns[c].type_oid, *cell)
                                        : v8::Null(isolate).As<v8::Value>();
      (void)row->Set(context, names[c], value).FromMaybe(false);
    }
    (void)rows->Set(context, static_cast<uint32_t>(r), row).FromMaybe(false);
  }
  return rows;
}

}  // namespace flux::runtime

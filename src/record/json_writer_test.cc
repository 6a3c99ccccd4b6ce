#include "record/json_writer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

namespace flux::record {
namespace {

using nlohmann::json;
using namespace std::string_literals;

ExecutionRecord nastyRecord() {
  ExecutionRecord record;
  record.id = "0192a4f3-7c1e-7d2a-9b3c-4e5f60718293";
  record.kind = "http";
  record.replay_of = "0192a4f3-7c1e-7d2a-9b3c-4e5f60718294";
  record.function = "f\"n\\";
  record.method = "GET";
  record.path = "/a\tb\nc\x01\x1f";
  record.status = -1;
  record.error = RecordedError{"m\b\f", "", "s\r", "c", 4294967295u};
  record.started_at_us = 9007199254740993;
  record.duration_us = -5;
  record.request = {{"body", "x\0y\xffz"s}, {"n", 1.5}, {"list", {true, nullptr, -3}}};
  record.response = "just a string\x7f";
  Span span;
  span.id = 4294967295u;
  span.name = "é€😀";
  span.input = {{"k", "\\u0000"}};
  span.error = "e";
  span.status = SpanStatus::kSkipped;
  span.logs = {"a", ""};
  record.spans = {span, Span{}};
  record.journal = json::array({{{"kind", "random"}, {"value", 0.1}}});
  record.logs = {"\0"s};
  return record;
}

TEST(JsonWriterTest, RecordTextParsesToToJson) {
  ExecutionRecord record = nastyRecord();
  std::string text = toJsonText(record);
  json parsed = json::parse(text);
  EXPECT_EQ(parsed, json::parse(dumpJson(toJson(record))));
  auto back = recordFromJson(parsed);
  ASSERT_TRUE(back) << back.error().toString();
  record.request["body"] = "x\0y\xEF\xBF\xBDz"s;  // invalid UTF-8 becomes U+FFFD
  EXPECT_EQ(*back, record);
}

TEST(JsonWriterTest, NulIsEscapedOrReplaced) {
  std::string escaped;
  JsonWriter(escaped, NulCharacter::kEscape).string("a\0b"s);
  EXPECT_EQ(escaped, "\"a\\u0000b\"");
  std::string replaced;
  JsonWriter writer(replaced, NulCharacter::kReplace);
  writer.string("a\0b"s);
  writer.raw(" ");
  writer.value(json{{"k", "c\0d"s}, {"lit", "\\u0000"}});
  EXPECT_EQ(replaced,
            "\"a\xEF\xBF\xBD"
            "b\" {\"k\":\"c\xEF\xBF\xBD"
            "d\",\"lit\":\"\\\\u0000\"}");
}

TEST(JsonWriterTest, NumbersReadBackAsTheSameValueAndType) {
  json numbers = json::array({1.0, 0.1, -2.5e-300, 1e300, 123456789.125, -0.0, 0, -7,
                              18446744073709551615ull, std::nan(""), INFINITY});
  std::string text;
  JsonWriter(text, NulCharacter::kEscape).value(numbers);
  json back = json::parse(text);
  ASSERT_EQ(back.size(), numbers.size());
  for (size_t i = 0; i + 2 < numbers.size(); ++i) {
    EXPECT_EQ(back[i], numbers[i]) << i << ": " << text;
    EXPECT_EQ(back[i].is_number_float(), numbers[i].is_number_float()) << i << ": " << text;
  }
  EXPECT_TRUE(back[9].is_null());
  EXPECT_TRUE(back[10].is_null());
  EXPECT_EQ(text.substr(0, 9), "[1.0,0.1,");
}

TEST(JsonWriterTest, SummaryMatchesToJson) {
  RecordSummary summary = RecordSummary::of(nastyRecord());
  std::string text;
  JsonWriter(text, NulCharacter::kEscape).summary(summary);
  EXPECT_EQ(json::parse(text), toJson(summary));
}

}  // namespace
}  // namespace flux::record

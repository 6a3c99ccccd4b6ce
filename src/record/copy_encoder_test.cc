#include "record/copy_encoder.h"

#include <gtest/gtest.h>

#include <string>

namespace flux::record {
namespace {

using nlohmann::json;

TEST(CopyEncoderTest, EscapesWhatCopyTextFormatReads) {
  std::string out;
  appendCopyText(out, "a\tb\nc\rd\\e \\N \\. \"q\" 'x'");
  EXPECT_EQ(out, "a\\tb\\nc\\rd\\\\e \\\\N \\\\. \"q\" 'x'");
}

TEST(CopyEncoderTest, NulAndInvalidUtf8BecomeReplacementCharacters) {
  const std::string kFffd = "\xEF\xBF\xBD";
  EXPECT_EQ(sanitizedUtf8(std::string("a\0b", 3)), "a" + kFffd + "b");
  EXPECT_EQ(sanitizedUtf8("\xff"), kFffd);
  EXPECT_EQ(sanitizedUtf8("\xC0\xAF"), kFffd + kFffd);              // overlong '/'
  EXPECT_EQ(sanitizedUtf8("\xED\xA0\x80"), kFffd + kFffd + kFffd);  // a surrogate
  EXPECT_EQ(sanitizedUtf8("\xE2\x82"), kFffd + kFffd);              // cut short
  EXPECT_EQ(sanitizedUtf8("é€😀"), "é€😀");
  std::string out;
  appendCopyText(out, std::string("x\0\xff\t", 4));
  EXPECT_EQ(out, "x" + kFffd + kFffd + "\\t");
}

TEST(CopyEncoderTest, JsonNulEscapesAreReplacedOnlyWhenTheyAreEscapes) {
  json value = {{"a", std::string("x\0y", 3)}, {"b", "\\u0000"}, {"c", "\\\\u0000"}};
  std::string text = jsonForPostgres(value);
  json back = json::parse(text);
  EXPECT_EQ(back["a"], "x\xEF\xBF\xBDy");
  EXPECT_EQ(back["b"], "\\u0000");  // a backslash and five characters, kept as they were
  EXPECT_EQ(back["c"], "\\\\u0000");
}

TEST(CopyEncoderTest, TimestampsAreUtcWithMicroseconds) {
  EXPECT_EQ(timestampText(0), "1970-01-01 00:00:00.000000+00");
  EXPECT_EQ(timestampText(1714567890123456), "2024-05-01 12:51:30.123456+00");
}

TEST(CopyEncoderTest, RowHasEveryColumnInOrder) {
  ExecutionRecord record;
  record.id = "0192a4f3-7c1e-7d2a-9b3c-4e5f60718293";
  record.kind = "http";
  record.parent_id = "not-a-uuid";
  record.function = "f\tn";
  record.method = "GET";
  record.path = "/a\nb";
  record.status = 200;
  record.started_at_us = 1000001;
  record.duration_us = 7;
  record.request = {{"body", "line1\nline2\t\\"}};
  record.logs = {"l"};
  std::string row;
  appendCopyRow(row, record);
  ASSERT_EQ(row.back(), '\n');
  row.pop_back();
  std::vector<std::string> fields;
  size_t start = 0;
  for (size_t tab = row.find('\t'); tab != std::string::npos; tab = row.find('\t', start)) {
    fields.push_back(row.substr(start, tab - start));
    start = tab + 1;
  }
  fields.push_back(row.substr(start));
  ASSERT_EQ(fields.size(), 19u) << row;  // the columns of kExecutionCopyColumns
  EXPECT_EQ(fields[0], record.id);
  EXPECT_EQ(fields[1], "http");
  EXPECT_EQ(fields[2], "\\N");  // not a UUID: NULL
  EXPECT_EQ(fields[3], "\\N");
  EXPECT_EQ(fields[5], "f\\tn");
  EXPECT_EQ(fields[9], "/a\\nb");
  EXPECT_EQ(fields[10], "200");
  EXPECT_EQ(fields[11], "\\N");  // no error
  EXPECT_EQ(fields[12], "1970-01-01 00:00:01.000001+00");
  EXPECT_EQ(fields[14], R"({"body":"line1\\nline2\\t\\\\"})");
  EXPECT_EQ(fields[15], "\\N");  // no response
  EXPECT_EQ(fields[16], "[]");
  EXPECT_EQ(fields[17], "[]");
  EXPECT_EQ(fields[18], R"(["l"])");

  EXPECT_TRUE(checkStorable(record));
  record.started_at_us = -1;
  EXPECT_FALSE(checkStorable(record));
  record.started_at_us = 0;
  record.id = "nope";
  auto bad = checkStorable(record);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "execution record id \"nope\" is not a UUID");
}

}  // namespace
}  // namespace flux::record

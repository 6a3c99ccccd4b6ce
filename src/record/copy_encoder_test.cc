#include "record/copy_encoder.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace flux::record {
namespace {

using nlohmann::json;

// Reads COPY binary data back: each tuple as its fields (nullopt for NULL).
class CopyReader {
 public:
  explicit CopyReader(std::string_view data) : data_(data) {}

  std::string_view take(size_t n) {
    EXPECT_LE(at_ + n, data_.size());
    std::string_view out = data_.substr(at_, n);
    at_ += n;
    return out;
  }
  int64_t integer(size_t bytes) {
    int64_t value = 0;
    for (char c : take(bytes)) value = value << 8 | static_cast<unsigned char>(c);
    if (bytes < 8 && (value >> (8 * bytes - 1)) != 0) value -= int64_t{1} << (8 * bytes);
    return value;
  }
  std::vector<std::optional<std::string>> tuple() {
    std::vector<std::optional<std::string>> fields;
    int64_t count = integer(2);
    for (int64_t i = 0; i < count; ++i) {
      int64_t length = integer(4);
      fields.push_back(length < 0 ? std::nullopt
                                  : std::optional<std::string>(take(static_cast<size_t>(length))));
    }
    return fields;
  }
  bool done() const { return at_ == data_.size(); }

 private:
  std::string_view data_;
  size_t at_ = 0;
};

int64_t bigEndian(const std::string& bytes) {
  int64_t value = 0;
  for (char c : bytes) value = value << 8 | static_cast<unsigned char>(c);
  return value;
}

TEST(CopyEncoderTest, NulAndInvalidUtf8BecomeReplacementCharacters) {
  const std::string kFffd = "\xEF\xBF\xBD";
  EXPECT_EQ(sanitizedUtf8(std::string("a\0b", 3)), "a" + kFffd + "b");
  EXPECT_EQ(sanitizedUtf8("\xff"), kFffd);
  EXPECT_EQ(sanitizedUtf8("\xC0\xAF"), kFffd + kFffd);              // overlong '/'
  EXPECT_EQ(sanitizedUtf8("\xED\xA0\x80"), kFffd + kFffd + kFffd);  // a surrogate
  EXPECT_EQ(sanitizedUtf8("\xE2\x82"), kFffd + kFffd);              // cut short
  EXPECT_EQ(sanitizedUtf8("é€😀"), "é€😀");
}

TEST(CopyEncoderTest, JsonNulEscapesAreReplacedOnlyWhenTheyAreEscapes) {
  json value = {{"a", std::string("x\0y", 3)}, {"b", "\\u0000"}, {"c", "\\\\u0000"}};
  std::string text = jsonForPostgres(value);
  json back = json::parse(text);
  EXPECT_EQ(back["a"], "x\xEF\xBF\xBDy");
  EXPECT_EQ(back["b"], "\\u0000");  // a backslash and five characters, kept as they were
  EXPECT_EQ(back["c"], "\\\\u0000");
}

TEST(CopyEncoderTest, TuplesHaveEveryColumnInOrderBetweenHeaderAndTrailer) {
  ExecutionRecord record;
  record.id = "0192a4f3-7c1e-7d2a-9b3c-4e5f60718293";
  record.kind = "http";
  record.parent_id = "not-a-uuid";
  record.replay_of = "00000000-0000-0000-0000-0000000000ff";
  record.function = std::string("f\tn\0\xff", 5);
  record.method = "GET";
  record.path = "/a\nb";
  record.status = -2;
  record.started_at_us = 1000001;
  record.duration_us = 7;
  record.request = {{"body", "line1\nline2\t\\"}};
  record.logs = {"l"};
  std::vector<ExecutionRecord> records = {record, record};
  records[1].status = 200;
  records[1].started_at_us = 946'684'800'000'000 + 5;  // PostgreSQL's epoch, + 5 us

  std::string data = encodeCopyData(records);
  CopyReader in(data);
  EXPECT_EQ(in.take(11), std::string_view("PGCOPY\n\xff\r\n\0", 11));
  EXPECT_EQ(in.integer(4), 0);  // flags
  EXPECT_EQ(in.integer(4), 0);  // header extension
  auto fields = in.tuple();
  ASSERT_EQ(fields.size(), 19u);  // the columns of kExecutionCopyColumns
  ASSERT_TRUE(fields[0]);
  EXPECT_EQ(*fields[0],
            std::string("\x01\x92\xa4\xf3\x7c\x1e\x7d\x2a\x9b\x3c\x4e\x5f\x60\x71\x82\x93", 16));
  EXPECT_EQ(fields[1], "http");
  EXPECT_EQ(fields[2], std::nullopt);  // not a UUID: NULL
  EXPECT_EQ(fields[3], std::string(15, '\0') + "\xff");
  EXPECT_EQ(fields[4], std::nullopt);  // no tenant
  EXPECT_EQ(fields[5], "f\tn\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(fields[9], "/a\nb");
  ASSERT_TRUE(fields[10]);
  EXPECT_EQ(fields[10]->size(), 4u);
  EXPECT_EQ(bigEndian(*fields[10]), 0xfffffffe);  // -2 as int4
  EXPECT_EQ(fields[11], std::nullopt);            // no error
  ASSERT_TRUE(fields[12]);
  EXPECT_EQ(bigEndian(*fields[12]), 1000001 - 946'684'800'000'000);  // from 2000-01-01
  ASSERT_TRUE(fields[13]);
  EXPECT_EQ(bigEndian(*fields[13]), 7);
  EXPECT_EQ(fields[14], R"({"body":"line1\nline2\t\\"})");
  EXPECT_EQ(fields[15], std::nullopt);  // no response
  EXPECT_EQ(fields[16], "[]");
  EXPECT_EQ(fields[17], "[]");  // an empty journal
  EXPECT_EQ(fields[18], R"(["l"])");
  fields = in.tuple();
  ASSERT_EQ(fields.size(), 19u);
  EXPECT_EQ(bigEndian(*fields[10]), 200);
  EXPECT_EQ(bigEndian(*fields[12]), 5);
  EXPECT_EQ(in.integer(2), -1);  // the trailer
  EXPECT_TRUE(in.done());

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

#include "admin/query_string.h"

#include <gtest/gtest.h>

namespace flux::admin {
namespace {

const std::map<std::string_view, std::string_view> kNames = {
    {"fn", "fn"}, {"function", "fn"}, {"limit", "limit"}};

TEST(KnownParametersTest, AliasesTakeTheirCanonicalNameAndOthersAreIgnored) {
  auto given = knownParameters("function=pay%20ment&limit=5&utm_source=x&&flag", kNames, 100);
  ASSERT_TRUE(given.has_value()) << given.error().message;
  EXPECT_EQ(*given, (Parameters{{"fn", "pay ment"}, {"limit", "5"}}));
  auto empty = knownParameters("", kNames, 100);
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());
}

TEST(KnownParametersTest, RefusesWhatNoEndpointTakes) {
  struct Case {
    const char* query;
    const char* says;
  };
  for (const Case& c : {Case{"fn=a&function=b", "'fn' is given twice"},
                        Case{"limit=1&limit=2", "'limit' is given twice"},
                        Case{"fn=%zz", "percent-encoding"}, Case{"fn=a%00b", "without NUL"},
                        Case{"fn=%ff%fe", "UTF-8"}, Case{"fn=0123456789a", "at most 10 bytes"}}) {
    auto given = knownParameters(c.query, kNames, 10);
    ASSERT_FALSE(given.has_value()) << c.query;
    EXPECT_EQ(given.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(given.error().message.find(c.says), std::string::npos)
        << c.query << ": " << given.error().message;
  }
  // Names the endpoint does not take are never looked at, whatever their value.
  EXPECT_TRUE(knownParameters("other=%ff&other=%ff", kNames, 10).has_value());
}

TEST(KnownParametersTest, Flags) {
  for (const char* yes : {"1", "true", "yes"}) EXPECT_TRUE(isTrueFlag(yes)) << yes;
  for (const char* no : {"", "0", "false", "no"}) EXPECT_TRUE(isFalseFlag(no)) << no;
  EXPECT_FALSE(isTrueFlag("maybe"));
  EXPECT_FALSE(isFalseFlag("maybe"));
}

TEST(Utf8Test, WellFormedOnly) {
  EXPECT_TRUE(isValidUtf8("plain → ✔ 𝄞"));
  EXPECT_FALSE(isValidUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(isValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(isValidUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(isValidUtf8("\xe2\x86"));          // cut short
}

}  // namespace
}  // namespace flux::admin

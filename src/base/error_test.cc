#include "base/error.h"

#include <gtest/gtest.h>

namespace flux {
namespace {

Result<int> parsePositive(int v) {
  if (v <= 0) return fail(ErrorCode::kInvalidArgument, "must be positive");
  return v;
}

TEST(Error, ResultCarriesValueOrError) {
  EXPECT_EQ(*parsePositive(3), 3);
  auto bad = parsePositive(-1);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
  EXPECT_STREQ(errorCodeName(bad.error().code), "invalid_argument");
}

TEST(Error, FieldsAppearInToString) {
  Error e = Error{ErrorCode::kNotFound, "no such function", {}}.with("name", "hello");
  EXPECT_EQ(e.toString(), "no such function name=hello");
}

}  // namespace
}  // namespace flux

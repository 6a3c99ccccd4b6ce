#include "cli/records_command.h"

#include <gtest/gtest.h>

namespace flux::cli {
namespace {

TEST(SinceTest, SpansOfTime) {
  EXPECT_EQ(parseSinceDuration("45s"), 45'000'000);
  EXPECT_EQ(parseSinceDuration("30m"), 1'800'000'000);
  EXPECT_EQ(parseSinceDuration("2h"), 7'200'000'000);
  EXPECT_EQ(parseSinceDuration("1d"), 86'400'000'000);
  EXPECT_EQ(parseSinceDuration("1h30m"), 5'400'000'000);
  for (const char* bad : {"", "30", "m", "30x", "-5m", "1.5h", "0m", "30 m", "99999999999d"}) {
    auto since = parseSinceDuration(bad);
    EXPECT_FALSE(since.has_value()) << bad;
    if (!since) {
      EXPECT_NE(since.error().message.find("45s, 30m, 2h"), std::string::npos);
    }
  }
}

TEST(TailFilterTest, FlagsAndFiltersBecomeApiParameters) {
  TailOptions options;
  options.function = "payments";
  options.errors_only = true;
  options.filters = {"path=/stripe_webhook", "status=500", "type=job", "method=POST"};
  auto params = tailFilterParams(options);
  ASSERT_TRUE(params.has_value()) << params.error().message;
  EXPECT_EQ(*params, (UrlParams{{"fn", "payments"},
                                {"kind", "job"},
                                {"method", "POST"},
                                {"path", "/stripe_webhook"},
                                {"status", "500"},
                                {"errors_only", "1"}}));

  TailOptions aliases;
  aliases.filters = {"function=send_onboarding_email", "kind=cron", "path=/a=b"};
  auto more = tailFilterParams(aliases);
  ASSERT_TRUE(more.has_value());
  EXPECT_EQ(*more,
            (UrlParams{{"fn", "send_onboarding_email"}, {"kind", "cron"}, {"path", "/a=b"}}));

  EXPECT_EQ(tailFilterParams(TailOptions{}), UrlParams{});
}

TEST(TailFilterTest, BadFiltersSayWhatToPass) {
  struct Case {
    std::vector<std::string> filters;
    std::string function;
    const char* says;
  };
  for (const Case& c :
       {Case{{"colour=red"}, "", "path, status, function (fn)"}, Case{{"status"}, "", "key=value"},
        Case{{"status="}, "", "has no value"}, Case{{"fn=a", "function=b"}, "", "second time"},
        Case{{"fn=a"}, "b", "second time"}}) {
    TailOptions options;
    options.filters = c.filters;
    options.function = c.function;
    auto params = tailFilterParams(options);
    ASSERT_FALSE(params.has_value()) << c.says;
    EXPECT_EQ(params.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(params.error().message.find(c.says), std::string::npos) << params.error().message;
  }
}

}  // namespace
}  // namespace flux::cli

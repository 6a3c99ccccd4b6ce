#include "base/ids.h"

#include <gtest/gtest.h>

#include <set>

namespace flux {
namespace {

class FixedClock final : public Clock {
 public:
  double nowMillis() override { return 1700000000123.0; }
  std::chrono::steady_clock::time_point steadyNow() override { return {}; }
};

class CountingRandom final : public Random {
 public:
  uint64_t next64() override { return ++n_ * 0x9e3779b97f4a7c15ULL; }

 private:
  uint64_t n_ = 0;
};

TEST(RequestId, IsUuidV7WithTimestamp) {
  FixedClock clock;
  CountingRandom random;
  RequestId id = RequestId::generate(clock, random);
  std::string s = id.toString();
  ASSERT_EQ(s.size(), 36u);
  EXPECT_EQ(s[14], '7');  // version nibble
  EXPECT_TRUE(s[19] == '8' || s[19] == '9' || s[19] == 'a' || s[19] == 'b');
  EXPECT_EQ(id.unixMillis(), 1700000000123ULL);
  EXPECT_EQ(id.shortForm(), s.substr(28));
}

TEST(RequestId, SortsAsTheStartTimesItWasMadeFrom) {
  CountingRandom random;
  // The microsecond sorts ids of one millisecond; the random bits come after.
  std::string a = RequestId::generate(int64_t{1700000000123250}, random).toString();
  std::string b = RequestId::generate(int64_t{1700000000123251}, random).toString();
  std::string c = RequestId::generate(int64_t{1700000000124000}, random).toString();
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_EQ(a.substr(0, 19), "018bcfe5-687b-7400-");  // 1700000000123 ms, then 250 / 1000 * 4096
  EXPECT_EQ(RequestId::generate(int64_t{1700000000123999}, random).unixMillis(), 1700000000123u);
  // Every microsecond of a millisecond sorts after the one before, whatever the random bits.
  for (int64_t us = 1700000000123000; us < 1700000000123999; ++us) {
    ASSERT_LT(RequestId::generate(us, random).toString(),
              RequestId::generate(us + 1, random).toString())
        << us;
  }
  // The lowest id of a millisecond: at or before each id of it, after every earlier one.
  std::string lowest = RequestId::lowestOf(1700000000123).toString();
  EXPECT_EQ(lowest, "018bcfe5-687b-7000-8000-000000000000");
  EXPECT_LT(lowest, a);
  EXPECT_LT(RequestId::generate(int64_t{1700000000122999}, random).toString(), lowest);
}

TEST(RequestId, DistinctAndTimeOrdered) {
  SystemClock clock;
  SystemRandom random;
  std::set<std::string> seen;
  std::set<std::string> short_forms;
  std::string previous;
  for (int i = 0; i < 1000; ++i) {
    std::string s = RequestId::generate(clock, random).toString();
    EXPECT_TRUE(seen.insert(s).second);
    EXPECT_TRUE(short_forms.insert(s.substr(28)).second) << "short handles must not collide";
    EXPECT_GE(s.substr(0, 12), previous.substr(0, std::min<size_t>(12, previous.size())));
    previous = s;
  }
}

}  // namespace
}  // namespace flux

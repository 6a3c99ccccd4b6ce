#include "runtime/span_shape.h"

#include <gtest/gtest.h>

namespace flux::runtime {
namespace {

using record::Span;
using record::SpanStatus;

// spans[0] is the function span (id 2, under the gateway's 1); the others get id 2 + index.
struct Builder {
  std::vector<Span> spans;
  Builder() {
    Span root;
    root.id = 2;
    root.parent = 1;
    root.name = "checkout";
    spans.push_back(root);
  }
  // `parent`: index of the parent in spans (0: the function span).
  Builder& add(std::string name, std::string location, size_t parent = 0) {
    Span s;
    s.id = 2 + static_cast<uint32_t>(spans.size());
    s.parent = spans[parent].id;
    s.name = std::move(name);
    s.location = std::move(location);
    s.start_us = static_cast<int64_t>(spans.size()) * 10;
    spans.push_back(std::move(s));
    return *this;
  }
};

Builder checkoutSuccess() {
  return std::move(Builder()
                       .add("db.insert(orders)", "functions/checkout/index.ts:5:3")
                       .add("payment", "functions/checkout/index.ts:6:3")
                       .add("fetch", "functions/checkout/index.ts:7:11", 2)
                       .add("db.update(orders)", "functions/checkout/index.ts:9:3")
                       .add("fetch", "functions/checkout/index.ts:10:3"));
}

TEST(SpanShapeTest, LearnsAndMatches) {
  auto ok = checkoutSuccess();
  SpanShape shape = SpanShape::of(7, ok.spans);
  ASSERT_EQ(shape.entries.size(), 5u);
  EXPECT_EQ(shape.entries[2].parent, 1);  // the fetch inside "payment"
  EXPECT_EQ(shape.entries[3].parent, -1);
  EXPECT_TRUE(shape.matches(7, ok.spans));
  EXPECT_FALSE(shape.matches(8, ok.spans));
  auto other = checkoutSuccess();
  other.spans[4].location = "functions/checkout/index.ts:99:3";
  EXPECT_FALSE(shape.matches(7, other.spans));
  other = checkoutSuccess();
  other.spans.pop_back();
  EXPECT_FALSE(shape.matches(7, other.spans));
}

TEST(SpanShapeTest, AppendsWhatTheFailureNeverReached) {
  SpanShape shape = SpanShape::of(7, checkoutSuccess().spans);
  // Failed in the payment fetch: the update and the last fetch never ran.
  Builder failed;
  failed.add("db.insert(orders)", "functions/checkout/index.ts:5:3")
      .add("payment", "functions/checkout/index.ts:6:3")
      .add("fetch", "functions/checkout/index.ts:7:11", 2);
  failed.spans[3].status = SpanStatus::kError;
  EXPECT_EQ(shape.appendSkipped(failed.spans, 500), 2u);
  ASSERT_EQ(failed.spans.size(), 6u);
  const Span& update = failed.spans[4];
  EXPECT_EQ(update.name, "db.update(orders)");
  EXPECT_EQ(update.status, SpanStatus::kSkipped);
  EXPECT_EQ(update.location, "functions/checkout/index.ts:9:3");
  EXPECT_EQ(update.id, 6u);
  EXPECT_EQ(update.parent, 2u);
  EXPECT_EQ(update.start_us, 500);
  EXPECT_EQ(update.duration_us, 0);
  EXPECT_TRUE(update.input.is_null());
  EXPECT_EQ(failed.spans[5].id, 7u);
  // A skipped span does not count as part of a shape.
  EXPECT_EQ(SpanShape::of(7, failed.spans).entries.size(), 3u);
}

TEST(SpanShapeTest, SkippedChildrenHangUnderTheirSpans) {
  Builder ok;
  ok.add("db.insert(orders)", "a.ts:1:1").add("notify", "a.ts:2:1").add("fetch", "a.ts:3:1", 2);
  SpanShape shape = SpanShape::of(1, ok.spans);
  Builder failed;
  failed.add("db.insert(orders)", "a.ts:1:1");
  EXPECT_EQ(shape.appendSkipped(failed.spans, 9), 2u);
  EXPECT_EQ(failed.spans[2].name, "notify");
  EXPECT_EQ(failed.spans[3].parent, failed.spans[2].id);
  // Children of a span that ran keep it as parent.
  Builder partial;
  partial.add("db.insert(orders)", "a.ts:1:1").add("notify", "a.ts:2:1");
  EXPECT_EQ(shape.appendSkipped(partial.spans, 9), 1u);
  EXPECT_EQ(partial.spans[3].parent, partial.spans[2].id);
}

TEST(SpanShapeTest, NothingRanMeansEverythingSkipped) {
  SpanShape shape = SpanShape::of(7, checkoutSuccess().spans);
  Builder failed;
  EXPECT_EQ(shape.appendSkipped(failed.spans, 3), 5u);
  EXPECT_EQ(failed.spans[3].parent, failed.spans[2].id);
}

TEST(SpanShapeTest, AlignsByTheLastSpanThatRan) {
  SpanShape shape = SpanShape::of(7, checkoutSuccess().spans);
  // An extra span ran first (a retry): the payment fetch is still found in the shape.
  Builder failed;
  failed.add("db.insert(orders)", "functions/checkout/index.ts:5:3")
      .add("db.insert(orders)", "functions/checkout/index.ts:5:3")
      .add("payment", "functions/checkout/index.ts:6:3")
      .add("fetch", "functions/checkout/index.ts:7:11", 3);
  EXPECT_EQ(shape.appendSkipped(failed.spans, 0), 2u);
  EXPECT_EQ(failed.spans[5].name, "db.update(orders)");
  // Another path than the remembered one: nothing is claimed.
  Builder elsewhere;
  elsewhere.add("db.query", "functions/checkout/index.ts:30:3");
  EXPECT_EQ(shape.appendSkipped(elsewhere.spans, 0), 0u);
  // The whole shape ran: nothing is left to skip.
  auto all = checkoutSuccess();
  EXPECT_EQ(shape.appendSkipped(all.spans, 0), 0u);
  // No shape known.
  auto none = checkoutSuccess();
  EXPECT_EQ(SpanShape{}.appendSkipped(none.spans, 0), 0u);
}

}  // namespace
}  // namespace flux::runtime

#include "admin/sse.h"

#include <gtest/gtest.h>

namespace flux::admin {
namespace {

TEST(SseTest, AnEventIsItsFieldsThenABlankLine) {
  EXPECT_EQ(
      sseEvent("record", R"({"id":"a","status":500})", "0195a1b2-0000-7000-8000-0000550e8400"),
      "event: record\nid: 0195a1b2-0000-7000-8000-0000550e8400\n"
      "data: {\"id\":\"a\",\"status\":500}\n\n");
  // No id, no id field.
  EXPECT_EQ(sseEvent("live", R"({"now_us":1})"), "event: live\ndata: {\"now_us\":1}\n\n");
  // Empty data is still one data field (an event without any would not be dispatched).
  EXPECT_EQ(sseEvent("ping", ""), "event: ping\ndata: \n\n");
}

TEST(SseTest, EachLineOfTheDataIsItsOwnField) {
  // LF, CR and CRLF all break lines; a reader joins the fields with LF again.
  EXPECT_EQ(sseEvent("x", "a\nb\r\nc\rd"), "event: x\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
  EXPECT_EQ(sseEvent("x", "a\n"), "event: x\ndata: a\ndata: \n\n");
}

TEST(SseTest, NameAndIdCannotBreakTheFrame) {
  // A line break in either would start a field (or an event) of its own.
  EXPECT_EQ(sseEvent("rec\nord", "{}", "i\r\nd"), "event: record\nid: id\ndata: {}\n\n");
  EXPECT_EQ(sseEvent("a", "{}", std::string_view("\0\0", 2)), "event: a\ndata: {}\n\n");
}

TEST(SseTest, CommentsAreOneLine) {
  EXPECT_EQ(sseComment("keep-alive"), ": keep-alive\n\n");
  EXPECT_EQ(sseComment("two\nlines"), ": two lines\n\n");
}

}  // namespace
}  // namespace flux::admin

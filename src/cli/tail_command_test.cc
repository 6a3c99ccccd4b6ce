#include "cli/tail_command.h"

#include <gtest/gtest.h>

namespace flux::cli {
namespace {

std::vector<SseEvent> parseAll(std::string_view text, size_t piece = 0) {
  SseParser parser;
  std::vector<SseEvent> events;
  if (piece == 0) {
    parser.feed(text, events);
  } else {
    for (size_t at = 0; at < text.size(); at += piece) parser.feed(text.substr(at, piece), events);
  }
  return events;
}

TEST(SseParserTest, EventsAsTheServerFramesThem) {
  std::string stream =
      ": keep-alive\n\n"
      "event: record\nid: 0195-a\ndata: {\"id\":\"0195-a\",\"status\":200}\n\n"
      "event: live\ndata: {\"now_us\":1}\n\n"
      "event: end\ndata: {\"reason\":\"slow\"}\n\n";
  // Whole, and byte by byte: the pieces a socket hands over never matter.
  for (size_t piece : {size_t{0}, size_t{1}, size_t{7}}) {
    auto events = parseAll(stream, piece);
    ASSERT_EQ(events.size(), 3u) << piece;
    EXPECT_EQ(events[0].event, "record");
    EXPECT_EQ(events[0].id, "0195-a");
    EXPECT_EQ(events[0].data, "{\"id\":\"0195-a\",\"status\":200}");
    EXPECT_EQ(events[1].event, "live");
    EXPECT_EQ(events[1].data, "{\"now_us\":1}");
    EXPECT_EQ(events[2].event, "end");
  }
}

TEST(SseParserTest, FollowsTheStandardsLineRules) {
  // CRLF, CR and LF all end lines (a CRLF split between two pieces too); several data lines
  // join with '\n'; one space after the colon is dropped, a second one kept; no event name
  // means "message"; an event without data is not dispatched; comments are ignored.
  auto events = parseAll("data: a\r\ndata:  b\rdata:c\n\r\nevent: x\n\n: note\ndata\n\n", 3);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].event, "message");
  EXPECT_EQ(events[0].data, "a\n b\nc");
  EXPECT_EQ(events[1].event, "message");
  EXPECT_EQ(events[1].data, "");
  // An unfinished event waits for its blank line.
  EXPECT_TRUE(parseAll("event: record\ndata: {}\n").empty());
}

TEST(TailFilterTest, UnknownKeysListTheValidOnes) {
  TailOptions options;
  options.filters = {"colour=red"};
  auto params = tailFilterParams(options);
  ASSERT_FALSE(params.has_value());
  EXPECT_NE(params.error().message.find("unknown key 'colour'"), std::string::npos)
      << params.error().message;
  EXPECT_NE(params.error().message.find("path, status, function (fn), type (kind), method"),
            std::string::npos)
      << params.error().message;
}

TEST(TailFilterTest, ValuesTheServerWouldRefuseAreRefusedFirst) {
  for (const char* bad :
       {"status=teapot", "status=6xx", "status=50", "type=lambda", "kind=HTTP", "method=GE T"}) {
    TailOptions options;
    options.filters = {bad};
    auto params = tailFilterParams(options);
    EXPECT_FALSE(params.has_value()) << bad;
  }
  TailOptions good;
  good.filters = {"status=5xx", "type=job", "method=post", "path=/api/*"};
  auto params = tailFilterParams(good);
  ASSERT_TRUE(params.has_value()) << params.error().message;
  EXPECT_EQ(
      *params,
      (UrlParams{{"kind", "job"}, {"method", "post"}, {"path", "/api/*"}, {"status", "5xx"}}));
}

}  // namespace
}  // namespace flux::cli

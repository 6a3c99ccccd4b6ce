#include "runtime/span_values.h"

#include <gtest/gtest.h>

namespace flux::runtime {
namespace {

using nlohmann::json;

TEST(SpanValuesTest, BodiesAreCappedAtACharacterBoundary) {
  EXPECT_TRUE(recordedBody("", 10).is_null());
  EXPECT_EQ(recordedBody("short", 10), "short");
  std::string text = "abcdefgh\xc3\xa9z";  // é straddles the cap of 9
  json capped = recordedBody(text, 9);
  EXPECT_EQ(capped, (json{{"truncated", true}, {"bytes", text.size()}, {"head", "abcdefgh"}}));
  EXPECT_EQ(recordedBody(std::string("\xff\x00\x01", 3), 10), "<3 bytes of binary data>");
}

TEST(SpanValuesTest, HeadersAreLowerCasedJoinedAndRedacted) {
  json h = recordedHeaders({{"Content-Type", "application/json"},
                            {"Authorization", "Bearer sk_live_1"},
                            {"cookie", "a=1"},
                            {"X-Many", "1"},
                            {"x-many", "2"},
                            {"Set-Cookie", "s=1"},
                            {"Set-Cookie", "t=2"}});
  EXPECT_EQ(h, json::parse(R"({"content-type": "application/json", "authorization": "[redacted]",
                               "cookie": "[redacted]", "x-many": "1, 2",
                               "set-cookie": "[redacted]"})"));
}

TEST(SpanValuesTest, FetchSpanInputAndOutput) {
  net::FetchRequest request;
  request.method = "POST";
  request.url = "https://pay.example.com/charges";
  request.headers = {{"authorization", "Bearer x"}, {"content-type", "application/json"}};
  request.body = std::string(5000, 'a');
  json input = fetchSpanInput(request);
  EXPECT_EQ(input["method"], "POST");
  EXPECT_EQ(input["url"], "https://pay.example.com/charges");
  EXPECT_EQ(input["headers"]["authorization"], "[redacted]");
  EXPECT_EQ(input["body"]["truncated"], true);
  EXPECT_EQ(input["body"]["bytes"], 5000);
  EXPECT_EQ(input["body"]["head"].get<std::string>().size(), kSpanBodyBytes);

  net::FetchResponse response;
  response.status = 201;
  response.status_text = "Created";
  response.headers = {{"Content-Type", "application/json"}, {"Set-Cookie", "sid=1"}};
  response.body = R"({"id":"ch_1"})";
  response.url = "https://pay.example.com/charges/ch_1";
  json output = fetchSpanOutput(response);
  EXPECT_EQ(output, json::parse(R"({"status": 201, "statusText": "Created",
      "headers": {"content-type": "application/json", "set-cookie": "[redacted]"},
      "body": "{\"id\":\"ch_1\"}"})"));
  response.redirects = 2;
  EXPECT_EQ(fetchSpanOutput(response)["redirects"], 2);
  EXPECT_EQ(fetchSpanOutput(response)["url"], "https://pay.example.com/charges/ch_1");
}

TEST(SpanValuesTest, JournalKeepsTheWholeResponse) {
  net::FetchResponse response;
  response.status = 200;
  response.status_text = "OK";
  response.headers = {{"X-A", "1"}, {"X-A", "2"}};
  response.body = std::string(6000, 'b');
  response.url = "http://127.0.0.1:9/x";
  json value = fetchJournalValue(response);
  EXPECT_EQ(value["headers"], json::parse(R"([["X-A", "1"], ["X-A", "2"]])"));
  EXPECT_EQ(value["body"].get<std::string>().size(), 6000u);
  EXPECT_EQ(value["url"], "http://127.0.0.1:9/x");
  response.body = std::string("\x00\xff\x10", 3);
  EXPECT_EQ(fetchJournalValue(response)["body"], (json{{"base64", "AP8Q"}}));
}

TEST(SpanValuesTest, FetchErrors) {
  EXPECT_EQ(fetchSpanError(
                Error{ErrorCode::kUnavailable, "cannot connect to a:1: Connection refused", {}}),
            "network error: cannot connect to a:1: Connection refused");
  EXPECT_EQ(fetchSpanError(Error{ErrorCode::kResourceExhausted, "too big", {}}), "too big");
}

}  // namespace
}  // namespace flux::runtime

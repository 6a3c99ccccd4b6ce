#include "record/redactor.h"

#include <gtest/gtest.h>

#include <string>

#include "record/json_writer.h"

namespace flux::record {
namespace {

using nlohmann::json;

TEST(RedactorTest, HeadersByNameInEveryShape) {
  Redactor redactor;
  json object = {{"Authorization", "Bearer abc"},
                 {"Cookie", "sid=1"},
                 {"X-Auth-Token", "t"},
                 {"Content-Type", "text/plain"},
                 {"Accept", json::array({"a", "b"})}};
  redactor.redactHeaders(object);
  EXPECT_EQ(object["Authorization"], kRedacted);
  EXPECT_EQ(object["Cookie"], kRedacted);
  EXPECT_EQ(object["X-Auth-Token"], kRedacted);  // a header named like a secret field
  EXPECT_EQ(object["Content-Type"], "text/plain");
  EXPECT_EQ(object["Accept"], json::array({"a", "b"}));

  json pairs = json::array({json::array({"set-cookie", "a=1"}), json::array({"SET-COOKIE", "b=2"}),
                            json::array({"proxy-authorization", "Basic x"}),
                            json::array({"host", "example.com"})});
  redactor.redactHeaders(pairs);
  EXPECT_EQ(pairs[0][1], kRedacted);
  EXPECT_EQ(pairs[1][1], kRedacted);
  EXPECT_EQ(pairs[2][1], kRedacted);
  EXPECT_EQ(pairs[3][1], "example.com");

  json named = json::array(
      {{{"name", "authorization"}, {"value", "x"}}, {{"name", "accept"}, {"value", "*/*"}}});
  redactor.redactHeaders(named);
  EXPECT_EQ(named[0]["value"], kRedacted);
  EXPECT_EQ(named[1]["value"], "*/*");
}

TEST(RedactorTest, NestedBodyFieldsCaseInsensitiveAndByContainment) {
  Redactor redactor;
  json body = {{"user", "ann"},
               {"Password", "hunter2"},
               {"profile",
                {{"api_token", "t1"},
                 {"client_secret", {{"nested", "object"}}},
                 {"cardNumber", "4111"},
                 {"card number", "4111"},
                 {"CARD_NUMBER", 4111},
                 {"cvv", 123},
                 {"tokens", json::array({"a"})},
                 {"nickname", "pw"}}},
               {"items", json::array({{{"name", "tea"}, {"secret", "s"}}, "plain"})},
               {"card", {{"number", "4242"}, {"exp_month", 12}}},
               {"order", {{"number", 17}}}};
  redactor.redactBody(body);
  EXPECT_EQ(body["card"]["number"], kRedacted);  // with its parent's name: a card number
  EXPECT_EQ(body["card"]["exp_month"], 12);
  EXPECT_EQ(body["order"]["number"], 17);
  EXPECT_EQ(body["user"], "ann");
  EXPECT_EQ(body["Password"], kRedacted);
  EXPECT_EQ(body["profile"]["api_token"], kRedacted);
  EXPECT_EQ(body["profile"]["client_secret"], kRedacted);
  EXPECT_EQ(body["profile"]["cardNumber"], kRedacted);
  EXPECT_EQ(body["profile"]["card number"], kRedacted);
  EXPECT_EQ(body["profile"]["CARD_NUMBER"], kRedacted);
  EXPECT_EQ(body["profile"]["cvv"], kRedacted);
  EXPECT_EQ(body["profile"]["tokens"], kRedacted);
  EXPECT_EQ(body["profile"]["nickname"], "pw");
  EXPECT_EQ(body["items"][0]["name"], "tea");
  EXPECT_EQ(body["items"][0]["secret"], kRedacted);
  EXPECT_EQ(body["items"][1], "plain");

  json copy = body;
  redactor.redactBody(copy);
  EXPECT_EQ(copy, body);  // twice is once
}

TEST(RedactorTest, FieldNamesMatchAnywhereInKeysOfAnyLength) {
  Redactor redactor;
  EXPECT_TRUE(redactor.isSecretField("x-Pass-Word"));
  EXPECT_TRUE(redactor.isSecretField("mypasswd"));
  EXPECT_TRUE(redactor.isSecretField("cvv"));
  EXPECT_FALSE(redactor.isSecretField("cv"));  // a field name's prefix at the key's end
  EXPECT_FALSE(redactor.isSecretField("pas sw"));
  EXPECT_FALSE(redactor.isSecretField(""));
  // Past the matcher's stack buffer (128 bytes) too.
  std::string long_key(300, '_');
  EXPECT_FALSE(redactor.isSecretField(long_key));
  EXPECT_TRUE(redactor.isSecretField(long_key + "Secret"));
  EXPECT_TRUE(redactor.isSecretField("Secret" + long_key));
  // A configured name of one letter matches every key holding it (as containment says).
  RedactionOptions one_letter;
  one_letter.field_names = {"Q", "__"};  // "__" normalizes to nothing: ignored
  Redactor q(one_letter);
  EXPECT_TRUE(q.isSecretField("faq"));
  EXPECT_FALSE(q.isSecretField("name"));
  EXPECT_FALSE(q.isSecretField("__"));
}

TEST(RedactorTest, StringBodiesByContentType) {
  Redactor redactor;
  json text = R"({"password":"p","keep":1})";
  redactor.redactBody(text, "application/json; charset=utf-8");
  EXPECT_EQ(json::parse(text.get<std::string>()), json({{"password", kRedacted}, {"keep", 1}}));

  json untouched = "{ \"keep\" : 1 }";
  redactor.redactBody(untouched, "application/json");
  EXPECT_EQ(untouched, "{ \"keep\" : 1 }");  // exact bytes when nothing was secret

  json form = "user=ann&pass%77ord=x&api%5Ftoken=y&empty=&flag";
  redactor.redactBody(form, "application/x-www-form-urlencoded");
  EXPECT_EQ(form, "user=ann&pass%77ord=[redacted]&api%5Ftoken=[redacted]&empty=&flag");

  json plain = "password=x";
  redactor.redactBody(plain, "text/plain");
  EXPECT_EQ(plain, "password=x");  // free text is not inspected
}

// A JSON text body is first read for keys without building a tree; the result must be what
// redacting the parsed tree gives, wherever the secret hides.
TEST(RedactorTest, JsonTextBodiesRedactAsTheirTree) {
  Redactor redactor;
  const char* bodies[] = {
      R"({"user":"ann","nested":[{"deep":{"api_token":"t"}}]})",
      R"({"card":{"brand":"visa","exp":1,"number":"4111"}})",  // a card number, keys apart
      R"([{"card":[{"number":"4242"}]}])",                     // through arrays
      R"({"callback":{"url":"https://x.test/cb?token=abc&page=2"}})",
      R"({"request":{"headers":[["Authorization","Bearer x"]]}})",
      R"({"Set-Cookie":"sid=1"})",
      R"({"order":{"number":17},"items":[1,2,{"name":"tea"}],"ok":true,"n":null})",
      R"({"a":{"b":{"c":[[[{"cvv":1}]]]}}})",
  };
  for (const char* body : bodies) {
    json tree = json::parse(body);
    redactor.redactBody(tree);
    json text = body;
    redactor.redactBody(text, "application/json");
    EXPECT_EQ(json::parse(text.get<std::string>()), tree) << body;
  }
  json invalid = R"({"password": "p", )";
  redactor.redactBody(invalid, "application/json");
  EXPECT_EQ(invalid, R"({"password": "p", )");  // not JSON: kept, as before
}

TEST(RedactorTest, BodyCapTruncatesWithAMarker) {
  RedactionOptions options;
  options.body_cap_bytes = 16;
  Redactor redactor(options);

  json small = "0123456789abcdef";  // exactly the cap
  redactor.capBody(small);
  EXPECT_EQ(small, "0123456789abcdef");

  json big = std::string(100, 'x');
  redactor.capBody(big);
  EXPECT_EQ(big, json({{"truncated", true}, {"bytes", 100}, {"head", std::string(16, 'x')}}));
  json again = big;
  redactor.capBody(again);
  EXPECT_EQ(again, big);

  // The head never ends inside a UTF-8 sequence: 15 ASCII bytes, then a 3-byte character.
  json utf8 = std::string(15, 'a') + "\xE2\x82\xAC" + std::string(10, 'b');
  redactor.capBody(utf8);
  EXPECT_EQ(utf8["bytes"], 28);
  EXPECT_EQ(utf8["head"], std::string(15, 'a'));

  json structured = {{"list", json::array({1, 2, 3, 4, 5, 6, 7, 8, 9, 10})}};
  redactor.capBody(structured);
  EXPECT_EQ(structured["truncated"], true);
  EXPECT_EQ(structured["bytes"], 31);  // {"list":[1,2,3,4,5,6,7,8,9,10]}
  EXPECT_EQ(structured["head"], "{\"list\":[1,2,3,4");

  Redactor default_cap;
  json sixty_four_k = std::string(64 * 1024, 'y');
  default_cap.capBody(sixty_four_k);
  EXPECT_TRUE(sixty_four_k.is_string());
  json over = std::string(64 * 1024 + 1, 'y');
  default_cap.capBody(over);
  EXPECT_EQ(over["bytes"], 64 * 1024 + 1);
}

TEST(RedactorTest, ApplyCoversTheWholeRecord) {
  Redactor redactor;
  ExecutionRecord record;
  record.request = {
      {"method", "POST"},
      {"headers",
       json::array({json::array({"Authorization", "Bearer a"}),
                    json::array({"Content-Type", "application/x-www-form-urlencoded"})})},
      {"query", "page=2&token=abc"},
      {"body", "user=u&password=p"}};
  record.response = {{"status", 200},
                     {"headers", {{"Set-Cookie", "sid=2"}}},
                     {"body", {{"session_token", "s"}, {"ok", true}}}};
  Span fetch;
  fetch.id = 1;
  fetch.name = "fetch";
  fetch.input = {{"url", "https://api/v1?page=2&access_token=t&sig=1#top"},
                 {"headers", {{"Authorization", "Bearer b"}}}};
  fetch.output = {{"access_token", "z"}, {"expires", 3600}};
  record.spans = {fetch};
  record.journal = json::array({{{"kind", "fetch"}, {"value", {{"access_token", "z"}}}}});

  redactor.apply(record);
  EXPECT_EQ(record.request["headers"][0][1], kRedacted);
  EXPECT_EQ(record.request["query"], "page=2&token=[redacted]");
  EXPECT_EQ(record.request["body"], "user=u&password=[redacted]");
  EXPECT_EQ(record.response["headers"]["Set-Cookie"], kRedacted);
  EXPECT_EQ(record.response["body"]["session_token"], kRedacted);
  EXPECT_EQ(record.response["body"]["ok"], true);
  EXPECT_EQ(record.spans[0].input["headers"]["Authorization"], kRedacted);
  EXPECT_EQ(record.spans[0].input["url"],
            "https://api/v1?page=2&access_token=[redacted]&sig=1#top");
  EXPECT_EQ(record.spans[0].output["access_token"], kRedacted);
  EXPECT_EQ(record.journal[0]["value"]["access_token"], kRedacted);

  RedactionOptions keep_journal;
  keep_journal.journal = RedactionOptions::Journal::kKeep;
  keep_journal.field_names = {"pin"};
  keep_journal.header_names = {"x-secret-header"};
  ExecutionRecord other;
  other.request = {{"headers", {{"X-Secret-Header", "1"}, {"Authorization", "kept"}}},
                   {"body", {{"PIN", 1234}, {"password", "kept"}}}};
  other.journal = json::array({{{"kind", "db"}, {"value", {{"pin", 1}}}}});
  Redactor(keep_journal).apply(other);
  EXPECT_EQ(other.request["headers"]["X-Secret-Header"], kRedacted);
  EXPECT_EQ(other.request["headers"]["Authorization"], "kept");
  EXPECT_EQ(other.request["body"]["PIN"], kRedacted);
  EXPECT_EQ(other.request["body"]["password"], "kept");
  EXPECT_EQ(other.journal[0]["value"]["pin"], 1);
}

TEST(RedactorTest, CapturesAreRedactedInPlaceAndStoredAsMaterialized) {
  Redactor redactor;
  ExecutionRecord record;
  record.id = "0192a4f3-7c1e-7d2a-9b3c-4e5f60718293";
  record.method = "POST";
  record.path = "/pay";
  record.status = 201;
  Span gateway;
  gateway.id = 1;
  gateway.name = "gateway";
  record.spans = {gateway};
  record.captured_request = HttpCapture{
      "POST",
      "/pay",
      "page=2&api_token=abc",
      0,
      {{"Authorization", "Bearer a"}, {"Content-Type", "application/json"}, {"X-Request", "1"}},
      R"({"card": {"number": "4242", "exp": "12/30"}, "n": 1})"};
  record.captured_response =
      HttpCapture{"", "", "", 201, {{"set-cookie", "sid=2"}}, R"({"password": "p"})"};
  redactor.apply(record);
  ASSERT_TRUE(record.captured_request.has_value());  // not materialized: stored as captured
  const HttpCapture& in = *record.captured_request;
  EXPECT_EQ(in.headers[0].second, kRedacted);
  EXPECT_EQ(in.headers[2].second, "1");
  EXPECT_EQ(in.query, "page=2&api_token=[redacted]");
  EXPECT_EQ(json::parse(in.body)["card"]["number"], kRedacted);
  EXPECT_EQ(json::parse(in.body)["card"]["exp"], "12/30");
  EXPECT_EQ(record.captured_response->headers[0].second, kRedacted);
  EXPECT_EQ(json::parse(record.captured_response->body)["password"], kRedacted);

  // The writer stores a capture, and the gateway span's input and output, exactly as
  // materialize() would have built them.
  ExecutionRecord materialized = record;
  materialize(materialized);
  EXPECT_TRUE(record.spans[0].input.is_null());
  EXPECT_EQ(json::parse(toJsonText(record)), json::parse(toJsonText(materialized)));
  EXPECT_EQ(json::parse(toJsonText(record)), toJson(materialized));
  EXPECT_EQ(materialized.spans[0].input, json({{"method", "POST"}, {"path", "/pay"}}));
  EXPECT_EQ(materialized.spans[0].output, json({{"status", 201}}));
}

TEST(RedactorTest, OversizedCapturedBodyGetsTheTruncationMarker) {
  RedactionOptions small;
  small.body_cap_bytes = 8;
  ExecutionRecord record;
  record.captured_request = HttpCapture{"POST", "/", "", 0, {}, "0123456789abcdef"};
  Redactor(small).apply(record);
  EXPECT_FALSE(record.captured_request.has_value());
  EXPECT_EQ(record.request["body"]["truncated"], true);
  EXPECT_EQ(record.request["body"]["bytes"], 16);
  EXPECT_EQ(record.request["body"]["head"], "01234567");
}

}  // namespace
}  // namespace flux::record

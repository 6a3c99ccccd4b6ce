// AdminApi's answers that need no database: the token check, routing, parameter errors, and
// the 503 when PostgreSQL cannot be reached (a refused port on loopback). The history and
// blame logic is tested in state_queries_test.cc.
#include "admin/admin_api.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <optional>

namespace flux::admin {
namespace {

constexpr const char* kToken = "s3cret-admin-token";

struct Answer {
  int calls = 0;
  net::HttpResponse response;
};

class AdminApiTest : public ::testing::Test {
 protected:
  AdminApiTest() {
    data::PoolOptions database;
    // Nothing listens on port 1: every connect is refused at once.
    database.conninfo = "host=127.0.0.1 port=1 user=flux dbname=flux";
    database.connect_timeout = std::chrono::milliseconds(2000);
    api_.emplace(loop_, kToken, database);
  }

  // Sends one request and runs the loop until nothing is left to do.
  Answer call(std::string method, std::string target, std::optional<std::string> authorization) {
    net::HttpRequest request;
    request.method = std::move(method);
    request.target = std::move(target);
    if (authorization) request.headers.push_back({"Authorization", *authorization});
    auto answer = std::make_shared<Answer>();
    api_->handle(std::move(request), [this, answer](net::HttpResponse response) {
      ++answer->calls;
      answer->response = std::move(response);
      loop_.stop();
    });
    // The pool keeps retrying PostgreSQL in the background, so the loop never runs out of
    // work: run it until the answer stops it. A second answer would show up as calls == 2.
    if (answer->calls == 0) {
      loop_.restart();
      loop_.run_for(std::chrono::seconds(10));
    }
    loop_.restart();
    loop_.poll();
    return *answer;
  }

  Answer get(std::string target) { return call("GET", std::move(target), bearer(kToken)); }
  static std::string bearer(std::string_view token) { return "Bearer " + std::string(token); }

  static std::string error(const Answer& answer) {
    auto body = nlohmann::json::parse(answer.response.body, nullptr, false);
    if (body.is_discarded() || !body.contains("error")) return "<no error in body>";
    return body["error"].get<std::string>();
  }

  boost::asio::io_context loop_;
  std::optional<AdminApi> api_;
};

TEST(AdminPathTest, CoversTheFluxPrefixOnly) {
  EXPECT_TRUE(isAdminPath("/_flux"));
  EXPECT_TRUE(isAdminPath("/_flux/"));
  EXPECT_TRUE(isAdminPath("/_flux/state/history"));
  EXPECT_FALSE(isAdminPath("/_fluxes"));
  EXPECT_FALSE(isAdminPath("/users/_flux/x"));
  EXPECT_FALSE(isAdminPath("/"));
}

TEST_F(AdminApiTest, WithoutTheRightTokenNothingButA401) {
  const std::string target = "/_flux/state/history?table=users&id=42";
  std::string wrong_last = kToken;
  wrong_last.back() = 'X';
  for (std::optional<std::string> authorization :
       {std::optional<std::string>(), std::optional<std::string>(""),
        std::optional<std::string>(kToken), std::optional<std::string>("Bearer"),
        std::optional<std::string>("Bearer "), std::optional<std::string>(bearer("s3cret")),
        std::optional<std::string>(bearer(wrong_last)),
        std::optional<std::string>(bearer(std::string(kToken) + "x")),
        std::optional<std::string>("Basic " + std::string(kToken))}) {
    for (const char* path : {target.c_str(), "/_flux/nope", "/_flux"}) {
      Answer answer = call("GET", path, authorization);
      EXPECT_EQ(answer.calls, 1);
      EXPECT_EQ(answer.response.status, 401) << authorization.value_or("<none>") << " " << path;
      EXPECT_EQ(answer.response.body,
                R"({"error":"missing or wrong admin token: pass --token or set FLUX_TOKEN"})");
    }
  }
}

TEST_F(AdminApiTest, AnEmptyConfiguredTokenLetsNobodyIn) {
  AdminApi open(loop_, "", data::PoolOptions{});
  net::HttpRequest request;
  request.method = "GET";
  request.target = "/_flux/state/blame?table=users&id=42";
  request.headers.push_back({"authorization", "Bearer "});
  int status = 0;
  open.handle(std::move(request), [&status](net::HttpResponse r) { status = r.status; });
  EXPECT_EQ(status, 401);
}

TEST_F(AdminApiTest, RoutesAndMethods) {
  Answer unknown = get("/_flux/state/nope?table=users&id=1");
  EXPECT_EQ(unknown.calls, 1);
  EXPECT_EQ(unknown.response.status, 404);
  EXPECT_NE(error(unknown).find("/_flux/state/history"), std::string::npos);

  Answer post = call("POST", "/_flux/state/blame?table=users&id=1", bearer(kToken));
  EXPECT_EQ(post.response.status, 405);
  EXPECT_EQ(post.calls, 1);
}

TEST_F(AdminApiTest, BadParametersSayWhatToPass) {
  Answer missing = get("/_flux/state/history?table=users");
  EXPECT_EQ(missing.response.status, 400);
  EXPECT_NE(error(missing).find("id=<primary key>"), std::string::npos) << error(missing);

  Answer limit = get("/_flux/state/history?table=users&id=1&limit=99999");
  EXPECT_EQ(limit.response.status, 400);
  EXPECT_NE(error(limit).find("1 to 10000"), std::string::npos);

  Answer encoding = get("/_flux/state/blame?table=users&id=%G1");
  EXPECT_EQ(encoding.response.status, 400);
}

TEST_F(AdminApiTest, RecordRoutesCheckTheirParametersBeforeTheDatabase) {
  Answer id = get("/_flux/records/not-an-id");
  EXPECT_EQ(id.calls, 1);
  EXPECT_EQ(id.response.status, 400);
  EXPECT_NE(error(id).find("req:550e8400"), std::string::npos) << error(id);

  Answer filter = get("/_flux/records?limit=0");
  EXPECT_EQ(filter.response.status, 400);
  EXPECT_NE(error(filter).find("1 to 1000"), std::string::npos) << error(filter);

  Answer nested = get("/_flux/records/a/b");
  EXPECT_EQ(nested.response.status, 404);
  EXPECT_NE(error(nested).find("GET /_flux/records/<id>"), std::string::npos) << error(nested);

  Answer post = call("POST", "/_flux/records", bearer(kToken));
  EXPECT_EQ(post.response.status, 405);

  Answer unauthorized = call("GET", "/_flux/records/req:550e8400", std::nullopt);
  EXPECT_EQ(unauthorized.response.status, 401);
}

TEST_F(AdminApiTest, RecordRoutesWithoutPostgresAreA503) {
  for (const char* target : {"/_flux/records/req:550e8400", "/_flux/records?fn=checkout"}) {
    Answer answer = get(target);
    EXPECT_EQ(answer.calls, 1) << target;
    EXPECT_EQ(answer.response.status, 503) << target;
    EXPECT_NE(error(answer).find("PostgreSQL is unreachable"), std::string::npos) << error(answer);
  }
}

TEST_F(AdminApiTest, UnreachablePostgresIsA503) {
  Answer answer = get("/_flux/state/history?table=users&id=42");
  EXPECT_EQ(answer.calls, 1);
  EXPECT_EQ(answer.response.status, 503);
  EXPECT_NE(error(answer).find("PostgreSQL is unreachable"), std::string::npos) << error(answer);

  Answer blame = get("/_flux/state/blame?table=users&id=42");
  EXPECT_EQ(blame.calls, 1);
  EXPECT_EQ(blame.response.status, 503);
}

}  // namespace
}  // namespace flux::admin

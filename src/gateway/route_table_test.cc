#include "gateway/route_table.h"

#include <gtest/gtest.h>

namespace flux::gateway {
namespace {

std::shared_ptr<const runtime::FunctionBundle> bundle(std::string name) {
  auto b = std::make_shared<runtime::FunctionBundle>();
  b->name = std::move(name);
  return b;
}

using Outcome = RouteTable::Match::Outcome;

TEST(RouteTable, MatchesStaticAndParameterRoutes) {
  auto table = RouteTable::build({{"GET", "/users/:id", bundle("get_user")},
                                  {"GET", "/users/me", bundle("me")},
                                  {"POST", "/users", bundle("create_user")}});
  ASSERT_TRUE(table) << table.error().message;
  auto m = table->match("GET", "/users/42");
  ASSERT_EQ(m.outcome, Outcome::kFound);
  EXPECT_EQ(m.route->bundle->name, "get_user");
  ASSERT_EQ(m.params.size(), 1u);
  EXPECT_EQ(m.params[0].first, "id");
  EXPECT_EQ(m.params[0].second, "42");
  EXPECT_EQ(table->match("GET", "/users/me").route->bundle->name, "me");
  EXPECT_EQ(table->match("GET", "/users/a%20b").params[0].second, "a b");
  EXPECT_EQ(table->match("POST", "/users/").route->bundle->name, "create_user");
}

TEST(RouteTable, DistinguishesNotFoundFromWrongMethod) {
  auto table = RouteTable::build(
      {{"POST", "/orders", bundle("orders")}, {"PUT", "/orders", bundle("orders_put")}});
  ASSERT_TRUE(table);
  EXPECT_EQ(table->match("GET", "/nothing").outcome, Outcome::kNotFound);
  auto m = table->match("GET", "/orders");
  EXPECT_EQ(m.outcome, Outcome::kMethodNotAllowed);
  EXPECT_EQ(m.allowed, "POST, PUT");
}

TEST(RouteTable, AnyAndHead) {
  auto table =
      RouteTable::build({{"ANY", "/echo", bundle("echo")}, {"GET", "/page", bundle("page")}});
  ASSERT_TRUE(table);
  EXPECT_EQ(table->match("DELETE", "/echo").outcome, Outcome::kFound);
  EXPECT_EQ(table->match("HEAD", "/page").outcome, Outcome::kFound);
}

TEST(RouteTable, RejectsBadAndDuplicateRoutes) {
  EXPECT_FALSE(RouteTable::build({{"GET", "nope", bundle("a")}}));
  auto dup = RouteTable::build({{"GET", "/x/:a", bundle("a")}, {"GET", "/x/:a", bundle("b")}});
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message.find("'a' and 'b'"), std::string::npos);
}

}  // namespace
}  // namespace flux::gateway

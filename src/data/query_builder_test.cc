#include "data/query_builder.h"

#include <gtest/gtest.h>

namespace flux::data {
namespace {

Catalog usersCatalog() {
  QueryResult r;
  r.columns = {{"nspname", 19}, {"relname", 19}, {"attname", 19}, {"type", 25}, {"pk", 23}};
  r.rows = {{"public", "users", "id", "bigint", "1"},
            {"public", "users", "email", "text", "0"},
            {"public", "users", "name", "text", "0"},
            {"public", "users", "plan", "text", "0"},
            {"billing", "invoices", "id", "integer", "1"}};
  return *Catalog::fromResult(r);
}

TEST(QueryBuilder, InsertQuotesNamesAndBindsValues) {
  Catalog catalog = usersCatalog();
  auto q =
      buildInsert(catalog, "users", {InsertRow{{{"email", "a@b.com"}, {"name", std::nullopt}}}});
  ASSERT_TRUE(q) << q.error().message;
  EXPECT_EQ(q->sql, R"(insert into "public"."users" ("email","name") values ($1,$2) returning *)");
  ASSERT_EQ(q->params.size(), 2u);
  EXPECT_EQ(*q->params[0], "a@b.com");
  EXPECT_FALSE(q->params[1]);
  EXPECT_EQ(q->table->primary_key, std::vector<std::string>{"id"});
}

TEST(QueryBuilder, MultiRowInsertFillsMissingColumnsWithDefault) {
  Catalog catalog = usersCatalog();
  auto q = buildInsert(catalog, "users",
                       {InsertRow{{{"email", "a"}}}, InsertRow{{{"email", "b"}, {"plan", "pro"}}}});
  ASSERT_TRUE(q);
  EXPECT_EQ(
      q->sql,
      R"(insert into "public"."users" ("email","plan") values ($1,default),($2,$3) returning *)");
}

TEST(QueryBuilder, UpdateWithEqualityNullAndIn) {
  Catalog catalog = usersCatalog();
  auto q =
      buildUpdate(catalog, "users", {{"id", std::vector<SqlValue>{"1", "2"}}, {"name", SqlValue{}}},
                  {{"plan", "pro"}});
  ASSERT_TRUE(q) << q.error().message;
  EXPECT_EQ(
      q->sql,
      R"(update "public"."users" set "plan" = $1 where "id" = any($2::bigint[]) and "name" is null returning *)");
  EXPECT_EQ(*q->params[1], R"({"1","2"})");
}

TEST(QueryBuilder, SchemaQualifiedTable) {
  Catalog catalog = usersCatalog();
  auto q = buildDelete(catalog, "billing.invoices", {{"id", SqlValue{"7"}}});
  ASSERT_TRUE(q);
  EXPECT_EQ(q->sql, R"(delete from "billing"."invoices" where "id" = $1 returning *)");
}

TEST(QueryBuilder, InjectionThroughNamesIsRefusedAndValuesAreBound) {
  Catalog catalog = usersCatalog();
  auto bad_table = buildInsert(catalog, "users; drop table users", {InsertRow{{{"email", "x"}}}});
  ASSERT_FALSE(bad_table);
  EXPECT_NE(bad_table.error().message.find("unknown table 'users; drop table users'"),
            std::string::npos);
  auto bad_column =
      buildUpdate(catalog, "users", {{"id\" = 1 or \"1", SqlValue{"1"}}}, {{"plan", "x"}});
  ASSERT_FALSE(bad_column);
  EXPECT_NE(bad_column.error().message.find("unknown column"), std::string::npos);
  auto value = buildDelete(catalog, "users", {{"email", SqlValue{"' or 1=1 --"}}});
  ASSERT_TRUE(value);
  EXPECT_EQ(value->sql.find("or 1=1"), std::string::npos);
  EXPECT_EQ(*value->params[0], "' or 1=1 --");
}

TEST(QueryBuilder, RefusesEmptyWhere) {
  Catalog catalog = usersCatalog();
  auto q = buildDelete(catalog, "users", {});
  ASSERT_FALSE(q);
  EXPECT_NE(q.error().message.find("refusing to touch every row"), std::string::npos);
}

TEST(QueryBuilder, ArrayLiteralEscapes) {
  EXPECT_EQ(arrayLiteral({"a\"b", "c\\d", std::nullopt}), R"({"a\"b","c\\d",NULL})");
  EXPECT_EQ(quoteIdentifier("we\"ird"), R"("we""ird")");
}

}  // namespace
}  // namespace flux::data

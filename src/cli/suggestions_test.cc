#include "cli/suggestions.h"

#include <gtest/gtest.h>

#include <set>

namespace flux::cli {
namespace {

struct Case {
  const char* message;
  int status;
  const char* code;
  bool zero_row_write;
  const char* rule;  // nullptr: no rule
  const char* hint;  // a phrase the first line must hold
};

FailureFacts factsOf(const Case& c) {
  FailureFacts facts;
  facts.message = c.message;
  facts.status = c.status;
  facts.error_code = c.code;
  facts.zero_row_write = c.zero_row_write;
  return facts;
}

// Each rule with the failures the product documents and real runtimes produce.
const Case kCases[] = {
    // timeout
    {"Stripe API timeout after 10s", 500, "", false, "timeout", "idempotency key"},
    {"Request timed out", 500, "", false, "timeout", "shorter timeout"},
    {"fetch failed: ETIMEDOUT", 500, "", false, "timeout", "timeout"},
    {"the function did not answer in time", 504, "timeout", false, "timeout", "timeout"},
    // row not found / 0 rows affected
    {"Row not found: subscriptions WHERE customer_id = 'cus_ABC'", 500, "user_code", false,
     "row_not_found", "did not exist"},
    {"User 42 not found", 500, "", false, "row_not_found", "did not exist"},
    {"customer_id missing from subscriptions", 200, "", true, "row_not_found", "did not exist"},
    // unique violation / duplicate key
    {"duplicate key value violates unique constraint \"users_email_key\"", 500, "", false,
     "unique_violation", "upsert"},
    {"ERROR 23505", 500, "", false, "unique_violation", "idempotency key"},
    {"user already exists", 409, "", false, "unique_violation", "upsert"},
    // validation
    {"Validation error: email required", 400, "", false, "validation", "Validate the input"},
    {"POST /create_user answered 400: email required", 400, "", false, "validation", "4xx"},
    {"amount must be positive", 500, "", false, "validation", "Validate"},
    {"POST /orders answered 422", 422, "", false, "validation", "Validate"},
    // rate limit
    {"Stripe answered 429 Too Many Requests", 500, "", false, "rate_limit", "backoff and jitter"},
    {"rate limit exceeded for this key", 500, "", false, "rate_limit", "jitter"},
    {"GET /search answered 429", 429, "", false, "rate_limit", "backoff"},
    // unavailable
    {"connect ECONNREFUSED 127.0.0.1:5432", 500, "", false, "unavailable", "backoff"},
    {"connection refused", 500, "", false, "unavailable", "health"},
    {"upstream answered 503 Service Unavailable", 500, "", false, "unavailable", "health"},
    {"PostgreSQL is unreachable", 503, "unavailable", false, "unavailable", "retry"},
    // memory
    {"JavaScript heap out of memory", 500, "resource_exhausted", false, "memory_limit",
     "stream or paginate"},
    {"the function exceeded its memory limit (256 MB)", 500, "", false, "memory_limit", "paginate"},
    // CPU
    {"CPU time limit exceeded", 500, "", false, "cpu_limit", "background job"},
    {"Script execution time exceeded its CPU limit", 500, "timeout", false, "cpu_limit",
     "background job"},
    // JSON parse
    {"Unexpected token < in JSON at position 0", 400, "", false, "json_parse", "content-type"},
    {"SyntaxError: JSON.parse: unexpected end of data", 500, "", false, "json_parse",
     "content-type"},
    {"invalid JSON body", 400, "", false, "json_parse", "content-type"},
    // permission
    {"permission denied for table users", 500, "", false, "permission", "credentials"},
    {"Stripe answered 401 Unauthorized", 500, "", false, "permission", "credentials"},
    {"GET /admin answered 403", 403, "", false, "permission", "credentials"},
    {"Invalid API key provided", 500, "", false, "permission", "credentials"},
    // foreign key
    {"insert or update on table \"orders\" violates foreign key constraint", 500, "", false,
     "foreign_key", "referenced row"},
    // deadlock
    {"deadlock detected", 500, "", false, "deadlock", "retry the whole transaction"},
    {"could not serialize access due to concurrent update", 500, "", false, "deadlock", "retry"},
    // undefined value
    {"TypeError: Cannot read properties of undefined (reading 'id')", 500, "user_code", false,
     "undefined_value", "missing"},
    {"ctx.stripe.charge is not a function", 500, "user_code", false, "undefined_value", "missing"},
    // nothing known
    {"the moon is in the wrong phase", 500, "user_code", false, nullptr, nullptr},
    {"error 14290 in module", 500, "", false, nullptr, nullptr},
};

TEST(SuggestionTest, EachFailureGetsItsRule) {
  for (const Case& c : kCases) {
    const SuggestionRule* rule = matchSuggestion(factsOf(c));
    if (c.rule == nullptr) {
      EXPECT_EQ(rule, nullptr) << c.message << " matched " << (rule ? rule->name : "");
      continue;
    }
    ASSERT_NE(rule, nullptr) << c.message;
    EXPECT_EQ(rule->name, c.rule) << c.message;
    ASSERT_FALSE(rule->lines.empty());
    EXPECT_NE(rule->lines[0].find(c.hint), std::string_view::npos)
        << c.message << ": " << rule->lines[0];
  }
}

TEST(SuggestionTest, EveryRuleIsCovered) {
  std::set<std::string_view> covered;
  for (const Case& c : kCases) {
    if (c.rule != nullptr) covered.insert(c.rule);
  }
  ASSERT_GE(suggestionRules().size(), 8u);
  std::set<std::string_view> names;
  for (const SuggestionRule& rule : suggestionRules()) {
    EXPECT_TRUE(names.insert(rule.name).second) << "two rules named " << rule.name;
    EXPECT_TRUE(covered.contains(rule.name)) << "no case for " << rule.name;
    ASSERT_FALSE(rule.lines.empty()) << rule.name;
    EXPECT_TRUE(rule.lines[0].starts_with("→ ")) << rule.name;
    for (std::string_view phrase : rule.phrases) {
      for (char c : phrase) {
        EXPECT_FALSE(c >= 'A' && c <= 'Z') << rule.name << ": phrases are lower case";
      }
    }
  }
}

TEST(SuggestionTest, SpecificRulesWinOverGeneralOnes) {
  // A CPU limit is no network timeout; invalid JSON is no validation rule; a 401 body
  // "missing token" is about credentials, not input.
  FailureFacts cpu{"CPU time limit exceeded (timeout)", "timeout", 500, false};
  EXPECT_EQ(matchSuggestion(cpu)->name, "cpu_limit");
  FailureFacts json{"invalid JSON: missing field", "", 400, false};
  EXPECT_EQ(matchSuggestion(json)->name, "json_parse");
  FailureFacts auth{"Unauthorized: missing token", "", 401, false};
  EXPECT_EQ(matchSuggestion(auth)->name, "permission");
  // The error matters more than a 0-row write that came before it.
  FailureFacts timeout{"Stripe API timeout", "", 500, true};
  EXPECT_EQ(matchSuggestion(timeout)->name, "timeout");
}

TEST(SuggestionTest, StatusNumbersMatchWhole) {
  EXPECT_EQ(matchSuggestion({"code 4290", "", 500, false}), nullptr);
  EXPECT_EQ(matchSuggestion({"code 1429", "", 500, false}), nullptr);
  EXPECT_EQ(matchSuggestion({"answered 429.", "", 500, false})->name, "rate_limit");
  EXPECT_EQ(matchSuggestion({"(429)", "", 500, false})->name, "rate_limit");
  EXPECT_EQ(matchSuggestion({"", "", 429, false})->name, "rate_limit");
}

}  // namespace
}  // namespace flux::cli

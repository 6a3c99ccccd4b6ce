#include "cli/suggestions.h"

#include <algorithm>
#include <cctype>

namespace flux::cli {

namespace {

std::string lowerCase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// `number` in `text` with no digit right before or after it.
bool containsNumber(std::string_view text, std::string_view number) {
  for (size_t at = text.find(number); at != std::string_view::npos;
       at = text.find(number, at + 1)) {
    bool digit_before = at > 0 && isDigit(text[at - 1]);
    size_t end = at + number.size();
    bool digit_after = end < text.size() && isDigit(text[end]);
    if (!digit_before && !digit_after) return true;
  }
  return false;
}

bool matches(const SuggestionRule& rule, const FailureFacts& facts, std::string_view message,
             std::string_view code) {
  for (std::string_view phrase : rule.phrases) {
    if (message.find(phrase) != std::string_view::npos || code == phrase) return true;
  }
  for (int status : rule.statuses) {
    if (facts.status == status || containsNumber(message, std::to_string(status))) return true;
  }
  return rule.on_zero_row_write && facts.zero_row_write;
}

}  // namespace

const std::vector<SuggestionRule>& suggestionRules() {
  static const std::vector<SuggestionRule> kRules = {
      {"cpu_limit",
       {"cpu time limit", "cpu limit", "cpu time exceeded", "script execution time"},
       {},
       false,
       {"→ The function used up its CPU time: move the heavy work to a background job",
        "Or split it into smaller steps that each finish quickly"}},
      {"memory_limit",
       {"heap", "memory limit", "out of memory", "allocation failed", "array buffer allocation"},
       {},
       false,
       {"→ The function ran out of memory: stream or paginate instead of loading everything",
        "Read rows in pages (LIMIT/OFFSET or a cursor) and avoid building large arrays"}},
      {"timeout",
       {"timeout", "timed out", "time out", "deadline exceeded", "etimedout"},
       {504},
       false,
       {"→ Add a shorter timeout (e.g. 5s) + retry with an idempotency key",
        "Consider moving the slow call to an async background step"}},
      {"rate_limit",
       {"rate limit", "ratelimit", "rate-limit", "too many requests", "throttl"},
       {429},
       false,
       {"→ Rate limited: retry with exponential backoff and jitter",
        "Honour the Retry-After header and spread or batch the calls"}},
      {"unavailable",
       {"connection refused", "econnrefused", "econnreset", "connection reset", "unavailable",
        "could not connect", "failed to connect", "bad gateway", "enotfound", "network error"},
       {502, 503},
       false,
       {"→ A dependency did not answer: retry with backoff and check the dependency's health",
        "Make sure it is called at the right address for this environment"}},
      {"permission",
       {"permission denied", "unauthorized", "unauthorised", "forbidden", "access denied",
        "invalid api key", "authentication", "not authorized", "invalid token",
        "insufficient privilege"},
       {401, 403},
       false,
       {"→ Check the credentials: the secret, its scopes and whether it expired",
        "Make sure the right key is set for this environment"}},
      {"unique_violation",
       {"duplicate key", "unique violation", "unique constraint", "unique_violation",
        "already exists", "23505"},
       {409},
       false,
       {"→ The row already exists: use an upsert (INSERT ... ON CONFLICT) or an idempotency key",
        "A retried request must not insert twice"}},
      {"foreign_key",
       {"foreign key", "foreign_key", "23503"},
       {},
       false,
       {"→ The referenced row is missing: create it first, in the same transaction",
        "Check the order in which the flow creates related rows"}},
      {"row_not_found",
       {"row not found", "0 rows affected", "no rows", "not found", "no such row"},
       {},
       true,
       {"→ The row did not exist when this ran",
        "Check the creation order: the flow that creates it must run first"}},
      {"json_parse",
       {"json parse", "parse json", "invalid json", "not valid json", "unexpected token",
        "unexpected end of json", "json.parse", "malformed json", "json at position"},
       {},
       false,
       {"→ The body is not the JSON the code expects: check the content-type and the body",
        "Parse it inside a try/catch and answer 400 with what was wrong"}},
      {"validation",
       {"validation", "required", "invalid", "must be", "bad request", "missing"},
       {400, 422},
       false,
       {"→ Validate the input early and return a clear 4xx naming the bad field",
        "Add client-side validation for the same rule"}},
      {"deadlock",
       {"deadlock", "could not serialize", "serialization failure", "40001", "40p01"},
       {},
       false,
       {"→ Concurrent transactions collided: retry the whole transaction",
        "Touch rows in a consistent order to avoid deadlocks"}},
      {"undefined_value",
       {"cannot read properties of undefined", "cannot read properties of null",
        "is not a function", "is undefined", "is not defined", "undefined is not"},
       {},
       false,
       {"→ A value was missing: check what the failing line reads",
        "Guard optional fields (?. and ?\?) and validate the input's shape"}},
  };
  return kRules;
}

const SuggestionRule* matchSuggestion(const FailureFacts& facts) {
  std::string message = lowerCase(facts.message);
  std::string code = lowerCase(facts.error_code);
  for (const SuggestionRule& rule : suggestionRules()) {
    if (matches(rule, facts, message, code)) return &rule;
  }
  return nullptr;
}

}  // namespace flux::cli

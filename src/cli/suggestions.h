// The SUGGESTION section of `flux why`: a fix hint chosen from a table of rules keyed on the
// failure's error pattern (message, error code, status, whether a write matched no row).
//
// The rules are ordered from the most specific to the most general and the first that matches
// wins: "CPU time limit exceeded" is a CPU rule, not a timeout; "invalid JSON" a parsing rule,
// not a validation one. Status codes match as whole numbers ("429", not "14290"). Pure data
// and pure functions: every rule is unit-tested.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace flux::cli {

// What `flux why` knows about a failure.
struct FailureFacts {
  std::string message;          // the root cause's message
  std::string error_code;       // the recorded error's code ("timeout", "user_code", ...), or empty
  int status = 0;               // the response status, 0 when none
  bool zero_row_write = false;  // an UPDATE or DELETE of the execution matched no row
};

struct SuggestionRule {
  std::string_view name;  // stable, for tests: "timeout", "rate_limit", ...
  // Lower-case phrases found anywhere in the message (or equal to the error code).
  std::vector<std::string_view> phrases;
  // Status codes: in the message as whole numbers, or the response's status.
  std::vector<int> statuses;
  bool on_zero_row_write = false;       // matches when a write matched no row
  std::vector<std::string_view> lines;  // the hint, first line most important
};

// The table, most specific first.
const std::vector<SuggestionRule>& suggestionRules();

// The first rule matching `facts`, or nullptr.
const SuggestionRule* matchSuggestion(const FailureFacts& facts);

}  // namespace flux::cli

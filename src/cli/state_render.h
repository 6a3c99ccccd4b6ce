// How `flux state history` and `flux state blame` print what the admin API answers.
//
//   users id=42  (4 mutations)
//
//   2026-03-10 12:00:00  INSERT  email=a@b.com, plan=free               req:4f9a3b2c
//   2026-03-10 14:21:59  UPDATE  name: null → Alice Smith               req:a3c91ef0
//   2026-03-10 14:22:01  UPDATE  plan: free → pro                       req:4f9a3b2c
//   2026-03-10 14:22:01  UPDATE  plan: pro → enterprise  (rolled back)  req:550e8400
//
//   email    a@b.com      req:4f9a3b2c  12:00:00
//   name     Alice Smith  req:a3c91ef0  14:21:59
//   plan     pro          req:550e8400  14:22:01  ✗ rolled back
//
// Times are UTC. A request is shown by the last 8 hex digits of its id (the first 8 are a
// clock and repeat); a write made outside Flux by its actor ("by flux (psql)"). The key
// columns are in the header, so rows list the other columns. Pure functions of the JSON: the
// tests feed them fixtures.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "cli/text_style.h"

namespace flux::cli {

// kOn when stdout is a terminal and NO_COLOR is not set (or set to the empty string).
Color stdoutColor();

// The body of GET /_flux/state/history, printed; ends with a newline.
std::string renderHistory(const nlohmann::json& history, Color color);

// The body of GET /_flux/state/blame, printed; ends with a newline.
std::string renderBlame(const nlohmann::json& blame, Color color);

// "req:550e8400" from "0195a1b2-...-0000550e8400": the last 8 hex digits.
std::string requestHandle(std::string_view request_id);

// "2026-03-10T14:22:01.123456Z" (or with an offset) -> "2026-03-10 14:22:01" in UTC; the text
// as it is when it does not parse.
std::string formatUtcTimestamp(std::string_view iso);

// A row's values as "email=a@b.com, plan=free": without `keys` (the header shows them) and
// without nulls, unless that leaves nothing.
std::string formatRowValues(const nlohmann::json& row, const std::vector<std::string>& keys);

// The columns an UPDATE mutation ({old, new, changed_columns}) changed: "plan: free → pro".
std::string formatChanges(const nlohmann::json& mutation);

// A value as a person reads it: strings unquoted (line breaks escaped), null as null, numbers
// and booleans as JSON, objects and arrays as compact JSON; cut with "…" past 60 characters.
std::string formatValue(const nlohmann::json& value);

}  // namespace flux::cli

// Query strings as the admin endpoints take them: decoding, and the one way every endpoint
// reads its parameters (known names and their aliases, each at most once, text of bounded
// size), so that they all refuse the same things with the same words.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"

namespace flux::admin {

// Decodes %XX escapes and '+' (a space, as in HTML forms). kInvalidArgument on a malformed
// escape.
Result<std::string> percentDecode(std::string_view text);

// "a=1&b=x%20y" -> {{"a","1"},{"b","x y"}}, in order. Empty pieces are skipped; a name without
// '=' has an empty value.
Result<std::vector<std::pair<std::string, std::string>>> parseQueryString(std::string_view query);

// True when `text` is well-formed UTF-8 (no overlongs, surrogates or code points past
// U+10FFFF).
bool isValidUtf8(std::string_view text);

// Parameters by their canonical name.
using Parameters = std::map<std::string, std::string, std::less<>>;

// An endpoint's parameters from its query string. `names` maps every name it takes (aliases
// included) to the canonical name the result uses; other names are ignored. kInvalidArgument
// when the query string is malformed, a parameter comes twice (an alias and its canonical
// name count as one: "'fn' is given twice: pass it once"), or a value is not UTF-8 text without
// NUL of at most `max_bytes` bytes.
Result<Parameters> knownParameters(std::string_view query,
                                   const std::map<std::string_view, std::string_view>& names,
                                   size_t max_bytes);

// "1", "true", "yes" / "", "0", "false", "no": a flag's value.
bool isTrueFlag(std::string_view value);
bool isFalseFlag(std::string_view value);

}  // namespace flux::admin

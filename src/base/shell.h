// Quoting words for /bin/sh (pg_ctl runs the server through `sh -c` with its -o options).
#pragma once

#include <string>
#include <string_view>

namespace flux {

// `word` in single quotes, with each ' written as '\''; safe for any bytes but NUL.
std::string shellQuote(std::string_view word);

}  // namespace flux

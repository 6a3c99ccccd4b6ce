// UTF-8 validation for text that must reach PostgreSQL (which refuses invalid UTF-8).
#pragma once

#include <cstddef>
#include <string_view>

namespace flux::record {

// U+FFFD, what every invalid sequence becomes.
inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";

// Length of the valid UTF-8 sequence starting at text[at] (1 for ASCII), or 0 when it is
// invalid: a stray continuation byte, an overlong form, a surrogate, beyond U+10FFFF, or cut
// short. Precondition: at < text.size().
size_t utf8SequenceLength(std::string_view text, size_t at);

}  // namespace flux::record

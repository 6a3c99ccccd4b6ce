// Server-Sent Events framing (https://html.spec.whatwg.org/multipage/server-sent-events.html)
// for GET /_flux/records/stream: pure functions, tested in sse_test.cc.
#pragma once

#include <string>
#include <string_view>

namespace flux::admin {

// One event: "event: <event>\nid: <id>\ndata: <line>\n...\n\n". Each line of `data` becomes
// its own "data:" field (a reader joins them with '\n' again); CR and CRLF count as line
// breaks. CR, LF and NUL are dropped from `event` and `id`, which cannot hold them; the
// id field is left out when nothing is left of `id`.
std::string sseEvent(std::string_view event, std::string_view data, std::string_view id = {});

// A comment, which readers ignore: ": <text>\n\n" (keeps idle connections and proxies alive).
// Line breaks in `text` become spaces.
std::string sseComment(std::string_view text);

}  // namespace flux::admin

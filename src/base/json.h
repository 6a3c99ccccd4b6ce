// Small JSON writing helpers for hot paths that build a few fields by hand (error bodies,
// log lines). Anything structured uses a JSON library instead.
#pragma once

#include <string>
#include <string_view>

namespace flux {

// Appends `value` as a quoted, escaped JSON string.
void appendJsonString(std::string& out, std::string_view value);

// {"error":"<message>"} or, with a request id, {"error":"<message>","request_id":"<id>"}.
std::string jsonError(std::string_view message, std::string_view request_id = {});

}  // namespace flux

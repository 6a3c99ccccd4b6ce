// AdminClient: how CLI commands find a Flux server's admin API and ask it for JSON.
//
// The server and its token come from, in order: --url / --token, the FLUX_URL / FLUX_TOKEN
// environment variables, and the .flux/dev.json that `flux dev` writes in the project
// ({"url": "http://127.0.0.1:4000", "token": "..."}), found by walking up from the current
// directory. The token from dev.json is only ever sent to the URL in that same file. The token
// is never printed, in messages or otherwise.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/error.h"
#include "net/http_stream.h"

namespace flux::cli {

// Where the admin API is.
struct AdminServer {
  std::string url;    // "http://127.0.0.1:4000", without a trailing '/'
  std::string token;  // secret: never print it
};

// What findAdminServer() looks at; empty optionals are "not given".
struct AdminServerSources {
  std::optional<std::string> url_flag;
  std::optional<std::string> token_flag;
  std::optional<std::string> url_env;    // FLUX_URL
  std::optional<std::string> token_env;  // FLUX_TOKEN
  std::filesystem::path start_dir;       // where the walk up to .flux/dev.json starts
};

// The flags as given (empty strings are "not given"), the process environment and the
// current directory.
AdminServerSources adminServerSources(const std::string& url_flag, const std::string& token_flag);

// The server to ask. kNotFound "no Flux server found: run `flux dev` in this project, or pass
// --url and --token" when nothing names one; kInvalidArgument when a URL has no token to go
// with it or dev.json is malformed.
Result<AdminServer> findAdminServer(const AdminServerSources& sources);

// The first <dir>/.flux/dev.json from `start` up to the root, or nullopt.
std::optional<std::filesystem::path> findDevFile(const std::filesystem::path& start);

using UrlParams = std::vector<std::pair<std::string, std::string>>;

// RFC 3986 percent-encoding of everything but unreserved characters (A-Z a-z 0-9 - . _ ~).
std::string percentEncode(std::string_view text);

// "<server.url><path>?a=1&b=x%20y" (no '?' without params).
std::string adminUrl(const AdminServer& server, std::string_view path, const UrlParams& params);

inline constexpr std::chrono::milliseconds kAdminTimeout{30'000};

// GETs an admin path and returns its JSON body when the status is 2xx. Otherwise an Error
// whose message is the server's "error" (or a description of the status) and whose code
// follows the status: 400, 401 and 409 kInvalidArgument, 404 kNotFound, 502/503/504
// kUnavailable, other kInternal; the status comes along in the field "status" and a JSON
// object body in the field "body". kUnavailable or kTimeout when the server cannot be reached.
Result<nlohmann::json> adminGet(const AdminServer& server, std::string_view path,
                                const UrlParams& params,
                                std::chrono::milliseconds timeout = kAdminTimeout);

// Opens an admin path whose answer is a stream (GET /_flux/records/stream: text/event-stream)
// once its status and headers are in, within `timeout`; read its body with HttpStream. A
// non-2xx answer is an Error as adminGet's.
Result<std::unique_ptr<net::HttpStream>> adminStream(const AdminServer& server,
                                                     std::string_view path, const UrlParams& params,
                                                     std::chrono::milliseconds timeout);

// The Error adminGet and adminStream make of a non-2xx answer (`body_text` as received).
Error answerError(const AdminServer& server, std::string_view path, int status,
                  const std::string& body_text);

}  // namespace flux::cli

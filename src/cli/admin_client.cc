#include "cli/admin_client.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "net/http_client.h"
#include "net/http_stream.h"

namespace flux::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::string_view kNoServer =
    "no Flux server found: run `flux dev` in this project, or pass --url and --token";

std::optional<std::string> envValue(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

std::optional<std::string> nonEmpty(const std::string& text) {
  if (text.empty()) return std::nullopt;
  return text;
}

std::string withoutTrailingSlash(std::string url) {
  while (url.size() > 1 && url.back() == '/') url.pop_back();
  return url;
}

struct DevFile {
  std::string url;
  std::optional<std::string> token;
};

Result<DevFile> readDevFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  if (!in || !(text << in.rdbuf())) {
    return fail(ErrorCode::kInvalidArgument,
                "cannot read " + path.string() + ": restart `flux dev` to write it again");
  }
  json parsed = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("url") ||
      !parsed["url"].is_string()) {
    return fail(ErrorCode::kInvalidArgument,
                path.string() +
                    " is not what `flux dev` writes (an object with \"url\" and "
                    "\"token\"): restart `flux dev` to write it again");
  }
  DevFile dev;
  dev.url = parsed["url"].get<std::string>();
  if (auto token = parsed.find("token");
      token != parsed.end() && token->is_string() && !token->get<std::string>().empty()) {
    dev.token = token->get<std::string>();
  }
  return dev;
}

ErrorCode codeForStatus(int status) {
  switch (status) {
    case 400:
    case 401:
    case 403:
    case 405:
    case 409:
      return ErrorCode::kInvalidArgument;
    case 404:
      return ErrorCode::kNotFound;
    case 502:
    case 503:
    case 504:
      return ErrorCode::kUnavailable;
    default:
      return ErrorCode::kInternal;
  }
}

// The only header the HTTP clients refuse is ours: say so without echoing the token.
Error withoutToken(Error error) {
  if (error.code == ErrorCode::kInvalidArgument && error.message.starts_with("the authorization")) {
    error.message = "the admin token has a line break or NUL in it: check --token or FLUX_TOKEN";
  }
  return error;
}

}  // namespace

AdminServerSources adminServerSources(const std::string& url_flag, const std::string& token_flag) {
  AdminServerSources sources;
  sources.url_flag = nonEmpty(url_flag);
  sources.token_flag = nonEmpty(token_flag);
  sources.url_env = envValue("FLUX_URL");
  sources.token_env = envValue("FLUX_TOKEN");
  std::error_code ec;
  sources.start_dir = fs::current_path(ec);
  return sources;
}

std::optional<fs::path> findDevFile(const fs::path& start) {
  std::error_code ec;
  fs::path dir = start.empty() ? fs::path() : fs::absolute(start, ec);
  if (ec || dir.empty()) return std::nullopt;
  for (;;) {
    fs::path candidate = dir / ".flux" / "dev.json";
    if (fs::is_regular_file(candidate, ec)) return candidate;
    fs::path parent = dir.parent_path();
    if (parent == dir || parent.empty()) return std::nullopt;
    dir = parent;
  }
}

Result<AdminServer> findAdminServer(const AdminServerSources& sources) {
  AdminServer server;
  std::optional<std::string> url = sources.url_flag ? sources.url_flag : sources.url_env;
  std::optional<std::string> token = sources.token_flag ? sources.token_flag : sources.token_env;

  if (!url || !token) {
    std::optional<fs::path> dev_path = findDevFile(sources.start_dir);
    if (dev_path) {
      auto dev = readDevFile(*dev_path);
      if (!dev) return std::unexpected(dev.error());
      if (!url) url = dev->url;
      // dev.json's token belongs to dev.json's server: never send it anywhere else.
      if (!token && withoutTrailingSlash(*url) == withoutTrailingSlash(dev->url)) {
        token = dev->token;
      }
    }
  }
  if (!url) return fail(ErrorCode::kNotFound, std::string(kNoServer));
  server.url = withoutTrailingSlash(*url);
  if (!token) {
    return fail(ErrorCode::kInvalidArgument,
                "no admin token for " + server.url + ": pass --token or set FLUX_TOKEN");
  }
  server.token = std::move(*token);
  return server;
}

std::string percentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto b = static_cast<unsigned char>(c);
    if ((b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') || b == '-' ||
        b == '.' || b == '_' || b == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 0xF]);
    }
  }
  return out;
}

std::string adminUrl(const AdminServer& server, std::string_view path, const UrlParams& params) {
  std::string url = server.url;
  url += path;
  char separator = '?';
  for (const auto& [name, value] : params) {
    url.push_back(separator);
    separator = '&';
    url += percentEncode(name);
    url.push_back('=');
    url += percentEncode(value);
  }
  return url;
}

Result<json> adminGet(const AdminServer& server, std::string_view path, const UrlParams& params,
                      std::chrono::milliseconds timeout) {
  std::vector<net::HttpHeader> headers{{"authorization", "Bearer " + server.token},
                                       {"accept", "application/json"}};
  auto response = net::httpGet(adminUrl(server, path, params), headers, timeout);
  if (!response) return std::unexpected(withoutToken(std::move(response.error())));

  json body = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
  bool ok = response->status >= 200 && response->status < 300;
  if (ok && !body.is_discarded()) return body;
  if (ok) {
    return fail(ErrorCode::kInternal,
                "the server at " + server.url + " answered with something that is not JSON");
  }
  return std::unexpected(answerError(server, path, response->status, response->body));
}

Error answerError(const AdminServer& server, std::string_view path, int status,
                  const std::string& body_text) {
  json body = json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  std::string message;
  if (!body.is_discarded() && body.is_object() && body.contains("error") &&
      body["error"].is_string()) {
    message = body["error"].get<std::string>();
  } else {
    message = "the server at " + server.url + " answered " + std::to_string(status) + " to " +
              std::string(path);
  }
  Error error{codeForStatus(status), std::move(message), {}};
  error = std::move(error).with("status", std::to_string(status));
  // The whole answer, for commands that show more of it (the candidates of a 409).
  if (!body.is_discarded() && body.is_object()) {
    error = std::move(error).with("body", body_text);
  }
  return error;
}

Result<std::unique_ptr<net::HttpStream>> adminStream(const AdminServer& server,
                                                     std::string_view path, const UrlParams& params,
                                                     std::chrono::milliseconds timeout) {
  std::vector<net::HttpHeader> headers{{"authorization", "Bearer " + server.token},
                                       {"accept", "text/event-stream"}};
  auto stream = net::HttpStream::open(adminUrl(server, path, params), headers, timeout);
  if (!stream) return std::unexpected(withoutToken(std::move(stream.error())));
  int status = (*stream)->status();
  if (status >= 200 && status < 300) return std::move(*stream);
  auto body = (*stream)->readAll(timeout);
  return std::unexpected(answerError(server, path, status, body ? *body : std::string()));
}

}  // namespace flux::cli

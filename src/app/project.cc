#include "app/project.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <system_error>

#include "base/file.h"

namespace flux::app {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kMaxTimeoutMs = 300'000;
constexpr std::string_view kEnvPrefix = "FLUX_";

bool isFolderNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

bool isValidFolderName(std::string_view name) {
  return !name.empty() && std::ranges::all_of(name, isFolderNameChar);
}

bool isIdentifier(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::ranges::all_of(
      name, [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// Characters RFC 3986 calls unreserved: safe in a path segment without escaping.
bool isRouteChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' ||
         c == '~';
}

std::string trim(std::string_view s) {
  size_t begin = 0;
  size_t end = s.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(s[begin]))) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(s[end - 1]))) --end;
  return std::string(s.substr(begin, end - begin));
}

std::string toUpper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::unexpected<Error> configError(const fs::path& file, std::string message) {
  return fail(ErrorCode::kInvalidArgument, file.string() + ": " + message);
}

const char* jsonTypeName(const nlohmann::json& value) {
  if (value.is_number_integer()) return "an integer";
  if (value.is_number()) return "a number";
  if (value.is_string()) return "a string";
  if (value.is_boolean()) return "a boolean";
  if (value.is_array()) return "an array";
  if (value.is_object()) return "an object";
  return "null";
}

std::unexpected<Error> wrongType(const fs::path& file, const std::string& key, const char* expected,
                                 const nlohmann::json& value) {
  return configError(file, "\"" + key + "\" must be " + expected + ", not " + jsonTypeName(value));
}

// Checks a route: "/" or "/segment/..." where a segment is literal unreserved characters or
// ":name" for a parameter. Returns a message saying what is wrong, or "" when it is fine.
std::string routeProblem(const std::string& route) {
  if (!route.starts_with('/')) return "must start with \"/\"";
  if (route == "/") return "";
  std::set<std::string> params;
  size_t start = 1;
  for (;;) {
    size_t end = route.find('/', start);
    std::string_view segment =
        std::string_view(route).substr(start, end == std::string::npos ? end : end - start);
    if (segment.empty()) return "has an empty segment (\"//\" or a trailing \"/\")";
    if (segment.starts_with(':')) {
      std::string_view name = segment.substr(1);
      if (!isIdentifier(name)) {
        return "has a bad parameter \"" + std::string(segment) +
               "\": use \":name\" with letters, digits and _";
      }
      if (!params.insert(std::string(name)).second) {
        return "repeats the parameter \":" + std::string(name) + "\"";
      }
    } else if (!std::ranges::all_of(segment, isRouteChar)) {
      return "has a bad segment \"" + std::string(segment) +
             "\": use letters, digits, '-', '.', '_', '~' or \":param\"";
    }
    if (end == std::string::npos) return "";
    start = end + 1;
  }
}

// "/users/:id" and "/users/:name" match the same requests: compare routes with parameter
// names erased.
std::string routeShape(const std::string& route) {
  std::string shape;
  bool in_param = false;
  for (char c : route) {
    if (c == '/') in_param = false;
    if (in_param) continue;
    shape += c;
    if (c == ':') in_param = true;
  }
  return shape;
}

Result<void> applyConfig(const fs::path& file, FunctionSpec& spec) {
  auto text = readFile(file);
  if (!text) return std::unexpected(std::move(text.error()));
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(*text);
  } catch (const nlohmann::json::exception& e) {
    return configError(file, std::string("invalid JSON: ") + e.what());
  }
  if (!doc.is_object()) {
    return configError(file, std::string("must be a JSON object, not ") + jsonTypeName(doc));
  }
  for (const auto& [key, value] : doc.items()) {
    if (key == "name") {
      if (!value.is_string()) return wrongType(file, key, "a string", value);
      spec.name = value.get<std::string>();
      if (spec.name.empty()) return configError(file, "\"name\" must not be empty");
    } else if (key == "route") {
      if (!value.is_string()) return wrongType(file, key, "a string", value);
      spec.route = value.get<std::string>();
      if (std::string problem = routeProblem(spec.route); !problem.empty()) {
        return configError(file, "\"route\" \"" + spec.route + "\" " + problem);
      }
    } else if (key == "method") {
      if (!value.is_string()) return wrongType(file, key, "a string", value);
      std::string method = toUpper(value.get<std::string>());
      static constexpr std::string_view kMethods[] = {"GET",   "POST",   "PUT",
                                                      "PATCH", "DELETE", "ANY"};
      if (std::ranges::find(kMethods, method) == std::end(kMethods)) {
        return configError(file, "\"method\" \"" + value.get<std::string>() +
                                     "\" is not one of GET, POST, PUT, PATCH, DELETE, ANY");
      }
      spec.method = std::move(method);
    } else if (key == "timeout_ms") {
      if (!value.is_number_integer()) return wrongType(file, key, "a positive integer", value);
      // Unsigned values above INT64_MAX are out of range either way.
      if (value.is_number_unsigned() && value.get<uint64_t>() > uint64_t{kMaxTimeoutMs}) {
        return configError(file, "\"timeout_ms\" " + value.dump() + " is above the maximum " +
                                     std::to_string(kMaxTimeoutMs));
      }
      int64_t ms = value.get<int64_t>();
      if (ms <= 0) return configError(file, "\"timeout_ms\" must be positive, not " + value.dump());
      if (ms > kMaxTimeoutMs) {
        return configError(file, "\"timeout_ms\" " + value.dump() + " is above the maximum " +
                                     std::to_string(kMaxTimeoutMs));
      }
      spec.timeout = std::chrono::milliseconds(ms);
    } else {
      return configError(
          file, "unknown key \"" + key + "\" (known keys: name, route, method, timeout_ms)");
    }
  }
  return {};
}

fs::path absoluteRoot(const fs::path& root) {
  std::error_code ec;
  fs::path absolute = fs::absolute(root, ec);
  if (ec) absolute = root;
  absolute = absolute.lexically_normal();
  // lexically_normal keeps a trailing separator ("/p/" -> "/p/"); drop it.
  if (absolute.has_relative_path() && !absolute.has_filename()) absolute = absolute.parent_path();
  return absolute;
}

// Returns index.ts, else index.js, else an empty path.
fs::path findEntry(const fs::path& folder_dir) {
  std::error_code ec;
  for (const char* name : {"index.ts", "index.js"}) {
    fs::path candidate = folder_dir / name;
    if (fs::is_regular_file(candidate, ec)) return candidate;
  }
  return {};
}

// The folder is known to have an entry file and a valid name.
Result<FunctionSpec> loadFolder(const fs::path& folder_dir, const std::string& folder,
                                fs::path entry) {
  FunctionSpec spec;
  spec.name = folder;
  spec.folder = folder;
  spec.entry = std::move(entry);
  spec.route = "/" + folder;
  fs::path config = folder_dir / "flux.json";
  std::error_code ec;
  if (fs::exists(config, ec)) {
    if (auto applied = applyConfig(config, spec); !applied) {
      return std::unexpected(std::move(applied.error()));
    }
  }
  return spec;
}

void setEnv(std::vector<std::pair<std::string, std::string>>& env, std::string key,
            std::string value) {
  auto existing =
      std::ranges::find_if(env, [&key](const auto& entry) { return entry.first == key; });
  if (existing != env.end()) {
    existing->second = std::move(value);
  } else {
    env.emplace_back(std::move(key), std::move(value));
  }
}

// Parses the value part of a .env line: "quoted" (with \n \r \t \" \\ escapes), 'quoted'
// (literal), or bare, where " #" starts a comment.
Result<std::string> parseEnvValue(std::string_view raw, const std::string& where) {
  std::string value = trim(raw);
  if (value.empty()) return value;
  char quote = value[0];
  if (quote != '"' && quote != '\'') {
    for (size_t i = 1; i < value.size(); ++i) {
      if (value[i] == '#' && std::isspace(static_cast<unsigned char>(value[i - 1]))) {
        return trim(std::string_view(value).substr(0, i));
      }
    }
    return value;
  }
  std::string out;
  size_t i = 1;
  for (; i < value.size() && value[i] != quote; ++i) {
    if (quote == '"' && value[i] == '\\' && i + 1 < value.size()) {
      char next = value[++i];
      switch (next) {
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case '"':
        case '\\':
          out += next;
          break;
        default:
          out += '\\';
          out += next;
      }
    } else {
      out += value[i];
    }
  }
  if (i >= value.size()) {
    return fail(ErrorCode::kInvalidArgument,
                where + ": unterminated " + (quote == '"' ? "double" : "single") + " quote");
  }
  std::string rest = trim(std::string_view(value).substr(i + 1));
  if (!rest.empty() && !rest.starts_with('#')) {
    return fail(ErrorCode::kInvalidArgument,
                where + ": unexpected text after the closing quote: " + rest);
  }
  return out;
}

Result<void> parseDotEnv(const fs::path& file,
                         std::vector<std::pair<std::string, std::string>>& env) {
  auto text = readFile(file);
  if (!text) return std::unexpected(std::move(text.error()));
  std::istringstream lines(*text);
  std::string line;
  int number = 0;
  while (std::getline(lines, line)) {
    ++number;
    std::string where = file.string() + ":" + std::to_string(number);
    std::string_view content = line;
    if (content.ends_with('\r')) content.remove_suffix(1);
    std::string trimmed = trim(content);
    if (trimmed.empty() || trimmed.starts_with('#')) continue;
    std::string_view rest = trimmed;
    if (rest.starts_with("export") && rest.size() > 6 &&
        std::isspace(static_cast<unsigned char>(rest[6]))) {
      rest.remove_prefix(7);
    }
    size_t equals = rest.find('=');
    if (equals == std::string_view::npos) {
      return fail(ErrorCode::kInvalidArgument, where + ": expected KEY=VALUE");
    }
    std::string key = trim(rest.substr(0, equals));
    if (!isIdentifier(key)) {
      return fail(ErrorCode::kInvalidArgument,
                  where + ": bad variable name \"" + key +
                      "\": use letters, digits and _, not starting with a digit");
    }
    auto value = parseEnvValue(rest.substr(equals + 1), where);
    if (!value) return std::unexpected(std::move(value.error()));
    setEnv(env, std::move(key), std::move(*value));
  }
  return {};
}

void addProcessEnv(std::vector<std::pair<std::string, std::string>>& env) {
  // Sorted so the order does not depend on how the environment happened to be built.
  std::map<std::string, std::string> flux_vars;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view var = *entry;
    if (!var.starts_with(kEnvPrefix)) continue;
    size_t equals = var.find('=');
    if (equals == std::string_view::npos) continue;
    flux_vars[std::string(var.substr(0, equals))] = std::string(var.substr(equals + 1));
  }
  for (auto& [key, value] : flux_vars) setEnv(env, key, std::move(value));
}

}  // namespace

Result<FunctionSpec> loadFunction(const fs::path& root, const std::string& folder) {
  if (!isValidFolderName(folder)) {
    return fail(ErrorCode::kInvalidArgument,
                "bad function folder name \"" + folder + "\": use letters, digits, '_' and '-'");
  }
  fs::path folder_dir = absoluteRoot(root) / "functions" / folder;
  std::error_code ec;
  if (!fs::is_directory(folder_dir, ec)) {
    return fail(ErrorCode::kNotFound, "no function folder " + folder_dir.string());
  }
  fs::path entry = findEntry(folder_dir);
  if (entry.empty()) {
    return fail(ErrorCode::kNotFound,
                "no index.ts or index.js in " + folder_dir.string() + ": it is not a function");
  }
  return loadFolder(folder_dir, folder, std::move(entry));
}

Result<Project> loadProject(const fs::path& root) {
  Project project;
  project.root = absoluteRoot(root);
  fs::path functions_dir = project.root / "functions";
  std::error_code ec;
  if (!fs::is_directory(functions_dir, ec)) {
    return fail(ErrorCode::kNotFound, "no functions/ directory in " + project.root.string() +
                                          ": run `flux init <dir>` to create a project");
  }

  std::vector<std::pair<std::string, fs::path>> folders;  // name, entry
  fs::directory_iterator it(functions_dir, ec);
  if (ec) {
    return fail(ErrorCode::kInvalidArgument,
                "cannot list " + functions_dir.string() + ": " + ec.message());
  }
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    std::error_code type_ec;
    if (!it->is_directory(type_ec)) continue;  // shared modules may sit beside the folders
    fs::path entry = findEntry(it->path());
    // Folders without an entry (helpers, assets) are not functions.
    if (entry.empty()) continue;
    std::string folder = it->path().filename().string();
    if (!isValidFolderName(folder)) {
      return fail(ErrorCode::kInvalidArgument, "bad function folder name \"" + folder + "\" in " +
                                                   functions_dir.string() +
                                                   ": use letters, digits, '_' and '-'");
    }
    folders.emplace_back(std::move(folder), std::move(entry));
  }
  if (ec) {
    return fail(ErrorCode::kInvalidArgument,
                "cannot list " + functions_dir.string() + ": " + ec.message());
  }
  std::ranges::sort(folders);

  // Route shape + method -> folder, to report both sides of a clash.
  std::map<std::pair<std::string, std::string>, std::string> routes;
  for (auto& [folder, entry] : folders) {
    auto spec = loadFolder(functions_dir / folder, folder, std::move(entry));
    if (!spec) return std::unexpected(std::move(spec.error()));
    auto [existing, inserted] =
        routes.try_emplace({routeShape(spec->route), spec->method}, spec->folder);
    if (!inserted) {
      const FunctionSpec& other =
          *std::ranges::find(project.functions, existing->second, &FunctionSpec::folder);
      return fail(ErrorCode::kInvalidArgument,
                  "functions \"" + other.folder + "\" and \"" + spec->folder + "\" both serve " +
                      spec->method + " " + spec->route +
                      (other.route != spec->route ? " (as " + other.route + ")" : "") +
                      ": change \"route\" or \"method\" in one of their flux.json files");
    }
    project.functions.push_back(std::move(*spec));
  }

  fs::path dot_env = project.root / ".env";
  if (fs::exists(dot_env, ec)) {
    if (auto parsed = parseDotEnv(dot_env, project.env); !parsed) {
      return std::unexpected(std::move(parsed.error()));
    }
  }
  addProcessEnv(project.env);
  return project;
}

}  // namespace flux::app

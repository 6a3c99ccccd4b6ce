#include "app/bundler.h"

#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "app/subprocess.h"
#include "base/file.h"

namespace flux::app {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSourceMappingUrl = "//# sourceMappingURL=";

std::string trim(std::string_view s) {
  size_t begin = 0;
  size_t end = s.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(s[begin]))) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(s[end - 1]))) --end;
  return std::string(s.substr(begin, end - begin));
}

// Removes a final "//# sourceMappingURL=..." line: the runtime gets the map from the bundle,
// not by URL.
void stripSourceMappingUrl(std::string& code) {
  size_t end = code.size();
  while (end > 0 && std::isspace(static_cast<unsigned char>(code[end - 1]))) --end;
  size_t line_start = code.rfind('\n', end == 0 ? 0 : end - 1);
  line_start = line_start == std::string::npos ? 0 : line_start + 1;
  if (std::string_view(code).substr(line_start).starts_with(kSourceMappingUrl)) {
    code.erase(line_start);
  }
}

// esbuild lists sources relative to the output file's directory; the runtime wants them
// relative to the project root, with forward slashes.
Result<std::string> rewriteSources(const std::string& map_json, const fs::path& out_dir,
                                   const fs::path& root, const fs::path& map_path) {
  try {
    nlohmann::json map = nlohmann::json::parse(map_json);
    auto sources = map.find("sources");
    if (map.is_object() && sources != map.end() && sources->is_array()) {
      for (nlohmann::json& source : *sources) {
        if (!source.is_string()) continue;
        fs::path relative =
            (out_dir / source.get<std::string>()).lexically_normal().lexically_relative(root);
        if (!relative.empty()) source = relative.generic_string();
      }
    }
    return map.dump();
  } catch (const nlohmann::json::exception& e) {
    return fail(ErrorCode::kInternal,
                "esbuild wrote a bad source map " + map_path.string() + ": " + e.what());
  }
}

}  // namespace

Result<std::shared_ptr<const runtime::FunctionBundle>> bundleFunction(const Project& project,
                                                                      const FunctionSpec& spec,
                                                                      uint64_t version) {
  const fs::path& root = project.root;
  fs::path out_dir = root / ".flux" / "build";
  fs::path out_file = out_dir / (spec.folder + ".js");
  fs::path map_file = out_dir / (spec.folder + ".js.map");
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) {
    return fail(ErrorCode::kInternal, "cannot create " + out_dir.string() + ": " + ec.message());
  }
  // A stale output must not pass for this build's if esbuild fails half-way.
  fs::remove(out_file, ec);
  fs::remove(map_file, ec);

  // esbuild prints paths relative to its working directory, so pass the entry that way too:
  // errors then read "functions/hello/index.ts:3:7".
  fs::path entry = spec.entry.lexically_relative(root);
  if (entry.empty() || entry.begin()->string() == "..") entry = spec.entry;
  std::vector<std::string> argv = {
      "esbuild",
      entry.string(),
      "--bundle",
      "--format=esm",
      "--platform=neutral",
      "--target=es2022",
      "--main-fields=module,main",
      "--sourcemap=external",
      "--external:@flux/functions",
      "--log-level=error",
      "--outfile=" + out_file.string(),
  };
  auto run = runSubprocess(argv, SubprocessOptions{.cwd = root.string(), .run_as_user = {}});
  if (!run) {
    if (run.error().code == ErrorCode::kNotFound) {
      return fail(ErrorCode::kUnavailable,
                  "esbuild is not installed or not on PATH: run scripts/setup.sh to install it");
    }
    return std::unexpected(std::move(run.error()));
  }
  if (run->exit_code != 0) {
    std::string output = trim(run->output);
    if (output.empty()) {
      output = "esbuild failed on " + entry.string() + " (exit code " +
               std::to_string(run->exit_code) + ") without a message";
    }
    return fail(ErrorCode::kInvalidArgument, std::move(output));
  }

  auto code = readFile(out_file);
  if (!code) return std::unexpected(std::move(code.error()));
  auto map_json = readFile(map_file);
  if (!map_json) return std::unexpected(std::move(map_json.error()));
  auto rewritten = rewriteSources(*map_json, out_dir, root, map_file);
  if (!rewritten) return std::unexpected(std::move(rewritten.error()));
  auto source_map = runtime::SourceMap::parse(*rewritten);
  if (!source_map) {
    return fail(ErrorCode::kInternal, "esbuild wrote a bad source map " + map_file.string() + ": " +
                                          source_map.error().message);
  }
  stripSourceMappingUrl(*code);

  auto bundle = std::make_shared<runtime::FunctionBundle>();
  bundle->name = spec.folder;
  bundle->version = version;
  bundle->code = std::move(*code);
  bundle->source_map = std::move(*source_map);
  bundle->timeout = spec.timeout;
  return bundle;
}

}  // namespace flux::app

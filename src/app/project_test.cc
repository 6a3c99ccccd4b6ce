#include "app/project.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "app/file_watcher.h"

namespace flux::app {
namespace {

namespace fs = std::filesystem;

class TempProject {
 public:
  TempProject() {
    std::string pattern = (fs::temp_directory_path() / "flux_project_XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) root_ = pattern;
  }
  ~TempProject() {
    std::error_code ignored;
    if (!root_.empty()) fs::remove_all(root_, ignored);
  }
  const fs::path& root() const { return root_; }

  void write(const fs::path& relative, std::string_view content) const {
    fs::path path = root_ / relative;
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
  }
  void addFunction(const std::string& folder, std::string_view flux_json = {}) const {
    write("functions/" + folder + "/index.ts", "export default () => 1;\n");
    if (!flux_json.empty()) write("functions/" + folder + "/flux.json", flux_json);
  }

 private:
  fs::path root_;
};

// Sets an environment variable for the life of the object.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, const std::string& value) : name_(std::move(name)) {
    setenv(name_.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() { unsetenv(name_.c_str()); }

 private:
  std::string name_;
};

testing::AssertionResult hasError(const Result<Project>& project, ErrorCode code,
                                  std::initializer_list<std::string_view> words) {
  if (project) return testing::AssertionFailure() << "loaded without an error";
  if (project.error().code != code) {
    return testing::AssertionFailure()
           << "code " << errorCodeName(project.error().code) << ": " << project.error().message;
  }
  for (std::string_view word : words) {
    if (project.error().message.find(word) == std::string::npos) {
      return testing::AssertionFailure()
             << "message lacks \"" << word << "\": " << project.error().message;
    }
  }
  return testing::AssertionSuccess() << project.error().message;
}

TEST(Project, DefaultsComeFromTheFolder) {
  TempProject p;
  p.addFunction("hello");
  auto project = loadProject(p.root());
  ASSERT_TRUE(project.has_value()) << project.error().message;
  EXPECT_EQ(project->root, p.root());
  ASSERT_EQ(project->functions.size(), 1u);
  const FunctionSpec& spec = project->functions[0];
  EXPECT_EQ(spec.name, "hello");
  EXPECT_EQ(spec.folder, "hello");
  EXPECT_EQ(spec.entry, p.root() / "functions/hello/index.ts");
  EXPECT_TRUE(spec.entry.is_absolute());
  EXPECT_EQ(spec.route, "/hello");
  EXPECT_EQ(spec.method, "POST");
  EXPECT_EQ(spec.timeout, std::chrono::milliseconds(10'000));
}

TEST(Project, RelativeRootBecomesAbsolute) {
  TempProject p;
  p.addFunction("hello");
  fs::path previous = fs::current_path();
  fs::current_path(p.root());
  auto project = loadProject("./");
  fs::current_path(previous);
  ASSERT_TRUE(project.has_value()) << project.error().message;
  EXPECT_EQ(project->root, p.root());
  EXPECT_EQ(project->functions.at(0).entry, p.root() / "functions/hello/index.ts");
}

TEST(Project, IndexTsWinsOverIndexJs) {
  TempProject p;
  p.write("functions/both/index.ts", "");
  p.write("functions/both/index.js", "");
  p.write("functions/js_only/index.js", "");
  auto project = loadProject(p.root());
  ASSERT_TRUE(project.has_value()) << project.error().message;
  ASSERT_EQ(project->functions.size(), 2u);
  EXPECT_EQ(project->functions[0].entry.filename(), "index.ts");
  EXPECT_EQ(project->functions[1].entry.filename(), "index.js");
}

TEST(Project, SkipsFoldersWithoutAnIndexAndSortsByFolder) {
  TempProject p;
  p.addFunction("zeta");
  p.addFunction("alpha");
  p.addFunction("Mid-2_x");
  p.write("functions/shared/util.ts", "export const x = 1;\n");
  p.write("functions/.hidden stuff/notes.txt", "");  // a bad name is fine when not a function
  p.write("functions/helpers.ts", "export const y = 2;\n");
  auto project = loadProject(p.root());
  ASSERT_TRUE(project.has_value()) << project.error().message;
  std::vector<std::string> folders;
  for (const FunctionSpec& spec : project->functions) folders.push_back(spec.folder);
  EXPECT_EQ(folders, (std::vector<std::string>{"Mid-2_x", "alpha", "zeta"}));
}

TEST(Project, EmptyFunctionsDirectoryIsAnEmptyProject) {
  TempProject p;
  fs::create_directories(p.root() / "functions");
  auto project = loadProject(p.root());
  ASSERT_TRUE(project.has_value()) << project.error().message;
  EXPECT_TRUE(project->functions.empty());
}

TEST(Project, MissingFunctionsDirectory) {
  TempProject p;
  auto project = loadProject(p.root());
  ASSERT_FALSE(project.has_value());
  EXPECT_EQ(project.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(project.error().message, "no functions/ directory in " + p.root().string() +
                                         ": run `flux init <dir>` to create a project");
}

TEST(Project, FluxJsonOverridesDefaults) {
  TempProject p;
  p.addFunction("users", R"({"name": "Get user", "route": "/users/:id/posts/:post_id",
                            "method": "get", "timeout_ms": 2500})");
  p.addFunction("any", R"({"method": "AnY", "route": "/", "timeout_ms": 300000})");
  p.addFunction("empty", "{}");
  auto project = loadProject(p.root());
  ASSERT_TRUE(project.has_value()) << project.error().message;
  ASSERT_EQ(project->functions.size(), 3u);
  const FunctionSpec& any = project->functions[0];
  EXPECT_EQ(any.method, "ANY");
  EXPECT_EQ(any.route, "/");
  EXPECT_EQ(any.timeout, std::chrono::milliseconds(300'000));
  const FunctionSpec& empty = project->functions[1];
  EXPECT_EQ(empty.name, "empty");
  EXPECT_EQ(empty.route, "/empty");
  EXPECT_EQ(empty.method, "POST");
  const FunctionSpec& users = project->functions[2];
  EXPECT_EQ(users.name, "Get user");
  EXPECT_EQ(users.folder, "users");
  EXPECT_EQ(users.route, "/users/:id/posts/:post_id");
  EXPECT_EQ(users.method, "GET");
  EXPECT_EQ(users.timeout, std::chrono::milliseconds(2500));
}

TEST(Project, UnknownKeyIsNamed) {
  TempProject p;
  p.addFunction("f", R"({"route": "/f", "timeout": 5})");
  EXPECT_TRUE(hasError(loadProject(p.root()), ErrorCode::kInvalidArgument,
                       {"functions/f/flux.json", "unknown key \"timeout\""}));
}

TEST(Project, WrongTypesNameFileKeyAndType) {
  struct Case {
    std::string_view json;
    std::string_view key;
    std::string_view expected;
  };
  for (const Case& c : {
           Case{R"({"name": 5})", "\"name\"", "a string"},
           Case{R"({"route": ["/a"]})", "\"route\"", "a string"},
           Case{R"({"method": null})", "\"method\"", "a string"},
           Case{R"({"timeout_ms": "100"})", "\"timeout_ms\"", "a positive integer"},
           Case{R"({"timeout_ms": 1.5})", "\"timeout_ms\"", "a positive integer"},
           Case{R"({"timeout_ms": true})", "\"timeout_ms\"", "a positive integer"},
       }) {
    TempProject p;
    p.addFunction("f", c.json);
    EXPECT_TRUE(hasError(loadProject(p.root()), ErrorCode::kInvalidArgument,
                         {"functions/f/flux.json", c.key, c.expected}))
        << c.json;
  }
}

TEST(Project, BadValuesAreRejected) {
  struct Case {
    std::string_view json;
    std::string_view words;
  };
  for (const Case& c : {
           Case{R"({"name": ""})", "\"name\" must not be empty"},
           Case{R"({"route": "users"})", "must start with \"/\""},
           Case{R"({"route": ""})", "must start with \"/\""},
           Case{R"({"route": "/a//b"})", "empty segment"},
           Case{R"({"route": "/a/"})", "empty segment"},
           Case{R"({"route": "/a/:"})", "bad parameter"},
           Case{R"({"route": "/a/:1x"})", "bad parameter"},
           Case{R"({"route": "/a/:id/:id"})", "repeats the parameter"},
           Case{R"({"route": "/a b"})", "bad segment"},
           Case{R"({"route": "/a?x=1"})", "bad segment"},
           Case{R"({"method": "FETCH"})", "\"method\" \"FETCH\" is not one of"},
           Case{R"({"method": ""})", "is not one of"},
           Case{R"({"timeout_ms": 0})", "must be positive"},
           Case{R"({"timeout_ms": -5})", "must be positive"},
           Case{R"({"timeout_ms": 300001})", "above the maximum 300000"},
           Case{R"({"timeout_ms": 18446744073709551615})", "above the maximum"},
           Case{R"({"timeout_ms": 9223372036854775807})", "above the maximum"},
           Case{R"({"route": "/f",})", "invalid JSON"},
           Case{R"(not json)", "invalid JSON"},
           Case{R"([])", "must be a JSON object"},
           Case{R"("/f")", "must be a JSON object"},
       }) {
    TempProject p;
    p.addFunction("f", c.json);
    EXPECT_TRUE(hasError(loadProject(p.root()), ErrorCode::kInvalidArgument,
                         {"functions/f/flux.json", c.words}))
        << c.json;
  }
}

TEST(Project, BadFolderNameOfAFunction) {
  TempProject p;
  p.addFunction("my func");
  EXPECT_TRUE(
      hasError(loadProject(p.root()), ErrorCode::kInvalidArgument, {"\"my func\"", "letters"}));
}

TEST(Project, SameRouteAndMethodNamesBoth) {
  TempProject p;
  p.addFunction("first", R"({"route": "/items", "method": "GET"})");
  p.addFunction("second", R"({"route": "/items", "method": "get"})");
  EXPECT_TRUE(hasError(loadProject(p.root()), ErrorCode::kInvalidArgument,
                       {"\"first\"", "\"second\"", "GET /items"}));
}

TEST(Project, DefaultRouteCanClashWithAnExplicitOne) {
  TempProject p;
  p.addFunction("items");
  p.addFunction("other", R"({"route": "/items"})");
  EXPECT_TRUE(hasError(loadProject(p.root()), ErrorCode::kInvalidArgument,
                       {"\"items\"", "\"other\"", "POST /items"}));
}

TEST(Project, RoutesDifferingOnlyInParameterNamesClash) {
  TempProject p;
  p.addFunction("by_id", R"({"route": "/users/:id", "method": "GET"})");
  p.addFunction("by_name", R"({"route": "/users/:name", "method": "GET"})");
  EXPECT_TRUE(hasError(loadProject(p.root()), ErrorCode::kInvalidArgument,
                       {"\"by_id\"", "\"by_name\"", "/users/:id", "/users/:name"}));
}

TEST(Project, SameRouteWithDifferentMethodsIsFine) {
  TempProject p;
  p.addFunction("list", R"({"route": "/items", "method": "GET"})");
  p.addFunction("create", R"({"route": "/items", "method": "POST"})");
  p.addFunction("item", R"({"route": "/items/:id", "method": "GET"})");
  auto project = loadProject(p.root());
  ASSERT_TRUE(project.has_value()) << project.error().message;
  EXPECT_EQ(project->functions.size(), 3u);
}

TEST(Project, LoadFunction) {
  TempProject p;
  p.addFunction("hello", R"({"method": "put"})");
  p.write("functions/shared/util.ts", "");
  auto spec = loadFunction(p.root(), "hello");
  ASSERT_TRUE(spec.has_value()) << spec.error().message;
  EXPECT_EQ(spec->folder, "hello");
  EXPECT_EQ(spec->method, "PUT");
  EXPECT_EQ(spec->entry, p.root() / "functions/hello/index.ts");

  auto no_index = loadFunction(p.root(), "shared");
  ASSERT_FALSE(no_index.has_value());
  EXPECT_EQ(no_index.error().code, ErrorCode::kNotFound);
  auto missing = loadFunction(p.root(), "gone");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  for (const char* bad : {"../hello", "", ".", "a/b", "hello world"}) {
    auto spec_of_bad = loadFunction(p.root(), bad);
    ASSERT_FALSE(spec_of_bad.has_value()) << bad;
    EXPECT_EQ(spec_of_bad.error().code, ErrorCode::kInvalidArgument) << bad;
  }

  p.write("functions/hello/flux.json", R"({"method": "TRACE"})");
  auto broken = loadFunction(p.root(), "hello");
  ASSERT_FALSE(broken.has_value());
  EXPECT_EQ(broken.error().code, ErrorCode::kInvalidArgument);
}

using Env = std::vector<std::pair<std::string, std::string>>;

Env fluxFreeEnv(const Project& project) {
  // The test runner's own FLUX_* variables, if any, are not this test's business.
  Env env;
  for (const auto& entry : project.env) {
    if (!entry.first.starts_with("FLUX_")) env.push_back(entry);
  }
  return env;
}

TEST(Project, ParsesDotEnv) {
  TempProject p;
  p.addFunction("hello");
  p.write(".env",
          "# a comment\n"
          "\n"
          "PLAIN=value\n"
          "  SPACED  =  padded value  \n"
          "export EXPORTED=yes\n"
          "DOUBLE=\"two words # not a comment\"\n"
          "SINGLE='single # quoted'\n"
          "SINGLE_RAW='a\\nb'\n"
          "ESCAPED=\"line1\\nline2 \\\"q\\\"\"\n"
          "EMPTY=\n"
          "EMPTY_QUOTES=\"\"\n"
          "WITH_EQUALS=a=b=c\n"
          "COMMENTED=bare # trailing comment\n"
          "HASH=a#b\n"
          "QUOTED_COMMENT=\"x\" # fine\n"
          "CRLF=windows\r\n"
          "PLAIN=overridden\n"
          "   # indented comment\n");
  auto project = loadProject(p.root());
  ASSERT_TRUE(project.has_value()) << project.error().message;
  EXPECT_EQ(fluxFreeEnv(*project), (Env{
                                       {"PLAIN", "overridden"},
                                       {"SPACED", "padded value"},
                                       {"EXPORTED", "yes"},
                                       {"DOUBLE", "two words # not a comment"},
                                       {"SINGLE", "single # quoted"},
                                       {"SINGLE_RAW", "a\\nb"},
                                       {"ESCAPED", "line1\nline2 \"q\""},
                                       {"EMPTY", ""},
                                       {"EMPTY_QUOTES", ""},
                                       {"WITH_EQUALS", "a=b=c"},
                                       {"COMMENTED", "bare"},
                                       {"HASH", "a#b"},
                                       {"QUOTED_COMMENT", "x"},
                                       {"CRLF", "windows"},
                                   }));
}

TEST(Project, DotEnvErrorsNameTheLine) {
  struct Case {
    std::string_view text;
    std::string_view words;
  };
  for (const Case& c : {
           Case{"A=1\nJUST_A_WORD\n", ".env:2: expected KEY=VALUE"},
           Case{"=value\n", ".env:1: bad variable name"},
           Case{"1ABC=x\n", ".env:1: bad variable name"},
           Case{"MY-KEY=x\n", ".env:1: bad variable name"},
           Case{"\n\nA=\"open\n", ".env:3: unterminated double quote"},
           Case{"A='open\n", ".env:1: unterminated single quote"},
           Case{"A=\"x\" y\n", ".env:1: unexpected text after the closing quote"},
       }) {
    TempProject p;
    p.addFunction("hello");
    p.write(".env", c.text);
    EXPECT_TRUE(hasError(loadProject(p.root()), ErrorCode::kInvalidArgument, {c.words})) << c.text;
  }
}

TEST(Project, FluxProcessVariablesComeAfterDotEnv) {
  TempProject p;
  p.addFunction("hello");
  p.write(".env", "FLUX_TEST_SHARED=from-file\nFLUX_TEST_FILE_ONLY=file\nOTHER=1\n");
  ScopedEnv shared("FLUX_TEST_SHARED", "from-process");
  ScopedEnv only("FLUX_TEST_PROCESS_ONLY", "a=b");
  ScopedEnv unrelated("FLUXTEST_NOT_OURS", "x");
  ScopedEnv empty("FLUX_TEST_EMPTY", "");
  auto project = loadProject(p.root());
  ASSERT_TRUE(project.has_value()) << project.error().message;
  Env test_vars;
  for (const auto& entry : project->env) {
    if (entry.first.starts_with("FLUX_TEST_") || !entry.first.starts_with("FLUX_")) {
      test_vars.push_back(entry);
    }
  }
  EXPECT_EQ(test_vars, (Env{
                           {"FLUX_TEST_SHARED", "from-process"},
                           {"FLUX_TEST_FILE_ONLY", "file"},
                           {"OTHER", "1"},
                           {"FLUX_TEST_EMPTY", ""},
                           {"FLUX_TEST_PROCESS_ONLY", "a=b"},
                       }));
}

// Collects what a FileWatcher reports, from its thread.
class ChangeLog {
 public:
  FileWatcher::OnChange callback() {
    return [this](std::set<std::string> folders) {
      std::lock_guard lock(mutex_);
      ++calls_;
      seen_.insert(folders.begin(), folders.end());
      changed_.notify_all();
    };
  }
  // Waits until every folder of `expected` has been reported; returns all reported so far.
  std::set<std::string> waitFor(const std::set<std::string>& expected) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, std::chrono::seconds(2),
                      [this, &expected] { return std::ranges::includes(seen_, expected); });
    return seen_;
  }
  int calls() {
    std::lock_guard lock(mutex_);
    return calls_;
  }
  void clear() {
    std::lock_guard lock(mutex_);
    seen_.clear();
    calls_ = 0;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::set<std::string> seen_;
  int calls_ = 0;
};

TEST(FileWatcher, ReportsTheChangedFolder) {
  TempProject p;
  p.addFunction("a");
  p.addFunction("b");
  ChangeLog log;
  auto watcher = FileWatcher::start(p.root() / "functions", log.callback());
  ASSERT_TRUE(watcher.has_value()) << watcher.error().message;
  p.write("functions/a/index.ts", "export default () => 2;\n");
  EXPECT_EQ(log.waitFor({"a"}), std::set<std::string>{"a"});
}

TEST(FileWatcher, ReportsSharedFilesBesideTheFunctions) {
  TempProject p;
  p.addFunction("a");
  ChangeLog log;
  auto watcher = FileWatcher::start(p.root() / "functions", log.callback());
  ASSERT_TRUE(watcher.has_value()) << watcher.error().message;
  // A shared module functions import: its change must reach the dev server too.
  p.write("functions/helpers.ts", "export const x = 1;\n");
  EXPECT_EQ(log.waitFor({"helpers.ts"}), std::set<std::string>{"helpers.ts"});
}

TEST(FileWatcher, BurstOfChangesIsOneCall) {
  TempProject p;
  p.addFunction("a");
  p.addFunction("c");
  ChangeLog log;
  auto watcher = FileWatcher::start(p.root() / "functions", log.callback());
  ASSERT_TRUE(watcher.has_value()) << watcher.error().message;
  p.write("functions/a/index.ts", "export default () => 2;\n");
  p.write("functions/c/flux.json", "{}");
  fs::remove(p.root() / "functions/c/flux.json");
  EXPECT_EQ(log.waitFor({"a", "c"}), (std::set<std::string>{"a", "c"}));
  EXPECT_EQ(log.calls(), 1);
}

TEST(FileWatcher, WatchesNewSubdirectories) {
  TempProject p;
  fs::create_directories(p.root() / "functions");
  ChangeLog log;
  auto watcher = FileWatcher::start(p.root() / "functions", log.callback());
  ASSERT_TRUE(watcher.has_value()) << watcher.error().message;
  fs::create_directories(p.root() / "functions/b/lib/deep");
  EXPECT_EQ(log.waitFor({"b"}), std::set<std::string>{"b"});
  // Let stragglers from the mkdir be reported before listening for the next change.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  log.clear();
  // Only a watch on functions/b/lib/deep itself sees a file written there.
  p.write("functions/b/lib/deep/x.ts", "export const x = 1;\n");
  EXPECT_EQ(log.waitFor({"b"}), std::set<std::string>{"b"});
}

TEST(FileWatcher, ReportsDeletedAndMovedFolders) {
  TempProject p;
  p.addFunction("old");
  p.addFunction("gone");
  ChangeLog log;
  auto watcher = FileWatcher::start(p.root() / "functions", log.callback());
  ASSERT_TRUE(watcher.has_value()) << watcher.error().message;
  fs::remove_all(p.root() / "functions/gone");
  fs::rename(p.root() / "functions/old", p.root() / "functions/new");
  EXPECT_EQ(log.waitFor({"gone", "old", "new"}), (std::set<std::string>{"gone", "old", "new"}));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  log.clear();
  // The moved folder is still watched, under its new name.
  p.write("functions/new/index.ts", "export default () => 3;\n");
  EXPECT_EQ(log.waitFor({"new"}), std::set<std::string>{"new"});
}

TEST(FileWatcher, MissingDirectoryIsAnError) {
  TempProject p;
  ChangeLog log;
  auto watcher = FileWatcher::start(p.root() / "functions", log.callback());
  ASSERT_FALSE(watcher.has_value());
  EXPECT_EQ(watcher.error().code, ErrorCode::kNotFound);
}

}  // namespace
}  // namespace flux::app

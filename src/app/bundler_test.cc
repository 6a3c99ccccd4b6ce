#include "app/bundler.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

namespace flux::app {
namespace {

namespace fs = std::filesystem;

class TempProject {
 public:
  TempProject() {
    std::string pattern = (fs::temp_directory_path() / "flux_bundler_XXXXXX").string();
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

  // Loads the project and bundles its function `folder`.
  Result<std::shared_ptr<const runtime::FunctionBundle>> bundle(const std::string& folder,
                                                                uint64_t version = 1) const {
    auto project = loadProject(root_);
    if (!project) return std::unexpected(project.error());
    auto spec = std::ranges::find(project->functions, folder, &FunctionSpec::folder);
    if (spec == project->functions.end()) {
      return fail(ErrorCode::kNotFound, "test project has no function " + folder);
    }
    return bundleFunction(*project, *spec, version);
  }

 private:
  fs::path root_;
};

// Sets an environment variable for the life of the object, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, const std::string& value) : name_(std::move(name)) {
    if (const char* old = getenv(name_.c_str())) old_ = old;
    setenv(name_.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

int lineOf(const std::string& text, size_t offset) {
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + offset, '\n'));
}

int columnOf(const std::string& text, size_t offset) {
  size_t line_start = text.rfind('\n', offset);
  return 1 + static_cast<int>(offset - (line_start == std::string::npos ? 0 : line_start + 1));
}

constexpr std::string_view kGreetIndex = R"(import { defineFunction } from "@flux/functions";
import { shout } from "./util";

interface Input {
  name?: string;
}

export default defineFunction(async (_ctx: unknown, input: Input) => {
  if (!input.name) {
    throw new Error("name is required");
  }
  return { greeting: shout("hello " + input.name) };
});
)";

constexpr std::string_view kGreetUtil = R"(export function shout(text: string): string {
  return text.toUpperCase() + "!";
}
)";

TEST(Bundler, BundlesLocalImportsAndKeepsTheRuntimeImport) {
  TempProject p;
  p.write("functions/greet/index.ts", kGreetIndex);
  p.write("functions/greet/util.ts", kGreetUtil);
  p.write("functions/greet/flux.json", R"({"timeout_ms": 1234})");
  auto bundle = p.bundle("greet", 7);
  ASSERT_TRUE(bundle.has_value()) << bundle.error().message;
  const runtime::FunctionBundle& b = **bundle;
  EXPECT_EQ(b.name, "greet");
  EXPECT_EQ(b.version, 7u);
  EXPECT_EQ(b.timeout, std::chrono::milliseconds(1234));

  // One module: util.ts is inlined, @flux/functions is still imported, nothing else is.
  EXPECT_NE(b.code.find("toUpperCase()"), std::string::npos) << b.code;
  EXPECT_NE(b.code.find(R"(from "@flux/functions")"), std::string::npos) << b.code;
  EXPECT_EQ(b.code.find("./util"), std::string::npos) << b.code;
  size_t imports = 0;
  for (size_t at = b.code.find("import "); at != std::string::npos;
       at = b.code.find("import ", at + 1)) {
    if (at == 0 || b.code[at - 1] == '\n') ++imports;
  }
  EXPECT_EQ(imports, 1u) << b.code;
  EXPECT_NE(b.code.find("as default"), std::string::npos) << b.code;
  EXPECT_EQ(b.code.find("sourceMappingURL"), std::string::npos);
  EXPECT_EQ(b.code.find("interface"), std::string::npos) << "types must be stripped";

  EXPECT_EQ(b.source_map.sources(),
            (std::vector<std::string>{"functions/greet/index.ts", "functions/greet/util.ts"}));
  size_t throw_at = b.code.find("throw new Error(");
  ASSERT_NE(throw_at, std::string::npos);
  auto original = b.source_map.lookup(lineOf(b.code, throw_at), columnOf(b.code, throw_at));
  ASSERT_TRUE(original.has_value());
  EXPECT_EQ(original->source, "functions/greet/index.ts");
  EXPECT_EQ(original->line, 10);
  size_t upper_at = b.code.find("toUpperCase");
  auto in_util = b.source_map.lookup(lineOf(b.code, upper_at), columnOf(b.code, upper_at));
  ASSERT_TRUE(in_util.has_value());
  EXPECT_EQ(in_util->source, "functions/greet/util.ts");
  EXPECT_EQ(in_util->line, 2);

  EXPECT_TRUE(fs::exists(p.root() / ".flux/build/greet.js"));
  EXPECT_TRUE(fs::exists(p.root() / ".flux/build/greet.js.map"));
}

TEST(Bundler, RebuildPicksUpChanges) {
  TempProject p;
  p.write("functions/hello/index.js", "export default () => 'one';\n");
  auto first = p.bundle("hello", 1);
  ASSERT_TRUE(first.has_value()) << first.error().message;
  EXPECT_NE((*first)->code.find("one"), std::string::npos);
  EXPECT_EQ((*first)->source_map.sources(), std::vector<std::string>{"functions/hello/index.js"});

  p.write("functions/hello/index.js", "export default () => 'two';\n");
  auto second = p.bundle("hello", 2);
  ASSERT_TRUE(second.has_value()) << second.error().message;
  EXPECT_EQ((*second)->version, 2u);
  EXPECT_NE((*second)->code.find("two"), std::string::npos);
  EXPECT_EQ((*first)->code.find("two"), std::string::npos) << "a built bundle never changes";
}

TEST(Bundler, SyntaxErrorNamesFileAndLine) {
  TempProject p;
  p.write("functions/broken/index.ts",
          "export default async function handler() {\n"
          "  const ok = 1;\n"
          "  const x y = 2;\n"
          "  return ok;\n"
          "}\n");
  auto bundle = p.bundle("broken");
  ASSERT_FALSE(bundle.has_value());
  EXPECT_EQ(bundle.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(bundle.error().message.find("functions/broken/index.ts:3:"), std::string::npos)
      << bundle.error().message;
  EXPECT_FALSE(bundle.error().message.ends_with("\n")) << "the output is trimmed";
  EXPECT_FALSE(fs::exists(p.root() / ".flux/build/broken.js"));
}

TEST(Bundler, MissingImportIsReported) {
  TempProject p;
  p.write("functions/lost/index.ts", "import { gone } from \"./nowhere\";\nexport default gone;\n");
  auto bundle = p.bundle("lost");
  ASSERT_FALSE(bundle.has_value());
  EXPECT_EQ(bundle.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(bundle.error().message.find("./nowhere"), std::string::npos) << bundle.error().message;
  EXPECT_NE(bundle.error().message.find("functions/lost/index.ts:1:"), std::string::npos)
      << bundle.error().message;
}

TEST(Bundler, MissingEsbuildSaysHowToInstallIt) {
  TempProject p;
  p.write("functions/hello/index.ts", "export default () => 1;\n");
  auto project = loadProject(p.root());
  ASSERT_TRUE(project.has_value()) << project.error().message;
  fs::create_directories(p.root() / "empty-bin");
  ScopedEnv path("PATH", (p.root() / "empty-bin").string());
  auto bundle = bundleFunction(*project, project->functions.at(0), 1);
  ASSERT_FALSE(bundle.has_value());
  EXPECT_EQ(bundle.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(bundle.error().message.find("scripts/setup.sh"), std::string::npos)
      << bundle.error().message;
}

}  // namespace
}  // namespace flux::app

#include "runtime/source_map.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace flux::runtime {
namespace {

// A hand-written map over two sources. Segments (generated 0-based column -> source, original
// 0-based line:column), with the VLQ that encodes each:
//   line 1: AAAA  0 -> a.ts 0:0      KAAK  5 -> a.ts 0:5
//   line 2: ACCL  0 -> b.ts 1:0      IAAI  4 -> b.ts 1:4
//   line 3: (empty)
//   line 4: gBDCD 16 -> a.ts 2:3     E     18 -> unmapped
constexpr std::string_view kTwoSources = R"({
  "version": 3,
  "sources": ["a.ts", "b.ts"],
  "names": [],
  "mappings": "AAAA,KAAK;ACCL,IAAI;;gBDCD,E"
})";

SourceMap parseOrDie(std::string_view json) {
  auto map = SourceMap::parse(json);
  EXPECT_TRUE(map.has_value()) << map.error().message;
  return map ? std::move(*map) : SourceMap();
}

std::string mapWithMappings(std::string_view mappings) {
  return R"({"version":3,"sources":["a.ts"],"names":["x"],"mappings":")" + std::string(mappings) +
         R"("})";
}

void expectPosition(const SourceMap& map, int line, int column, const std::string& source,
                    int original_line, int original_column) {
  SCOPED_TRACE("generated " + std::to_string(line) + ":" + std::to_string(column));
  std::optional<SourcePosition> position = map.lookup(line, column);
  ASSERT_TRUE(position.has_value());
  EXPECT_EQ(position->source, source);
  EXPECT_EQ(position->line, original_line);
  EXPECT_EQ(position->column, original_column);
}

TEST(SourceMap, LooksUpClosestSegmentAtOrBeforeColumn) {
  SourceMap map = parseOrDie(kTwoSources);
  EXPECT_FALSE(map.empty());
  EXPECT_EQ(map.sources(), (std::vector<std::string>{"a.ts", "b.ts"}));
  expectPosition(map, 1, 1, "a.ts", 1, 1);
  expectPosition(map, 1, 5, "a.ts", 1, 1);
  expectPosition(map, 1, 6, "a.ts", 1, 6);
  expectPosition(map, 1, 500, "a.ts", 1, 6);
  expectPosition(map, 2, 1, "b.ts", 2, 1);
  expectPosition(map, 2, 4, "b.ts", 2, 1);
  expectPosition(map, 2, 5, "b.ts", 2, 5);
  expectPosition(map, 4, 17, "a.ts", 3, 4);
  expectPosition(map, 4, 18, "a.ts", 3, 4);
}

TEST(SourceMap, UnmappedPositionsGiveNullopt) {
  SourceMap map = parseOrDie(kTwoSources);
  EXPECT_FALSE(map.lookup(3, 1));   // empty line
  EXPECT_FALSE(map.lookup(4, 1));   // before the line's first segment
  EXPECT_FALSE(map.lookup(4, 16));  // still before it
  EXPECT_FALSE(map.lookup(4, 19));  // a one-field (unmapped) segment
  EXPECT_FALSE(map.lookup(4, 90));
  EXPECT_FALSE(map.lookup(5, 1));  // past the last line
  EXPECT_FALSE(map.lookup(0, 1));
  EXPECT_FALSE(map.lookup(1, 0));
  EXPECT_FALSE(map.lookup(-3, -3));
}

TEST(SourceMap, MultiDigitAndNegativeValues) {
  // w+B = 1000: original line 1000. Then KADA: generated column +5, original line -1.
  SourceMap map = parseOrDie(mapWithMappings("AAw+BA,KADA"));
  expectPosition(map, 1, 1, "a.ts", 1001, 1);
  expectPosition(map, 1, 6, "a.ts", 1000, 1);
}

TEST(SourceMap, FiveFieldSegmentsCarryNames) {
  // The name index is relative too; lookups ignore it but it must not shift the other fields.
  SourceMap map = parseOrDie(mapWithMappings("AAAAA,EAACA;AACCA"));
  expectPosition(map, 1, 1, "a.ts", 1, 1);
  expectPosition(map, 1, 3, "a.ts", 1, 2);
  expectPosition(map, 2, 1, "a.ts", 2, 3);
}

TEST(SourceMap, SortsSegmentsWithinALine) {
  // KAAA: column 5 -> 0:0, then LAAK: column 0 -> 0:5.
  SourceMap map = parseOrDie(mapWithMappings("KAAA,LAAK"));
  expectPosition(map, 1, 1, "a.ts", 1, 6);
  expectPosition(map, 1, 6, "a.ts", 1, 1);
}

TEST(SourceMap, SourceRootPrefixesSources) {
  SourceMap map =
      parseOrDie(R"({"version":3,"sourceRoot":"src","sources":["x.ts"],"mappings":"AAAA"})");
  EXPECT_EQ(map.sources(), std::vector<std::string>{"src/x.ts"});
  expectPosition(map, 1, 1, "src/x.ts", 1, 1);
}

TEST(SourceMap, EmptyMappingsIsEmpty) {
  SourceMap map = parseOrDie(R"({"version":3,"sources":[],"mappings":""})");
  EXPECT_TRUE(map.empty());
  EXPECT_FALSE(map.lookup(1, 1));
  EXPECT_TRUE(SourceMap().empty());
  EXPECT_TRUE(parseOrDie(R"({"version":3,"sources":[],"mappings":";;;"})").empty());
}

TEST(SourceMap, MalformedJsonGivesErrors) {
  for (std::string_view json : {
           "",
           "not json",
           "{\"version\": 3,",
           "[]",
           "{}",
           R"({"version":2,"sources":[],"mappings":""})",
           R"({"version":"3","sources":[],"mappings":""})",
           R"({"version":3,"mappings":""})",
           R"({"version":3,"sources":"a.ts","mappings":""})",
           R"({"version":3,"sources":[1],"mappings":""})",
           R"({"version":3,"sources":[]})",
           R"({"version":3,"sources":[],"mappings":7})",
           R"({"version":3,"sourceRoot":5,"sources":[],"mappings":""})",
           R"({"version":3,"sections":[]})",
       }) {
    auto map = SourceMap::parse(json);
    ASSERT_FALSE(map.has_value()) << json;
    EXPECT_EQ(map.error().code, ErrorCode::kInvalidArgument) << json;
    EXPECT_TRUE(map.error().message.starts_with("source map: ")) << map.error().message;
  }
}

TEST(SourceMap, MalformedMappingsGiveErrors) {
  for (std::string_view mappings : {
           "AA",          // two fields
           "AAA",         // three fields
           "AAAAAA",      // six fields
           "A!AA",        // not base64
           "A=AA",        // padding is not VLQ
           "g",           // continuation bit with nothing after it
           "AAAg",        // same, at the end of a segment
           "ACAA",        // source index 1, but one source
           "AADA",        // original line -1
           "AAAD",        // original column -1
           "D",           // generated column -1
           "AAAAD",       // name index -1
           "ggggggggB",   // does not fit in 32 bits
           "//////////",  // nor does this
       }) {
    auto map = SourceMap::parse(mapWithMappings(mappings));
    ASSERT_FALSE(map.has_value()) << mappings;
    EXPECT_EQ(map.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(map.error().message.find("mappings"), std::string::npos) << map.error().message;
  }
}

TEST(SourceMap, GarbageMappingsNeverCrash) {
  constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/,;;;,,,";
  uint64_t state = 0x9e3779b97f4a7c15ULL;
  for (int round = 0; round < 2000; ++round) {
    std::string mappings;
    int length = round % 64;
    for (int i = 0; i < length; ++i) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      mappings += kAlphabet[(state >> 33) % kAlphabet.size()];
    }
    auto map = SourceMap::parse(mapWithMappings(mappings));
    if (!map) continue;
    for (int line = 0; line < 5; ++line) {
      for (int column = 0; column < 80; column += 7) (void)map->lookup(line, column);
    }
  }
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "flux_sm_XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

TEST(SourceMap, MapsEsbuildOutputBackToTypeScript) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  // Type-only lines and a second function shift the generated lines away from the source ones.
  std::ofstream(dir.path() / "check.ts") << R"(// Checks a value.
interface Options {
  verbose: boolean;
  label?: string;
}

type Doubler = (n: number) => number;
const double: Doubler = (n: number): number => n * 2;

export function check(value: number, options: Options): number {
  if (value < 0) {
    throw new RangeError("negative value: " + value);
  }
  return options.verbose ? double(value) : value;
}
)";
  std::string command = "cd '" + dir.path().string() +
                        "' && esbuild check.ts --bundle --format=esm --sourcemap=external "
                        "--log-level=error --outfile=out/check.js > esbuild.log 2>&1";
  int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "esbuild failed: " << readFile(dir.path() / "esbuild.log");

  std::string code = readFile(dir.path() / "out" / "check.js");
  auto map = SourceMap::parse(readFile(dir.path() / "out" / "check.js.map"));
  ASSERT_TRUE(map.has_value()) << map.error().message;
  ASSERT_EQ(map->sources(), std::vector<std::string>{"../check.ts"});

  size_t offset = code.find("throw new RangeError(");
  ASSERT_NE(offset, std::string::npos) << code;
  size_t line_start = code.rfind('\n', offset);
  line_start = line_start == std::string::npos ? 0 : line_start + 1;
  int line = 1 + static_cast<int>(std::count(code.begin(), code.begin() + offset, '\n'));
  int column = 1 + static_cast<int>(offset - line_start);
  ASSERT_NE(line, 12) << "the generated line should differ from the source line";

  std::optional<SourcePosition> position = map->lookup(line, column);
  ASSERT_TRUE(position.has_value());
  EXPECT_EQ(position->source, "../check.ts");
  EXPECT_EQ(position->line, 12);
  EXPECT_EQ(position->column, 5);
  // A position inside the statement still maps to the throw's line.
  std::optional<SourcePosition> inside = map->lookup(line, column + 4);
  ASSERT_TRUE(inside.has_value());
  EXPECT_EQ(inside->line, 12);
}

}  // namespace
}  // namespace flux::runtime

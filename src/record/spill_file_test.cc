#include "record/spill_file.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace flux::record {
namespace {

namespace fs = std::filesystem;

class SpillFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/flux-spill-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Replays everything in chunks of `chunk`, collecting the lines.
  std::vector<std::string> drain(SpillFile& file, size_t chunk) {
    std::vector<std::string> seen;
    for (int guard = 0; guard < 1000; ++guard) {
      auto outcome = file.replayChunk(chunk, [&seen](const std::vector<std::string_view>& lines) {
        for (auto line : lines) seen.emplace_back(line);
        return Result<void>();
      });
      EXPECT_TRUE(outcome) << outcome.error().toString();
      if (!outcome || outcome->removed) break;
    }
    return seen;
  }

  fs::path dir_;
};

TEST_F(SpillFileTest, AppendsAndReplaysInChunksThenRemoves) {
  SpillFile file(dir_ / "sub", "records.jsonl");
  EXPECT_FALSE(file.exists());
  ASSERT_TRUE(file.append("a\nb\n"));
  ASSERT_TRUE(file.append("c\n"));
  EXPECT_TRUE(file.exists());
  struct stat info {};
  ASSERT_EQ(stat(file.path().c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);  // records hold request bodies
  EXPECT_EQ(drain(file, 2), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_FALSE(file.exists());
  auto empty = file.replayChunk(10, [](const std::vector<std::string_view>&) {
    ADD_FAILURE() << "no file, no lines";
    return Result<void>();
  });
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->removed);
}

TEST_F(SpillFileTest, AFailedStoreLeavesTheFileAndRetriesTheSameChunk) {
  SpillFile file(dir_, "records.jsonl");
  ASSERT_TRUE(file.append("1\n2\n3\n"));
  auto failed = file.replayChunk(2, [](const std::vector<std::string_view>&) -> Result<void> {
    return fail(ErrorCode::kUnavailable, "down");
  });
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().message, "down");
  EXPECT_TRUE(file.exists());
  auto first = file.replayChunk(2, [](const std::vector<std::string_view>& lines) {
    EXPECT_EQ(lines, (std::vector<std::string_view>{"1", "2"}));
    return Result<void>();
  });
  ASSERT_TRUE(first);
  EXPECT_FALSE(first->removed);
  // Lines appended meanwhile are part of the same replay.
  ASSERT_TRUE(file.append("4\n"));
  EXPECT_EQ(drain(file, 2), (std::vector<std::string>{"3", "4"}));
  EXPECT_FALSE(file.exists());
}

TEST_F(SpillFileTest, ATornLastLineIsHandedOverAndLongLinesSurvive) {
  SpillFile file(dir_, "records.jsonl");
  std::string long_line(3 << 20, 'z');  // longer than one read block
  ASSERT_TRUE(file.append(long_line + "\n\nx\n"));
  {
    std::ofstream torn(file.path(), std::ios::app);
    torn << "{\"id\":";  // a crash mid-append
  }
  auto lines = drain(file, 100);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], long_line);
  EXPECT_EQ(lines[1], "x");  // empty lines are skipped
  EXPECT_EQ(lines[2], "{\"id\":");
  EXPECT_FALSE(file.exists());
}

TEST_F(SpillFileTest, AppendToAnUnwritableDirectoryFails) {
  std::ofstream(dir_ / "file") << "x";
  SpillFile file(dir_ / "file" / "below", "records.jsonl");
  auto appended = file.append("a\n");
  ASSERT_FALSE(appended);
  EXPECT_EQ(appended.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(appended.error().message.find("cannot create spill directory"), std::string::npos);
}

}  // namespace
}  // namespace flux::record

#include "runtime/io_journal.h"

#include <gtest/gtest.h>

namespace flux::runtime {
namespace {

using nlohmann::json;

TEST(IoJournalTest, EmptyJournalIsAnEmptyArray) {
  IoJournal journal;
  EXPECT_TRUE(journal.empty());
  EXPECT_EQ(journal.toJson(), json::array());
}

TEST(IoJournalTest, KeepsCallOrderAndShapes) {
  IoJournal journal;
  journal.now(1718000000123.5);
  journal.random(0.25);
  journal.uuid("0f8e3c1a-2b4d-4e6f-8a9b-0c1d2e3f4a5b");
  const uint8_t bytes[] = {0x00, 0xab, 0xff};
  journal.randomValues(bytes, sizeof bytes);
  journal.fetch(4, {{"status", 200}, {"body", "ok"}});
  journal.db(5, {{"rowCount", 1}});
  journal.fetchError(6, "timeout after 200 ms");
  journal.dbError(7, "duplicate key");
  json expected = json::parse(R"([
    {"kind": "now", "value": 1718000000123.5},
    {"kind": "random", "value": 0.25},
    {"kind": "uuid", "value": "0f8e3c1a-2b4d-4e6f-8a9b-0c1d2e3f4a5b"},
    {"kind": "random_values", "value": "00abff"},
    {"kind": "fetch", "span": 4, "value": {"status": 200, "body": "ok"}},
    {"kind": "db", "span": 5, "value": {"rowCount": 1}},
    {"kind": "fetch", "span": 6, "error": "timeout after 200 ms"},
    {"kind": "db", "span": 7, "error": "duplicate key"}
  ])");
  EXPECT_EQ(journal.toJson(), expected);
}

TEST(IoJournalTest, CapsEntriesWithOneMarker) {
  IoJournal journal;
  for (size_t i = 0; i < IoJournal::kMaxEntries + 25; ++i) journal.random(0.5);
  journal.fetch(3, {{"status", 200}});
  EXPECT_EQ(journal.size(), IoJournal::kMaxEntries);
  EXPECT_EQ(journal.dropped(), 26u);
  json out = journal.toJson();
  ASSERT_EQ(out.size(), IoJournal::kMaxEntries + 1);
  EXPECT_EQ(out.back(), (json{{"kind", "truncated"}, {"dropped", 26}}));
}

}  // namespace
}  // namespace flux::runtime

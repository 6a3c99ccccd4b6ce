// SpillFile: an append-only file of JSON lines (records.jsonl) where the recorder puts records
// PostgreSQL cannot take right now, and reads them back from when it can.
//
// Every append and every replay chunk holds an exclusive flock on the file, so two processes
// sharing a spill directory neither interleave lines nor lose an append to a file that the
// other has just replayed and removed (an appender that finds its file unlinked opens it
// anew). An append is one write() followed by fdatasync(); a write that fails half way is cut
// back, so the file only ever holds whole lines, except after a crash mid-write: that torn
// last line is handed to the replayer like any other line (it fails to parse there).
//
// Thread: one thread at a time per object (the recorder thread).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace flux::record {

class SpillFile {
 public:
  // The file is dir / name; dir is created on the first append.
  SpillFile(std::filesystem::path dir, std::string name);

  const std::filesystem::path& path() const { return path_; }
  bool exists() const;

  // Appends `lines` (whole lines, each ending in '\n') durably.
  Result<void> append(std::string_view lines);

  // The store step of a replay: gets the lines of one chunk (without their '\n'); its error
  // stops the replay with the file untouched.
  using StoreChunk = std::function<Result<void>(const std::vector<std::string_view>& lines)>;

  struct ChunkOutcome {
    size_t lines = 0;      // lines handed to store
    bool removed = false;  // the chunk reached the end and the file is gone
  };

  // Under the lock: reads the next chunk of at most max_lines lines (after the ones earlier
  // calls stored, as long as the file is the same), calls store, and when it succeeded and the
  // chunk ended the file, removes the file. Without a file: {0, true}.
  Result<ChunkOutcome> replayChunk(size_t max_lines, const StoreChunk& store);

 private:
  std::filesystem::path dir_;
  std::filesystem::path path_;
  // Where the next replayChunk starts, valid while the file's identity is unchanged.
  dev_t replay_device_ = 0;
  ino_t replay_inode_ = 0;
  uint64_t replay_offset_ = 0;
};

}  // namespace flux::record

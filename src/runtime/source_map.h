// SourceMap: a decoded Source Map v3 (as esbuild writes it), answering "which TypeScript line
// does this line:column of the bundle come from". Built once per bundle, off the request path;
// lookups are a binary search.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace flux::runtime {

struct SourcePosition {
  std::string source;  // as listed in the map's "sources" ("functions/hello/index.ts")
  int line = 0;        // 1-based
  int column = 0;      // 1-based
};

class SourceMap {
 public:
  SourceMap() = default;
  // Parses the JSON text of a v3 source map. Bad input gives an error, never a crash.
  static Result<SourceMap> parse(std::string_view json);

  // Maps a 1-based generated line and column (as V8 reports them) to the original position:
  // the closest mapping segment at or before the column on that line. nullopt when unmapped.
  std::optional<SourcePosition> lookup(int line, int column) const;

  bool empty() const { return lines_.empty(); }
  const std::vector<std::string>& sources() const { return sources_; }

 private:
  struct Segment {
    int generated_column;  // 0-based
    int source;            // index into sources_, or -1 for an unmapped segment
    int original_line;     // 0-based
    int original_column;   // 0-based
  };
  std::vector<std::string> sources_;
  std::vector<std::vector<Segment>> lines_;  // per generated line (0-based), sorted by column
};

}  // namespace flux::runtime

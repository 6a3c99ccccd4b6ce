#include "runtime/source_map.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

namespace flux::runtime {
namespace {

constexpr int kInvalidDigit = -1;

constexpr std::array<int, 256> makeBase64Table() {
  std::array<int, 256> table{};
  table.fill(kInvalidDigit);
  constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < kAlphabet.size(); ++i) {
    table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int>(i);
  }
  return table;
}

constexpr std::array<int, 256> kBase64 = makeBase64Table();

std::unexpected<Error> mappingsError(size_t offset, std::string what) {
  return fail(ErrorCode::kInvalidArgument,
              "source map: bad \"mappings\" at offset " + std::to_string(offset) + ": " + what);
}

// Reads one base64 VLQ value starting at text[pos], advancing pos past it. Values are kept
// within int range: a larger one can only come from a corrupt map.
Result<int64_t> readVlq(std::string_view text, size_t& pos) {
  const size_t start = pos;
  uint64_t accumulated = 0;
  int shift = 0;
  for (;;) {
    if (pos >= text.size()) return mappingsError(start, "truncated VLQ value");
    int digit = kBase64[static_cast<unsigned char>(text[pos])];
    if (digit == kInvalidDigit) {
      return mappingsError(pos, std::string("invalid character '") + text[pos] + "'");
    }
    ++pos;
    accumulated |= static_cast<uint64_t>(digit & 0x1f) << shift;
    shift += 5;
    if ((digit & 0x20) == 0) break;
    if (shift > 31) return mappingsError(start, "VLQ value too large");
  }
  int64_t magnitude = static_cast<int64_t>(accumulated >> 1);
  if (magnitude > std::numeric_limits<int32_t>::max()) {
    return mappingsError(start, "VLQ value too large");
  }
  return (accumulated & 1) != 0 ? -magnitude : magnitude;
}

// Adds a relative field to its running value, rejecting results outside [0, INT_MAX].
Result<int> applyDelta(int64_t current, int64_t delta, size_t offset, const char* field) {
  int64_t value = current + delta;
  if (value < 0 || value > std::numeric_limits<int32_t>::max()) {
    return mappingsError(offset,
                         std::string(field) + " out of range (" + std::to_string(value) + ")");
  }
  return static_cast<int>(value);
}

}  // namespace

Result<SourceMap> SourceMap::parse(std::string_view json) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    return fail(ErrorCode::kInvalidArgument, std::string("source map: invalid JSON: ") + e.what());
  }
  if (!doc.is_object()) {
    return fail(ErrorCode::kInvalidArgument, "source map: expected a JSON object");
  }
  if (doc.contains("sections")) {
    return fail(ErrorCode::kInvalidArgument,
                "source map: index maps (\"sections\") are not supported");
  }
  auto version = doc.find("version");
  if (version == doc.end() || !version->is_number_integer() || version->get<int64_t>() != 3) {
    return fail(ErrorCode::kInvalidArgument, "source map: \"version\" must be 3");
  }

  SourceMap map;
  std::string source_root;
  if (auto root = doc.find("sourceRoot"); root != doc.end() && !root->is_null()) {
    if (!root->is_string()) {
      return fail(ErrorCode::kInvalidArgument, "source map: \"sourceRoot\" must be a string");
    }
    source_root = root->get<std::string>();
    if (!source_root.empty() && !source_root.ends_with('/')) source_root += '/';
  }
  auto sources = doc.find("sources");
  if (sources == doc.end() || !sources->is_array()) {
    return fail(ErrorCode::kInvalidArgument, "source map: \"sources\" must be an array");
  }
  for (const nlohmann::json& source : *sources) {
    if (source.is_null()) {
      // The spec allows a null entry for a source with no name; keep indexes aligned.
      map.sources_.emplace_back();
    } else if (source.is_string()) {
      map.sources_.push_back(source_root + source.get<std::string>());
    } else {
      return fail(ErrorCode::kInvalidArgument,
                  "source map: every entry of \"sources\" must be a string");
    }
  }
  auto mappings_field = doc.find("mappings");
  if (mappings_field == doc.end() || !mappings_field->is_string()) {
    return fail(ErrorCode::kInvalidArgument, "source map: \"mappings\" must be a string");
  }
  const std::string& mappings = mappings_field->get_ref<const std::string&>();

  // Every field but the generated column is relative to the previous segment in the whole
  // string; the generated column restarts at each line.
  int64_t source = 0;
  int64_t original_line = 0;
  int64_t original_column = 0;
  int64_t name = 0;
  map.lines_.emplace_back();
  int64_t generated_column = 0;
  size_t pos = 0;
  while (pos < mappings.size()) {
    char c = mappings[pos];
    if (c == ';') {
      map.lines_.emplace_back();
      generated_column = 0;
      ++pos;
      continue;
    }
    if (c == ',') {
      ++pos;
      continue;
    }
    const size_t segment_start = pos;
    std::array<int64_t, 5> fields{};
    int count = 0;
    while (pos < mappings.size() && mappings[pos] != ',' && mappings[pos] != ';') {
      if (count == 5) return mappingsError(segment_start, "segment has more than 5 fields");
      auto value = readVlq(mappings, pos);
      if (!value) return std::unexpected(std::move(value.error()));
      fields[count++] = *value;
    }
    if (count != 1 && count != 4 && count != 5) {
      return mappingsError(segment_start,
                           "segment has " + std::to_string(count) + " fields (want 1, 4 or 5)");
    }
    auto column = applyDelta(generated_column, fields[0], segment_start, "generated column");
    if (!column) return std::unexpected(std::move(column.error()));
    generated_column = *column;
    Segment segment{*column, -1, 0, 0};
    if (count >= 4) {
      auto src = applyDelta(source, fields[1], segment_start, "source index");
      if (!src) return std::unexpected(std::move(src.error()));
      if (static_cast<size_t>(*src) >= map.sources_.size()) {
        return mappingsError(segment_start, "source index " + std::to_string(*src) +
                                                " but \"sources\" has " +
                                                std::to_string(map.sources_.size()) + " entries");
      }
      auto line = applyDelta(original_line, fields[2], segment_start, "original line");
      if (!line) return std::unexpected(std::move(line.error()));
      auto col = applyDelta(original_column, fields[3], segment_start, "original column");
      if (!col) return std::unexpected(std::move(col.error()));
      source = *src;
      original_line = *line;
      original_column = *col;
      segment = Segment{*column, *src, *line, *col};
    }
    if (count == 5) {
      // Names are not used for lookups, but the running index must stay consistent.
      auto n = applyDelta(name, fields[4], segment_start, "name index");
      if (!n) return std::unexpected(std::move(n.error()));
      name = *n;
    }
    map.lines_.back().push_back(segment);
  }

  // Generators emit segments in column order; sort anyway so lookup's binary search holds.
  for (std::vector<Segment>& line : map.lines_) {
    auto by_column = [](const Segment& a, const Segment& b) {
      return a.generated_column < b.generated_column;
    };
    if (!std::is_sorted(line.begin(), line.end(), by_column)) {
      std::stable_sort(line.begin(), line.end(), by_column);
    }
  }
  // Drop trailing empty lines so that empty() means "maps nothing".
  while (!map.lines_.empty() && map.lines_.back().empty()) map.lines_.pop_back();
  return map;
}

std::optional<SourcePosition> SourceMap::lookup(int line, int column) const {
  if (line < 1 || column < 1 || static_cast<size_t>(line) > lines_.size()) return std::nullopt;
  const std::vector<Segment>& segments = lines_[static_cast<size_t>(line) - 1];
  const int generated_column = column - 1;
  // First segment starting after the column; the one before it covers the column.
  auto after = std::upper_bound(
      segments.begin(), segments.end(), generated_column,
      [](int col, const Segment& segment) { return col < segment.generated_column; });
  if (after == segments.begin()) return std::nullopt;
  const Segment& segment = *std::prev(after);
  if (segment.source < 0) return std::nullopt;
  return SourcePosition{sources_[static_cast<size_t>(segment.source)], segment.original_line + 1,
                        segment.original_column + 1};
}

}  // namespace flux::runtime

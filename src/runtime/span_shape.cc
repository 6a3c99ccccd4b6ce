#include "runtime/span_shape.h"

#include <unordered_map>

namespace flux::runtime {

namespace {

// The shape index of a span's parent: -1 for the function span (or anything unexpected).
int parentIndex(const std::vector<record::Span>& spans, const record::Span& span) {
  uint32_t root = spans.front().id;
  if (span.parent <= root) return -1;
  size_t index = span.parent - root;
  if (index >= spans.size()) return -1;
  return static_cast<int>(index) - 1;
}

}  // namespace

SpanShape SpanShape::of(uint64_t version, const std::vector<record::Span>& spans) {
  SpanShape shape;
  shape.version = version;
  if (spans.empty()) return shape;
  shape.entries.reserve(spans.size() - 1);
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].status == record::SpanStatus::kSkipped) continue;
    shape.entries.push_back({spans[i].name, spans[i].location, parentIndex(spans, spans[i])});
  }
  return shape;
}

bool SpanShape::matches(uint64_t v, const std::vector<record::Span>& spans) const {
  if (v != version) return false;
  size_t n = spans.empty() ? 0 : spans.size() - 1;
  if (n != entries.size()) return false;
  for (size_t i = 0; i < n; ++i) {
    const record::Span& span = spans[i + 1];
    const Entry& entry = entries[i];
    if (span.status == record::SpanStatus::kSkipped || span.name != entry.name ||
        span.location != entry.location || parentIndex(spans, span) != entry.parent) {
      return false;
    }
  }
  return true;
}

size_t SpanShape::appendSkipped(std::vector<record::Span>& spans, int64_t at_us) const {
  if (spans.empty() || entries.empty()) return 0;
  // The spans that ran, as positions in `spans`.
  std::vector<size_t> ran;
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].status != record::SpanStatus::kSkipped) ran.push_back(i);
  }
  auto same = [&](size_t span_index, size_t entry) {
    return spans[span_index].name == entries[entry].name &&
           spans[span_index].location == entries[entry].location;
  };
  // The shape position of the last span that ran (-1: none ran, all of the shape is skipped).
  long last = -1;
  if (!ran.empty()) {
    size_t expected = ran.size() - 1;
    if (expected < entries.size() && same(ran.back(), expected)) {
      last = static_cast<long>(expected);
    } else {
      long best_distance = -1;
      for (size_t e = 0; e < entries.size(); ++e) {
        if (!same(ran.back(), e)) continue;
        long distance = static_cast<long>(e > expected ? e - expected : expected - e);
        if (best_distance < 0 || distance < best_distance) {
          best_distance = distance;
          last = static_cast<long>(e);
        }
      }
      if (last < 0) return 0;  // another path than the remembered one
    }
  }
  // Shape positions up to `last` correspond to ran[position - offset] where they agree.
  long offset = last - (static_cast<long>(ran.size()) - 1);
  uint32_t root = spans.front().id;
  std::unordered_map<long, uint32_t> skipped_ids;  // shape position -> id given to it
  size_t added = 0;
  for (long e = last + 1; e < static_cast<long>(entries.size()); ++e) {
    const Entry& entry = entries[static_cast<size_t>(e)];
    uint32_t parent = root;
    if (entry.parent >= 0 && entry.parent > last) {
      if (auto it = skipped_ids.find(entry.parent); it != skipped_ids.end()) parent = it->second;
    } else if (entry.parent >= 0) {
      long position = entry.parent - offset;
      if (position >= 0 && position < static_cast<long>(ran.size()) &&
          same(ran[static_cast<size_t>(position)], static_cast<size_t>(entry.parent))) {
        parent = spans[ran[static_cast<size_t>(position)]].id;
      }
    }
    record::Span span;
    span.id = root + static_cast<uint32_t>(spans.size());
    span.parent = parent;
    span.name = entry.name;
    span.location = entry.location;
    span.start_us = at_us;
    span.status = record::SpanStatus::kSkipped;
    skipped_ids.emplace(e, span.id);
    spans.push_back(std::move(span));
    ++added;
  }
  return added;
}

}  // namespace flux::runtime

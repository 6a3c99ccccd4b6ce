#include "runtime/io_journal.h"

namespace flux::runtime {

namespace {

const char* kindName(uint8_t kind) {
  static constexpr const char* kNames[] = {"now", "random", "uuid", "random_values", "fetch", "db"};
  return kNames[kind];
}

}  // namespace

void IoJournal::randomValues(const uint8_t* data, size_t size) {
  if (full()) return;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.resize(size * 2);
  for (size_t i = 0; i < size; ++i) {
    hex[2 * i] = kHex[data[i] >> 4];
    hex[2 * i + 1] = kHex[data[i] & 15];
  }
  texts_.push_back(std::move(hex));
  entries_.push_back(
      {Kind::kRandomValues, Payload::kText, 0, static_cast<double>(texts_.size() - 1)});
}

void IoJournal::textEntry(Kind kind, std::string text) {
  if (full()) return;
  texts_.push_back(std::move(text));
  entries_.push_back({kind, Payload::kText, 0, static_cast<double>(texts_.size() - 1)});
}

void IoJournal::result(Kind kind, uint32_t span, nlohmann::json value) {
  if (full()) return;
  values_.push_back(std::move(value));
  entries_.push_back({kind, Payload::kValue, span, static_cast<double>(values_.size() - 1)});
}

void IoJournal::error(Kind kind, uint32_t span, std::string message) {
  if (full()) return;
  texts_.push_back(std::move(message));
  entries_.push_back({kind, Payload::kError, span, static_cast<double>(texts_.size() - 1)});
}

nlohmann::json IoJournal::toJson() const {
  nlohmann::json out = nlohmann::json::array();
  if (empty()) return out;
  out.get_ref<nlohmann::json::array_t&>().reserve(entries_.size() + 1);
  for (const Entry& e : entries_) {
    nlohmann::json entry = nlohmann::json::object();
    entry["kind"] = kindName(static_cast<uint8_t>(e.kind));
    auto index = static_cast<size_t>(e.number);
    switch (e.payload) {
      case Payload::kNumber:
        entry["value"] = e.number;
        break;
      case Payload::kText:
        entry["value"] = texts_[index];
        break;
      case Payload::kValue:
        entry["span"] = e.span;
        entry["value"] = values_[index];
        break;
      case Payload::kError:
        entry["span"] = e.span;
        entry["error"] = texts_[index];
        break;
    }
    out.push_back(std::move(entry));
  }
  if (dropped_ > 0) out.push_back({{"kind", "truncated"}, {"dropped", dropped_}});
  return out;
}

}  // namespace flux::runtime

// IoJournal: the results of one execution's nondeterministic calls, in call order, so that a
// replay can feed them back (ExecutionRecord::journal).
//
// Entries, as stored (toJson()):
//   {"kind": "now",           "value": 1718000000123.456}   Date.now(), new Date(), Date()
//   {"kind": "random",        "value": 0.5123}               Math.random()
//   {"kind": "uuid",          "value": "0f8e...-..."}        crypto.randomUUID()
//   {"kind": "random_values", "value": "a1b2..."}            crypto.getRandomValues() (hex bytes)
//   {"kind": "fetch", "span": N, "value": {status, statusText, headers, body, url}}
//   {"kind": "fetch", "span": N, "error": "timeout after 200 ms"}
//   {"kind": "db",    "span": N, "value": {command, rowCount, rows}}
//   {"kind": "db",    "span": N, "error": "duplicate key value ..."}
// `span` is the id of the call's span in the same record. After kMaxEntries entries the rest
// are counted, not kept, and one last {"kind": "truncated", "dropped": N} says so.
//
// Cost: the scalar kinds append 24 bytes to a vector (no JSON is built until toJson(), once
// per execution, and only when something was journaled); an execution that journals nothing
// allocates nothing. Used on one worker thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace flux::runtime {

class IoJournal {
 public:
  static constexpr size_t kMaxEntries = 10'000;

  void now(double millis) { scalar(Kind::kNow, millis); }
  void random(double value) { scalar(Kind::kRandom, value); }
  void uuid(std::string_view text) { textEntry(Kind::kUuid, std::string(text)); }
  void randomValues(const uint8_t* data, size_t size);
  // A fetch or db call's result (`value`) or its error message.
  void fetch(uint32_t span, nlohmann::json value) { result(Kind::kFetch, span, std::move(value)); }
  void fetchError(uint32_t span, std::string message) {
    error(Kind::kFetch, span, std::move(message));
  }
  void db(uint32_t span, nlohmann::json value) { result(Kind::kDb, span, std::move(value)); }
  void dbError(uint32_t span, std::string message) { error(Kind::kDb, span, std::move(message)); }

  bool empty() const { return entries_.empty() && dropped_ == 0; }
  size_t size() const { return entries_.size(); }
  size_t dropped() const { return dropped_; }

  // The stored form: a JSON array (empty when nothing was journaled).
  nlohmann::json toJson() const;

 private:
  enum class Kind : uint8_t { kNow, kRandom, kUuid, kRandomValues, kFetch, kDb };
  enum class Payload : uint8_t { kNumber, kText, kValue, kError };
  struct Entry {
    Kind kind;
    Payload payload;
    uint32_t span;
    double number;  // kNumber: the value; otherwise the index into texts_ / values_
  };

  bool full() {
    if (entries_.size() < kMaxEntries) return false;
    ++dropped_;
    return true;
  }
  void scalar(Kind kind, double value) {
    if (!full()) entries_.push_back({kind, Payload::kNumber, 0, value});
  }
  void textEntry(Kind kind, std::string text);
  void result(Kind kind, uint32_t span, nlohmann::json value);
  void error(Kind kind, uint32_t span, std::string message);

  std::vector<Entry> entries_;
  std::vector<std::string> texts_;
  std::vector<nlohmann::json> values_;
  size_t dropped_ = 0;
};

}  // namespace flux::runtime

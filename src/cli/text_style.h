// What every CLI view (state, why, trace, trace diff, trace debug, tail) prints with: colours
// that switch off for pipes and NO_COLOR, column padding by terminal width, control characters
// made visible, and tolerant accessors for the admin API's JSON (a missing or mistyped field
// reads as empty, never throws: the views print what they can).
#pragma once

#include <fmt/color.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace flux::cli {

enum class Color { kOff, kOn };

// Wraps text in terminal styles when colour is on, else returns it as it is.
class Painter {
 public:
  explicit Painter(Color color) : on_(color == Color::kOn) {}
  std::string paint(fmt::text_style style, std::string_view text) const {
    return on_ ? fmt::format(style, "{}", text) : std::string(text);
  }
  std::string red(std::string_view text) const {
    return paint(fmt::fg(fmt::terminal_color::red), text);
  }
  std::string green(std::string_view text) const {
    return paint(fmt::fg(fmt::terminal_color::green), text);
  }
  std::string yellow(std::string_view text) const {
    return paint(fmt::fg(fmt::terminal_color::yellow), text);
  }
  std::string dim(std::string_view text) const { return paint(fmt::emphasis::faint, text); }
  std::string bold(std::string_view text) const { return paint(fmt::emphasis::bold, text); }

 private:
  bool on_;
};

// Terminal columns of UTF-8 text, counted as code points.
size_t displayWidth(std::string_view text);
// Text followed (padded) or preceded (paddedLeft) by spaces up to `width` columns.
std::string padded(std::string_view text, size_t width);
std::string paddedLeft(std::string_view text, size_t width);
// Cut at a code point boundary so that the result, "…" included, is at most `width` columns.
std::string truncated(std::string_view text, size_t width);
// Control characters escaped ("\n", "\x1b"), so that a value never breaks a line or the
// terminal.
std::string printable(std::string_view text);

// object[key] when object is an object holding it, else null.
const nlohmann::json& field(const nlohmann::json& object, const char* key);
std::string stringField(const nlohmann::json& object, const char* key);
int64_t intField(const nlohmann::json& object, const char* key, int64_t fallback = 0);
bool boolField(const nlohmann::json& object, const char* key);
// The array at key, or an empty one.
const nlohmann::json& arrayField(const nlohmann::json& object, const char* key);
// The strings of a JSON array (other items skipped).
std::vector<std::string> stringList(const nlohmann::json& array);

}  // namespace flux::cli

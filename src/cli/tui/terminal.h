// The terminal under an interactive CLI view (`flux trace debug`): raw keyboard input, a
// full-screen redraw, and a promise that the terminal is given back as it was found.
//
// RawTerminal puts the input terminal in raw mode (no echo, no line buffering, Ctrl-C and
// Ctrl-Z arrive as bytes rather than signals), switches the output to the alternate screen and
// hides the cursor. It restores all of it when destroyed, when restore() is called, and, for a
// crash (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT), from a signal handler that then lets the
// signal take its course. Termination signals (SIGINT, SIGTERM, SIGHUP, SIGQUIT) and SIGWINCH
// are not handled here: they stay blocked and the view reads them from signalFd(), so that it
// quits through the same path as `q`. One RawTerminal at a time per process (the crash handler
// needs the saved state in a static: a signal handler can reach nothing else).
//
// KeyDecoder turns the bytes read in raw mode into key presses; a sequence split across two
// reads is completed by the next one. Pure, so the tests feed it bytes.
//
// Thread: the thread that created the RawTerminal calls all of its methods.
#pragma once

#include <signal.h>
#include <termios.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace flux::cli::tui {

enum class KeyCode {
  kChar,  // a printable character (or another byte): KeyPress::ch
  kLeft,
  kRight,
  kUp,
  kDown,
  kHome,
  kEnd,
  kPageUp,
  kPageDown,
  kEnter,
  kCtrlC,
  kCtrlD,
  kUnknown,  // an escape sequence this decoder does not know
};

struct KeyPress {
  KeyCode code = KeyCode::kUnknown;
  char ch = 0;  // kChar only

  bool operator==(const KeyPress&) const = default;
};

class KeyDecoder {
 public:
  // The keys these bytes complete, in order. A lone ESC stays pending until the next bytes tell
  // what it starts; flush() takes it as kUnknown.
  std::vector<KeyPress> feed(std::string_view bytes);
  std::vector<KeyPress> flush();
  // True while an escape sequence is unfinished (flush() it after a short wait).
  bool waiting() const { return !pending_.empty(); }

 private:
  std::string pending_;  // an unfinished escape sequence
};

struct TerminalSize {
  int rows = 24;
  int columns = 80;
};

class RawTerminal {
 public:
  // Takes over `in_fd` (a terminal, for keys) and `out_fd` (a terminal, for the screen); they
  // must outlive this object. kInvalidArgument when either is not a terminal, kInternal when
  // the terminal refuses the mode, kUnavailable when another RawTerminal is active.
  static Result<std::unique_ptr<RawTerminal>> open(int in_fd, int out_fd);

  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

  // Leaves raw mode and the alternate screen, shows the cursor, unblocks what open() blocked.
  // Idempotent.
  void restore();

  int inFd() const { return in_fd_; }
  int outFd() const { return out_fd_; }
  // Readable when SIGINT, SIGTERM, SIGHUP, SIGQUIT or SIGWINCH is pending; read a
  // signalfd_siginfo to take it.
  int signalFd() const { return signal_fd_; }

  TerminalSize size() const;

  // Clears the screen and writes `frame` from the top-left corner (lines end with "\n"; the
  // terminal's output processing turns them into CR LF). False when the terminal is gone.
  bool draw(std::string_view frame);

 private:
  RawTerminal(int in_fd, int out_fd) : in_fd_(in_fd), out_fd_(out_fd) {}

  int in_fd_;
  int out_fd_;
  int signal_fd_ = -1;
  bool active_ = false;
  termios saved_{};
  sigset_t saved_mask_{};
};

// Writes all of `text` to `fd` (retrying on EINTR and short writes). False on error.
bool writeAll(int fd, std::string_view text);

}  // namespace flux::cli::tui

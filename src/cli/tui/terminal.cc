#include "cli/tui/terminal.h"

#include <errno.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace flux::cli::tui {

namespace {

// Alternate screen on, cursor hidden / cursor shown, alternate screen off.
constexpr std::string_view kEnterScreen = "\x1b[?1049h\x1b[?25l";
constexpr std::string_view kLeaveScreen = "\x1b[?25h\x1b[?1049l";

constexpr int kCrashSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
constexpr int kWatchedSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH};

// What the crash handler needs to give the terminal back. A signal handler can reach only
// statics; RawTerminal::open() fills them while it is the one active terminal.
struct CrashRestore {
  std::atomic<bool> armed{false};
  int in_fd = -1;
  int out_fd = -1;
  termios saved{};
  struct sigaction previous[std::size(kCrashSignals)]{};
};
CrashRestore g_crash_restore;
std::atomic<bool> g_terminal_active{false};

// Async-signal-safe: tcsetattr and write only. The handler was installed with SA_RESETHAND,
// so raising the signal again ends the process as it would have without us.
void restoreOnCrash(int signal) {
  if (g_crash_restore.armed.exchange(false)) {
    tcsetattr(g_crash_restore.in_fd, TCSANOW, &g_crash_restore.saved);
    ssize_t ignored = write(g_crash_restore.out_fd, kLeaveScreen.data(), kLeaveScreen.size());
    (void)ignored;
  }
  raise(signal);
}

KeyPress key(KeyCode code) { return KeyPress{code, 0}; }

// The key of a CSI or SS3 sequence: its parameter bytes and its final byte.
KeyPress sequenceKey(std::string_view params, char final) {
  switch (final) {
    case 'A':
      return key(KeyCode::kUp);
    case 'B':
      return key(KeyCode::kDown);
    case 'C':
      return key(KeyCode::kRight);
    case 'D':
      return key(KeyCode::kLeft);
    case 'H':
      return key(KeyCode::kHome);
    case 'F':
      return key(KeyCode::kEnd);
    case '~':
      if (params == "1" || params == "7") return key(KeyCode::kHome);
      if (params == "4" || params == "8") return key(KeyCode::kEnd);
      if (params == "5") return key(KeyCode::kPageUp);
      if (params == "6") return key(KeyCode::kPageDown);
      break;
    default:
      break;
  }
  return key(KeyCode::kUnknown);
}

}  // namespace

// ---- KeyDecoder -------------------------------------------------------------------------------

std::vector<KeyPress> KeyDecoder::feed(std::string_view bytes) {
  pending_.append(bytes);
  std::vector<KeyPress> keys;
  size_t i = 0;
  const std::string& in = pending_;
  while (i < in.size()) {
    char c = in[i];
    if (c == '\x1b') {
      if (i + 1 == in.size()) break;  // wait for what follows
      char next = in[i + 1];
      if (next != '[' && next != 'O') {
        keys.push_back(key(KeyCode::kUnknown));  // a lone ESC (or Alt+key): ignored
        ++i;
        continue;
      }
      // Parameter and intermediate bytes (0x20-0x3f), then one final byte.
      size_t end = i + 2;
      while (end < in.size() && in[end] >= 0x20 && in[end] <= 0x3f) ++end;
      if (end == in.size()) break;  // unfinished
      keys.push_back(sequenceKey(std::string_view(in).substr(i + 2, end - i - 2), in[end]));
      i = end + 1;
      continue;
    }
    if (c == '\x03') {
      keys.push_back(key(KeyCode::kCtrlC));
    } else if (c == '\x04') {
      keys.push_back(key(KeyCode::kCtrlD));
    } else if (c == '\r' || c == '\n') {
      keys.push_back(key(KeyCode::kEnter));
    } else {
      keys.push_back(KeyPress{KeyCode::kChar, c});
    }
    ++i;
  }
  pending_.erase(0, i);
  return keys;
}

std::vector<KeyPress> KeyDecoder::flush() {
  if (pending_.empty()) return {};
  pending_.clear();
  return {key(KeyCode::kUnknown)};
}

// ---- RawTerminal ------------------------------------------------------------------------------

bool writeAll(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t wrote = write(fd, text.data(), text.size());
    if (wrote < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    text.remove_prefix(static_cast<size_t>(wrote));
  }
  return true;
}

Result<std::unique_ptr<RawTerminal>> RawTerminal::open(int in_fd, int out_fd) {
  if (!isatty(in_fd) || !isatty(out_fd)) {
    return fail(ErrorCode::kInvalidArgument, "not a terminal");
  }
  if (g_terminal_active.exchange(true)) {
    return fail(ErrorCode::kUnavailable, "the terminal is already in use by this process");
  }
  std::unique_ptr<RawTerminal> terminal(new RawTerminal(in_fd, out_fd));
  if (tcgetattr(in_fd, &terminal->saved_) != 0) {
    g_terminal_active = false;
    return fail(ErrorCode::kInternal,
                std::string("cannot read the terminal's settings: ") + std::strerror(errno));
  }

  // Termination signals and resizes come through signalFd(): blocked here, taken by the view.
  sigset_t watched;
  sigemptyset(&watched);
  for (int signal : kWatchedSignals) sigaddset(&watched, signal);
  pthread_sigmask(SIG_BLOCK, &watched, &terminal->saved_mask_);
  terminal->signal_fd_ = signalfd(-1, &watched, SFD_CLOEXEC | SFD_NONBLOCK);
  if (terminal->signal_fd_ < 0) {
    int error = errno;
    pthread_sigmask(SIG_SETMASK, &terminal->saved_mask_, nullptr);
    g_terminal_active = false;
    return fail(ErrorCode::kInternal, std::string("signalfd: ") + std::strerror(error));
  }

  // The crash handler first, so that no moment passes in raw mode without it.
  g_crash_restore.in_fd = in_fd;
  g_crash_restore.out_fd = out_fd;
  g_crash_restore.saved = terminal->saved_;
  struct sigaction crash {};
  crash.sa_handler = restoreOnCrash;
  crash.sa_flags = SA_RESETHAND | SA_NODEFER;
  sigemptyset(&crash.sa_mask);
  for (size_t i = 0; i < std::size(kCrashSignals); ++i) {
    sigaction(kCrashSignals[i], &crash, &g_crash_restore.previous[i]);
  }
  g_crash_restore.armed = true;
  terminal->active_ = true;

  termios raw = terminal->saved_;
  // No echo, no line editing, Ctrl-C/Ctrl-Z/Ctrl-\ as bytes, no flow control, CR kept as CR.
  // Output processing stays on: "\n" still moves to the start of the next line.
  raw.c_lflag &= ~static_cast<tcflag_t>(ECHO | ICANON | ISIG | IEXTEN);
  raw.c_iflag &= ~static_cast<tcflag_t>(IXON | ICRNL | INLCR | IGNCR | BRKINT | ISTRIP);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  if (tcsetattr(in_fd, TCSAFLUSH, &raw) != 0) {
    int error = errno;
    terminal->restore();
    return fail(ErrorCode::kInternal,
                std::string("cannot put the terminal in raw mode: ") + std::strerror(error));
  }
  writeAll(out_fd, kEnterScreen);
  return terminal;
}

RawTerminal::~RawTerminal() { restore(); }

void RawTerminal::restore() {
  if (!active_) return;
  active_ = false;
  writeAll(out_fd_, kLeaveScreen);
  tcsetattr(in_fd_, TCSAFLUSH, &saved_);
  g_crash_restore.armed = false;
  for (size_t i = 0; i < std::size(kCrashSignals); ++i) {
    sigaction(kCrashSignals[i], &g_crash_restore.previous[i], nullptr);
  }
  if (signal_fd_ >= 0) {
    close(signal_fd_);
    signal_fd_ = -1;
  }
  // A signal still pending stays so where the caller blocked it, or acts now.
  pthread_sigmask(SIG_SETMASK, &saved_mask_, nullptr);
  g_terminal_active = false;
}

TerminalSize RawTerminal::size() const {
  winsize size{};
  TerminalSize out;
  if (ioctl(out_fd_, TIOCGWINSZ, &size) == 0) {
    if (size.ws_row > 0) out.rows = size.ws_row;
    if (size.ws_col > 0) out.columns = size.ws_col;
  }
  return out;
}

bool RawTerminal::draw(std::string_view frame) {
  // Home, then each line cleared to its end as it is written, then the rest of the screen: no
  // flash of an empty screen between two frames.
  std::string out = "\x1b[H";
  out.reserve(frame.size() + 64);
  for (char c : frame) {
    if (c == '\n') out += "\x1b[K";
    out.push_back(c);
  }
  out += "\x1b[J";
  return writeAll(out_fd_, out);
}

}  // namespace flux::cli::tui

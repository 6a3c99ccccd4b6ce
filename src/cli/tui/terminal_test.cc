#include "cli/tui/terminal.h"

#include <gtest/gtest.h>
#include <pty.h>
#include <unistd.h>

namespace flux::cli::tui {
namespace {

KeyPress ch(char c) { return KeyPress{KeyCode::kChar, c}; }
KeyPress code(KeyCode code) { return KeyPress{code, 0}; }

TEST(KeyDecoderTest, LettersAndControlKeys) {
  KeyDecoder decoder;
  EXPECT_EQ(decoder.feed("npeq"), (std::vector<KeyPress>{ch('n'), ch('p'), ch('e'), ch('q')}));
  EXPECT_EQ(
      decoder.feed("\x03\x04\r"),
      (std::vector<KeyPress>{code(KeyCode::kCtrlC), code(KeyCode::kCtrlD), code(KeyCode::kEnter)}));
  EXPECT_FALSE(decoder.waiting());
}

TEST(KeyDecoderTest, ArrowsInBothModes) {
  KeyDecoder decoder;
  EXPECT_EQ(decoder.feed("\x1b[C\x1b[D\x1b[A\x1b[B"),
            (std::vector<KeyPress>{code(KeyCode::kRight), code(KeyCode::kLeft), code(KeyCode::kUp),
                                   code(KeyCode::kDown)}));
  // Application cursor mode (SS3).
  EXPECT_EQ(decoder.feed("\x1bOC\x1bOD"),
            (std::vector<KeyPress>{code(KeyCode::kRight), code(KeyCode::kLeft)}));
  EXPECT_EQ(
      decoder.feed("\x1b[5~\x1b[6~\x1b[1~\x1b[4~\x1b[H\x1b[F"),
      (std::vector<KeyPress>{code(KeyCode::kPageUp), code(KeyCode::kPageDown), code(KeyCode::kHome),
                             code(KeyCode::kEnd), code(KeyCode::kHome), code(KeyCode::kEnd)}));
  // Modifiers and unknown sequences are read whole, not as stray letters.
  EXPECT_EQ(decoder.feed("\x1b[1;5C"), (std::vector<KeyPress>{code(KeyCode::kRight)}));
  EXPECT_EQ(decoder.feed("\x1b[200~n"), (std::vector<KeyPress>{code(KeyCode::kUnknown), ch('n')}));
}

TEST(KeyDecoderTest, ASequenceSplitAcrossReads) {
  KeyDecoder decoder;
  EXPECT_TRUE(decoder.feed("\x1b").empty());
  EXPECT_TRUE(decoder.waiting());
  EXPECT_TRUE(decoder.feed("[").empty());
  EXPECT_EQ(decoder.feed("Dn"), (std::vector<KeyPress>{code(KeyCode::kLeft), ch('n')}));
  EXPECT_FALSE(decoder.waiting());
}

TEST(KeyDecoderTest, ALoneEscape) {
  KeyDecoder decoder;
  EXPECT_TRUE(decoder.feed("\x1b").empty());
  EXPECT_EQ(decoder.flush(), (std::vector<KeyPress>{code(KeyCode::kUnknown)}));
  EXPECT_FALSE(decoder.waiting());
  // ESC then a letter: the letter still counts.
  EXPECT_EQ(decoder.feed("\x1bq"), (std::vector<KeyPress>{code(KeyCode::kUnknown), ch('q')}));
}

TEST(RawTerminalTest, RefusesWhatIsNotATerminal) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  auto terminal = RawTerminal::open(pipe_fds[0], pipe_fds[1]);
  EXPECT_FALSE(terminal.has_value());
  close(pipe_fds[0]);
  close(pipe_fds[1]);
}

TEST(RawTerminalTest, EntersRawModeAndRestoresIt) {
  int master = -1, slave = -1;
  ASSERT_EQ(openpty(&master, &slave, nullptr, nullptr, nullptr), 0);
  termios before{};
  ASSERT_EQ(tcgetattr(slave, &before), 0);
  ASSERT_TRUE(before.c_lflag & ICANON);
  {
    auto terminal = RawTerminal::open(slave, slave);
    ASSERT_TRUE(terminal.has_value()) << terminal.error().message;
    termios raw{};
    ASSERT_EQ(tcgetattr(slave, &raw), 0);
    EXPECT_FALSE(raw.c_lflag & ICANON);
    EXPECT_FALSE(raw.c_lflag & ECHO);
    EXPECT_FALSE(raw.c_lflag & ISIG);
    EXPECT_GE((*terminal)->signalFd(), 0);
    // One at a time.
    EXPECT_FALSE(RawTerminal::open(slave, slave).has_value());
    EXPECT_TRUE((*terminal)->draw("hello\n"));
  }
  termios after{};
  ASSERT_EQ(tcgetattr(slave, &after), 0);
  EXPECT_EQ(after.c_lflag, before.c_lflag);
  EXPECT_EQ(after.c_iflag, before.c_iflag);
  // What reached the screen: the alternate screen, the frame, and the way back.
  std::string screen;
  char buffer[512];
  ssize_t got;
  while ((got = read(master, buffer, sizeof buffer)) > 0) {
    screen.append(buffer, static_cast<size_t>(got));
    if (screen.find("\x1b[?1049l") != std::string::npos) break;
  }
  EXPECT_NE(screen.find("\x1b[?1049h"), std::string::npos);
  EXPECT_NE(screen.find("hello"), std::string::npos);
  EXPECT_NE(screen.find("\x1b[?25h\x1b[?1049l"), std::string::npos);
  close(master);
  close(slave);
  // Free again.
  int master2 = -1, slave2 = -1;
  ASSERT_EQ(openpty(&master2, &slave2, nullptr, nullptr, nullptr), 0);
  EXPECT_TRUE(RawTerminal::open(slave2, slave2).has_value());
  close(master2);
  close(slave2);
}

}  // namespace
}  // namespace flux::cli::tui

// `flux tail`: every execution as it is recorded, one line each, read from the server's live
// stream (GET /_flux/records/stream, Server-Sent Events; see src/admin/record_stream.h).
//
//   flux tail [--fn F] [--errors-only] [--since 30m] [--filter key=value]... [--json]
//
// With --since the records of that last span of time come first (oldest first), then the live
// ones, without a gap or a repeat between the two (the server sees to it). Each line is written
// and flushed on its own, also into a pipe (`flux tail | grep 500`).
//
// A lost connection (the server restarted, or ended the stream because its PostgreSQL feed
// went away or this client fell behind) is said on stderr and the tail reconnects on its own,
// asking for the records since a minute before the last one it had (the server's clock), and
// printing only the ones it has not printed: a request that takes longer than that minute to
// be stored while the tail is away is missed. The server and its token are looked up again at
// each attempt (a restarted `flux dev` has a new port or token in .flux/dev.json).
//
// Exit codes: 0 stopped by Ctrl-C (SIGINT) or SIGTERM, or its reader went away (`| head`);
// 1 the server refused (wrong token, or it has no live stream); 2 a bad command line (an
// unknown --filter key, a bad value, a bad --since) or no server to ask at the start.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/error.h"
#include "cli/admin_client.h"

namespace CLI {
class App;
}

namespace flux::cli {

struct TailOptions {
  std::string function;              // --fn
  bool errors_only = false;          // --errors-only: 4xx, 5xx and failed jobs
  std::string since;                 // --since 30m: print the records of that span first
  std::vector<std::string> filters;  // --filter key=value (path, status, function/fn,
                                     //   type/kind, method)
  bool json = false;                 // one JSON summary per line
  std::string url;
  std::string token;
};

// "45s", "30m", "2h", "1d", "1h30m" -> microseconds. kInvalidArgument saying what to pass.
Result<int64_t> parseSinceDuration(std::string_view text);

// --fn, --errors-only and the --filter pairs as the stream's parameters (fn, errors_only,
// path, status, kind, method). kInvalidArgument for an unknown key (the message lists the
// valid ones), a pair without '=' or without a value, a key given twice, or a value the server
// would refuse (status not 500 / 5xx, type not http / job / cron / replay, method not letters).
Result<UrlParams> tailFilterParams(const TailOptions& options);

// Streams until SIGINT or SIGTERM (which must be blocked in the calling thread: the loop takes
// them from a signalfd) or until stdout is closed. Returns the exit code.
int runTail(const TailOptions& options, Clock& clock);

// Adds `tail` to `app` (its callback runs runTail; a non-zero code comes out as a
// CLI::RuntimeError, as the other record commands do).
void addTailCommand(CLI::App& app);

// ---- Server-Sent Events, as the stream sends them --------------------------------------------

struct SseEvent {
  std::string event = "message";
  std::string data;  // the data lines joined with '\n'
  std::string id;
};

// Splits a text/event-stream body, fed in pieces of any size, into events (the HTML standard's
// rules: LF, CR or CRLF end lines; "field: value" with one space dropped; comments start with
// ':'; an empty line dispatches; an event without data is not dispatched).
class SseParser {
 public:
  void feed(std::string_view bytes, std::vector<SseEvent>& out);

 private:
  void line(std::string_view text, std::vector<SseEvent>& out);

  std::string line_;
  bool after_cr_ = false;
  SseEvent event_;
  bool has_data_ = false;
};

}  // namespace flux::cli

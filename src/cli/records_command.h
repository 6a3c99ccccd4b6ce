// `flux tail`, `flux why <id>` and `flux trace <id>`: the execution records of a running
// server, asked of its admin API (GET /_flux/records and GET /_flux/records/<id>).
//
// An id is the full request id, any unique prefix of it, `req:` + its handle (the last 8 hex
// digits, as `flux tail` prints it) or the bare handle.
//
// flux tail polls every ~300 ms. Records reach the database when their request ends (and the
// recorder flushes), not in id order: a slow request is stored after faster ones that started
// later. So each poll asks for the records that started in a window behind the newest one the
// server has (2 s; every 10th poll 30 s) and prints those it has not printed yet. A request
// that takes longer than 30 s to be stored is missed.
//
// Exit codes: 0 printed an answer (tail: stopped with Ctrl-C, or its reader went away);
// 1 the server said no (unknown or ambiguous id, bad filter, bad token); 2 the server or its
// database could not be reached.
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

enum class RecordView { kWhy, kTrace };

struct RecordOptions {
  std::string id;
  bool json = false;  // print the API's JSON as it is
  std::string url;
  std::string token;
};

// "45s", "30m", "2h", "1d", "1h30m" -> microseconds. kInvalidArgument saying what to pass.
Result<int64_t> parseSinceDuration(std::string_view text);

// --fn, --errors-only and the --filter pairs as GET /_flux/records parameters (fn,
// errors_only, path, status, kind, method). kInvalidArgument for an unknown key, a pair
// without '=', or a key given twice.
Result<UrlParams> tailFilterParams(const TailOptions& options);

// Stream until Ctrl-C (SIGINT or SIGTERM, which must be blocked in the calling thread: the
// loop takes them with sigtimedwait) or until stdout is closed. Returns the exit code.
int runTail(const TailOptions& options, Clock& clock);

// Prints `flux why` or `flux trace` for one id; returns the exit code.
int runRecord(RecordView view, const RecordOptions& options);

// Adds `tail`, `why` and `trace` to `app`; each runs from its CLI11 callback during
// app.parse(), a non-zero exit code coming out as a CLI::RuntimeError (see addStateCommand).
void addRecordCommands(CLI::App& app);

}  // namespace flux::cli

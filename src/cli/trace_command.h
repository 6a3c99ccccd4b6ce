// `flux trace debug <id>` and `flux trace diff <a> <b>`: subcommands of `flux trace`
// (records_command.h), reading records as it does (GET /_flux/records/<id>: any unique prefix
// of an id, `req:` + its handle, or the bare handle).
//
// trace debug: on a terminal, the interactive step-through (tui/trace_debug.h); with stdout
// not a terminal (a pipe, a file), every step as a plain listing without escape codes;
// --json, the steps as JSON. --expand starts with (or lists) full values.
// trace diff: the span and mutation diff of two records (trace_diff.h); --json, the
// structured diff. Two different endpoints are compared too (the header says so).
//
// Exit codes as for `flux trace`: 0 printed (or the view was quit with q / Ctrl-C); 1 the server
// said no (an unknown or ambiguous id, a bad token); 2 no server could be reached; 128 + n
// when signal n ended the interactive view (the terminal is restored first).
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace flux::cli {

struct TraceDebugOptions {
  std::string id;
  bool json = false;
  bool expand = false;
  std::string url;
  std::string token;
};

struct TraceDiffOptions {
  std::string before;
  std::string after;
  bool json = false;
  std::string url;
  std::string token;
};

int runTraceDebug(const TraceDebugOptions& options);
int runTraceDiff(const TraceDiffOptions& options);

// Adds `debug` and `diff` to the `trace` command; each runs from its CLI11 callback, a
// non-zero exit code coming out as a CLI::RuntimeError.
void addTraceSubcommands(CLI::App& trace);

}  // namespace flux::cli

// `flux tail`, `flux why <id>` and `flux trace <id>`: the execution records of a running
// server, asked of its admin API (GET /_flux/records and GET /_flux/records/<id>).
//
// An id is the full request id, any unique prefix of it, `req:` + its handle (the last 8 hex
// digits, as `flux tail` prints it) or the bare handle.
//
// flux tail reads the server's live stream: tail_command.h.
//
// Exit codes (why, trace): 0 printed an answer; 1 the server said no (unknown or ambiguous id,
// bad token); 2 the server or its database could not be reached. flux tail: tail_command.h.
#pragma once

#include <cstdint>
#include <expected>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/error.h"
#include "cli/admin_client.h"
#include "cli/tail_command.h"

namespace CLI {
class App;
}

namespace flux::cli {

enum class RecordView { kWhy, kTrace };

struct RecordOptions {
  std::string id;
  bool json = false;  // print the API's JSON as it is
  std::string url;
  std::string token;
};

// Prints `flux why` or `flux trace` for one id; returns the exit code.
int runRecord(RecordView view, const RecordOptions& options);

// The server the record commands ask (see admin_client.h), or the exit code after saying on
// stderr, as "<command>: <why>", that there is none.
std::expected<AdminServer, int> findRecordServer(std::string_view command, const std::string& url,
                                                 const std::string& token);

// GET /_flux/records/<id> (the id as typed: the server resolves prefixes and handles): the
// answer, or the exit code after saying on stderr why not (an ambiguous id with its candidates).
std::expected<nlohmann::json, int> fetchRecord(std::string_view command, const AdminServer& server,
                                               std::string_view id);

// Adds `tail`, `why` and `trace` (with `trace debug` and `trace diff`, trace_command.h) to
// `app`; each runs from its CLI11 callback during app.parse(), a non-zero exit code coming out
// as a CLI::RuntimeError (see addStateCommand).
void addRecordCommands(CLI::App& app);

}  // namespace flux::cli

// `flux state history <table> --id <pk>` and `flux state blame <table> --id <pk>`: a row's
// mutation log and who owns each of its values, asked of a running server's admin API.
//
// Exit codes: 0 printed an answer; 1 the server said no (unknown table or row, bad token, bad
// arguments); 2 the server or its database could not be reached.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace flux::cli {

enum class StateView { kHistory, kBlame };

struct StateOptions {
  StateView view = StateView::kHistory;
  std::string table;  // "users" or "schema.table"
  std::string id;     // the primary key value; a composite key's values joined with ','
  int limit = 100;    // history only: the latest N mutations
  bool json = false;  // print the API's JSON as it is
  std::string url;    // empty: FLUX_URL, then .flux/dev.json
  std::string token;  // empty: FLUX_TOKEN, then .flux/dev.json
};

// Asks the server, prints the answer on stdout (problems on stderr), returns the exit code.
int runState(const StateOptions& options);

// Adds `state` with its `history` and `blame` subcommands to `app`. The chosen one runs from
// its CLI11 callback during app.parse(); a non-zero exit code comes out of CLI11_PARSE (as a
// CLI::RuntimeError, which App::exit() returns without printing anything).
void addStateCommand(CLI::App& app);

}  // namespace flux::cli

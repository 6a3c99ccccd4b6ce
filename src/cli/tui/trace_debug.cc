#include "cli/tui/trace_debug.h"

#include <errno.h>
#include <fmt/color.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <sstream>

namespace flux::cli {

namespace {

using nlohmann::json;

// The labels take this many columns ("Output:" and two spaces).
constexpr size_t kLabelWidth = 9;
// The listing's lines are cut to this width (a pipe has no width of its own).
constexpr size_t kListingWidth = 120;
// A compact step shows at most this many DB changes and log lines.
constexpr size_t kCompactMutations = 4;
constexpr size_t kCompactLogs = 3;
// How long a lone ESC waits for the rest of its sequence before it counts as a key.
constexpr int kEscapeWaitMs = 50;

std::string upper(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string repeated(std::string_view piece, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) out += piece;
  return out;
}

// ---- Linking mutations to spans ---------------------------------------------------------------

enum class WriteOp { kInsert, kUpdate, kDelete, kAny };

// A db span that writes rows (rule 2 of the header).
struct Statement {
  size_t span = 0;
  std::string table;  // empty: unknown, any table
  WriteOp op = WriteOp::kAny;
  std::optional<int64_t> rows;  // output.rowCount
  bool ran = true;              // not failed, not skipped
};

// The next identifier of `sql` from `at`: "x", schema.x or "Quoted", as the catalogue names it
// (unquoted names fold to lower case); the last part of a qualified name.
std::string identifierAt(std::string_view sql, size_t at) {
  std::string name;
  while (at < sql.size()) {
    while (at < sql.size() && std::isspace(static_cast<unsigned char>(sql[at]))) ++at;
    name.clear();
    if (at < sql.size() && sql[at] == '"') {
      for (++at; at < sql.size(); ++at) {
        if (sql[at] == '"') {
          if (at + 1 < sql.size() && sql[at + 1] == '"') {
            name.push_back('"');
            ++at;
            continue;
          }
          ++at;
          break;
        }
        name.push_back(sql[at]);
      }
    } else {
      while (at < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[at])) ||
                                 sql[at] == '_' || sql[at] == '$')) {
        name.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(sql[at]))));
        ++at;
      }
    }
    if (at < sql.size() && sql[at] == '.') {
      ++at;  // a schema: the table's name follows
      continue;
    }
    break;
  }
  return name;
}

// The words of `sql` from its start, upper case, up to `count` of them, with where each ends.
std::vector<std::pair<std::string, size_t>> leadingWords(std::string_view sql, size_t count) {
  std::vector<std::pair<std::string, size_t>> words;
  size_t at = 0;
  while (words.size() < count) {
    while (at < sql.size() && std::isspace(static_cast<unsigned char>(sql[at]))) ++at;
    size_t start = at;
    while (at < sql.size() && std::isalpha(static_cast<unsigned char>(sql[at]))) ++at;
    if (at == start) break;
    words.emplace_back(upper(sql.substr(start, at - start)), at);
  }
  return words;
}

std::optional<Statement> statementOf(const TraceSpan& span, size_t index) {
  if (!span.name.starts_with("db.")) return std::nullopt;
  Statement statement;
  statement.span = index;
  statement.ran = !span.failed() && !span.skipped();
  const json& rows = field(span.output, "rowCount");
  if (rows.is_number_integer()) statement.rows = rows.get<int64_t>();

  // db.insert(users), db.update(users), db.delete(users).
  static const std::pair<std::string_view, WriteOp> kCalls[] = {{"db.insert(", WriteOp::kInsert},
                                                                {"db.upsert(", WriteOp::kInsert},
                                                                {"db.update(", WriteOp::kUpdate},
                                                                {"db.delete(", WriteOp::kDelete}};
  for (const auto& [prefix, op] : kCalls) {
    if (span.name.starts_with(prefix) && span.name.ends_with(")")) {
      statement.op = op;
      statement.table = span.name.substr(prefix.size(), span.name.size() - prefix.size() - 1);
      return statement;
    }
  }
  // Any other db span whose SQL writes.
  std::string sql = stringField(span.input, "sql");
  auto words = leadingWords(sql, 3);
  if (words.empty()) return std::nullopt;
  auto after = [&](size_t n) { return words.size() > n ? words[n].second : sql.size(); };
  const std::string& verb = words[0].first;
  if (verb == "INSERT" && words.size() > 1 && words[1].first == "INTO") {
    statement.op = WriteOp::kInsert;
    statement.table = identifierAt(sql, after(1));
  } else if (verb == "UPDATE") {
    bool only = words.size() > 1 && words[1].first == "ONLY";
    statement.op = WriteOp::kUpdate;
    statement.table = identifierAt(sql, after(only ? 1 : 0));
  } else if (verb == "DELETE" && words.size() > 1 && words[1].first == "FROM") {
    bool only = words.size() > 2 && words[2].first == "ONLY";
    statement.op = WriteOp::kDelete;
    statement.table = identifierAt(sql, after(only ? 2 : 1));
  } else if (verb == "MERGE") {
    statement.op = WriteOp::kAny;
    statement.table =
        words.size() > 1 && words[1].first == "INTO" ? identifierAt(sql, after(1)) : std::string();
  } else {
    return std::nullopt;
  }
  return statement;
}

bool opMatches(WriteOp op, std::string_view mutation_op) {
  switch (op) {
    case WriteOp::kInsert:
      return mutation_op == "INSERT" || mutation_op == "UPDATE";  // an upsert updates
    case WriteOp::kUpdate:
      return mutation_op == "UPDATE";
    case WriteOp::kDelete:
      return mutation_op == "DELETE";
    case WriteOp::kAny:
      return true;
  }
  return true;
}

bool tableMatches(const Statement& statement, const json& mutation) {
  return statement.table.empty() || statement.table == stringField(mutation, "table");
}

bool zeroRows(const json& mutation) { return intField(mutation, "rows_affected", 1) == 0; }

// ---- Rendering --------------------------------------------------------------------------------

json normalized(const json& value) {
  if (value.is_string()) {
    json parsed = json::parse(value.get_ref<const std::string&>(), nullptr, false);
    if (!parsed.is_discarded() && (parsed.is_object() || parsed.is_array())) return parsed;
  }
  return value;
}

std::vector<std::string> splitLines(std::string_view text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    lines.push_back(printable(text.substr(start, end - start)));
    start = end + 1;
  }
  return lines;
}

// A value as the lines after its label: one cut line, or all of it (JSON indented).
std::vector<std::string> valueLines(const json& value, StepView view, size_t width) {
  if (view == StepView::kCompact) return {compactValue(value, width)};
  json shown = normalized(value);
  if (shown.is_string()) return splitLines(shown.get_ref<const std::string&>());
  return splitLines(shown.dump(2, ' ', false, json::error_handler_t::replace));
}

struct Section {
  std::string label;
  std::vector<std::string> lines;
};

std::string renderSections(const std::vector<Section>& sections, const Painter& paint) {
  std::string out;
  for (const Section& section : sections) {
    for (size_t i = 0; i < section.lines.size(); ++i) {
      std::string label = i == 0 ? section.label : std::string();
      out += "  " + (label.empty() ? label : paint.bold(label)) +
             std::string(kLabelWidth - displayWidth(label), ' ') + section.lines[i] + "\n";
    }
  }
  return out;
}

json recordSummary(const json& record) {
  const json& error = field(record, "error");
  return json{{"id", field(record, "id")},
              {"kind", field(record, "kind")},
              {"function", field(record, "function")},
              {"method", field(record, "method")},
              {"path", field(record, "path")},
              {"status", field(record, "status")},
              {"duration_us", field(record, "duration_us")},
              {"started_at_us", field(record, "started_at_us")},
              {"error", field(error, "message")}};
}

std::string legend(StepView view, const Painter& paint) {
  return "  " +
         paint.dim(std::string("[n]ext →   [p]rev ←   [e] ") +
                   (view == StepView::kCompact ? "expand" : "collapse") + "   [q]uit") +
         "\n";
}

}  // namespace

const char* mutationLinkName(MutationLink link) {
  switch (link) {
    case MutationLink::kSpan:
      return "span";
    case MutationLink::kStatement:
      return "statement";
    case MutationLink::kRequest:
      return "request";
  }
  return "request";
}

std::vector<MutationOwner> linkMutations(const std::vector<TraceSpan>& spans,
                                         const json& mutations) {
  static const json kNone = json::array();
  const json& list = mutations.is_array() ? mutations : kNone;
  std::vector<MutationOwner> owners(list.size());
  std::vector<bool> claimed(list.size(), false);

  // 1. Linked by the record itself.
  std::map<uint32_t, size_t> by_id;
  for (size_t i = 0; i < spans.size(); ++i) by_id.emplace(spans[i].id, i);
  for (size_t m = 0; m < list.size(); ++m) {
    const json& span = field(list[m], "span");
    if (!span.is_number_integer()) continue;
    auto it = by_id.find(static_cast<uint32_t>(span.get<int64_t>()));
    if (it == by_id.end()) continue;
    owners[m] = MutationOwner{it->second, MutationLink::kSpan};
    claimed[m] = true;
  }

  // 2. The write statements in the order they started, each taking its rows in log order.
  std::vector<Statement> statements;
  for (size_t i = 0; i < spans.size(); ++i) {
    if (auto statement = statementOf(spans[i], i); statement && statement->ran) {
      statements.push_back(std::move(*statement));
    }
  }
  std::stable_sort(statements.begin(), statements.end(),
                   [&](const Statement& a, const Statement& b) {
                     return std::pair(spans[a.span].start_us, spans[a.span].id) <
                            std::pair(spans[b.span].start_us, spans[b.span].id);
                   });
  auto claim = [&](size_t m, const Statement& statement) {
    owners[m] = MutationOwner{statement.span, MutationLink::kStatement};
    claimed[m] = true;
  };
  for (const Statement& statement : statements) {
    auto fits = [&](size_t m) {
      return !claimed[m] && tableMatches(statement, list[m]) &&
             opMatches(statement.op, stringField(list[m], "op"));
    };
    if (statement.rows && *statement.rows == 0) {
      for (size_t m = 0; m < list.size(); ++m) {
        if (fits(m) && zeroRows(list[m])) {
          claim(m, statement);
          break;
        }
      }
    } else if (statement.rows) {
      int64_t left = *statement.rows;
      for (size_t m = 0; m < list.size() && left > 0; ++m) {
        if (fits(m) && !zeroRows(list[m])) {
          claim(m, statement);
          --left;
        }
      }
    } else {
      bool started = false;
      for (size_t m = 0; m < list.size(); ++m) {
        if (claimed[m]) continue;
        if (fits(m) && !zeroRows(list[m])) {
          claim(m, statement);
          started = true;
        } else if (started) {
          break;
        }
      }
    }
  }
  return owners;
}

DebugTrace debugTrace(json answer) {
  DebugTrace trace;
  trace.answer = std::move(answer);
  const json& record = field(trace.answer, "record");
  const json& mutations = arrayField(trace.answer, "mutations");
  std::vector<TraceSpan> spans = traceSpans(record);
  trace.owners = linkMutations(spans, mutations);

  std::map<uint32_t, std::string> names;
  for (const TraceSpan& span : spans) names.emplace(span.id, span.name);
  std::string function = stringField(record, "function");
  std::optional<size_t> request_step;
  for (size_t i = 0; i < spans.size(); ++i) {
    DebugStep step;
    step.db_write = statementOf(spans[i], i).has_value();
    if (spans[i].parent != 0) {
      if (auto it = names.find(spans[i].parent); it != names.end()) step.parent_name = it->second;
    }
    if (!request_step && !function.empty() && spans[i].name == function) request_step = i;
    step.span = std::move(spans[i]);
    trace.steps.push_back(std::move(step));
  }
  if (!request_step && !trace.steps.empty()) request_step = 0;
  for (size_t m = 0; m < trace.owners.size(); ++m) {
    const MutationOwner& owner = trace.owners[m];
    if (owner.span) {
      trace.steps[*owner.span].mutations.push_back(m);
    } else if (request_step) {
      trace.steps[*request_step].mutations.push_back(m);
    }
  }
  return trace;
}

std::string renderDebugStep(const DebugTrace& trace, size_t index, StepView view, Color color,
                            size_t width) {
  Painter paint(color);
  const DebugStep& step = trace.steps.at(index);
  const TraceSpan& span = step.span;
  size_t value_width = width > kLabelWidth + 12 ? width - kLabelWidth - 4 : 40;

  std::string title = fmt::format("Span {}/{}", index + 1, trace.steps.size());
  std::string out = "  " + paint.bold(title) + "  " + span.name;
  size_t title_width = displayWidth(title) + 2 + displayWidth(span.name);
  if (!step.parent_name.empty()) {
    out += paint.dim("  ·  in " + step.parent_name);
    title_width += 7 + displayWidth(step.parent_name);
  }
  out += "\n  " + paint.dim(repeated("─", std::clamp<size_t>(title_width, 40, value_width))) + "\n";

  std::vector<Section> sections;
  if (span.skipped()) {
    sections.push_back({"Status:", {paint.dim("skipped (upstream error): it never ran")}});
  } else {
    sections.push_back({"Time:",
                        {formatDuration(span.duration_us) +
                         paint.dim("  (at +" + formatDuration(span.start_us) + ")")}});
    if (span.failed()) {
      std::string status = "error";
      if (span.root_cause) status += "  " + failureMarker(span);
      sections.push_back({"Status:", {paint.red(status)}});
    } else {
      sections.push_back({"Status:", {paint.green("ok")}});
    }
  }
  if (!span.input.is_null())
    sections.push_back({"Input:", valueLines(span.input, view, value_width)});
  if (span.failed()) {
    std::vector<std::string> lines = splitLines(span.error.empty() ? "failed" : span.error);
    if (view == StepView::kCompact) lines = {truncated(lines.front(), value_width)};
    for (std::string& line : lines) line = paint.red(line);
    sections.push_back({"Error:", std::move(lines)});
  } else if (!span.output.is_null()) {
    sections.push_back({"Output:", valueLines(span.output, view, value_width)});
  }
  if (!span.location.empty()) sections.push_back({"Where:", {fileAndLine(span.location)}});

  const json& mutations = arrayField(trace.answer, "mutations");
  std::vector<std::string> changes;
  for (size_t m : step.mutations) {
    if (view == StepView::kCompact && changes.size() == kCompactMutations) {
      changes.push_back(paint.dim(
          fmt::format("… {} more (e expands)", step.mutations.size() - kCompactMutations)));
      break;
    }
    std::string line = renderMutationLine(mutations[m], color);
    if (trace.owners[m].link == MutationLink::kRequest) {
      line += "  " + paint.dim("(the request's: no statement matched)");
    }
    changes.push_back(std::move(line));
  }
  if (changes.empty() && step.db_write && !span.skipped()) {
    changes.push_back(paint.dim(span.failed() ? "none (the statement failed)" : "none"));
  }
  if (!changes.empty()) sections.push_back({"DB:", std::move(changes)});

  if (!span.logs.empty()) {
    std::vector<std::string> logs;
    for (const std::string& line : span.logs) {
      if (view == StepView::kCompact && logs.size() == kCompactLogs) {
        logs.push_back(
            paint.dim(fmt::format("… {} more (e expands)", span.logs.size() - kCompactLogs)));
        break;
      }
      logs.push_back(view == StepView::kCompact ? truncated(line, value_width) : line);
    }
    sections.push_back({"Logs:", std::move(logs)});
  }
  return out + renderSections(sections, paint);
}

std::string renderDebugListing(const DebugTrace& trace, StepView view, Color color) {
  std::string out = renderRecordHeader(field(trace.answer, "record"), color);
  if (trace.steps.empty()) return out + "\n  no spans recorded\n";
  for (size_t i = 0; i < trace.steps.size(); ++i) {
    out += "\n" + renderDebugStep(trace, i, view, color, kListingWidth);
  }
  return out;
}

json debugJson(const DebugTrace& trace) {
  const json& mutations = arrayField(trace.answer, "mutations");
  json steps = json::array();
  for (size_t i = 0; i < trace.steps.size(); ++i) {
    const TraceSpan& span = trace.steps[i].span;
    json linked = json::array();
    for (size_t m : trace.steps[i].mutations) {
      json mutation = mutations[m];
      mutation["linked_by"] = mutationLinkName(trace.owners[m].link);
      linked.push_back(std::move(mutation));
    }
    steps.push_back(json{{"step", i + 1},
                         {"of", trace.steps.size()},
                         {"span",
                          {{"id", span.id},
                           {"parent", span.parent},
                           {"name", span.name},
                           {"depth", span.depth},
                           {"status", span.status},
                           {"start_us", span.start_us},
                           {"duration_us", span.duration_us},
                           {"input", span.input},
                           {"output", span.output},
                           {"error", span.error.empty() ? json() : json(span.error)},
                           {"location", span.location},
                           {"logs", span.logs},
                           {"root_cause", span.root_cause}}},
                         {"mutations", std::move(linked)}});
  }
  return json{{"record", recordSummary(field(trace.answer, "record"))},
              {"steps", std::move(steps)}};
}

// ---- The interactive view ---------------------------------------------------------------------

DebugAction actionFor(const tui::KeyPress& key) {
  using tui::KeyCode;
  switch (key.code) {
    case KeyCode::kRight:
    case KeyCode::kDown:
    case KeyCode::kPageDown:
    case KeyCode::kEnter:
      return DebugAction::kNext;
    case KeyCode::kLeft:
    case KeyCode::kUp:
    case KeyCode::kPageUp:
      return DebugAction::kPrev;
    case KeyCode::kHome:
      return DebugAction::kFirst;
    case KeyCode::kEnd:
      return DebugAction::kLast;
    case KeyCode::kCtrlC:
    case KeyCode::kCtrlD:
      return DebugAction::kQuit;
    case KeyCode::kChar:
      switch (key.ch) {
        case 'n':
        case 'j':
        case 'l':
        case ' ':
          return DebugAction::kNext;
        case 'p':
        case 'k':
        case 'h':
          return DebugAction::kPrev;
        case 'g':
          return DebugAction::kFirst;
        case 'G':
          return DebugAction::kLast;
        case 'e':
          return DebugAction::kToggleExpand;
        case 'q':
        case 'Q':
          return DebugAction::kQuit;
        default:
          return DebugAction::kNone;
      }
    case KeyCode::kUnknown:
      return DebugAction::kNone;
  }
  return DebugAction::kNone;
}

bool DebugCursor::apply(DebugAction action, size_t steps) {
  if (steps == 0 && action != DebugAction::kToggleExpand) return false;
  size_t last = steps == 0 ? 0 : steps - 1;
  size_t was = index;
  switch (action) {
    case DebugAction::kNext:
      index = std::min(index + 1, last);
      return index != was;
    case DebugAction::kPrev:
      index = index == 0 ? 0 : index - 1;
      return index != was;
    case DebugAction::kFirst:
      index = 0;
      return index != was;
    case DebugAction::kLast:
      index = last;
      return index != was;
    case DebugAction::kToggleExpand:
      view = view == StepView::kCompact ? StepView::kExpanded : StepView::kCompact;
      return true;
    case DebugAction::kQuit:
    case DebugAction::kNone:
      return false;
  }
  return false;
}

std::string renderDebugScreen(const DebugTrace& trace, const DebugCursor& cursor, Color color,
                              tui::TerminalSize size) {
  Painter paint(color);
  size_t width = static_cast<size_t>(std::max(size.columns, 20));
  std::string header = renderRecordHeader(field(trace.answer, "record"), color);
  std::string body = trace.steps.empty()
                         ? "  no spans recorded\n"
                         : renderDebugStep(trace, std::min(cursor.index, trace.steps.size() - 1),
                                           cursor.view, color, width);
  std::string foot = legend(cursor.view, paint);
  // header, blank, body..., blank, legend: the body gets what is left of the screen.
  size_t rows = static_cast<size_t>(std::max(size.rows, 6));
  size_t room = rows - 4;
  std::vector<std::string> lines;
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) lines.push_back(std::move(line));
  if (lines.size() > room) {
    size_t cut = lines.size() - (room - 1);
    lines.resize(room - 1);
    lines.push_back("  " + paint.dim(fmt::format("… {} more lines (a taller terminal shows "
                                                 "them; so does --expand into a pipe)",
                                                 cut)));
  }
  std::string out = header + "\n";
  for (const std::string& line : lines) out += line + "\n";
  return out + "\n" + foot;
}

int runDebugSession(const DebugTrace& trace, tui::RawTerminal& terminal, Color color,
                    StepView initial_view) {
  DebugCursor cursor;
  cursor.view = initial_view;
  auto draw = [&] {
    return terminal.draw(renderDebugScreen(trace, cursor, color, terminal.size()));
  };
  if (!draw()) return 0;
  tui::KeyDecoder decoder;
  for (;;) {
    bool escape_pending = decoder.waiting();
    pollfd fds[2] = {{terminal.inFd(), POLLIN, 0}, {terminal.signalFd(), POLLIN, 0}};
    int ready = poll(fds, 2, escape_pending ? kEscapeWaitMs : -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    std::vector<tui::KeyPress> keys;
    if (ready == 0) {
      keys = decoder.flush();
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo info{};
      if (read(terminal.signalFd(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        if (info.ssi_signo == SIGWINCH) {
          if (!draw()) return 0;
        } else {
          return 128 + static_cast<int>(info.ssi_signo);
        }
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buffer[256];
      ssize_t got = read(terminal.inFd(), buffer, sizeof buffer);
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got <= 0) return 0;  // the terminal is gone
      keys = decoder.feed(std::string_view(buffer, static_cast<size_t>(got)));
    }
    bool redraw = false;
    for (const tui::KeyPress& key : keys) {
      DebugAction action = actionFor(key);
      if (action == DebugAction::kQuit) return 0;
      redraw = cursor.apply(action, trace.steps.size()) || redraw;
    }
    if (redraw && !draw()) return 0;
  }
}

}  // namespace flux::cli

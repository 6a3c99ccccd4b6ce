// `flux trace debug <id>`: a request's spans, one step at a time.
//
//   req:550e8400  POST /checkout  500  44ms  ·  create_order  ·  2026-03-10 09:14:22 UTC
//
//   Span 3/5  stripe.charge  ·  in create_order
//   ─────────────────────────────────────────────
//   Time:    180ms  (at +6ms)
//   Status:  error  ← timeout here
//   Input:   {"amount":4900}
//   Error:   Stripe API timeout after 10s
//   Where:   payments/create.ts:42
//
//   [n]ext →   [p]rev ←   [e]xpand   [q]uit
//
// The steps are the spans in `flux trace` order. On a terminal the view is interactive (n, →,
// ↓, space: next; p, ←, ↑: previous; g / G or Home / End: first / last; e: expand or collapse
// the full input, output, error, logs and DB changes; q, Ctrl-C, Ctrl-D: quit); otherwise every
// step is printed, one after the other, as a plain listing.
//
// A step's DB changes are the mutations its span wrote. The record API does not link a
// mutation to a span yet, so linkMutations() decides, in this order:
//   1. a mutation with a `span` field (a span id) belongs to that span;
//   2. else the db write spans (`db.insert(T)`, `db.update(T)`, `db.delete(T)`, and `db.*`
//      spans whose input.sql is an INSERT, UPDATE, DELETE or MERGE), in start order, each take
//      the next unclaimed mutations of their table and operation in log order: as many as
//      their output.rowCount (an INSERT may take UPDATEs: an upsert), or, with a rowCount of 0,
//      the next 0-row change of that table; without a rowCount, every such mutation up to one
//      of another table. A failed or skipped statement takes none;
//   3. what is left (writes by triggers or cascades, statements Flux cannot read) belongs to the
//      request, and is shown on the function's span (the first span when there is none).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/records_render.h"
#include "cli/state_render.h"
#include "cli/tui/terminal.h"

namespace flux::cli {

enum class MutationLink {
  kSpan,       // rule 1
  kStatement,  // rule 2
  kRequest,    // rule 3
};

const char* mutationLinkName(MutationLink link);  // "span", "statement", "request"

// For each mutation (an element of `mutations`), the index in `spans` of the span that wrote
// it and how that was decided; nullopt index for the request's (rule 3).
struct MutationOwner {
  std::optional<size_t> span;
  MutationLink link = MutationLink::kRequest;
};
std::vector<MutationOwner> linkMutations(const std::vector<TraceSpan>& spans,
                                         const nlohmann::json& mutations);

struct DebugStep {
  TraceSpan span;
  std::string parent_name;  // empty for a root
  bool db_write = false;    // a statement that writes (rule 2's spans)
  // Indices into the answer's mutations, in log order: the span's own, then (on the
  // function's span) the request's.
  std::vector<size_t> mutations;
};

struct DebugTrace {
  nlohmann::json answer;  // GET /_flux/records/<id>
  std::vector<DebugStep> steps;
  std::vector<MutationOwner> owners;  // per mutation of the answer
};

DebugTrace debugTrace(nlohmann::json answer);

enum class StepView { kCompact, kExpanded };

// One step (index from 0), without the record's header: "  Span 3/5  ..." down to its last
// line; lines end with '\n'. Compact values are cut to fit `width` columns.
std::string renderDebugStep(const DebugTrace& trace, size_t index, StepView view, Color color,
                            size_t width);

// The plain listing: the record's header, then every step, a blank line between them.
std::string renderDebugListing(const DebugTrace& trace, StepView view, Color color);

// --json: {"record": {id, kind, function, method, path, status, duration_us, started_at_us,
// error}, "steps": [{step, of, span: {id, parent, name, depth, status, start_us, duration_us,
// input, output, error, location, logs, root_cause}, mutations: [mutation + "linked_by"]}]}.
nlohmann::json debugJson(const DebugTrace& trace);

// ---- The interactive view ------------------------------------------------------------------

enum class DebugAction { kNone, kNext, kPrev, kFirst, kLast, kToggleExpand, kQuit };

DebugAction actionFor(const tui::KeyPress& key);

// Where the view is. apply() returns true when the screen must be drawn again.
struct DebugCursor {
  size_t index = 0;
  StepView view = StepView::kCompact;

  bool apply(DebugAction action, size_t steps);
};

// The whole screen for the cursor: header, step, key legend; at most size.rows lines (a step
// taller than that is cut, saying how many lines are left out).
std::string renderDebugScreen(const DebugTrace& trace, const DebugCursor& cursor, Color color,
                              tui::TerminalSize size);

// Runs the view on `terminal` until a quit key (exit code 0), the end of the input (0), or a
// termination signal (128 + its number). The caller restores the terminal (RawTerminal does
// when destroyed).
int runDebugSession(const DebugTrace& trace, tui::RawTerminal& terminal, Color color,
                    StepView initial_view);

}  // namespace flux::cli

#include "cli/init_command.h"

#include <fstream>

namespace flux::cli {

namespace {

constexpr const char* kHelloTs = R"(// A Flux function: a Web-standard Request in, a Response (or any JSON value) out.
// Served at GET /hello (see flux.json). Try: curl 'http://127.0.0.1:4000/hello?name=Flux'
export default async function handler(req: Request, ctx: { requestId: string }) {
  const name = new URL(req.url).searchParams.get("name") ?? "world";
  return { message: `Hello, ${name}!`, requestId: ctx.requestId };
}
)";

constexpr const char* kHelloJson = R"({
  "route": "/hello",
  "method": "GET"
}
)";

constexpr const char* kGitignore = ".flux/\nnode_modules/\n";

constexpr const char* kMigration = R"(-- Migrations run in name order, once each, when `flux dev` starts.
-- Add tables here, e.g.:
-- create table users (id bigserial primary key, email text not null unique, name text);
)";

constexpr const char* kReadme = R"(# A Flux project

- `functions/<name>/index.ts`: one function per folder; `flux.json` beside it sets its route,
  method and timeout.
- `migrations/*.sql`: applied in order, once each, when `flux dev` starts.
- `.flux/`: Flux's local state (the dev PostgreSQL cluster, build output); not committed.

Run it with `flux dev` and try `curl 'http://127.0.0.1:4000/hello?name=Flux'`.
)";

Result<void> writeFile(const std::filesystem::path& path, const char* text) {
  std::ofstream out(path);
  if (!(out << text)) {
    return fail(ErrorCode::kUnavailable, "cannot write " + path.string());
  }
  return {};
}

}  // namespace

Result<void> initProject(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(dir / "functions", ec)) {
    return fail(ErrorCode::kAlreadyExists,
                dir.string() + " already has a functions/ folder: it is a Flux project already");
  }
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec)) {
    return fail(ErrorCode::kAlreadyExists,
                dir.string() + " is not empty: choose a new directory for the project");
  }
  fs::create_directories(dir / "functions" / "hello", ec);
  if (!ec) fs::create_directories(dir / "migrations", ec);
  if (ec) return fail(ErrorCode::kUnavailable, "cannot create " + dir.string() + ": " + ec.message());
  for (auto [name, text] : {std::pair{"functions/hello/index.ts", kHelloTs},
                            std::pair{"functions/hello/flux.json", kHelloJson},
                            std::pair{".gitignore", kGitignore},
                            std::pair{"migrations/001_init.sql", kMigration},
                            std::pair{"README.md", kReadme}}) {
    if (auto r = writeFile(dir / name, text); !r) return r;
  }
  return {};
}

}  // namespace flux::cli

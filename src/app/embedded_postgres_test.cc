#include "app/embedded_postgres.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "app/migrations.h"

namespace flux::app {
namespace {

namespace fs = std::filesystem;

// A fresh directory under /tmp, mode 0755 so the `postgres` user can traverse it when the tests
// run as root. Removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/flux-pg-test-XXXXXX";
    char* made = mkdtemp(pattern);
    if (made == nullptr) std::abort();  // no temp dir: nothing below can work
    path_ = made;
    chmod(path_.c_str(), 0755);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

struct ConnCloser {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};

// Runs sql and returns the first column of the first row, or nullopt (with a test failure).
std::optional<std::string> queryValue(const std::string& conninfo, const std::string& sql) {
  std::unique_ptr<PGconn, ConnCloser> conn(PQconnectdb(conninfo.c_str()));
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    ADD_FAILURE() << "connect: " << PQerrorMessage(conn.get());
    return std::nullopt;
  }
  PGresult* result = PQexec(conn.get(), sql.c_str());
  std::optional<std::string> value;
  if (PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) > 0) {
    value = PQgetvalue(result, 0, 0);
  } else {
    ADD_FAILURE() << sql << ": " << PQresultErrorMessage(result);
  }
  PQclear(result);
  return value;
}

// Runs sql that returns no rows (CREATE DATABASE cannot share a query string with others).
void execSql(const std::string& conninfo, const std::string& sql) {
  std::unique_ptr<PGconn, ConnCloser> conn(PQconnectdb(conninfo.c_str()));
  PGresult* result = PQexec(conn.get(), sql.c_str());
  EXPECT_EQ(PQresultStatus(result), PGRES_COMMAND_OK) << sql << ": " << PQerrorMessage(conn.get());
  PQclear(result);
}

void writeFile(const fs::path& path, const std::string& contents) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << contents;
}

// The postmaster's pid from <data>/postmaster.pid, or 0 when there is none.
pid_t postmasterPid(const fs::path& data_dir) {
  std::ifstream in(data_dir / "postmaster.pid");
  pid_t pid = 0;
  in >> pid;
  return in ? pid : 0;
}

// True while pid runs. A zombie has exited: the postmaster is reparented to init when pg_ctl
// exits, and some inits reap late.
bool processAlive(pid_t pid) {
  if (pid <= 0 || kill(pid, 0) != 0) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return false;  // gone meanwhile
  char state = stat[paren + 2];
  return state != 'Z' && state != 'X';
}

Result<std::unique_ptr<EmbeddedPostgres>> startIn(const TempDir& dir) {
  return EmbeddedPostgres::start(dir.path() / ".flux");
}

TEST(EmbeddedPostgres, StartsAndAcceptsConnections) {
  TempDir dir;
  auto pg = startIn(dir);
  ASSERT_TRUE(pg) << pg.error().toString();
  EXPECT_TRUE(fs::exists(dir.path() / ".flux" / "pg" / "PG_VERSION"));
  EXPECT_EQ(queryValue((*pg)->connectionString(), "SELECT 1"), "1");
  EXPECT_EQ(queryValue((*pg)->connectionString(), "SELECT current_user"), "postgres");
  EXPECT_TRUE((*pg)->stop());
}

TEST(EmbeddedPostgres, StopLeavesNoServerAndIsIdempotent) {
  TempDir dir;
  fs::path data_dir = dir.path() / ".flux" / "pg";
  auto pg = startIn(dir);
  ASSERT_TRUE(pg) << pg.error().toString();
  pid_t pid = postmasterPid(data_dir);
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(processAlive(pid));

  auto stopped = (*pg)->stop();
  ASSERT_TRUE(stopped) << stopped.error().toString();
  EXPECT_FALSE(fs::exists(data_dir / "postmaster.pid"));
  EXPECT_FALSE(processAlive(pid));
  EXPECT_TRUE((*pg)->stop());
}

TEST(EmbeddedPostgres, DestructorStopsServer) {
  TempDir dir;
  fs::path data_dir = dir.path() / ".flux" / "pg";
  pid_t pid = 0;
  {
    auto pg = startIn(dir);
    ASSERT_TRUE(pg) << pg.error().toString();
    pid = postmasterPid(data_dir);
    ASSERT_TRUE(processAlive(pid));
  }
  EXPECT_FALSE(processAlive(pid));
  EXPECT_FALSE(fs::exists(data_dir / "postmaster.pid"));
}

TEST(EmbeddedPostgres, RestartReusesClusterAndKeepsData) {
  TempDir dir;
  {
    auto pg = startIn(dir);
    ASSERT_TRUE(pg) << pg.error().toString();
    EXPECT_EQ(queryValue((*pg)->connectionString(),
                         "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here');"
                         "SELECT count(*) FROM kept"),
              "1");
    ASSERT_TRUE((*pg)->stop());
  }
  auto pg = startIn(dir);
  ASSERT_TRUE(pg) << pg.error().toString();
  EXPECT_EQ(queryValue((*pg)->connectionString(), "SELECT v FROM kept"), "still here");
}

// A flux that crashed leaves its server running: the next start uses it instead of failing.
TEST(EmbeddedPostgres, ReusesServerAlreadyRunning) {
  TempDir dir;
  fs::path data_dir = dir.path() / ".flux" / "pg";
  auto first = startIn(dir);
  ASSERT_TRUE(first) << first.error().toString();
  pid_t pid = postmasterPid(data_dir);

  auto second = startIn(dir);
  ASSERT_TRUE(second) << second.error().toString();
  EXPECT_EQ(postmasterPid(data_dir), pid);
  EXPECT_EQ(queryValue((*second)->connectionString(), "SELECT 1"), "1");

  ASSERT_TRUE((*second)->stop());
  EXPECT_FALSE(processAlive(pid));
  auto again = (*first)->stop();  // already stopped by the other: still fine
  EXPECT_TRUE(again) << again.error().toString();
}

// sun_path holds 107 bytes: a deep project puts its socket in a directory under /tmp instead.
TEST(EmbeddedPostgres, LongPathUsesSocketDirUnderTmp) {
  TempDir dir;
  fs::path flux_dir = dir.path() / std::string(100, 'd') / ".flux";
  auto pg = EmbeddedPostgres::start(flux_dir);
  ASSERT_TRUE(pg) << pg.error().toString();
  const std::string& conninfo = (*pg)->connectionString();
  EXPECT_TRUE(conninfo.starts_with("host=/tmp/flux-pg-")) << conninfo;
  EXPECT_EQ(queryValue(conninfo, "SELECT 1"), "1");
  ASSERT_TRUE((*pg)->stop());
  std::string host = conninfo.substr(5, conninfo.find(' ') - 5);
  std::error_code ec;
  fs::remove_all(host, ec);
}

TEST(EmbeddedPostgres, RootExplainsUnreachableDataDir) {
  if (geteuid() != 0) GTEST_SKIP() << "only root runs the server as another user";
  TempDir dir;
  fs::path closed = dir.path() / "closed";
  fs::create_directory(closed);
  chmod(closed.c_str(), 0700);
  auto pg = EmbeddedPostgres::start(closed / ".flux");
  ASSERT_FALSE(pg);
  EXPECT_EQ(pg.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(pg.error().message.find("postgres"), std::string::npos) << pg.error().message;
  EXPECT_NE(pg.error().message.find(closed.string()), std::string::npos) << pg.error().message;
  EXPECT_NE(pg.error().message.find("DATABASE_URL"), std::string::npos) << pg.error().message;
}

// One cluster for the migration tests; each test gets its own database.
class MigrationsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::make_unique<TempDir>();
    auto pg = startIn(*dir_);
    if (pg) {
      pg_ = std::move(*pg);
    } else {
      start_error_ = pg.error().toString();
    }
  }
  static void TearDownTestSuite() {
    pg_.reset();  // stops the server before its directory goes
    dir_.reset();
  }

  void SetUp() override {
    ASSERT_NE(pg_, nullptr) << start_error_;
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    execSql(pg_->connectionString(), "CREATE DATABASE " + name);
    conninfo_ = pg_->connectionString() + " dbname=" + name;
    migrations_ = dir_->path() / name / "migrations";
  }

  static inline std::unique_ptr<TempDir> dir_;
  static inline std::unique_ptr<EmbeddedPostgres> pg_;
  static inline std::string start_error_;
  std::string conninfo_;
  fs::path migrations_;
};

TEST_F(MigrationsTest, AppliesInNameOrderOnce) {
  // 002 depends on 001: applying them out of order fails.
  writeFile(migrations_ / "002_insert.sql", "INSERT INTO items (v) VALUES ('a'), ('b');");
  writeFile(migrations_ / "001_create.sql",
            "CREATE TABLE items (id serial PRIMARY KEY, v text);\n"
            "CREATE INDEX items_v ON items (v);\n");
  writeFile(migrations_ / "README.md", "not a migration");

  auto applied = applyMigrations(conninfo_, migrations_);
  ASSERT_TRUE(applied) << applied.error().toString();
  EXPECT_EQ(*applied, (std::vector<std::string>{"001_create.sql", "002_insert.sql"}));
  EXPECT_EQ(queryValue(conninfo_, "SELECT count(*) FROM items"), "2");
  EXPECT_EQ(
      queryValue(conninfo_, "SELECT string_agg(name, ',' ORDER BY name) FROM flux.migrations"),
      "001_create.sql,002_insert.sql");

  auto again = applyMigrations(conninfo_, migrations_);
  ASSERT_TRUE(again) << again.error().toString();
  EXPECT_TRUE(again->empty());
  EXPECT_EQ(queryValue(conninfo_, "SELECT count(*) FROM items"), "2");

  writeFile(migrations_ / "003_more.sql", "INSERT INTO items (v) VALUES ('c');");
  auto third = applyMigrations(conninfo_, migrations_);
  ASSERT_TRUE(third) << third.error().toString();
  EXPECT_EQ(*third, std::vector<std::string>{"003_more.sql"});
  EXPECT_EQ(queryValue(conninfo_, "SELECT count(*) FROM items"), "3");
}

TEST_F(MigrationsTest, FailureNamesFileRollsItBackAndKeepsEarlierOnes) {
  writeFile(migrations_ / "001_ok.sql", "CREATE TABLE first (x int);");
  writeFile(migrations_ / "002_bad.sql", "CREATE TABLE second (x int);\nSELEC broken;\n");
  writeFile(migrations_ / "003_never.sql", "CREATE TABLE third (x int);");

  auto applied = applyMigrations(conninfo_, migrations_);
  ASSERT_FALSE(applied);
  EXPECT_EQ(applied.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(applied.error().message.find("002_bad.sql"), std::string::npos)
      << applied.error().message;
  EXPECT_NE(applied.error().message.find("syntax error"), std::string::npos)
      << applied.error().message;
  EXPECT_EQ(queryValue(conninfo_, "SELECT string_agg(name, ',') FROM flux.migrations"),
            "001_ok.sql");
  EXPECT_EQ(queryValue(conninfo_, "SELECT to_regclass('first') IS NOT NULL"), "t");
  EXPECT_EQ(queryValue(conninfo_, "SELECT to_regclass('second') IS NULL"), "t");
  EXPECT_EQ(queryValue(conninfo_, "SELECT to_regclass('third') IS NULL"), "t");

  // Fixing the file lets the rest go through.
  writeFile(migrations_ / "002_bad.sql", "CREATE TABLE second (x int);");
  auto fixed = applyMigrations(conninfo_, migrations_);
  ASSERT_TRUE(fixed) << fixed.error().toString();
  EXPECT_EQ(*fixed, (std::vector<std::string>{"002_bad.sql", "003_never.sql"}));
}

TEST_F(MigrationsTest, CopyFromStdinFailsWithoutHangingTheConnection) {
  writeFile(migrations_ / "001_copy.sql", "CREATE TABLE c (x int);\nCOPY c FROM STDIN;\n");
  auto applied = applyMigrations(conninfo_, migrations_);
  ASSERT_FALSE(applied);
  EXPECT_NE(applied.error().message.find("001_copy.sql"), std::string::npos)
      << applied.error().message;
  EXPECT_EQ(queryValue(conninfo_, "SELECT count(*) FROM flux.migrations"), "0");
}

TEST_F(MigrationsTest, MissingDirectoryHasNoMigrations) {
  auto applied = applyMigrations(conninfo_, migrations_ / "does-not-exist");
  ASSERT_TRUE(applied) << applied.error().toString();
  EXPECT_TRUE(applied->empty());
  EXPECT_EQ(queryValue(conninfo_, "SELECT count(*) FROM flux.migrations"), "0");
}

TEST(Migrations, UnreachableServerIsUnavailableWithoutPassword) {
  TempDir dir;
  auto applied = applyMigrations(
      "host=" + dir.path().string() + " port=5432 dbname=x user=flux password=hunter2secret",
      dir.path());
  ASSERT_FALSE(applied);
  EXPECT_EQ(applied.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(applied.error().toString().find("hunter2secret"), std::string::npos)
      << applied.error().toString();

  // libpq quotes a badly percent-encoded token back, here the password itself.
  auto bad_uri = applyMigrations("postgresql://flux:hunter2%zz@/db", dir.path());
  ASSERT_FALSE(bad_uri);
  EXPECT_EQ(bad_uri.error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(bad_uri.error().toString().find("hunter2"), std::string::npos)
      << bad_uri.error().toString();
}

}  // namespace
}  // namespace flux::app

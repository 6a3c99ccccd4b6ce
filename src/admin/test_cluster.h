// For the admin tests that need a real PostgreSQL (record_api_test.cc, record_stream_test.cc):
// one embedded cluster per test binary with the execution records and the mutation log
// installed, and plain libpq helpers to fill it and look into it.
#pragma once

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <string>

#include "app/embedded_postgres.h"
#include "data/mutation_log.h"
#include "record/schema.h"

namespace flux::admin::testing {

// A new directory under /tmp, traversable by the `postgres` user (the server runs as that user
// when the tests run as root).
inline std::filesystem::path makeTempDir(const char* prefix) {
  std::string pattern = std::string("/tmp/") + prefix + "-XXXXXX";
  char* made = mkdtemp(pattern.data());
  if (made == nullptr) std::abort();  // no temp dir: nothing below can work
  chmod(made, 0755);
  return made;
}

// Runs SQL (a script is fine) and returns the first column of the first row ("" when none).
inline std::string queryValue(const std::string& conninfo, const std::string& sql) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  EXPECT_EQ(PQstatus(conn), CONNECTION_OK) << PQerrorMessage(conn);
  PGresult* result = PQexec(conn, sql.c_str());
  EXPECT_TRUE(PQresultStatus(result) == PGRES_COMMAND_OK ||
              PQresultStatus(result) == PGRES_TUPLES_OK)
      << sql << ": " << PQresultErrorMessage(result);
  std::string value;
  if (PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) > 0) {
    value = PQgetvalue(result, 0, 0);
  }
  PQclear(result);
  PQfinish(conn);
  return value;
}

inline void exec(const std::string& conninfo, const std::string& sql) { queryValue(conninfo, sql); }

// The cluster, once per binary: ::testing::AddGlobalTestEnvironment(new TestCluster("name")),
// or a subclass that adds its fixture's rows in SetUp after TestCluster::SetUp().
class TestCluster : public ::testing::Environment {
 public:
  explicit TestCluster(const char* name) : name_(name) {}
  void SetUp() override {
    dir_ = makeTempDir(name_);
    auto pg = app::EmbeddedPostgres::start(dir_ / ".flux");
    ASSERT_TRUE(pg) << "cannot start PostgreSQL for the tests: " << pg.error().toString();
    pg_ = std::move(*pg);
    conninfo_ = pg_->connectionString();
    auto schema = record::installRecordSchema(conninfo_);
    ASSERT_TRUE(schema) << schema.error().toString();
    auto log = data::installMutationLog(conninfo_, data::CaptureChoice::kPlpgsqlOnly);
    ASSERT_TRUE(log) << log.error().toString();
  }
  void TearDown() override {
    pg_.reset();  // stops the server before its directory goes
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  static const std::string& conninfo() { return conninfo_; }
  static const std::filesystem::path& dir() { return dir_; }

 private:
  const char* name_;
  static inline std::filesystem::path dir_;
  static inline std::unique_ptr<app::EmbeddedPostgres> pg_;
  static inline std::string conninfo_;
};

}  // namespace flux::admin::testing

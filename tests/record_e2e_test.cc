// End-to-end tests of the recorder through the real `flux` binary: no record is lost while its
// PostgreSQL restarts under load (requests answered = records stored, id for id), and secrets
// never reach a stored record. Stored records are read with psql (support/postgres_tools.h).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/flux_process.h"
#include "support/http_client.h"
#include "support/postgres_tools.h"

namespace flux::tests {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// The ids of the records stored for `path`, one per line of psql's output.
std::set<std::string> storedIds(const FluxDev& dev, const std::string& path) {
  auto out = psql(dev, "select id from flux.executions where path = '" + path + "'");
  if (!out) {
    ADD_FAILURE() << out.error();
    return {};
  }
  std::set<std::string> ids;
  std::stringstream lines(*out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) ids.insert(line);
  }
  return ids;
}

TEST(RecordE2eTest, NothingIsLostWhilePostgresRestartsUnderLoad) {
  FluxDev dev;
  dev.project().writeFile("functions/hi/flux.json", R"({"method": "GET"})");
  dev.project().writeFile("functions/hi/index.ts", "export default () => \"hi\";\n");
  auto started = dev.start();
  ASSERT_TRUE(started) << started.error();

  // Four clients on keep-alive connections, each request's id kept.
  std::atomic<bool> stop{false};
  std::mutex mutex;
  std::set<std::string> answered;
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&] {
      auto conn = HttpConnection::open(dev.port(), milliseconds(10000));
      if (!conn) {
        ++failures;
        return;
      }
      while (!stop.load()) {
        auto r = conn->request("GET", "/hi");
        if (!r || r->status != 200) {
          ++failures;
          return;
        }
        std::lock_guard<std::mutex> lock(mutex);
        answered.insert(r->header("x-request-id"));
      }
    });
  }

  ClusterControl cluster(dev);
  std::this_thread::sleep_for(milliseconds(700));
  auto stopped = cluster.stop();
  ASSERT_TRUE(stopped) << stopped.error();
  std::this_thread::sleep_for(milliseconds(1500));  // serving on, records spill to disk
  auto restarted = cluster.start();
  ASSERT_TRUE(restarted) << restarted.error();
  std::this_thread::sleep_for(milliseconds(700));
  stop = true;
  for (std::thread& t : clients) t.join();
  ASSERT_EQ(failures.load(), 0);
  ASSERT_GT(answered.size(), 100u) << "too little load to say anything";

  // Every answered request's record arrives (replayed from the spill file), and no other.
  // Recording yields to serving (background priority), so on a busy machine the backlog drains
  // slowly: wait while it makes progress (no new record for 30 s ends it; 5 minutes at most).
  auto give_up = steady_clock::now() + std::chrono::minutes(5);
  auto stalled = steady_clock::now() + std::chrono::seconds(30);
  std::set<std::string> stored;
  while (steady_clock::now() < give_up && steady_clock::now() < stalled) {
    size_t before = stored.size();
    stored = storedIds(dev, "/hi");
    if (stored.size() >= answered.size()) break;
    if (stored.size() > before) stalled = steady_clock::now() + std::chrono::seconds(30);
    std::this_thread::sleep_for(milliseconds(250));
  }
  EXPECT_EQ(stored.size(), answered.size());
  std::vector<std::string> missing;
  for (const std::string& id : answered) {
    if (!stored.contains(id)) missing.push_back(id);
  }
  EXPECT_TRUE(missing.empty()) << missing.size() << " answered requests have no record, e.g. "
                               << missing.front();
  EXPECT_EQ(dev.stop(), std::optional<int>(0)) << dev.output();
}

TEST(RecordE2eTest, SecretsNeverReachAStoredRecord) {
  FluxDev dev;
  dev.project().writeFile("functions/login/index.ts", R"ts(
export default async function handler(req: Request, ctx: any) {
  const body = await req.json();
  return new Response(JSON.stringify({ ok: true, user: body.user, token: "SECRET-resp-token" }), {
    headers: { "content-type": "application/json", "set-cookie": "sid=SECRET-set-cookie" },
  });
}
)ts");
  auto started = dev.start();
  ASSERT_TRUE(started) << started.error();

  json body = {{"user", "ada"},
               {"password", "SECRET-password"},
               {"card", {{"number", "4242 SECRET-card"}, {"cvv", "SECRET-cvv"}}},
               {"card_number", "4242 SECRET-card-number"},
               {"api_secret", "SECRET-api"}};
  auto response = httpRequest(dev.port(), "POST", "/login?token=SECRET-query",
                              {{"content-type", "application/json"},
                               {"authorization", "Bearer SECRET-bearer"},
                               {"cookie", "session=SECRET-cookie"}},
                              body.dump());
  ASSERT_TRUE(response) << response.error();
  ASSERT_EQ(response->status, 200) << response->body;
  std::string id = response->header("x-request-id");

  std::string row;
  auto deadline = steady_clock::now() + std::chrono::seconds(30);
  while (row.empty() && steady_clock::now() < deadline) {
    auto out = psql(dev, "select row_to_json(e) from flux.executions e where id = '" + id + "'");
    ASSERT_TRUE(out) << out.error();
    row = *out;
    if (row.empty()) std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_FALSE(row.empty()) << "no record for " << id;
  EXPECT_EQ(row.find("SECRET"), std::string::npos) << row;
  EXPECT_NE(row.find("[redacted]"), std::string::npos) << row;
  EXPECT_NE(row.find("ada"), std::string::npos) << "the rest of the input is kept: " << row;

  EXPECT_EQ(dev.stop(), std::optional<int>(0));
  EXPECT_EQ(dev.output().find("SECRET"), std::string::npos) << dev.output();
}

}  // namespace
}  // namespace flux::tests

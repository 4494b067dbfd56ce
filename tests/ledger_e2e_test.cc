// The ledger's rules end to end through the `wlctl` binary, against `wattledger dev` (local bus)
// and against `wattledger ledger` as its own process on Kafka (mock cluster in its own process,
// billing usage from another process through Kafka). Money in JSON is a decimal yuan string.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/service_process.h"
#include "tests/subprocess.h"
#include "wattledger/testing/temp_dir.h"

namespace wattledger {
namespace {

using nlohmann::json;
using testing::BinPath;
using testing::Subprocess;

struct CliResult {
  int code = -1;
  std::string out;
  std::string err;
  json j;
};

class LedgerE2ETest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "kafka") {
      Subprocess::Options o;
      o.argv = {BinPath("wattledger"), "mock-kafka", "--topic", "ledger:4", "--topic", "billing:4"};
      o.pipe_stdin = true;
      o.stderr_path = dir_.Sub("kafka.log");
      ASSERT_TRUE(kafka_.Start(o).empty());
      ASSERT_EQ(kafka_.ReadLine(&brokers_, testing::Clock::now() + std::chrono::seconds(30)), Subprocess::Read::kLine);
      endpoint_ = testing::StartServer(
          server_, {BinPath("wattledger"), "ledger", "--kafka-brokers", brokers_, "--data-dir", dir_.Sub("data"),
                    "--partitions", "4", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
          dir_.Sub("server.log"));
    } else {
      endpoint_ = testing::StartServer(
          server_, {BinPath("wattledger"), "dev", "--no-sim", "--data-dir", dir_.Sub("data"), "--partitions", "4",
                    "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
          dir_.Sub("server.log"));
    }
    ASSERT_FALSE(endpoint_.empty());
  }

  void TearDown() override {
    server_.Signal(SIGTERM);
    auto st = server_.Wait(testing::Clock::now() + std::chrono::seconds(30));
    EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "unclean stop:\n" << server_.StderrTail();
    if (kafka_.running()) kafka_.CloseStdin();
  }

  CliResult Wl(std::vector<std::string> args) {
    std::vector<std::string> argv = {BinPath("wlctl"), "--endpoint", endpoint_, "--operator", "e2e", "-o", "json"};
    argv.insert(argv.end(), args.begin(), args.end());
    return Run(argv);
  }

  CliResult Run(std::vector<std::string> argv) {
    Subprocess p;
    std::string err_path = dir_.Sub("cli.err");
    std::filesystem::remove(err_path);
    EXPECT_TRUE(p.Start({argv, false, err_path}).empty());
    CliResult r;
    for (auto& l : p.DrainLines(testing::Clock::now() + std::chrono::seconds(60))) r.out += l + "\n";
    auto st = p.Wait(testing::Clock::now() + std::chrono::seconds(60));
    r.code = st && WIFEXITED(*st) ? WEXITSTATUS(*st) : -1;
    r.err = p.StderrTail();
    if (r.code == 0 && !r.out.empty()) r.j = json::parse(r.out, nullptr, false);
    return r;
  }

  json Show(const std::string& account) {
    auto r = Wl({"account", "show", account});
    EXPECT_EQ(r.code, 0) << r.err;
    return r.j;
  }

  void Feed(std::vector<std::string> charges) {
    std::vector<std::string> argv = {WL_BILLING_FEEDER, "--brokers", brokers_, "--dir", dir_.Sub("billing")};
    argv.insert(argv.end(), charges.begin(), charges.end());
    auto r = Run(argv);
    ASSERT_EQ(r.code, 0) << r.err;
  }

  testing::TempDir dir_;
  Subprocess kafka_, server_;
  std::string brokers_, endpoint_;
};

TEST_P(LedgerE2ETest, EveryRuleThroughWlctl) {
  auto open = Wl({"account", "open", "--id", "A1", "--name", "张三", "--phone", "13800000000", "--meter", "M1",
                  "--credit-limit", "10", "--alarm1", "20", "--alarm2", "10", "--hoarding-cap", "5000"});
  ASSERT_EQ(open.code, 0) << open.err;
  json a = Show("A1");
  EXPECT_EQ(a["balance"], "0.0000");
  EXPECT_EQ(a["purchase_count"], 0);
  EXPECT_EQ(a["customer_name"], "张三");

  // Top-up, idempotent retry, key reuse, purchase count, hoarding cap.
  auto t1 = Wl({"topup", "A1", "100", "--key", "K1", "--method", "cash", "--purchase-count", "1"});
  ASSERT_EQ(t1.code, 0) << t1.err;
  const std::string topup_txn = t1.j["txn_id"];
  EXPECT_EQ(t1.j["account"]["balance"], "100.0000");
  EXPECT_EQ(t1.j["account"]["level"], "normal");
  auto again = Wl({"topup", "A1", "100", "--key", "K1", "--method", "cash"});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(again.j["duplicate"], true);
  EXPECT_EQ(again.j["txn_id"], topup_txn);
  auto reuse = Wl({"topup", "A1", "200", "--key", "K1", "--method", "cash"});
  EXPECT_EQ(reuse.code, 1);
  EXPECT_NE(reuse.err.find("ALREADY_EXISTS"), std::string::npos) << reuse.err;
  auto ce05 = Wl({"topup", "A1", "10", "--key", "K1b", "--method", "cash", "--purchase-count", "7"});
  EXPECT_EQ(ce05.code, 1);
  EXPECT_NE(ce05.err.find("FAILED_PRECONDITION"), std::string::npos) << ce05.err;
  auto hoard = Wl({"topup", "A1", "4950", "--key", "K1c", "--method", "wechat"});
  EXPECT_EQ(hoard.code, 1);
  EXPECT_NE(hoard.err.find("hoarding"), std::string::npos) << hoard.err;

  // Refund up to the balance, reversal once, adjustment with a reason.
  auto rf = Wl({"refund", "A1", "20", "--key", "K2"});
  ASSERT_EQ(rf.code, 0) << rf.err;
  EXPECT_EQ(rf.j["account"]["balance"], "80.0000");
  EXPECT_EQ(Wl({"refund", "A1", "81", "--key", "K2b"}).code, 1);
  auto rev = Wl({"reverse", rf.j["txn_id"], "--reason", "refunded by mistake"});
  ASSERT_EQ(rev.code, 0) << rev.err;
  EXPECT_EQ(rev.j["account"]["balance"], "100.0000");
  EXPECT_EQ(Wl({"reverse", rf.j["txn_id"], "--reason", "twice"}).code, 1);
  EXPECT_EQ(Wl({"reverse", rev.j["txn_id"], "--reason", "reverse a reversal"}).code, 1);
  auto adj = Wl({"adjust", "A1", "--amount", "-12.50", "--reason", "meter fault agreed with tenant", "--key", "K3"});
  ASSERT_EQ(adj.code, 0) << adj.err;
  EXPECT_EQ(adj.j["account"]["balance"], "87.5000");

  // Charges: on Kafka from billing's process; on dev nothing publishes billing without the sim.
  if (GetParam() == "kafka") {
    Feed({"C1:A1:700000:1000", "C1:A1:700000:1000", "C2:A1:250000:400"});
    json now;
    for (int i = 0; i < 300; ++i) {
      now = Show("A1");
      if (now["balance"] == "-7.5000") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(now["balance"], "-7.5000") << "C1 charged once, C2 once";
    EXPECT_EQ(now["level"], "arrears");
    Feed({"C3:A1:30000:50"});  // -10.5 < -10: cut-off.
    for (int i = 0; i < 300 && Show("A1")["level"] != "cutoff"; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(Show("A1")["supply_cut"], true);
    auto pay = Wl({"topup", "A1", "50", "--key", "K4", "--method", "alipay"});
    ASSERT_EQ(pay.code, 0) << pay.err;
    EXPECT_EQ(pay.j["account"]["supply_cut"], false);
    EXPECT_EQ(pay.j["account"]["balance"], "39.5000");
  }

  // Meters, limits, suspension, transfer, close.
  EXPECT_EQ(Wl({"account", "attach-meter", "A1", "M2"}).code, 0);
  ASSERT_EQ(Wl({"account", "open", "--id", "B1", "--name", "李四", "--phone", "139", "--meter", "M9"}).code, 0);
  EXPECT_EQ(Wl({"account", "attach-meter", "B1", "M2"}).code, 1) << "M2 belongs to A1";
  EXPECT_EQ(Wl({"account", "detach-meter", "A1", "M2"}).code, 0);
  auto lim = Wl({"account", "set-limits", "A1", "--credit-limit", "30"});
  ASSERT_EQ(lim.code, 0) << lim.err;
  EXPECT_EQ(lim.j["account"]["limits"]["credit_limit"], "30.0000");
  EXPECT_EQ(Wl({"account", "suspend", "A1", "--reason", "vacancy"}).code, 0);
  EXPECT_EQ(Show("A1")["state"], "suspended");
  EXPECT_EQ(Wl({"account", "resume", "A1"}).code, 0);
  EXPECT_EQ(Wl({"account", "transfer", "A1", "--name", "王五", "--phone", "13700000000"}).code, 0);
  EXPECT_EQ(Show("A1")["customer_name"], "王五");

  auto st = Wl({"statement", "A1"});
  ASSERT_EQ(st.code, 0) << st.err;
  ASSERT_TRUE(st.j.contains("entries"));
  EXPECT_GE(st.j["entries"].size(), 4u);
  auto txn = Wl({"txn", "show", topup_txn});
  ASSERT_EQ(txn.code, 0) << txn.err;
  EXPECT_EQ(txn.j["amount"], "100.0000");

  auto close = Wl({"account", "close", "B1", "--reason", "moved out"});
  ASSERT_EQ(close.code, 0) << close.err;
  EXPECT_EQ(Wl({"topup", "B1", "10", "--key", "K9", "--method", "cash"}).code, 1) << "closed without arrears";

  auto totals = Wl({"totals"});
  ASSERT_EQ(totals.code, 0) << totals.err;
  auto verify = Wl({"audit", "verify"});
  ASSERT_EQ(verify.code, 0) << verify.err;
  EXPECT_EQ(verify.j["ok"], true);

  // Kernel and ledger metrics on the process's /metrics; health and readiness.
  const std::string http = testing::ReadyHttpAddr(dir_.Sub("server.log"));
  ASSERT_FALSE(http.empty());
  const std::string metrics = testing::HttpGet(http, "/metrics");
  for (const char* want : {"wattledger_eventlog_events_appended_total{log=\"ledger\"}",
                           "wattledger_eventlog_commit_batch_events_bucket",
                           "wattledger_eventlog_commit_latency_seconds_bucket",
                           "wattledger_bus_consumer_lag_events{consumer=\"ledger\",topic=\"billing\"}",
                           "wattledger_ledger_commands_total{command=\"top_up\",outcome=\"accepted\"}"}) {
    EXPECT_NE(metrics.find(want), std::string::npos) << want << " missing from /metrics";
  }
  if (GetParam() == "kafka") {
    EXPECT_NE(metrics.find("wattledger_bus_relay_backlog_events{topic=\"ledger\"}"), std::string::npos);
  }
  EXPECT_NE(testing::HttpGet(http, "/healthz").find("200 OK"), std::string::npos);
  EXPECT_NE(testing::HttpGet(http, "/readyz").find("200 OK"), std::string::npos);

  auto replay = Run({BinPath("wattledger"), "ledger", "replay", "--verify", "--json", "--data-dir", dir_.Sub("data")});
  ASSERT_EQ(replay.code, 0) << replay.out << replay.err;
  EXPECT_EQ(replay.j["digests_equal"], true);
}

INSTANTIATE_TEST_SUITE_P(Modes, LedgerE2ETest, ::testing::Values("dev", "kafka"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace wattledger

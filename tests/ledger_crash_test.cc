// kill -9 of the ledger process under load. A real `wattledger ledger` serves gRPC; two client
// threads send top-ups and refunds with unique idempotency keys and remember which were
// acknowledged. The process is killed with SIGKILL at random moments and restarted on the same
// data, many times. Afterwards:
//   * every acknowledged key took effect exactly once: sent again, it is answered as a duplicate
//     with the same txn id (a lost one would be applied anew, a doubled one would show in sums);
//   * money is conserved: tenant balances equal the sum of the effects of the distinct keys that
//     took effect, and the sum of every balance, tenant and system, is zero;
//   * the hash chain verifies and `wattledger ledger replay --verify` reproduces the live state.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/service_process.h"
#include "tests/subprocess.h"
#include "wattledger/admin/v1/admin.grpc.pb.h"
#include "wattledger/ledger/v1/ledger.grpc.pb.h"
#include "wattledger/testing/temp_dir.h"

namespace wattledger {
namespace {

namespace v1 = ledger::v1;
using testing::Subprocess;
using Clock = std::chrono::steady_clock;

constexpr int kAccounts = 8;
constexpr int kKills = 8;
constexpr size_t kMinAckedPerRound = 20;  // Acknowledged before each kill's random moment.

std::string Bin() { return testing::BinPath("wattledger"); }

std::string Account(int i) { return "A" + std::to_string(i); }

struct Op {
  std::string account;
  int64_t delta = 0;  // + top-up, - refund.
  bool refund = false;
  std::string txn;
};

class LedgerCrashTest : public ::testing::Test {
 protected:
  // The account views are written only when an account opens or the process stops cleanly, so
  // every kill leaves views owed: the restart must work out which from the log.
  // The "partition state rebuilt" lines the ledger logged to `log`.
  std::vector<nlohmann::json> Rebuilds(const std::string& log) {
    std::vector<nlohmann::json> out;
    std::ifstream in(dir_.Sub(log));
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.value("msg", "") == "partition state rebuilt") out.push_back(std::move(j));
    }
    return out;
  }

  std::string StartLedger(const std::string& log = "ledger.log") {
    return testing::StartServer(proc_, {Bin(), "ledger", "--data-dir", dir_.path(), "--grpc-addr", "127.0.0.1:0",
                                        "--http-addr", "127.0.0.1:0", "--partitions", "4", "--fsync", "commit",
                                        "--view-postings-per-write", "1000000", "--view-max-age-ms", "86400000"},
                                dir_.Sub(log));
  }

  std::unique_ptr<v1::LedgerService::Stub> Stub(const std::string& addr) {
    return v1::LedgerService::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  }

  static grpc::Status Send(v1::LedgerService::Stub& stub, const std::string& key, const Op& op,
                           v1::MutationResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (op.refund) {
      v1::RefundRequest r;
      r.set_operator_id("crash-test");
      r.set_account_id(op.account);
      r.set_idempotency_key(key);
      r.set_amount_minor(-op.delta);
      r.set_method(v1::PAYMENT_METHOD_CASH);
      return stub.Refund(&ctx, r, resp);
    }
    v1::TopUpRequest r;
    r.set_operator_id("crash-test");
    r.set_account_id(op.account);
    r.set_idempotency_key(key);
    r.set_amount_minor(op.delta);
    r.set_method(v1::PAYMENT_METHOD_WECHAT);
    return stub.TopUp(&ctx, r, resp);
  }

  testing::TempDir dir_;
  Subprocess proc_;
  std::mutex mu_;
  std::map<std::string, Op> sent_;   // Every key ever sent, with what it asked for.
  std::map<std::string, Op> acked_;  // Keys answered OK (txn filled in).
};

TEST_F(LedgerCrashTest, AcknowledgedOperationsSurviveKill9ExactlyOnce) {
  std::string addr = StartLedger();
  ASSERT_FALSE(addr.empty());
  {
    auto stub = Stub(addr);
    for (int i = 0; i < kAccounts; ++i) {
      v1::OpenAccountRequest r;
      r.set_operator_id("crash-test");
      r.set_account_id(Account(i));
      r.set_customer_name("tenant " + std::to_string(i));
      r.add_meters("M" + std::to_string(i));
      r.set_mode(v1::MODE_PREPAID);
      grpc::ClientContext ctx;
      v1::MutationResponse resp;
      ASSERT_TRUE(stub->OpenAccount(&ctx, r, &resp).ok());
    }
  }

  std::mt19937_64 rng(20261121);
  std::atomic<int64_t> next_key{0};
  for (int round = 0; round < kKills; ++round) {
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int c = 0; c < 2; ++c) {
      clients.emplace_back([&, c, addr] {
        auto stub = Stub(addr);
        std::mt19937_64 local(round * 10 + c);
        while (!stop) {
          Op op;
          op.account = Account(static_cast<int>(local() % kAccounts));
          op.refund = local() % 5 == 0;
          op.delta = (op.refund ? -1 : 1) * static_cast<int64_t>(1 + local() % 100) * 100;
          std::string key = "K" + std::to_string(next_key++);
          {
            std::lock_guard lock(mu_);
            sent_[key] = op;
          }
          v1::MutationResponse resp;
          grpc::Status s = Send(*stub, key, op, &resp);
          if (s.ok()) {
            op.txn = resp.txn_id();
            std::lock_guard lock(mu_);
            acked_[key] = op;
          } else if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                     s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
          }
        }
      });
    }
    // Let load build up, then kill at a random moment. The load is counted, not timed: on a slow
    // machine (a disk syncing in 100 ms) a fixed wait acknowledged too little to mean anything.
    const size_t acked_before = [&] {
      std::lock_guard lock(mu_);
      return acked_.size();
    }();
    const auto give_up = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < give_up) {
      {
        std::lock_guard lock(mu_);
        if (acked_.size() >= acked_before + kMinAckedPerRound) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 600));
    if (round == kKills / 2) {
      // A clean stop under load, once: it writes the checkpoints, and the restarts after the
      // kills that follow load them and fold only the events after them.
      proc_.Signal(SIGTERM);
      auto code = proc_.Wait(Clock::now() + std::chrono::seconds(60));
      ASSERT_TRUE(code.has_value());
      ASSERT_TRUE(WIFEXITED(*code) && WEXITSTATUS(*code) == 0) << proc_.StderrTail();
    } else {
      proc_.Kill(Clock::now() + std::chrono::seconds(10));
    }
    stop = true;
    for (auto& t : clients) t.join();
    addr = StartLedger();
    ASSERT_FALSE(addr.empty());
  }

  // Every key again: acknowledged ones must be duplicates with the same txn; unacknowledged ones
  // either took effect before the kill (duplicate) or take effect now (exactly once either way).
  auto stub = Stub(addr);
  std::map<std::string, int64_t> expected;
  int acked_count = 0;
  for (const auto& [key, op] : sent_) {
    v1::MutationResponse resp;
    grpc::Status s = Send(*stub, key, op, &resp);
    auto it = acked_.find(key);
    if (it != acked_.end()) {
      acked_count++;
      ASSERT_TRUE(s.ok()) << key << ": " << s.error_message();
      ASSERT_TRUE(resp.duplicate()) << key << " was acknowledged but had not taken effect";
      ASSERT_EQ(resp.txn_id(), it->second.txn) << key;
    }
    // A refund refused for lack of balance is refused again: it never took effect.
    if (s.ok()) expected[op.account] += op.delta;
  }
  EXPECT_GT(acked_count, 100) << "too little load to mean anything";
  std::printf("%d kills, %zu operations sent, %d acknowledged\n", kKills, sent_.size(), acked_count);

  // Each account's balance is what the keys that took effect add up to; returns their sum.
  auto expect_balances = [&](v1::LedgerService::Stub& ledger) {
    int64_t sum = 0;
    for (int i = 0; i < kAccounts; ++i) {
      grpc::ClientContext ctx;
      v1::GetAccountRequest r;
      r.set_account_id(Account(i));
      v1::Account a;
      EXPECT_TRUE(ledger.GetAccount(&ctx, r, &a).ok()) << Account(i);
      EXPECT_EQ(a.balance_minor(), expected[Account(i)]) << Account(i);
      sum += a.balance_minor();
    }
    return sum;
  };
  const int64_t tenant_sum = expect_balances(*stub);
  grpc::ClientContext tctx;
  v1::LedgerTotalsResponse totals;
  ASSERT_TRUE(stub->GetTotals(&tctx, v1::LedgerTotalsRequest(), &totals).ok());
  EXPECT_EQ(totals.total_minor(), 0);
  EXPECT_EQ(totals.tenant_total_minor(), tenant_sum);

  auto admin = admin::v1::Admin::NewStub(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials()));
  grpc::ClientContext vctx;
  admin::v1::VerifyLogResponse verify;
  ASSERT_TRUE(admin->VerifyLog(&vctx, admin::v1::VerifyLogRequest(), &verify).ok());
  EXPECT_TRUE(verify.ok()) << verify.problem();

  // Replay next to the live process (read-only open), then stop it cleanly.
  Subprocess replay;
  ASSERT_TRUE(replay.Start({{Bin(), "ledger", "replay", "--verify", "--data-dir", dir_.path()}, false, dir_.Sub("replay.log")}).empty());
  auto st = replay.Wait(Clock::now() + std::chrono::seconds(120));
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << replay.StderrTail();
  proc_.Signal(SIGTERM);
  auto code = proc_.Wait(Clock::now() + std::chrono::seconds(30));
  ASSERT_TRUE(code.has_value());
  EXPECT_TRUE(WIFEXITED(*code) && WEXITSTATUS(*code) == 0) << proc_.StderrTail();

  // A clean stop wrote every view still owed (the kills left some owed): every change is in
  // the views now, and they still equal a replay.
  Subprocess after;
  ASSERT_TRUE(after.Start({{Bin(), "ledger", "replay", "--verify", "--json", "--data-dir", dir_.path()}, false,
                           dir_.Sub("replay-after.log")}).empty());
  auto lines = after.DrainLines(Clock::now() + std::chrono::seconds(120));
  st = after.Wait(Clock::now() + std::chrono::seconds(120));
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << after.StderrTail();
  ASSERT_EQ(lines.size(), 1u);
  auto report = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(report["view_lows"], report["heads"]) << lines[0];
  EXPECT_EQ(report["view_heads"], report["heads"]) << lines[0];
  // The clean stop wrote a checkpoint of every partition, each the fold of the log up to it.
  EXPECT_EQ(report["checkpoints"].size(), 4u) << lines[0];
  for (const auto& c : report["checkpoints"]) EXPECT_TRUE(c["checked"] && c["equal"]) << lines[0];
  EXPECT_TRUE(report["checkpoints_equal"]) << lines[0];

  // Started from those checkpoints, the ledger holds the same balances.
  // The starts that followed a kill after the clean stop loaded its checkpoints and folded the
  // events after them.
  int from_checkpoint_and_folded = 0;
  for (const auto& j : Rebuilds("ledger.log")) {
    from_checkpoint_and_folded += j.value("checkpoint_seq", "none") != "none" && j.value("events_folded", "0") != "0";
  }
  EXPECT_GT(from_checkpoint_and_folded, 0);
  addr = StartLedger("ledger-final.log");
  ASSERT_FALSE(addr.empty());
  stub = Stub(addr);
  expect_balances(*stub);
  int rebuilt_from_checkpoint = 0;
  for (const auto& j : Rebuilds("ledger-final.log")) {
    EXPECT_EQ(j.value("events_folded", ""), "0") << j.dump();
    rebuilt_from_checkpoint += j.value("checkpoint_seq", "none") != "none";
  }
  EXPECT_EQ(rebuilt_from_checkpoint, 4);
}

}  // namespace
}  // namespace wattledger

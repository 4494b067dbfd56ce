// The ledger service through its gRPC methods (called in-process) on a real event log and the
// local bus, with billing's usage arriving on the bus. The domain rules themselves are covered
// in domain/; here: what the adapter adds (ids, recording, exactly-once consumption, rejections
// recorded, cross-partition meter ownership, restart and replay).
#include "services/ledger/adapters/ledger_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "services/ledger/adapters/codec.h"
#include "wattledger/billing/v1/events.pb.h"
#include "wattledger/metrics/metrics.h"
#include "wattledger/testing/temp_dir.h"

namespace wattledger::ledger::adapters {
namespace {

constexpr uint32_t kParts = 4;

class LedgerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    billing_ = OpenLog("billing", "billing");
    Restart();
  }

  std::unique_ptr<eventlog::EventLog> OpenLog(const std::string& dir, const std::string& name) {
    eventlog::Options o;
    o.path = dir_.Sub(dir);
    o.name = name;
    o.partitions = kParts;
    o.fsync = eventlog::FsyncPolicy::kNone;
    o.clock = &clock_;
    return std::move(eventlog::EventLog::Open(o)).value();
  }

  // Stops the service (if running) and starts a new one on the same data: state is rebuilt.
  void Restart(std::chrono::milliseconds rpc_deadline = std::chrono::seconds(30)) {
    if (svc_) svc_->Stop();
    svc_.reset();
    bus_ = bus::NewLocalBus();
    ASSERT_TRUE(bus_->Publish("billing", billing_.get()).ok());
    LedgerOptions o = options_;
    o.clock = &clock_;
    o.rpc_deadline = rpc_deadline;
    svc_ = std::make_unique<LedgerService>(OpenLog("ledger", "ledger"), o);
    ASSERT_TRUE(svc_->Publish(bus_.get()).ok());
    ASSERT_TRUE(svc_->Start(bus_.get()).ok());
  }

  void TearDown() override {
    if (svc_) svc_->Stop();
  }

  // An adjustment of `id` by `minor` under `key`.
  static v1::AdjustRequest AdjustRequest(const std::string& id, int64_t minor, const std::string& key,
                                         const std::string& reason, const std::string& op = "op1") {
    v1::AdjustRequest r;
    r.set_operator_id(op);
    r.set_account_id(id);
    r.set_idempotency_key(key);
    r.set_amount_minor(minor);
    r.set_reason(reason);
    return r;
  }

  // A reversal of `original` for `reason`.
  static v1::ReverseRequest ReverseRequest(const std::string& original, const std::string& reason,
                                           const std::string& op = "op1") {
    v1::ReverseRequest r;
    r.set_operator_id(op);
    r.set_original_txn_id(original);
    r.set_reason(reason);
    return r;
  }

  grpc::Status Open(const std::string& id, std::vector<std::string> meters, int64_t credit = 0,
                    v1::MutationResponse* out = nullptr) {
    v1::OpenAccountRequest r;
    r.set_operator_id("op1");
    r.set_account_id(id);
    r.set_customer_name("张三");
    r.add_phones("13800000000");
    for (auto& m : meters) r.add_meters(m);
    r.set_mode(v1::MODE_PREPAID);
    r.set_credit_limit_minor(credit);
    r.set_alarm1_minor(200'000);
    r.set_alarm2_minor(100'000);
    r.set_hoarding_cap_minor(50'000'000);
    v1::MutationResponse resp;
    return svc_->OpenAccount(nullptr, &r, out != nullptr ? out : &resp);
  }

  grpc::Status TopUp(const std::string& id, int64_t minor, const std::string& key, v1::MutationResponse* resp,
                     std::optional<int64_t> expected = std::nullopt) {
    v1::TopUpRequest r;
    r.set_operator_id("op1");
    r.set_account_id(id);
    r.set_idempotency_key(key);
    r.set_amount_minor(minor);
    r.set_method(v1::PAYMENT_METHOD_CASH);
    if (expected) r.set_expected_purchase_count(*expected);
    return svc_->TopUp(nullptr, &r, resp);
  }

  // The first of A2, A3, ... whose partition is not that of `account`.
  static std::string AccountInAnotherPartition(const std::string& account) {
    for (int i = 2;; ++i) {
      std::string id = "A" + std::to_string(i);
      if (runtime::PartitionForKey(id, kParts) != runtime::PartitionForKey(account, kParts)) return id;
    }
  }

  // Queues a cash top-up of `id` on its partition's writer with, behind it in the same batch, a
  // command that runs `while_decided` (the top-up decided, not written) and then throws, which
  // fails the batch. Returns the top-up's answer.
  grpc::Status TopUpInAFailingBatch(const std::string& id, int64_t minor, const std::string& key,
                                    const std::function<void()>& while_decided = [] {}) {
    const uint32_t p = runtime::PartitionForKey(id, kParts);
    runtime::Processor* writers = svc_->processor();
    v1::TopUpRequest top;
    top.set_operator_id("op1");
    top.set_account_id(id);
    top.set_idempotency_key(key);
    top.set_amount_minor(minor);
    top.set_method(v1::PAYMENT_METHOD_CASH);
    std::promise<grpc::Status> answered;
    EXPECT_TRUE(writers->SubmitTo(p, [&](uint32_t, eventlog::WriteSet&) -> runtime::Reply {
      svc_->TopUpAsync(top, [&](grpc::Status st, v1::MutationResponse*) { answered.set_value(std::move(st)); });
      EXPECT_TRUE(writers->SubmitTo(p, [&](uint32_t, eventlog::WriteSet&) -> runtime::Reply {
        while_decided();
        throw std::runtime_error("the batch of the top-up fails");
      }, nullptr).ok());
      return nullptr;
    }, nullptr).ok());
    auto answer = answered.get_future();
    if (answer.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      ADD_FAILURE() << "the top-up was not answered";
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "not answered");
    }
    return answer.get();
  }

  // The stored view of an account (what was last written of it), not what the ledger holds.
  v1::Account StoredView(const std::string& id) {
    v1::Account a;
    auto v = svc_->log()->GetState("acct/" + id);
    EXPECT_TRUE(v.ok() && v->has_value()) << id;
    if (v.ok() && v->has_value()) {
      uint64_t tag = 0;
      EXPECT_TRUE(ParseAccountView(**v, 0, &tag, &a).ok());
    }
    return a;
  }

  // No posting pays for a view and none is owed long enough: views are written when an account
  // opens and when the service stops, so a test sees which views are owed.
  void RestartWritingViewsOnlyAtOpenAndStop() {
    options_.view_postings_per_write = 1'000'000;
    options_.view_max_age = std::chrono::hours(1);
    Restart();
  }

  // What a failed batch makes partition p's writer do (as a restart after kill -9 would).
  void ReloadOnWriter(uint32_t partition) {
    std::promise<Status> reloaded;
    ASSERT_TRUE(svc_->processor()->SubmitTo(partition, [&](uint32_t p, eventlog::WriteSet&) -> runtime::Reply {
      reloaded.set_value(svc_->Reload(p));
      return nullptr;
    }, nullptr).ok());
    Status s = reloaded.get_future().get();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  // Holds partition p's writer in a batch of its own until the returned guard is dropped, however
  // the test ends (stopping the service waits for a held writer). Returns once the writer is held,
  // so that what is queued after runs in the batches after it, not in the held one.
  [[nodiscard]] std::shared_ptr<void> HoldWriter(uint32_t partition) {
    auto release = std::make_shared<std::promise<void>>();
    auto holding = std::make_shared<std::promise<void>>();
    std::shared_future<void> released = release->get_future().share();
    std::future<void> held = holding->get_future();
    EXPECT_TRUE(svc_->processor()->SubmitTo(partition, [released, holding](uint32_t, eventlog::WriteSet&) -> runtime::Reply {
      holding->set_value();
      released.wait();
      return nullptr;
    }, nullptr).ok());
    EXPECT_EQ(held.wait_for(std::chrono::seconds(30)), std::future_status::ready) << "the writer was never held";
    return std::shared_ptr<void>(nullptr, [release](void*) { release->set_value(); });
  }

  // Account ids that fall into partition p, as many as asked.
  static std::vector<std::string> IdsIn(uint32_t p, int n) {
    std::vector<std::string> ids;
    for (int i = 0; static_cast<int>(ids.size()) < n; ++i) {
      std::string id = "P" + std::to_string(i);
      if (runtime::PartitionForKey(id, kParts) == p) ids.push_back(id);
    }
    return ids;
  }

  void ExpectReplayEqualsLive() {
    auto fresh = OpenLog("fresh-" + std::to_string(replays_++), "ledger");
    auto report = ReplayViews(*svc_->log(), fresh.get());
    ASSERT_TRUE(report.ok()) << report.status().ToString();
    EXPECT_EQ(report->replayed_digest, report->live_digest);
  }

  v1::Account Get(const std::string& id) {
    v1::GetAccountRequest r;
    r.set_account_id(id);
    v1::Account a;
    EXPECT_TRUE(svc_->GetAccount(nullptr, &r, &a).ok());
    return a;
  }

  void Usage(const std::string& charge_id, const std::string& account, int64_t minor, int64_t wh = 1000) {
    billing::v1::UsageCharged u;
    u.set_charge_id(charge_id);
    u.set_account_id(account);
    u.set_amount_minor(minor);
    u.set_energy_wh(wh);
    u.set_meter_id("M-" + account);
    u.set_reading_id("R-" + charge_id);
    u.set_tariff_id("T1");
    u.set_tariff_version(1);
    UsageRaw(account, u.SerializeAsString());
  }

  void UsageRaw(const std::string& key, std::string payload) {
    eventlog::WriteSet ws;
    eventlog::NewEvent e;
    e.partition = runtime::PartitionForKey(key, kParts);
    e.aggregate_key = key;
    e.type = billing::v1::UsageCharged::descriptor()->full_name();
    e.payload = std::move(payload);
    e.causation.set_request_id("test");
    ws.Append(std::move(e));
    ASSERT_TRUE(billing_->Commit(std::move(ws)).ok());
  }

  // Stops the service's writers and consumes, with the ledger's handler in a processor of its
  // own whose handler throws `what` on usage with charge id "POISON" (PoisonOnce), the usage
  // `publish` sends.
  void ConsumeWithPoison(const std::function<void()>& publish, const std::string& what = "bug");
  // Waits (bounded) until every billing event has been consumed by the ledger.
  void WaitConsumed() {
    for (int i = 0; i < 3000; ++i) {
      uint64_t want = 0, have = 0;
      for (uint32_t sp = 0; sp < kParts; ++sp) {
        want += billing_->Head(sp);
        // The lowest over writers: every writer has applied (or passed, by watermark) up to it.
        uint64_t lowest = UINT64_MAX;
        for (uint32_t p = 0; p < kParts; ++p) {
          auto pos = svc_->log()->GetPosition("ledger<billing#" + std::to_string(p), sp);
          lowest = std::min<uint64_t>(lowest, pos.ok() && pos->has_value() ? (*pos)->seq : 0);
        }
        have += lowest;
      }
      if (have == want) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL() << "ledger did not consume billing in time";
  }

  std::vector<eventlog::Envelope> LedgerEvents() {
    std::vector<eventlog::Envelope> all;
    for (uint32_t p = 0; p < kParts; ++p) {
      auto e = svc_->log()->Read(p, 1, 100000);
      for (auto& x : *e) all.push_back(std::move(x));
    }
    return all;
  }

  std::vector<v1::CommandRejected> Rejections() {
    std::vector<v1::CommandRejected> out;
    for (const auto& e : LedgerEvents()) {
      if (e.type() != kRejectedType) continue;
      EXPECT_TRUE(out.emplace_back().ParseFromString(e.payload())) << e.event_id() << " does not read back";
    }
    return out;
  }

  int Count(const std::string& type_suffix) {
    int n = 0;
    for (const auto& e : LedgerEvents()) n += e.type().ends_with(type_suffix);
    return n;
  }

  testing::TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<eventlog::EventLog> billing_;
  std::unique_ptr<bus::Bus> bus_;
  std::unique_ptr<LedgerService> svc_;
  LedgerOptions options_;  // What Restart() starts the service with (clock and deadline aside).
  int replays_ = 0;
};

TEST_F(LedgerServiceTest, TopUpIsIdempotentAndAnswersItsTxnAfterCommit) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  v1::MutationResponse r1, r2;
  ASSERT_TRUE(TopUp("A1", 1'000'000, "K1", &r1, 1).ok());
  EXPECT_TRUE(r1.txn_id().starts_with("ledger/"));
  EXPECT_FALSE(r1.duplicate());
  EXPECT_EQ(r1.balance().balance_minor(), 1'000'000);
  EXPECT_EQ(r1.balance().purchase_count(), 1);
  EXPECT_EQ(r1.balance().account_id(), "A1");
  EXPECT_EQ(r1.balance().level(), v1::LEVEL_NORMAL);
  // A posting answers with the balance it left, not the whole account.
  EXPECT_FALSE(r1.has_account());
  ASSERT_TRUE(TopUp("A1", 1'000'000, "K1", &r2).ok());
  EXPECT_TRUE(r2.duplicate());
  EXPECT_EQ(r2.txn_id(), r1.txn_id());
  EXPECT_EQ(Get("A1").balance_minor(), 1'000'000);
  // Same key, other amount: refused, and the refusal is on the record.
  v1::MutationResponse r3;
  grpc::Status s = TopUp("A1", 2'000'000, "K1", &r3);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  EXPECT_EQ(Count("CommandRejected"), 1);
  // The transaction is there by id.
  v1::GetTransactionRequest tr;
  tr.set_txn_id(r1.txn_id());
  v1::Transaction t;
  ASSERT_TRUE(svc_->GetTransaction(nullptr, &tr, &t).ok());
  EXPECT_EQ(t.kind(), v1::TXN_KIND_TOP_UP);
  EXPECT_EQ(t.amount_minor(), 1'000'000);
}

TEST_F(LedgerServiceTest, AMalformedRequestIsAnsweredWithoutWaitingForTheWriterAndRecordsNothing) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  const uint32_t p = runtime::PartitionForKey("A1", kParts);
  const uint64_t head = svc_->log()->Head(p);
  std::shared_ptr<void> hold = HoldWriter(p);
  v1::TopUpRequest r;  // No operator.
  r.set_account_id("A1");
  r.set_idempotency_key("K1");
  r.set_amount_minor(10'000);
  r.set_method(v1::PAYMENT_METHOD_CASH);
  std::promise<grpc::Status> answered;
  svc_->TopUpAsync(r, [&](grpc::Status s, v1::MutationResponse*) { answered.set_value(std::move(s)); });
  auto f = answered.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(5)), std::future_status::ready) << "it waited for the writer";
  const grpc::Status s = f.get();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("operator_id"), std::string::npos) << s.error_message();
  hold.reset();
  // Nothing was recorded for it, and the key is still free.
  v1::MutationResponse ok;
  ASSERT_TRUE(TopUp("A1", 10'000, "K1", &ok).ok());
  EXPECT_FALSE(ok.duplicate());
  EXPECT_EQ(ok.balance().purchase_count(), 1);
  EXPECT_EQ(svc_->log()->Head(p), head + 1);
}

TEST_F(LedgerServiceTest, AccountCommandsAnswerTheAccountPostingsItsBalance) {
  v1::MutationResponse opened, adjusted;
  ASSERT_TRUE(Open("A1", {"M1"}, /*credit=*/10'000, &opened).ok());
  EXPECT_EQ(opened.account().customer_name(), "张三");
  EXPECT_EQ(opened.account().meters_size(), 1);
  EXPECT_EQ(opened.account().limits().credit_limit_minor(), 10'000);
  EXPECT_FALSE(opened.has_balance());
  const v1::AdjustRequest adjust = AdjustRequest("A1", -15'000, "K1", "meter read twice");
  ASSERT_TRUE(svc_->Adjust(nullptr, &adjust, &adjusted).ok());
  EXPECT_FALSE(adjusted.has_account());
  EXPECT_EQ(adjusted.balance().account_id(), "A1");
  EXPECT_EQ(adjusted.balance().balance_minor(), -15'000);
  EXPECT_EQ(adjusted.balance().level(), v1::LEVEL_CUTOFF);
  EXPECT_TRUE(adjusted.balance().supply_cut());
  EXPECT_EQ(adjusted.balance().purchase_count(), 0);
}

TEST_F(LedgerServiceTest, EachAnswerShowsTheAccountAsItsOwnCommandLeftIt) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  const uint32_t p = runtime::PartitionForKey("A1", kParts);
  // The writer is held in a batch while two top-ups queue: they then run in one batch.
  std::shared_ptr<void> hold = HoldWriter(p);
  auto first = std::make_shared<std::promise<v1::MutationResponse>>();
  auto second = std::make_shared<std::promise<v1::MutationResponse>>();
  auto top_up = [&](int64_t minor, const std::string& key, std::shared_ptr<std::promise<v1::MutationResponse>> out) {
    v1::TopUpRequest r;
    r.set_operator_id("op1");
    r.set_account_id("A1");
    r.set_idempotency_key(key);
    r.set_amount_minor(minor);
    r.set_method(v1::PAYMENT_METHOD_CASH);
    svc_->TopUpAsync(r, [out](grpc::Status s, v1::MutationResponse* resp) {
      EXPECT_TRUE(s.ok()) << s.error_message();
      out->set_value(resp != nullptr ? *resp : v1::MutationResponse());
    });
  };
  top_up(10'000, "K1", first);
  top_up(20'000, "K2", second);
  hold.reset();
  auto f1 = first->get_future(), f2 = second->get_future();
  ASSERT_EQ(f1.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  ASSERT_EQ(f2.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  const v1::MutationResponse a = f1.get(), b = f2.get();
  EXPECT_EQ(a.balance().balance_minor(), 10'000);
  EXPECT_EQ(a.balance().purchase_count(), 1);
  EXPECT_EQ(b.balance().balance_minor(), 30'000);
  EXPECT_EQ(b.balance().purchase_count(), 2);
  // A retry is answered with the account as it is now.
  v1::MutationResponse again;
  ASSERT_TRUE(TopUp("A1", 10'000, "K1", &again).ok());
  EXPECT_TRUE(again.duplicate());
  EXPECT_EQ(again.txn_id(), a.txn_id());
  EXPECT_EQ(again.balance().balance_minor(), 30'000);
}

TEST_F(LedgerServiceTest, RejectionsNameTheRuleAndChangeNoBalance) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  v1::MutationResponse r;
  grpc::Status s = TopUp("A1", 100'000, "K1", &r, 5);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("purchase"), std::string::npos) << s.error_message();
  s = TopUp("A1", 60'000'000, "K2", &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("hoarding"), std::string::npos) << s.error_message();
  s = TopUp("NOPE", 100, "K3", &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  v1::RefundRequest rf;
  rf.set_operator_id("op1");
  rf.set_account_id("A1");
  rf.set_idempotency_key("K4");
  rf.set_amount_minor(1);
  rf.set_method(v1::PAYMENT_METHOD_CASH);
  EXPECT_EQ(svc_->Refund(nullptr, &rf, &r).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  // Shape errors are answered without recording anything.
  v1::TopUpRequest bad;
  bad.set_account_id("A1");
  bad.set_idempotency_key("K5");
  bad.set_amount_minor(100);
  EXPECT_EQ(svc_->TopUp(nullptr, &bad, &r).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Oversized requests are refused before anything is decided.
  v1::TopUpRequest huge;
  huge.set_operator_id("op1");
  huge.set_account_id(std::string(20'000, 'A'));
  huge.set_idempotency_key("K6");
  huge.set_amount_minor(100);
  huge.set_method(v1::PAYMENT_METHOD_CASH);
  EXPECT_EQ(svc_->TopUp(nullptr, &huge, &r).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  huge.set_account_id(std::string(300, 'A'));
  grpc::Status long_id = svc_->TopUp(nullptr, &huge, &r);
  EXPECT_EQ(long_id.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(long_id.error_message().find("at most 256"), std::string::npos) << long_id.error_message();
  EXPECT_EQ(Get("A1").balance_minor(), 0);
  EXPECT_EQ(Count("CommandRejected"), 4);
}

TEST_F(LedgerServiceTest, ReversalOnceAndNeverOfAReversal) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  v1::MutationResponse top, rev, again;
  ASSERT_TRUE(TopUp("A1", 500'000, "K1", &top).ok());
  v1::ReverseRequest rr = ReverseRequest(top.txn_id(), "wrong account");
  ASSERT_TRUE(svc_->Reverse(nullptr, &rr, &rev).ok());
  // A reversal is a posting: it answers with the balance it left.
  ASSERT_TRUE(rev.has_balance());
  EXPECT_FALSE(rev.has_account());
  EXPECT_EQ(rev.balance().account_id(), "A1");
  EXPECT_EQ(rev.balance().balance_minor(), 0);
  EXPECT_EQ(svc_->Reverse(nullptr, &rr, &again).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  rr.set_original_txn_id(rev.txn_id());
  EXPECT_EQ(svc_->Reverse(nullptr, &rr, &again).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  // Not a txn id: refused as such, not looked for. "ledger/01/<seq>" is not ledger/1/<seq>.
  std::string_view seq = std::string_view(top.txn_id()).substr(top.txn_id().rfind('/') + 1);
  const std::string partition = top.txn_id().substr(7, top.txn_id().rfind('/') - 7);
  for (const std::string& bad : {std::string("not-a-txn"), "ledger/0" + partition + "/" + std::string(seq),
                                 "ledger/" + partition + "/0" + std::string(seq), "ledger/" + partition + "/",
                                 std::string("ledger//1"), "ledger/" + partition + "/0", "ledger/" + partition + "/+1",
                                 "ledger/" + partition + "/1/2", "ledger/" + partition}) {
    rr.set_original_txn_id(bad);
    grpc::Status s = svc_->Reverse(nullptr, &rr, &again);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad << ": " << s.error_message();
    v1::GetTransactionRequest tr;
    tr.set_txn_id(bad);
    v1::Transaction t;
    EXPECT_EQ(svc_->GetTransaction(nullptr, &tr, &t).error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
  }
  rr.set_original_txn_id("ledger/99/1");
  EXPECT_EQ(svc_->Reverse(nullptr, &rr, &again).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(LedgerServiceTest, UsageChargesApplyOnceAndBadUsageIsRecordedNotApplied) {
  ASSERT_TRUE(Open("A1", {"M1"}, /*credit=*/50'000).ok());
  v1::MutationResponse r;
  ASSERT_TRUE(TopUp("A1", 100'000, "K1", &r).ok());
  Usage("C1", "A1", 60'000);
  Usage("C1", "A1", 60'000);  // Billing delivered it twice: charged once.
  Usage("C2", "A1", 60'000);  // Balance -20,000: arrears.
  UsageRaw("A1", "\xff\xfe not a protobuf");
  Usage("C3", "A1", -5);      // Negative amount: refused.
  Usage("C3b", std::string(300'000, 'X'), 5);  // A huge account id: refused, recorded bounded.
  WaitConsumed();
  EXPECT_EQ(Get("A1").balance_minor(), -20'000);
  EXPECT_EQ(Count("Charged"), 2);
  EXPECT_EQ(Count("CommandRejected"), 3);
  EXPECT_EQ(Count("SupplyCutRequired"), 0);
  Usage("C4", "A1", 40'000);  // -60,000 < -50,000: cut, exactly once.
  Usage("C5", "A1", 1'000);
  WaitConsumed();
  EXPECT_TRUE(Get("A1").supply_cut());
  EXPECT_EQ(Count("SupplyCutRequired"), 1);
  ASSERT_TRUE(TopUp("A1", 100'000, "K2", &r).ok());
  ASSERT_TRUE(r.has_balance());
  EXPECT_FALSE(r.balance().supply_cut());
  EXPECT_EQ(Count("SupplyRestoreAllowed"), 1);
  // A restart replays the log and does not charge anything again.
  Restart();
  WaitConsumed();
  EXPECT_EQ(Get("A1").balance_minor(), 39'000);
  EXPECT_EQ(Count("Charged"), 4);
}

TEST_F(LedgerServiceTest, UsageIsChargedInThePartitionOfItsAccountWhateverItsKey) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  v1::MutationResponse r;
  ASSERT_TRUE(TopUp("A1", 100'000, "K1", &r).ok());
  // Published under a key that lives in another partition than A1.
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    std::string k = "meter-" + std::to_string(i);
    if (runtime::PartitionForKey(k, kParts) != runtime::PartitionForKey("A1", kParts)) key = k;
  }
  billing::v1::UsageCharged u;
  u.set_charge_id("C1");
  u.set_account_id("A1");
  u.set_amount_minor(30'000);
  u.set_energy_wh(1000);
  u.set_meter_id("M1");
  u.set_reading_id("R1");
  u.set_tariff_id("T1");
  u.set_tariff_version(1);
  UsageRaw(key, u.SerializeAsString());
  UsageRaw(key, "\xff\xfe not a protobuf");  // Names no account: recorded wherever it lands.
  WaitConsumed();
  EXPECT_EQ(Get("A1").balance_minor(), 70'000);
  EXPECT_EQ(Count("Charged"), 1);
  auto rejected = Rejections();
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].rule(), "invalid_usage");
}

// `bytes` with its one occurrence of `from` overwritten by `to` (as long): how a test makes the
// payload of a producer that puts bytes protobuf's own setters would never serialise.
std::string Patch(std::string bytes, std::string_view from, std::string_view to) {
  EXPECT_EQ(from.size(), to.size());
  const size_t at = bytes.find(from);
  EXPECT_NE(at, std::string::npos);
  EXPECT_EQ(bytes.find(from, at + 1), std::string::npos);
  if (at != std::string::npos) bytes.replace(at, from.size(), to);
  return bytes;
}

TEST_F(LedgerServiceTest, UsageWithIdsThatAreNotUtf8IsRecordedAsInvalidAndTheNextCharges) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  v1::MutationResponse r;
  ASSERT_TRUE(TopUp("A1", 100'000, "K1", &r).ok());
  billing::v1::UsageCharged u;
  u.set_charge_id("C-bad-account");
  u.set_account_id("A1@@");
  u.set_amount_minor(1'000);
  u.set_energy_wh(1000);
  u.set_meter_id("M1");
  // Protobuf refuses to parse these payloads, but keeps the bytes it read of the bad field.
  // An account id cut inside a character (the first byte of 张 alone), then a charge id with a
  // byte that starts no character.
  UsageRaw("A1", Patch(u.SerializeAsString(), "A1@@", "A1@\xe5"));
  u.set_charge_id("C-bad-@");
  u.set_account_id("A1");
  UsageRaw("A1", Patch(u.SerializeAsString(), "C-bad-@", "C-bad-\xff"));
  Usage("C2", "A1", 3'000);
  WaitConsumed();
  EXPECT_EQ(Get("A1").balance_minor(), 100'000 - 3'000);
  EXPECT_EQ(Count("Charged"), 1);
  // Recorded as refused usage, as any usage that does not parse is, without the bytes: not set
  // aside as poison after failed batches.
  auto rejected = Rejections();
  ASSERT_EQ(rejected.size(), 2u);
  for (const auto& x : rejected) {
    EXPECT_EQ(x.rule(), "invalid_usage");
    EXPECT_EQ(x.code(), static_cast<int32_t>(StatusCode::kInvalidArgument));
    EXPECT_EQ(x.account_id(), "");
  }
  // Each may land in any partition (the first routes by its raw bytes): compare as a set.
  std::multiset<std::string> keys;
  for (const auto& x : rejected) keys.insert(x.idempotency_key());
  EXPECT_EQ(keys, (std::multiset<std::string>{"", "C-bad-account"}));
  for (const auto& e : LedgerEvents()) {
    if (e.type() == kRejectedType) {
      EXPECT_EQ(e.aggregate_key(), "");
    }
  }
}

// Runs the ledger's handler, except that consuming usage with charge id "POISON" throws, as a
// handler that hits a bug on one input does.
class PoisonOnce : public runtime::Handler {
 public:
  explicit PoisonOnce(LedgerService* svc, std::string what = "bug") : svc_(svc), what_(std::move(what)) {}
  uint32_t Route(const bus::Message& m, uint32_t partitions) override { return svc_->Route(m, partitions); }
  void OnMessage(uint32_t p, const bus::Message& m, eventlog::WriteSet& ws) override {
    billing::v1::UsageCharged u;
    if (u.ParseFromString(m.envelope.payload()) && u.charge_id() == "POISON") throw std::runtime_error(what_);
    svc_->OnMessage(p, m, ws);
  }
  void OnPoison(uint32_t p, const bus::Message& m, const Status& why, eventlog::WriteSet& ws) override {
    svc_->OnPoison(p, m, why, ws);
  }
  void BeforeBatch(uint32_t p) override { svc_->BeforeBatch(p); }  // The batch's time, for Execute.
  void BeforeCommit(uint32_t p, eventlog::WriteSet& ws) override { svc_->BeforeCommit(p, ws); }
  Status Reload(uint32_t p) override { return svc_->Reload(p); }

 private:
  LedgerService* svc_;
  const std::string what_;
};

void LedgerServiceTest::ConsumeWithPoison(const std::function<void()>& publish, const std::string& what) {
  svc_->Stop();
  PoisonOnce handler(svc_.get(), what);
  runtime::ProcessorOptions po;
  po.name = "ledger";
  po.topics = {kBillingTopic};
  runtime::Processor proc(po, svc_->log(), bus_.get(), &handler);
  ASSERT_TRUE(proc.Start().ok());
  publish();
  WaitConsumed();
  proc.Stop();
}

TEST_F(LedgerServiceTest, UsageThatFailsEveryBatchIsSetAsideAndRecordedAsPoison) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  v1::MutationResponse r;
  ASSERT_TRUE(TopUp("A1", 100'000, "K1", &r).ok());
  ConsumeWithPoison([&] {
    Usage("C1", "A1", 1'000);
    Usage("POISON", "A1", 2'000);
    Usage("C2", "A1", 3'000);
  });
  // The partition went on past it, and the log says which input was set aside and why. (The
  // service's own writers are stopped: a restart reads the balance back from the log.)
  Restart();
  EXPECT_EQ(Get("A1").balance_minor(), 100'000 - 1'000 - 3'000);
  EXPECT_EQ(Count("Charged"), 2);
  auto rejected = Rejections();
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].rule(), "poison_input");
  EXPECT_EQ(rejected[0].account_id(), "A1");
  EXPECT_EQ(rejected[0].idempotency_key(), "POISON");
  EXPECT_EQ(rejected[0].code(), static_cast<int32_t>(StatusCode::kInternal));
  EXPECT_EQ(rejected[0].message(), "handler threw: bug");
  EXPECT_TRUE(rejected[0].txn_id().starts_with("ledger/")) << rejected[0].txn_id();
  for (const auto& e : LedgerEvents()) {
    if (e.type() == kRejectedType) {
      EXPECT_EQ(e.causation().source_topic(), kBillingTopic);
    }
  }
}

// The views owed are held by account address: a batch that fails after its commands made some
// owed reloads the partition's ledger and what it owes together, so the views written after it
// are of the new ledger's accounts, and equal a replay.
TEST_F(LedgerServiceTest, ViewsWrittenAfterAFailedBatchEqualAReplay) {
  options_.view_postings_per_write = 1;
  Restart();
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  ASSERT_TRUE(Open("A2", {"M2"}).ok());
  v1::MutationResponse r;
  ASSERT_TRUE(TopUp("A1", 100'000, "K1", &r).ok());
  ASSERT_TRUE(TopUp("A2", 100'000, "K2", &r).ok());
  ConsumeWithPoison([&] {
    Usage("C1", "A1", 1'000);
    Usage("C2", "A2", 2'000);
    Usage("POISON", "A1", 4'000);  // Fails each batch it is in, after C1 and C2 made views owed.
    Usage("C3", "A1", 8'000);
    Usage("C4", "A2", 16'000);
  });
  Restart();
  EXPECT_EQ(Get("A1").balance_minor(), 100'000 - 1'000 - 8'000);
  EXPECT_EQ(Get("A2").balance_minor(), 100'000 - 2'000 - 16'000);
  // One view per posting: the last batches wrote both accounts' views as of their charges.
  EXPECT_EQ(StoredView("A1").balance_minor(), 100'000 - 1'000 - 8'000);
  EXPECT_EQ(StoredView("A2").balance_minor(), 100'000 - 2'000 - 16'000);
  ExpectReplayEqualsLive();
}

TEST_F(LedgerServiceTest, PoisonIsRecordedReadablyWhateverTheFailureSays) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  v1::MutationResponse r;
  ASSERT_TRUE(TopUp("A1", 100'000, "K1", &r).ok());
  // The failure's text is not all UTF-8, and the record's bound of 1,024 bytes falls inside a
  // character: "handler threw: bug: \xff" is 21 bytes, each 张 three.
  std::string what = "bug: \xff";
  for (int i = 0; i < 400; ++i) what += "张";
  ConsumeWithPoison([&] { Usage("POISON", "A1", 2'000); }, what);
  auto rejected = Rejections();
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].rule(), "poison_input");
  std::string want = "handler threw: bug: ?";
  for (int i = 0; i < 334; ++i) want += "张";
  want += "?";
  // Compared without printing a kilobyte of 张 on failure.
  EXPECT_TRUE(rejected[0].message() == want) << "got " << rejected[0].message().size() << " bytes: "
                                             << rejected[0].message().substr(0, 24) << "...";
  EXPECT_EQ(rejected[0].message().size(), 1024u);
}

TEST_F(LedgerServiceTest, AMeterBelongsToOneAccountAcrossPartitions) {
  // Find two account ids in different partitions.
  const std::string a = "A1", b = AccountInAnotherPartition(a);
  ASSERT_TRUE(Open(a, {"M1"}).ok());
  grpc::Status s = Open(b, {"M2", "M1"});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("M1"), std::string::npos) << s.error_message();
  // M2 was not kept by the refused open.
  ASSERT_TRUE(Open(b, {"M2"}).ok());
  Restart();
  EXPECT_EQ(Open("A999", {"M1"}).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

// An idempotency key names one request whichever partition the account is in: a key used for a
// payment on one account and again on an account of another partition is refused, as it would
// be within one partition, and not taken as a second payment.
TEST_F(LedgerServiceTest, AnIdempotencyKeyIsOneRequestAcrossPartitions) {
  const std::string a = "A1", b = AccountInAnotherPartition(a);
  ASSERT_TRUE(Open(a, {"M1"}).ok());
  ASSERT_TRUE(Open(b, {"M2"}).ok());
  v1::MutationResponse first, again, other;
  ASSERT_TRUE(TopUp(a, 100'000, "WX-4200001", &first).ok());
  grpc::Status s = TopUp(b, 100'000, "WX-4200001", &other);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  EXPECT_TRUE(s.error_message().starts_with("idempotency_key_reused: ")) << s.error_message();
  EXPECT_NE(s.error_message().find(first.txn_id()), std::string::npos) << s.error_message();
  // And spells out the request it refused, as a refusal within one partition does.
  EXPECT_NE(s.error_message().find("now: top-up account=" + b + " amount=10.0000 method=cash"), std::string::npos)
      << s.error_message();
  EXPECT_EQ(Get(b).balance_minor(), 0);
  auto rejected = Rejections();
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].rule(), "idempotency_key_reused");
  EXPECT_EQ(rejected[0].account_id(), b);
  // The first account's retry is still its duplicate, and the other account takes a new key.
  ASSERT_TRUE(TopUp(a, 100'000, "WX-4200001", &again).ok());
  EXPECT_TRUE(again.duplicate());
  EXPECT_EQ(again.txn_id(), first.txn_id());
  ASSERT_TRUE(TopUp(b, 100'000, "WX-4200002", &other).ok());
  // Every kind of keyed request shares the keys: a refund, an adjustment and a reversal too.
  v1::RefundRequest rf;
  rf.set_operator_id("op1");
  rf.set_account_id(b);
  rf.set_idempotency_key("WX-4200001");
  rf.set_amount_minor(1'000);
  rf.set_method(v1::PAYMENT_METHOD_CASH);
  EXPECT_EQ(svc_->Refund(nullptr, &rf, &other).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  const v1::AdjustRequest ad = AdjustRequest(b, 1'000, "WX-4200001", "meter fault");
  EXPECT_EQ(svc_->Adjust(nullptr, &ad, &other).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  v1::ReverseRequest rr = ReverseRequest(other.txn_id(), "entered twice");
  rr.set_idempotency_key("WX-4200001");
  EXPECT_EQ(svc_->Reverse(nullptr, &rr, &other).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(Get(b).balance_minor(), 100'000);
  // The keys of every partition are known again after a restart.
  Restart();
  s = TopUp(b, 100'000, "WX-4200001", &other);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  ASSERT_TRUE(TopUp(a, 100'000, "WX-4200001", &again).ok());
  EXPECT_TRUE(again.duplicate());
}

// A key taken by a request whose batch then failed was never used: once the batch is undone,
// an account of another partition may use it.
TEST_F(LedgerServiceTest, AKeyOfAFailedBatchIsFreeForOtherPartitions) {
  const std::string a = "A1", c = AccountInAnotherPartition(a);
  ASSERT_TRUE(Open(a, {"M1"}).ok());
  ASSERT_TRUE(Open(c, {"M2"}).ok());
  EXPECT_EQ(TopUpInAFailingBatch(a, 100'000, "K1").error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Get(a).balance_minor(), 0);  // Answered by p's writer once the batch is undone.
  v1::MutationResponse r;
  grpc::Status s = TopUp(c, 100'000, "K1", &r);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Get(c).balance_minor(), 100'000);
  // And now it is c's: a's retry of the undone top-up is refused.
  EXPECT_EQ(TopUp(a, 100'000, "K1", &r).error_code(), grpc::StatusCode::ALREADY_EXISTS);
}

// A key claimed by a request whose batch is not written yet refuses another partition's request
// only for now (UNAVAILABLE, retry), not for good: the batch may still be undone, and the txn it
// would name may never be written (found by review: it was refused ALREADY_EXISTS, naming a seq
// that the partition's next request then took).
TEST_F(LedgerServiceTest, AKeyInFlightInAnotherPartitionAsksForARetry) {
  const std::string a = "A1", c = AccountInAnotherPartition(a);
  ASSERT_TRUE(Open(a, {"M1"}).ok());
  ASSERT_TRUE(Open(c, {"M2"}).ok());
  auto top_ups = [](const std::string& outcome) {
    for (const auto& family : metrics::Registry().Collect()) {
      if (family.name != "wattledger_ledger_commands_total") continue;
      for (const auto& m : family.metric) {
        std::map<std::string, std::string> labels;
        for (const auto& l : m.label) labels[l.name] = l.value;
        if (labels["command"] == "top_up" && labels["outcome"] == outcome) return m.counter.value;
      }
    }
    return -1.0;
  };
  const double rejected = top_ups("rejected"), retries = top_ups("retry");
  grpc::Status while_in_flight;
  // a's top-up is decided (K1 claimed) but not written: c's writer decides meanwhile.
  grpc::Status top = TopUpInAFailingBatch(a, 100'000, "K1", [&] {
    std::thread([&] {
      v1::MutationResponse r;
      while_in_flight = TopUp(c, 100'000, "K1", &r);
    }).join();
  });
  EXPECT_EQ(top.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(while_in_flight.error_code(), grpc::StatusCode::UNAVAILABLE) << while_in_flight.error_message();
  EXPECT_TRUE(while_in_flight.error_message().starts_with("idempotency_key_in_flight: "))
      << while_in_flight.error_message();
  // Counted as a retry to come, not as a request refused.
  EXPECT_EQ(top_ups("retry"), retries + 1);
  EXPECT_EQ(top_ups("rejected"), rejected);
  // a's top-up was undone: c's retry goes through.
  EXPECT_EQ(Get(a).balance_minor(), 0);
  v1::MutationResponse r;
  grpc::Status retry = TopUp(c, 100'000, "K1", &r);
  EXPECT_TRUE(retry.ok()) << retry.error_message();
  EXPECT_EQ(Get(c).balance_minor(), 100'000);
}

// An operator lists the accounts to call (cut off, in arrears) or to collect (closed with
// arrears) without paging through every account: the filter runs in the ledger, a page looks at a
// bounded number of accounts, and paging on to the end finds every match once, in id order.
TEST_F(LedgerServiceTest, ListAccountsByLevelAndState) {
  options_.list_accounts_examined = 3;  // So that pages end before they are full.
  Restart();
  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) {
    ids.push_back("A" + std::string(i < 10 ? "0" : "") + std::to_string(i));
    ASSERT_TRUE(Open(ids.back(), {"M" + std::to_string(i)}).ok());
  }
  v1::MutationResponse r;
  for (int i : {2, 5, 7, 9}) {  // Below the cut-off line (credit 0).
    const v1::AdjustRequest ad = AdjustRequest(ids[i], -10'000, "K" + std::to_string(i), "test");
    ASSERT_TRUE(svc_->Adjust(nullptr, &ad, &r).ok());
  }
  v1::CloseAccountRequest close;
  close.set_operator_id("op1");
  close.set_account_id(ids[7]);
  ASSERT_TRUE(svc_->CloseAccount(nullptr, &close, &r).ok());  // Closed with its arrears.
  v1::OpenAccountRequest postpaid;
  postpaid.set_operator_id("op1");
  postpaid.set_account_id("A99");
  postpaid.set_customer_name("厂");
  postpaid.add_meters("M99");
  postpaid.set_mode(v1::MODE_POSTPAID);
  ASSERT_TRUE(svc_->OpenAccount(nullptr, &postpaid, &r).ok());
  const v1::AdjustRequest owes = AdjustRequest("A99", -10'000, "K99", "test");
  ASSERT_TRUE(svc_->Adjust(nullptr, &owes, &r).ok());  // In arrears, but a postpaid has no level.

  // Every page until there is no token; the ids listed, and how many pages it took.
  auto list_all = [&](v1::ListAccountsRequest req, int* pages = nullptr) {
    std::vector<std::string> got;
    int n = 0;
    do {
      v1::ListAccountsResponse page;
      grpc::Status s = svc_->ListAccounts(nullptr, &req, &page);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok() || ++n > 100) break;
      EXPECT_LE(page.accounts_size(), req.page_size() == 0 ? 100 : req.page_size());
      for (const auto& a : page.accounts()) got.push_back(a.account_id());
      req.set_page_token(page.next_page_token());
    } while (!req.page_token().empty());
    if (pages != nullptr) *pages = n;
    return got;
  };
  v1::ListAccountsRequest cut;
  cut.add_levels(v1::LEVEL_CUTOFF);
  int pages = 0;
  EXPECT_EQ(list_all(cut, &pages), (std::vector<std::string>{ids[2], ids[5], ids[9]}));
  EXPECT_EQ(pages, 1) << "a page of 100 looks at 100 accounts";
  cut.set_page_size(2);
  EXPECT_EQ(list_all(cut), (std::vector<std::string>{ids[2], ids[5], ids[9]}));
  cut.set_page_size(1);
  EXPECT_EQ(list_all(cut, &pages), (std::vector<std::string>{ids[2], ids[5], ids[9]}));
  EXPECT_EQ(pages, 5) << "13 accounts, 3 looked at a page";
  // Levels together, and levels with states: both must match.
  v1::ListAccountsRequest cut_or_normal;
  cut_or_normal.add_levels(v1::LEVEL_CUTOFF);
  cut_or_normal.add_levels(v1::LEVEL_ALARM2);  // Opened at 0, below alarm 2 (100,000).
  EXPECT_EQ(list_all(cut_or_normal).size(), 11u) << "the 12 prepaid accounts but the closed one";
  v1::ListAccountsRequest collect;
  collect.add_states(v1::ACCOUNT_STATE_CLOSED_WITH_ARREARS);
  EXPECT_EQ(list_all(collect), std::vector<std::string>{ids[7]});
  collect.add_levels(v1::LEVEL_CUTOFF);
  EXPECT_EQ(list_all(collect), std::vector<std::string>{}) << "a closed account has no level";
  // Unfiltered, a page is as large as asked, and every account is there.
  v1::ListAccountsRequest every;
  every.set_page_size(5);
  EXPECT_EQ(list_all(every, &pages).size(), 13u);
  EXPECT_EQ(pages, 3);
  // A value that is no level is refused, naming the field.
  v1::ListAccountsRequest bad;
  bad.add_levels(static_cast<v1::Level>(99));
  v1::ListAccountsResponse page;
  grpc::Status s = svc_->ListAccounts(nullptr, &bad, &page);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("levels"), std::string::npos) << s.error_message();
}

// A detach (or close) frees its meters for other partitions only once it is durable. Here the
// detach's batch fails after the detach was decided, while another partition attaches the meter:
// that attach must be refused, or the failed batch's reload would give the meter two owners.
TEST_F(LedgerServiceTest, ADetachFreesTheMeterForOtherPartitionsOnlyOnceDurable) {
  const std::string a = "A1", c = AccountInAnotherPartition(a);
  const uint32_t p = runtime::PartitionForKey(a, kParts);
  const uint32_t q = runtime::PartitionForKey(c, kParts);
  ASSERT_TRUE(Open(a, {"M1", "M3"}).ok());  // Not its last meter: a may detach M1.
  ASSERT_TRUE(Open(c, {"M2"}).ok());
  // From here on a synchronous call only queues its command (no time to wait for the answer); the
  // test reads the effects from the log.
  Restart(std::chrono::milliseconds(0));
  auto meter_request = [](const std::string& account) {
    v1::MeterRequest r;
    r.set_operator_id("op1");
    r.set_account_id(account);
    r.set_meter_id("M1");
    return r;
  };
  runtime::Processor* writers = svc_->processor();
  std::promise<void> decided, attached;
  auto attached_future = attached.get_future();
  // On p's writer: queue the detach and behind it (so in the same batch) a command that waits
  // while the detach is decided but not committed, then throws, which fails the whole batch.
  ASSERT_TRUE(writers->SubmitTo(p, [&](uint32_t, eventlog::WriteSet&) -> runtime::Reply {
    // Queued behind this command, so in the same batch; its answer (UNAVAILABLE) is not awaited.
    svc_->DetachMeterAsync(meter_request(a), [](grpc::Status, v1::MutationResponse*) {});
    EXPECT_TRUE(writers->SubmitTo(p, [&](uint32_t, eventlog::WriteSet&) -> runtime::Reply {
      decided.set_value();
      EXPECT_EQ(attached_future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
      throw std::runtime_error("the batch of the detach fails");
    }, nullptr).ok());
    return nullptr;
  }, nullptr).ok());
  ASSERT_EQ(decided.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  // Meanwhile partition q attaches M1 to c; its writer records the outcome either way.
  const uint64_t q_head = svc_->log()->Head(q);
  v1::MeterRequest attach = meter_request(c);
  v1::MutationResponse ignored;
  svc_->AttachMeter(nullptr, &attach, &ignored);  // Its answer may or may not come in time.
  for (int i = 0; i < 3000 && svc_->log()->Head(q) == q_head; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_GT(svc_->log()->Head(q), q_head);
  attached.set_value();
  // A command behind the failed batch on p's writer is answered once that batch is undone.
  std::promise<Status> undone;
  ASSERT_TRUE(writers->SubmitTo(p, [&](uint32_t, eventlog::WriteSet&) -> runtime::Reply {
    return [&](const Status& s, auto) { undone.set_value(s); };
  }, nullptr).ok());
  ASSERT_EQ(undone.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);

  // Durable state, which every restart rebuilds: M1 still belongs to a, and to a alone. (Read
  // after a restart: queries wait for the writers, which the 0 ms deadline would not.)
  Restart();
  auto owners = [&] {
    std::vector<std::string> who;
    for (const auto& id : {a, c}) {
      const v1::Account account = Get(id);
      for (const auto& m : account.meters()) {
        if (m == "M1") who.push_back(id);
      }
    }
    return who;
  };
  EXPECT_EQ(owners(), std::vector<std::string>{a});
  auto rejected = Rejections();
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].rule(), "meter_owned");
  // Once the detach is durable the meter is free for c.
  Restart();
  v1::MeterRequest detach = meter_request(a);
  EXPECT_TRUE(svc_->DetachMeter(nullptr, &detach, &ignored).ok());
  EXPECT_TRUE(svc_->AttachMeter(nullptr, &attach, &ignored).ok());
  EXPECT_EQ(owners(), std::vector<std::string>{c});
}

TEST_F(LedgerServiceTest, TotalsAreZeroAndReplayEqualsLive) {
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Open("A" + std::to_string(i), {"M" + std::to_string(i)}).ok());
  v1::MutationResponse r;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(TopUp("A" + std::to_string(i), 10'000 * (i + 1), "K" + std::to_string(i), &r).ok());
  for (int i = 0; i < 20; ++i) Usage("C" + std::to_string(i), "A" + std::to_string(i), 7'000);
  WaitConsumed();
  v1::LedgerTotalsResponse totals;
  v1::LedgerTotalsRequest tr;
  ASSERT_TRUE(svc_->GetTotals(nullptr, &tr, &totals).ok());
  EXPECT_EQ(totals.total_minor(), 0);
  EXPECT_EQ(totals.accounts(), 20);
  EXPECT_EQ(totals.tenant_total_minor(), 10'000 * 210 - 20 * 7'000);
  EXPECT_EQ(totals.system_minor().at("revenue"), 20 * 7'000);

  // Rebuild every partition into a fresh store: the digest equals the live materialised view.
  ExpectReplayEqualsLive();
  auto report = svc_->log()->Verify();
  EXPECT_TRUE(report->ok) << report->problem;
}

TEST_F(LedgerServiceTest, ViewsLagThePostingsWhileQueriesSeeEveryAcknowledgedWrite) {
  RestartWritingViewsOnlyAtOpenAndStop();
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  EXPECT_EQ(StoredView("A1").account_id(), "A1");  // Listed from the batch that opened it.
  v1::MutationResponse r;
  ASSERT_TRUE(TopUp("A1", 10'000, "K1", &r).ok());
  Usage("C1", "A1", 3'000);
  WaitConsumed();
  // The postings wrote no view: the stored one is still the opening's...
  EXPECT_EQ(StoredView("A1").balance_minor(), 0);
  // ...while every query answers from the ledger.
  EXPECT_EQ(Get("A1").balance_minor(), 7'000);
  EXPECT_EQ(Get("A1").purchase_count(), 1);
  v1::ListAccountsRequest lr;
  v1::ListAccountsResponse list;
  ASSERT_TRUE(svc_->ListAccounts(nullptr, &lr, &list).ok());
  ASSERT_EQ(list.accounts_size(), 1);
  EXPECT_EQ(list.accounts(0).balance_minor(), 7'000);
  v1::LedgerTotalsResponse totals;
  ASSERT_TRUE(svc_->GetTotals(nullptr, nullptr, &totals).ok());
  EXPECT_EQ(totals.tenant_total_minor(), 7'000);
  EXPECT_EQ(totals.system_minor().at("revenue"), 3'000);
  // Replay compares each view at its own tag.
  ExpectReplayEqualsLive();
  // A clean stop writes what is owed: every change is then in the views.
  Restart();
  EXPECT_EQ(StoredView("A1").balance_minor(), 7'000);
  const uint32_t p = runtime::PartitionForKey("A1", kParts);
  auto mark = ReadViewMark(*svc_->log(), p);
  ASSERT_TRUE(mark.ok() && mark->has_value());
  EXPECT_EQ((*mark)->low, svc_->log()->Head(p));
  EXPECT_EQ((*mark)->seq, svc_->log()->Head(p));
  ExpectReplayEqualsLive();
}

TEST_F(LedgerServiceTest, ABatchWritesOneOwedViewPerSoManyPostingsOldestFirst) {
  options_.view_postings_per_write = 2;
  options_.view_max_age = std::chrono::hours(1);
  Restart();
  const auto ids = IdsIn(0, 3);
  for (const auto& id : ids) ASSERT_TRUE(Open(id, {"M" + id}).ok());
  v1::MutationResponse r;
  // Each call is a batch of its own: the second posting pays for one view, the oldest owed.
  ASSERT_TRUE(TopUp(ids[0], 100, "K0", &r).ok());
  EXPECT_EQ(StoredView(ids[0]).balance_minor(), 0);
  ASSERT_TRUE(TopUp(ids[1], 200, "K1", &r).ok());
  EXPECT_EQ(StoredView(ids[0]).balance_minor(), 100);
  EXPECT_EQ(StoredView(ids[1]).balance_minor(), 0);
  ASSERT_TRUE(TopUp(ids[2], 300, "K2", &r).ok());
  ASSERT_TRUE(TopUp(ids[0], 400, "K3", &r).ok());
  EXPECT_EQ(StoredView(ids[1]).balance_minor(), 200);
  EXPECT_EQ(StoredView(ids[2]).balance_minor(), 0);
  // ids[0] is owed again, behind ids[2]: every change before ids[2]'s top-up is in the views.
  auto mark = ReadViewMark(*svc_->log(), 0);
  ASSERT_TRUE(mark.ok() && mark->has_value());
  EXPECT_LT((*mark)->low, (*mark)->seq);
  ExpectReplayEqualsLive();
}

TEST_F(LedgerServiceTest, AViewOwedLongerThanTheMaximumAgeIsWrittenWithTheNextBatch) {
  options_.view_postings_per_write = 1'000'000;
  options_.view_max_age = std::chrono::milliseconds(1);
  Restart();
  const auto ids = IdsIn(0, 2);
  for (const auto& id : ids) ASSERT_TRUE(Open(id, {"M" + id}).ok());
  v1::MutationResponse r;
  ASSERT_TRUE(TopUp(ids[0], 100, "K0", &r).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(TopUp(ids[1], 200, "K1", &r).ok());
  EXPECT_EQ(StoredView(ids[0]).balance_minor(), 100);
  ExpectReplayEqualsLive();
}

TEST_F(LedgerServiceTest, ViewsWrittenAtEveryPaceEqualAReplayAtEveryMoment) {
  // One view per posting and any owed for a millisecond, from callers in parallel, with opens
  // in between: at every moment each view equals a replay at its tag.
  options_.view_postings_per_write = 1;
  options_.view_max_age = std::chrono::milliseconds(1);
  Restart();
  const auto ids = IdsIn(2, 12);
  std::vector<std::string> open;
  int64_t key = 0;
  for (const auto& id : ids) {
    ASSERT_TRUE(Open(id, {"M" + id}).ok());
    open.push_back(id);
    std::vector<std::thread> callers;
    for (const auto& target : open) {
      callers.emplace_back([&, target, k = key++] {
        v1::MutationResponse resp;
        EXPECT_TRUE(TopUp(target, 100, "K" + std::to_string(k), &resp).ok());
      });
    }
    for (auto& t : callers) t.join();
    ExpectReplayEqualsLive();
  }
  Restart();
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(StoredView(ids[i]).balance_minor(), 100 * static_cast<int64_t>(ids.size() - i)) << ids[i];
    EXPECT_EQ(StoredView(ids[i]).balance_minor(), Get(ids[i]).balance_minor());
  }
  ExpectReplayEqualsLive();
}

TEST_F(LedgerServiceTest, AReloadOwesTheViewsOfWhatTheLogHoldsPastTheLowWaterMark) {
  RestartWritingViewsOnlyAtOpenAndStop();
  const auto ids = IdsIn(1, 1);
  ASSERT_TRUE(Open(ids[0], {"M1"}).ok());
  v1::MutationResponse r;
  ASSERT_TRUE(TopUp(ids[0], 10'000, "K1", &r).ok());
  // A failed batch makes the writer reload its partition from the store (as on a restart after
  // kill -9): what it owed before must still be owed after, and a clean stop then writes it.
  ReloadOnWriter(1);
  EXPECT_EQ(StoredView(ids[0]).balance_minor(), 0);
  Restart();
  EXPECT_EQ(StoredView(ids[0]).balance_minor(), 10'000);
  ExpectReplayEqualsLive();
}

TEST_F(LedgerServiceTest, ALogWithoutMarksOrTagsGetsAMarkAtStartSoNothingOwedIsForgotten) {
  RestartWritingViewsOnlyAtOpenAndStop();
  const auto ids = IdsIn(3, 1);
  ASSERT_TRUE(Open(ids[0], {"M1"}).ok());
  v1::MutationResponse r;
  ASSERT_TRUE(TopUp(ids[0], 5'000, "K0", &r).ok());
  // As a log written before views were tagged: every view (untagged) as of the head, no marks.
  svc_->Stop();
  eventlog::WriteSet ws;
  for (uint32_t p = 0; p < kParts; ++p) ws.DeleteState(ViewMarkKey(p));
  ws.PutState("acct/" + ids[0], StoredView(ids[0]).SerializeAsString());
  ASSERT_TRUE(svc_->log()->Commit(std::move(ws)).ok());
  ExpectReplayEqualsLive();
  Restart();  // Writes the views again, tagged, and then the marks.
  auto mark = ReadViewMark(*svc_->log(), 3);
  ASSERT_TRUE(mark.ok() && mark->has_value());
  EXPECT_EQ((*mark)->low, svc_->log()->Head(3));
  auto stored = svc_->log()->GetState("acct/" + ids[0]);
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((**stored)[0], '\0') << "not tagged";
  ExpectReplayEqualsLive();
  // What is owed after the restart stays owed across a reload.
  ASSERT_TRUE(TopUp(ids[0], 10'000, "K1", &r).ok());
  ReloadOnWriter(3);
  Restart();
  EXPECT_EQ(StoredView(ids[0]).balance_minor(), 15'000);
  ExpectReplayEqualsLive();
}

TEST_F(LedgerServiceTest, ReplayFindsAViewThatIsWrongStaleOrAheadOfTheLog) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  const std::string opened_view = **svc_->log()->GetState("acct/A1");  // Tagged at the open.
  v1::MutationResponse r;
  ASSERT_TRUE(TopUp("A1", 10'000, "K1", &r).ok());
  svc_->Stop();  // Every view written: the mark's low is the head.
  ExpectReplayEqualsLive();
  const uint32_t p = runtime::PartitionForKey("A1", kParts);
  const uint64_t head = svc_->log()->Head(p);
  const std::string current_view = **svc_->log()->GetState("acct/A1");
  auto put_view = [&](const std::string& value) {
    eventlog::WriteSet ws;
    ws.PutState("acct/A1", value);
    ASSERT_TRUE(svc_->log()->Commit(std::move(ws)).ok());
  };
  auto replay = [&](const std::string& name) {
    auto fresh = OpenLog(name, "ledger");
    return ReplayViews(*svc_->log(), fresh.get());
  };
  // The real view, one minor unit off.
  uint64_t tag = 0;
  v1::Account off;
  ASSERT_TRUE(ParseAccountView(current_view, 0, &tag, &off).ok());
  EXPECT_EQ(tag, head);
  off.set_balance_minor(off.balance_minor() + 1);
  put_view(current_view.substr(0, 9) + off.SerializeAsString());
  auto report = replay("fresh-wrong");
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_NE(report->replayed_digest, report->live_digest);

  // A view right as of its tag, but older than a change the mark says every view includes: the
  // writer forgot to write it again.
  put_view(opened_view);
  auto stale = replay("fresh-stale");
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.status().code(), StatusCode::kDataLoss) << stale.status().ToString();
  EXPECT_NE(stale.status().message().find("but the account changed at event"), std::string::npos)
      << stale.status().ToString();

  Account ahead;
  ahead.id = "A1";
  eventlog::WriteSet ws;
  MaterializeAccount(ahead, head + 1, ws);
  ASSERT_TRUE(svc_->log()->Commit(std::move(ws)).ok());
  auto refused = replay("fresh-ahead");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kDataLoss) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("beyond the partition's end"), std::string::npos) << refused.status().ToString();

  put_view(current_view);
  eventlog::WriteSet mark;
  MaterializeViewMark(p, ViewMark{head, head + 1}, mark);
  ASSERT_TRUE(svc_->log()->Commit(std::move(mark)).ok());
  auto refused2 = replay("fresh-mark");
  ASSERT_FALSE(refused2.ok());
  EXPECT_NE(refused2.status().message().find("does not hold"), std::string::npos) << refused2.status().ToString();
  svc_.reset();  // Its restart would refuse the log too.
}

TEST_F(LedgerServiceTest, ABatchWritesAtMostTheCapOfOverdueViewsOldestFirst) {
  options_.view_postings_per_write = 1'000'000;
  options_.view_max_age = std::chrono::seconds(1);
  options_.view_max_per_batch = 2;
  Restart();
  const auto ids = IdsIn(0, 5);
  for (const auto& id : ids) ASSERT_TRUE(Open(id, {"M" + id}).ok());
  v1::MutationResponse r;
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_TRUE(TopUp(ids[i], 100 * static_cast<int64_t>(i + 1), "K" + std::to_string(i), &r).ok());
  }
  auto current = [&] {
    std::vector<bool> out;
    for (size_t i = 0; i < ids.size(); ++i) {
      out.push_back(StoredView(ids[i]).balance_minor() == 100 * static_cast<int64_t>(i + 1));
    }
    return out;
  };
  if (current() != std::vector<bool>(5, false)) {
    GTEST_SKIP() << "the set-up took over a second, so its own batches wrote overdue views";
  }
  // Once all five are overdue, a batch writes two of them, the oldest; the next batch two more.
  // Each snapshot is taken on the writer, by the command of the batch after: once the batch before
  // it committed, before its own views are written, and with no idle turn in between (an idle
  // turn writes overdue views too). Each command is queued from the reply of the batch before.
  runtime::Processor* proc = svc_->processor();
  std::promise<std::vector<bool>> after_first, after_second;
  auto snapshot_then = [&](std::promise<std::vector<bool>>* out, runtime::Reply then) {
    return [&, out, then](uint32_t, eventlog::WriteSet&) -> runtime::Reply {
      out->set_value(current());
      return then;
    };
  };
  ASSERT_TRUE(proc->SubmitTo(0, [&](uint32_t, eventlog::WriteSet&) -> runtime::Reply {
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    return [&](const Status& s, std::span<const eventlog::Envelope>) {
      EXPECT_TRUE(s.ok()) << s.ToString();
      auto then = [&](const Status& s2, std::span<const eventlog::Envelope>) {
        EXPECT_TRUE(s2.ok()) << s2.ToString();
        EXPECT_TRUE(proc->SubmitTo(0, snapshot_then(&after_second, nullptr), nullptr).ok());
      };
      EXPECT_TRUE(proc->SubmitTo(0, snapshot_then(&after_first, then), nullptr).ok());
    };
  }, nullptr).ok());
  EXPECT_EQ(after_first.get_future().get(), (std::vector<bool>{true, true, false, false, false}));
  EXPECT_EQ(after_second.get_future().get(), (std::vector<bool>{true, true, true, true, false}));
  ExpectReplayEqualsLive();
}

TEST_F(LedgerServiceTest, AQueryOverEveryPartitionFailsAsAWholeWhenOnePartitionRefusesIt) {
  for (uint32_t p = 0; p < kParts; ++p) ASSERT_TRUE(Open(IdsIn(p, 1)[0], {"M" + std::to_string(p)}).ok());
  // Partition 1's writer is held in a batch while its queue fills to the brim. (Filled only once
  // the writer is held: a writer still busy would take part of the queue with the held command.)
  runtime::Processor* proc = svc_->processor();
  std::shared_ptr<void> hold = HoldWriter(1);
  size_t queued = 0;
  while (proc->SubmitTo(1, [](uint32_t, eventlog::WriteSet&) -> runtime::Reply { return nullptr; }, nullptr).ok()) {
    ASSERT_LT(++queued, 1'000'000u) << "the queue never filled";
  }
  // The other partitions answer; the query as a whole is refused, once, with partition 1's reason.
  // (What the answers touch is shared: a late answer must not outlive it if an assertion fails.)
  struct Answers {
    std::atomic<int> totals = 0, list = 0;
    std::promise<grpc::Status> first_totals, first_list;
  };
  auto answers = std::make_shared<Answers>();
  svc_->GetTotalsAsync(v1::LedgerTotalsRequest(), [answers](grpc::Status s, v1::LedgerTotalsResponse* r) {
    EXPECT_EQ(r, nullptr);
    if (answers->totals++ == 0) answers->first_totals.set_value(s);
  });
  svc_->ListAccountsAsync(v1::ListAccountsRequest(), [answers](grpc::Status s, v1::ListAccountsResponse* r) {
    EXPECT_EQ(r, nullptr);
    if (answers->list++ == 0) answers->first_list.set_value(s);
  });
  for (auto* f : {&answers->first_totals, &answers->first_list}) {
    auto answer = f->get_future();
    ASSERT_EQ(answer.wait_for(std::chrono::seconds(30)), std::future_status::ready) << "the query was not answered";
    const grpc::Status s = answer.get();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
    EXPECT_NE(s.error_message().find("partition 1"), std::string::npos) << s.error_message();
  }
  hold.reset();
  // Once the queue has room again, the same queries succeed; no answer came twice.
  v1::LedgerTotalsRequest tr;
  v1::LedgerTotalsResponse t;
  grpc::Status again;
  for (int i = 0; i < 1000; ++i) {
    again = svc_->GetTotals(nullptr, &tr, &t);
    if (again.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(again.ok()) << again.error_message();
  v1::ListAccountsResponse l;
  v1::ListAccountsRequest lr;
  EXPECT_TRUE(svc_->ListAccounts(nullptr, &lr, &l).ok());
  EXPECT_EQ(l.accounts_size(), static_cast<int>(kParts));
  EXPECT_EQ(answers->totals.load(), 1);
  EXPECT_EQ(answers->list.load(), 1);
}

TEST_F(LedgerServiceTest, AnIdlePartitionWritesTheViewsItOwedTooLong) {
  options_.view_postings_per_write = 1'000'000;
  options_.view_max_age = std::chrono::milliseconds(1);
  Restart();
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  v1::MutationResponse r;
  ASSERT_TRUE(TopUp("A1", 10'000, "K1", &r).ok());
  // No batch comes after the top-up: the writer's idle turn writes the view.
  bool written = false;
  for (int i = 0; i < 300 && !written; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    written = StoredView("A1").balance_minor() == 10'000;
  }
  EXPECT_TRUE(written);
  ExpectReplayEqualsLive();
}

TEST_F(LedgerServiceTest, AMarkOfOneNumberIsUpgradedLikeAMissingOne) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  ASSERT_TRUE(Open("A2", {"M2"}).ok());
  v1::MutationResponse r;
  ASSERT_TRUE(TopUp("A1", 5'000, "K0", &r).ok());
  svc_->Stop();
  // As the form between the two: one number per mark, untagged views all of that moment.
  eventlog::WriteSet ws;
  for (uint32_t p = 0; p < kParts; ++p) ws.PutState(ViewMarkKey(p), std::to_string(svc_->log()->Head(p)));
  for (const char* id : {"A1", "A2"}) ws.PutState(std::string("acct/") + id, StoredView(id).SerializeAsString());
  ASSERT_TRUE(svc_->log()->Commit(std::move(ws)).ok());
  ExpectReplayEqualsLive();
  Restart();
  for (const char* id : {"A1", "A2"}) {
    auto stored = svc_->log()->GetState(std::string("acct/") + id);
    ASSERT_TRUE(stored.ok() && stored->has_value());
    EXPECT_EQ((**stored)[0], '\0') << id << " not tagged";
  }
  ASSERT_TRUE(TopUp("A1", 1'000, "K1", &r).ok());
  ASSERT_TRUE(TopUp("A2", 2'000, "K2", &r).ok());
  ExpectReplayEqualsLive();
  Restart();
  EXPECT_EQ(StoredView("A1").balance_minor(), 6'000);
  EXPECT_EQ(StoredView("A2").balance_minor(), 2'000);
  ExpectReplayEqualsLive();
}

TEST_F(LedgerServiceTest, AQueryFromAWriterThreadIsRefusedNotLeftToWaitForItself) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  std::promise<grpc::Status> queried;
  v1::TopUpRequest t;
  t.set_operator_id("op1");
  t.set_account_id("A1");
  t.set_idempotency_key("K1");
  t.set_amount_minor(100);
  t.set_method(v1::PAYMENT_METHOD_CASH);
  svc_->TopUpAsync(t, [&](grpc::Status, v1::MutationResponse*) {
    v1::GetAccountRequest g;
    g.set_account_id("A1");
    v1::Account a;
    queried.set_value(svc_->GetAccount(nullptr, &g, &a));
  });
  auto future = queried.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(future.get().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

// The reader runs what is posted in order, refuses work beyond its capacity while it is busy,
// runs what was queued when stopped, and refuses work after.
TEST(LogReaderTest, RunsInOrderBoundedAndStopsAfterWhatWasQueued) {
  LogReader reader(2);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> busy;
  std::vector<int> ran;
  ASSERT_TRUE(reader.Post([&] {
    busy.set_value();
    released.wait();
    ran.push_back(0);
  }).ok());
  busy.get_future().wait();  // The first one runs: the queue is empty again.
  ASSERT_TRUE(reader.Post([&] { ran.push_back(1); }).ok());
  ASSERT_TRUE(reader.Post([&] { ran.push_back(2); }).ok());
  Status full = reader.Post([&] { ran.push_back(3); });
  EXPECT_EQ(full.code(), StatusCode::kResourceExhausted) << full.ToString();
  std::thread stopper([&] { reader.Stop(); });
  release.set_value();
  stopper.join();
  EXPECT_EQ(ran, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(reader.Post([] {}).code(), StatusCode::kUnavailable);
  reader.Stop();  // Again: nothing to do.
}

// A statement is answered on the statement reader: a synchronous call from there is refused too,
// and an asynchronous one is answered. After Stop a statement is answered UNAVAILABLE.
TEST_F(LedgerServiceTest, ACallFromTheStatementReaderIsRefusedOnlyIfItWouldWait) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  std::promise<grpc::Status> sync, async;
  v1::GetStatementRequest sr;
  sr.set_account_id("A1");
  svc_->GetStatementAsync(sr, [&](grpc::Status status, v1::GetStatementResponse*) {
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(LogReader::OnReaderThread());
    v1::GetStatementResponse st;
    sync.set_value(svc_->GetStatement(nullptr, &sr, &st));
    svc_->GetStatementAsync(sr, [&](grpc::Status again, v1::GetStatementResponse*) { async.set_value(again); });
  });
  auto refused = sync.get_future();
  ASSERT_EQ(refused.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(refused.get().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  auto answered = async.get_future();
  ASSERT_EQ(answered.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(answered.get().ok());
  EXPECT_FALSE(LogReader::OnReaderThread());
  svc_->Stop();
  v1::GetStatementResponse st;
  EXPECT_EQ(svc_->GetStatement(nullptr, &sr, &st).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(LedgerServiceTest, ListAccountsPagesInIdOrderOverEveryPartition) {
  std::vector<std::string> ids;
  v1::MutationResponse r;
  for (int i = 0; i < 7; ++i) {
    ids.push_back("L" + std::to_string(i));
    ASSERT_TRUE(Open(ids.back(), {"ML" + std::to_string(i)}).ok());
    ASSERT_TRUE(TopUp(ids.back(), 100 * (i + 1), "KL" + std::to_string(i), &r).ok());
  }
  std::vector<std::string> listed;
  std::string token;
  int pages = 0;
  do {
    v1::ListAccountsRequest lr;
    lr.set_page_size(3);
    lr.set_page_token(token);
    v1::ListAccountsResponse page;
    ASSERT_TRUE(svc_->ListAccounts(nullptr, &lr, &page).ok());
    for (const auto& a : page.accounts()) {
      listed.push_back(a.account_id());
      EXPECT_EQ(a.balance_minor(), 100 * (std::stoi(a.account_id().substr(1)) + 1)) << a.account_id();
    }
    token = page.next_page_token();
    ASSERT_LT(++pages, 10);
  } while (!token.empty());
  EXPECT_EQ(listed, ids);
  EXPECT_EQ(pages, 3);
}

TEST_F(LedgerServiceTest, AnswersAfterTheDeadlineTouchNothingTheCallerFreed) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  Restart(std::chrono::milliseconds(1));
  // Many callers, each with a response on the heap that is freed as soon as its call returns;
  // with a 1 ms deadline most give up while their command is still queued. (Under ASan, a writer
  // that filled the caller's response after the deadline is a heap-use-after-free.)
  std::atomic<int> ok{0}, late{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 8; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        auto resp = std::make_unique<v1::MutationResponse>();
        grpc::Status s = TopUp("A1", 100, "T" + std::to_string(t) + "-" + std::to_string(i), resp.get());
        if (s.ok()) ok++;
        else if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) late++;
        else ADD_FAILURE() << s.error_message();
        resp.reset();
      }
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(ok + late, 320);
  // Retried with time to spare, every key took effect exactly once.
  Restart();
  v1::MutationResponse r;
  for (int t = 0; t < 8; ++t) {
    for (int i = 0; i < 40; ++i) ASSERT_TRUE(TopUp("A1", 100, "T" + std::to_string(t) + "-" + std::to_string(i), &r).ok());
  }
  EXPECT_EQ(Get("A1").balance_minor(), 320 * 100);
  EXPECT_EQ(Get("A1").purchase_count(), 320);
}

TEST_F(LedgerServiceTest, StatementListsEntriesWithRunningBalance) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  v1::MutationResponse r;
  ASSERT_TRUE(TopUp("A1", 100'000, "K1", &r).ok());
  clock_.AdvanceMicros(1'000'000);
  Usage("C1", "A1", 30'000);
  WaitConsumed();
  v1::GetStatementRequest sr;
  sr.set_account_id("A1");
  v1::GetStatementResponse st;
  ASSERT_TRUE(svc_->GetStatement(nullptr, &sr, &st).ok());
  ASSERT_GE(st.entries_size(), 2);
  const auto& last = st.entries(st.entries_size() - 1);
  EXPECT_EQ(last.kind(), v1::TXN_KIND_CHARGE);
  EXPECT_EQ(last.balance_after_minor(), 70'000);
  EXPECT_EQ(last.reading_id(), "R-C1");
  EXPECT_EQ(st.closing_balance_minor(), 70'000);
}

// An amount at int64's minimum cannot be negated for the posting's other leg: the request is
// refused, naming it, and the writer goes on. (It was accepted, and the wrapped posting stopped
// the process at Apply.)
TEST_F(LedgerServiceTest, AnAdjustmentAtInt64sMinimumIsRefusedAndTheLedgerGoesOn) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  const v1::AdjustRequest ad = AdjustRequest("A1", INT64_MIN, "K1", "typo", "op1");
  v1::MutationResponse r;
  const grpc::Status s = svc_->Adjust(nullptr, &ad, &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("-922337203685477.5808 is beyond what the ledger can hold"), std::string::npos)
      << s.error_message();
  EXPECT_EQ(Get("A1").balance_minor(), 0);
  ASSERT_TRUE(TopUp("A1", 1'000, "K2", &r).ok());
  EXPECT_EQ(Get("A1").balance_minor(), 1'000);
}

// A statement walks the account's entries back only as far as its period needs: to the first
// entry whose link says that it and all before it are earlier than the period. A charge whose
// usage ended before the period, posted after it began, is read (its place is later) but not
// listed; one whose usage is in the period is listed wherever it stands.
TEST_F(LedgerServiceTest, AStatementReadsTheEntriesBackOnlyAsFarAsItsPeriod) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  v1::MutationResponse r;
  std::vector<int64_t> times;  // Of the ten top-ups.
  for (int i = 0; i < 10; ++i) {
    clock_.AdvanceMicros(1'000'000);
    times.push_back(clock_.NowMicros());
    ASSERT_TRUE(TopUp("A1", 1'000, "K" + std::to_string(i), &r).ok());
  }
  auto usage = [&](const std::string& id, int64_t ended_at) {
    billing::v1::UsageCharged u;
    u.set_charge_id(id);
    u.set_account_id("A1");
    u.set_amount_minor(100);
    u.set_energy_wh(10);
    u.set_meter_id("M1");
    u.set_reading_id("R-" + id);
    u.set_tariff_id("T1");
    u.set_tariff_version(1);
    // A charge's time is its usage's: when the billing event says it occurred.
    eventlog::WriteSet ws;
    eventlog::NewEvent e;
    e.partition = runtime::PartitionForKey("A1", kParts);
    e.aggregate_key = "A1";
    e.type = billing::v1::UsageCharged::descriptor()->full_name();
    e.payload = u.SerializeAsString();
    e.occurred_at_us = ended_at;
    e.causation.set_request_id("test");
    ws.Append(std::move(e));
    ASSERT_TRUE(billing_->Commit(std::move(ws)).ok());
  };
  usage("C-old", times[1]);  // Before the period below.
  usage("C-in", times[8]);   // In it.
  WaitConsumed();
  // The statement the walk makes, and how many entries it read, by the dashboards' metric.
  auto entries_read = [] {
    for (const auto& family : metrics::Registry().Collect()) {
      if (family.name == "wattledger_ledger_statement_entries_read") return family.metric.at(0).histogram.sample_sum;
    }
    return 0.0;
  };
  v1::GetStatementRequest sr;
  sr.set_account_id("A1");
  sr.set_from_us(times[7]);
  v1::GetStatementResponse st;
  double before = entries_read();
  ASSERT_TRUE(svc_->GetStatement(nullptr, &sr, &st).ok());
  // Newest first: C-in, C-old, top-ups 9, 8 and 7 (in the period), and top-up 6, whose link says
  // nothing before it is in the period.
  EXPECT_EQ(entries_read() - before, 6);
  ASSERT_EQ(st.entries_size(), 4);  // Top-ups 7, 8, 9 and C-in, in log order.
  EXPECT_EQ(st.entries(0).time_us(), times[7]);
  EXPECT_EQ(st.entries(3).charge_id(), "C-in");
  EXPECT_EQ(st.opening_balance_minor(), 7'000);           // After top-up 6.
  EXPECT_EQ(st.closing_balance_minor(), 10'000 - 2 * 100);  // After C-in, the last listed.
  // C-old lies between the listed entries but belongs to an earlier period: the statement says
  // so, and what it says adds up.
  EXPECT_EQ(st.unlisted_entries(), 1);
  EXPECT_EQ(st.unlisted_minor(), -100);
  auto adds_up = [](const v1::GetStatementResponse& statement) {
    int64_t sum = statement.opening_balance_minor() + statement.unlisted_minor();
    for (const auto& e : statement.entries()) sum += e.amount_minor();
    return sum == statement.closing_balance_minor();
  };
  EXPECT_TRUE(adds_up(st));
  // From the beginning every entry is read: the same as before links carried the latest time.
  sr.set_from_us(0);
  before = entries_read();
  ASSERT_TRUE(svc_->GetStatement(nullptr, &sr, &st).ok());
  EXPECT_EQ(entries_read() - before, 12);
  EXPECT_EQ(st.entries_size(), 12);
  EXPECT_EQ(st.unlisted_entries(), 0);
  EXPECT_TRUE(adds_up(st));
  // The first two seconds: top-ups 0 and 1, and C-old, recorded after top-ups 2 to 9, which lie
  // between them and are of a later period.
  sr.set_to_us(times[2]);
  ASSERT_TRUE(svc_->GetStatement(nullptr, &sr, &st).ok());
  ASSERT_EQ(st.entries_size(), 3);
  EXPECT_EQ(st.entries(2).charge_id(), "C-old");
  EXPECT_EQ(st.unlisted_entries(), 8);
  EXPECT_EQ(st.unlisted_minor(), 8'000);
  EXPECT_TRUE(adds_up(st));
  ExpectReplayEqualsLive();
}

// The ledger keeps no statement entries: a statement and a txn's details are read back from the
// entry links and the log, the same before and after a restart.
TEST_F(LedgerServiceTest, StatementsAndTransactionsAreReadBackFromTheLog) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  v1::MutationResponse top, refund, adjust, reverse;
  ASSERT_TRUE(TopUp("A1", 100'000, "K1", &top).ok());
  const int64_t top_time = clock_.NowMicros();
  clock_.AdvanceMicros(1'000'000);
  Usage("C1", "A1", 30'000, 1'500);
  WaitConsumed();
  v1::RefundRequest rf;
  rf.set_operator_id("op2");
  rf.set_account_id("A1");
  rf.set_idempotency_key("K2");
  rf.set_amount_minor(20'000);
  rf.set_method(v1::PAYMENT_METHOD_WECHAT);
  rf.set_reason("moving out");
  ASSERT_TRUE(svc_->Refund(nullptr, &rf, &refund).ok());
  // 100,000 topped up, 30,000 charged, 20,000 refunded.
  ASSERT_TRUE(refund.has_balance());
  EXPECT_FALSE(refund.has_account());
  EXPECT_EQ(refund.balance().balance_minor(), 50'000);
  const v1::AdjustRequest ad = AdjustRequest("A1", -5'000, "K3", "meter fault", "op3");
  ASSERT_TRUE(svc_->Adjust(nullptr, &ad, &adjust).ok());
  const v1::ReverseRequest rr = ReverseRequest(refund.txn_id(), "refund entered twice", "op4");
  ASSERT_TRUE(svc_->Reverse(nullptr, &rr, &reverse).ok());

  auto check = [&] {
    v1::GetStatementRequest sr;
    sr.set_account_id("A1");
    v1::GetStatementResponse st;
    ASSERT_TRUE(svc_->GetStatement(nullptr, &sr, &st).ok());
    ASSERT_EQ(st.entries_size(), 5);
    const std::vector<v1::TxnKind> kinds = {v1::TXN_KIND_TOP_UP, v1::TXN_KIND_CHARGE, v1::TXN_KIND_REFUND,
                                            v1::TXN_KIND_ADJUSTMENT, v1::TXN_KIND_REVERSAL};
    const std::vector<int64_t> after = {100'000, 70'000, 50'000, 45'000, 65'000};
    for (int i = 0; i < st.entries_size(); ++i) {
      EXPECT_EQ(st.entries(i).kind(), kinds[i]) << i;
      EXPECT_EQ(st.entries(i).balance_after_minor(), after[i]) << i;
    }
    EXPECT_EQ(st.entries(0).txn_id(), top.txn_id());
    EXPECT_EQ(st.entries(0).idempotency_key(), "K1");
    EXPECT_EQ(st.entries(0).purchase_count(), 1);
    EXPECT_EQ(st.entries(1).charge_id(), "C1");
    EXPECT_EQ(st.entries(1).reading_id(), "R-C1");
    EXPECT_EQ(st.entries(1).energy_wh(), 1'500);
    EXPECT_EQ(st.entries(2).operator_id(), "op2");
    EXPECT_EQ(st.entries(2).reason(), "moving out");
    EXPECT_EQ(st.entries(4).original_txn_id(), refund.txn_id());
    EXPECT_EQ(st.opening_balance_minor(), 0);
    EXPECT_EQ(st.closing_balance_minor(), 65'000);
    // A period after the top-up: it opens with the top-up's balance.
    sr.set_from_us(top_time + 1);
    ASSERT_TRUE(svc_->GetStatement(nullptr, &sr, &st).ok());
    ASSERT_EQ(st.entries_size(), 4);
    EXPECT_EQ(st.opening_balance_minor(), 100'000);

    // A top-up keeps only part of itself in the ledger; the rest comes from its event.
    v1::GetTransactionRequest tr;
    tr.set_txn_id(top.txn_id());
    v1::Transaction t;
    ASSERT_TRUE(svc_->GetTransaction(nullptr, &tr, &t).ok());
    EXPECT_EQ(t.kind(), v1::TXN_KIND_TOP_UP);
    EXPECT_EQ(t.account_id(), "A1");
    EXPECT_EQ(t.amount_minor(), 100'000);
    EXPECT_EQ(t.time_us(), top_time);
    EXPECT_EQ(t.operator_id(), "op1");
    EXPECT_EQ(t.idempotency_key(), "K1");
    // What its receipt said: the method, the purchase number and the balance it left.
    ASSERT_TRUE(t.has_entry());
    EXPECT_EQ(t.entry().method(), "cash");
    EXPECT_EQ(t.entry().purchase_count(), 1);
    EXPECT_EQ(t.entry().balance_after_minor(), 100'000);
    tr.set_txn_id(refund.txn_id());
    ASSERT_TRUE(svc_->GetTransaction(nullptr, &tr, &t).ok());
    EXPECT_EQ(t.reason(), "moving out");
    EXPECT_EQ(t.entry().method(), "wechat");
    EXPECT_EQ(t.entry().balance_after_minor(), 50'000);
    // A charge: its meter, reading and tariff.
    EXPECT_EQ(t.reversed_by(), reverse.txn_id());
    EXPECT_EQ(t.posting().legs_size(), 2);
    const v1::StatementEntry& charge = st.entries(0);  // The period after the top-up.
    ASSERT_EQ(charge.kind(), v1::TXN_KIND_CHARGE);
    tr.set_txn_id(charge.txn_id());
    ASSERT_TRUE(svc_->GetTransaction(nullptr, &tr, &t).ok());
    EXPECT_EQ(t.kind(), v1::TXN_KIND_CHARGE);
    EXPECT_FALSE(t.entry().meter_id().empty());
    EXPECT_EQ(t.entry().meter_id(), charge.meter_id());
    EXPECT_EQ(t.entry().reading_id(), charge.reading_id());
    EXPECT_EQ(t.entry().tariff_id(), charge.tariff_id());
    EXPECT_EQ(t.entry().balance_after_minor(), 70'000);
    tr.set_txn_id(reverse.txn_id());
    ASSERT_TRUE(svc_->GetTransaction(nullptr, &tr, &t).ok());
    EXPECT_EQ(t.original_txn_id(), refund.txn_id());
    EXPECT_EQ(t.operator_id(), "op4");
    // Of an account never opened: not found, as before.
    sr.set_account_id("A9");
    EXPECT_EQ(svc_->GetStatement(nullptr, &sr, &st).error_code(), grpc::StatusCode::NOT_FOUND);
  };
  check();
  Restart();
  check();
  ExpectReplayEqualsLive();
}

// Each entry's event names the account's entry before it and the balance it leaves, so that a
// statement is read back through the log alone: two accounts of one partition, entries
// interleaved, each chained to its own.
TEST_F(LedgerServiceTest, EachEntryLinksToItsAccountsEntryBeforeIt) {
  const auto ids = IdsIn(1, 2);
  for (const auto& id : ids) ASSERT_TRUE(Open(id, {"M-" + id}).ok());
  v1::MutationResponse r;
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(TopUp(ids[i % 2], 10'000 * (i + 1), "K" + std::to_string(i), &r).ok());
  Usage("C1", ids[0], 2'500);
  WaitConsumed();
  std::map<std::string, std::pair<uint64_t, int64_t>> last;  // Account -> (seq, balance) of its last entry.
  auto read = svc_->log()->Read(1, 1, 1000);
  ASSERT_TRUE(read.ok());
  int entries = 0;
  for (const eventlog::Envelope& env : *read) {
    if (!IsLedgerEventType(env.type())) continue;
    auto event = DecodeEvent(env.type(), env.payload());
    ASSERT_TRUE(event.ok());
    const EntryLink* link = EntryLinkOf(*event);
    if (link == nullptr) continue;
    entries++;
    auto& [seq, balance] = last[EventAccountId(*event)];
    EXPECT_EQ(link->prev_entry_seq, seq) << env.event_id();
    EXPECT_EQ(EntrySeqOf(EventTxnId(*event)), env.seq()) << env.event_id();
    seq = env.seq();
    balance = link->balance_after_minor;
  }
  EXPECT_EQ(entries, 7);
  EXPECT_EQ(last[ids[0]].second, 10'000 + 30'000 + 50'000 - 2'500);
  EXPECT_EQ(last[ids[1]].second, 20'000 + 40'000 + 60'000);
  v1::GetStatementRequest sr;
  sr.set_account_id(ids[0]);
  v1::GetStatementResponse st;
  ASSERT_TRUE(svc_->GetStatement(nullptr, &sr, &st).ok());
  ASSERT_EQ(st.entries_size(), 4);
  EXPECT_EQ(st.entries(3).kind(), v1::TXN_KIND_CHARGE);
  EXPECT_EQ(st.entries(3).balance_after_minor(), last[ids[0]].second);
  EXPECT_EQ(st.closing_balance_minor(), last[ids[0]].second);
  // Each statement read is counted, with its time, for the dashboards.
  auto statements_read = [] {
    for (const auto& family : metrics::Registry().Collect()) {
      if (family.name != "wattledger_ledger_statement_seconds") continue;
      return family.metric.at(0).histogram.sample_count;
    }
    return uint64_t{0};
  };
  const uint64_t before = statements_read();
  ASSERT_TRUE(svc_->GetStatement(nullptr, &sr, &st).ok());
  EXPECT_EQ(statements_read(), before + 1);
  ExpectReplayEqualsLive();
}

namespace {
// A hand-made log of partition 0: the events as given, one commit each.
void AppendAll(eventlog::EventLog& log, const std::vector<Event>& events) {
  for (const Event& e : events) {
    Encoded enc = EncodeEvent(e);
    eventlog::WriteSet ws;
    eventlog::NewEvent ne;
    ne.partition = 0;
    ne.aggregate_key = EventAccountId(e);
    ne.type = enc.type;
    ne.payload = enc.payload;
    ne.actor = "op1";
    ne.causation.set_request_id(EventTxnId(e));
    ws.Append(std::move(ne));
    ASSERT_TRUE(log.Commit(std::move(ws)).ok());
  }
}
}  // namespace

// An entry whose link does not fit the account (here the second top-up names no entry before
// it) stops the fold with DATA_LOSS naming it; so do an entry without a link (a log written
// before the links) and an entry away from the seq its txn names.
// A link that does not point back refuses the statement instead of walking in a circle.
TEST_F(LedgerServiceTest, AnEntryLinkThatDoesNotFitIsDataLoss) {
  svc_->Stop();
  svc_.reset();
  const std::string a = IdsIn(0, 1)[0];
  const Posting ten{{Leg{false, a, 10}, Leg{true, "cash", -10}}};
  AccountOpened opened{"ledger/0/1", 1, "op1", a, "x", {}, "", {"M1"}, "", Mode::kPostpaid, Limits{}, 0, "", {}, {}};
  // The fold of a log holding `events` stops with DATA_LOSS saying `says`.
  auto fold_refuses = [&](const std::string& dir, const std::vector<Event>& events, const std::string& says) {
    SCOPED_TRACE(dir);
    auto log = OpenLog(dir, "ledger");
    AppendAll(*log, events);
    Ledger ledger;
    Status s = Rebuild(*log, 0, &ledger);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss);
    EXPECT_NE(s.message().find(says), std::string::npos) << s.ToString();
  };
  auto top_up = [&](const std::string& txn, int64_t count, EntryLink link) {
    return ToppedUp{txn, count + 1, "op1", a, "K" + std::to_string(count), 10, PaymentMethod::kCash, count, ten, link};
  };
  fold_refuses("unlinked", {opened, top_up("ledger/0/2", 1, EntryLink{0, 10}), top_up("ledger/0/3", 2, EntryLink{0, 20})},
               "names entry 0 before it, but the last entry of account " + a + " is 2");
  // As a build before the links wrote it: the entry carries none.
  fold_refuses("before-links", {opened, top_up("ledger/0/2", 1, {})},
               "carries no entry link: the log was written by a build before entries were linked");
  fold_refuses("misplaced", {opened, top_up("ledger/0/7", 1, EntryLink{0, 10})},
               "ledger/0/2 makes an entry of txn ledger/0/7, whose id names another event");
  // The right seq of another partition.
  fold_refuses("other-partition", {opened, top_up("ledger/3/2", 1, EntryLink{0, 10})}, "whose id names another event");
  {
    auto log = OpenLog("circular", "ledger");
    AppendAll(*log, {opened, top_up("ledger/0/2", 1, EntryLink{2, 10})});
    auto st = ReadStatement(*log, a, 2, 0, INT64_MAX);
    EXPECT_EQ(st.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(st.status().message().find("which is not earlier"), std::string::npos) << st.status().ToString();
    st = ReadStatement(*log, a, 1, 0, INT64_MAX);  // The opening makes no entry.
    EXPECT_EQ(st.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(st.status().message().find("makes no statement entry of account " + a), std::string::npos)
        << st.status().ToString();
  }
}

// Many top-ups in flight without a thread each: every one is answered exactly once, after its
// commit, with its own txn; a request refused before it is queued is answered at once.
TEST_F(LedgerServiceTest, AsyncMutationsAreEachAnsweredOnceAfterTheirCommit) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  ASSERT_TRUE(Open("A2", {"M2"}).ok());
  constexpr int kCalls = 2000;
  std::mutex mu;
  std::condition_variable cv;
  int answered = 0;
  std::set<std::string> txns;
  std::vector<std::string> errors;
  for (int i = 0; i < kCalls; ++i) {
    v1::TopUpRequest r;
    r.set_operator_id("op1");
    r.set_account_id(i % 2 ? "A1" : "A2");
    r.set_idempotency_key("K" + std::to_string(i));
    r.set_amount_minor(100);
    r.set_method(v1::PAYMENT_METHOD_WECHAT);
    svc_->TopUpAsync(r, [&, i](grpc::Status s, v1::MutationResponse* resp) {
      std::lock_guard lock(mu);
      if (!s.ok()) {
        errors.push_back(std::to_string(i) + ": " + s.error_message());
      } else {
        txns.insert(resp->txn_id());
        // The answer comes after the durable commit: the txn's event is in the log.
        auto p = static_cast<uint32_t>(std::stoul(resp->txn_id().substr(7, 1)));
        auto seq = std::stoull(resp->txn_id().substr(9));
        if (svc_->log()->Head(p) < seq) errors.push_back(resp->txn_id() + " answered before it was appended");
      }
      answered++;
      cv.notify_all();
    });
  }
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return answered == kCalls; }));
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(txns.size(), static_cast<size_t>(kCalls));
  lock.unlock();
  v1::GetAccountRequest g;
  g.set_account_id("A1");
  v1::Account a;
  ASSERT_TRUE(svc_->GetAccount(nullptr, &g, &a).ok());
  EXPECT_EQ(a.balance_minor(), 100 * kCalls / 2);
  EXPECT_EQ(a.purchase_count(), kCalls / 2);

  // Refused before queueing (too large): answered on the caller's thread, before TopUpAsync returns.
  v1::TopUpRequest big;
  big.set_account_id("A1");
  big.set_operator_id(std::string(20 << 10, 'x'));
  bool refused = false;
  svc_->TopUpAsync(big, [&](grpc::Status s, v1::MutationResponse* resp) {
    refused = s.error_code() == grpc::StatusCode::INVALID_ARGUMENT && resp == nullptr;
  });
  EXPECT_TRUE(refused);
}

// Through gRPC's callback server: many RPCs in flight at once, each answered after its commit.
TEST_F(LedgerServiceTest, GrpcTopUpsInFlightAreAnsweredThroughTheCallbackServer) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  svc_->Register(builder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto stub = v1::LedgerService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  constexpr int kCalls = 600;
  struct Call {
    grpc::ClientContext ctx;
    v1::TopUpRequest req;
    v1::MutationResponse resp;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::mutex mu;
  std::condition_variable cv;
  int answered = 0;
  std::vector<std::string> errors;
  std::set<std::string> txns;
  for (int i = 0; i < kCalls; ++i) {
    auto c = std::make_unique<Call>();
    c->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    c->req.set_operator_id("op1");
    c->req.set_account_id("A1");
    c->req.set_idempotency_key("G" + std::to_string(i));
    c->req.set_amount_minor(100);
    c->req.set_method(v1::PAYMENT_METHOD_ALIPAY);
    Call* raw = c.get();
    calls.push_back(std::move(c));
    stub->async()->TopUp(&raw->ctx, &raw->req, &raw->resp, [&, raw](grpc::Status s) {
      std::lock_guard lock(mu);
      if (s.ok()) {
        txns.insert(raw->resp.txn_id());
      } else {
        errors.push_back(s.error_message());
      }
      answered++;
      cv.notify_all();
    });
  }
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return answered == kCalls; }));
  }
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(txns.size(), static_cast<size_t>(kCalls));
  grpc::ClientContext ctx;
  v1::GetAccountRequest g;
  g.set_account_id("A1");
  v1::Account a;
  ASSERT_TRUE(stub->GetAccount(&ctx, g, &a).ok());
  EXPECT_EQ(a.balance_minor(), 100 * kCalls);
  // The other reads go the same way: answered by the writers, no thread waiting.
  grpc::ClientContext lctx, tctx, sctx, xctx, nctx;
  v1::ListAccountsResponse list;
  ASSERT_TRUE(stub->ListAccounts(&lctx, v1::ListAccountsRequest(), &list).ok());
  ASSERT_EQ(list.accounts_size(), 1);
  EXPECT_EQ(list.accounts(0).balance_minor(), 100 * kCalls);
  v1::LedgerTotalsResponse totals;
  ASSERT_TRUE(stub->GetTotals(&tctx, v1::LedgerTotalsRequest(), &totals).ok());
  EXPECT_EQ(totals.tenant_total_minor(), 100 * kCalls);
  EXPECT_EQ(totals.total_minor(), 0);
  v1::GetStatementRequest sr;
  sr.set_account_id("A1");
  v1::GetStatementResponse st;
  ASSERT_TRUE(stub->GetStatement(&sctx, sr, &st).ok());
  EXPECT_EQ(st.closing_balance_minor(), 100 * kCalls);
  v1::GetTransactionRequest tr;
  tr.set_txn_id(*txns.begin());
  v1::Transaction txn;
  ASSERT_TRUE(stub->GetTransaction(&xctx, tr, &txn).ok());
  EXPECT_EQ(txn.txn_id(), *txns.begin());
  g.set_account_id("nobody");
  grpc::Status missing = stub->GetAccount(&nctx, g, &a);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND) << missing.error_message();
  server->Shutdown();
}

// A record in the log that the hash chain vouches for but that does not fit the state (here a
// top-up of an account that was never opened) stops the start with an error naming it, rather
// than a crash at start-up.
TEST_F(LedgerServiceTest, AnImpossibleEventInTheLogIsDataLossNamingIt) {
  svc_->Stop();
  svc_.reset();
  std::string bad_id;
  {
    auto log = OpenLog("ledger", "ledger");
    ToppedUp t{"ledger/0/1", 1, "op1", "NOBODY", "K1", 100, PaymentMethod::kCash, 1,
               Posting{{Leg{false, "NOBODY", 100}, Leg{true, "cash", -100}}}, EntryLink{0, 100}};
    AppendAll(*log, {t});
    ASSERT_TRUE(log->Verify().ok());
    Ledger ledger;
    Status s = Rebuild(*log, 0, &ledger);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss);
    EXPECT_NE(s.message().find("ledger event ledger/0/1 (txn ledger/0/1)"), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find("unknown account NOBODY"), std::string::npos) << s.ToString();
  }
  LedgerOptions o;
  o.clock = &clock_;
  auto svc = std::make_unique<LedgerService>(OpenLog("ledger", "ledger"), o);
  auto bus = bus::NewLocalBus();
  ASSERT_TRUE(bus->Publish("billing", billing_.get()).ok());
  ASSERT_TRUE(svc->Publish(bus.get()).ok());
  Status started = svc->Start(bus.get());
  EXPECT_EQ(started.code(), StatusCode::kDataLoss) << started.ToString();
}

// A batch writes the views of the system balances it moved; the others' views already hold
// their balances. Without a record of what was written, every balance is written.
TEST_F(LedgerServiceTest, SystemViewsAreWrittenWhenTheirBalanceMoved) {
  Ledger ledger;
  auto run = [&](Command c) {
    auto d = ledger.Decide(c);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    ASSERT_TRUE(d->accepted()) << (d->rejection ? d->rejection->message : std::string("duplicate"));
    ledger.ApplyAll(d->events);
  };
  OpenAccount open;
  open.txn_id = "ledger/0/1";
  open.operator_id = "op1";
  open.customer_name = "Zhang San";
  open.account_id = "A1";
  open.meters = {"M1"};
  run(open);
  ledger::TopUp cash;
  cash.txn_id = "ledger/0/2";
  cash.operator_id = "op1";
  cash.account_id = "A1";
  cash.idempotency_key = "K1";
  cash.amount_minor = 100;
  run(cash);
  SystemViews written;
  eventlog::WriteSet first;
  MaterializeSystem(0, ledger, first, &written);
  EXPECT_EQ(first.state_count(), std::size(sys::kAll));
  EXPECT_EQ(written.at(std::string(sys::kCash)), ledger.SystemBalance(sys::kCash));
  eventlog::WriteSet unchanged;
  MaterializeSystem(0, ledger, unchanged, &written);
  EXPECT_EQ(unchanged.state_count(), 0u);
  ledger::TopUp wechat = cash;
  wechat.txn_id = "ledger/0/3";
  wechat.idempotency_key = "K2";
  wechat.method = PaymentMethod::kWechat;
  run(wechat);
  eventlog::WriteSet moved;
  MaterializeSystem(0, ledger, moved, &written);
  EXPECT_EQ(moved.state_count(), 1u);
  EXPECT_EQ(written.at(std::string(sys::kWechat)), ledger.SystemBalance(sys::kWechat));
  EXPECT_NE(ledger.SystemBalance(sys::kWechat), 0);
  eventlog::WriteSet all;
  MaterializeSystem(0, ledger, all);
  EXPECT_EQ(all.state_count(), std::size(sys::kAll));
}

// In-process callers skip gRPC's UTF-8 check. A request whose text the event log refuses is
// answered INVALID_ARGUMENT (retrying cannot help), records nothing, and the partition goes on.
TEST_F(LedgerServiceTest, ARequestWhoseActorTheLogWouldRefuseIsAnsweredInvalidArgumentNotRetry) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  v1::TopUpRequest r;
  r.set_operator_id("op\xff");  // Would become the event's actor: not UTF-8.
  r.set_account_id("A1");
  r.set_idempotency_key("K-bad");
  r.set_amount_minor(100);
  r.set_method(v1::PAYMENT_METHOD_CASH);
  v1::MutationResponse resp;
  grpc::Status s = svc_->TopUp(nullptr, &r, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("field operator_id is not valid UTF-8"), std::string::npos) << s.error_message();
  EXPECT_EQ(Get("A1").balance_minor(), 0);
  ASSERT_TRUE(TopUp("A1", 100, "K-good", &resp).ok());
  EXPECT_EQ(Get("A1").balance_minor(), 100);
}

// In-process callers skip gRPC's parser, which refuses text that is not UTF-8. Such text in a
// request is refused on its own, naming the field, before it reaches a batch: in the payload it
// would be an event no replay could read back, and in the envelope the log would refuse the
// whole batch, every other request in it with it.
TEST_F(LedgerServiceTest, TextThatIsNotUtf8IsRefusedAloneNamingTheField) {
  ASSERT_TRUE(Open("A1", {"M1"}).ok());
  v1::MutationResponse resp;
  ASSERT_TRUE(TopUp("A1", 10'000, "K0", &resp).ok());
  const v1::AdjustRequest adjust = AdjustRequest("A1", -100, "K-adjust", "meter \xff fault");  // Only in the payload.
  grpc::Status s = svc_->Adjust(nullptr, &adjust, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("reason"), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("UTF-8"), std::string::npos) << s.error_message();
  v1::OpenAccountRequest open;
  open.set_operator_id("op1");
  open.set_account_id("A2");
  open.set_customer_name("张三");
  open.add_phones("138\xc0");  // A repeated field.
  open.add_meters("M2");
  open.set_mode(v1::MODE_PREPAID);
  s = svc_->OpenAccount(nullptr, &open, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("phones"), std::string::npos) << s.error_message();

  // A bad request and a good one submitted together while the writer is held (before the fix,
  // both ran in one batch, which the log refused): the good one is recorded.
  std::shared_ptr<void> hold = HoldWriter(runtime::PartitionForKey("A1", kParts));
  auto bad = std::make_shared<std::promise<grpc::Status>>();
  auto good = std::make_shared<std::promise<grpc::Status>>();
  v1::TopUpRequest r;
  r.set_operator_id("op\xff");  // The envelope's actor.
  r.set_account_id("A1");
  r.set_idempotency_key("K-bad");
  r.set_amount_minor(100);
  r.set_method(v1::PAYMENT_METHOD_CASH);
  svc_->TopUpAsync(r, [bad](grpc::Status st, v1::MutationResponse*) { bad->set_value(st); });
  r.set_operator_id("op1");
  r.set_idempotency_key("K-good");
  svc_->TopUpAsync(r, [good](grpc::Status st, v1::MutationResponse*) { good->set_value(st); });
  hold.reset();
  auto fb = bad->get_future(), fg = good->get_future();
  ASSERT_EQ(fb.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  ASSERT_EQ(fg.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(fb.get().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  const grpc::Status g = fg.get();
  EXPECT_TRUE(g.ok()) << g.error_message();
  EXPECT_EQ(Get("A1").balance_minor(), 10'100);
  v1::GetAccountRequest never_opened;
  never_opened.set_account_id("A2");
  v1::Account a2;
  EXPECT_EQ(svc_->GetAccount(nullptr, &never_opened, &a2).error_code(), grpc::StatusCode::NOT_FOUND);
  ExpectReplayEqualsLive();
}


// ---- Checkpoints ----

class CheckpointTest : public LedgerServiceTest {
 protected:
  void SetUp() override {
    options_.checkpoint_dir = dir_.Sub("checkpoints");
    LedgerServiceTest::SetUp();
  }

  // Some of everything, on accounts spread over every partition; `round` keeps keys apart.
  void Traffic(int round) {
    for (uint32_t p = 0; p < kParts; ++p) {
      for (const std::string& id : IdsIn(p, 2)) {
        const std::string tag = id + "-" + std::to_string(round);
        if (round == 0) {
          ASSERT_TRUE(Open(id, {"M-" + id}, 50'000).ok());
        }
        v1::MutationResponse top, resp;
        ASSERT_TRUE(TopUp(id, 300'000, "K-" + tag, &top).ok());
        const v1::AdjustRequest adjust = AdjustRequest(id, -2'500, "A-" + tag, "meter fault");
        ASSERT_TRUE(svc_->Adjust(nullptr, &adjust, &resp).ok());
        const v1::ReverseRequest rr = ReverseRequest(top.txn_id(), "typed twice");
        ASSERT_TRUE(svc_->Reverse(nullptr, &rr, &resp).ok());
        Usage("C-" + tag, id, 4'000);
      }
    }
    WaitConsumed();
  }

  // Each partition's ledger, once the service stopped.
  std::vector<std::string> StopAndDump() {
    svc_->Stop();
    std::vector<std::string> dumps;
    for (uint32_t p = 0; p < kParts; ++p) dumps.push_back(svc_->CanonicalDump(p));
    return dumps;
  }

  // What a start that folds every event makes of the log now (checkpoints not read).
  std::vector<std::string> FoldedFromTheStart() {
    svc_->Stop();
    svc_.reset();
    LedgerOptions o = options_;
    o.checkpoint_dir.clear();
    std::swap(options_, o);
    Restart();
    std::swap(options_, o);
    for (uint32_t p = 0; p < kParts; ++p) EXPECT_EQ(svc_->starts()[p].folded, svc_->log()->Head(p));
    return StopAndDump();
  }

  std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  void WriteFile(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  }
};

TEST_F(CheckpointTest, ACleanStopWritesCheckpointsAndTheNextStartFoldsNothing) {
  for (uint32_t p = 0; p < kParts; ++p) {
    EXPECT_FALSE(svc_->starts()[p].from_checkpoint);
    EXPECT_EQ(svc_->starts()[p].checkpoint_unused, "") << "no checkpoint yet is no reason to warn";
  }
  Traffic(0);
  const std::vector<std::string> before = StopAndDump();
  for (uint32_t p = 0; p < kParts; ++p) {
    EXPECT_TRUE(std::filesystem::exists(CheckpointPath(options_.checkpoint_dir, p))) << p;
  }
  Restart();
  for (uint32_t p = 0; p < kParts; ++p) {
    const PartitionStart& s = svc_->starts()[p];
    EXPECT_TRUE(s.from_checkpoint) << p << ": " << s.checkpoint_unused;
    EXPECT_EQ(s.checkpoint_seq, svc_->log()->Head(p));
    EXPECT_EQ(s.folded, 0u);
  }
  // The keys, charges and meters of before the checkpoint are known: a retry is a duplicate, a
  // key taken in another partition is refused, a meter held is held.
  const std::string a = IdsIn(0, 1)[0];
  const std::string b = IdsIn(1, 1)[0];
  v1::MutationResponse resp;
  ASSERT_TRUE(TopUp(a, 300'000, "K-" + a + "-0", &resp).ok());
  EXPECT_TRUE(resp.duplicate());
  EXPECT_EQ(TopUp(b, 300'000, "K-" + a + "-0", &resp).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(Open("NEW", {"M-" + a}).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(StopAndDump(), before);
  Restart();
  Traffic(1);
  const std::vector<std::string> after = StopAndDump();
  EXPECT_NE(after, before);
  EXPECT_EQ(FoldedFromTheStart(), after);
  ExpectReplayEqualsLive();
}

// A crash leaves the checkpoint of the clean stop before it: the start loads that one and folds
// the events after it.
TEST_F(CheckpointTest, AnOlderCheckpointIsLoadedAndTheEventsAfterItFolded) {
  Traffic(0);
  svc_->Stop();
  std::vector<std::string> old_files;
  std::vector<uint64_t> old_heads;
  for (uint32_t p = 0; p < kParts; ++p) {
    old_files.push_back(ReadFile(CheckpointPath(options_.checkpoint_dir, p)));
    old_heads.push_back(svc_->log()->Head(p));
  }
  Restart();
  Traffic(1);
  const std::vector<std::string> want = StopAndDump();
  for (uint32_t p = 0; p < kParts; ++p) WriteFile(CheckpointPath(options_.checkpoint_dir, p), old_files[p]);
  Restart();
  for (uint32_t p = 0; p < kParts; ++p) {
    const PartitionStart& s = svc_->starts()[p];
    EXPECT_TRUE(s.from_checkpoint) << s.checkpoint_unused;
    EXPECT_EQ(s.checkpoint_seq, old_heads[p]);
    EXPECT_EQ(s.folded, svc_->log()->Head(p) - old_heads[p]);
    EXPECT_GT(s.folded, 0u);
  }
  EXPECT_EQ(StopAndDump(), want);
}

TEST_F(CheckpointTest, ACheckpointThatMayNotBeUsedIsSkippedWithItsReason) {
  Traffic(0);
  const std::vector<std::string> want = StopAndDump();
  const std::string path = CheckpointPath(options_.checkpoint_dir, 2);
  const std::string good = ReadFile(path);
  auto expect_skipped = [&](const std::string& why, bool others_used = true) {
    Restart();
    const PartitionStart& s = svc_->starts()[2];
    EXPECT_FALSE(s.from_checkpoint);
    EXPECT_NE(s.checkpoint_unused.find(why), std::string::npos) << s.checkpoint_unused;
    EXPECT_EQ(s.folded, svc_->log()->Head(2));
    EXPECT_EQ(svc_->starts()[1].from_checkpoint, others_used);
    svc_->Stop();
    EXPECT_EQ(svc_->CanonicalDump(2), want[2]);
  };
  std::string damaged = good;
  damaged[damaged.size() / 2] ^= 0x10;
  WriteFile(path, damaged);
  expect_skipped("is damaged");
  // A bit flipped in the header's build ID is damage too, not another build's file (review).
  damaged = good;
  damaged[damaged.find(BuildId()) + 3] ^= 0x01;
  WriteFile(path, damaged);
  {
    const CheckpointCheck audit = VerifyCheckpoint(*svc_->log(), options_.checkpoint_dir, 2);
    EXPECT_TRUE(audit.checked && !audit.equal) << audit.note;  // Found by the audit, not skipped.
  }
  expect_skipped("is damaged: its SHA-256 does not match");  // (Its stop writes a good one.)
  WriteFile(path, good.substr(0, good.size() - 1));
  expect_skipped("is damaged");
  // Written by another build (an upgrade): every partition folds, and the stop writes this
  // build's checkpoints.
  options_.checkpoint_build = "another-build";
  WriteFile(path, good);
  expect_skipped("was written by build " + BuildId() + ", and this is build another-build", false);
  Restart();
  EXPECT_TRUE(svc_->starts()[2].from_checkpoint) << svc_->starts()[2].checkpoint_unused;
}

TEST_F(CheckpointTest, ACheckpointOfAnotherLogOrPastItsEndIsRefused) {
  Traffic(0);
  svc_->Stop();
  auto other = OpenLog("other-ledger", "ledger");
  const uint32_t p = 1;
  // Another log as long as this one, with other events: the hash at the checkpoint's seq differs.
  for (uint64_t i = 0; i < svc_->log()->Head(p); ++i) {
    eventlog::WriteSet ws;
    eventlog::NewEvent e;
    e.partition = p;
    e.aggregate_key = "X";
    e.type = "test";
    e.payload = std::to_string(i);
    e.causation.set_request_id("test");
    ws.Append(std::move(e));
    auto committed = other->Commit(std::move(ws));
    ASSERT_TRUE(committed.ok()) << committed.status().ToString();
  }
  auto read = ReadCheckpoint(options_.checkpoint_dir, *other, p, {});
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(read.status().message().find("is of another log"), std::string::npos) << read.status().ToString();
  auto shorter = OpenLog("short-ledger", "ledger");
  read = ReadCheckpoint(options_.checkpoint_dir, *shorter, p, {});
  ASSERT_FALSE(read.ok());
  EXPECT_NE(read.status().message().find("past the end of the log's partition (0)"), std::string::npos)
      << read.status().ToString();
  read = ReadCheckpoint(options_.checkpoint_dir, *svc_->log(), p, {});
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->seq, svc_->log()->Head(p));
  // A state that holds the last event's txn, written as of the event before it (review): the
  // next txn id would be one it holds.
  ASSERT_TRUE(WriteCheckpoint(options_.checkpoint_dir, *svc_->log(), p, read->seq - 1, *read->ledger).ok());
  auto ahead = ReadCheckpoint(options_.checkpoint_dir, *svc_->log(), p, {});
  ASSERT_FALSE(ahead.ok());
  EXPECT_EQ(ahead.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(ahead.status().message().find("past its event " + std::to_string(read->seq - 1)), std::string::npos)
      << ahead.status().ToString();
  EXPECT_EQ(ReadCheckpoint(dir_.Sub("none"), *svc_->log(), p, {}).status().code(), StatusCode::kNotFound);
}

// A write that fails leaves no temporary file behind (on a full disk it would keep it full), and
// the last checkpoint as it was (review).
TEST_F(CheckpointTest, AFailedWriteLeavesNoTemporaryFile) {
  Traffic(0);
  svc_->Stop();
  const uint32_t p = 2;
  const std::string path = CheckpointPath(options_.checkpoint_dir, p);
  std::filesystem::remove(path);
  std::filesystem::create_directories(path + "/in-the-way");  // The rename over it fails.
  auto written = WriteCheckpoint(options_.checkpoint_dir, *svc_->log(), p, svc_->log()->Head(p), Ledger());
  ASSERT_FALSE(written.ok());
  EXPECT_NE(written.status().message().find("cannot rename"), std::string::npos) << written.status().ToString();
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

// Without a build ID any two builds would pass for one: such a build neither writes nor reads
// checkpoints, and still runs (review).
TEST_F(CheckpointTest, ABuildWithoutAnIdKeepsNoCheckpoints) {
  Traffic(0);
  svc_->Stop();
  EXPECT_EQ(WriteCheckpoint(options_.checkpoint_dir, *svc_->log(), 0, svc_->log()->Head(0), Ledger(), "")
                .status()
                .code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadCheckpoint(options_.checkpoint_dir, *svc_->log(), 0, {}, "").status().code(),
            StatusCode::kFailedPrecondition);
  std::filesystem::remove_all(options_.checkpoint_dir);
  options_.checkpoint_build = "";
  Restart();
  for (uint32_t p = 0; p < kParts; ++p) EXPECT_FALSE(svc_->starts()[p].from_checkpoint);
  Traffic(1);
  svc_->Stop();
  EXPECT_FALSE(std::filesystem::exists(options_.checkpoint_dir));
}

// A batch that fails after a start from a checkpoint reloads the partition from the checkpoint
// and the log: nothing of the batch stays, and nothing before it is lost.
TEST_F(CheckpointTest, AFailedBatchAfterACheckpointStartReloadsFromIt) {
  Traffic(0);
  svc_->Stop();
  Restart();
  const std::string a = IdsIn(3, 1)[0];
  const int64_t balance = Get(a).balance_minor();
  EXPECT_EQ(TopUpInAFailingBatch(a, 100'000, "K-failed").error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(svc_->starts()[3].from_checkpoint);
  EXPECT_EQ(Get(a).balance_minor(), balance);
  v1::MutationResponse resp;
  ASSERT_TRUE(TopUp(a, 100'000, "K-failed", &resp).ok());
  EXPECT_FALSE(resp.duplicate());
  EXPECT_EQ(Get(a).balance_minor(), balance + 100'000);
  const std::vector<std::string> live = StopAndDump();
  EXPECT_EQ(FoldedFromTheStart(), live);
}

// The audit compares each checkpoint with a fold of the log up to its seq: a checkpoint whose
// state is not that fold (well formed, so the start would use it) is found.
TEST_F(CheckpointTest, TheAuditFindsACheckpointThatIsNotTheFoldOfTheLog) {
  Traffic(0);
  svc_->Stop();
  for (uint32_t p = 0; p < kParts; ++p) {
    const CheckpointCheck c = VerifyCheckpoint(*svc_->log(), options_.checkpoint_dir, p);
    EXPECT_TRUE(c.present && c.checked && c.equal) << c.note;
    EXPECT_EQ(c.seq, svc_->log()->Head(p));
  }
  const uint32_t p = 2;
  Ledger wrong;  // What the partition held before its first event, written as of its head.
  ASSERT_TRUE(WriteCheckpoint(options_.checkpoint_dir, *svc_->log(), p, svc_->log()->Head(p), wrong).ok());
  const CheckpointCheck c = VerifyCheckpoint(*svc_->log(), options_.checkpoint_dir, p);
  EXPECT_TRUE(c.present && c.checked);
  EXPECT_FALSE(c.equal);
  EXPECT_NE(c.note.find("differs from the fold of the log up to event"), std::string::npos) << c.note;
  const CheckpointCheck none = VerifyCheckpoint(*svc_->log(), dir_.Sub("no-checkpoints"), p);
  EXPECT_FALSE(none.present);
  const CheckpointCheck other = VerifyCheckpoint(*svc_->log(), options_.checkpoint_dir, p + 1);
  EXPECT_TRUE(other.equal) << other.note;
}

}  // namespace
}  // namespace wattledger::ledger::adapters

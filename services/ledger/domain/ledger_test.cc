// Given events, when a command, then events: one test (or more) per rule of the ledger.
#include "services/ledger/domain/ledger.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "services/ledger/domain/snapshot.h"
#include "wattledger/money/money.h"

namespace wattledger::ledger {
namespace {

constexpr int64_t Y(int64_t yuan) { return yuan * money::kMinorPerYuan; }

LedgerConfig TestConfig() {
  LedgerConfig c;
  c.default_credit_limit_minor = Y(10);
  c.default_alarm1_minor = Y(20);
  c.default_alarm2_minor = Y(10);
  c.default_hoarding_cap_minor = Y(5000);
  return c;
}

class LedgerTest : public ::testing::Test {
 protected:
  std::string NextTxn() { return "T" + std::to_string(++txn_seq_); }
  int64_t Now() { return 1'700'000'000'000'000 + txn_seq_ * 1'000'000; }

  // Decides without applying; the command must not be a caller error.
  Decision When(Command c) {
    auto r = ledger_.Decide(c);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : Decision{};
  }
  // Decides and applies; returns the decision. Keeps the statement entries it made, as the
  // adapter reads them back (EntryOf of the event, which carries the balance after it).
  // `touched`, if given, gets the accounts ApplyAll names.
  Decision Do(Command c, std::vector<const Account*>* touched = nullptr) {
    Decision d = When(std::move(c));
    ledger_.ApplyAll(d.events, touched);
    for (const Event& event : d.events) {
      std::optional<StatementEntry> e = EntryOf(event);
      if (e) entries_[EventAccountId(event)].push_back(*e);
    }
    all_events_.insert(all_events_.end(), d.events.begin(), d.events.end());
    return d;
  }
  const std::vector<StatementEntry>& Entries(const std::string& id) { return entries_[id]; }
  // The statement of `id` over [from, to) as the adapter builds it from the entries.
  Statement StatementOf(const std::string& id, int64_t from_us, int64_t to_us) {
    std::vector<EntryRow> rows;
    for (const StatementEntry& e : Entries(id)) rows.push_back({e.time_us, e.balance_after_minor});
    const StatementPlan plan = PlanStatement(rows, from_us, to_us);
    Statement s{id, from_us, to_us, plan.opening_balance_minor, plan.closing_balance_minor, {}};
    for (size_t i : plan.rows) s.entries.push_back(Entries(id)[i]);
    return s;
  }
  // Given: a command that must be accepted.
  std::vector<Event> Given(Command c) {
    Decision d = Do(std::move(c));
    EXPECT_TRUE(d.accepted()) << (d.rejection ? d.rejection->message : "duplicate");
    return d.events;
  }
  void ExpectRejected(const Decision& d, StatusCode code, std::string_view rule,
                      std::string_view message_part = "") {
    ASSERT_TRUE(d.rejection.has_value()) << "expected a rejection for rule " << rule;
    EXPECT_EQ(d.rejection->code, code) << d.rejection->message;
    EXPECT_EQ(d.rejection->rule, rule) << d.rejection->message;
    EXPECT_NE(d.rejection->message.find(message_part), std::string::npos) << d.rejection->message;
    EXPECT_TRUE(d.events.empty());
    EXPECT_FALSE(d.duplicate);
  }

  OpenAccount OpenCmd(std::string id, std::vector<std::string> meters = {"M1"}) {
    OpenAccount c;
    c.txn_id = NextTxn();
    c.time_us = Now();
    c.operator_id = "op1";
    c.account_id = std::move(id);
    c.customer_name = "张三";
    c.phones = {"13800000000"};
    c.room = "B2-301";
    c.meters = std::move(meters);
    c.tariff_id = "flat-1";
    return c;
  }
  TopUp TopUpCmd(std::string account, int64_t amount, std::string key,
                 PaymentMethod m = PaymentMethod::kCash) {
    return TopUp{NextTxn(), Now(), "op1", std::move(account), std::move(key), amount, m, std::nullopt};
  }
  Refund RefundCmd(std::string account, int64_t amount, std::string key) {
    return Refund{NextTxn(), Now(), "op1", std::move(account), std::move(key), amount,
                  PaymentMethod::kCash, "moving out"};
  }
  Reverse ReverseCmd(std::string original, std::string key = "") {
    return Reverse{NextTxn(), Now(), "op2", std::move(key), std::move(original), "entered twice"};
  }
  Adjust AdjustCmd(std::string account, int64_t amount, std::string key) {
    return Adjust{NextTxn(), Now(), "op1", std::move(account), std::move(key), amount, "meter fault credit"};
  }
  Charge ChargeCmd(std::string account, int64_t amount, std::string charge_id) {
    return Charge{NextTxn(), Now(), std::move(charge_id), std::move(account), amount, 1500, "M1",
                  "R-" + std::to_string(txn_seq_), "flat-1", 3};
  }

  int64_t Balance(std::string_view id) { return ledger_.FindAccount(id)->balance_minor; }
  const Account& Acc(std::string_view id) { return *ledger_.FindAccount(id); }
  int64_t SumOfAllBalances() {
    int64_t sum = 0;
    for (const auto& [id, a] : ledger_.state().accounts) sum += a.balance_minor;
    for (const auto& [n, b] : ledger_.state().system_balances) sum += b;
    return sum;
  }
  void TearDown() override {
    ledger_.CheckInvariants();
    EXPECT_EQ(SumOfAllBalances(), 0);
    // Replay equals live, for every test.
    Ledger replayed(TestConfig());
    replayed.ApplyAll(all_events_);
    EXPECT_TRUE(replayed == ledger_);
    EXPECT_EQ(replayed.CanonicalDump(), ledger_.CanonicalDump());
    // And a checkpoint of it loads back equal, whatever the test left (an old INT64_MIN balance
    // too: what the fold accepts, a load must).
    auto loaded = LoadFromString(SaveToString(ledger_), TestConfig());
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    EXPECT_TRUE(**loaded == ledger_);
  }

  Ledger ledger_{TestConfig()};
  std::vector<Event> all_events_;
  std::map<std::string, std::vector<StatementEntry>> entries_;
  int64_t txn_seq_ = 0;
};

template <typename T>
size_t Count(const std::vector<Event>& events) {
  size_t n = 0;
  for (const Event& e : events) n += std::holds_alternative<T>(e) ? 1 : 0;
  return n;
}

// ---- Open ------------------------------------------------------------------------------------

// Prefetch reads the maps' slots before they are looked up, empty or not, for every kind of
// command: what this test checks is that it stays in bounds (the ASan build runs it), and that a
// command decided after it is decided as it would be without.
TEST_F(LedgerTest, PrefetchReadsInBoundsForEveryCommandAndChangesNoDecision) {
  for (const Command& c : std::vector<Command>{TopUpCmd("A1", Y(1), "K0"), ChargeCmd("A1", Y(1), "C0"), OpenCmd("A1")}) {
    ledger_.Prefetch(c, 2);
    ledger_.Prefetch(c, 1);
  }
  Given(OpenCmd("A1"));
  Given(TopUpCmd("A1", Y(100), "K1"));
  const std::vector<Command> commands = {TopUpCmd("A1", Y(5), "K1"),    TopUpCmd("A1", Y(5), "K2"),
                                         RefundCmd("A1", Y(5), "K3"),    AdjustCmd("A1", -Y(5), "K4"),
                                         ChargeCmd("A1", Y(5), "C1"),    TopUpCmd("nobody", Y(5), "K5"),
                                         ReverseCmd("T2"),               OpenCmd("A2", {"M2"})};
  for (const Command& c : commands) {
    const Decision unprimed = When(c);
    ledger_.Prefetch(c, 2);
    ledger_.Prefetch(c, 1);
    const Decision primed = When(c);
    EXPECT_EQ(primed.txn_id, unprimed.txn_id);
    EXPECT_EQ(primed.duplicate, unprimed.duplicate);
    EXPECT_EQ(primed.rejection, unprimed.rejection);
    EXPECT_EQ(primed.events, unprimed.events);
  }
}

TEST_F(LedgerTest, OpenEmitsAccountOpenedAndTheInitialLevel) {
  OpenAccount c = OpenCmd("A1", {"M1", "M2"});
  Decision d = Do(c);
  ASSERT_TRUE(d.accepted());
  EXPECT_EQ(d.txn_id, c.txn_id);
  AccountOpened opened{c.txn_id, c.time_us, "op1", "A1", "张三", {"13800000000"}, "B2-301", {"M1", "M2"},
                       "flat-1", Mode::kPrepaid, Limits{Y(10), Y(20), Y(10), Y(5000)}, 0, "", {}, {}};
  std::vector<Event> want{opened, LevelChanged{c.txn_id, c.time_us, "A1", Level::kNormal, Level::kAlarm2, 0}};
  EXPECT_EQ(d.events, want);
  EXPECT_EQ(Acc("A1").level, Level::kAlarm2);
  EXPECT_EQ(Acc("A1").state, AccountState::kOpen);
  EXPECT_EQ(ledger_.FindTxn(c.txn_id)->kind, TxnKind::kOpen);
}

TEST_F(LedgerTest, OpenTakesExplicitLimitsOverConfigDefaults) {
  OpenAccount c = OpenCmd("A1");
  c.credit_limit_minor = Y(50);
  c.alarm1_minor = Y(30);
  c.alarm2_minor = Y(5);
  c.hoarding_cap_minor = 0;
  Given(c);
  EXPECT_EQ(Acc("A1").limits, (Limits{Y(50), Y(30), Y(5), 0}));
}

TEST_F(LedgerTest, OpeningBalanceFromAnOldMeterIsPostedFromMigration) {
  OpenAccount c = OpenCmd("A1");
  c.opening_balance_minor = Y(88);
  c.opening_balance_source = "old meter OM-7";
  Decision d = Do(c);
  ASSERT_TRUE(d.accepted());
  const auto& opened = std::get<AccountOpened>(d.events[0]);
  EXPECT_EQ(opened.posting, (Posting{{Leg{false, "A1", Y(88)}, Leg{true, "migration", -Y(88)}}}));
  ASSERT_EQ(d.events.size(), 1u);  // 88 is above alarm 1: the level stays normal.
  EXPECT_EQ(Balance("A1"), Y(88));
  EXPECT_EQ(ledger_.SystemBalance("migration"), -Y(88));
  ASSERT_EQ(Entries("A1").size(), 1u);
  EXPECT_EQ(Entries("A1")[0].kind, TxnKind::kOpen);
  EXPECT_EQ(Entries("A1")[0].balance_after_minor, Y(88));
  EXPECT_NE(Entries("A1")[0].reason.find("OM-7"), std::string::npos);
  EXPECT_EQ(Acc("A1").purchase_count, 0);
}

TEST_F(LedgerTest, CarriedArrearsBeyondCreditCutSupplyAtOpen) {
  OpenAccount c = OpenCmd("A1");
  c.opening_balance_minor = -Y(11);
  c.opening_balance_source = "old meter OM-9";
  Decision d = Do(c);
  ASSERT_TRUE(d.accepted());
  ASSERT_EQ(d.events.size(), 3u);
  EXPECT_EQ(std::get<LevelChanged>(d.events[1]).to, Level::kCutoff);
  const auto& cut = std::get<SupplyCutRequired>(d.events[2]);
  EXPECT_EQ(cut.cutoff_line_minor, -Y(10));
  EXPECT_EQ(cut.meters, std::vector<std::string>{"M1"});
  EXPECT_TRUE(Acc("A1").supply_cut);
}

TEST_F(LedgerTest, PostpaidAccountsHaveNoLevels) {
  OpenAccount c = OpenCmd("A1");
  c.mode = Mode::kPostpaid;
  Decision d = Do(c);
  EXPECT_EQ(d.events.size(), 1u);
  Decision charge = Do(ChargeCmd("A1", Y(500), "C1"));
  ASSERT_TRUE(charge.accepted());
  EXPECT_EQ(charge.events.size(), 1u);  // No level change, no cut-off for postpaid.
  EXPECT_EQ(Balance("A1"), -Y(500));
  EXPECT_FALSE(Acc("A1").supply_cut);
}

TEST_F(LedgerTest, OpenRejections) {
  Given(OpenCmd("A1", {"M1"}));
  ExpectRejected(When(OpenCmd("A1", {"M9"})), StatusCode::kAlreadyExists, "account_exists", "A1");
  ExpectRejected(When(OpenCmd("A2", {"M1"})), StatusCode::kFailedPrecondition, "meter_taken",
                 "meter M1 already belongs to account A1");
  ExpectRejected(When(OpenCmd("A2", {})), StatusCode::kInvalidArgument, "meter_required");
  ExpectRejected(When(OpenCmd("A2", {"M5", "M5"})), StatusCode::kInvalidArgument, "meter_listed_twice");
  OpenAccount no_name = OpenCmd("A2", {"M5"});
  no_name.customer_name = "";
  ExpectRejected(When(no_name), StatusCode::kInvalidArgument, "customer_name_required");
  OpenAccount bad_alarms = OpenCmd("A2", {"M5"});
  bad_alarms.alarm1_minor = Y(5);
  bad_alarms.alarm2_minor = Y(6);
  ExpectRejected(When(bad_alarms), StatusCode::kInvalidArgument, "limits",
                 "alarm level 1 (5.0000) must be >= alarm level 2 (6.0000)");
  OpenAccount bad_credit = OpenCmd("A2", {"M5"});
  bad_credit.credit_limit_minor = -1;
  ExpectRejected(When(bad_credit), StatusCode::kInvalidArgument, "limits", "credit limit must be >= 0");
  OpenAccount no_op = OpenCmd("A2", {"M5"});
  no_op.operator_id = "";
  ExpectRejected(When(no_op), StatusCode::kInvalidArgument, "operator_required");
  OpenAccount no_id = OpenCmd("", {"M5"});
  ExpectRejected(When(no_id), StatusCode::kInvalidArgument, "account_id_required");
}

// ---- Caller errors (not rejections) ----------------------------------------------------------

TEST_F(LedgerTest, MissingOrReusedTxnIdIsACallerErrorNotARejection) {
  OpenAccount c = OpenCmd("A1");
  c.txn_id = "";
  auto r = ledger_.Decide(c);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  OpenAccount first = OpenCmd("A1");
  Given(first);
  TopUp t = TopUpCmd("A1", Y(1), "K1");
  t.txn_id = first.txn_id;
  auto reused = ledger_.Decide(t);
  ASSERT_FALSE(reused.ok());
  EXPECT_EQ(reused.status().code(), StatusCode::kInternal);
}

// The adapter's ids ("<log>/<partition>/<seq>") grow, and the ledger skips the lookup for one
// above every number recorded under its prefix. A reuse is found whatever the number, under any
// prefix, also past the number of prefixes it keeps marks for.
TEST_F(LedgerTest, ReusedTxnIdsOfTheAdaptersFormAreFoundWhateverTheirNumber) {
  auto with_id = [](auto c, std::string id) {
    c.txn_id = std::move(id);
    return c;
  };
  auto reused = [&](const Command& c) {
    auto r = ledger_.Decide(c);
    return !r.ok() && r.status().code() == StatusCode::kInternal;
  };
  Given(with_id(OpenCmd("A1"), "ledger/0/1"));
  Given(with_id(TopUpCmd("A1", Y(1), "K1"), "ledger/0/7"));
  EXPECT_TRUE(reused(with_id(TopUpCmd("A1", Y(1), "K2"), "ledger/0/7")));
  EXPECT_TRUE(reused(with_id(TopUpCmd("A1", Y(1), "K2"), "ledger/0/1")));
  Given(with_id(TopUpCmd("A1", Y(1), "K2"), "ledger/0/5"));  // Below the mark, unused.
  EXPECT_TRUE(reused(with_id(TopUpCmd("A1", Y(1), "K3"), "ledger/0/5")));
  Given(with_id(TopUpCmd("A1", Y(1), "K3"), "ledger/0/007"));  // Another id than ledger/0/7.
  Given(with_id(TopUpCmd("A1", Y(1), "K4"), "ledger/1/3"));
  EXPECT_TRUE(reused(with_id(TopUpCmd("A1", Y(1), "K5"), "ledger/1/3")));
  EXPECT_TRUE(reused(with_id(TopUpCmd("A1", Y(1), "K5"), "ledger/0/007")));
  for (int i = 0; i < 20; ++i) {
    Given(with_id(TopUpCmd("A1", Y(1), "P" + std::to_string(i)), "p" + std::to_string(i) + "/1"));
  }
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE(reused(with_id(TopUpCmd("A1", Y(1), "Q"), "p" + std::to_string(i) + "/1"))) << i;
  }
  EXPECT_TRUE(reused(with_id(TopUpCmd("A1", Y(1), "Q"), "ledger/0/7")));
  EXPECT_TRUE(ledger_.Decide(with_id(TopUpCmd("A1", Y(1), "Q"), "ledger/0/8")).ok());
  // Read back from a log, a record under an entry txn's id is found in the other map.
  Ledger fresh;
  ASSERT_TRUE(fresh.TryApplyAll(all_events_).ok());
  const auto& e = std::get<ToppedUp>(all_events_[2]);  // The top-up ledger/0/7.
  ASSERT_EQ(e.txn_id, "ledger/0/7");
  Status s = fresh.TryApplyAll({AccountOpened{"ledger/0/7", 9, "op", "A2", "x", {}, "", {"M2"}, "",
                                              Mode::kPrepaid, Limits{}, 0, "", {}, {}}});
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_NE(s.message().find("txn id used twice: ledger/0/7"), std::string::npos) << s.ToString();
}

// ---- Meters ----------------------------------------------------------------------------------

TEST_F(LedgerTest, AttachAndDetachMeters) {
  Given(OpenCmd("A1", {"M1"}));
  Given(OpenCmd("A2", {"M2"}));
  AttachMeter attach{NextTxn(), Now(), "op1", "A1", "M3"};
  Decision d = Do(attach);
  ASSERT_TRUE(d.accepted());
  EXPECT_EQ(d.events, (std::vector<Event>{MeterAttached{attach.txn_id, attach.time_us, "op1", "A1", "M3"}}));
  EXPECT_EQ(Acc("A1").meters, (std::vector<std::string>{"M1", "M3"}));
  ExpectRejected(When(AttachMeter{NextTxn(), Now(), "op1", "A1", "M3"}), StatusCode::kAlreadyExists,
                 "meter_already_attached");
  ExpectRejected(When(AttachMeter{NextTxn(), Now(), "op1", "A1", "M2"}), StatusCode::kFailedPrecondition,
                 "meter_taken", "meter M2 already belongs to account A2");
  ExpectRejected(When(AttachMeter{NextTxn(), Now(), "op1", "A9", "M4"}), StatusCode::kNotFound,
                 "unknown_account");
  ExpectRejected(When(AttachMeter{NextTxn(), Now(), "op1", "A1", ""}), StatusCode::kInvalidArgument,
                 "meter_id_required");

  DetachMeter detach{NextTxn(), Now(), "op1", "A1", "M1"};
  ASSERT_TRUE(Do(detach).accepted());
  EXPECT_EQ(Acc("A1").meters, std::vector<std::string>{"M3"});
  ExpectRejected(When(DetachMeter{NextTxn(), Now(), "op1", "A1", "M1"}), StatusCode::kNotFound,
                 "meter_not_attached");
  ExpectRejected(When(DetachMeter{NextTxn(), Now(), "op1", "A1", "M3"}), StatusCode::kFailedPrecondition,
                 "last_meter", "last meter");
  // The detached meter is free for another account.
  EXPECT_TRUE(Do(AttachMeter{NextTxn(), Now(), "op1", "A2", "M1"}).accepted());
}

TEST_F(LedgerTest, CutAndRestoreEventsNameTheCurrentMeters) {
  Given(OpenCmd("A1", {"M1"}));
  Given(AttachMeter{NextTxn(), Now(), "op1", "A1", "M2"});
  Decision d = Do(ChargeCmd("A1", Y(11), "C1"));
  ASSERT_EQ(Count<SupplyCutRequired>(d.events), 1u);
  EXPECT_EQ(std::get<SupplyCutRequired>(d.events.back()).meters, (std::vector<std::string>{"M1", "M2"}));
}

// A meter attached to a cut-off account joins it cut: otherwise the tenant could draw, through
// the new meter, electricity the account has neither money nor credit for. Attached to an
// account with supply, it may be supplied, however it was left under an earlier account.
TEST_F(LedgerTest, AMeterAttachedToACutOffAccountIsCutToo) {
  Given(OpenCmd("A1", {"M1"}));
  Given(OpenCmd("A2", {"M2"}));
  Given(ChargeCmd("A1", Y(11), "C1"));  // Credit limit 10: cut off.
  ASSERT_TRUE(Acc("A1").supply_cut);
  AttachMeter to_cut{NextTxn(), Now(), "op1", "A1", "M3"};
  Decision d = Do(to_cut);
  ASSERT_TRUE(d.accepted());
  EXPECT_EQ(d.events, (std::vector<Event>{MeterAttached{to_cut.txn_id, to_cut.time_us, "op1", "A1", "M3",
                                                        /*supply_cut=*/true}}));
  // The next crossing names it with the others.
  Decision top = Do(TopUpCmd("A1", Y(100), "K1"));
  ASSERT_EQ(Count<SupplyRestoreAllowed>(top.events), 1u);
  EXPECT_EQ(std::get<SupplyRestoreAllowed>(top.events.back()).meters, (std::vector<std::string>{"M1", "M3"}));
  // A meter that was cut under A1 and moves to A2, which has supply, may be supplied.
  Given(ChargeCmd("A1", Y(111), "C2"));
  ASSERT_TRUE(Acc("A1").supply_cut);
  Given(DetachMeter{NextTxn(), Now(), "op1", "A1", "M3"});
  AttachMeter to_a2{NextTxn(), Now(), "op1", "A2", "M3"};
  d = Do(to_a2);
  ASSERT_TRUE(d.accepted());
  EXPECT_FALSE(std::get<MeterAttached>(d.events.at(0)).supply_cut);
  // A postpaid account is never cut.
  OpenAccount postpaid = OpenCmd("A3", {"M4"});
  postpaid.mode = Mode::kPostpaid;
  Given(postpaid);
  Given(ChargeCmd("A3", Y(1000), "C3"));
  d = Do(AttachMeter{NextTxn(), Now(), "op1", "A3", "M5"});
  EXPECT_FALSE(std::get<MeterAttached>(d.events.at(0)).supply_cut);
  // An event that says a meter joins cut an account that is not cut does not apply.
  Ledger copy = ledger_;
  Status s = copy.TryApplyAll({MeterAttached{NextTxn(), Now(), "op1", "A2", "M6", /*supply_cut=*/true}});
  EXPECT_FALSE(s.ok());
}

// Account operations record the operator's reason where one is given, in the event and in what
// `txn show` and the statement say of the txn.
TEST_F(LedgerTest, AccountOperationsKeepTheirReasons) {
  Given(OpenCmd("A1", {"M1"}));
  Given(TopUpCmd("A1", Y(50), "K1"));
  AttachMeter attach{NextTxn(), Now(), "op1", "A1", "M2", "second circuit"};
  Decision d = Do(attach);
  ASSERT_TRUE(d.accepted());
  EXPECT_EQ(std::get<MeterAttached>(d.events.at(0)).reason, "second circuit");
  EXPECT_EQ(ledger_.FindTxn(attach.txn_id)->reason, "meter M2: second circuit");
  DetachMeter detach{NextTxn(), Now(), "op1", "A1", "M1", "faulty"};
  ASSERT_TRUE(Do(detach).accepted());
  EXPECT_EQ(ledger_.FindTxn(detach.txn_id)->reason, "meter M1: faulty");
  SetLimits limits{NextTxn(), Now(), "op1", "A1", Y(30), {}, {}, {}, "hardship credit agreed"};
  ASSERT_TRUE(Do(limits).accepted());
  EXPECT_EQ(ledger_.FindTxn(limits.txn_id)->reason, "hardship credit agreed");
  Given(Suspend{NextTxn(), Now(), "op1", "A1", "meter tamper"});
  Resume resume{NextTxn(), Now(), "op1", "A1", "inspected"};
  ASSERT_TRUE(Do(resume).accepted());
  EXPECT_EQ(ledger_.FindTxn(resume.txn_id)->reason, "inspected");
  TransferOwnership transfer{NextTxn(), Now(), "op1", "A1", "李四", {}, true, PaymentMethod::kCash, "new lease"};
  d = Do(transfer);
  ASSERT_TRUE(d.accepted());
  EXPECT_EQ(std::get<OwnershipTransferred>(d.events.at(0)).reason, "new lease");
  EXPECT_EQ(ledger_.FindTxn(transfer.txn_id)->reason, "from 张三 to 李四: new lease");
  EXPECT_EQ(Entries("A1").back().reason, "settled to previous owner 张三: new lease");
  // Without a reason, what the txn is, as before.
  AttachMeter plain{NextTxn(), Now(), "op1", "A1", "M3"};
  ASSERT_TRUE(Do(plain).accepted());
  EXPECT_EQ(ledger_.FindTxn(plain.txn_id)->reason, "meter M3");
}

// ---- Limits, suspension ----------------------------------------------------------------------

TEST_F(LedgerTest, RaisingTheCreditLimitLiftsCutOff) {
  Given(OpenCmd("A1"));
  Given(ChargeCmd("A1", Y(15), "C1"));  // -15 < -10: cut off.
  ASSERT_TRUE(Acc("A1").supply_cut);
  SetLimits c{NextTxn(), Now(), "op1", "A1", Y(20), std::nullopt, std::nullopt, std::nullopt};
  Decision d = Do(c);
  ASSERT_TRUE(d.accepted());
  Limits before{Y(10), Y(20), Y(10), Y(5000)};
  Limits after{Y(20), Y(20), Y(10), Y(5000)};
  std::vector<Event> want{
      LimitsChanged{c.txn_id, c.time_us, "op1", "A1", before, after},
      LevelChanged{c.txn_id, c.time_us, "A1", Level::kCutoff, Level::kArrears, -Y(15)},
      SupplyRestoreAllowed{c.txn_id, c.time_us, "A1", -Y(15), -Y(20), {"M1"}},
  };
  EXPECT_EQ(d.events, want);
  // Lowering it again cuts again: exactly one cut per crossing.
  Decision lower = Do(SetLimits{NextTxn(), Now(), "op1", "A1", Y(0), std::nullopt, std::nullopt, std::nullopt});
  EXPECT_EQ(Count<SupplyCutRequired>(lower.events), 1u);
}

TEST_F(LedgerTest, SetLimitsRejections) {
  Given(OpenCmd("A1"));
  ExpectRejected(When(SetLimits{NextTxn(), Now(), "op1", "A1", {}, {}, {}, {}}), StatusCode::kInvalidArgument,
                 "no_limits");
  ExpectRejected(When(SetLimits{NextTxn(), Now(), "op1", "A1", {}, Y(1), {}, {}}),
                 StatusCode::kInvalidArgument, "limits", "alarm level 1 (1.0000) must be >= alarm level 2 (10.0000)");
  ExpectRejected(When(SetLimits{NextTxn(), Now(), "op1", "A1", {}, {}, {}, -Y(1)}),
                 StatusCode::kInvalidArgument, "limits", "hoarding cap");
  ExpectRejected(When(SetLimits{NextTxn(), Now(), "op1", "A7", Y(1), {}, {}, {}}), StatusCode::kNotFound,
                 "unknown_account");
}

TEST_F(LedgerTest, SuspendedAccountsStillTakeChargesAndTopUps) {
  Given(OpenCmd("A1"));
  Decision s = Do(Suspend{NextTxn(), Now(), "op1", "A1", "tenant away"});
  ASSERT_TRUE(s.accepted());
  EXPECT_EQ(Acc("A1").state, AccountState::kSuspended);
  ExpectRejected(When(Suspend{NextTxn(), Now(), "op1", "A1", "again"}), StatusCode::kFailedPrecondition,
                 "already_suspended");
  // A suspension says why; an opening balance says where it came from.
  ExpectRejected(When(Suspend{NextTxn(), Now(), "op1", "A1", ""}), StatusCode::kInvalidArgument, "reason_required");
  OpenAccount open = OpenCmd("A9", {"M9"});
  open.opening_balance_minor = Y(5);
  ExpectRejected(When(open), StatusCode::kInvalidArgument, "opening_balance_source_required",
                 "an opening balance of 5.0000 needs its source");
  EXPECT_TRUE(Do(TopUpCmd("A1", Y(100), "K1")).accepted());
  EXPECT_TRUE(Do(ChargeCmd("A1", Y(30), "C1")).accepted());
  EXPECT_EQ(Balance("A1"), Y(70));
  EXPECT_TRUE(Do(Resume{NextTxn(), Now(), "op1", "A1"}).accepted());
  EXPECT_EQ(Acc("A1").state, AccountState::kOpen);
  ExpectRejected(When(Resume{NextTxn(), Now(), "op1", "A1"}), StatusCode::kFailedPrecondition, "not_suspended");
}

// ---- Transfer of ownership -------------------------------------------------------------------

TEST_F(LedgerTest, TransferCarryingTheBalance) {
  Given(OpenCmd("A1"));
  Given(TopUpCmd("A1", Y(100), "K1"));
  TransferOwnership c{NextTxn(), Now(), "op1", "A1", "李四", {"13900000000"}, false, PaymentMethod::kCash};
  Decision d = Do(c);
  ASSERT_TRUE(d.accepted());
  ASSERT_EQ(d.events.size(), 1u);
  EXPECT_TRUE(std::get<OwnershipTransferred>(d.events[0]).posting.empty());
  EXPECT_EQ(Acc("A1").customer_name, "李四");
  EXPECT_EQ(Balance("A1"), Y(100));
  EXPECT_EQ(Acc("A1").purchase_count, 1);
}

TEST_F(LedgerTest, TransferSettlingRefundsTheOldOwner) {
  Given(OpenCmd("A1"));
  Given(TopUpCmd("A1", Y(100), "K1"));
  TransferOwnership c{NextTxn(), Now(), "op1", "A1", "李四", {"13900000000"}, true, PaymentMethod::kWechat};
  Decision d = Do(c);
  ASSERT_TRUE(d.accepted());
  const auto& t = std::get<OwnershipTransferred>(d.events[0]);
  EXPECT_EQ(t.settlement_refund_minor, Y(100));
  EXPECT_EQ(t.posting, (Posting{{Leg{false, "A1", -Y(100)}, Leg{true, "refunds", Y(100)}}}));
  EXPECT_EQ(t.old_customer_name, "张三");
  EXPECT_EQ(Balance("A1"), 0);
  EXPECT_EQ(std::get<LevelChanged>(d.events[1]).to, Level::kAlarm2);
  EXPECT_EQ(Entries("A1").back().kind, TxnKind::kTransfer);
}

// The new owner does not answer for the previous owner's transactions: a top-up, refund or
// adjustment made before the transfer is not reversed after it (it was: a settled transfer
// refunded the old owner's 100, and reversing the old owner's top-up then left the new owner at
// -100 and cut off). The correction is an adjustment, with a reason. What came after is
// reversible as ever. Needs the service's numbered txn ids, which say what came first.
TEST_F(LedgerTest, TransactionsOfThePreviousOwnerAreNotReversedAfterATransfer) {
  auto numbered = [&](auto c) {
    c.txn_id = "ledger/0/" + std::to_string(txn_seq_);
    return c;
  };
  Given(numbered(OpenCmd("A1")));
  const TopUp old_top_up = numbered(TopUpCmd("A1", Y(100), "K1", PaymentMethod::kWechat));
  Given(old_top_up);
  const TransferOwnership transfer = numbered(
      TransferOwnership{NextTxn(), Now(), "op1", "A1", "李四", {"13900000000"}, true, PaymentMethod::kWechat});
  Given(transfer);
  ExpectRejected(When(numbered(ReverseCmd(old_top_up.txn_id))), StatusCode::kFailedPrecondition,
                 "previous_owner", "transaction ledger/0/2 was made before account A1 changed owner (ledger/0/3)");
  EXPECT_EQ(Balance("A1"), 0);
  const TopUp new_top_up = numbered(TopUpCmd("A1", Y(50), "K2"));
  Given(new_top_up);
  EXPECT_TRUE(Do(numbered(ReverseCmd(new_top_up.txn_id))).accepted());
  EXPECT_EQ(Balance("A1"), 0);
}

TEST_F(LedgerTest, SettledTransferWithArrearsIsRejected) {
  Given(OpenCmd("A1"));
  Given(ChargeCmd("A1", Y(5), "C1"));
  ExpectRejected(When(TransferOwnership{NextTxn(), Now(), "op1", "A1", "李四", {}, true, PaymentMethod::kCash}),
                 StatusCode::kFailedPrecondition, "transfer_with_arrears", "arrears of 5.0000");
  ExpectRejected(When(TransferOwnership{NextTxn(), Now(), "op1", "A1", "", {}, false, PaymentMethod::kCash}),
                 StatusCode::kInvalidArgument, "customer_name_required");
  EXPECT_TRUE(Do(TransferOwnership{NextTxn(), Now(), "op1", "A1", "李四", {}, false, PaymentMethod::kCash}).accepted());
  EXPECT_EQ(Balance("A1"), -Y(5));
}

// ---- Close -----------------------------------------------------------------------------------

TEST_F(LedgerTest, CloseRefundsAPositiveBalanceAndReleasesMeters) {
  Given(OpenCmd("A1", {"M1", "M2"}));
  Given(TopUpCmd("A1", Y(60), "K1"));
  CloseAccount c{NextTxn(), Now(), "op1", "A1", "moved out", PaymentMethod::kBank};
  Decision d = Do(c);
  ASSERT_TRUE(d.accepted());
  std::vector<Event> want{AccountClosed{c.txn_id, c.time_us, "op1", "A1", "moved out", Y(60), PaymentMethod::kBank,
                                        0, {"M1", "M2"},
                                        Posting{{Leg{false, "A1", -Y(60)}, Leg{true, "refunds", Y(60)}}},
                                        EntryLink{0, 0, c.time_us}}};
  EXPECT_EQ(d.events, want);
  EXPECT_EQ(Acc("A1").state, AccountState::kClosed);
  EXPECT_EQ(Balance("A1"), 0);
  EXPECT_TRUE(Acc("A1").meters.empty());
  EXPECT_TRUE(Do(OpenCmd("A2", {"M1"})).accepted());  // The meter is free again.
  ExpectRejected(When(CloseAccount{NextTxn(), Now(), "op1", "A1", "", PaymentMethod::kCash}),
                 StatusCode::kFailedPrecondition, "already_closed");
  ExpectRejected(When(TopUpCmd("A1", Y(1), "K2")), StatusCode::kFailedPrecondition, "closed_account",
                 "owes nothing");
  ExpectRejected(When(RefundCmd("A1", Y(1), "K3")), StatusCode::kFailedPrecondition, "closed_account");
  ExpectRejected(When(AttachMeter{NextTxn(), Now(), "op1", "A1", "M7"}), StatusCode::kFailedPrecondition,
                 "closed_account");
  ExpectRejected(When(AdjustCmd("A1", Y(1), "K4")), StatusCode::kFailedPrecondition, "closed_account",
                 "positive balance of 1.0000");
}

TEST_F(LedgerTest, CloseWithArrearsKeepsThemCollectable) {
  Given(OpenCmd("A1"));
  Given(ChargeCmd("A1", Y(30), "C1"));
  Decision d = Do(CloseAccount{NextTxn(), Now(), "op1", "A1", "left without paying", PaymentMethod::kCash});
  ASSERT_TRUE(d.accepted());
  EXPECT_EQ(std::get<AccountClosed>(d.events[0]).arrears_minor, Y(30));
  EXPECT_EQ(Acc("A1").state, AccountState::kClosedWithArrears);
  ExpectRejected(When(TopUpCmd("A1", Y(31), "K1")), StatusCode::kFailedPrecondition, "closed_account",
                 "can collect at most that");
  Decision part = Do(TopUpCmd("A1", Y(10), "K2"));
  ASSERT_TRUE(part.accepted());
  EXPECT_EQ(part.events.size(), 1u);  // A closed account has no levels.
  EXPECT_EQ(Acc("A1").state, AccountState::kClosedWithArrears);
  ASSERT_TRUE(Do(TopUpCmd("A1", Y(20), "K3")).accepted());
  EXPECT_EQ(Acc("A1").state, AccountState::kClosed);
  EXPECT_EQ(Balance("A1"), 0);
  // A late charge (usage before the close) is still posted, as arrears.
  ASSERT_TRUE(Do(ChargeCmd("A1", Y(2), "C2")).accepted());
  EXPECT_EQ(Acc("A1").state, AccountState::kClosedWithArrears);
}

// ---- Top-up ----------------------------------------------------------------------------------

// ApplyAll names the accounts a decision touched, by an address that stays valid as accounts
// are added (the adapter keeps it to write the account's view later).
TEST_F(LedgerTest, ApplyAllNamesTheAccountsItTouchedByAStableAddress) {
  std::vector<const Account*> touched;
  Do(OpenCmd("A1"), &touched);
  ASSERT_EQ(touched.size(), 1u);  // AccountOpened and its LevelChanged: one account, once.
  const Account* a1 = touched[0];
  EXPECT_EQ(a1, ledger_.FindAccount("A1"));
  for (int i = 0; i < 5000; ++i) Given(OpenCmd("B" + std::to_string(i), {"MB" + std::to_string(i)}));
  touched.clear();
  Do(TopUpCmd("A1", 100'00, "K1"), &touched);
  ASSERT_EQ(touched.size(), 1u);
  EXPECT_EQ(touched[0], a1);  // Where it was before 5,000 openings grew the map.
  EXPECT_EQ(a1->balance_minor, 100'00);
}

// A ledger remembers the account it last found; a copy or a move must find its own.
TEST_F(LedgerTest, ACopiedOrMovedLedgerFindsItsOwnAccounts) {
  Given(OpenCmd("A1"));
  Given(TopUpCmd("A1", 50'00, "K1"));
  ASSERT_NE(ledger_.FindAccount("A1"), nullptr);  // Now the one it last found.
  Ledger copy = ledger_;
  const Account* mine = &copy.state().accounts.find("A1")->second;
  EXPECT_EQ(copy.FindAccount("A1"), mine);
  EXPECT_NE(copy.FindAccount("A1"), ledger_.FindAccount("A1"));
  auto d = copy.Decide(TopUpCmd("A1", 10'00, "K2"));
  ASSERT_TRUE(d.ok() && d->accepted());
  copy.ApplyAll(d->events);
  EXPECT_EQ(copy.FindAccount("A1")->balance_minor, 60'00);
  EXPECT_EQ(Balance("A1"), 50'00);  // The original's is its own.
  Ledger moved = std::move(copy);
  EXPECT_EQ(moved.FindAccount("A1"), &moved.state().accounts.find("A1")->second);
  EXPECT_EQ(moved.FindAccount("A1")->balance_minor, 60'00);
  EXPECT_EQ(moved.FindAccount("nobody"), nullptr);
  // The ledger moved from remembers nothing of the accounts that went with the move.
  EXPECT_EQ(copy.FindAccount("A1"), nullptr);  // NOLINT(bugprone-use-after-move): the point.
  Ledger assigned(TestConfig());
  ASSERT_NE(moved.FindAccount("A1"), nullptr);
  assigned = std::move(moved);
  EXPECT_EQ(moved.FindAccount("A1"), nullptr);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(assigned.FindAccount("A1"), &assigned.state().accounts.find("A1")->second);
  // Lookups of other accounts in between find each its own.
  Given(OpenCmd("A2", {"M2"}));
  EXPECT_EQ(ledger_.FindAccount("A1")->id, "A1");
  EXPECT_EQ(ledger_.FindAccount("A2")->id, "A2");
  EXPECT_EQ(ledger_.FindAccount("A1")->id, "A1");
}

TEST_F(LedgerTest, TopUpPostsFromThePaymentChannelAndCountsThePurchase) {
  Given(OpenCmd("A1"));
  TopUp c = TopUpCmd("A1", Y(100), "K1", PaymentMethod::kWechat);
  Decision d = Do(c);
  ASSERT_TRUE(d.accepted());
  std::vector<Event> want{
      ToppedUp{c.txn_id, c.time_us, "op1", "A1", "K1", Y(100), PaymentMethod::kWechat, 1,
               Posting{{Leg{false, "A1", Y(100)}, Leg{true, "wechat", -Y(100)}}}, EntryLink{0, Y(100), c.time_us}},
      LevelChanged{c.txn_id, c.time_us, "A1", Level::kAlarm2, Level::kNormal, Y(100)},
  };
  EXPECT_EQ(d.events, want);
  EXPECT_EQ(Acc("A1").purchase_count, 1);
  EXPECT_EQ(ledger_.SystemBalance("wechat"), -Y(100));
  const std::optional<TxnRecord> t = ledger_.FindTxn(c.txn_id);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->kind, TxnKind::kTopUp);
  EXPECT_EQ(t->amount_minor, Y(100));
}

TEST_F(LedgerTest, ATopUpThatWouldOverflowTheSumOfTenantBalancesIsRejected) {
  // Each balance fits in int64; their sum would not. Refused as a rule, not a crash on apply.
  for (const char* id : {"A1", "A2"}) {
    OpenAccount open = OpenCmd(id, {std::string("M") + id});
    open.hoarding_cap_minor = 0;  // No cap.
    Given(open);
  }
  const int64_t big = INT64_MAX / 4 * 3;
  Given(TopUpCmd("A1", big, "K1", PaymentMethod::kWechat));
  ExpectRejected(When(TopUpCmd("A2", big, "K2", PaymentMethod::kAlipay)), StatusCode::kInvalidArgument, "overflow",
                 "sum of all tenant balances");
  EXPECT_EQ(ledger_.state().tenant_total_minor, big);
}

TEST_F(LedgerTest, EveryMethodHasItsChannelAccount) {
  Given(OpenCmd("A1"));
  int n = 0;
  for (PaymentMethod m : {PaymentMethod::kCash, PaymentMethod::kWechat, PaymentMethod::kAlipay,
                          PaymentMethod::kBank, PaymentMethod::kPlatform}) {
    Given(TopUpCmd("A1", Y(1), "K" + std::to_string(++n), m));
    EXPECT_EQ(ledger_.SystemBalance(ChannelAccount(m)), -Y(1)) << PaymentMethodName(m);
  }
  EXPECT_EQ(Acc("A1").purchase_count, 5);
}

TEST_F(LedgerTest, ExpectedPurchaseCountIsTheNextCount) {
  Given(OpenCmd("A1"));
  TopUp wrong = TopUpCmd("A1", Y(10), "K1");
  wrong.expected_purchase_count = 2;
  ExpectRejected(When(wrong), StatusCode::kFailedPrecondition, "purchase_count",
                 "the top-up says it is purchase 2 but the next purchase of account A1 is 1");
  TopUp first = TopUpCmd("A1", Y(10), "K1");
  first.expected_purchase_count = 1;
  ASSERT_TRUE(Do(first).accepted());
  // A retry of the same top-up is a duplicate, not a stale count.
  TopUp retry = TopUpCmd("A1", Y(10), "K1");
  retry.expected_purchase_count = 1;
  Decision d = Do(retry);
  EXPECT_TRUE(d.duplicate);
  EXPECT_EQ(d.txn_id, first.txn_id);
  TopUp stale = TopUpCmd("A1", Y(10), "K2");
  stale.expected_purchase_count = 1;
  ExpectRejected(When(stale), StatusCode::kFailedPrecondition, "purchase_count", "(1 top-ups so far)");
}

TEST_F(LedgerTest, HoardingCapIsEnforced) {
  Given(OpenCmd("A1"));
  Given(TopUpCmd("A1", Y(5000), "K1"));
  ExpectRejected(When(TopUpCmd("A1", Y(100), "K2")), StatusCode::kFailedPrecondition, "hoarding_cap",
                 "top-up of 100.0000 would make the balance 5100.0000, above the hoarding cap 5000.0000");
  // However large: the cap is the rule the top-up breaks, before any limit of int64.
  ExpectRejected(When(TopUpCmd("A1", INT64_MAX, "K2")), StatusCode::kFailedPrecondition, "hoarding_cap",
                 "top-up of 922337203685477.5807 would make the balance more than 922337203685477.5807, above "
                 "the hoarding cap 5000.0000");
  // No cap when the cap is 0.
  Given(SetLimits{NextTxn(), Now(), "op1", "A1", {}, {}, {}, 0});
  EXPECT_TRUE(Do(TopUpCmd("A1", Y(100), "K2")).accepted());
}

TEST_F(LedgerTest, TopUpRejections) {
  Given(OpenCmd("A1"));
  ExpectRejected(When(TopUpCmd("A1", 0, "K1")), StatusCode::kInvalidArgument, "amount_positive");
  ExpectRejected(When(TopUpCmd("A1", -Y(1), "K1")), StatusCode::kInvalidArgument, "amount_positive",
                 "got -1.0000");
  ExpectRejected(When(TopUpCmd("A1", Y(1), "")), StatusCode::kInvalidArgument, "idempotency_key_required");
  ExpectRejected(When(TopUpCmd("NOPE", Y(1), "K1")), StatusCode::kNotFound, "unknown_account",
                 "account \"NOPE\" not found");
  TopUp no_op = TopUpCmd("A1", Y(1), "K1");
  no_op.operator_id = "";
  ExpectRejected(When(no_op), StatusCode::kInvalidArgument, "operator_required");
  // A rejected key was not used: the same key may carry a corrected request.
  EXPECT_TRUE(Do(TopUpCmd("A1", Y(1), "K1")).accepted());
}

TEST_F(LedgerTest, IdempotencyKeyRetryReturnsTheFirstResultAndConflictsAreRejected) {
  Given(OpenCmd("A1"));
  TopUp first = TopUpCmd("A1", Y(100), "K1");
  Given(first);
  Decision retry = Do(TopUpCmd("A1", Y(100), "K1"));
  EXPECT_TRUE(retry.duplicate);
  EXPECT_EQ(retry.txn_id, first.txn_id);
  EXPECT_TRUE(retry.events.empty());
  EXPECT_EQ(Balance("A1"), Y(100));
  EXPECT_EQ(Acc("A1").purchase_count, 1);
  ExpectRejected(When(TopUpCmd("A1", Y(200), "K1")), StatusCode::kAlreadyExists, "idempotency_key_reused",
                 "idempotency key K1 was used for a different request (first: " + first.txn_id +
                     "; now: top-up account=A1 amount=200.0000 method=cash)");
  ExpectRejected(When(TopUpCmd("A1", Y(100), "K1", PaymentMethod::kAlipay)), StatusCode::kAlreadyExists,
                 "idempotency_key_reused");
  // Keys are shared across kinds of request.
  ExpectRejected(When(RefundCmd("A1", Y(1), "K1")), StatusCode::kAlreadyExists, "idempotency_key_reused");
  ExpectRejected(When(AdjustCmd("A1", Y(1), "K1")), StatusCode::kAlreadyExists, "idempotency_key_reused");
}

TEST_F(LedgerTest, TopUpFromCutOffRestoresSupplyExactlyOnce) {
  Given(OpenCmd("A1"));
  Decision charge = Do(ChargeCmd("A1", Y(50), "C1"));
  EXPECT_EQ(Count<SupplyCutRequired>(charge.events), 1u);
  Decision more = Do(ChargeCmd("A1", Y(1), "C2"));
  EXPECT_TRUE(more.accepted());
  EXPECT_EQ(more.events.size(), 1u);  // Already cut: no second cut.
  Decision partial = Do(TopUpCmd("A1", Y(5), "K1"));  // -46: still below -10.
  EXPECT_EQ(Count<SupplyRestoreAllowed>(partial.events), 0u);
  TopUp c = TopUpCmd("A1", Y(50), "K2");  // +4: alarm 2.
  Decision d = Do(c);
  std::vector<Event> want{
      d.events[0],
      LevelChanged{c.txn_id, c.time_us, "A1", Level::kCutoff, Level::kAlarm2, Y(4)},
      SupplyRestoreAllowed{c.txn_id, c.time_us, "A1", Y(4), -Y(10), {"M1"}},
  };
  EXPECT_EQ(d.events, want);
  Decision again = Do(TopUpCmd("A1", Y(50), "K3"));
  EXPECT_EQ(Count<SupplyRestoreAllowed>(again.events), 0u);
}

// ---- Refund ----------------------------------------------------------------------------------

TEST_F(LedgerTest, RefundUpToTheAvailableBalance) {
  Given(OpenCmd("A1"));
  Given(TopUpCmd("A1", Y(100), "K1"));
  Refund c = RefundCmd("A1", Y(40), "K2");
  Decision d = Do(c);
  ASSERT_TRUE(d.accepted());
  EXPECT_EQ(std::get<Refunded>(d.events[0]).posting,
            (Posting{{Leg{false, "A1", -Y(40)}, Leg{true, "refunds", Y(40)}}}));
  EXPECT_EQ(Balance("A1"), Y(60));
  ExpectRejected(When(RefundCmd("A1", Y(60) + 1, "K3")), StatusCode::kFailedPrecondition, "insufficient_balance",
                 "refund of 60.0001 exceeds the available balance 60.0000 of account A1");
  ExpectRejected(When(RefundCmd("A1", 0, "K3")), StatusCode::kInvalidArgument, "amount_positive");
  ExpectRejected(When(RefundCmd("A1", Y(1), "")), StatusCode::kInvalidArgument, "idempotency_key_required");
  ExpectRejected(When(RefundCmd("A9", Y(1), "K3")), StatusCode::kNotFound, "unknown_account");
  EXPECT_TRUE(Do(RefundCmd("A1", Y(40), "K2")).duplicate);
  Decision all = Do(RefundCmd("A1", Y(60), "K4"));
  ASSERT_TRUE(all.accepted());
  EXPECT_EQ(Balance("A1"), 0);
}

TEST_F(LedgerTest, CreditIsNotRefundable) {
  Given(OpenCmd("A1"));
  Given(ChargeCmd("A1", Y(5), "C1"));
  ExpectRejected(When(RefundCmd("A1", Y(1), "K1")), StatusCode::kFailedPrecondition, "insufficient_balance",
                 "available balance 0.0000");
}

// ---- Reversal --------------------------------------------------------------------------------

TEST_F(LedgerTest, ReversingATopUpNegatesItsPostingButNotThePurchaseCount) {
  Given(OpenCmd("A1"));
  TopUp top = TopUpCmd("A1", Y(100), "K1", PaymentMethod::kAlipay);
  Given(top);
  Reverse c = ReverseCmd(top.txn_id, "R1");
  Decision d = Do(c);
  ASSERT_TRUE(d.accepted());
  std::vector<Event> want{
      Reversed{c.txn_id, c.time_us, "op2", "A1", "R1", top.txn_id, TxnKind::kTopUp, -Y(100), "entered twice",
               Posting{{Leg{false, "A1", -Y(100)}, Leg{true, "alipay", Y(100)}}}, EntryLink{0, 0, c.time_us}},
      LevelChanged{c.txn_id, c.time_us, "A1", Level::kNormal, Level::kAlarm2, 0},
  };
  EXPECT_EQ(d.events, want);
  EXPECT_EQ(Acc("A1").purchase_count, 1);
  EXPECT_EQ(ledger_.SystemBalance("alipay"), 0);
  EXPECT_EQ(ledger_.FindTxn(top.txn_id)->reversed_by, c.txn_id);
  EXPECT_EQ(ledger_.FindTxn(c.txn_id)->original_txn_id, top.txn_id);
  // At most once: the same key is a retry; another key is rejected.
  Decision retry = Do(ReverseCmd(top.txn_id, "R1"));
  EXPECT_TRUE(retry.duplicate);
  EXPECT_EQ(retry.txn_id, c.txn_id);
  ExpectRejected(When(ReverseCmd(top.txn_id, "R2")), StatusCode::kAlreadyExists, "already_reversed",
                 "was already reversed by " + c.txn_id);
  ExpectRejected(When(ReverseCmd(top.txn_id)), StatusCode::kAlreadyExists, "already_reversed");
  // A reversal cannot be reversed.
  ExpectRejected(When(ReverseCmd(c.txn_id)), StatusCode::kFailedPrecondition, "reversal_of_reversal");
  // The next top-up is purchase 2.
  TopUp next = TopUpCmd("A1", Y(10), "K2");
  next.expected_purchase_count = 2;
  EXPECT_TRUE(Do(next).accepted());
}

// Most transactions keep only what decisions need; with the statement entry their event makes,
// each reads back as the whole record, posting included, and a reversal marks the original
// either way.
TEST_F(LedgerTest, EveryTransactionReadsBackWhole) {
  Given(OpenCmd("A1"));
  TopUp top = TopUpCmd("A1", Y(100), "K1", PaymentMethod::kWechat);
  Given(top);
  Refund refund = RefundCmd("A1", Y(20), "K2");
  Given(refund);
  Adjust adjust = AdjustCmd("A1", -Y(5), "K3");
  Given(adjust);
  Charge charge = ChargeCmd("A1", Y(7), "C1");
  Given(charge);
  Reverse reverse = ReverseCmd(refund.txn_id, "K4");
  Given(reverse);
  auto posting = [](int64_t tenant, std::string_view system) {
    return Posting{{Leg{false, "A1", tenant}, Leg{true, std::string(system), -tenant}}};
  };
  const std::vector<TxnRecord> want = {
      {top.txn_id, TxnKind::kTopUp, "A1", top.time_us, Y(100), "op1", "", "K1", "", "", posting(Y(100), "wechat")},
      {refund.txn_id, TxnKind::kRefund, "A1", refund.time_us, -Y(20), "op1", "moving out", "K2", "", reverse.txn_id,
       posting(-Y(20), "refunds")},
      {adjust.txn_id, TxnKind::kAdjustment, "A1", adjust.time_us, -Y(5), "op1", "meter fault credit", "K3", "", "",
       posting(-Y(5), "adjustments")},
      {charge.txn_id, TxnKind::kCharge, "A1", charge.time_us, -Y(7), "", "", "C1", "", "", posting(-Y(7), "revenue")},
      {reverse.txn_id, TxnKind::kReversal, "A1", reverse.time_us, Y(20), "op2", "entered twice", "K4", refund.txn_id,
       "", posting(Y(20), "refunds")},
  };
  for (const TxnRecord& t : want) {
    SCOPED_TRACE(t.txn_id);
    std::optional<TxnRecord> got = ledger_.FindTxn(t.txn_id);
    ASSERT_TRUE(got.has_value());
    if (ledger_.IsEntryTxn(t.txn_id)) {
      EXPECT_EQ(got->time_us, 0);  // Not kept: it is on the event.
      auto entry = std::find_if(Entries("A1").begin(), Entries("A1").end(),
                                [&](const StatementEntry& e) { return e.txn_id == t.txn_id; });
      ASSERT_NE(entry, Entries("A1").end());
      got = CompleteTxn(*std::move(got), *entry);
    }
    EXPECT_EQ(*got, t);
  }
  // Only the open and the reversal keep a record of their own.
  EXPECT_EQ(ledger_.state().txns.size(), 2u);
  EXPECT_EQ(ledger_.state().entry_txns.size(), want.size() - 1);
  // A reversed top-up reads back reversed too.
  Reverse again = ReverseCmd(top.txn_id, "K5");
  Given(again);
  EXPECT_EQ(ledger_.FindTxn(top.txn_id)->reversed_by, again.txn_id);
}

// A posting of another shape from the log (three legs here) keeps its own record, exactly as
// posted, and a reversal mirrors it leg by leg.
TEST(LedgerGivenEvents, APostingOfAnotherShapeReadsBackAsPosted) {
  Ledger l;
  ASSERT_TRUE(l.TryApplyAll({AccountOpened{"E1", 1, "op", "B1", "王五", {}, "", {"MB"}, "", Mode::kPrepaid,
                                           Limits{0, 0, 0, 0}, 0, "", {}, {}},
                             LevelChanged{"E1", 1, "B1", Level::kNormal, Level::kAlarm2, 0}})
                  .ok());
  const Posting split{{Leg{false, "B1", Y(40)}, Leg{true, "cash", -Y(30)}, Leg{true, "wechat", -Y(10)}}};
  ASSERT_TRUE(l.TryApplyAll({ToppedUp{"E2", 2, "op", "B1", "K", Y(40), PaymentMethod::kCash, 1, split, EntryLink{0, Y(40)}},
                             LevelChanged{"E2", 2, "B1", Level::kAlarm2, Level::kNormal, Y(40)}})
                  .ok());
  EXPECT_EQ(l.FindTxn("E2")->posting, split);
  auto d = l.Decide(Reverse{"E3", 3, "op", "R", "E2", "typo"});
  ASSERT_TRUE(d.ok() && d->accepted());
  const Posting mirrored{{Leg{false, "B1", -Y(40)}, Leg{true, "cash", Y(30)}, Leg{true, "wechat", Y(10)}}};
  EXPECT_EQ(std::get<Reversed>(d->events.front()).posting, mirrored);
  l.ApplyAll(d->events);
  EXPECT_EQ(l.FindTxn("E2")->reversed_by, "E3");
}

TEST_F(LedgerTest, ReversingATopUpMayCutSupply) {
  Given(OpenCmd("A1"));
  TopUp top = TopUpCmd("A1", Y(100), "K1");
  Given(top);
  Given(ChargeCmd("A1", Y(95), "C1"));
  Decision d = Do(ReverseCmd(top.txn_id));
  ASSERT_TRUE(d.accepted());
  EXPECT_EQ(Balance("A1"), -Y(95));
  EXPECT_EQ(Count<SupplyCutRequired>(d.events), 1u);
}

TEST_F(LedgerTest, ReversingARefundMayRestoreSupply) {
  Given(OpenCmd("A1"));
  Given(TopUpCmd("A1", Y(100), "K1"));
  Refund refund = RefundCmd("A1", Y(100), "K2");
  Given(refund);
  Given(ChargeCmd("A1", Y(20), "C1"));
  ASSERT_TRUE(Acc("A1").supply_cut);
  Decision d = Do(ReverseCmd(refund.txn_id));
  ASSERT_TRUE(d.accepted());
  EXPECT_EQ(Balance("A1"), Y(80));
  EXPECT_EQ(Count<SupplyRestoreAllowed>(d.events), 1u);
  EXPECT_EQ(ledger_.SystemBalance("refunds"), 0);
}

TEST_F(LedgerTest, ReversalRejections) {
  Given(OpenCmd("A1"));
  Charge charge = ChargeCmd("A1", Y(1), "C1");
  Given(charge);
  ExpectRejected(When(ReverseCmd(charge.txn_id)), StatusCode::kFailedPrecondition, "not_reversible",
                 "is a charge; only top-ups, refunds and adjustments can be reversed");
  ExpectRejected(When(ReverseCmd("T999")), StatusCode::kNotFound, "unknown_txn");
  TopUp top = TopUpCmd("A1", Y(10), "K1");
  Given(top);
  Reverse no_reason = ReverseCmd(top.txn_id);
  no_reason.reason = "";
  ExpectRejected(When(no_reason), StatusCode::kInvalidArgument, "reason_required");
  // A key used for something else cannot name a reversal.
  ExpectRejected(When(ReverseCmd(top.txn_id, "K1")), StatusCode::kAlreadyExists, "idempotency_key_reused");
}

// ---- Adjustment ------------------------------------------------------------------------------

TEST_F(LedgerTest, AdjustmentsAreSignedNeedAReasonAndAreReversible) {
  Given(OpenCmd("A1"));
  Given(TopUpCmd("A1", Y(100), "K1"));
  Adjust c = AdjustCmd("A1", -Y(12) - 5000, "K2");  // -12.50
  Decision d = Do(c);
  ASSERT_TRUE(d.accepted());
  EXPECT_EQ(std::get<Adjusted>(d.events[0]).posting,
            (Posting{{Leg{false, "A1", -125'000}, Leg{true, "adjustments", 125'000}}}));
  EXPECT_EQ(Balance("A1"), 875'000);
  EXPECT_EQ(Acc("A1").purchase_count, 1);
  ASSERT_TRUE(Do(ReverseCmd(c.txn_id)).accepted());
  EXPECT_EQ(Balance("A1"), Y(100));
  EXPECT_EQ(ledger_.SystemBalance("adjustments"), 0);
  ExpectRejected(When(AdjustCmd("A1", 0, "K3")), StatusCode::kInvalidArgument, "amount_nonzero");
  Adjust no_reason = AdjustCmd("A1", Y(1), "K3");
  no_reason.reason = "";
  ExpectRejected(When(no_reason), StatusCode::kInvalidArgument, "reason_required");
  ExpectRejected(When(AdjustCmd("A1", Y(1), "")), StatusCode::kInvalidArgument, "idempotency_key_required");
  ExpectRejected(When(AdjustCmd("A9", Y(1), "K3")), StatusCode::kNotFound, "unknown_account");
  // Adjustments are corrections, not sales: the hoarding cap does not apply.
  EXPECT_TRUE(Do(AdjustCmd("A1", Y(6000), "K4")).accepted());
  EXPECT_TRUE(Do(AdjustCmd("A1", Y(6000), "K4")).duplicate);
  ExpectRejected(When(AdjustCmd("A1", Y(6001), "K4")), StatusCode::kAlreadyExists, "idempotency_key_reused");
}

TEST_F(LedgerTest, AdjustmentCanWaiveArrearsOfAClosedAccount) {
  Given(OpenCmd("A1"));
  Given(ChargeCmd("A1", Y(30), "C1"));
  Given(CloseAccount{NextTxn(), Now(), "op1", "A1", "", PaymentMethod::kCash});
  ASSERT_TRUE(Do(AdjustCmd("A1", Y(30), "K1")).accepted());
  EXPECT_EQ(Acc("A1").state, AccountState::kClosed);
}

// ---- Charges and levels ----------------------------------------------------------------------

TEST_F(LedgerTest, ChargePostsToRevenueWithItsCauseAndIsNeverRejectedForMoney) {
  Given(OpenCmd("A1"));
  Given(TopUpCmd("A1", Y(100), "K1"));
  Charge c = ChargeCmd("A1", Y(150), "C1");
  Decision d = Do(c);
  ASSERT_TRUE(d.accepted());
  std::vector<Event> want{
      Charged{c.txn_id, c.time_us, "A1", "C1", Y(150), 1500, "M1", c.reading_id, "flat-1", 3,
              Posting{{Leg{false, "A1", -Y(150)}, Leg{true, "revenue", Y(150)}}}, EntryLink{0, -Y(50), c.time_us}},
      LevelChanged{c.txn_id, c.time_us, "A1", Level::kNormal, Level::kCutoff, -Y(50)},
      SupplyCutRequired{c.txn_id, c.time_us, "A1", -Y(50), -Y(10), {"M1"}},
  };
  EXPECT_EQ(d.events, want);
  EXPECT_EQ(ledger_.SystemBalance("revenue"), Y(150));
  const StatementEntry e = Entries("A1").back();
  EXPECT_EQ(e.reading_id, c.reading_id);
  EXPECT_EQ(e.tariff_version, 3);
  EXPECT_EQ(e.energy_wh, 1500);
  // The charge is a transaction like any other, found by its id.
  std::optional<TxnRecord> t = ledger_.FindTxn(c.txn_id);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(CompleteTxn(*t, e), (TxnRecord{c.txn_id, TxnKind::kCharge, "A1", c.time_us, -Y(150), "", "", "C1", "", "",
                           Posting{{Leg{false, "A1", -Y(150)}, Leg{true, "revenue", Y(150)}}}}));
  // Its id is taken: a later command may not reuse it.
  TopUp reuse = TopUpCmd("A1", Y(1), "K9");
  reuse.txn_id = c.txn_id;
  EXPECT_EQ(ledger_.Decide(reuse).status().code(), StatusCode::kInternal);
}

TEST_F(LedgerTest, ChargesTakeEffectExactlyOncePerChargeId) {
  Given(OpenCmd("A1"));
  Charge c = ChargeCmd("A1", Y(3), "C1");
  Given(c);
  Charge again = c;
  again.txn_id = NextTxn();
  Decision d = Do(again);
  EXPECT_TRUE(d.duplicate);
  EXPECT_EQ(d.txn_id, c.txn_id);
  EXPECT_EQ(Balance("A1"), -Y(3));
  Charge other = c;
  other.txn_id = NextTxn();
  other.amount_minor = Y(4);
  ExpectRejected(When(other), StatusCode::kAlreadyExists, "idempotency_key_reused",
                 "charge id C1 was used for a different request (first: " + c.txn_id +
                     "; now: charge account=A1 amount=4.0000");
  // Every field that defines the charge is in its fingerprint.
  std::vector<std::function<void(Charge&)>> changes = {
      [](Charge& x) { x.energy_wh += 1; },        [](Charge& x) { x.meter_id += "x"; },
      [](Charge& x) { x.reading_id += "x"; },     [](Charge& x) { x.tariff_id += "x"; },
      [](Charge& x) { x.tariff_version += 1; },
  };
  for (const auto& change : changes) {
    Charge changed = c;
    changed.txn_id = NextTxn();
    change(changed);
    ExpectRejected(When(changed), StatusCode::kAlreadyExists, "idempotency_key_reused");
  }
}

// The fingerprint hashes texts eight bytes at a time, each after its length: a text that moves
// from one field to the next, or that differs only past its first word, or only in a word's high
// bits, is another request.
TEST_F(LedgerTest, ChargeFingerprintSeesEveryWordAndEveryFieldBoundary) {
  const std::string account = "ACCT-0000000001-north-wing";  // Four words.
  Given(OpenCmd(account));
  Charge c = ChargeCmd(account, Y(3), "fleet-sim/run-1/000042/SIM-A000123");
  c.meter_id = "M1";
  c.reading_id = "R1";
  Given(c);
  std::vector<std::function<void(Charge&)>> changes = {
      [](Charge& x) { x.meter_id = "M1R"; x.reading_id = "1"; },   // The boundary moves.
      [](Charge& x) { x.meter_id = ""; x.reading_id = "M1R1"; },
      [](Charge& x) { x.reading_id = std::string("R1\0", 3); },     // A trailing zero byte.
      [](Charge& x) { x.tariff_id = "flat-1-extended-peak-tariff"; },
      [](Charge& x) { x.tariff_id = "flat-1-extended-peak-tariff!"; },
      [](Charge& x) { x.energy_wh ^= int64_t{1} << 62; },
      [](Charge& x) { x.amount_minor += int64_t{1} << 40; },
      // Bit 63 of one word and bit 28 of the next: they cancelled out when a word was folded in
      // with a multiply and a rotate by 29 alone, and the charge came back a duplicate.
      [](Charge& x) {
        x.amount_minor = static_cast<int64_t>(static_cast<uint64_t>(x.amount_minor) ^ (uint64_t{1} << 63));
        x.energy_wh ^= int64_t{1} << 28;
      },
  };
  for (const auto& change : changes) {
    Charge changed = c;
    changed.txn_id = NextTxn();
    change(changed);
    ExpectRejected(When(changed), StatusCode::kAlreadyExists, "idempotency_key_reused");
  }
  // Opened under a name that differs from the first only in its third word: not the same top-up.
  const std::string twin = "ACCT-0000000001-south-wing";
  Given(OpenCmd(twin, {"M2"}));
  Given(TopUpCmd(account, Y(10), "K-long"));
  ExpectRejected(When(TopUpCmd(twin, Y(10), "K-long")), StatusCode::kAlreadyExists, "idempotency_key_reused");
  EXPECT_TRUE(Do(TopUpCmd(account, Y(10), "K-long")).duplicate);
}

TEST_F(LedgerTest, ChargeRejections) {
  Given(OpenCmd("A1"));
  ExpectRejected(When(ChargeCmd("A1", 0, "C1")), StatusCode::kInvalidArgument, "amount_positive");
  ExpectRejected(When(ChargeCmd("A1", Y(1), "")), StatusCode::kInvalidArgument, "charge_id_required");
  ExpectRejected(When(ChargeCmd("A9", Y(1), "C1")), StatusCode::kNotFound, "unknown_account");
  Charge neg = ChargeCmd("A1", Y(1), "C1");
  neg.energy_wh = -1;
  ExpectRejected(When(neg), StatusCode::kInvalidArgument, "energy_non_negative");
  Charge no_meter = ChargeCmd("A1", Y(1), "C1");
  no_meter.meter_id = "";
  ExpectRejected(When(no_meter), StatusCode::kInvalidArgument, "meter_id_required");
}

TEST_F(LedgerTest, LevelsFollowTheBalanceDownAndUpOneEventPerChange) {
  Given(OpenCmd("A1"));  // alarm1 20, alarm2 10, credit 10.
  Given(TopUpCmd("A1", Y(30), "K1"));
  EXPECT_EQ(Acc("A1").level, Level::kNormal);
  std::vector<std::pair<int64_t, Level>> steps = {
      {Y(10), Level::kAlarm1},   // 20: at alarm 1.
      {Y(5), Level::kAlarm1},    // 15: no change, no event.
      {Y(5), Level::kAlarm2},    // 10: at alarm 2.
      {Y(10), Level::kAlarm2},   // 0: still alarm 2.
      {1, Level::kArrears},      // -0.0001.
      {Y(10) - 1, Level::kArrears},  // -10: on the cut-off line, not below it.
      {1, Level::kCutoff},       // -10.0001.
  };
  Level prev = Level::kNormal;
  int i = 0;
  for (auto [amount, want] : steps) {
    Decision d = Do(ChargeCmd("A1", amount, "C" + std::to_string(++i)));
    EXPECT_EQ(Acc("A1").level, want) << i;
    EXPECT_EQ(Count<LevelChanged>(d.events), prev == want ? 0u : 1u) << i;
    EXPECT_EQ(Count<SupplyCutRequired>(d.events), want == Level::kCutoff && prev != want ? 1u : 0u);
    prev = want;
  }
  Decision up = Do(TopUpCmd("A1", Y(100), "K2"));
  ASSERT_EQ(up.events.size(), 3u);
  EXPECT_EQ(std::get<LevelChanged>(up.events[1]).from, Level::kCutoff);
  EXPECT_EQ(std::get<LevelChanged>(up.events[1]).to, Level::kNormal);
  EXPECT_TRUE(std::holds_alternative<SupplyRestoreAllowed>(up.events[2]));
}

TEST(LevelFor, BoundariesAreInclusiveForAlarmsAndStrictForArrearsAndCutoff) {
  Limits l{Y(10), Y(20), Y(10), 0};
  EXPECT_EQ(LevelFor(Y(20) + 1, l), Level::kNormal);
  EXPECT_EQ(LevelFor(Y(20), l), Level::kAlarm1);
  EXPECT_EQ(LevelFor(Y(10), l), Level::kAlarm2);
  EXPECT_EQ(LevelFor(0, l), Level::kAlarm2);
  EXPECT_EQ(LevelFor(-1, l), Level::kArrears);
  EXPECT_EQ(LevelFor(-Y(10), l), Level::kArrears);
  EXPECT_EQ(LevelFor(-Y(10) - 1, l), Level::kCutoff);
  Limits no_credit{0, 0, 0, 0};
  EXPECT_EQ(LevelFor(0, no_credit), Level::kAlarm2);
  EXPECT_EQ(LevelFor(-1, no_credit), Level::kCutoff);
}

// ---- Statements, transactions, replay --------------------------------------------------------

TEST_F(LedgerTest, StatementHasRunningBalancesAndCausesOverAPeriod) {
  Given(OpenCmd("A1"));
  TopUp t1 = TopUpCmd("A1", Y(100), "K1");
  Given(t1);
  Charge c1 = ChargeCmd("A1", Y(30), "C1");
  Given(c1);
  Refund r1 = RefundCmd("A1", Y(20), "K2");
  Given(r1);
  Charge c2 = ChargeCmd("A1", Y(5), "C2");
  Given(c2);
  Statement s = StatementOf("A1", c1.time_us, c2.time_us);
  EXPECT_EQ(s.opening_balance_minor, Y(100));
  ASSERT_EQ(s.entries.size(), 2u);
  EXPECT_EQ(s.entries[0].txn_id, c1.txn_id);
  EXPECT_EQ(s.entries[0].kind, TxnKind::kCharge);
  EXPECT_EQ(s.entries[0].amount_minor, -Y(30));
  EXPECT_EQ(s.entries[0].balance_after_minor, Y(70));
  EXPECT_EQ(s.entries[0].reading_id, c1.reading_id);
  EXPECT_EQ(s.entries[0].tariff_id, "flat-1");
  EXPECT_EQ(s.entries[1].kind, TxnKind::kRefund);
  EXPECT_EQ(s.entries[1].operator_id, "op1");
  EXPECT_EQ(s.entries[1].reason, "moving out");
  EXPECT_EQ(s.closing_balance_minor, Y(50));
  Statement everything = StatementOf("A1", 0, INT64_MAX);
  EXPECT_EQ(everything.entries.size(), 4u);
  EXPECT_EQ(everything.opening_balance_minor, 0);
  EXPECT_EQ(everything.closing_balance_minor, Y(45));
  Statement empty = StatementOf("A1", c2.time_us + 1, c2.time_us + 2);
  EXPECT_TRUE(empty.entries.empty());
  EXPECT_EQ(empty.opening_balance_minor, Y(45));
  EXPECT_EQ(empty.closing_balance_minor, Y(45));
}

// Times need not grow with the log: a charge carries the time its usage occurred, which may be
// before a top-up recorded ahead of it. The opening balance is the one before the first entry
// listed; with none listed, the one after the last entry before the period.
TEST(PlanStatementTest, OpensWithTheBalanceBeforeTheFirstEntryListed) {
  // Balances: 100 (t=10), 70 (t=30), 50 (t=5, a late charge), 45 (t=40).
  const std::vector<EntryRow> rows = {{10, 100}, {30, 70}, {5, 50}, {40, 45}};
  StatementPlan p = PlanStatement(rows, 20, 35);
  EXPECT_EQ(p.rows, (std::vector<size_t>{1}));
  EXPECT_EQ(p.opening_balance_minor, 100);
  EXPECT_EQ(p.closing_balance_minor, 70);
  p = PlanStatement(rows, 0, 20);  // The first and the late charge.
  EXPECT_EQ(p.rows, (std::vector<size_t>{0, 2}));
  EXPECT_EQ(p.opening_balance_minor, 0);
  EXPECT_EQ(p.closing_balance_minor, 50);
  p = PlanStatement(rows, 31, 40);  // Nothing listed: after the last entry before the period.
  EXPECT_TRUE(p.rows.empty());
  EXPECT_EQ(p.opening_balance_minor, 50);
  EXPECT_EQ(p.closing_balance_minor, 50);
  p = PlanStatement({}, 0, 100);
  EXPECT_TRUE(p.rows.empty());
  EXPECT_EQ(p.opening_balance_minor, 0);
  EXPECT_EQ(p.closing_balance_minor, 0);
}

// A statement's walk back through an account's entries may stop at the first whose link says
// that it and every entry before it are earlier than the period (StatementWalkEnds): the plan of
// the entries walked up to there is the plan of them all. Random histories, times out of order
// (late charges), some with a first part from a log whose links did not carry the latest time
// (the links after it carry the latest of all, which the fold works out from the entries' times).
TEST(PlanStatementTest, AWalkThatStopsWhereTheLinksSayPlansAsIfItReadEverything) {
  std::mt19937_64 rng(20261207);
  for (int seed = 0; seed < 300; ++seed) {
    SCOPED_TRACE("history " + std::to_string(seed));
    const size_t n = rng() % 30;
    const size_t unknown_before = rng() % 4 == 0 ? rng() % (n + 1) : 0;  // Rows from an older log.
    std::vector<EntryRow> rows;
    std::vector<EntryLink> links;
    int64_t latest = INT64_MIN;
    for (size_t i = 0; i < n; ++i) {
      const int64_t time = static_cast<int64_t>(rng() % 100);
      rows.push_back({time, static_cast<int64_t>(rng() % 1000)});
      latest = std::max(latest, time);
      links.push_back(EntryLink{0, rows.back().balance_after_minor, i < unknown_before ? kLatestEntryTimeUnknown : latest});
    }
    const int64_t from = static_cast<int64_t>(rng() % 110);
    const int64_t to = rng() % 8 == 0 ? INT64_MAX : from + static_cast<int64_t>(rng() % 40);
    // Newest first, as ReadStatement walks: `first` is the oldest row read.
    size_t first = n;
    while (first > 0) {
      --first;
      if (StatementWalkEnds(links[first], from)) break;
    }
    const std::vector<EntryRow> walked(rows.begin() + static_cast<std::ptrdiff_t>(first), rows.end());
    const StatementPlan all = PlanStatement(rows, from, to);
    const StatementPlan part = PlanStatement(walked, from, to);
    std::vector<size_t> shifted;
    for (size_t i : part.rows) shifted.push_back(i + first);
    EXPECT_EQ(shifted, all.rows);
    EXPECT_EQ(part.opening_balance_minor, all.opening_balance_minor);
    EXPECT_EQ(part.closing_balance_minor, all.closing_balance_minor);
    if (unknown_before == n) {
      EXPECT_EQ(walked.size(), n);  // Nothing says where to stop: every entry is read.
    }
  }
}

// Each entry's link carries the latest time of the account's entries so far, which a late charge
// (its usage's time, before what came ahead of it) does not lower.
TEST_F(LedgerTest, EntryLinksCarryTheLatestTimeOfTheAccountsEntries) {
  Given(OpenCmd("A1"));
  TopUp first = TopUpCmd("A1", Y(100), "K1");
  Given(first);
  EXPECT_EQ(Acc("A1").latest_entry_time_us, first.time_us);
  Charge late = ChargeCmd("A1", Y(10), "C1");
  late.time_us = first.time_us - 1'000;
  Decision d = Do(late);
  ASSERT_TRUE(d.accepted());
  EXPECT_EQ(EntryLinkOf(d.events.front())->latest_time_us, first.time_us);
  EXPECT_EQ(Acc("A1").latest_entry_time_us, first.time_us);
  TopUp next = TopUpCmd("A1", Y(1), "K2");
  d = Do(next);
  ASSERT_TRUE(d.accepted());
  EXPECT_GT(next.time_us, first.time_us);
  EXPECT_EQ(EntryLinkOf(d.events.front())->latest_time_us, next.time_us);
  EXPECT_EQ(Acc("A1").latest_entry_time_us, next.time_us);
}

// A link may not claim an earlier latest time than its account's entries have: a statement would
// stop short on it. One that does not say (a log written before links did) is taken, and the
// account's latest time is still folded from the entries' own times, so the next link says it.
TEST_F(LedgerTest, ApplyRefusesALinkThatUnderstatesTheLatestEntryTime) {
  Given(OpenCmd("A1"));
  Given(TopUpCmd("A1", Y(100), "K1"));
  const TopUp t = TopUpCmd("A1", Y(1), "K2");
  Decision d = When(t);
  ASSERT_TRUE(d.accepted());
  std::vector<Event> forged = d.events;
  std::get<ToppedUp>(forged.front()).link.latest_time_us = t.time_us - 1;
  {
    Ledger copy(TestConfig());
    ASSERT_TRUE(copy.TryApplyAll(all_events_).ok());
    const Status s = copy.TryApplyAll(forged);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss);
    EXPECT_NE(s.message().find("says the latest time of account A1's entries is " + std::to_string(t.time_us - 1) +
                               " but it is " + std::to_string(t.time_us)),
              std::string::npos)
        << s.ToString();
  }
  std::get<ToppedUp>(forged.front()).link.latest_time_us = kLatestEntryTimeUnknown;
  ledger_.ApplyAll(forged);
  all_events_.insert(all_events_.end(), forged.begin(), forged.end());  // For TearDown's replay.
  EXPECT_EQ(Acc("A1").latest_entry_time_us, t.time_us);
  const TopUp next = TopUpCmd("A1", Y(1), "K3");
  d = Do(next);
  ASSERT_TRUE(d.accepted());
  EXPECT_EQ(EntryLinkOf(d.events.front())->latest_time_us, next.time_us);
}

// Every balance, and every amount a posting moves, stays within ±INT64_MAX minor units, so that
// each can be negated (a posting's other leg, a reversal, the arrears at close): an amount or a
// result of INT64_MIN is refused as an overflow, and nothing is applied. (An adjustment or an
// opening balance of INT64_MIN was accepted, and its posting, whose negated leg wrapped, stopped
// the writer at Apply; a balance of INT64_MIN made a close whose arrears wrapped.)
TEST_F(LedgerTest, AmountsAndBalancesThatCannotBeNegatedAreRefused) {
  Given(OpenCmd("A1"));
  ExpectRejected(When(AdjustCmd("A1", INT64_MIN, "K1")), StatusCode::kInvalidArgument, "overflow",
                 "-922337203685477.5808");
  OpenAccount open = OpenCmd("A2", {"M2"});
  open.opening_balance_minor = INT64_MIN;
  open.opening_balance_source = "old meter";
  ExpectRejected(When(open), StatusCode::kInvalidArgument, "overflow");
  // To -INT64_MAX, and not one unit further: the charge would leave INT64_MIN.
  Given(AdjustCmd("A1", -INT64_MAX, "K2"));
  ExpectRejected(When(ChargeCmd("A1", 1, "C1")), StatusCode::kInvalidArgument, "overflow");
  EXPECT_EQ(Balance("A1"), -INT64_MAX);
  Decision close = Do(CloseAccount{NextTxn(), Now(), "op1", "A1", "moved out", PaymentMethod::kCash});
  ASSERT_TRUE(close.accepted());
  EXPECT_EQ(std::get<AccountClosed>(close.events.front()).arrears_minor, INT64_MAX);
  EXPECT_EQ(SumOfAllBalances(), 0);
}

// A log written before that rule may hold a balance of INT64_MIN (a charge of 1 after an
// adjustment of -INT64_MAX was accepted): closing such an account is refused, rather than
// negating the balance into arrears (undefined; it wrapped to INT64_MIN).
TEST_F(LedgerTest, AnOldBalanceAtInt64sMinimumIsNotClosedIntoWrappedArrears) {
  Given(OpenCmd("A1"));
  Given(AdjustCmd("A1", -INT64_MAX, "K1"));
  const std::vector<Event> old_charge{Charged{NextTxn(), Now(), "A1", "C1", 1, 10, "M1", "R1", "flat-1", 3,
                                              Posting{{Leg{false, "A1", -1}, Leg{true, "revenue", 1}}},
                                              EntryLink{0, INT64_MIN}}};
  ledger_.ApplyAll(old_charge);
  all_events_.insert(all_events_.end(), old_charge.begin(), old_charge.end());  // For TearDown's replay.
  ASSERT_EQ(Balance("A1"), INT64_MIN);
  ExpectRejected(When(CloseAccount{NextTxn(), Now(), "op1", "A1", "moved out", PaymentMethod::kCash}),
                 StatusCode::kInvalidArgument, "overflow",
                 "the arrears of account A1, 922337203685477.5808, are beyond what the ledger can hold");
  ExpectRejected(When(TransferOwnership{NextTxn(), Now(), "op1", "A1", "李四", {}, true, PaymentMethod::kCash}),
                 StatusCode::kFailedPrecondition, "transfer_with_arrears", "arrears of 922337203685477.5808");
}

TEST_F(LedgerTest, ReplayFromGivenEventsEqualsLiveAndDigestsTrackState) {
  Given(OpenCmd("A1"));
  Given(TopUpCmd("A1", Y(100), "K1"));
  Ledger replayed(TestConfig());
  replayed.ApplyAll(all_events_);
  EXPECT_TRUE(replayed == ledger_);
  EXPECT_EQ(replayed.Digest(), ledger_.Digest());
  Given(ChargeCmd("A1", 1, "C1"));
  EXPECT_FALSE(replayed == ledger_);
  EXPECT_NE(replayed.Digest(), ledger_.Digest());
}

TEST(LedgerGivenEvents, DecisionsOnStateBuiltFromLiteralEvents) {
  // Given: hand-written events only, as replay would feed them.
  Ledger l;
  l.ApplyAll({AccountOpened{"E1", 1, "op", "B1", "王五", {}, "", {"MB"}, "", Mode::kPrepaid,
                            Limits{0, 0, 0, Y(50)}, 0, "", {}, {}},
              LevelChanged{"E1", 1, "B1", Level::kNormal, Level::kAlarm2, 0}});
  l.ApplyAll({ToppedUp{"E2", 2, "op", "B1", "KB", Y(40), PaymentMethod::kCash, 1,
                       Posting{{Leg{false, "B1", Y(40)}, Leg{true, "cash", -Y(40)}}}, EntryLink{0, Y(40)}},
              LevelChanged{"E2", 2, "B1", Level::kAlarm2, Level::kNormal, Y(40)}});
  // When a top-up over the cap: then a rejection naming the values.
  auto over = l.Decide(TopUp{"E3", 3, "op", "B1", "K2", Y(20), PaymentMethod::kCash, 2});
  ASSERT_TRUE(over.ok());
  ASSERT_TRUE(over->rejection.has_value());
  EXPECT_EQ(over->rejection->message,
            "top-up of 20.0000 would make the balance 60.0000, above the hoarding cap 50.0000");
  // When a charge beyond the balance: then the charge, one level change and one cut.
  auto charge = l.Decide(Charge{"E4", 4, "CH1", "B1", Y(41), 900, "MB", "R9", "t1", 2});
  ASSERT_TRUE(charge.ok());
  std::vector<Event> want{
      Charged{"E4", 4, "B1", "CH1", Y(41), 900, "MB", "R9", "t1", 2,
              Posting{{Leg{false, "B1", -Y(41)}, Leg{true, "revenue", Y(41)}}}, EntryLink{0, -Y(1), 4}},
      LevelChanged{"E4", 4, "B1", Level::kNormal, Level::kCutoff, -Y(1)},
      SupplyCutRequired{"E4", 4, "B1", -Y(1), 0, {"MB"}},
  };
  EXPECT_EQ(charge->events, want);
  // When the same key as the given top-up: then a duplicate of E2.
  auto dup = l.Decide(TopUp{"E5", 5, "op", "B1", "KB", Y(40), PaymentMethod::kCash, std::nullopt});
  ASSERT_TRUE(dup.ok());
  EXPECT_TRUE(dup->duplicate);
  EXPECT_EQ(dup->txn_id, "E2");
  l.CheckInvariants();
}

TEST(LedgerDeathTest, UnbalancedPostingCrashes) {
  Ledger l;
  l.Apply(AccountOpened{"E1", 1, "op", "B1", "王五", {}, "", {"MB"}, "", Mode::kPostpaid, Limits{}, 0, "", {}, {}});
  ToppedUp bad{"E2", 2, "op", "B1", "KB", Y(40), PaymentMethod::kCash, 1,
               Posting{{Leg{false, "B1", Y(40)}, Leg{true, "cash", -Y(39)}}}, {}};
  EXPECT_DEATH(l.Apply(bad), "");
}

TEST(LedgerDeathTest, OutOfSequencePurchaseCountCrashes) {
  Ledger l;
  l.Apply(AccountOpened{"E1", 1, "op", "B1", "王五", {}, "", {"MB"}, "", Mode::kPostpaid, Limits{}, 0, "", {}, {}});
  ToppedUp skip{"E2", 2, "op", "B1", "KB", Y(40), PaymentMethod::kCash, 2,
                Posting{{Leg{false, "B1", Y(40)}, Leg{true, "cash", -Y(40)}}}, {}};
  EXPECT_DEATH(l.Apply(skip), "");
}

TEST(LedgerDeathTest, SecondCutWithoutRestoreCrashes) {
  Ledger l;
  l.Apply(AccountOpened{"E1", 1, "op", "B1", "王五", {}, "", {"MB"}, "", Mode::kPrepaid, Limits{}, 0, "", {}, {}});
  l.Apply(Charged{"E2", 2, "B1", "C", 5, 1, "MB", "R", "t", 1,
                  Posting{{Leg{false, "B1", -5}, Leg{true, "revenue", 5}}}, EntryLink{0, -5}});
  l.Apply(LevelChanged{"E2", 2, "B1", Level::kNormal, Level::kCutoff, -5});
  l.Apply(SupplyCutRequired{"E2", 2, "B1", -5, 0, {"MB"}});
  EXPECT_DEATH(l.Apply(SupplyCutRequired{"E2", 2, "B1", -5, 0, {"MB"}}), "");
}


// Events read back from the log are input: one that cannot follow the state is an error that
// says what did not hold, never a crash (the live path, Apply, still crashes on it).
TEST(LedgerGivenEvents, ImpossibleEventsFromTheLogAreDataLossNotACrash) {
  auto opened = [] {
    auto l = std::make_unique<Ledger>();
    EXPECT_TRUE(l->TryApplyAll({AccountOpened{"E1", 1, "op", "B1", "王五", {}, "", {"MB"}, "", Mode::kPrepaid,
                                              Limits{0, 0, 0, 0}, 0, "", {}, {}},
                                LevelChanged{"E1", 1, "B1", Level::kNormal, Level::kAlarm2, 0}})
                    .ok());
    return l;
  };
  const Posting forty{{Leg{false, "B1", Y(40)}, Leg{true, "cash", -Y(40)}}};
  struct Case {
    std::string name;
    std::vector<Event> decision;
    std::string says;
  };
  std::vector<Case> cases = {
      {"unknown account", {ToppedUp{"E2", 2, "op", "NOPE", "K", Y(40), PaymentMethod::kCash, 1, forty, EntryLink{0, Y(40)}}},
       "unknown account NOPE"},
      {"purchase count skips", {ToppedUp{"E2", 2, "op", "B1", "K", Y(40), PaymentMethod::kCash, 3, forty, EntryLink{0, Y(40)}}},
       "purchase count out of sequence"},
      {"unbalanced posting",
       {ToppedUp{"E2", 2, "op", "B1", "K", Y(40), PaymentMethod::kCash, 1,
                 Posting{{Leg{false, "B1", Y(40)}, Leg{true, "cash", -Y(39)}}}, {}}},
       "legs do not sum to zero"},
      {"unknown system account",
       {ToppedUp{"E2", 2, "op", "B1", "K", Y(40), PaymentMethod::kCash, 1,
                 Posting{{Leg{false, "B1", Y(40)}, Leg{true, "nowhere", -Y(40)}}}, {}}},
       "unknown system account nowhere"},
      {"level change from the wrong level",
       {ToppedUp{"E2", 2, "op", "B1", "K", Y(40), PaymentMethod::kCash, 1, forty, EntryLink{0, Y(40)}},
        LevelChanged{"E2", 2, "B1", Level::kCutoff, Level::kNormal, Y(40)}},
       "level change out of sequence"},
      {"stale level after the decision",
       {Charged{"E2", 2, "B1", "C", Y(1), 1, "MB", "R", "t", 1,
                Posting{{Leg{false, "B1", -Y(1)}, Leg{true, "revenue", Y(1)}}}, EntryLink{0, -Y(1)}}},
       "level of B1 is stale"},
      {"reversal of an unknown txn",
       {Reversed{"E2", 2, "op", "B1", "", "E9", TxnKind::kTopUp, -Y(40), "r",
                 Posting{{Leg{false, "B1", -Y(40)}, Leg{true, "cash", Y(40)}}}, {}}},
       "reversal of unknown txn E9"},
      {"account opened twice",
       {AccountOpened{"E2", 2, "op", "B1", "x", {}, "", {"MC"}, "", Mode::kPrepaid, Limits{}, 0, "", {}, {}}},
       "account opened twice: B1"},
      // A txn id names one transaction, whichever map (txns, entry_txns) holds it.
      {"top-up under the open's txn id",
       {ToppedUp{"E1", 2, "op", "B1", "K", Y(40), PaymentMethod::kCash, 1, forty, EntryLink{0, Y(40)}}},
       "txn id used twice: E1"},
      {"charge under a txn id kept as a record",
       {ToppedUp{"E2", 2, "op", "B1", "K", Y(40), PaymentMethod::kCash, 1,
                 Posting{{Leg{false, "B1", Y(40)}, Leg{true, "cash", -Y(30)}, Leg{true, "wechat", -Y(10)}}}, EntryLink{0, Y(40)}},
        Charged{"E2", 2, "B1", "C", Y(1), 1, "MB", "R", "t", 1,
                Posting{{Leg{false, "B1", -Y(1)}, Leg{true, "revenue", Y(1)}}}, EntryLink{0, -Y(1)}}},
       "txn id used twice: E2"},
      {"top-up under a used txn id",
       {ToppedUp{"E2", 2, "op", "B1", "K", Y(40), PaymentMethod::kCash, 1, forty, EntryLink{0, Y(40)}},
        ToppedUp{"E2", 2, "op", "B1", "K2", Y(40), PaymentMethod::kCash, 2, forty, EntryLink{0, Y(40)}}},
       "txn id used twice: E2"},
      {"charge under a top-up's txn id",
       {ToppedUp{"E2", 2, "op", "B1", "K", Y(40), PaymentMethod::kCash, 1, forty, EntryLink{0, Y(40)}},
        Charged{"E2", 2, "B1", "C", Y(1), 1, "MB", "R", "t", 1,
                Posting{{Leg{false, "B1", -Y(1)}, Leg{true, "revenue", Y(1)}}}, EntryLink{0, -Y(1)}}},
       "txn id used twice: E2"},
      {"a record under a charge's txn id",
       {Charged{"E3", 3, "B1", "C", Y(1), 1, "MB", "R", "t", 1,
                Posting{{Leg{false, "B1", -Y(1)}, Leg{true, "revenue", Y(1)}}}, EntryLink{0, -Y(1)}},
        ToppedUp{"E3", 3, "op", "B1", "K", Y(40), PaymentMethod::kCash, 1,
                 Posting{{Leg{false, "B1", Y(40)}, Leg{true, "cash", -Y(30)}, Leg{true, "wechat", -Y(10)}}}, EntryLink{0, Y(40)}}},
       "txn id used twice: E3"},
      {"charge under a charge's txn id",
       {Charged{"E2", 2, "B1", "C", Y(1), 1, "MB", "R", "t", 1,
                Posting{{Leg{false, "B1", -Y(1)}, Leg{true, "revenue", Y(1)}}}, EntryLink{0, -Y(1)}},
        Charged{"E2", 2, "B1", "C2", Y(1), 1, "MB", "R2", "t", 1,
                Posting{{Leg{false, "B1", -Y(1)}, Leg{true, "revenue", Y(1)}}}, EntryLink{0, -Y(1)}}},
       "txn id used twice: E2"},
      {"top-up under a charge's txn id",
       {ToppedUp{"E2", 2, "op", "B1", "K", Y(40), PaymentMethod::kCash, 1, forty, EntryLink{0, Y(40)}},
        Charged{"E3", 3, "B1", "C", Y(1), 1, "MB", "R", "t", 1,
                Posting{{Leg{false, "B1", -Y(1)}, Leg{true, "revenue", Y(1)}}}, EntryLink{0, Y(39)}},
        ToppedUp{"E3", 3, "op", "B1", "K3", Y(40), PaymentMethod::kCash, 2, forty, EntryLink{0, Y(40)}}},
       "txn id used twice: E3"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto l = opened();
    Status s = l->TryApplyAll(c.decision);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
    EXPECT_NE(s.message().find(c.says), std::string::npos) << s.ToString();
  }
}

TEST(LedgerDeathTest, ImpossibleEventCrashesTheLivePath) {
  Ledger l;
  EXPECT_DEATH(l.ApplyAll({ToppedUp{"E2", 2, "op", "NOPE", "K", Y(40), PaymentMethod::kCash, 1,
                                    Posting{{Leg{false, "NOPE", Y(40)}, Leg{true, "cash", -Y(40)}}}, {}}}),
               "unknown account NOPE");
}

}  // namespace
}  // namespace wattledger::ledger

// Property test: random operation sequences against a small reference model written separately
// (plain maps, no shared code with ledger.cc beyond the public types), for many seeds. Checks
// outcomes, balances, purchase counts, levels, one cut/restore per crossing, conservation of
// money, and that replaying the produced events rebuilds an equal ledger.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "services/ledger/domain/ledger.h"
#include "services/ledger/domain/snapshot.h"

namespace wattledger::ledger {
namespace {

constexpr int64_t Y(int64_t yuan) { return yuan * 10'000; }

// ---- The reference model ---------------------------------------------------------------------

enum class Outcome { kAccepted, kDuplicate, kRejected };

struct Expect {
  Outcome outcome = Outcome::kAccepted;
  StatusCode code = StatusCode::kOk;
  std::string dup_txn;
};

struct MAccount {
  int64_t balance = 0;
  int64_t purchases = 0;
  int64_t credit = 0, alarm1 = 0, alarm2 = 0, cap = 0;
  bool prepaid = true;
  bool closed = false;
  int level = 0;  // 0 normal, 1 alarm1, 2 alarm2, 3 arrears, 4 cutoff.
  bool cut = false;
  std::string meter;
};

struct MTxn {
  std::string account;
  std::string kind;  // "topup", "refund", "adjust", "reversal", "charge", "other"
  int64_t delta = 0;
  std::string counter;  // System account on the other side.
  bool reversed = false;
};

struct Model {
  std::map<std::string, MAccount> accounts;
  std::map<std::string, int64_t> sys;
  std::map<std::string, std::pair<std::string, std::string>> keys;     // key -> (what, txn)
  std::map<std::string, std::pair<std::string, std::string>> charges;  // id -> (what, txn)
  std::map<std::string, MTxn> txns;
  std::map<std::string, std::string> meter_owner;

  static int LevelOf(const MAccount& a, int64_t b) {
    if (b < -a.credit) return 4;
    if (b < 0) return 3;
    if (b <= a.alarm2) return 2;
    if (b <= a.alarm1) return 1;
    return 0;
  }
  static Expect Rejected(StatusCode c) { return Expect{Outcome::kRejected, c, ""}; }

  // Moves money and returns (level changes, cuts, restores) the move implies.
  struct Effects {
    int level_changes = 0, cuts = 0, restores = 0;
  };
  Effects Move(const std::string& id, int64_t delta, const std::string& counter) {
    MAccount& a = accounts[id];
    a.balance += delta;
    sys[counter] -= delta;
    if (a.closed) return {};
    return Relevel(a);
  }
  Effects Relevel(MAccount& a) {
    Effects e;
    if (!a.prepaid || a.closed) return e;
    int level = LevelOf(a, a.balance);
    if (level != a.level) e.level_changes = 1;
    a.level = level;
    bool cut = level == 4;
    if (cut && !a.cut) e.cuts = 1;
    if (!cut && a.cut) e.restores = 1;
    a.cut = cut;
    return e;
  }
  // Key lookup shared by all keyed commands.
  std::optional<Expect> Key(const std::string& key, const std::string& what,
                            const std::map<std::string, std::pair<std::string, std::string>>& m) {
    auto it = m.find(key);
    if (it == m.end()) return std::nullopt;
    if (it->second.first == what) return Expect{Outcome::kDuplicate, StatusCode::kOk, it->second.second};
    return Rejected(StatusCode::kAlreadyExists);
  }
};

// ---- The driver ------------------------------------------------------------------------------

class Runner {
 public:
  explicit Runner(uint64_t seed) : rng_(seed) {}

  void Run(int steps) {
    for (int i = 0; i < steps; ++i) {
      Step();
      if (::testing::Test::HasFatalFailure()) return;
    }
    Finish();
  }

 private:
  int64_t Rand(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng_); }
  bool Chance(int percent) { return Rand(1, 100) <= percent; }
  // Of the service's form, so that each entry names the one before it by a real number.
  std::string NextTxn() { return "ledger/0/" + std::to_string(++seq_); }

  std::string PickAccount() {
    if (Chance(3) || m_.accounts.empty()) return "AX";  // Unknown.
    auto it = m_.accounts.begin();
    std::advance(it, Rand(0, static_cast<int64_t>(m_.accounts.size()) - 1));
    return it->first;
  }
  std::string PickKey() {
    if (!used_keys_.empty() && Chance(15)) return used_keys_[Rand(0, used_keys_.size() - 1)];
    if (Chance(2)) return "";
    std::string k = "K" + std::to_string(++key_seq_);
    return k;
  }
  int64_t PickAmount(int64_t max_yuan) {
    if (Chance(3)) return -Rand(0, Y(5));
    if (Chance(2)) return 0;
    return Rand(1, Y(max_yuan));
  }
  std::string Operator() { return Chance(2) ? "" : "op"; }
  PaymentMethod Method() { return static_cast<PaymentMethod>(Rand(0, 4)); }

  void Step() {
    int64_t r = Rand(1, 100);
    if (r <= 6 || m_.accounts.size() < 2) return Open();
    if (r <= 30) return DoTopUp();
    if (r <= 40) return DoRefund();
    if (r <= 50) return DoReverse();
    if (r <= 58) return DoAdjust();
    if (r <= 92) return DoCharge();
    if (r <= 97) return DoSetLimits();
    return DoClose();
  }

  // Runs `c` through the ledger and compares with `want` and the model's `effects`.
  void Check(const Command& c, const Expect& want, Model::Effects effects = {}) {
    auto r = ledger_.Decide(c);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const Decision& d = *r;
    std::string where = "step " + std::to_string(seq_);
    switch (want.outcome) {
      case Outcome::kAccepted:
        ASSERT_TRUE(d.accepted()) << where << " unexpected "
                                  << (d.rejection ? d.rejection->message : "duplicate");
        break;
      case Outcome::kDuplicate:
        ASSERT_TRUE(d.duplicate) << where;
        ASSERT_EQ(d.txn_id, want.dup_txn) << where;
        break;
      case Outcome::kRejected:
        ASSERT_TRUE(d.rejection.has_value()) << where << " expected code " << static_cast<int>(want.code);
        ASSERT_EQ(d.rejection->code, want.code) << where << " " << d.rejection->message;
        ASSERT_FALSE(d.rejection->message.empty());
        break;
    }
    int levels = 0, cuts = 0, restores = 0;
    for (const Event& e : d.events) {
      levels += std::holds_alternative<LevelChanged>(e);
      cuts += std::holds_alternative<SupplyCutRequired>(e);
      restores += std::holds_alternative<SupplyRestoreAllowed>(e);
    }
    ASSERT_EQ(levels, effects.level_changes) << where;
    ASSERT_EQ(cuts, effects.cuts) << where;
    ASSERT_EQ(restores, effects.restores) << where;
    ledger_.ApplyAll(d.events);
    log_.insert(log_.end(), d.events.begin(), d.events.end());
    decision_ends_.push_back(log_.size());
    ++counts_[static_cast<int>(want.outcome)];
    CompareAll(where);
  }

  void CompareAll(const std::string& where) {
    int64_t sum = 0;
    for (const auto& [id, ma] : m_.accounts) {
      const Account* a = ledger_.FindAccount(id);
      ASSERT_NE(a, nullptr) << where;
      ASSERT_EQ(a->balance_minor, ma.balance) << where << " " << id;
      ASSERT_EQ(a->purchase_count, ma.purchases) << where << " " << id;
      if (ma.prepaid && !ma.closed) {
        ASSERT_EQ(static_cast<int>(a->level), ma.level) << where << " " << id;
        ASSERT_EQ(a->supply_cut, ma.cut) << where << " " << id;
      }
      ASSERT_EQ(a->state == AccountState::kClosed || a->state == AccountState::kClosedWithArrears, ma.closed);
      sum += a->balance_minor;
    }
    ASSERT_EQ(ledger_.state().accounts.size(), m_.accounts.size());
    for (std::string_view name : sys::kAll) {
      std::string n(name);
      ASSERT_EQ(ledger_.SystemBalance(n), m_.sys.count(n) ? m_.sys.at(n) : 0) << where << " " << n;
      sum += ledger_.SystemBalance(n);
    }
    ASSERT_EQ(sum, 0) << where;
  }

  void Open() {
    OpenAccount c;
    c.txn_id = NextTxn();
    c.time_us = seq_;
    c.operator_id = "op";
    bool existing = !m_.accounts.empty() && Chance(10);
    c.account_id = existing ? PickAccount() : "A" + std::to_string(++account_seq_);
    if (c.account_id == "AX") c.account_id = "A" + std::to_string(++account_seq_);
    c.customer_name = "n";
    c.meters = {"M" + c.account_id};
    bool steal = !m_.meter_owner.empty() && Chance(10);
    if (steal) c.meters = {m_.meter_owner.begin()->first};
    c.mode = Chance(80) ? Mode::kPrepaid : Mode::kPostpaid;
    MAccount a;
    a.prepaid = c.mode == Mode::kPrepaid;
    a.credit = Chance(30) ? 0 : Rand(0, Y(20));
    a.alarm2 = Rand(0, Y(10));
    a.alarm1 = a.alarm2 + Rand(0, Y(20));
    a.cap = Chance(40) ? 0 : Rand(Y(100), Y(300));
    bool bad_limits = Chance(5);
    if (bad_limits) a.alarm1 = a.alarm2 - 1;
    c.credit_limit_minor = a.credit;
    c.alarm1_minor = a.alarm1;
    c.alarm2_minor = a.alarm2;
    c.hoarding_cap_minor = a.cap;
    if (Chance(20)) {
      c.opening_balance_minor = Rand(-Y(30), Y(100));
      c.opening_balance_source = "old meter";
    }
    a.meter = c.meters[0];
    // Same order of rules as documented in README.md.
    if (bad_limits && a.alarm1 < a.alarm2) return Check(c, Model::Rejected(StatusCode::kInvalidArgument));
    if (m_.accounts.contains(c.account_id)) return Check(c, Model::Rejected(StatusCode::kAlreadyExists));
    if (m_.meter_owner.contains(c.meters[0])) return Check(c, Model::Rejected(StatusCode::kFailedPrecondition));
    m_.accounts[c.account_id] = a;
    m_.meter_owner[a.meter] = c.account_id;
    m_.txns[c.txn_id] = MTxn{c.account_id, "other", c.opening_balance_minor, "migration", false};
    Model::Effects fx = m_.Move(c.account_id, c.opening_balance_minor, "migration");
    Check(c, Expect{}, fx);
  }

  void DoTopUp() {
    TopUp c{NextTxn(), seq_, Operator(), PickAccount(), PickKey(), PickAmount(150), Method(), std::nullopt};
    auto acc = m_.accounts.find(c.account_id);
    if (Chance(30)) {
      int64_t next = acc == m_.accounts.end() ? 1 : acc->second.purchases + 1;
      c.expected_purchase_count = Chance(80) ? next : next + Rand(-2, 2);
    }
    std::string what = "topup " + c.account_id + " " + std::to_string(c.amount_minor) + " " +
                       std::to_string(static_cast<int>(c.method));
    if (c.idempotency_key.empty()) return Check(c, Model::Rejected(StatusCode::kInvalidArgument));
    if (auto e = m_.Key(c.idempotency_key, what, m_.keys)) return Check(c, *e);
    if (c.operator_id.empty() || c.amount_minor <= 0) return Check(c, Model::Rejected(StatusCode::kInvalidArgument));
    if (acc == m_.accounts.end()) return Check(c, Model::Rejected(StatusCode::kNotFound));
    MAccount& a = acc->second;
    int64_t after = a.balance + c.amount_minor;
    if (c.expected_purchase_count && *c.expected_purchase_count != a.purchases + 1) {
      return Check(c, Model::Rejected(StatusCode::kFailedPrecondition));
    }
    if (a.closed && after > 0) return Check(c, Model::Rejected(StatusCode::kFailedPrecondition));
    if (a.closed && a.balance >= 0) return Check(c, Model::Rejected(StatusCode::kFailedPrecondition));
    if (!a.closed && a.cap > 0 && after > a.cap) return Check(c, Model::Rejected(StatusCode::kFailedPrecondition));
    a.purchases++;
    std::string channel(PaymentMethodName(c.method));
    m_.keys[c.idempotency_key] = {what, c.txn_id};
    used_keys_.push_back(c.idempotency_key);
    m_.txns[c.txn_id] = MTxn{c.account_id, "topup", c.amount_minor, channel, false};
    Check(c, Expect{}, m_.Move(c.account_id, c.amount_minor, channel));
  }

  void DoRefund() {
    std::string id = PickAccount();
    auto acc = m_.accounts.find(id);
    int64_t amount = PickAmount(50);
    if (acc != m_.accounts.end() && acc->second.balance > 0 && Chance(50)) {
      amount = Rand(1, acc->second.balance + acc->second.balance / 5 + 1);
    }
    Refund c{NextTxn(), seq_, Operator(), id, PickKey(), amount, Method(), "r"};
    std::string what = "refund " + c.account_id + " " + std::to_string(c.amount_minor) + " " +
                       std::to_string(static_cast<int>(c.method));
    if (c.idempotency_key.empty()) return Check(c, Model::Rejected(StatusCode::kInvalidArgument));
    if (auto e = m_.Key(c.idempotency_key, what, m_.keys)) return Check(c, *e);
    if (c.operator_id.empty() || c.amount_minor <= 0) return Check(c, Model::Rejected(StatusCode::kInvalidArgument));
    if (acc == m_.accounts.end()) return Check(c, Model::Rejected(StatusCode::kNotFound));
    MAccount& a = acc->second;
    if (a.closed || c.amount_minor > std::max<int64_t>(a.balance, 0)) {
      return Check(c, Model::Rejected(StatusCode::kFailedPrecondition));
    }
    m_.keys[c.idempotency_key] = {what, c.txn_id};
    used_keys_.push_back(c.idempotency_key);
    m_.txns[c.txn_id] = MTxn{c.account_id, "refund", -c.amount_minor, "refunds", false};
    Check(c, Expect{}, m_.Move(c.account_id, -c.amount_minor, "refunds"));
  }

  void DoReverse() {
    std::string original = "T-unknown";
    if (!m_.txns.empty() && !Chance(3)) {
      auto it = m_.txns.begin();
      std::advance(it, Rand(0, static_cast<int64_t>(m_.txns.size()) - 1));
      original = it->first;
    }
    std::string key = Chance(50) ? "" : PickKey();
    Reverse c{NextTxn(), seq_, Operator(), key, original, Chance(3) ? "" : "mistake"};
    std::string what = "reversal " + original;
    if (!key.empty()) {
      if (auto e = m_.Key(key, what, m_.keys)) return Check(c, *e);
    }
    if (c.operator_id.empty() || c.reason.empty()) return Check(c, Model::Rejected(StatusCode::kInvalidArgument));
    auto t = m_.txns.find(original);
    if (t == m_.txns.end()) return Check(c, Model::Rejected(StatusCode::kNotFound));
    MTxn& o = t->second;
    if (o.kind != "topup" && o.kind != "refund" && o.kind != "adjust") {
      return Check(c, Model::Rejected(StatusCode::kFailedPrecondition));
    }
    if (o.reversed) return Check(c, Model::Rejected(StatusCode::kAlreadyExists));
    MAccount& a = m_.accounts[o.account];
    if (a.closed && a.balance - o.delta > 0) return Check(c, Model::Rejected(StatusCode::kFailedPrecondition));
    o.reversed = true;
    if (!key.empty()) {
      m_.keys[key] = {what, c.txn_id};
      used_keys_.push_back(key);
    }
    m_.txns[c.txn_id] = MTxn{o.account, "reversal", -o.delta, o.counter, false};
    Check(c, Expect{}, m_.Move(o.account, -o.delta, o.counter));
  }

  void DoAdjust() {
    int64_t amount = Chance(5) ? 0 : Rand(-Y(60), Y(60));
    Adjust c{NextTxn(), seq_, Operator(), PickAccount(), PickKey(), amount, Chance(3) ? "" : "fix"};
    std::string what = "adjust " + c.account_id + " " + std::to_string(amount);
    if (c.idempotency_key.empty()) return Check(c, Model::Rejected(StatusCode::kInvalidArgument));
    if (auto e = m_.Key(c.idempotency_key, what, m_.keys)) return Check(c, *e);
    if (c.operator_id.empty() || amount == 0 || c.reason.empty()) {
      return Check(c, Model::Rejected(StatusCode::kInvalidArgument));
    }
    auto acc = m_.accounts.find(c.account_id);
    if (acc == m_.accounts.end()) return Check(c, Model::Rejected(StatusCode::kNotFound));
    if (acc->second.closed && acc->second.balance + amount > 0) {
      return Check(c, Model::Rejected(StatusCode::kFailedPrecondition));
    }
    m_.keys[c.idempotency_key] = {what, c.txn_id};
    used_keys_.push_back(c.idempotency_key);
    m_.txns[c.txn_id] = MTxn{c.account_id, "adjust", amount, "adjustments", false};
    Check(c, Expect{}, m_.Move(c.account_id, amount, "adjustments"));
  }

  void DoCharge() {
    std::string id;
    if (!used_charges_.empty() && Chance(10)) {
      id = used_charges_[Rand(0, used_charges_.size() - 1)];
    } else {
      id = Chance(1) ? "" : "C" + std::to_string(++charge_seq_);
    }
    Charge c{NextTxn(), seq_, id, PickAccount(), PickAmount(40), Rand(0, 5000), "M", "R", "t", 1};
    if (!id.empty() && m_.charges.contains(id) && Chance(70)) {
      // A redelivery: the same charge again.
      const auto& orig = original_charges_.at(id);
      c.account_id = orig.account_id;
      c.amount_minor = orig.amount_minor;
      c.energy_wh = orig.energy_wh;
    }
    std::string what = "charge " + c.account_id + " " + std::to_string(c.amount_minor) + " " +
                       std::to_string(c.energy_wh);
    if (id.empty()) return Check(c, Model::Rejected(StatusCode::kInvalidArgument));
    if (auto e = m_.Key(id, what, m_.charges)) return Check(c, *e);
    if (c.amount_minor <= 0) return Check(c, Model::Rejected(StatusCode::kInvalidArgument));
    if (!m_.accounts.contains(c.account_id)) return Check(c, Model::Rejected(StatusCode::kNotFound));
    m_.charges[id] = {what, c.txn_id};
    used_charges_.push_back(id);
    original_charges_[id] = c;
    m_.txns[c.txn_id] = MTxn{c.account_id, "charge", -c.amount_minor, "revenue", false};
    Check(c, Expect{}, m_.Move(c.account_id, -c.amount_minor, "revenue"));
  }

  void DoSetLimits() {
    SetLimits c{NextTxn(), seq_, "op", PickAccount(), std::nullopt, std::nullopt, std::nullopt, std::nullopt};
    c.credit_limit_minor = Rand(0, Y(30));
    if (Chance(50)) c.hoarding_cap_minor = Chance(50) ? 0 : Rand(Y(50), Y(300));
    auto acc = m_.accounts.find(c.account_id);
    if (acc == m_.accounts.end()) return Check(c, Model::Rejected(StatusCode::kNotFound));
    MAccount& a = acc->second;
    if (a.closed) return Check(c, Model::Rejected(StatusCode::kFailedPrecondition));
    a.credit = *c.credit_limit_minor;
    if (c.hoarding_cap_minor) a.cap = *c.hoarding_cap_minor;
    m_.txns[c.txn_id] = MTxn{c.account_id, "other", 0, "", false};
    Check(c, Expect{}, m_.Relevel(a));
  }

  void DoClose() {
    CloseAccount c{NextTxn(), seq_, "op", PickAccount(), "bye", Method()};
    auto acc = m_.accounts.find(c.account_id);
    if (acc == m_.accounts.end()) return Check(c, Model::Rejected(StatusCode::kNotFound));
    MAccount& a = acc->second;
    if (a.closed) return Check(c, Model::Rejected(StatusCode::kFailedPrecondition));
    int64_t refund = std::max<int64_t>(a.balance, 0);
    a.closed = true;
    m_.meter_owner.erase(a.meter);
    m_.txns[c.txn_id] = MTxn{c.account_id, "other", -refund, "refunds", false};
    m_.Move(c.account_id, -refund, "refunds");
    Check(c, Expect{});
  }

  void Finish() {
    ledger_.CheckInvariants();
    Ledger replayed;
    replayed.ApplyAll(log_);
    replayed.CheckInvariants();
    ASSERT_TRUE(replayed == ledger_);
    ASSERT_EQ(replayed.CanonicalDump(), ledger_.CanonicalDump());
    ASSERT_EQ(replayed.Digest(), ledger_.Digest());
    CheckCheckpoint();
    CheckEntryChains();
    // Each outcome should occur, or the generator is not exploring.
    ASSERT_GT(counts_[0], 50);
    ASSERT_GT(counts_[1], 0);
    ASSERT_GT(counts_[2], 10);
  }

  // A ledger saved part way through and loaded back, with the rest of the log folded into it,
  // equals the ledger that folded all of it; and one saved at the end loads back equal.
  void CheckCheckpoint() {
    const size_t cut = decision_ends_.empty() ? 0 : decision_ends_[rng_() % decision_ends_.size()];
    Ledger first;
    first.ApplyAll(std::vector<Event>(log_.begin(), log_.begin() + static_cast<std::ptrdiff_t>(cut)));
    auto loaded = SaveAndLoad(first);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    ASSERT_TRUE(**loaded == first);
    (*loaded)->ApplyAll(std::vector<Event>(log_.begin() + static_cast<std::ptrdiff_t>(cut), log_.end()));
    (*loaded)->CheckInvariants();
    ASSERT_TRUE(**loaded == ledger_) << "saved after " << cut << " of " << log_.size() << " events";
    ASSERT_EQ((*loaded)->CanonicalDump(), ledger_.CanonicalDump());
    auto whole = SaveAndLoad(ledger_);
    ASSERT_TRUE(whole.ok()) << whole.status().ToString();
    ASSERT_EQ((*whole)->CanonicalDump(), ledger_.CanonicalDump());
  }

  static Result<std::unique_ptr<Ledger>> SaveAndLoad(const Ledger& ledger) {
    return LoadFromString(SaveToString(ledger, 64), LedgerConfig(), 64);
  }

  // Walked back from each account's latest entry, the links visit exactly the account's entries
  // in the log, newest first, each leaving the balance the one before it left plus its amount.
  void CheckEntryChains() {
    std::map<uint64_t, const Event*> entry_at;
    std::map<std::string, std::vector<uint64_t>> in_log;  // Account -> its entries' seqs, in order.
    for (const Event& e : log_) {
      if (!MakesEntry(e)) continue;
      const uint64_t seq = EntrySeqOf(EventTxnId(e));
      ASSERT_NE(seq, 0u);
      ASSERT_TRUE(entry_at.emplace(seq, &e).second) << "two entries at " << seq;
      in_log[EventAccountId(e)].push_back(seq);
    }
    for (const auto& [id, account] : ledger_.state().accounts) {
      std::vector<uint64_t> walked;
      int64_t balance = account.balance_minor;
      for (uint64_t seq = account.last_entry_seq; seq != 0;) {
        auto it = entry_at.find(seq);
        ASSERT_NE(it, entry_at.end()) << id << " links " << seq;
        const EntryLink* link = EntryLinkOf(*it->second);
        ASSERT_EQ(EventAccountId(*it->second), id);
        ASSERT_EQ(link->balance_after_minor, balance) << id << " at " << seq;
        balance -= EntryOf(*it->second)->amount_minor;
        ASSERT_LT(link->prev_entry_seq, seq);
        walked.push_back(seq);
        seq = link->prev_entry_seq;
      }
      ASSERT_EQ(balance, 0) << id << ": the first entry starts from nothing";
      std::reverse(walked.begin(), walked.end());
      ASSERT_EQ(walked, in_log[id]) << id;
    }
  }

  std::mt19937_64 rng_;
  Model m_;
  Ledger ledger_;
  std::vector<Event> log_;
  std::vector<size_t> decision_ends_;  // log_.size() after each accepted decision.
  std::vector<std::string> used_keys_;
  std::vector<std::string> used_charges_;
  std::map<std::string, Charge> original_charges_;
  int64_t seq_ = 0, key_seq_ = 0, account_seq_ = 0, charge_seq_ = 0;
  int counts_[3] = {0, 0, 0};
};

TEST(LedgerProperty, RandomSequencesMatchTheReferenceModel) {
  for (uint64_t seed = 1; seed <= 150; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Runner(seed).Run(300);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(LedgerProperty, LongSequence) {
  Runner(424242).Run(5000);
}

}  // namespace
}  // namespace wattledger::ledger

#include "services/ledger/domain/ledger.h"

#include <algorithm>
#include <iterator>
#include <cstdio>
#include <set>
#include <type_traits>
#include <utility>

#include "wattledger/base/check.h"
#include "wattledger/money/money.h"

namespace wattledger::ledger {
namespace {

using money::FormatYuan;

Decision Reject(const std::string& txn_id, StatusCode code, std::string rule, std::string message) {
  Decision d;
  d.txn_id = txn_id;
  d.rejection = Rejection{code, std::move(rule), std::move(message)};
  return d;
}

Decision Invalid(const std::string& txn_id, std::string rule, std::string message) {
  return Reject(txn_id, StatusCode::kInvalidArgument, std::move(rule), std::move(message));
}

Decision Precondition(const std::string& txn_id, std::string rule, std::string message) {
  return Reject(txn_id, StatusCode::kFailedPrecondition, std::move(rule), std::move(message));
}

// A decision's events, starting with `first`. Not `std::vector<Event>{first}`: an initializer
// list is const, so that copies the event (its strings and legs) into the vector. Room is made for
// the level events that may follow.
std::vector<Event> EventsFrom(Event first) {
  std::vector<Event> events;
  events.reserve(3);
  events.push_back(std::move(first));
  return events;
}

Decision Accept(const std::string& txn_id, std::vector<Event> events) {
  Decision d;
  d.txn_id = txn_id;
  d.events = std::move(events);
  return d;
}

Decision Duplicate(const std::string& original_txn_id) {
  Decision d;
  d.txn_id = original_txn_id;
  d.duplicate = true;
  return d;
}

// The level events of `a` moving to `balance` under `limits`: one LevelChanged per change of
// level and one SupplyCutRequired / SupplyRestoreAllowed per crossing of the cut-off line.
void AppendLevelEvents(const Account& a, int64_t balance, const Limits& limits,
                       const std::string& txn_id, int64_t time_us, std::vector<Event>* out) {
  if (!Tracked(a)) return;
  Level to = LevelFor(balance, limits);
  if (to != a.level) {
    out->push_back(LevelChanged{txn_id, time_us, a.id, a.level, to, balance});
  }
  bool cut = to == Level::kCutoff;
  if (cut && !a.supply_cut) {
    out->push_back(SupplyCutRequired{txn_id, time_us, a.id, balance, -limits.credit_limit_minor, a.meters});
  } else if (!cut && a.supply_cut) {
    out->push_back(SupplyRestoreAllowed{txn_id, time_us, a.id, balance, -limits.credit_limit_minor, a.meters});
  }
}

Posting TwoLegs(const std::string& tenant, int64_t tenant_delta, std::string_view system) {
  Posting p;
  p.legs.reserve(2);  // One allocation, not two, for every posting.
  p.legs.push_back(Leg{false, tenant, tenant_delta});
  // -INT64_MIN does not exist (negating it is undefined): the leg keeps the minimum, which
  // PostingOverflow refuses by name before anything is applied.
  p.legs.push_back(Leg{true, std::string(system), tenant_delta == INT64_MIN ? INT64_MIN : -tenant_delta});
  return p;
}

std::string Quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

// What a txn says of itself ("meter M3"), then the operator's reason if one was given.
std::string WithReason(std::string what, std::string_view reason) {
  if (!reason.empty()) what.append(": ").append(reason);
  return what;
}

std::optional<std::string> ValidateLimits(const Limits& l) {
  if (l.credit_limit_minor < 0) {
    return "credit limit must be >= 0, got " + FormatYuan(l.credit_limit_minor);
  }
  if (l.alarm2_minor < 0) return "alarm level 2 must be >= 0, got " + FormatYuan(l.alarm2_minor);
  if (l.alarm1_minor < l.alarm2_minor) {
    return "alarm level 1 (" + FormatYuan(l.alarm1_minor) + ") must be >= alarm level 2 (" +
           FormatYuan(l.alarm2_minor) + ")";
  }
  if (l.hoarding_cap_minor < 0) {
    return "hoarding cap must be >= 0 (0 means no cap), got " + FormatYuan(l.hoarding_cap_minor);
  }
  return std::nullopt;
}

// What defines a request under an idempotency key or charge id: the money movement, not its
// metadata (operator, time and free-text reasons belong to the first attempt). Each kind lists
// its fields once, to a Sink that either hashes them (the stored fingerprint) or spells them out
// (for the message when a key is reused for a different request, which is rare).
class FingerprintHash {
 public:
  void Kind(std::string_view kind) { Bytes(kind); }
  // A kind always lists the same fields in the same order, so their names add nothing to the
  // hash; only the text sink spells them out.
  void Field(std::string_view /*name*/, std::string_view value) { Bytes(value); }
  void Field(std::string_view /*name*/, int64_t value) { Mix(static_cast<uint64_t>(value)); }
  void Money(std::string_view name, int64_t minor) { Field(name, minor); }
  uint64_t Take() const { return h_; }

 private:
  // Length first, so that no value can shift a field boundary ("ab"+"c" vs "a"+"bc"); then
  // eight bytes at a time, little-endian, the last word zero-padded.
  void Bytes(std::string_view s) {
    Mix(s.size());
    size_t i = 0;
    for (; i + 8 <= s.size(); i += 8) Mix(Word(s.data() + i, 8));
    if (i < s.size()) Mix(Word(s.data() + i, s.size() - i));
  }
  static uint64_t Word(const char* p, size_t n) {
    uint64_t w = 0;
    for (size_t k = 0; k < n; ++k) w |= static_cast<uint64_t>(static_cast<unsigned char>(p[k])) << (8 * k);
    return w;
  }
  // Each word is folded in through a 64x64->128-bit multiply, its two halves xored: every bit of
  // the word and of the state reaches every bit of the result, so no difference in a few bits of
  // two words cancels out by construction, as it does in a multiply and rotate alone. A 64-bit
  // hash against accidental collisions (about 2^-64 for two different requests), not against
  // crafted ones: a crafted collision only makes the crafter's own second request come back as a
  // duplicate of its first, and charge ids come from billing. Only ever compared within one
  // process (Decide against what Apply stored, both rebuilt from the log at start-up): never
  // written anywhere, so it may change between builds (and with it CanonicalDump's `fp`).
  void Mix(uint64_t v) {
    const unsigned __int128 m = static_cast<unsigned __int128>(h_ ^ v) * 0x9e3779b97f4a7c15ULL;
    h_ = static_cast<uint64_t>(m) ^ static_cast<uint64_t>(m >> 64);
  }
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

class FingerprintText {
 public:
  void Kind(std::string_view kind) { out_.append(kind); }
  void Field(std::string_view name, std::string_view value) {
    out_ += ' ';
    out_.append(name);
    out_ += '=';
    out_.append(value);
  }
  void Field(std::string_view name, int64_t value) { Field(name, std::to_string(value)); }
  void Money(std::string_view name, int64_t minor) { Field(name, FormatYuan(minor)); }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// Top-ups and refunds: cash moving through a payment channel.
template <typename Sink>
void DescribePayment(Sink& s, std::string_view kind, std::string_view account, int64_t amount, PaymentMethod m) {
  s.Kind(kind);
  s.Field("account", account);
  s.Money("amount", amount);
  s.Field("method", PaymentMethodName(m));
}
template <typename Sink>
void DescribeAdjust(Sink& s, std::string_view account, int64_t amount) {
  s.Kind("adjustment");
  s.Field("account", account);
  s.Money("amount", amount);
}
template <typename Sink>
void DescribeReverse(Sink& s, std::string_view original) {
  s.Kind("reversal");
  s.Field("of", original);
}
template <typename Sink>
void DescribeCharge(Sink& s, std::string_view account, int64_t amount, int64_t energy_wh,
                    std::string_view meter, std::string_view reading, std::string_view tariff,
                    int64_t tariff_version) {
  s.Kind("charge");
  s.Field("account", account);
  s.Money("amount", amount);
  s.Field("energy_wh", energy_wh);
  s.Field("meter", meter);
  s.Field("reading", reading);
  s.Field("tariff", tariff);
  s.Field("tariff_version", tariff_version);
}

// `describe(sink)` lists a request's fields to a sink; these run it with one.
template <typename Describe>
uint64_t FingerprintOf(const Describe& describe) {
  FingerprintHash h;
  describe(h);
  return h.Take();
}
template <typename Describe>
std::string DescriptionOf(const Describe& describe) {
  FingerprintText t;
  describe(t);
  return t.Take();
}

// A retry under a used key is a duplicate; another request under it is a conflict. nullopt: the
// key is new.
template <typename Describe>
std::optional<Decision> CheckKey(const KeyTable& keys, std::string_view what, const std::string& key,
                                 const Describe& describe, const std::string& txn_id) {
  const auto used = keys.find(key);
  if (!used) return std::nullopt;
  if (used->fingerprint == FingerprintOf(describe)) return Duplicate(std::string(used->txn_id));
  return Reject(txn_id, StatusCode::kAlreadyExists, "idempotency_key_reused",
                std::string(what) + " " + key + " was used for a different request (first: " +
                    std::string(used->txn_id) + "; now: " + DescriptionOf(describe) + ")");
}

// A closed account can hold zero or arrears, never money: nobody is there to own it.
std::optional<Decision> CheckClosedBalance(const Account& a, int64_t new_balance,
                                           std::string_view what, const std::string& txn_id) {
  if (!IsClosed(a) || new_balance <= 0) return std::nullopt;
  return Precondition(txn_id, "closed_account",
                      "account " + a.id + " is closed; the " + std::string(what) +
                          " would leave it a positive balance of " + FormatYuan(new_balance) +
                          ", and a closed account can only hold zero or arrears");
}

int64_t TenantDelta(const Posting& p, std::string_view account) {
  int64_t sum = 0;
  for (const Leg& leg : p.legs) {
    if (!leg.system && leg.account == account) sum += leg.delta_minor;
  }
  return sum;
}

// The arrears a negative balance stands for, as text. A balance of INT64_MIN (which a log written
// before the range rule may hold: see PostingOverflow) has no int64 negation.
std::string ArrearsText(int64_t balance) {
  return balance == INT64_MIN ? FormatYuan(balance).substr(1) : FormatYuan(-balance);
}

// The latest time of an account's entries once one at `time_us` follows those whose latest was
// `before` (INT64_MIN for none).
int64_t LatestEntryTime(int64_t before, int64_t time_us) { return std::max(before, time_us); }

}  // namespace

bool IsClosed(const Account& a) {
  return a.state == AccountState::kClosed || a.state == AccountState::kClosedWithArrears;
}

bool Tracked(const Account& a) { return a.mode == Mode::kPrepaid && !IsClosed(a); }

std::string DescribeKeyedRequest(const Event& event) {
  return std::visit(
      [](const auto& e) -> std::string {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, ToppedUp>) {
          return DescriptionOf([&](auto& s) { DescribePayment(s, "top-up", e.account_id, e.amount_minor, e.method); });
        } else if constexpr (std::is_same_v<T, Refunded>) {
          return DescriptionOf([&](auto& s) { DescribePayment(s, "refund", e.account_id, e.amount_minor, e.method); });
        } else if constexpr (std::is_same_v<T, Adjusted>) {
          return DescriptionOf([&](auto& s) { DescribeAdjust(s, e.account_id, e.amount_minor); });
        } else if constexpr (std::is_same_v<T, Reversed>) {
          return DescriptionOf([&](auto& s) { DescribeReverse(s, e.original_txn_id); });
        } else {
          return "";
        }
      },
      event);
}

bool MakesEntry(const Event& event) {
  return std::visit([](const auto& e) { return MakesEntryOf(e); }, event);
}

std::optional<StatementEntry> EntryOf(const Event& event) {
  if (!MakesEntry(event)) return std::nullopt;
  return std::visit(
      [](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        StatementEntry entry;
        entry.txn_id = e.txn_id;
        entry.time_us = e.time_us;
        if constexpr (requires { e.link; }) entry.balance_after_minor = e.link.balance_after_minor;
        if constexpr (std::is_same_v<T, AccountOpened>) {
          entry.kind = TxnKind::kOpen;
          entry.amount_minor = e.opening_balance_minor;
          entry.operator_id = e.operator_id;
          entry.reason = "opening balance from " + e.opening_balance_source;
        } else if constexpr (std::is_same_v<T, OwnershipTransferred>) {
          entry.kind = TxnKind::kTransfer;
          entry.amount_minor = -e.settlement_refund_minor;
          entry.operator_id = e.operator_id;
          entry.reason = WithReason("settled to previous owner " + e.old_customer_name, e.reason);
          entry.method = std::string(PaymentMethodName(e.method));
        } else if constexpr (std::is_same_v<T, AccountClosed>) {
          entry.kind = TxnKind::kClose;
          entry.amount_minor = -e.settlement_refund_minor;
          entry.operator_id = e.operator_id;
          entry.reason = e.reason;
          entry.method = std::string(PaymentMethodName(e.method));
        } else if constexpr (std::is_same_v<T, ToppedUp>) {
          entry.kind = TxnKind::kTopUp;
          entry.amount_minor = e.amount_minor;
          entry.operator_id = e.operator_id;
          entry.method = std::string(PaymentMethodName(e.method));
          entry.idempotency_key = e.idempotency_key;
          entry.purchase_count = e.purchase_count;
        } else if constexpr (std::is_same_v<T, Refunded>) {
          entry.kind = TxnKind::kRefund;
          entry.amount_minor = -e.amount_minor;
          entry.operator_id = e.operator_id;
          entry.reason = e.reason;
          entry.method = std::string(PaymentMethodName(e.method));
          entry.idempotency_key = e.idempotency_key;
        } else if constexpr (std::is_same_v<T, Reversed>) {
          entry.kind = TxnKind::kReversal;
          entry.amount_minor = e.amount_minor;
          entry.operator_id = e.operator_id;
          entry.reason = e.reason;
          entry.idempotency_key = e.idempotency_key;
          entry.original_txn_id = e.original_txn_id;
        } else if constexpr (std::is_same_v<T, Adjusted>) {
          entry.kind = TxnKind::kAdjustment;
          entry.amount_minor = e.amount_minor;
          entry.operator_id = e.operator_id;
          entry.reason = e.reason;
          entry.idempotency_key = e.idempotency_key;
        } else if constexpr (std::is_same_v<T, Charged>) {
          entry.kind = TxnKind::kCharge;
          entry.amount_minor = -e.amount_minor;
          entry.charge_id = e.charge_id;
          entry.meter_id = e.meter_id;
          entry.reading_id = e.reading_id;
          entry.tariff_id = e.tariff_id;
          entry.tariff_version = e.tariff_version;
          entry.energy_wh = e.energy_wh;
        }
        return entry;
      },
      event);
}

const EntryLink* EntryLinkOf(const Event& event) {
  if (!MakesEntry(event)) return nullptr;
  return std::visit(
      [](const auto& e) -> const EntryLink* {
        if constexpr (requires { e.link; }) {
          return &e.link;
        } else {
          return nullptr;
        }
      },
      event);
}

uint64_t EntrySeqOf(std::string_view txn_id) {
  std::string_view prefix;
  uint64_t seq = 0;
  return SplitTxnId(txn_id, &prefix, &seq) ? seq : 0;
}

TxnRecord CompleteTxn(TxnRecord partial, const StatementEntry& entry) {
  partial.time_us = entry.time_us;
  partial.operator_id = entry.operator_id;
  partial.reason = entry.reason;
  partial.idempotency_key = entry.kind == TxnKind::kCharge ? entry.charge_id : entry.idempotency_key;
  partial.original_txn_id = entry.original_txn_id;
  return partial;
}

StatementPlan PlanStatement(const std::vector<EntryRow>& rows, int64_t from_us, int64_t to_us) {
  StatementPlan plan;
  for (size_t i = 0; i < rows.size(); ++i) {
    const EntryRow& r = rows[i];
    if (r.time_us >= from_us && r.time_us < to_us) {
      if (plan.rows.empty()) plan.opening_balance_minor = i == 0 ? 0 : rows[i - 1].balance_after_minor;
      plan.rows.push_back(i);
    } else if (r.time_us < from_us && plan.rows.empty()) {
      plan.opening_balance_minor = r.balance_after_minor;
    }
  }
  plan.closing_balance_minor =
      plan.rows.empty() ? plan.opening_balance_minor : rows[plan.rows.back()].balance_after_minor;
  return plan;
}

bool StatementWalkEnds(const EntryLink& link, int64_t from_us) {
  return link.latest_time_us != kLatestEntryTimeUnknown && link.latest_time_us < from_us;
}

// A message when `p` moves an amount, or leaves a balance or the sum of the tenants' (kept as a
// running total), beyond ±INT64_MAX; nothing when it fits.
std::optional<std::string> Ledger::PostingOverflow(const Posting& p) const {
  // Amounts and balances stay within ±INT64_MAX, so that each can be negated: a posting's other
  // leg, a reversal's, the arrears of a close. -INT64_MIN does not exist (TwoLegs leaves such a
  // leg at the minimum), and legs that do not sum to zero mean an amount was beyond the range.
  __int128 tenant_delta = 0;
  __int128 sum = 0;
  for (const Leg& leg : p.legs) {
    if (leg.delta_minor == INT64_MIN) {
      return "the amount " + FormatYuan(leg.delta_minor) + " is beyond what the ledger can hold (at most " +
             FormatYuan(INT64_MAX) + " either way)";
    }
    sum += leg.delta_minor;
    if (!leg.system) tenant_delta += leg.delta_minor;
  }
  if (sum != 0) return "the posting's legs would not sum to zero: an amount is beyond what the ledger can hold";
  const __int128 tenants_after = static_cast<__int128>(state_.tenant_total_minor) + tenant_delta;
  if (tenants_after > INT64_MAX || tenants_after < -INT64_MAX) {
    return "the amount would take the sum of all tenant balances, " + FormatYuan(state_.tenant_total_minor) +
           ", beyond what the ledger can hold";
  }
  for (const Leg& leg : p.legs) {
    int64_t before = 0;
    if (leg.system) {
      before = SystemBalance(leg.account);
    } else if (const Account* a = FindAccount(leg.account)) {  // The one the decision just found.
      before = a->balance_minor;
    }
    int64_t after = 0;
    if (money::AddOverflows(before, leg.delta_minor, &after) || after == INT64_MIN) {
      return "the amount " + FormatYuan(leg.delta_minor) + " would overflow the balance " +
             FormatYuan(before) + " of " + (leg.system ? "system account " : "account ") +
             leg.account;
    }
  }
  return std::nullopt;
}

Ledger::Ledger(LedgerConfig config) : config_(config) {
  for (std::string_view name : sys::kAll) state_.system_balances.emplace(std::string(name), 0);
}

const Account* Ledger::FindAccount(std::string_view id) const {
  if (recent_.account != nullptr && recent_.account->id == id) return recent_.account;
  auto it = state_.accounts.find(id);
  if (it == state_.accounts.end()) return nullptr;
  // The state is this ledger's own, only const here: MutableAccount hands it out writable.
  recent_.account = const_cast<Account*>(&it->second);
  return recent_.account;
}

std::optional<TxnRecord> Ledger::FindTxn(std::string_view txn_id) const {
  if (auto it = state_.txns.find(txn_id); it != state_.txns.end()) return it->second;
  const EntryTxn* found = state_.entry_txns.find(txn_id);
  if (found == nullptr) return std::nullopt;
  // What decisions need; the rest is on the txn's event.
  const EntryTxn& r = *found;
  auto reversal = state_.entry_reversed_by.find(txn_id);
  TxnRecord t;
  t.txn_id = std::string(txn_id);
  t.kind = static_cast<TxnKind>(r.kind);
  t.account_id = r.account_id;
  t.amount_minor = r.amount_minor;
  if (reversal != state_.entry_reversed_by.end()) t.reversed_by = reversal->second;
  t.posting = TwoLegs(r.account_id, r.amount_minor, sys::kAll[r.system]);
  return t;
}

size_t Ledger::TxnIdMarkOf(std::string_view prefix) const {
  size_t i = 0;
  while (i < txn_id_marks_.size() && txn_id_marks_[i].prefix != prefix) ++i;
  return i;
}

bool Ledger::TxnIdAboveMarks(std::string_view txn_id) const {
  std::string_view prefix;
  uint64_t number = 0;
  if (txn_id_marks_full_ || !SplitTxnId(txn_id, &prefix, &number)) return false;
  const size_t i = TxnIdMarkOf(prefix);
  // No mark: no txn with this prefix and a number was ever recorded.
  return i == txn_id_marks_.size() || number > txn_id_marks_[i].max;
}

void Ledger::RaiseTxnIdMark(std::string_view txn_id) {
  std::string_view prefix;
  uint64_t number = 0;
  if (txn_id_marks_full_ || !SplitTxnId(txn_id, &prefix, &number)) return;
  if (const size_t i = TxnIdMarkOf(prefix); i < txn_id_marks_.size()) {
    txn_id_marks_[i].max = std::max(txn_id_marks_[i].max, number);
  } else if (txn_id_marks_.size() < kMaxTxnIdMarks) {
    txn_id_marks_.push_back({std::string(prefix), number});
  } else {
    txn_id_marks_full_ = true;
    txn_id_marks_.clear();
  }
}

bool Ledger::TxnUsed(std::string_view txn_id) const {
  if (TxnIdAboveMarks(txn_id)) return false;
  return state_.txns.contains(txn_id) || state_.entry_txns.contains(txn_id);
}

int64_t Ledger::SystemBalance(std::string_view name) const {
  auto it = state_.system_balances.find(name);
  return it == state_.system_balances.end() ? 0 : it->second;
}

// ---------------------------------------------------------------------------------------------
// Decide

void Ledger::Prefetch(const Command& command, int ahead) const {
  std::visit(
      [this, ahead](const auto& c) {
        using T = std::decay_t<decltype(c)>;
        if constexpr (requires { c.account_id; }) {
          if (ahead >= 2) {
            state_.accounts.PrefetchSlot(c.account_id);
          } else if (const auto* kv = state_.accounts.PrefetchElement(c.account_id)) {
            // A posting reads the rest of the account's hot fields too: the line with its meters
            // and limits, and the one with its balance and level (Account's order).
            __builtin_prefetch(&kv->second.limits);
            __builtin_prefetch(&kv->second.balance_minor);
          }
        }
        if (ahead >= 2) {
          if constexpr (std::is_same_v<T, Charge>) {
            state_.charges.Prefetch(c.charge_id);
          } else if constexpr (requires { c.idempotency_key; }) {
            if (!c.idempotency_key.empty()) state_.idempotency_keys.Prefetch(c.idempotency_key);
          }
        }
      },
      command);
}

Result<Decision> Ledger::Decide(const Command& command) const {
  const std::string& txn_id = std::visit([](const auto& c) -> const std::string& { return c.txn_id; }, command);
  if (txn_id.empty()) return InvalidArgument("command has no txn_id; the adapter must assign one");
  if (TxnUsed(txn_id)) {
    return Internal("txn id " + txn_id + " is already used by an earlier transaction; txn ids "
                    "must be unique");
  }
  Decision d = std::visit(
      [this](const auto& c) -> Decision {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, OpenAccount>) return DecideOpen(c);
        else if constexpr (std::is_same_v<T, AttachMeter>) return DecideAttach(c);
        else if constexpr (std::is_same_v<T, DetachMeter>) return DecideDetach(c);
        else if constexpr (std::is_same_v<T, SetLimits>) return DecideSetLimits(c);
        else if constexpr (std::is_same_v<T, Suspend>) return DecideSuspend(c);
        else if constexpr (std::is_same_v<T, Resume>) return DecideResume(c);
        else if constexpr (std::is_same_v<T, TransferOwnership>) return DecideTransfer(c);
        else if constexpr (std::is_same_v<T, CloseAccount>) return DecideClose(c);
        else if constexpr (std::is_same_v<T, TopUp>) return DecideTopUp(c);
        else if constexpr (std::is_same_v<T, Refund>) return DecideRefund(c);
        else if constexpr (std::is_same_v<T, Reverse>) return DecideReverse(c);
        else if constexpr (std::is_same_v<T, Adjust>) return DecideAdjust(c);
        else if constexpr (std::is_same_v<T, Charge>) return DecideCharge(c);
        else static_assert(sizeof(T) == 0, "command without a decision");
      },
      command);
  if (d.accepted() && !d.events.empty()) LinkEntry(d.events.front());
  return d;
}

void Ledger::LinkEntry(Event& event) const {
  // Only a decision's first event makes an entry (events.h), and it is the one at its txn's seq.
  if (!MakesEntry(event)) return;
  std::visit(
      [this](auto& e) {
        if constexpr (requires { e.link; }) {
          const Account* a = FindAccount(e.account_id);  // None yet for an opening.
          e.link.prev_entry_seq = a != nullptr ? a->last_entry_seq : 0;
          e.link.balance_after_minor = (a != nullptr ? a->balance_minor : 0) + TenantDelta(e.posting, e.account_id);
          e.link.latest_time_us = LatestEntryTime(a != nullptr ? a->latest_entry_time_us : INT64_MIN, e.time_us);
        }
      },
      event);
}

#define WL_LEDGER_REQUIRE_OPERATOR(c)                                                   \
  do {                                                                                  \
    if ((c).operator_id.empty()) {                                                      \
      return Invalid((c).txn_id, "operator_required",                                   \
                     "every operator command must name its operator (operator_id is empty)"); \
    }                                                                                   \
  } while (0)

// Finds the account or returns a NOT_FOUND rejection from the enclosing Decide function.
#define WL_LEDGER_FIND_ACCOUNT(var, c)                                                         \
  const Account* var = FindAccount((c).account_id);                                            \
  if (var == nullptr) {                                                                        \
    return Reject((c).txn_id, StatusCode::kNotFound, "unknown_account",                        \
                  "account " + Quoted((c).account_id) + " not found");                         \
  }

#define WL_LEDGER_REQUIRE_NOT_CLOSED(a, c, what)                                               \
  do {                                                                                         \
    if (IsClosed(*(a))) {                                                                      \
      return Precondition((c).txn_id, "closed_account",                                        \
                          "account " + (a)->id + " is " +                                      \
                              std::string(AccountStateName((a)->state)) + "; cannot " + (what)); \
    }                                                                                          \
  } while (0)

Decision Ledger::DecideOpen(const OpenAccount& c) const {
  WL_LEDGER_REQUIRE_OPERATOR(c);
  if (c.account_id.empty()) return Invalid(c.txn_id, "account_id_required", "account id is empty");
  if (c.customer_name.empty()) {
    return Invalid(c.txn_id, "customer_name_required", "customer name is empty");
  }
  if (c.meters.empty()) {
    return Invalid(c.txn_id, "meter_required", "an account needs at least one meter");
  }
  if (c.opening_balance_minor != 0 && c.opening_balance_source.empty()) {
    return Invalid(c.txn_id, "opening_balance_source_required",
                   "an opening balance of " + FormatYuan(c.opening_balance_minor) +
                       " needs its source: the old meter or system it was carried from");
  }
  std::set<std::string_view> seen;
  for (const std::string& m : c.meters) {
    if (m.empty()) return Invalid(c.txn_id, "meter_id_required", "a meter id is empty");
    if (!seen.insert(m).second) {
      return Invalid(c.txn_id, "meter_listed_twice", "meter " + m + " is listed twice");
    }
  }
  for (const std::string& p : c.phones) {
    if (p.empty()) return Invalid(c.txn_id, "phone_empty", "a phone number is empty");
  }
  Limits limits{c.credit_limit_minor.value_or(config_.default_credit_limit_minor),
                c.alarm1_minor.value_or(config_.default_alarm1_minor),
                c.alarm2_minor.value_or(config_.default_alarm2_minor),
                c.hoarding_cap_minor.value_or(config_.default_hoarding_cap_minor)};
  if (auto bad = ValidateLimits(limits)) return Invalid(c.txn_id, "limits", *bad);
  if (const Account* existing = FindAccount(c.account_id)) {
    return Reject(c.txn_id, StatusCode::kAlreadyExists, "account_exists",
                  "account " + c.account_id + " already exists (opened by " +
                      existing->opened_txn_id + ", " +
                      std::string(AccountStateName(existing->state)) + ")");
  }
  for (const std::string& m : c.meters) {
    auto it = state_.meter_owner.find(m);
    if (it != state_.meter_owner.end()) {
      return Precondition(c.txn_id, "meter_taken",
                          "meter " + m + " already belongs to account " + it->second);
    }
  }
  AccountOpened e{c.txn_id,    c.time_us, c.operator_id, c.account_id, c.customer_name,
                  c.phones,    c.room,    c.meters,      c.tariff_id,  c.mode,
                  limits,      c.opening_balance_minor, c.opening_balance_source, {}, {}};
  if (c.opening_balance_minor != 0) {
    e.posting = TwoLegs(c.account_id, c.opening_balance_minor, sys::kMigration);
    if (auto overflow = PostingOverflow(e.posting)) {
      return Invalid(c.txn_id, "overflow", *overflow);
    }
  }
  // A new account starts at level normal with supply on; its opening balance may move it.
  Account fresh;
  fresh.id = c.account_id;
  fresh.mode = c.mode;
  fresh.meters = c.meters;
  std::vector<Event> events = EventsFrom(std::move(e));
  AppendLevelEvents(fresh, c.opening_balance_minor, limits, c.txn_id, c.time_us, &events);
  return Accept(c.txn_id, std::move(events));
}

Decision Ledger::DecideAttach(const AttachMeter& c) const {
  WL_LEDGER_REQUIRE_OPERATOR(c);
  if (c.meter_id.empty()) return Invalid(c.txn_id, "meter_id_required", "meter id is empty");
  WL_LEDGER_FIND_ACCOUNT(a, c);
  WL_LEDGER_REQUIRE_NOT_CLOSED(a, c, "attach meters");
  auto it = state_.meter_owner.find(c.meter_id);
  if (it != state_.meter_owner.end()) {
    if (it->second == a->id) {
      return Reject(c.txn_id, StatusCode::kAlreadyExists, "meter_already_attached",
                    "meter " + c.meter_id + " is already attached to account " + a->id);
    }
    return Precondition(c.txn_id, "meter_taken",
                        "meter " + c.meter_id + " already belongs to account " + it->second);
  }
  // A meter joins its account's supply: cut with a cut-off account's other meters, so that a
  // meter attached to it gives no electricity the account has no money or credit for.
  return Accept(c.txn_id, EventsFrom(MeterAttached{c.txn_id, c.time_us, c.operator_id, a->id, c.meter_id,
                                                   Tracked(*a) && a->supply_cut, c.reason}));
}

Decision Ledger::DecideDetach(const DetachMeter& c) const {
  WL_LEDGER_REQUIRE_OPERATOR(c);
  WL_LEDGER_FIND_ACCOUNT(a, c);
  WL_LEDGER_REQUIRE_NOT_CLOSED(a, c, "detach meters");
  if (std::find(a->meters.begin(), a->meters.end(), c.meter_id) == a->meters.end()) {
    return Reject(c.txn_id, StatusCode::kNotFound, "meter_not_attached",
                  "meter " + Quoted(c.meter_id) + " is not attached to account " + a->id);
  }
  if (a->meters.size() == 1) {
    return Precondition(c.txn_id, "last_meter",
                        "meter " + c.meter_id + " is the last meter of account " + a->id +
                            "; attach the replacement first, or close the account");
  }
  return Accept(c.txn_id, EventsFrom(MeterDetached{c.txn_id, c.time_us, c.operator_id, a->id, c.meter_id, c.reason}));
}

Decision Ledger::DecideSetLimits(const SetLimits& c) const {
  WL_LEDGER_REQUIRE_OPERATOR(c);
  if (!c.credit_limit_minor && !c.alarm1_minor && !c.alarm2_minor && !c.hoarding_cap_minor) {
    return Invalid(c.txn_id, "no_limits", "set-limits names no limit to change");
  }
  WL_LEDGER_FIND_ACCOUNT(a, c);
  WL_LEDGER_REQUIRE_NOT_CLOSED(a, c, "change limits");
  Limits after{c.credit_limit_minor.value_or(a->limits.credit_limit_minor),
               c.alarm1_minor.value_or(a->limits.alarm1_minor),
               c.alarm2_minor.value_or(a->limits.alarm2_minor),
               c.hoarding_cap_minor.value_or(a->limits.hoarding_cap_minor)};
  if (auto bad = ValidateLimits(after)) return Invalid(c.txn_id, "limits", *bad);
  std::vector<Event> events = EventsFrom(LimitsChanged{c.txn_id, c.time_us, c.operator_id, a->id, a->limits, after, c.reason});
  AppendLevelEvents(*a, a->balance_minor, after, c.txn_id, c.time_us, &events);
  return Accept(c.txn_id, std::move(events));
}

Decision Ledger::DecideSuspend(const Suspend& c) const {
  WL_LEDGER_REQUIRE_OPERATOR(c);
  if (c.reason.empty()) return Invalid(c.txn_id, "reason_required", "a suspension needs a reason");
  WL_LEDGER_FIND_ACCOUNT(a, c);
  WL_LEDGER_REQUIRE_NOT_CLOSED(a, c, "suspend");
  if (a->state == AccountState::kSuspended) {
    return Precondition(c.txn_id, "already_suspended", "account " + a->id + " is already suspended");
  }
  return Accept(c.txn_id, EventsFrom(AccountSuspended{c.txn_id, c.time_us, c.operator_id, a->id, c.reason}));
}

Decision Ledger::DecideResume(const Resume& c) const {
  WL_LEDGER_REQUIRE_OPERATOR(c);
  WL_LEDGER_FIND_ACCOUNT(a, c);
  if (a->state != AccountState::kSuspended) {
    return Precondition(c.txn_id, "not_suspended",
                        "account " + a->id + " is " + std::string(AccountStateName(a->state)) +
                            ", not suspended; only a suspended account can be resumed");
  }
  return Accept(c.txn_id, EventsFrom(AccountResumed{c.txn_id, c.time_us, c.operator_id, a->id, c.reason}));
}

Decision Ledger::DecideTransfer(const TransferOwnership& c) const {
  WL_LEDGER_REQUIRE_OPERATOR(c);
  if (c.new_customer_name.empty()) {
    return Invalid(c.txn_id, "customer_name_required", "new customer name is empty");
  }
  for (const std::string& p : c.new_phones) {
    if (p.empty()) return Invalid(c.txn_id, "phone_empty", "a phone number is empty");
  }
  WL_LEDGER_FIND_ACCOUNT(a, c);
  WL_LEDGER_REQUIRE_NOT_CLOSED(a, c, "transfer ownership");
  OwnershipTransferred e{c.txn_id, c.time_us, c.operator_id, a->id, a->customer_name, a->phones,
                         c.new_customer_name, c.new_phones, c.settle, 0, c.method, {}, {}, c.reason};
  int64_t balance_after = a->balance_minor;
  if (c.settle) {
    if (a->balance_minor < 0) {
      return Precondition(c.txn_id, "transfer_with_arrears",
                          "account " + a->id + " has arrears of " + ArrearsText(a->balance_minor) +
                              "; they must be paid before a settled transfer, or carried over");
    }
    if (a->balance_minor > 0) {
      e.settlement_refund_minor = a->balance_minor;
      e.posting = TwoLegs(a->id, -a->balance_minor, sys::kRefunds);
      if (auto overflow = PostingOverflow(e.posting)) {
        return Invalid(c.txn_id, "overflow", *overflow);
      }
    }
    balance_after = 0;
  }
  std::vector<Event> events = EventsFrom(std::move(e));
  AppendLevelEvents(*a, balance_after, a->limits, c.txn_id, c.time_us, &events);
  return Accept(c.txn_id, std::move(events));
}

Decision Ledger::DecideClose(const CloseAccount& c) const {
  WL_LEDGER_REQUIRE_OPERATOR(c);
  WL_LEDGER_FIND_ACCOUNT(a, c);
  if (IsClosed(*a)) {
    return Precondition(c.txn_id, "already_closed",
                        "account " + a->id + " is already " + std::string(AccountStateName(a->state)));
  }
  AccountClosed e{c.txn_id, c.time_us, c.operator_id, a->id, c.reason, 0, c.method, 0, a->meters, {}, {}};
  if (a->balance_minor > 0) {
    e.settlement_refund_minor = a->balance_minor;
    e.posting = TwoLegs(a->id, -a->balance_minor, sys::kRefunds);
    if (auto overflow = PostingOverflow(e.posting)) {
      return Invalid(c.txn_id, "overflow", *overflow);
    }
  } else if (a->balance_minor == INT64_MIN) {
    // Only a log written before the range rule can hold it; its arrears have no int64 value.
    return Invalid(c.txn_id, "overflow",
                   "the arrears of account " + a->id + ", " + ArrearsText(a->balance_minor) +
                       ", are beyond what the ledger can hold; adjust the balance up first");
  } else if (a->balance_minor < 0) {
    e.arrears_minor = -a->balance_minor;
  }
  // Closing ends level tracking: no level events.
  return Accept(c.txn_id, EventsFrom(std::move(e)));
}

Decision Ledger::DecideTopUp(const TopUp& c) const {
  if (c.idempotency_key.empty()) {
    return Invalid(c.txn_id, "idempotency_key_required", "a top-up needs an idempotency key");
  }
  auto fp = [&](auto& sink) { DescribePayment(sink, "top-up", c.account_id, c.amount_minor, c.method); };
  if (auto d = CheckKey(state_.idempotency_keys, "idempotency key", c.idempotency_key, fp, c.txn_id)) {
    return *std::move(d);
  }
  WL_LEDGER_REQUIRE_OPERATOR(c);
  if (c.amount_minor <= 0) {
    return Invalid(c.txn_id, "amount_positive",
                   "top-up amount must be > 0, got " + FormatYuan(c.amount_minor));
  }
  WL_LEDGER_FIND_ACCOUNT(a, c);
  int64_t next_count = a->purchase_count + 1;
  if (c.expected_purchase_count && *c.expected_purchase_count != next_count) {
    return Precondition(c.txn_id, "purchase_count",
                        "purchase count mismatch (CE-05): the top-up says it is purchase " +
                            std::to_string(*c.expected_purchase_count) + " but the next purchase of account " +
                            a->id + " is " + std::to_string(next_count) + " (" +
                            std::to_string(a->purchase_count) + " top-ups so far)");
  }
  // The account's rules come before the limits of int64 (PostingOverflow): a top-up far above
  // the hoarding cap breaks the cap, whatever else it would break.
  const __int128 wide_after = static_cast<__int128>(a->balance_minor) + c.amount_minor;
  if (a->state == AccountState::kClosed) {
    return Precondition(c.txn_id, "closed_account",
                        "account " + a->id + " is closed and owes nothing; it takes no top-ups");
  }
  if (a->state == AccountState::kClosedWithArrears && wide_after > 0) {
    return Precondition(c.txn_id, "closed_account",
                        "account " + a->id + " is closed with arrears of " +
                            ArrearsText(a->balance_minor) + "; a top-up can collect at most that, not " +
                            FormatYuan(c.amount_minor));
  }
  if (!IsClosed(*a) && a->limits.hoarding_cap_minor > 0 && wide_after > a->limits.hoarding_cap_minor) {
    return Precondition(c.txn_id, "hoarding_cap",
                        "top-up of " + FormatYuan(c.amount_minor) + " would make the balance " +
                            (wide_after > INT64_MAX ? "more than " + FormatYuan(INT64_MAX)
                                                    : FormatYuan(static_cast<int64_t>(wide_after))) +
                            ", above the hoarding cap " + FormatYuan(a->limits.hoarding_cap_minor));
  }
  Posting posting = TwoLegs(a->id, c.amount_minor, ChannelAccount(c.method));
  if (auto overflow = PostingOverflow(posting)) return Invalid(c.txn_id, "overflow", *overflow);
  const int64_t after = static_cast<int64_t>(wide_after);  // Fits: PostingOverflow checked it.
  std::vector<Event> events = EventsFrom(ToppedUp{c.txn_id, c.time_us, c.operator_id, a->id, c.idempotency_key,
                                                  c.amount_minor, c.method, next_count, std::move(posting), {}});
  AppendLevelEvents(*a, after, a->limits, c.txn_id, c.time_us, &events);
  return Accept(c.txn_id, std::move(events));
}

Decision Ledger::DecideRefund(const Refund& c) const {
  if (c.idempotency_key.empty()) {
    return Invalid(c.txn_id, "idempotency_key_required", "a refund needs an idempotency key");
  }
  auto fp = [&](auto& sink) { DescribePayment(sink, "refund", c.account_id, c.amount_minor, c.method); };
  if (auto d = CheckKey(state_.idempotency_keys, "idempotency key", c.idempotency_key, fp, c.txn_id)) {
    return *std::move(d);
  }
  WL_LEDGER_REQUIRE_OPERATOR(c);
  if (c.amount_minor <= 0) {
    return Invalid(c.txn_id, "amount_positive",
                   "refund amount must be > 0, got " + FormatYuan(c.amount_minor));
  }
  WL_LEDGER_FIND_ACCOUNT(a, c);
  WL_LEDGER_REQUIRE_NOT_CLOSED(a, c, "refund (the balance was settled at close)");
  int64_t available = std::max<int64_t>(a->balance_minor, 0);
  if (c.amount_minor > available) {
    return Precondition(c.txn_id, "insufficient_balance",
                        "refund of " + FormatYuan(c.amount_minor) + " exceeds the available balance " +
                            FormatYuan(available) + " of account " + a->id +
                            " (credit is not refundable)");
  }
  Posting posting = TwoLegs(a->id, -c.amount_minor, sys::kRefunds);
  if (auto overflow = PostingOverflow(posting)) return Invalid(c.txn_id, "overflow", *overflow);
  std::vector<Event> events = EventsFrom(Refunded{c.txn_id, c.time_us, c.operator_id, a->id, c.idempotency_key,
                                                  c.amount_minor, c.method, c.reason, std::move(posting), {}});
  AppendLevelEvents(*a, a->balance_minor - c.amount_minor, a->limits, c.txn_id, c.time_us, &events);
  return Accept(c.txn_id, std::move(events));
}

Decision Ledger::DecideReverse(const Reverse& c) const {
  auto fp = [&](auto& sink) { DescribeReverse(sink, c.original_txn_id); };
  if (!c.idempotency_key.empty()) {
    if (auto d = CheckKey(state_.idempotency_keys, "idempotency key", c.idempotency_key, fp, c.txn_id)) {
      return *std::move(d);
    }
  }
  WL_LEDGER_REQUIRE_OPERATOR(c);
  if (c.reason.empty()) return Invalid(c.txn_id, "reason_required", "a reversal needs a reason");
  const std::optional<TxnRecord> orig = FindTxn(c.original_txn_id);
  if (!orig) {
    return Reject(c.txn_id, StatusCode::kNotFound, "unknown_txn",
                  "transaction " + Quoted(c.original_txn_id) + " not found");
  }
  if (orig->kind == TxnKind::kReversal) {
    return Precondition(c.txn_id, "reversal_of_reversal",
                        "transaction " + orig->txn_id + " is itself a reversal (of " +
                            orig->original_txn_id + "); a reversal cannot be reversed");
  }
  if (orig->kind != TxnKind::kTopUp && orig->kind != TxnKind::kRefund &&
      orig->kind != TxnKind::kAdjustment) {
    return Precondition(c.txn_id, "not_reversible",
                        "transaction " + orig->txn_id + " is a " + std::string(TxnKindName(orig->kind)) +
                            "; only top-ups, refunds and adjustments can be reversed");
  }
  if (!orig->reversed_by.empty()) {
    return Reject(c.txn_id, StatusCode::kAlreadyExists, "already_reversed",
                  "transaction " + orig->txn_id + " was already reversed by " + orig->reversed_by);
  }
  const Account* a = FindAccount(orig->account_id);
  WL_CHECK(a != nullptr);
  // The new owner does not answer for the previous owner's txns, whether the transfer paid that
  // owner out or carried the balance over. Where txn ids are numbered (the service's are), their
  // numbers say which came first: both are in the account's partition.
  std::string_view prefix;
  uint64_t orig_seq = 0;
  if (a->owner_since_seq != 0 && SplitTxnId(orig->txn_id, &prefix, &orig_seq) && orig_seq < a->owner_since_seq) {
    return Precondition(c.txn_id, "previous_owner",
                        "transaction " + orig->txn_id + " was made before account " + a->id + " changed owner (" +
                            std::string(prefix) + "/" + std::to_string(a->owner_since_seq) +
                            "); the new owner does not answer for it: correct it with an adjustment, with a reason");
  }
  Posting posting;
  for (const Leg& leg : orig->posting.legs) posting.legs.push_back(Leg{leg.system, leg.account, -leg.delta_minor});
  if (auto overflow = PostingOverflow(posting)) return Invalid(c.txn_id, "overflow", *overflow);
  int64_t delta = -orig->amount_minor;
  int64_t after = a->balance_minor + delta;
  if (auto d = CheckClosedBalance(*a, after, "reversal", c.txn_id)) return *std::move(d);
  std::vector<Event> events = EventsFrom(Reversed{c.txn_id, c.time_us, c.operator_id, a->id, c.idempotency_key,
                                                  orig->txn_id, orig->kind, delta, c.reason, std::move(posting), {}});
  AppendLevelEvents(*a, after, a->limits, c.txn_id, c.time_us, &events);
  return Accept(c.txn_id, std::move(events));
}

Decision Ledger::DecideAdjust(const Adjust& c) const {
  if (c.idempotency_key.empty()) {
    return Invalid(c.txn_id, "idempotency_key_required", "an adjustment needs an idempotency key");
  }
  auto fp = [&](auto& sink) { DescribeAdjust(sink, c.account_id, c.amount_minor); };
  if (auto d = CheckKey(state_.idempotency_keys, "idempotency key", c.idempotency_key, fp, c.txn_id)) {
    return *std::move(d);
  }
  WL_LEDGER_REQUIRE_OPERATOR(c);
  if (c.amount_minor == 0) return Invalid(c.txn_id, "amount_nonzero", "adjustment amount must not be 0");
  if (c.reason.empty()) return Invalid(c.txn_id, "reason_required", "an adjustment needs a reason");
  WL_LEDGER_FIND_ACCOUNT(a, c);
  Posting posting = TwoLegs(a->id, c.amount_minor, sys::kAdjustments);
  if (auto overflow = PostingOverflow(posting)) return Invalid(c.txn_id, "overflow", *overflow);
  int64_t after = a->balance_minor + c.amount_minor;
  if (auto d = CheckClosedBalance(*a, after, "adjustment", c.txn_id)) return *std::move(d);
  std::vector<Event> events = EventsFrom(Adjusted{c.txn_id, c.time_us, c.operator_id, a->id, c.idempotency_key,
                                                  c.amount_minor, c.reason, std::move(posting), {}});
  AppendLevelEvents(*a, after, a->limits, c.txn_id, c.time_us, &events);
  return Accept(c.txn_id, std::move(events));
}

Decision Ledger::DecideCharge(const Charge& c) const {
  if (c.charge_id.empty()) return Invalid(c.txn_id, "charge_id_required", "a charge needs a charge id");
  auto fp = [&](auto& sink) {
    DescribeCharge(sink, c.account_id, c.amount_minor, c.energy_wh, c.meter_id, c.reading_id,
                   c.tariff_id, c.tariff_version);
  };
  if (auto d = CheckKey(state_.charges, "charge id", c.charge_id, fp, c.txn_id)) return *std::move(d);
  if (c.amount_minor <= 0) {
    return Invalid(c.txn_id, "amount_positive",
                   "charge amount must be > 0, got " + FormatYuan(c.amount_minor));
  }
  if (c.energy_wh < 0) {
    return Invalid(c.txn_id, "energy_non_negative",
                   "charged energy must be >= 0 Wh, got " + std::to_string(c.energy_wh));
  }
  if (c.meter_id.empty()) return Invalid(c.txn_id, "meter_id_required", "a charge needs its meter id");
  WL_LEDGER_FIND_ACCOUNT(a, c);
  // Energy already delivered: no balance check, and closed accounts take late charges as arrears.
  Posting posting = TwoLegs(a->id, -c.amount_minor, sys::kRevenue);
  if (auto overflow = PostingOverflow(posting)) return Invalid(c.txn_id, "overflow", *overflow);
  std::vector<Event> events = EventsFrom(Charged{c.txn_id, c.time_us, a->id, c.charge_id, c.amount_minor,
                                                 c.energy_wh, c.meter_id, c.reading_id, c.tariff_id,
                                                 c.tariff_version, std::move(posting), {}});
  AppendLevelEvents(*a, a->balance_minor - c.amount_minor, a->limits, c.txn_id, c.time_us, &events);
  return Accept(c.txn_id, std::move(events));
}

#undef WL_LEDGER_REQUIRE_OPERATOR
#undef WL_LEDGER_FIND_ACCOUNT
#undef WL_LEDGER_REQUIRE_NOT_CLOSED

// ---------------------------------------------------------------------------------------------
// Apply
//
// Events come from Decide (live) or from the log (replay). Every precondition of an event is
// checked and a failed one is a DataLoss status naming it: the live path turns that into a crash
// (a crash beats a wrong balance), replay into an error that names the event, since a record read
// from disk is input, not an assumption. After a failed TryApply the ledger is unusable.

#define WL_LEDGER_EXPECT_MSG(cond, msg)                                                  \
  do {                                                                                   \
    if (!(cond)) return DataLoss(std::string("event does not apply to the ledger: ") + (msg)); \
  } while (0)
#define WL_LEDGER_EXPECT(cond) WL_LEDGER_EXPECT_MSG(cond, #cond)

Result<Account*> Ledger::MutableAccount(const std::string& id) {
  const Account* a = FindAccount(id);
  if (a == nullptr) return DataLoss("event does not apply to the ledger: unknown account " + id);
  return const_cast<Account*>(a);  // Not const: this ledger's state, in a non-const method.
}

Status Ledger::ApplyPosting(const Posting& posting) {
  __int128 sum = 0;
  for (const Leg& leg : posting.legs) sum += leg.delta_minor;
  WL_LEDGER_EXPECT_MSG(sum == 0, "posting legs do not sum to zero");
  for (const Leg& leg : posting.legs) {
    int64_t* balance = nullptr;
    if (leg.system) {
      auto it = state_.system_balances.find(leg.account);
      WL_LEDGER_EXPECT_MSG(it != state_.system_balances.end(), "unknown system account " + leg.account);
      balance = &it->second;
    } else {
      WL_ASSIGN_OR_RETURN(Account * account, MutableAccount(leg.account));
      balance = &account->balance_minor;
      WL_LEDGER_EXPECT_MSG(!money::AddOverflows(state_.tenant_total_minor, leg.delta_minor, &state_.tenant_total_minor),
                           "tenant total overflow");
    }
    WL_LEDGER_EXPECT_MSG(!money::AddOverflows(*balance, leg.delta_minor, balance), "balance overflow");
    WL_LEDGER_EXPECT_MSG(!money::AddOverflows(state_.total_minor, leg.delta_minor, &state_.total_minor),
                 "total overflow");
  }
  WL_LEDGER_EXPECT_MSG(state_.total_minor == 0, "the sum of all balances is not zero");
  return Status::Ok();
}

Status Ledger::AddTxn(TxnRecord record) {
  // The emplace finds a reuse among txns itself.
  WL_LEDGER_EXPECT_MSG(TxnIdAboveMarks(record.txn_id) || !state_.entry_txns.contains(record.txn_id),
                       "txn id used twice: " + record.txn_id);
  const auto [it, inserted] = state_.txns.emplace(record.txn_id, std::move(record));
  WL_LEDGER_EXPECT_MSG(inserted, "txn id used twice: " + it->first);
  RaiseTxnIdMark(it->first);
  return Status::Ok();
}

template <typename MakeRecord>
Status Ledger::AddEntryTxn(std::string_view txn_id, const Account& account, TxnKind kind, int64_t amount_minor,
                           const Posting& posting, const MakeRecord& make_record) {
  const auto& legs = posting.legs;
  size_t system = std::size(sys::kAll);
  if (legs.size() == 2 && !legs[0].system && legs[0].account == account.id && legs[0].delta_minor == amount_minor &&
      legs[1].system && legs[1].delta_minor == -amount_minor) {
    system = static_cast<size_t>(std::find(std::begin(sys::kAll), std::end(sys::kAll), legs[1].account) -
                                 std::begin(sys::kAll));
  }
  if (system == std::size(sys::kAll)) return AddTxn(make_record());  // Another shape keeps its record.
  WL_LEDGER_EXPECT_MSG(TxnIdAboveMarks(txn_id) || !state_.txns.contains(txn_id),
                       "txn id used twice: " + std::string(txn_id));
  const bool inserted =
      state_.entry_txns.emplace(txn_id, EntryTxn{account.id, amount_minor, static_cast<uint8_t>(system),
                                                  static_cast<uint8_t>(kind)});
  WL_LEDGER_EXPECT_MSG(inserted, "txn id used twice: " + std::string(txn_id));
  RaiseTxnIdMark(txn_id);
  return Status::Ok();
}

Status Ledger::MarkReversed(const std::string& txn_id, const std::string& reversal, TxnKind kind,
                            const std::string& account_id, int64_t amount_minor) {
  const std::optional<TxnRecord> orig = FindTxn(txn_id);
  WL_LEDGER_EXPECT_MSG(orig.has_value(), "reversal of unknown txn " + txn_id);
  WL_LEDGER_EXPECT(orig->kind == TxnKind::kTopUp || orig->kind == TxnKind::kRefund ||
                   orig->kind == TxnKind::kAdjustment);
  WL_LEDGER_EXPECT(orig->reversed_by.empty() && orig->kind == kind);
  WL_LEDGER_EXPECT(orig->account_id == account_id);
  WL_LEDGER_EXPECT(amount_minor == -orig->amount_minor);
  if (auto it = state_.txns.find(txn_id); it != state_.txns.end()) {
    it->second.reversed_by = reversal;
  } else {
    state_.entry_reversed_by.emplace(txn_id, reversal);
  }
  return Status::Ok();
}

namespace {

// After money moved on a closed account, whether it still owes is a function of its balance.
Status RefreshClosedState(Account& a) {
  if (!IsClosed(a)) return Status::Ok();
  WL_LEDGER_EXPECT_MSG(a.balance_minor <= 0, "closed account " + a.id + " holds a positive balance");
  a.state = a.balance_minor < 0 ? AccountState::kClosedWithArrears : AccountState::kClosed;
  return Status::Ok();
}

template <typename Describe>
Status RecordKey(KeyTable& keys, const std::string& key, const std::string& txn_id, const Describe& describe) {
  if (key.empty()) return Status::Ok();
  bool inserted = keys.emplace(key, txn_id, FingerprintOf(describe));
  WL_LEDGER_EXPECT_MSG(inserted, "idempotency key used twice: " + key);
  return Status::Ok();
}

}  // namespace

void Ledger::Apply(const Event& event) {
  Status s = TryApply(event);
  WL_CHECK_MSG(s.ok(), s.ToString());
}

Status Ledger::TryApply(const Event& event) {
  const EntryLink* link = EntryLinkOf(event);
  if (link == nullptr) return ApplyEvent(event);
  // Where txn ids are numbered (the service's are), only an account's first entry names none
  // before it, and what moves money first moves it off 0: so an empty link there is a log
  // written before entries were linked.
  WL_LEDGER_EXPECT_MSG(*link != EntryLink{} || EntrySeqOf(EventTxnId(event)) == 0,
                       "the entry of txn " + EventTxnId(event) + " carries no entry link: the log was written by a "
                       "build before entries were linked; start this build on a new data dir (for `make run`, "
                       "move data/dev away) or read the log with the build that wrote it");
  const std::string& id = EventAccountId(event);
  // Found once: an account's place in the map stays put as others are added (an opening adds
  // this one, and is looked up after).
  Account* a = const_cast<Account*>(FindAccount(id));  // Not const: see MutableAccount.
  const uint64_t last = a != nullptr ? a->last_entry_seq : 0;
  WL_LEDGER_EXPECT_MSG(link->prev_entry_seq == last,
                       "the entry of txn " + EventTxnId(event) + " names entry " + std::to_string(link->prev_entry_seq) +
                           " before it, but the last entry of account " + id + " is " + std::to_string(last));
  WL_RETURN_IF_ERROR(ApplyEvent(event));
  if (a == nullptr) {
    WL_ASSIGN_OR_RETURN(a, MutableAccount(id));
  }
  WL_LEDGER_EXPECT_MSG(a->balance_minor == link->balance_after_minor,
                       "the entry of txn " + EventTxnId(event) + " leaves account " + id + " at " +
                           std::to_string(link->balance_after_minor) + " but it is at " + std::to_string(a->balance_minor));
  // A statement stops its walk on this time, so a link may not claim one other than its
  // entries'; an unknown one (a log written before links carried it) stops no walk. The account's
  // own is folded from the entries' times, whatever their links say, so that links written after
  // an upgrade carry it for the whole history.
  const int64_t latest = LatestEntryTime(a->latest_entry_time_us, EventTimeUs(event));
  WL_LEDGER_EXPECT_MSG(link->latest_time_us == latest || link->latest_time_us == kLatestEntryTimeUnknown,
                       "the entry of txn " + EventTxnId(event) + " says the latest time of account " + id +
                           "'s entries is " + std::to_string(link->latest_time_us) + " but it is " +
                           std::to_string(latest));
  a->last_entry_seq = EntrySeqOf(EventTxnId(event));
  a->latest_entry_time_us = latest;
  return Status::Ok();
}

Status Ledger::ApplyEvent(const Event& event) {
  return std::visit(
      [this](const auto& e) -> Status {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, AccountOpened>) {
          WL_LEDGER_EXPECT_MSG(!state_.accounts.contains(e.account_id), "account opened twice: " + e.account_id);
          WL_LEDGER_EXPECT(!e.meters.empty());
          WL_LEDGER_EXPECT(TenantDelta(e.posting, e.account_id) == e.opening_balance_minor);
          Account a;
          a.id = e.account_id;
          a.customer_name = e.customer_name;
          a.phones = e.phones;
          a.room = e.room;
          a.meters = e.meters;
          a.tariff_id = e.tariff_id;
          a.mode = e.mode;
          a.limits = e.limits;
          a.opened_txn_id = e.txn_id;
          for (const std::string& m : e.meters) {
            WL_LEDGER_EXPECT_MSG(state_.meter_owner.emplace(m, e.account_id).second, "meter taken: " + m);
          }
          state_.accounts.emplace(e.account_id, std::move(a));
          WL_RETURN_IF_ERROR(ApplyPosting(e.posting));
          WL_RETURN_IF_ERROR(AddTxn(TxnRecord{e.txn_id, TxnKind::kOpen, e.account_id, e.time_us, e.opening_balance_minor,
                           e.operator_id, "", "", "", "", e.posting}));
        } else if constexpr (std::is_same_v<T, MeterAttached>) {
          WL_ASSIGN_OR_RETURN(Account * accp, MutableAccount(e.account_id));
          Account& acc = *accp;
          WL_LEDGER_EXPECT(!IsClosed(acc));
          // Logs written before the flag say false whatever the account's supply was.
          WL_LEDGER_EXPECT(!e.supply_cut || (Tracked(acc) && acc.supply_cut));
          WL_LEDGER_EXPECT_MSG(state_.meter_owner.emplace(e.meter_id, e.account_id).second, "meter taken: " + e.meter_id);
          acc.meters.push_back(e.meter_id);
          WL_RETURN_IF_ERROR(AddTxn(TxnRecord{e.txn_id, TxnKind::kAttachMeter, e.account_id, e.time_us, 0, e.operator_id,
                           WithReason("meter " + e.meter_id, e.reason), "", "", "", {}}));
        } else if constexpr (std::is_same_v<T, MeterDetached>) {
          WL_ASSIGN_OR_RETURN(Account * accp, MutableAccount(e.account_id));
          Account& acc = *accp;
          auto owner = state_.meter_owner.find(e.meter_id);
          WL_LEDGER_EXPECT(owner != state_.meter_owner.end() && owner->second == e.account_id);
          state_.meter_owner.erase(owner);
          auto it = std::find(acc.meters.begin(), acc.meters.end(), e.meter_id);
          WL_LEDGER_EXPECT(it != acc.meters.end());
          acc.meters.erase(it);
          WL_LEDGER_EXPECT(!acc.meters.empty());
          WL_RETURN_IF_ERROR(AddTxn(TxnRecord{e.txn_id, TxnKind::kDetachMeter, e.account_id, e.time_us, 0, e.operator_id,
                           WithReason("meter " + e.meter_id, e.reason), "", "", "", {}}));
        } else if constexpr (std::is_same_v<T, LimitsChanged>) {
          WL_ASSIGN_OR_RETURN(Account * accp, MutableAccount(e.account_id));
          Account& acc = *accp;
          WL_LEDGER_EXPECT(acc.limits == e.before);
          WL_LEDGER_EXPECT(!ValidateLimits(e.after).has_value());
          acc.limits = e.after;
          WL_RETURN_IF_ERROR(AddTxn(TxnRecord{e.txn_id, TxnKind::kSetLimits, e.account_id, e.time_us, 0, e.operator_id,
                           e.reason, "", "", "", {}}));
        } else if constexpr (std::is_same_v<T, AccountSuspended>) {
          WL_ASSIGN_OR_RETURN(Account * accp, MutableAccount(e.account_id));
          Account& acc = *accp;
          WL_LEDGER_EXPECT(acc.state == AccountState::kOpen);
          acc.state = AccountState::kSuspended;
          WL_RETURN_IF_ERROR(AddTxn(TxnRecord{e.txn_id, TxnKind::kSuspend, e.account_id, e.time_us, 0, e.operator_id,
                           e.reason, "", "", "", {}}));
        } else if constexpr (std::is_same_v<T, AccountResumed>) {
          WL_ASSIGN_OR_RETURN(Account * accp, MutableAccount(e.account_id));
          Account& acc = *accp;
          WL_LEDGER_EXPECT(acc.state == AccountState::kSuspended);
          acc.state = AccountState::kOpen;
          WL_RETURN_IF_ERROR(AddTxn(TxnRecord{e.txn_id, TxnKind::kResume, e.account_id, e.time_us, 0, e.operator_id,
                           e.reason, "", "", "", {}}));
        } else if constexpr (std::is_same_v<T, OwnershipTransferred>) {
          WL_ASSIGN_OR_RETURN(Account * accp, MutableAccount(e.account_id));
          Account& acc = *accp;
          WL_LEDGER_EXPECT(!IsClosed(acc));
          WL_LEDGER_EXPECT(TenantDelta(e.posting, e.account_id) == -e.settlement_refund_minor);
          acc.customer_name = e.new_customer_name;
          acc.phones = e.new_phones;
          acc.owner_since_seq = EntrySeqOf(e.txn_id);
          WL_RETURN_IF_ERROR(ApplyPosting(e.posting));
          if (e.settled) WL_LEDGER_EXPECT(acc.balance_minor == 0);
          WL_RETURN_IF_ERROR(AddTxn(TxnRecord{e.txn_id, TxnKind::kTransfer, e.account_id, e.time_us,
                           -e.settlement_refund_minor, e.operator_id,
                           WithReason("from " + e.old_customer_name + " to " + e.new_customer_name, e.reason), "", "", "",
                           e.posting}));
        } else if constexpr (std::is_same_v<T, AccountClosed>) {
          WL_ASSIGN_OR_RETURN(Account * accp, MutableAccount(e.account_id));
          Account& acc = *accp;
          WL_LEDGER_EXPECT(!IsClosed(acc));
          WL_LEDGER_EXPECT(TenantDelta(e.posting, e.account_id) == -e.settlement_refund_minor);
          WL_LEDGER_EXPECT(e.released_meters == acc.meters);
          WL_RETURN_IF_ERROR(ApplyPosting(e.posting));
          WL_LEDGER_EXPECT(acc.balance_minor == -e.arrears_minor);
          for (const std::string& m : acc.meters) {
            auto owner = state_.meter_owner.find(m);
            WL_LEDGER_EXPECT(owner != state_.meter_owner.end() && owner->second == acc.id);
            state_.meter_owner.erase(owner);
          }
          acc.meters.clear();
          acc.state = AccountState::kClosed;
          WL_RETURN_IF_ERROR(RefreshClosedState(acc));
          WL_RETURN_IF_ERROR(AddTxn(TxnRecord{e.txn_id, TxnKind::kClose, e.account_id, e.time_us,
                           -e.settlement_refund_minor, e.operator_id, e.reason, "", "", "", e.posting}));
        } else if constexpr (std::is_same_v<T, ToppedUp>) {
          WL_ASSIGN_OR_RETURN(Account * accp, MutableAccount(e.account_id));
          Account& acc = *accp;
          WL_LEDGER_EXPECT(e.amount_minor > 0);
          WL_LEDGER_EXPECT(TenantDelta(e.posting, e.account_id) == e.amount_minor);
          WL_LEDGER_EXPECT_MSG(e.purchase_count == acc.purchase_count + 1, "purchase count out of sequence");
          WL_RETURN_IF_ERROR(ApplyPosting(e.posting));
          acc.purchase_count = e.purchase_count;
          WL_RETURN_IF_ERROR(RefreshClosedState(acc));
          WL_RETURN_IF_ERROR(RecordKey(state_.idempotency_keys, e.idempotency_key, e.txn_id,
                    [&](auto& sink) { DescribePayment(sink, "top-up", e.account_id, e.amount_minor, e.method); }));
          WL_RETURN_IF_ERROR(AddEntryTxn(e.txn_id, acc, TxnKind::kTopUp, e.amount_minor, e.posting, [&] {
            return TxnRecord{e.txn_id, TxnKind::kTopUp, e.account_id, e.time_us, e.amount_minor,
                             e.operator_id, "", e.idempotency_key, "", "", e.posting};
          }));
        } else if constexpr (std::is_same_v<T, Refunded>) {
          WL_ASSIGN_OR_RETURN(Account * accp, MutableAccount(e.account_id));
          Account& acc = *accp;
          WL_LEDGER_EXPECT(e.amount_minor > 0);
          WL_LEDGER_EXPECT(TenantDelta(e.posting, e.account_id) == -e.amount_minor);
          WL_RETURN_IF_ERROR(ApplyPosting(e.posting));
          WL_RETURN_IF_ERROR(RefreshClosedState(acc));
          WL_RETURN_IF_ERROR(RecordKey(state_.idempotency_keys, e.idempotency_key, e.txn_id,
                    [&](auto& sink) { DescribePayment(sink, "refund", e.account_id, e.amount_minor, e.method); }));
          WL_RETURN_IF_ERROR(AddEntryTxn(e.txn_id, acc, TxnKind::kRefund, -e.amount_minor, e.posting, [&] {
            return TxnRecord{e.txn_id, TxnKind::kRefund, e.account_id, e.time_us, -e.amount_minor,
                             e.operator_id, e.reason, e.idempotency_key, "", "", e.posting};
          }));
        } else if constexpr (std::is_same_v<T, Reversed>) {
          WL_ASSIGN_OR_RETURN(Account * accp, MutableAccount(e.account_id));
          Account& acc = *accp;
          WL_LEDGER_EXPECT(TenantDelta(e.posting, e.account_id) == e.amount_minor);
          WL_RETURN_IF_ERROR(MarkReversed(e.original_txn_id, e.txn_id, e.original_kind, e.account_id, e.amount_minor));
          WL_RETURN_IF_ERROR(ApplyPosting(e.posting));
          WL_RETURN_IF_ERROR(RefreshClosedState(acc));
          WL_RETURN_IF_ERROR(RecordKey(state_.idempotency_keys, e.idempotency_key, e.txn_id,
                    [&](auto& sink) { DescribeReverse(sink, e.original_txn_id); }));
          // A reversal keeps its whole record: it is rare, and a second reversal's refusal names
          // the txn it reversed.
          WL_RETURN_IF_ERROR(AddTxn(TxnRecord{e.txn_id, TxnKind::kReversal, e.account_id, e.time_us, e.amount_minor,
                                              e.operator_id, e.reason, e.idempotency_key, e.original_txn_id, "",
                                              e.posting}));
        } else if constexpr (std::is_same_v<T, Adjusted>) {
          WL_ASSIGN_OR_RETURN(Account * accp, MutableAccount(e.account_id));
          Account& acc = *accp;
          WL_LEDGER_EXPECT(e.amount_minor != 0);
          WL_LEDGER_EXPECT(TenantDelta(e.posting, e.account_id) == e.amount_minor);
          WL_RETURN_IF_ERROR(ApplyPosting(e.posting));
          WL_RETURN_IF_ERROR(RefreshClosedState(acc));
          WL_RETURN_IF_ERROR(RecordKey(state_.idempotency_keys, e.idempotency_key, e.txn_id,
                    [&](auto& sink) { DescribeAdjust(sink, e.account_id, e.amount_minor); }));
          WL_RETURN_IF_ERROR(AddEntryTxn(e.txn_id, acc, TxnKind::kAdjustment, e.amount_minor, e.posting, [&] {
            return TxnRecord{e.txn_id, TxnKind::kAdjustment, e.account_id, e.time_us, e.amount_minor,
                             e.operator_id, e.reason, e.idempotency_key, "", "", e.posting};
          }));
        } else if constexpr (std::is_same_v<T, Charged>) {
          WL_ASSIGN_OR_RETURN(Account * accp, MutableAccount(e.account_id));
          Account& acc = *accp;
          WL_LEDGER_EXPECT(e.amount_minor > 0);
          WL_LEDGER_EXPECT(TenantDelta(e.posting, e.account_id) == -e.amount_minor);
          WL_RETURN_IF_ERROR(ApplyPosting(e.posting));
          WL_RETURN_IF_ERROR(RefreshClosedState(acc));
          WL_RETURN_IF_ERROR(RecordKey(state_.charges, e.charge_id, e.txn_id,
                    [&](auto& sink) {
                      DescribeCharge(sink, e.account_id, e.amount_minor, e.energy_wh, e.meter_id,
                                     e.reading_id, e.tariff_id, e.tariff_version);
                    }));
          WL_RETURN_IF_ERROR(AddEntryTxn(e.txn_id, acc, TxnKind::kCharge, -e.amount_minor, e.posting, [&] {
            return TxnRecord{e.txn_id, TxnKind::kCharge, e.account_id, e.time_us, -e.amount_minor, "", "",
                             e.charge_id, "", "", e.posting};
          }));
        } else if constexpr (std::is_same_v<T, LevelChanged>) {
          WL_ASSIGN_OR_RETURN(Account * accp, MutableAccount(e.account_id));
          Account& acc = *accp;
          WL_LEDGER_EXPECT(TxnUsed(e.txn_id));
          WL_LEDGER_EXPECT(Tracked(acc));
          WL_LEDGER_EXPECT_MSG(acc.level == e.from && e.from != e.to, "level change out of sequence");
          WL_LEDGER_EXPECT(acc.balance_minor == e.balance_minor);
          acc.level = e.to;
        } else if constexpr (std::is_same_v<T, SupplyCutRequired>) {
          WL_ASSIGN_OR_RETURN(Account * accp, MutableAccount(e.account_id));
          Account& acc = *accp;
          WL_LEDGER_EXPECT(TxnUsed(e.txn_id));
          WL_LEDGER_EXPECT_MSG(!acc.supply_cut && acc.level == Level::kCutoff, "cut without crossing");
          acc.supply_cut = true;
        } else if constexpr (std::is_same_v<T, SupplyRestoreAllowed>) {
          WL_ASSIGN_OR_RETURN(Account * accp, MutableAccount(e.account_id));
          Account& acc = *accp;
          WL_LEDGER_EXPECT(TxnUsed(e.txn_id));
          WL_LEDGER_EXPECT_MSG(acc.supply_cut && acc.level != Level::kCutoff, "restore without crossing");
          acc.supply_cut = false;
        } else {
          static_assert(sizeof(T) == 0, "event without an apply");
        }
        return Status::Ok();
      },
      event);
}

void Ledger::ApplyAll(const std::vector<Event>& events, std::vector<const Account*>* touched) {
  Status s = TryApplyAll(events, touched);
  WL_CHECK_MSG(s.ok(), s.ToString());
}

Status Ledger::TryApplyAll(const std::vector<Event>& events, std::vector<const Account*>* touched) {
  for (const Event& e : events) WL_RETURN_IF_ERROR(TryApply(e));
  // Only these events change who owns a meter (and each checks the owner map as it applies), so
  // only a decision with one of them re-walks the account's meters: for a top-up or a charge
  // that walk was the dearest part of the check, and it can find nothing new.
  const bool moves_meters = std::any_of(events.begin(), events.end(), [](const Event& e) {
    return std::holds_alternative<AccountOpened>(e) || std::holds_alternative<MeterAttached>(e) ||
           std::holds_alternative<MeterDetached>(e) || std::holds_alternative<AccountClosed>(e);
  });
  // A decision touches one account (a handful of events), so a linear dedupe beats a set.
  std::string_view last;
  for (const Event& e : events) {
    std::string_view id = EventAccountId(e);
    if (id == last) continue;
    last = id;
    const Account* a = FindAccount(id);
    WL_RETURN_IF_ERROR(AccountInvariantsHold(*a, moves_meters));
    if (touched != nullptr) touched->push_back(a);
  }
  return Status::Ok();
}

Status Ledger::AccountInvariantsHold(const Account& a, bool with_meters) const {
  if (Tracked(a)) {
    WL_LEDGER_EXPECT_MSG(a.level == LevelFor(a.balance_minor, a.limits), "level of " + a.id + " is stale");
    WL_LEDGER_EXPECT_MSG(a.supply_cut == (a.level == Level::kCutoff), "cut flag of " + a.id + " is stale");
  }
  if (IsClosed(a)) {
    WL_LEDGER_EXPECT(a.meters.empty());
    WL_LEDGER_EXPECT(a.balance_minor <= 0);
    WL_LEDGER_EXPECT((a.state == AccountState::kClosedWithArrears) == (a.balance_minor < 0));
  } else {
    WL_LEDGER_EXPECT(!a.meters.empty());
    if (with_meters) {
      for (const std::string& m : a.meters) {
        auto it = state_.meter_owner.find(m);
        WL_LEDGER_EXPECT(it != state_.meter_owner.end() && it->second == a.id);
      }
    }
  }
  return Status::Ok();
}

Status Ledger::Invariants() const {
  __int128 sum = 0;
  __int128 tenants = 0;
  size_t meters = 0;
  for (const auto& [id, a] : state_.accounts) {
    WL_LEDGER_EXPECT_MSG(a.id == id, "account " + a.id + " is kept under id " + id);  // FindAccount relies on it.
    WL_RETURN_IF_ERROR(AccountInvariantsHold(a, /*with_meters=*/true));
    sum += a.balance_minor;
    tenants += a.balance_minor;
    meters += a.meters.size();
  }
  for (const auto& [name, balance] : state_.system_balances) sum += balance;
  WL_LEDGER_EXPECT_MSG(sum == 0, "the sum of all balances is not zero");
  WL_LEDGER_EXPECT(state_.total_minor == 0);
  WL_LEDGER_EXPECT_MSG(tenants == state_.tenant_total_minor, "the running tenant total is not the sum of the accounts");
  WL_LEDGER_EXPECT_MSG(meters == state_.meter_owner.size(), "a meter owner is kept for a meter no account has");
  return Status::Ok();
}

void Ledger::CheckInvariants() const {
  Status held = Invariants();
  WL_CHECK_MSG(held.ok(), held.ToString());
}

#undef WL_LEDGER_EXPECT
#undef WL_LEDGER_EXPECT_MSG

// ---------------------------------------------------------------------------------------------
// Canonical dump

namespace {

class Dumper {
 public:
  void Line(std::string_view text) {
    out_.append(text);
    out_ += '\n';
  }
  void Field(std::string_view name, std::string_view value) {
    out_.append(name);
    out_ += '=';
    // Length-prefixed so that no value can forge a field boundary.
    out_ += std::to_string(value.size());
    out_ += ':';
    out_.append(value);
    out_ += ' ';
  }
  void Field(std::string_view name, int64_t value) { Field(name, std::to_string(value)); }
  void List(std::string_view name, const std::vector<std::string>& values) {
    Field(name, static_cast<int64_t>(values.size()));
    for (const std::string& v : values) Field("-", v);
  }
  void Posting(const ledger::Posting& p) {
    Field("legs", static_cast<int64_t>(p.legs.size()));
    for (const Leg& l : p.legs) {
      Field(l.system ? "sys" : "acct", l.account);
      Field("delta", l.delta_minor);
    }
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

namespace {

// The entries of `m` in key order: a dump must not depend on hash order.
template <typename Map>
std::vector<const typename Map::value_type*> Sorted(const Map& m) {
  std::vector<const typename Map::value_type*> out;
  out.reserve(m.size());
  for (const auto& kv : m) out.push_back(&kv);
  std::sort(out.begin(), out.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
  return out;
}

}  // namespace

std::string Ledger::CanonicalDump() const {
  Dumper d;
  d.Field("total", state_.total_minor);
  d.Field("tenant_total", state_.tenant_total_minor);
  d.Line("");
  for (const auto& [name, balance] : state_.system_balances) {
    d.Field("system", name);
    d.Field("balance", balance);
    d.Line("");
  }
  for (const auto* kv : Sorted(state_.accounts)) {
    const Account& a = kv->second;
    d.Field("account", a.id);
    d.Field("name", a.customer_name);
    d.List("phones", a.phones);
    d.Field("room", a.room);
    d.List("meters", a.meters);
    d.Field("tariff", a.tariff_id);
    d.Field("mode", ModeName(a.mode));
    d.Field("state", AccountStateName(a.state));
    d.Field("credit", a.limits.credit_limit_minor);
    d.Field("alarm1", a.limits.alarm1_minor);
    d.Field("alarm2", a.limits.alarm2_minor);
    d.Field("cap", a.limits.hoarding_cap_minor);
    d.Field("balance", a.balance_minor);
    d.Field("purchases", a.purchase_count);
    d.Field("level", LevelName(a.level));
    d.Field("cut", a.supply_cut ? 1 : 0);
    d.Field("opened", a.opened_txn_id);
    d.Field("last_entry", static_cast<int64_t>(a.last_entry_seq));
    d.Field("latest_entry_time", a.latest_entry_time_us);
    d.Field("owner_since", static_cast<int64_t>(a.owner_since_seq));
    d.Line("");
  }
  for (const auto& [meter, owner] : state_.meter_owner) {
    d.Field("meter", meter);
    d.Field("owner", owner);
    d.Line("");
  }
  for (const auto* kv : Sorted(state_.txns)) {
    const TxnRecord& t = kv->second;
    d.Field("txn", t.txn_id);
    d.Field("kind", TxnKindName(t.kind));
    d.Field("account", t.account_id);
    d.Field("t", t.time_us);
    d.Field("amount", t.amount_minor);
    d.Field("op", t.operator_id);
    d.Field("reason", t.reason);
    d.Field("key", t.idempotency_key);
    d.Field("orig", t.original_txn_id);
    d.Field("reversed_by", t.reversed_by);
    d.Posting(t.posting);
    d.Line("");
  }
  for (const auto& [id, txn] : state_.entry_txns.SortedById()) {
    d.Field("entry_txn", id);
    d.Field("account", txn->account_id);
    d.Field("kind", TxnKindName(static_cast<TxnKind>(txn->kind)));
    d.Field("amount", txn->amount_minor);
    d.Field("system", sys::kAll[txn->system]);
    d.Line("");
  }
  for (const auto* kv : Sorted(state_.entry_reversed_by)) {
    d.Field("entry_txn_reversed", kv->first);
    d.Field("by", kv->second);
    d.Line("");
  }
  for (const KeyTable::Entry& e : state_.idempotency_keys.SortedByKey()) {
    d.Field("key", e.key);
    d.Field("txn", e.txn_id);
    d.Field("fp", static_cast<int64_t>(e.fingerprint));
    d.Line("");
  }
  for (const KeyTable::Entry& e : state_.charges.SortedByKey()) {
    d.Field("charge", e.key);
    d.Field("txn", e.txn_id);
    d.Field("fp", static_cast<int64_t>(e.fingerprint));
    d.Line("");
  }
  return d.Take();
}

std::string Ledger::Digest() const {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : CanonicalDump()) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace wattledger::ledger

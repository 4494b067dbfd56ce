// Ledger: the pure decision core of the ledger service. Given the state built from past events,
// Decide() turns a command into the events it would produce (or a rejection), and Apply() folds
// an event into the state. No I/O, no clock, no randomness, no threads: the adapter owns those.
//
// What it owns: tenant accounts (balance, limits, level, purchase count, meters), the system
// accounts' balances, every transaction by id (of most, only what decisions need), and the
// idempotency keys and charge ids that already took effect. Not the statement entries: each
// event makes its own (EntryOf), linked to the account's entry before it (EntryLink), and the
// adapter reads them back from the log.
//
// Invariants, checked on every Apply (release builds too; a crash when live, a DataLoss status
// from TryApply when replaying events read back from the log):
//   * each posting's legs sum to zero and the sum of all balances is zero;
//   * a meter belongs to at most one account that is not closed;
//   * purchase counts grow by exactly one per top-up;
//   * an event that makes a statement entry names the account's entry before it, the balance it
//     leaves and the latest time of the account's entries so far (EntryLink);
//   * (after a whole decision, ApplyAll) a tracked account's level equals LevelFor(balance) and it
//     is marked cut exactly when its level is kCutoff.
//
// Thread safety: none. One thread owns a Ledger (the partition's single writer); Decide is const
// and may be called by that thread as often as it likes. Not even two readers may share one: the
// const lookups (Decide, FindAccount) remember the account they found (RecentAccount).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "services/ledger/domain/commands.h"
#include "services/ledger/domain/entry_txn_index.h"
#include "services/ledger/domain/events.h"
#include "services/ledger/domain/key_table.h"
#include "services/ledger/domain/types.h"
#include "wattledger/base/sharded_map.h"
#include "wattledger/base/status.h"

namespace wattledger::ledger {

class SnapshotWriter;
class SnapshotReader;

struct LedgerConfig {
  // Defaults for accounts opened without explicit limits.
  int64_t default_credit_limit_minor = 0;
  int64_t default_alarm1_minor = 20 * 10'000;  // 20 yuan
  int64_t default_alarm2_minor = 10 * 10'000;  // 10 yuan
  int64_t default_hoarding_cap_minor = 0;      // No cap.
};

// One line of an account's statement: a money movement with its cause.
struct StatementEntry {
  std::string txn_id;
  int64_t time_us = 0;
  TxnKind kind = TxnKind::kTopUp;
  int64_t amount_minor = 0;         // Signed change of the balance.
  int64_t balance_after_minor = 0;  // Running balance after this entry.
  std::string operator_id;
  std::string reason;
  std::string method;               // Payment method name, for top-ups, refunds, settlements.
  std::string idempotency_key;
  std::string original_txn_id;      // For reversals.
  int64_t purchase_count = 0;       // For top-ups.
  // For charges: what was charged and how it was rated.
  std::string charge_id;
  std::string meter_id;
  std::string reading_id;
  std::string tariff_id;
  int64_t tariff_version = 0;
  int64_t energy_wh = 0;
  bool operator==(const StatementEntry&) const = default;
};

// The statement entry `event` makes on its account, or nullopt if it makes none. An event makes
// one exactly when it moves its tenant's money: a top-up, refund, reversal, adjustment or charge,
// an opening balance, and a settlement refund on transfer or close. The ledger keeps no entries:
// the adapter walks an account's entries back through the log (EntryLinkOf) and rebuilds each
// from its event when a statement asks for it.
std::optional<StatementEntry> EntryOf(const Event& event);
bool MakesEntry(const Event& event);
// MakesEntry of an event of type T (the codec checks a decoded event with it before it is one).
template <typename T>
bool MakesEntryOf(const T& e) {
  if constexpr (std::is_same_v<T, AccountOpened>) {
    return e.opening_balance_minor != 0;
  } else if constexpr (std::is_same_v<T, OwnershipTransferred> || std::is_same_v<T, AccountClosed>) {
    return e.settlement_refund_minor != 0;
  } else {
    return std::is_same_v<T, ToppedUp> || std::is_same_v<T, Refunded> || std::is_same_v<T, Reversed> ||
           std::is_same_v<T, Adjusted> || std::is_same_v<T, Charged>;
  }
}
// The link of an event that makes an entry; nullptr for any other event.
const EntryLink* EntryLinkOf(const Event& event);
// The seq an entry of txn `txn_id` is at: the number its id ends in ("ledger/2/41" is 41), or 0
// for an id without one (which then links nothing).
uint64_t EntrySeqOf(std::string_view txn_id);



// What every posting reads or writes comes first, in this order: in the map's node (after the
// 32-byte key) the id is one cache line, the meters, mode, state and limits the next, and the
// balance through last_entry_seq the third, so that Ledger::Prefetch's three lines are all of them
// (where the node starts on a line, as jemalloc's 320-byte size class puts it).
// (With the names and the room between them, a top-up touched five lines, two not prefetched.)
struct Account {
  std::string id;
  std::vector<std::string> meters;  // In attach order.
  Mode mode = Mode::kPrepaid;
  AccountState state = AccountState::kOpen;
  Limits limits;
  int64_t balance_minor = 0;
  int64_t purchase_count = 0;
  Level level = Level::kNormal;
  bool supply_cut = false;  // A SupplyCutRequired is outstanding (no restore since).
  uint64_t last_entry_seq = 0;  // EntrySeqOf the txn of its latest statement entry; 0 for none.
  // The latest time_us of its statement entries, folded from their events' times (so known even
  // where their links, from an older log, do not say); INT64_MIN for none.
  int64_t latest_entry_time_us = INT64_MIN;
  std::string customer_name;
  std::vector<std::string> phones;
  std::string room;
  std::string tariff_id;
  std::string opened_txn_id;
  // EntrySeqOf the txn of its latest ownership transfer; 0 for none. What came before it was the
  // previous owner's, and is not reversed on the new owner's account.
  uint64_t owner_since_seq = 0;
  bool operator==(const Account&) const = default;
};

bool IsClosed(const Account& a);
// Levels, cut-off and restore are tracked for prepaid accounts that are open or suspended.
bool Tracked(const Account& a);
// The request a keyed event (top-up, refund, adjustment, reversal) was made by, as an idempotency
// key's refusal spells it ("top-up account=A1 amount=100.0000 method=cash"); "" for other events.
std::string DescribeKeyedRequest(const Event& event);

// A transaction (one accepted command) by id.
struct TxnRecord {
  std::string txn_id;
  TxnKind kind = TxnKind::kTopUp;
  std::string account_id;
  int64_t time_us = 0;
  int64_t amount_minor = 0;  // Signed change of the tenant balance; 0 for non-money operations.
  std::string operator_id;
  std::string reason;
  std::string idempotency_key;
  std::string original_txn_id;  // For reversals.
  std::string reversed_by;      // The reversal's txn id once reversed.
  Posting posting;
  bool operator==(const TxnRecord&) const = default;
};

// Hash maps with lookup by string_view: every command looks up its account, so the per-lookup
// cost matters; ordered output (CanonicalDump) sorts the keys itself. Sharded, so that growing a
// map of millions of entries never stalls the partition's writer (see sharded_map.h). Keys and
// charge ids have a table of their own (KeyTable).
template <typename V>
using StringMap = ShardedStringMap<V>;

static_assert(std::size(sys::kAll) < 256, "EntryTxn::system indexes sys::kAll in a byte");

struct LedgerState {
  StringMap<Account> accounts;
  std::map<std::string, int64_t, std::less<>> system_balances;  // Every sys::kAll name present.
  std::map<std::string, std::string, std::less<>> meter_owner;  // Meters of non-closed accounts.
  StringMap<TxnRecord> txns;  // Every transaction not in entry_txns.
  EntryTxnIndex entry_txns;
  StringMap<std::string> entry_reversed_by;  // Entry txns reversed, and the reversal's txn id.
  KeyTable idempotency_keys;  // Of top-ups, refunds and adjustments.
  KeyTable charges;           // By charge id.
  int64_t total_minor = 0;         // Running sum of every balance; always 0.
  int64_t tenant_total_minor = 0;  // Running sum of the tenant accounts' balances.
  bool operator==(const LedgerState&) const = default;
};

// A domain "no": recorded by the adapter as a rejected event and answered with `code`.
struct Rejection {
  StatusCode code = StatusCode::kFailedPrecondition;
  std::string rule;     // Short stable name, e.g. "hoarding_cap", "purchase_count".
  std::string message;  // Names the rule and the values involved.
  bool operator==(const Rejection&) const = default;
};

struct Decision {
  // Accepted: the command's txn id. Duplicate: the txn id of the original. Rejected: the
  // command's txn id (under which the adapter records the rejection).
  std::string txn_id;
  bool duplicate = false;
  std::optional<Rejection> rejection;
  std::vector<Event> events;  // Empty unless accepted.
  bool accepted() const { return !duplicate && !rejection.has_value(); }
};

struct Statement {
  std::string account_id;
  int64_t from_us = 0;
  int64_t to_us = 0;
  int64_t opening_balance_minor = 0;  // Balance before the first entry in the period.
  int64_t closing_balance_minor = 0;  // Balance after the last entry in the period.
  std::vector<StatementEntry> entries;
  // Entries of other periods between the listed ones (late charges): how many, and their sum.
  // opening + the listed amounts + unlisted_minor = closing.
  int64_t unlisted_entries = 0;
  int64_t unlisted_minor = 0;
};

// The whole record of an entry txn: what FindTxn keeps of it (`partial`), and its time, operator,
// reason, key (a charge's is its charge id) and original txn from the entry its event made.
TxnRecord CompleteTxn(TxnRecord partial, const StatementEntry& entry);

// Where an account's statement entry is, in log order: its time and the balance after it.
struct EntryRow {
  int64_t time_us = 0;
  int64_t balance_after_minor = 0;
  bool operator==(const EntryRow&) const = default;
};

// What a statement over [from_us, to_us) lists of an account whose entries are `rows` (in log
// order): the indexes of the rows with from_us <= time_us < to_us, and the balances around them.
// Times need not grow with the log (a charge carries the time its usage occurred), so the opening
// balance is the one before the first row listed, and with none listed the balance after the last
// row before the period.
struct StatementPlan {
  std::vector<size_t> rows;
  int64_t opening_balance_minor = 0;
  int64_t closing_balance_minor = 0;
};
StatementPlan PlanStatement(const std::vector<EntryRow>& rows, int64_t from_us, int64_t to_us);
// Whether a statement over a period from `from_us` that walks an account's entries back (newest
// first) can stop after the entry with `link`: this entry and every one before it are earlier than
// the period. PlanStatement of the rows walked up to and including that entry is then the plan of
// all of them (the rows it lists, and the balances around them, are among those walked).
bool StatementWalkEnds(const EntryLink& link, int64_t from_us);

class Ledger {
 public:
  explicit Ledger(LedgerConfig config = {});

  // The events `command` would produce against the current state; does not change state.
  // Domain outcomes (including invalid input from an operator or billing) come back as an OK
  // Result holding a rejection or a duplicate. A non-OK Result means the caller broke the
  // contract: a missing txn id, or a txn id that was already used (the adapter's id source is
  // broken); nothing should be recorded for it.
  Result<Decision> Decide(const Command& command) const;
  // Starts loading what Decide(command) will look up first (a software prefetch), for a caller
  // that knows the command a little before deciding it: with `ahead` 2 the slots of its account
  // and key, with 1 (after 2, once those arrived) its account. Changes nothing.
  void Prefetch(const Command& command, int ahead) const;

  // Folds one event into the state. Must be given events in the order Decide produced them;
  // never fails on such events, and crashes (WL_CHECK) on an event that breaks an invariant.
  void Apply(const Event& event);

  // Applies a decision's events and then checks the level invariants of the accounts touched.
  // `touched`, if given, gets those accounts: each once per run of events that names it (a
  // decision names one account), in order. An account's address never changes: accounts are
  // never removed, and the map's nodes do not move as it grows.
  void ApplyAll(const std::vector<Event>& events, std::vector<const Account*>* touched = nullptr);

  // Apply and ApplyAll for events read back from the log: an event that does not fit the state
  // (unknown account, out-of-sequence count, unbalanced posting...) is a DataLoss status naming
  // what did not hold, instead of a crash. After an error the ledger is unusable: throw it away.
  Status TryApply(const Event& event);
  Status TryApplyAll(const std::vector<Event>& events, std::vector<const Account*>* touched = nullptr);

  // Every invariant over the whole state, O(state): the first that does not hold, as DataLoss.
  Status Invariants() const;
  // Invariants(), crashing on a violation.
  void CheckInvariants() const;

  const LedgerState& state() const { return state_; }
  const LedgerConfig& config() const { return config_; }
  const Account* FindAccount(std::string_view id) const;
  // A copy. Of an entry txn (see EntryTxn: most top-ups, refunds, adjustments and charges) the
  // ledger keeps only what decisions need: kind, account, amount, posting and reversed_by. Its
  // time, operator, reason and key are on its event (EntryOf), where the adapter reads them.
  std::optional<TxnRecord> FindTxn(std::string_view txn_id) const;
  // Whether FindTxn(txn_id) is an entry txn's partial record.
  bool IsEntryTxn(std::string_view txn_id) const { return state_.entry_txns.contains(txn_id); }
  int64_t SystemBalance(std::string_view name) const;

  // A canonical text dump of the whole state (maps are ordered), equal for equal states: replay
  // compares the dumps (or a hash of them) of the live and the rebuilt ledger.
  std::string CanonicalDump() const;
  // FNV-1a 64 of CanonicalDump() in hex: a short fingerprint for logs. Not collision-proof;
  // replay verification should hash CanonicalDump() with SHA-256 in the adapter.
  std::string Digest() const;

  bool operator==(const Ledger& other) const { return state_ == other.state_; }

  // Checkpoints (snapshot.h): everything Apply folded in, written to `out`; and a ledger read
  // back from what Save wrote (by this build), equal to the one saved. What does not parse, or
  // breaks an invariant, is DataLoss.
  void Save(SnapshotWriter& out) const;
  static Result<std::unique_ptr<Ledger>> Load(SnapshotReader& in, LedgerConfig config = {});

 private:
  // Fills in the link of `event`, the first of an accepted decision, if it makes an entry.
  void LinkEntry(Event& event) const;
  // TryApply without the link's checks.
  Status ApplyEvent(const Event& event);
  Decision DecideOpen(const OpenAccount& c) const;
  Decision DecideAttach(const AttachMeter& c) const;
  Decision DecideDetach(const DetachMeter& c) const;
  Decision DecideSetLimits(const SetLimits& c) const;
  Decision DecideSuspend(const Suspend& c) const;
  Decision DecideResume(const Resume& c) const;
  Decision DecideTransfer(const TransferOwnership& c) const;
  Decision DecideClose(const CloseAccount& c) const;
  Decision DecideTopUp(const TopUp& c) const;
  Decision DecideRefund(const Refund& c) const;
  Decision DecideReverse(const Reverse& c) const;
  Decision DecideAdjust(const Adjust& c) const;
  Decision DecideCharge(const Charge& c) const;
  // Why applying `p` would take an amount, a balance or the tenants' total beyond ±INT64_MAX (so
  // that every one can be negated), or leave its legs not summing to zero; nothing if not.
  std::optional<std::string> PostingOverflow(const Posting& p) const;

  bool TxnUsed(std::string_view txn_id) const;
  Result<Account*> MutableAccount(const std::string& id);
  Status ApplyPosting(const Posting& posting);
  Status AddTxn(TxnRecord record);
  // Records txn `txn_id` of `kind`, which moved `account`'s balance by `amount_minor`: as an
  // EntryTxn when `posting` is the two legs that implies, else as the record `make_record()`
  // builds.
  template <typename MakeRecord>
  Status AddEntryTxn(std::string_view txn_id, const Account& account, TxnKind kind, int64_t amount_minor,
                     const Posting& posting, const MakeRecord& make_record);
  // The txn `txn_id` reversed by `reversal`: a top-up, refund or adjustment not reversed before.
  Status MarkReversed(const std::string& txn_id, const std::string& reversal, TxnKind kind,
                      const std::string& account_id, int64_t amount_minor);
  // with_meters adds the walk over its meters' owners.
  Status AccountInvariantsHold(const Account& account, bool with_meters) const;

  // Txn ids usually end in a number that grows: the adapter makes "<log>/<partition>/<seq>". For
  // each prefix before the last '/', the highest number of any txn recorded, so that an id above
  // it is known unused without a miss in maps of millions. Other ids are looked up. Past
  // kMaxTxnIdMarks prefixes every id is looked up: marks are never dropped, as a dropped one
  // would pass a used id.
  struct TxnIdMark {
    std::string prefix;
    uint64_t max = 0;
  };
  static constexpr size_t kMaxTxnIdMarks = 16;
  size_t TxnIdMarkOf(std::string_view prefix) const;  // Its index, or the marks' count if none.
  bool TxnIdAboveMarks(std::string_view txn_id) const;
  void RaiseTxnIdMark(std::string_view txn_id);

  // The account the last FindAccount found (MutableAccount and TryApply look up through it):
  // a command's lookups of its account (to decide, link, apply, post and check) find the map
  // once. An account's address never changes (accounts are never removed, and the map's nodes
  // do not move as it grows), and its id is its key (CheckInvariants). A copy or move of the
  // ledger starts without one, as the address would be another ledger's; so does the ledger
  // moved from, whose accounts went with the move.
  struct RecentAccount {
    Account* account = nullptr;
    RecentAccount() = default;
    RecentAccount(const RecentAccount&) noexcept {}
    RecentAccount(RecentAccount&& other) noexcept { other.account = nullptr; }
    RecentAccount& operator=(const RecentAccount&) noexcept {
      account = nullptr;
      return *this;
    }
    RecentAccount& operator=(RecentAccount&& other) noexcept {
      account = nullptr;
      other.account = nullptr;
      return *this;
    }
  };

  LedgerConfig config_;
  LedgerState state_;
  mutable RecentAccount recent_;
  std::vector<TxnIdMark> txn_id_marks_;
  bool txn_id_marks_full_ = false;
};

}  // namespace wattledger::ledger

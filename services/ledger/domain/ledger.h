// Ledger: the pure decision core of the ledger service. Given the state built from past events,
// Decide() turns a command into the events it would produce (or a rejection), and Apply() folds
// an event into the state. No I/O, no clock, no randomness, no threads: the adapter owns those.
//
// What it owns: tenant accounts (balance, limits, level, purchase count, meters, statement
// entries), the system accounts' balances, every transaction by id, and the idempotency keys and
// charge ids that already took effect.
//
// Invariants, checked on every Apply (release builds too; a crash when live, a DataLoss status
// from TryApply when replaying events read back from the log):
//   * each posting's legs sum to zero and the sum of all balances is zero;
//   * a meter belongs to at most one account that is not closed;
//   * purchase counts grow by exactly one per top-up;
//   * (after a whole decision, ApplyAll) a tracked account's level equals LevelFor(balance) and it
//     is marked cut exactly when its level is kCutoff.
//
// Thread safety: none. One thread owns a Ledger (the partition's single writer); Decide is const
// and may be called by that thread as often as it likes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "services/ledger/domain/commands.h"
#include "services/ledger/domain/entry_txn_index.h"
#include "services/ledger/domain/events.h"
#include "services/ledger/domain/types.h"
#include "wattledger/base/sharded_map.h"
#include "wattledger/base/stable_vector.h"
#include "wattledger/base/status.h"

namespace wattledger::ledger {

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

// How an account keeps a statement entry: the numbers as they are, and the ten texts (most of
// them empty for any one kind) one after the other in one string, each after its length. That is
// 88 bytes and one heap block, against a StatementEntry's 376 bytes and a block for every text of
// over 15 bytes (a fleet's charge and reading ids): an account keeps every entry for as long as
// the process runs. Queries unpack the entries they return.
struct StoredEntry {
  int64_t time_us = 0;
  int64_t amount_minor = 0;
  int64_t balance_after_minor = 0;
  int64_t purchase_count = 0;
  int64_t tariff_version = 0;
  int64_t energy_wh = 0;
  TxnKind kind = TxnKind::kTopUp;
  std::string texts;  // Each text's length (LEB128), then its bytes; see Pack.

  static StoredEntry Pack(const StatementEntry& e);
  StatementEntry Unpack() const;
  std::string_view txn_id() const;  // The first text: read without unpacking the rest.
  bool operator==(const StoredEntry&) const = default;
};

// An account's statement. Its first chunk holds one entry, not four: an account is kept in memory
// for as long as the process runs, and most hold few entries for a long time (ledger_bench's
// "state" line: 2,565 bytes per account with four, when an entry was 376 bytes).
using StatementEntries = StableVector<StoredEntry, 0>;

struct Account {
  std::string id;
  std::string customer_name;
  std::vector<std::string> phones;
  std::string room;
  std::vector<std::string> meters;  // In attach order.
  std::string tariff_id;
  Mode mode = Mode::kPrepaid;
  AccountState state = AccountState::kOpen;
  Limits limits;
  int64_t balance_minor = 0;
  int64_t purchase_count = 0;
  Level level = Level::kNormal;
  bool supply_cut = false;  // A SupplyCutRequired is outstanding (no restore since).
  std::string opened_txn_id;
  StatementEntries entries;  // Append-only; never moved, so growing never stalls.
  bool operator==(const Account&) const = default;
};

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

// What an idempotency key or charge id took effect as: its txn and a 64-bit hash of what defines
// the request (its money fields, a word at a time), compared to tell a retry from a different
// request under the same key. A hash, not the text, because every charge keeps one: the text is
// spelled out again only for the message when a key is reused. Never stored: it may differ
// between builds, and so may CanonicalDump, which lists it.
struct KeyRecord {
  std::string txn_id;
  uint64_t fingerprint = 0;
  bool operator==(const KeyRecord&) const = default;
};

// Hash maps with lookup by string_view. Every command looks up its account and key several times,
// so the per-lookup cost matters; ordered output (CanonicalDump) sorts the keys itself. Sharded,
// so that growing a map of millions of keys never stalls the partition's writer (see
// sharded_map.h).
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
  StringMap<KeyRecord> idempotency_keys;
  StringMap<KeyRecord> charges;
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
};

// Entries of `all` (in log order) with from_us <= time_us < to_us, with the balances around them.
Statement BuildStatement(std::string account_id, const StatementEntries& all,
                         int64_t from_us, int64_t to_us);

class Ledger {
 public:
  explicit Ledger(LedgerConfig config = {});

  // The events `command` would produce against the current state; does not change state.
  // Domain outcomes (including invalid input from an operator or billing) come back as an OK
  // Result holding a rejection or a duplicate. A non-OK Result means the caller broke the
  // contract: a missing txn id, or a txn id that was already used (the adapter's id source is
  // broken); nothing should be recorded for it.
  Result<Decision> Decide(const Command& command) const;

  // Folds one event into the state. Must be given events in the order Decide produced them;
  // never fails on such events, and crashes (WL_CHECK) on an event that breaks an invariant.
  void Apply(const Event& event);

  // Applies a decision's events and then checks the level invariants of the accounts touched.
  void ApplyAll(const std::vector<Event>& events);

  // Apply and ApplyAll for events read back from the log: an event that does not fit the state
  // (unknown account, out-of-sequence count, unbalanced posting...) is a DataLoss status naming
  // what did not hold, instead of a crash. After an error the ledger is unusable: throw it away.
  Status TryApply(const Event& event);
  Status TryApplyAll(const std::vector<Event>& events);

  // Every invariant over the whole state, O(state). Crashes on a violation.
  void CheckInvariants() const;

  const LedgerState& state() const { return state_; }
  const LedgerConfig& config() const { return config_; }
  const Account* FindAccount(std::string_view id) const;
  // A copy: most records are built from their statement entry (see EntryTxn).
  std::optional<TxnRecord> FindTxn(std::string_view txn_id) const;
  int64_t SystemBalance(std::string_view name) const;
  Result<Statement> GetStatement(std::string_view account_id, int64_t from_us, int64_t to_us) const;

  // A canonical text dump of the whole state (maps are ordered), equal for equal states: replay
  // compares the dumps (or a hash of them) of the live and the rebuilt ledger.
  std::string CanonicalDump() const;
  // FNV-1a 64 of CanonicalDump() in hex: a short fingerprint for logs. Not collision-proof;
  // replay verification should hash CanonicalDump() with SHA-256 in the adapter.
  std::string Digest() const;

  bool operator==(const Ledger& other) const { return state_ == other.state_; }

 private:
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

  bool TxnUsed(std::string_view txn_id) const;
  Result<Account*> MutableAccount(const std::string& id);
  Status ApplyPosting(const Posting& posting);
  void AddEntry(Account& account, StatementEntry&& entry);  // Kept packed (StoredEntry::Pack).
  Status AddTxn(TxnRecord record);
  // Records the txn of `account`'s last statement entry: as an EntryTxn when `posting` is the two
  // legs that entry implies, else as the record `make_record()` builds.
  template <typename MakeRecord>
  Status AddEntryTxn(const Account& account, const Posting& posting, const MakeRecord& make_record);
  // The txn `txn_id` reversed by `reversal`: a top-up, refund or adjustment not reversed before.
  Status MarkReversed(const std::string& txn_id, const std::string& reversal, TxnKind kind,
                      const std::string& account_id, int64_t amount_minor);
  // with_history adds the checks that walk the account's whole history (the full check only);
  // with_meters the walk over its meters' owners.
  Status AccountInvariantsHold(const Account& account, bool with_history, bool with_meters) const;

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

  LedgerConfig config_;
  LedgerState state_;
  std::vector<TxnIdMark> txn_id_marks_;
  bool txn_id_marks_full_ = false;
};

}  // namespace wattledger::ledger

// Events of the ledger: the only way its state changes. Plain structs, no protobuf; the adapter
// maps them to the wire. Every event carries the txn id of the command that produced it; a
// command produces exactly one primary event (the first) followed by zero or more level events
// (LevelChanged, SupplyCutRequired, SupplyRestoreAllowed) with the same txn id.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "services/ledger/domain/types.h"

namespace wattledger::ledger {

// An EntryLink's latest_time_us when it is not known: the link was written before links carried
// it. No statement's walk stops at such an entry.
inline constexpr int64_t kLatestEntryTimeUnknown = INT64_MAX;

// What an event that makes a statement entry (see MakesEntry) says of the account's entries, so
// that an account's statement is read from the log alone: the seq of the account's entry before
// this one (the number of its txn id; 0 for the first), the balance this one leaves, and the
// latest time_us of this entry and all before it. Decide fills it in; Apply checks it against the
// account. The service's txn id is the seq of the decision's first event, which is the one that
// makes the entry, so each entry names the event of the one before it: a chain, newest first,
// through the account's part of its partition. Times need not grow along the chain (a charge
// carries its usage's time), so the latest time is what tells a statement's walk that nothing
// before an entry falls in its period (StatementWalkEnds).
struct EntryLink {
  uint64_t prev_entry_seq = 0;
  int64_t balance_after_minor = 0;
  int64_t latest_time_us = kLatestEntryTimeUnknown;
  bool operator==(const EntryLink&) const = default;
};

struct AccountOpened {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string customer_name;
  std::vector<std::string> phones;
  std::string room;
  std::vector<std::string> meters;
  std::string tariff_id;
  Mode mode = Mode::kPrepaid;
  Limits limits;
  // A balance carried from an old meter (may be negative: carried arrears); posted against the
  // "migration" system account. 0 when none.
  int64_t opening_balance_minor = 0;
  std::string opening_balance_source;
  Posting posting;
  EntryLink link;
  bool operator==(const AccountOpened&) const = default;
};

struct MeterAttached {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string meter_id;
  // The account's supply is cut (a prepaid account below its cut-off line): the meter joins it
  // cut, as its SupplyCutRequired listed the account's other meters. Otherwise the meter may
  // be supplied, whatever it was under an earlier account. (False in logs written before the
  // field.)
  bool supply_cut = false;
  std::string reason = {};  // As the operator gave it; "" for none.
  bool operator==(const MeterAttached&) const = default;
};

struct MeterDetached {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string meter_id;
  std::string reason = {};  // As the operator gave it; "" for none.
  bool operator==(const MeterDetached&) const = default;
};

struct LimitsChanged {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  Limits before;
  Limits after;
  std::string reason = {};  // As the operator gave it; "" for none.
  bool operator==(const LimitsChanged&) const = default;
};

struct AccountSuspended {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string reason;
  bool operator==(const AccountSuspended&) const = default;
};

struct AccountResumed {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string reason = {};  // As the operator gave it; "" for none.
  bool operator==(const AccountResumed&) const = default;
};

// A new customer takes over the account, its meters and its purchase count. When settled, the
// old owner's positive balance is refunded (posting to "refunds") and the new owner starts at 0.
struct OwnershipTransferred {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string old_customer_name;
  std::vector<std::string> old_phones;
  std::string new_customer_name;
  std::vector<std::string> new_phones;
  bool settled = false;
  int64_t settlement_refund_minor = 0;
  PaymentMethod method = PaymentMethod::kCash;
  Posting posting;
  EntryLink link;
  std::string reason = {};  // As the operator gave it; "" for none.
  bool operator==(const OwnershipTransferred&) const = default;
};

// A positive balance is refunded (posting to "refunds"); arrears stay on the account, which is
// then kClosedWithArrears. The meters are released for other accounts.
struct AccountClosed {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string reason;
  int64_t settlement_refund_minor = 0;
  PaymentMethod method = PaymentMethod::kCash;
  int64_t arrears_minor = 0;
  std::vector<std::string> released_meters;
  Posting posting;
  EntryLink link;
  bool operator==(const AccountClosed&) const = default;
};

struct ToppedUp {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string idempotency_key;
  int64_t amount_minor = 0;
  PaymentMethod method = PaymentMethod::kCash;
  int64_t purchase_count = 0;  // The account's count after this top-up: 1 for the first.
  Posting posting;
  EntryLink link;
  bool operator==(const ToppedUp&) const = default;
};

struct Refunded {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string idempotency_key;
  int64_t amount_minor = 0;  // > 0; the balance goes down by this.
  PaymentMethod method = PaymentMethod::kCash;
  std::string reason;
  Posting posting;
  EntryLink link;
  bool operator==(const Refunded&) const = default;
};

struct Reversed {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string idempotency_key;
  std::string original_txn_id;
  TxnKind original_kind = TxnKind::kTopUp;
  int64_t amount_minor = 0;  // Signed change of the tenant balance (minus the original's).
  std::string reason;
  Posting posting;  // The original posting with every leg negated.
  EntryLink link;
  bool operator==(const Reversed&) const = default;
};

struct Adjusted {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string idempotency_key;
  int64_t amount_minor = 0;  // Signed, != 0.
  std::string reason;
  Posting posting;
  EntryLink link;
  bool operator==(const Adjusted&) const = default;
};

struct Charged {
  std::string txn_id;
  int64_t time_us = 0;
  std::string account_id;
  std::string charge_id;
  int64_t amount_minor = 0;  // > 0; the balance goes down by this.
  int64_t energy_wh = 0;
  std::string meter_id;
  std::string reading_id;
  std::string tariff_id;
  int64_t tariff_version = 0;
  Posting posting;
  EntryLink link;
  bool operator==(const Charged&) const = default;
};

struct LevelChanged {
  std::string txn_id;
  int64_t time_us = 0;
  std::string account_id;
  Level from = Level::kNormal;
  Level to = Level::kNormal;
  int64_t balance_minor = 0;
  bool operator==(const LevelChanged&) const = default;
};

struct SupplyCutRequired {
  std::string txn_id;
  int64_t time_us = 0;
  std::string account_id;
  int64_t balance_minor = 0;
  int64_t cutoff_line_minor = 0;  // -credit_limit: the balance is below this.
  std::vector<std::string> meters;
  bool operator==(const SupplyCutRequired&) const = default;
};

struct SupplyRestoreAllowed {
  std::string txn_id;
  int64_t time_us = 0;
  std::string account_id;
  int64_t balance_minor = 0;
  int64_t cutoff_line_minor = 0;
  std::vector<std::string> meters;
  bool operator==(const SupplyRestoreAllowed&) const = default;
};

using Event = std::variant<AccountOpened, MeterAttached, MeterDetached, LimitsChanged,
                           AccountSuspended, AccountResumed, OwnershipTransferred, AccountClosed,
                           ToppedUp, Refunded, Reversed, Adjusted, Charged, LevelChanged,
                           SupplyCutRequired, SupplyRestoreAllowed>;

// "ledger.ToppedUp" and so on: a stable type name for the envelope.
std::string_view EventTypeName(const Event& e);
const std::string& EventTxnId(const Event& e);
const std::string& EventAccountId(const Event& e);
int64_t EventTimeUs(const Event& e);
// The idempotency key the event's request used (a top-up's, refund's, adjustment's or
// reversal's), or "" for events without one.
std::string_view EventIdempotencyKey(const Event& e);

}  // namespace wattledger::ledger

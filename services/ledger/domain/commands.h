// Commands to the ledger. Every command carries a txn_id assigned by the adapter (e.g. from the
// log position; the domain never invents ids) and the time it happened (the domain reads no
// clock). Operator commands carry the operator's id, which is required.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "services/ledger/domain/types.h"

namespace wattledger::ledger {

struct OpenAccount {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string customer_name;
  std::vector<std::string> phones;
  std::string room;
  std::vector<std::string> meters;  // At least one.
  std::string tariff_id;
  Mode mode = Mode::kPrepaid;
  // Unset limits take LedgerConfig's defaults.
  std::optional<int64_t> credit_limit_minor;
  std::optional<int64_t> alarm1_minor;
  std::optional<int64_t> alarm2_minor;
  std::optional<int64_t> hoarding_cap_minor;
  int64_t opening_balance_minor = 0;    // Carried from an old meter; may be negative.
  std::string opening_balance_source;   // E.g. the old meter's id.
};

struct AttachMeter {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string meter_id;
  std::string reason = {};  // Optional.
};

struct DetachMeter {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string meter_id;
  std::string reason = {};  // Optional.
};

// Unset fields keep their value; at least one must be set.
struct SetLimits {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::optional<int64_t> credit_limit_minor;
  std::optional<int64_t> alarm1_minor;
  std::optional<int64_t> alarm2_minor;
  std::optional<int64_t> hoarding_cap_minor;
  std::string reason = {};  // Optional.
};

struct Suspend {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string reason;
};

struct Resume {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string reason = {};  // Optional.
};

struct TransferOwnership {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string new_customer_name;
  std::vector<std::string> new_phones;
  bool settle = false;  // true: refund the old owner's balance; false: the balance is carried.
  PaymentMethod method = PaymentMethod::kCash;  // How a settlement refund is paid out.
  std::string reason = {};  // Optional.
};

struct CloseAccount {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string reason;
  PaymentMethod method = PaymentMethod::kCash;  // How a positive balance is paid out.
};

struct TopUp {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string idempotency_key;
  int64_t amount_minor = 0;
  PaymentMethod method = PaymentMethod::kCash;
  // The purchase count this top-up will have (the next one: 1 for the first top-up).
  std::optional<int64_t> expected_purchase_count;
};

struct Refund {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string idempotency_key;
  int64_t amount_minor = 0;
  PaymentMethod method = PaymentMethod::kCash;
  std::string reason;
};

struct Reverse {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string idempotency_key;  // Optional for reversals: at most one per original anyway.
  std::string original_txn_id;
  std::string reason;
};

struct Adjust {
  std::string txn_id;
  int64_t time_us = 0;
  std::string operator_id;
  std::string account_id;
  std::string idempotency_key;
  int64_t amount_minor = 0;  // Signed: > 0 credits the tenant, < 0 debits.
  std::string reason;
};

// From billing: consumption already delivered, so never rejected for lack of money.
struct Charge {
  std::string txn_id;
  int64_t time_us = 0;
  std::string charge_id;  // The idempotency key of charges.
  std::string account_id;
  int64_t amount_minor = 0;
  int64_t energy_wh = 0;
  std::string meter_id;
  std::string reading_id;
  std::string tariff_id;
  int64_t tariff_version = 0;
};

using Command = std::variant<OpenAccount, AttachMeter, DetachMeter, SetLimits, Suspend, Resume,
                             TransferOwnership, CloseAccount, TopUp, Refund, Reverse, Adjust,
                             Charge>;

}  // namespace wattledger::ledger

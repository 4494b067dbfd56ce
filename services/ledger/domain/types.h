// Vocabulary of the ledger domain: enums, system accounts and the double-entry posting.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wattledger::ledger {

enum class Mode : uint8_t { kPrepaid, kPostpaid };

// kClosedWithArrears: closed with a negative balance that stays collectable by top-up. It becomes
// kClosed when the arrears are paid, and a late charge turns a kClosed account back into it.
enum class AccountState : uint8_t { kOpen, kSuspended, kClosed, kClosedWithArrears };

// Ordered from best to worst. Tracked for prepaid accounts that are open or suspended.
enum class Level : uint8_t { kNormal, kAlarm1, kAlarm2, kArrears, kCutoff };

enum class PaymentMethod : uint8_t { kCash, kWechat, kAlipay, kBank, kPlatform };

enum class TxnKind : uint8_t {
  kOpen,
  kAttachMeter,
  kDetachMeter,
  kSetLimits,
  kSuspend,
  kResume,
  kTransfer,
  kClose,
  kTopUp,
  kRefund,
  kReversal,
  kAdjustment,
  kCharge,
};

std::string_view ModeName(Mode m);
std::string_view AccountStateName(AccountState s);
std::string_view LevelName(Level l);
std::string_view PaymentMethodName(PaymentMethod m);
std::string_view TxnKindName(TxnKind k);
std::optional<PaymentMethod> ParsePaymentMethod(std::string_view name);
std::optional<Mode> ParseMode(std::string_view name);

// System accounts. Tenant balances are the tenant's money; each system account carries the
// opposite sign of what flowed to tenants through it, so the sum of every balance is always zero.
namespace sys {
inline constexpr std::string_view kCash = "cash";
inline constexpr std::string_view kWechat = "wechat";
inline constexpr std::string_view kAlipay = "alipay";
inline constexpr std::string_view kBank = "bank";
inline constexpr std::string_view kPlatform = "platform";
inline constexpr std::string_view kRevenue = "revenue";
inline constexpr std::string_view kRefunds = "refunds";
inline constexpr std::string_view kAdjustments = "adjustments";
inline constexpr std::string_view kMigration = "migration";
inline constexpr std::string_view kWriteoff = "writeoff";
inline constexpr std::string_view kAll[] = {kCash,    kWechat,      kAlipay,    kBank,     kPlatform,
                                            kRevenue, kRefunds,     kAdjustments, kMigration, kWriteoff};
}  // namespace sys

// The payment channel's system account for a method ("wechat" for kWechat...).
std::string_view ChannelAccount(PaymentMethod m);

// One side of a posting. A tenant leg names an account id; a system leg names one of sys::kAll.
// The two namespaces are separate, so a tenant may even be called "cash".
struct Leg {
  bool system = false;
  std::string account;
  int64_t delta_minor = 0;
  bool operator==(const Leg&) const = default;
};

// A double-entry posting: the legs sum to zero. Empty for operations that move no money.
struct Posting {
  std::vector<Leg> legs;
  bool empty() const { return legs.empty(); }
  bool operator==(const Posting&) const = default;
};

// The thresholds of an account, all in minor units and all >= 0:
// credit_limit: how far below zero the balance may go before cut-off;
// alarm1 >= alarm2: low-balance warning lines; hoarding_cap: the largest balance a top-up may
// create, 0 meaning no cap.
struct Limits {
  int64_t credit_limit_minor = 0;
  int64_t alarm1_minor = 0;
  int64_t alarm2_minor = 0;
  int64_t hoarding_cap_minor = 0;
  bool operator==(const Limits&) const = default;
};

// The level a prepaid balance is at under limits; see README.md for the exact lines.
Level LevelFor(int64_t balance_minor, const Limits& limits);

}  // namespace wattledger::ledger

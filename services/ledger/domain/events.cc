#include "services/ledger/domain/events.h"

#include <type_traits>

namespace wattledger::ledger {
namespace {

template <typename T>
constexpr std::string_view TypeName() {
  if constexpr (std::is_same_v<T, AccountOpened>) return "ledger.AccountOpened";
  else if constexpr (std::is_same_v<T, MeterAttached>) return "ledger.MeterAttached";
  else if constexpr (std::is_same_v<T, MeterDetached>) return "ledger.MeterDetached";
  else if constexpr (std::is_same_v<T, LimitsChanged>) return "ledger.LimitsChanged";
  else if constexpr (std::is_same_v<T, AccountSuspended>) return "ledger.AccountSuspended";
  else if constexpr (std::is_same_v<T, AccountResumed>) return "ledger.AccountResumed";
  else if constexpr (std::is_same_v<T, OwnershipTransferred>) return "ledger.OwnershipTransferred";
  else if constexpr (std::is_same_v<T, AccountClosed>) return "ledger.AccountClosed";
  else if constexpr (std::is_same_v<T, ToppedUp>) return "ledger.ToppedUp";
  else if constexpr (std::is_same_v<T, Refunded>) return "ledger.Refunded";
  else if constexpr (std::is_same_v<T, Reversed>) return "ledger.Reversed";
  else if constexpr (std::is_same_v<T, Adjusted>) return "ledger.Adjusted";
  else if constexpr (std::is_same_v<T, Charged>) return "ledger.Charged";
  else if constexpr (std::is_same_v<T, LevelChanged>) return "ledger.LevelChanged";
  else if constexpr (std::is_same_v<T, SupplyCutRequired>) return "ledger.SupplyCutRequired";
  else if constexpr (std::is_same_v<T, SupplyRestoreAllowed>) return "ledger.SupplyRestoreAllowed";
  else static_assert(sizeof(T) == 0, "event without a type name");
}

}  // namespace

std::string_view EventTypeName(const Event& e) {
  return std::visit([](const auto& ev) { return TypeName<std::decay_t<decltype(ev)>>(); }, e);
}

const std::string& EventTxnId(const Event& e) {
  return std::visit([](const auto& ev) -> const std::string& { return ev.txn_id; }, e);
}

int64_t EventTimeUs(const Event& e) {
  return std::visit([](const auto& ev) { return ev.time_us; }, e);
}

const std::string& EventAccountId(const Event& e) {
  return std::visit([](const auto& ev) -> const std::string& { return ev.account_id; }, e);
}

std::string_view EventIdempotencyKey(const Event& e) {
  return std::visit(
      [](const auto& ev) -> std::string_view {
        if constexpr (requires { ev.idempotency_key; }) {
          return ev.idempotency_key;
        } else {
          return {};
        }
      },
      e);
}

}  // namespace wattledger::ledger

// One event of each domain type, every field set to a value other than its default: the codec
// tests' round trips and the event decoder's fuzz seeds (tests/fuzz). Tests and fuzzers only.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "services/ledger/domain/events.h"

namespace wattledger::ledger::adapters::sample {

inline constexpr int64_t kT = 1'700'000'000'000'000;

inline Posting Two(std::string tenant, int64_t delta, std::string system) {
  return Posting{{Leg{false, std::move(tenant), delta}, Leg{true, std::move(system), -delta}}};
}

// A field the codec forgets shows up either in the round trip or in the tests' EveryWireFieldIsSet.
inline std::vector<Event> Events() {
  Limits limits{100, 300, 200, 5000};
  Limits other{150, 350, 250, 7};
  return {
      AccountOpened{"T1", kT, "op", "A1", "Wang", {"138", "139"}, "3-201", {"M1", "M2"}, "tf",
                    Mode::kPostpaid, limits, -500, "old-meter", Two("A1", -500, "migration"), EntryLink{0, -500}},
      MeterAttached{"T2", kT + 1, "op", "A1", "M3", /*supply_cut=*/true, "second circuit"},
      MeterDetached{"T3", kT + 2, "op", "A1", "M2", "faulty"},
      LimitsChanged{"T4", kT + 3, "op", "A1", limits, other, "credit agreed"},
      AccountSuspended{"T5", kT + 4, "op", "A1", "meter tamper"},
      AccountResumed{"T6", kT + 5, "op", "A1", "checked"},
      OwnershipTransferred{"T7", kT + 6, "op", "A1", "Wang", {"138"}, "Li", {"186", "187"}, true,
                           900, PaymentMethod::kBank, Two("A1", -900, "refunds"), EntryLink{1, 0}, "new lease"},
      AccountClosed{"T8", kT + 7, "op", "A1", "moved out", 400, PaymentMethod::kWechat, 30,
                    {"M1", "M3"}, Two("A1", -400, "refunds"), EntryLink{7, -30}},
      ToppedUp{"T9", kT + 8, "op", "A1", "key-9", 10'000, PaymentMethod::kAlipay, 3,
               Two("A1", 10'000, "alipay"), EntryLink{8, 9'970}},
      Refunded{"T10", kT + 9, "op", "A1", "key-10", 2'000, PaymentMethod::kPlatform, "asked",
               Two("A1", -2'000, "refunds"), EntryLink{9, 7'970}},
      Reversed{"T11", kT + 10, "op", "A1", "key-11", "T9", TxnKind::kTopUp, -10'000, "typo",
               Two("A1", -10'000, "alipay"), EntryLink{10, -2'030}},
      Adjusted{"T12", kT + 11, "op", "A1", "key-12", -77, "meter fault",
               Two("A1", -77, "adjustments"), EntryLink{11, -2'107}},
      Charged{"T13", kT + 12, "A1", "C1", 1'234, 5'600, "M1", "R1", "tf", 4,
              Two("A1", -1'234, "revenue"), EntryLink{12, -3'341}},
      LevelChanged{"T13", kT + 12, "A1", Level::kAlarm1, Level::kCutoff, -1'500},
      SupplyCutRequired{"T13", kT + 12, "A1", -1'500, -100, {"M1", "M3"}},
      SupplyRestoreAllowed{"T14", kT + 13, "A1", 50, -100, {"M1"}},
  };
}

}  // namespace wattledger::ledger::adapters::sample

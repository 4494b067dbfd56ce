// Billing's UsageCharged payloads, as the ledger's consumer meets them. The account id read off the
// wire (UsageAccountIdOf, which routes every charge to its partition) agrees with a full parse
// wherever the parse succeeds, and ChargeFromUsage makes what parses into a charge within its
// rules or refuses it with INVALID_ARGUMENT, leaving the usage as it came.
#include <google/protobuf/stubs/logging.h>

#include <string>
#include <vector>

#include "fuzz.h"
#include "services/ledger/adapters/codec.h"

namespace {

// Protobuf logs each string field that is not UTF-8; a fuzzer makes millions.
void Quiet(google::protobuf::LogLevel, const char*, int, const std::string&) {}
const bool kQuiet = (google::protobuf::SetLogHandler(&Quiet), true);

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wattledger;
  using namespace wattledger::ledger::adapters;
  const std::string_view payload(reinterpret_cast<const char*>(data), size);
  const std::optional<std::string_view> routed = UsageAccountIdOf(payload);
  billing::v1::UsageCharged u;
  if (!u.ParseFromArray(data, static_cast<int>(size))) return 0;
  WL_FUZZ_CHECK(routed.has_value(), "the wire reader refused a payload that parses");
  WL_FUZZ_CHECK(*routed == u.account_id(), "the wire reader read '%.*s', the parse '%s'",
                static_cast<int>(routed->size()), routed->data(), u.account_id().c_str());
  billing::v1::UsageCharged taken = u;
  Result<ledger::Charge> charge = ChargeFromUsage(&taken, "ledger/0/1", 1);
  if (!charge.ok()) {
    WL_FUZZ_CHECK(charge.status().code() == StatusCode::kInvalidArgument, "%s", charge.status().ToString().c_str());
    WL_FUZZ_CHECK(taken.SerializeAsString() == u.SerializeAsString(), "a refused usage was changed");
    return 0;
  }
  WL_FUZZ_CHECK(!charge->charge_id.empty() && charge->account_id == u.account_id() && !charge->account_id.empty(),
                "charge '%s' of account '%s'", charge->charge_id.c_str(), charge->account_id.c_str());
  WL_FUZZ_CHECK(charge->amount_minor > 0 && charge->energy_wh >= 0, "amount %lld, energy %lld",
                static_cast<long long>(charge->amount_minor), static_cast<long long>(charge->energy_wh));
  return 0;
}

std::vector<std::string> WlFuzzSeeds() {
  wattledger::billing::v1::UsageCharged u;
  u.set_charge_id("fleet-sim/1732000000/7/A00042");
  u.set_account_id("A00042");
  u.set_amount_minor(12'345);
  u.set_energy_wh(2'000);
  u.set_meter_id("M-A00042");
  u.set_reading_id("M-A00042/sim/7");
  u.set_tariff_id("flat-0.60");
  u.set_tariff_version(3);
  u.set_occurred_at_us(1'700'000'000'000'000);
  std::vector<std::string> seeds = {u.SerializeAsString()};
  wattledger::billing::v1::UsageCharged other;
  other.set_account_id("账户-0042");
  seeds.push_back(seeds[0] + other.SerializeAsString());  // The last account id wins.
  u.set_amount_minor(-1);
  seeds.push_back(u.SerializeAsString());
  seeds.push_back(other.SerializeAsString());
  seeds.push_back("");
  // Found by this target: an empty account_id as the last field (after an unknown fixed32).
  seeds.emplace_back("\x95\x0a\x1d\x00\x00\x00\x12\x00", 8);
  return seeds;
}

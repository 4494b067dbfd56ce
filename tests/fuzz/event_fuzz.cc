// The ledger's own events, as a reader of its log meets them (start-up, replay, the audit): the
// first byte picks the type, the rest is the payload. DecodeEvent returns an event or refuses it
// with INVALID_ARGUMENT, and whatever it returns encodes and decodes back to itself.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/stubs/logging.h>

#include <algorithm>
#include <string>
#include <vector>

#include "fuzz.h"
#include "services/ledger/adapters/codec.h"
#include "services/ledger/adapters/sample_events.h"

namespace {

void Quiet(google::protobuf::LogLevel, const char*, int, const std::string&) {}
const bool kQuiet = (google::protobuf::SetLogHandler(&Quiet), true);

// The domain event types, then two a reader must refuse: the rejection record and a stranger.
const std::vector<std::string>& Types() {
  static const std::vector<std::string> types = [] {
    std::vector<std::string> t;
    const auto* file = wattledger::ledger::v1::ToppedUp::descriptor()->file();
    for (int i = 0; i < file->message_type_count(); ++i) {
      const std::string& name = file->message_type(i)->full_name();
      if (wattledger::ledger::adapters::IsLedgerEventType(name)) t.push_back(name);
    }
    t.emplace_back(wattledger::ledger::adapters::kRejectedType);
    t.emplace_back("wattledger.ledger.v1.NoSuchEvent");
    return t;
  }();
  return types;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wattledger;
  using namespace wattledger::ledger::adapters;
  if (size == 0) return 0;
  const std::string& type = Types()[data[0] % Types().size()];
  const std::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
  Result<ledger::Event> event = DecodeEvent(type, payload);
  if (!event.ok()) {
    WL_FUZZ_CHECK(event.status().code() == StatusCode::kInvalidArgument, "%s", event.status().ToString().c_str());
    return 0;
  }
  WL_FUZZ_CHECK(IsLedgerEventType(type), "%s decoded", type.c_str());
  const Encoded again = EncodeEvent(*event);
  WL_FUZZ_CHECK(again.type == type, "decoded as %s, encoded as %s", type.c_str(), again.type.c_str());
  Result<ledger::Event> twice = DecodeEvent(again.type, again.payload);
  WL_FUZZ_CHECK(twice.ok(), "%s", twice.status().ToString().c_str());
  WL_FUZZ_CHECK(*twice == *event, "%s changed in a round trip", type.c_str());
  return 0;
}

std::vector<std::string> WlFuzzSeeds() {
  std::vector<std::string> seeds;
  for (const auto& e : wattledger::ledger::adapters::sample::Events()) {
    const auto encoded = wattledger::ledger::adapters::EncodeEvent(e);
    const auto at = std::find(Types().begin(), Types().end(), encoded.type) - Types().begin();
    seeds.push_back(std::string(1, static_cast<char>(at)) + encoded.payload);
  }
  return seeds;
}

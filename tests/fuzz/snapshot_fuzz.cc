// Ledger checkpoints' state (Ledger::Load, services/ledger/domain/snapshot.h). The adapter checks
// a checkpoint's SHA-256 before it trusts the state, but the parser is its own defence: any bytes
// load as a ledger that holds its invariants, or are refused with DATA_LOSS; never a crash. A
// ledger that loads saves back to bytes that load to an equal ledger, and takes a top-up on each
// of its open accounts as the fold would.
#include <cstring>
#include <string>
#include <vector>

#include "fuzz.h"
#include "services/ledger/domain/ledger.h"
#include "services/ledger/domain/snapshot.h"

namespace {

using namespace wattledger;
using namespace wattledger::ledger;

std::string Save(const Ledger& l) { return SaveToString(l, 64); }

Result<std::unique_ptr<Ledger>> Load(std::string_view bytes) { return LoadFromString(bytes, LedgerConfig(), 64); }

void Run(Ledger& l, const Command& c) {
  auto d = l.Decide(c);
  if (d.ok() && d->accepted()) l.ApplyAll(d->events);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto loaded = Load(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!loaded.ok()) {
    WL_FUZZ_CHECK(loaded.status().code() == StatusCode::kDataLoss, "%s", loaded.status().ToString().c_str());
    return 0;
  }
  Ledger& l = **loaded;
  WL_FUZZ_CHECK(l.Invariants().ok(), "%s", l.Invariants().ToString().c_str());
  auto again = Load(Save(l));
  WL_FUZZ_CHECK(again.ok() && **again == l, "a loaded ledger does not save and load back equal");
  std::vector<std::string> ids;
  for (const auto& [id, a] : l.state().accounts) ids.push_back(id);
  uint64_t seq = 1'000'000;
  for (const std::string& id : ids) {
    Run(l, TopUp{"fuzz/" + std::to_string(++seq), 1, "op", id, "fuzz-key-" + id, 10'000, PaymentMethod::kCash,
                 std::nullopt});
  }
  l.CheckInvariants();
  return 0;
}

std::vector<std::string> WlFuzzSeeds() {
  Ledger empty;
  Ledger l;
  Run(l, OpenAccount{"ledger/0/1", 1, "op", "A1", "张三", {"13800000000"}, "101", {"M1", "M2"}, "T1",
                     Mode::kPrepaid, 100'000, std::nullopt, std::nullopt, 50'000'000, 120'000, "old meter"});
  Run(l, OpenAccount{"ledger/0/2", 2, "op", "B1", "李四", {}, "102", {"M3"}, "T2", Mode::kPostpaid, std::nullopt,
                     std::nullopt, std::nullopt, std::nullopt, 0, ""});
  Run(l, TopUp{"ledger/0/3", 3, "op", "A1", "K1", 500'000, PaymentMethod::kWechat, 1});
  Run(l, Charge{"ledger/0/4", 4, "c1", "A1", 800'000, 4000, "M1", "r1", "T1", 1});
  Run(l, Reverse{"ledger/0/5", 5, "op", "K2", "ledger/0/3", "wrong"});
  Run(l, Refund{"ledger/0/6", 6, "op", "A1", "K3", 1, PaymentMethod::kCash, "r"});
  Run(l, Adjust{"ledger/0/7", 7, "op", "B1", "K4", -30'000, "meter fault"});
  Run(l, TransferOwnership{"ledger/0/8", 8, "op", "B1", "王五", {"13600000000"}, false, PaymentMethod::kCash, ""});
  Run(l, CloseAccount{"ledger/0/9", 9, "op", "B1", "left", PaymentMethod::kCash});
  Run(l, TopUp{"other/10", 10, "op", "A1", "K5", 900'000, PaymentMethod::kBank, std::nullopt});
  return {Save(empty), Save(l)};
}

// Ledger::Save and Ledger::Load: a saved ledger loads back equal, whatever its history, and the
// loaded one decides as the saved one would; bytes that are not a whole, valid save are refused
// with DataLoss and never crash (a fuzz of truncations and byte changes).
#include "services/ledger/domain/snapshot.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "services/ledger/domain/ledger.h"

namespace wattledger::ledger {
namespace {

constexpr int64_t Y(int64_t yuan) { return yuan * 10'000; }

std::string Save(const Ledger& ledger, size_t buffer = 64) { return SaveToString(ledger, buffer); }

Result<std::unique_ptr<Ledger>> Load(const std::string& bytes, size_t buffer = 64) {
  return LoadFromString(bytes, LedgerConfig(), buffer);
}

// A ledger whose state has something in every field: every kind of command, accepted.
class History {
 public:
  void Run(const Command& c) {
    auto d = ledger.Decide(c);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    ASSERT_TRUE(d->accepted()) << (d->rejection ? d->rejection->message : "duplicate");
    ledger.ApplyAll(d->events);
    last_txn = d->txn_id;
  }
  std::string Txn() { return "ledger/0/" + std::to_string(++seq_); }
  int64_t Now() { return 1'700'000'000'000'000 + seq_ * 1'000'000; }

  void Build() {
    Run(OpenAccount{Txn(), Now(), "op", "A1", "张三", {"13800000000", "13900000000"}, "101", {"M1", "M2"}, "T1",
                    Mode::kPrepaid, Y(10), std::nullopt, std::nullopt, Y(5000), Y(12), "old meter 7"});
    Run(OpenAccount{Txn(), Now(), "op", "B1", "李四", {"13700000000"}, "102", {"M3"}, "T2", Mode::kPostpaid,
                    std::nullopt, std::nullopt, std::nullopt, std::nullopt, 0, ""});
    Run(OpenAccount{Txn(), Now(), "op", "C1", "王五", {}, "103", {"M4"}, "T1", Mode::kPrepaid, std::nullopt,
                    std::nullopt, std::nullopt, std::nullopt, 0, ""});
    Run(TopUp{Txn(), Now(), "op", "A1", "K1", Y(100), PaymentMethod::kWechat, 1});
    const std::string topup = last_txn;
    Run(TopUp{Txn(), Now(), "op", "A1", "K2", Y(50), PaymentMethod::kAlipay, std::nullopt});
    Run(Refund{Txn(), Now(), "op", "A1", "K3", Y(20), PaymentMethod::kBank, "moving out"});
    Run(Adjust{Txn(), Now(), "op", "A1", "K4", -Y(3), "meter fault"});
    Run(Reverse{Txn(), Now(), "op", "K5", topup, "wrong account"});
    Run(Charge{Txn(), Now() - 5'000'000, "c1", "A1", Y(200), 4000, "M1", "r1", "T1", 3});  // Late, cut.
    Run(Charge{Txn(), Now(), "c2", "B1", Y(30), 600, "M3", "r2", "T2", 1});
    Run(AttachMeter{Txn(), Now(), "op", "A1", "M5", "second circuit"});
    Run(DetachMeter{Txn(), Now(), "op", "A1", "M2"});
    Run(SetLimits{Txn(), Now(), "op", "C1", Y(5), Y(30), Y(15), Y(900), "asked for"});
    Run(Suspend{Txn(), Now(), "op", "C1", "dispute"});
    Run(Resume{Txn(), Now(), "op", "C1"});
    Run(TopUp{Txn(), Now(), "op", "C1", "K6", Y(40), PaymentMethod::kPlatform, std::nullopt});
    Run(TransferOwnership{Txn(), Now(), "op", "C1", "赵六", {"13600000000"}, true, PaymentMethod::kCash, "sold"});
    Run(CloseAccount{Txn(), Now(), "op", "B1", "left", PaymentMethod::kCash});  // Closed with arrears.
    Run(TopUp{Txn(), Now(), "op", "A1", "K7", Y(300), PaymentMethod::kCash, std::nullopt});  // Restored.
    ledger.CheckInvariants();
  }

  Ledger ledger;
  std::string last_txn;

 private:
  uint64_t seq_ = 0;
};

TEST(Snapshot, AWholeHistoryLoadsBackEqual) {
  History h;
  ASSERT_NO_FATAL_FAILURE(h.Build());
  for (size_t buffer : {64, 1 << 20}) {
    auto loaded = Load(Save(h.ledger, buffer), buffer);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    EXPECT_TRUE(**loaded == h.ledger);
    EXPECT_EQ((*loaded)->CanonicalDump(), h.ledger.CanonicalDump());
  }
  // Every field of an account was kept, those no fold of this history compares elsewhere too.
  auto loaded = Load(Save(h.ledger));
  ASSERT_TRUE(loaded.ok());
  const Account* c = (*loaded)->FindAccount("C1");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(*c, *h.ledger.FindAccount("C1"));
  EXPECT_NE(c->owner_since_seq, 0u);
  EXPECT_TRUE(h.ledger.FindAccount("A1")->latest_entry_time_us > 0);
}

TEST(Snapshot, TheLoadedLedgerDecidesAsTheSavedOne) {
  History h;
  ASSERT_NO_FATAL_FAILURE(h.Build());
  auto loaded = Load(Save(h.ledger));
  ASSERT_TRUE(loaded.ok());
  const std::vector<Command> next = {
      TopUp{"ledger/0/100", 1, "op", "A1", "K1", Y(100), PaymentMethod::kWechat, 1},  // Key used: duplicate.
      TopUp{"ledger/0/101", 1, "op", "A1", "K1", Y(99), PaymentMethod::kWechat, std::nullopt},      // Reused: refused.
      Charge{"ledger/0/102", 1, "c1", "A1", Y(200), 4000, "M1", "r1", "T1", 3},        // Charged already.
      TopUp{"ledger/0/103", 1, "op", "A1", "K8", Y(1), PaymentMethod::kCash, 2},      // Purchase count.
      AttachMeter{"ledger/0/104", 1, "op", "C1", "M1"},                               // M1 is A1's.
      Reverse{"ledger/0/105", 1, "op", "K9", "ledger/0/8", "again"},                  // A reversal.
      TopUp{"ledger/0/3", 1, "op", "A1", "K10", Y(1), PaymentMethod::kCash, std::nullopt},          // Txn id used.
      Refund{"ledger/0/106", 1, "op", "A1", "K11", Y(5), PaymentMethod::kCash, "r"},
  };
  for (const Command& c : next) {
    auto want = h.ledger.Decide(c);
    auto got = (*loaded)->Decide(c);
    ASSERT_EQ(want.ok(), got.ok());
    if (!want.ok()) {
      EXPECT_EQ(want.status().ToString(), got.status().ToString());
      continue;
    }
    EXPECT_EQ(want->txn_id, got->txn_id);
    EXPECT_EQ(want->duplicate, got->duplicate);
    EXPECT_EQ(want->rejection, got->rejection);
    EXPECT_EQ(want->events, got->events);
  }
}

TEST(Snapshot, TheWriterCountsWhatItHandedOn) {
  History h;
  ASSERT_NO_FATAL_FAILURE(h.Build());
  std::string bytes;
  SnapshotWriter out([&](std::string_view chunk) { bytes.append(chunk); }, 64);
  h.ledger.Save(out);
  EXPECT_EQ(out.written(), SaveToString(h.ledger).size());  // Buffered bytes count too.
  out.Str(std::string(200, 'x'));                             // Longer than the buffer: straight through.
  out.Finish();
  EXPECT_EQ(out.written(), bytes.size());
}

TEST(Snapshot, AnEmptyLedgerLoadsBackEqual) {
  Ledger empty;
  auto loaded = Load(Save(empty));
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_TRUE(**loaded == empty);
}

TEST(Snapshot, ATruncatedSaveIsRefusedAtEveryLength) {
  History h;
  ASSERT_NO_FATAL_FAILURE(h.Build());
  const std::string bytes = Save(h.ledger);
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto loaded = Load(bytes.substr(0, n));
    ASSERT_FALSE(loaded.ok()) << "cut at " << n << " of " << bytes.size();
    ASSERT_EQ(loaded.status().code(), StatusCode::kDataLoss) << loaded.status().ToString();
  }
  auto longer = Load(bytes + "x");
  ASSERT_FALSE(longer.ok());
  EXPECT_NE(longer.status().message().find("bytes follow"), std::string::npos) << longer.status().ToString();
}

// Changed bytes: a load either fails with DataLoss or gives a ledger that holds its invariants.
// (The adapter's checksum refuses such files before they get here; this is the parser's own
// defence, and what the sanitizer build runs.)
TEST(Snapshot, ChangedBytesNeverCrashTheLoad) {
  History h;
  ASSERT_NO_FATAL_FAILURE(h.Build());
  const std::string bytes = Save(h.ledger);
  std::mt19937_64 rng(7);
  int refused = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string changed = bytes;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % changed.size();
      switch (rng() % 3) {
        case 0: changed[at] = static_cast<char>(rng()); break;
        case 1: changed[at] = static_cast<char>(changed[at] ^ (1 << (rng() % 8))); break;
        default: changed.insert(at, 1, static_cast<char>(0xff)); break;
      }
    }
    auto loaded = Load(changed);
    if (!loaded.ok()) {
      ASSERT_EQ(loaded.status().code(), StatusCode::kDataLoss) << loaded.status().ToString();
      refused++;
      continue;
    }
    ASSERT_TRUE((*loaded)->Invariants().ok());
  }
  EXPECT_GT(refused, 1000);  // Most changes break something the load checks.
}

// A state whose parts hold their invariants but name what is not there (here a txn of an account
// the state lacks) is refused: reversing that txn would crash the first Decide (found by review).
TEST(Snapshot, AStateThatNamesWhatItLacksIsRefused) {
  auto state = [](const std::function<void(SnapshotWriter&)>& txns_and_keys) {
    std::string bytes;
    SnapshotWriter w([&](std::string_view c) { bytes.append(c); });
    w.Byte(1);  // The state format.
    w.U64(0);   // Accounts,
    w.U64(0);   // system balances,
    w.U64(0);   // meter owners.
    txns_and_keys(w);
    w.I64(0);
    w.I64(0);
    w.Finish();
    return bytes;
  };
  auto expect_refused = [](const std::string& bytes, const std::string& why) {
    auto loaded = LoadFromString(bytes, LedgerConfig());
    ASSERT_FALSE(loaded.ok());
    EXPECT_EQ(loaded.status().code(), StatusCode::kDataLoss);
    EXPECT_NE(loaded.status().message().find(why), std::string::npos) << loaded.status().ToString();
  };
  expect_refused(state([](SnapshotWriter& w) {
                   w.U64(0);  // Txns.
                   w.U64(1);  // An entry txn of a cash top-up of "ghost",
                   w.Str("ledger/0/5");
                   w.Str("ghost");
                   w.I64(10'000);
                   w.Byte(0);
                   w.Byte(static_cast<uint8_t>(TxnKind::kTopUp));
                   w.U64(0);  // reversals, keys, charge ids.
                   w.U64(0);
                   w.U64(0);
                 }),
                 "entry txn ledger/0/5 names account ghost, which is not held");
  expect_refused(state([](SnapshotWriter& w) {
                   w.U64(0);
                   w.U64(0);
                   w.U64(0);
                   w.U64(1);  // A key of a txn not held.
                   w.Str("K1");
                   w.Str("ledger/0/9");
                   w.U64(7);
                   w.U64(0);
                 }),
                 "key 'K1' took effect as txn ledger/0/9, which is not held");
}

TEST(Snapshot, UnknownValuesAreNamed) {
  History h;
  ASSERT_NO_FATAL_FAILURE(h.Build());
  std::string bytes = Save(h.ledger);
  bytes[0] = 9;  // The state format.
  auto loaded = Load(bytes);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("state format 9"), std::string::npos) << loaded.status().ToString();
}

}  // namespace
}  // namespace wattledger::ledger

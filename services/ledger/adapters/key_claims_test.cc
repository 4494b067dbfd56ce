#include "services/ledger/adapters/key_claims.h"

#include "services/ledger/adapters/ledger_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace wattledger::ledger::adapters {
namespace {

using Owner = KeyClaims::Owner;

TEST(KeyClaimsTest, AKeyBelongsToThePartitionThatClaimedItFirst) {
  KeyClaims claims;
  EXPECT_EQ(claims.Claim("K1", {0, 5}), std::nullopt);
  // Its own partition may claim it again (a retry the domain answers): no change.
  EXPECT_EQ(claims.Claim("K1", {0, 9}), std::nullopt);
  // Another partition is told who holds it, with the seq of the txn that used it.
  EXPECT_EQ(claims.Claim("K1", {3, 7}), (Owner{0, 5}));
  EXPECT_EQ(claims.Claim("K2", {3, 7}), std::nullopt);
  EXPECT_EQ(claims.Claim("K2", {0, 8}), (Owner{3, 7}));
  EXPECT_EQ(claims.size(), 2u);
  // The largest partition and seq an owner can hold come back as they went in.
  const Owner last{KeyClaims::kMaxPartitions - 1, KeyClaims::kMaxSeq};
  EXPECT_EQ(claims.Claim("K3", last), std::nullopt);
  EXPECT_EQ(claims.Claim("K3", {0, 1}), last);
}

TEST(KeyClaimsTest, KeepsEveryKeyAsTheShardsGrow) {
  KeyClaims claims;
  constexpr int kKeys = 200'000;
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_EQ(claims.Claim("key-" + std::to_string(i), {static_cast<uint32_t>(i % 4), uint64_t(i) + 1}),
              std::nullopt);
  }
  EXPECT_EQ(claims.size(), size_t{kKeys});
  for (int i = 0; i < kKeys; ++i) {
    const uint32_t other = static_cast<uint32_t>((i + 1) % 4);
    ASSERT_EQ(claims.Claim("key-" + std::to_string(i), {other, 1}),
              (Owner{static_cast<uint32_t>(i % 4), uint64_t(i) + 1}))
        << i;
  }
  EXPECT_EQ(claims.Claim("key-" + std::to_string(kKeys), {0, 1}), std::nullopt);
}

TEST(KeyClaimsTest, ResetPartitionKeepsWhatTheLogHoldsAndDropsTheRest) {
  KeyClaims claims;
  for (int i = 0; i < 1'000; ++i) {
    ASSERT_EQ(claims.Claim("p0-" + std::to_string(i), {0, uint64_t(i) + 1}), std::nullopt);
    ASSERT_EQ(claims.Claim("p1-" + std::to_string(i), {1, uint64_t(i) + 1}), std::nullopt);
  }
  // Partition 1 rebuilt from a log whose head is 500: its keys up to seq 500 are there, those
  // after it were in batches that failed. The log also says it used p0-0, which partition 0
  // claimed first, and p1-new, which it had not claimed (a claim lost to a bug would come back).
  claims.ResetPartition(1, 500, [](const auto& claim) {
    for (int i = 0; i < 500; ++i) claim("p1-" + std::to_string(i), uint64_t(i) + 1);
    claim("p0-0", 1);
    claim("p1-new", 7);
  });
  EXPECT_EQ(claims.size(), 1'501u);
  for (int i = 0; i < 1'000; ++i) {
    EXPECT_EQ(claims.Claim("p0-" + std::to_string(i), {1, 1}), (Owner{0, uint64_t(i) + 1})) << i;
    const std::optional<Owner> p1 = claims.Claim("p1-" + std::to_string(i), {2, 1});
    if (i < 500) {
      EXPECT_EQ(p1, (Owner{1, uint64_t(i) + 1})) << i;
    } else {
      EXPECT_EQ(p1, std::nullopt) << i << ": a key of a failed batch is free again";
    }
  }
  EXPECT_EQ(claims.Claim("p1-new", {0, 1}), (Owner{1, 7}));
}

// While a partition is rebuilt, the keys its log holds stay its own: a writer of another
// partition trying one of them meanwhile is refused throughout (found by review: dropping every
// claim first and claiming the log's keys again left a window).
TEST(KeyClaimsTest, AKeyTheLogHoldsIsNeverFreeWhileItsPartitionIsRebuilt) {
  KeyClaims claims;
  constexpr int kKeys = 300'000;
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_EQ(claims.Claim("k" + std::to_string(i), {0, uint64_t(i) + 1}), std::nullopt);
  }
  std::atomic<bool> done{false};
  std::atomic<int> taken{0};
  std::thread other([&] {
    const std::string key = "k" + std::to_string(kKeys - 1);
    while (!done) {
      if (!claims.Claim(key, {1, 7})) {
        taken++;
        return;
      }
    }
  });
  claims.ResetPartition(0, kKeys, [&](const auto& claim) {
    for (int i = 0; i < kKeys; ++i) claim("k" + std::to_string(i), uint64_t(i) + 1);
  });
  done = true;
  other.join();
  EXPECT_EQ(taken.load(), 0) << "partition 1 took a key partition 0's log holds";
  EXPECT_EQ(claims.Claim("k" + std::to_string(kKeys - 1), {2, 1}), (Owner{0, uint64_t{kKeys}}));
}

TEST(ClaimKeyTest, RecordedInflightOrFree) {
  KeyClaims claims;
  auto heads = [](uint64_t head) { return [head](uint32_t) { return head; }; };
  EXPECT_EQ(ClaimKey(claims, "K1", {0, 5}, "top-up of A0", heads(4)), std::nullopt);  // Free: partition 0's now.
  EXPECT_EQ(ClaimKey(claims, "K1", {0, 9}, "top-up of A0", heads(4)), std::nullopt);  // Its own.
  // Partition 0 has not written seq 5 yet: another partition is asked to retry.
  std::optional<Rejection> r = ClaimKey(claims, "K1", {1, 3}, "top-up of A1", heads(4));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->code, StatusCode::kUnavailable);
  EXPECT_EQ(r->rule, "idempotency_key_in_flight");
  EXPECT_NE(r->message.find("ledger/0/5"), std::string::npos) << r->message;
  // Once it has, the key is refused for good, naming that txn.
  r = ClaimKey(claims, "K1", {1, 3}, "top-up of A1", heads(5));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->code, StatusCode::kAlreadyExists);
  EXPECT_EQ(r->rule, "idempotency_key_reused");
  EXPECT_NE(r->message.find("(first: ledger/0/5, on an account of another partition; now: top-up of A1)"),
            std::string::npos)
      << r->message;
}

// A claim left by a failed batch, found just before its partition is rebuilt (dropping it) and
// writes a new batch up to the same seq, is not taken for a recorded request: the seq it names
// is another request's (found by review: it was refused for good, naming that request).
TEST(ClaimKeyTest, AStaleClaimWhoseSeqIsReachedLaterIsNotARecordedRequest) {
  KeyClaims claims;
  ASSERT_EQ(claims.Claim("K1", {0, 5}), std::nullopt);  // Partition 0's batch, which then fails.
  std::optional<Rejection> r = ClaimKey(claims, "K1", {1, 3}, "top-up of A1", [&](uint32_t partition) -> uint64_t {
    EXPECT_EQ(partition, 0u);
    // Between the claim and the head: partition 0 is rebuilt from a log at seq 4, then commits
    // another request as seq 5.
    claims.ResetPartition(0, 4, [](const auto&) {});
    return 5;
  });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->code, StatusCode::kUnavailable) << r->message;
  // Retried, the key is free.
  EXPECT_EQ(ClaimKey(claims, "K1", {1, 3}, "top-up of A1", [](uint32_t) -> uint64_t { return 5; }), std::nullopt);
}

// Two writers claiming the same keys at once: each key ends up with exactly one of them, and
// each writer is told so for every key the other one took.
TEST(KeyClaimsTest, TwoPartitionsRacingForTheSameKeysEachGetADisjointShare) {
  KeyClaims claims;
  constexpr int kKeys = 50'000;
  std::vector<int> won[2];
  std::vector<std::thread> threads;
  for (uint32_t p = 0; p < 2; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < kKeys; ++i) {
        std::optional<Owner> holder = claims.Claim("K" + std::to_string(i), {p, uint64_t(i) + 1});
        if (!holder) {
          won[p].push_back(i);
        } else {
          EXPECT_EQ(holder->partition, 1 - p);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(won[0].size() + won[1].size(), size_t{kKeys});
  EXPECT_EQ(claims.size(), size_t{kKeys});
}

}  // namespace
}  // namespace wattledger::ledger::adapters

#include "services/ledger/domain/entry_txn_index.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

namespace wattledger::ledger {
namespace {

EntryTxn Txn(const std::string& account, size_t entry) { return EntryTxn{account, static_cast<int64_t>(entry), 1, 0}; }

std::vector<std::string> Ids(const EntryTxnIndex& index) {
  std::vector<std::string> ids;
  for (const auto& [id, txn] : index.SortedById()) ids.push_back(id);
  return ids;
}

TEST(EntryTxnIndexTest, TheAdaptersIdsLiveInSegmentsWithHolesBetween) {
  EntryTxnIndex index;
  ASSERT_TRUE(index.emplace("ledger/0/5", Txn("A1", 0)));
  ASSERT_TRUE(index.emplace("ledger/0/6", Txn("A2", 0)));
  ASSERT_TRUE(index.emplace("ledger/0/9", Txn("A1", 1)));  // 7 and 8: other events.
  ASSERT_TRUE(index.emplace("ledger/1/9", Txn("B1", 0)));  // Another partition, another prefix.
  EXPECT_EQ(index.size(), 4u);
  EXPECT_EQ(index.outside_segments(), 0u);
  ASSERT_NE(index.find("ledger/0/9"), nullptr);
  EXPECT_EQ(*index.find("ledger/0/9"), Txn("A1", 1));
  EXPECT_EQ(*index.find("ledger/1/9"), Txn("B1", 0));
  for (const char* missing : {"ledger/0/4", "ledger/0/7", "ledger/0/8", "ledger/0/10", "ledger/1/5", "ledger/2/5",
                              "ledger/0/009", "ledger/0", "9"}) {
    EXPECT_FALSE(index.contains(missing)) << missing;
  }
  // A hole may be filled later; a slot that holds a txn may not.
  EXPECT_TRUE(index.emplace("ledger/0/7", Txn("A3", 0)));
  EXPECT_FALSE(index.emplace("ledger/0/7", Txn("A4", 0)));
  EXPECT_FALSE(index.emplace("ledger/0/5", Txn("A1", 0)));
  EXPECT_EQ(*index.find("ledger/0/7"), Txn("A3", 0));
  EXPECT_EQ(index.size(), 5u);
  EXPECT_EQ(Ids(index), (std::vector<std::string>{"ledger/0/5", "ledger/0/6", "ledger/0/7", "ledger/0/9", "ledger/1/9"}));
}

TEST(EntryTxnIndexTest, GapsBeyondTheLimitStartSegmentsThatNeverOverlap) {
  EntryTxnIndex index;
  const uint64_t dense = 3000;
  for (uint64_t n = 1; n <= dense; ++n) ASSERT_TRUE(index.emplace("p/" + std::to_string(n), Txn("A", n)));
  const uint64_t far = dense + 1 + EntryTxnIndex::kMaxGap + 1;  // One number too far.
  ASSERT_TRUE(index.emplace("p/" + std::to_string(far), Txn("B", 0)));
  ASSERT_TRUE(index.emplace("p/0", Txn("C", 0)));  // Before every segment: a new one.
  EXPECT_EQ(index.segment_slots(), dense + 2);     // No holes yet: three segments.
  // The first segment grows up to the second one's start, which keeps its txn.
  ASSERT_TRUE(index.emplace("p/" + std::to_string(far - 1), Txn("D", 0)));
  EXPECT_EQ(index.segment_slots(), far + 1);
  EXPECT_FALSE(index.emplace("p/" + std::to_string(far), Txn("E", 0)));
  EXPECT_EQ(*index.find("p/" + std::to_string(far)), Txn("B", 0));
  EXPECT_EQ(*index.find("p/" + std::to_string(far - 1)), Txn("D", 0));
  EXPECT_EQ(*index.find("p/0"), Txn("C", 0));
  EXPECT_FALSE(index.contains("p/" + std::to_string(far - 2)));
  EXPECT_EQ(index.size(), dense + 3);
  EXPECT_EQ(index.outside_segments(), 0u);
}

TEST(EntryTxnIndexTest, SparseIdsCostAFewSlotsEachNotTheirGaps) {
  for (uint64_t step : {1, 2, 3, 5, 9, 20, 100, 4097, 100000}) {
    EntryTxnIndex index;
    for (uint64_t k = 0; k < 2000; ++k) {
      ASSERT_TRUE(index.emplace("p/" + std::to_string(1 + k * step), Txn("A", k))) << step;
    }
    EXPECT_EQ(index.outside_segments(), 0u) << step;
    if (step == 1) {
      EXPECT_EQ(index.segment_slots(), index.size());
    } else {
      EXPECT_LE(index.segment_slots(), 6 * index.size()) << step;
    }
    for (uint64_t k = 0; k < 2000; ++k) {
      ASSERT_NE(index.find("p/" + std::to_string(1 + k * step)), nullptr) << step;
      if (step > 1) {
        ASSERT_FALSE(index.contains("p/" + std::to_string(2 + k * step))) << step;
      }
    }
  }
}

TEST(EntryTxnIndexTest, OtherIdsGoToTheHashMapAndAreFoundThere) {
  EntryTxnIndex index;
  // Not "<prefix>/<number>", a leading zero, a number of 20 digits.
  for (const char* id : {"T1", "x/", "x/1a", "x/007", "x/12345678901234567890"}) {
    ASSERT_TRUE(index.emplace(id, Txn("A", 0))) << id;
  }
  ASSERT_TRUE(index.emplace("y/1", Txn("", 0)));  // An empty account id would read as a hole.
  ASSERT_TRUE(index.emplace("x/7", Txn("B", 0)));  // Not the same id as x/007: in a segment.
  ASSERT_TRUE(index.emplace("/5", Txn("C", 0)));   // The empty prefix is a prefix.
  EXPECT_EQ(index.outside_segments(), 6u);
  EXPECT_EQ(index.size(), 8u);
  for (const char* id : {"T1", "x/", "x/1a", "x/007", "x/12345678901234567890"}) {
    ASSERT_NE(index.find(id), nullptr) << id;
    EXPECT_EQ(*index.find(id), Txn("A", 0)) << id;
    EXPECT_FALSE(index.emplace(id, Txn("A", 0))) << id;
  }
  EXPECT_EQ(*index.find("y/1"), Txn("", 0));
  EXPECT_EQ(*index.find("x/7"), Txn("B", 0));
  EXPECT_FALSE(index.contains("x/07"));
  EXPECT_FALSE(index.contains("x/0"));
  EXPECT_EQ(Ids(index), (std::vector<std::string>{"/5", "T1", "x/", "x/007", "x/12345678901234567890", "x/1a",
                                                   "x/7", "y/1"}));
}

TEST(EntryTxnIndexTest, PastThePrefixAndSegmentLimitsIdsGoToTheHashMap) {
  EntryTxnIndex index;
  for (size_t p = 0; p < EntryTxnIndex::kMaxPrefixes + 1; ++p) {
    ASSERT_TRUE(index.emplace("p" + std::to_string(p) + "/1", Txn("A", p)));
  }
  EXPECT_EQ(index.outside_segments(), 1u);
  EXPECT_EQ(*index.find("p" + std::to_string(EntryTxnIndex::kMaxPrefixes) + "/1"),
            Txn("A", EntryTxnIndex::kMaxPrefixes));

  // Segments of p0 far apart, past the limit: each comes after the others, so each is made.
  const uint64_t step = 4 * EntryTxnIndex::kMaxGap;
  for (size_t s = 1; s < EntryTxnIndex::kMaxSegments + 10; ++s) {
    ASSERT_TRUE(index.emplace("p0/" + std::to_string(1 + s * step), Txn("S", s)));
  }
  EXPECT_EQ(index.outside_segments(), 1u);
  EXPECT_EQ(index.segment_slots(), EntryTxnIndex::kMaxPrefixes + 1 + EntryTxnIndex::kMaxSegments + 9 - 1);
  // One between two segments, far from both, would make a segment among them: the hash map.
  const std::string between = "p0/" + std::to_string(1 + step / 2);
  ASSERT_TRUE(index.emplace(between, Txn("H", 0)));
  EXPECT_EQ(index.outside_segments(), 2u);
  // The first segment grows until that id is within its reach: the id is still taken, and
  // found where it is.
  for (uint64_t n = 2; n < 1 + step / 2; ++n) ASSERT_TRUE(index.emplace("p0/" + std::to_string(n), Txn("G", n)));
  EXPECT_EQ(index.outside_segments(), 2u);
  EXPECT_FALSE(index.emplace(between, Txn("G", 0)));
  EXPECT_EQ(*index.find(between), Txn("H", 0));
  ASSERT_TRUE(index.emplace("p0/" + std::to_string(2 + step / 2), Txn("G", 0)));  // Past it: the segment.
  EXPECT_EQ(index.outside_segments(), 2u);
}

TEST(EntryTxnIndexTest, EqualityComparesContentsWhateverTheLayout) {
  EntryTxnIndex in_order;
  EntryTxnIndex backwards;
  for (int n = 1; n <= 3; ++n) ASSERT_TRUE(in_order.emplace("p/" + std::to_string(n), Txn("A", n)));
  for (int n = 3; n >= 1; --n) ASSERT_TRUE(backwards.emplace("p/" + std::to_string(n), Txn("A", n)));
  EXPECT_EQ(in_order, backwards);
  EXPECT_EQ(Ids(backwards), (std::vector<std::string>{"p/1", "p/2", "p/3"}));

  EntryTxnIndex other;
  for (int n = 1; n <= 3; ++n) ASSERT_TRUE(other.emplace("p/" + std::to_string(n), Txn(n == 2 ? "B" : "A", n)));
  EXPECT_NE(in_order, other);
  ASSERT_TRUE(in_order.emplace("p/4", Txn("A", 4)));
  EXPECT_NE(in_order, backwards);
}

// Against a std::map, over ids of every kind the index treats differently: ascending runs with
// gaps, ids far ahead and behind, leading zeros, other forms, many prefixes, empty accounts.
TEST(EntryTxnIndexTest, BehavesLikeAMapUnderRandomIds) {
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    std::mt19937_64 rng(seed);
    EntryTxnIndex index;
    std::map<std::string, EntryTxn> ref;
    std::vector<uint64_t> next(20, 1);
    for (int op = 0; op < 3000; ++op) {
      const size_t p = rng() % (rng() % 4 == 0 ? 20 : 3);
      const std::string prefix = "p" + std::to_string(p);
      std::string id;
      switch (rng() % 8) {
        case 0: id = prefix + "/" + std::to_string(rng() % 100000); break;       // Anywhere.
        case 1: id = prefix + "/0" + std::to_string(rng() % 100); break;         // Leading zero.
        case 2: id = "T" + std::to_string(rng() % 500); break;                   // Another form.
        case 3: next[p] += 5000 + rng() % 20000; [[fallthrough]];                // A long gap.
        default: next[p] += rng() % 4; id = prefix + "/" + std::to_string(next[p]); break;
      }
      const EntryTxn txn{rng() % 10 == 0 ? "" : "A" + std::to_string(rng() % 7), static_cast<int64_t>(op), 1, 0};
      ASSERT_EQ(index.emplace(id, txn), ref.emplace(id, txn).second) << seed << " " << id;
      const std::string probe = rng() % 2 ? id : prefix + "/" + std::to_string(rng() % 100000);
      const EntryTxn* found = index.find(probe);
      auto it = ref.find(probe);
      ASSERT_EQ(found != nullptr, it != ref.end()) << seed << " " << probe;
      if (found != nullptr) {
        ASSERT_EQ(*found, it->second) << seed << " " << probe;
      }
    }
    ASSERT_EQ(index.size(), ref.size());
    const auto sorted = index.SortedById();
    ASSERT_EQ(sorted.size(), ref.size());
    size_t i = 0;
    for (const auto& [id, txn] : ref) {
      ASSERT_EQ(sorted[i].first, id);
      ASSERT_EQ(*sorted[i].second, txn);
      ++i;
    }
  }
}

}  // namespace
}  // namespace wattledger::ledger

#include "services/ledger/domain/key_table.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <unordered_map>

#include "wattledger/base/sharded_map.h"

namespace wattledger::ledger {
namespace {

TEST(KeyTableTest, FindsWhatWasAddedAndNothingElse) {
  KeyTable t;
  EXPECT_FALSE(t.find("K1").has_value());
  EXPECT_TRUE(t.emplace("K1", "ledger/0/7", 42));
  auto e = t.find("K1");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->key, "K1");
  EXPECT_EQ(e->txn_id, "ledger/0/7");
  EXPECT_EQ(e->fingerprint, 42u);
  EXPECT_FALSE(t.contains("K2"));
  EXPECT_FALSE(t.contains("K"));
  EXPECT_FALSE(t.contains("K1 "));
  EXPECT_EQ(t.size(), 1u);
}

TEST(KeyTableTest, AKeyAddedAgainChangesNothing) {
  KeyTable t;
  ASSERT_TRUE(t.emplace("K1", "t1", 1));
  EXPECT_FALSE(t.emplace("K1", "t2", 2));
  EXPECT_EQ(t.find("K1")->txn_id, "t1");
  EXPECT_EQ(t.find("K1")->fingerprint, 1u);
  EXPECT_EQ(t.size(), 1u);
}

TEST(KeyTableTest, EmptyAndBinaryKeys) {
  KeyTable t;
  const std::string nul("a\0b", 3);
  ASSERT_TRUE(t.emplace("", "", 0));
  ASSERT_TRUE(t.emplace(nul, "t", 3));
  EXPECT_EQ(t.find("")->txn_id, "");
  EXPECT_EQ(t.find(nul)->fingerprint, 3u);
  EXPECT_FALSE(t.contains("a"));
}

// Hundreds of thousands of keys of every length, a few larger than a chunk: each is found with
// its own txn and fingerprint while the shards grow, and keys never added are not.
TEST(KeyTableTest, ManyKeysOfEveryLengthAgainstAMap) {
  KeyTable t;
  std::map<std::string, std::pair<std::string, uint64_t>> want;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 300'000; ++i) {
    std::string key = "key-" + std::to_string(rng());
    if (i % 1000 == 0) key.append(rng() % 3000, 'x');
    if (i % 50'000 == 0) key.append(KeyTable::kChunkBytes + 100, 'y');  // A chunk of its own.
    std::string txn = "ledger/" + std::to_string(i % 4) + "/" + std::to_string(i);
    const uint64_t fp = rng();
    const bool added = want.emplace(key, std::make_pair(txn, fp)).second;
    ASSERT_EQ(t.emplace(key, txn, fp), added) << i;
    if (i % 9973 == 0) {  // Those added before stay findable as the table grows.
      size_t n = 0;
      for (const auto& [k, v] : want) {
        if (n++ % 101 != 0) continue;
        auto e = t.find(k);
        ASSERT_TRUE(e.has_value()) << k.substr(0, 40);
        ASSERT_EQ(e->txn_id, v.first);
      }
    }
  }
  ASSERT_EQ(t.size(), want.size());
  for (const auto& [key, v] : want) {
    auto e = t.find(key);
    ASSERT_TRUE(e.has_value()) << key.substr(0, 40);
    EXPECT_EQ(e->key, key);
    EXPECT_EQ(e->txn_id, v.first);
    EXPECT_EQ(e->fingerprint, v.second);
  }
  for (int i = 0; i < 100'000; ++i) EXPECT_FALSE(t.contains("missing-" + std::to_string(rng()))) << i;
  // In key order, each once.
  const auto sorted = t.SortedByKey();
  ASSERT_EQ(sorted.size(), want.size());
  size_t i = 0;
  for (const auto& [key, v] : want) {
    EXPECT_EQ(sorted[i].key, key);
    EXPECT_EQ(sorted[i].txn_id, v.first);
    ++i;
  }
}

TEST(KeyTableTest, EqualityIsByContentNotOrder) {
  KeyTable a, b;
  for (int i = 0; i < 5000; ++i) ASSERT_TRUE(a.emplace("k" + std::to_string(i), "t" + std::to_string(i), i));
  for (int i = 4999; i >= 0; --i) ASSERT_TRUE(b.emplace("k" + std::to_string(i), "t" + std::to_string(i), i));
  EXPECT_TRUE(a == b);
  KeyTable c = b;
  ASSERT_TRUE(c.emplace("k5000", "t5000", 5000));
  EXPECT_FALSE(a == c);  // One more key.
  KeyTable d, e;
  ASSERT_TRUE(d.emplace("k", "t1", 1));
  ASSERT_TRUE(e.emplace("k", "t2", 1));
  EXPECT_FALSE(d == e);  // Another txn.
  KeyTable f;
  ASSERT_TRUE(f.emplace("k", "t1", 2));
  EXPECT_FALSE(d == f);  // Another fingerprint.
  KeyTable g;
  ASSERT_TRUE(g.emplace("j", "t1", 1));
  EXPECT_FALSE(d == g);  // Another key.
}

// A copy is whole and independent: adding to it (its chunks were copied at their size, not
// their capacity) leaves the original as it was.
TEST(KeyTableTest, ACopyGrowsApart) {
  KeyTable a;
  for (int i = 0; i < 20'000; ++i) ASSERT_TRUE(a.emplace("k" + std::to_string(i), "t" + std::to_string(i), i));
  KeyTable b = a;
  EXPECT_TRUE(a == b);
  for (int i = 20'000; i < 40'000; ++i) ASSERT_TRUE(b.emplace("k" + std::to_string(i), "t" + std::to_string(i), i));
  EXPECT_EQ(a.size(), 20'000u);
  EXPECT_FALSE(a.contains("k20000"));
  for (int i = 0; i < 40'000; ++i) {
    auto e = b.find("k" + std::to_string(i));
    ASSERT_TRUE(e.has_value()) << i;
    EXPECT_EQ(e->txn_id, "t" + std::to_string(i));
  }
  KeyTable c;
  c = std::move(b);
  EXPECT_EQ(c.size(), 40'000u);
  EXPECT_TRUE(c.contains("k39999"));
}

TEST(KeyTableTest, AMovedFromTableIsEmpty) {
  KeyTable a;
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(a.emplace("k" + std::to_string(i), "t", i));
  KeyTable b = std::move(a);
  EXPECT_EQ(b.size(), 1000u);
  EXPECT_EQ(a.size(), 0u);  // NOLINT(bugprone-use-after-move): what a move leaves is the point.
  EXPECT_TRUE(a == KeyTable{});
  EXPECT_FALSE(a.contains("k1"));
  ASSERT_TRUE(a.emplace("k1", "t2", 1));
  EXPECT_EQ(a.size(), 1u);
  KeyTable c;
  ASSERT_TRUE(c.emplace("x", "t", 0));
  c = std::move(b);
  EXPECT_EQ(c.size(), 1000u);
  EXPECT_FALSE(c.contains("x"));
  EXPECT_EQ(b.size(), 0u);  // NOLINT(bugprone-use-after-move)
  EXPECT_TRUE(b == KeyTable{});
}

// Two keys whose hashes agree in the 32 bits the table keeps of them (the shard's 8 and the
// slot's 24) are told apart by their text: found by trying keys until two agree (about 65,000,
// by the birthday bound), whatever the hash is.
TEST(KeyTableTest, KeysThatShareShardAndTagAreToldApart) {
  std::unordered_map<uint64_t, int> seen;
  std::string a, b;
  for (int i = 0; a.empty(); ++i) {
    const std::string key = "c" + std::to_string(i);
    const uint64_t h = TransparentStringHash{}(key);
    auto [it, added] = seen.emplace(((h >> 56) << 24) | (h & 0xffffffu), i);
    if (!added) {
      a = "c" + std::to_string(it->second);
      b = key;
    }
  }
  KeyTable t;
  ASSERT_TRUE(t.emplace(a, "ta", 1));
  EXPECT_FALSE(t.contains(b));
  ASSERT_TRUE(t.emplace(b, "tb", 2));
  auto check = [&] {
    ASSERT_TRUE(t.find(a).has_value());
    ASSERT_TRUE(t.find(b).has_value());
    EXPECT_EQ(t.find(a)->txn_id, "ta");
    EXPECT_EQ(t.find(b)->txn_id, "tb");
    EXPECT_EQ(t.find(b)->fingerprint, 2u);
  };
  check();
  for (int i = 0; i < 5000; ++i) ASSERT_TRUE(t.emplace("more-" + std::to_string(i), "t", 0));  // Growth moves them.
  check();
  EXPECT_EQ(t.size(), 5002u);
}

// A table copied over one whose chunks were larger keeps those buffers (std::string's copy
// assignment reuses a large enough one), so a chunk's capacity may exceed kChunkBytes: records
// must still start within it, or their offsets would spill into the chunk's bits. The records
// here are long enough to fill about ten chunks per shard, so the chunk's bits are used too.
TEST(KeyTableTest, ACopyOverALargerTableKeepsOffsetsInRange) {
  KeyTable big;
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(big.emplace("big-" + std::to_string(i) + std::string(70'000, 'x'), "t", 0));
  }
  KeyTable small;
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(small.emplace("s" + std::to_string(i), "t", 0));
  big = small;
  EXPECT_TRUE(big == small);
  const std::string pad(200, 'p');
  for (int i = 0; i < 400'000; ++i) {
    ASSERT_TRUE(big.emplace("n" + std::to_string(i) + pad, "txn/" + std::to_string(i), i)) << i;
  }
  for (int i = 0; i < 400'000; ++i) {
    auto e = big.find("n" + std::to_string(i) + pad);
    ASSERT_TRUE(e.has_value()) << i;
    ASSERT_EQ(e->txn_id, "txn/" + std::to_string(i));
    ASSERT_EQ(e->fingerprint, static_cast<uint64_t>(i));
  }
  for (int i = 0; i < 3000; ++i) ASSERT_TRUE(big.contains("s" + std::to_string(i))) << i;
  EXPECT_EQ(big.size(), 403'000u);
}

}  // namespace
}  // namespace wattledger::ledger

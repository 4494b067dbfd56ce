#include "wattledger/base/sharded_map.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace wattledger {
namespace {

using Map = ShardedStringMap<int>;

TEST(ShardedStringMapTest, BehavesLikeAMapUnderRandomOperations) {
  std::mt19937_64 rng(7);
  Map m;
  std::map<std::string, int> ref;
  for (int i = 0; i < 20000; ++i) {
    const std::string key = "k" + std::to_string(rng() % 3000);
    switch (rng() % 4) {
      case 0:
      case 1: {
        auto [it, inserted] = m.emplace(key, i);
        auto [rit, rinserted] = ref.emplace(key, i);
        ASSERT_EQ(inserted, rinserted) << key;
        ASSERT_EQ(it->first, key);
        ASSERT_EQ(it->second, rit->second);
        break;
      }
      case 2:
        ASSERT_EQ(m.erase(key), ref.erase(key)) << key;
        break;
      case 3: {
        auto it = m.find(key);
        ASSERT_EQ(it != m.end(), ref.contains(key)) << key;
        ASSERT_EQ(m.contains(key), ref.contains(key));
        if (it != m.end()) {
          ASSERT_EQ(it->second, ref.at(key));
          it->second += 1;  // Found entries are writable in place.
          ref[key] += 1;
          ASSERT_EQ(m.at(key), ref.at(key));
        } else {
          ASSERT_THROW(m.at(key), std::out_of_range);
        }
        break;
      }
    }
    ASSERT_EQ(m.size(), ref.size());
    ASSERT_EQ(m.empty(), ref.empty());
  }
  // Iteration visits every entry once.
  std::map<std::string, int> seen;
  for (const auto& [k, v] : m) ASSERT_TRUE(seen.emplace(k, v).second) << k;
  EXPECT_EQ(seen, ref);
}

// One shard, so that runs of occupied slots are long and every erase shifts some of them back:
// after each operation every key the reference holds is found, and nothing else.
TEST(ShardedStringMapTest, ErasingFromLongRunsKeepsEveryOtherKeyFindable) {
  std::mt19937_64 rng(11);
  ShardedStringMap<int, 1> m;
  std::map<std::string, int> ref;
  for (int i = 0; i < 30000; ++i) {
    const std::string key = "id-" + std::to_string(rng() % 500);
    if (rng() % 3 == 0) {
      ASSERT_EQ(m.erase(key), ref.erase(key)) << key;
    } else {
      ASSERT_EQ(m.emplace(key, i).second, ref.emplace(key, i).second) << key;
    }
    if (i % 97 == 0) {
      for (int k = 0; k < 500; ++k) {
        const std::string probe = "id-" + std::to_string(k);
        auto it = m.find(probe);
        ASSERT_EQ(it != m.end(), ref.contains(probe)) << probe << " after op " << i;
        if (it != m.end()) {
          ASSERT_EQ(it->second, ref.at(probe));
        }
      }
    }
  }
  EXPECT_EQ(m.size(), ref.size());
}

// The ledger keeps pointers to its accounts: an element stays where it is while the map grows
// and while other elements are erased.
TEST(ShardedStringMapTest, ElementsDoNotMoveWhenTheMapGrowsOrShrinks) {
  Map m;
  const int* first = &m.emplace("first", 1).first->second;
  for (int i = 0; i < 100000; ++i) m.emplace("k" + std::to_string(i), i);
  for (int i = 0; i < 100000; i += 2) m.erase("k" + std::to_string(i));
  EXPECT_EQ(&m.at("first"), first);
  EXPECT_EQ(*first, 1);
  EXPECT_EQ(m.size(), 50001u);
}

// A copy holds its own elements: changing one side leaves the other as it was.
TEST(ShardedStringMapTest, ACopyIsIndependent) {
  Map a;
  for (int i = 0; i < 1000; ++i) a.emplace("k" + std::to_string(i), i);
  Map b = a;
  EXPECT_EQ(a, b);
  EXPECT_NE(&a.at("k1"), &b.at("k1"));
  b.at("k1") = -1;
  b.erase("k2");
  b.emplace("new", 7);
  EXPECT_EQ(a.at("k1"), 1);
  EXPECT_TRUE(a.contains("k2"));
  EXPECT_FALSE(a.contains("new"));
  a = b;
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.at("k1"), -1);
}

// Counts its live instances; its copy throws once copies_left copies were made.
struct Counted {
  static inline int alive = 0;
  static inline int copies_left = 0;
  explicit Counted(int) { ++alive; }
  Counted(const Counted&) {
    if (copies_left-- == 0) throw std::runtime_error("copy failed");
    ++alive;
  }
  ~Counted() { --alive; }
  bool operator==(const Counted&) const = default;
};

// A copy that fails part-way (an element's copy throws) frees what it had copied.
TEST(ShardedStringMapTest, AFailedCopyLeavesNoElementBehind) {
  {
    ShardedStringMap<Counted> m;
    for (int i = 0; i < 100; ++i) m.emplace("k" + std::to_string(i), i);
    ASSERT_EQ(Counted::alive, 100);
    Counted::copies_left = 40;
    EXPECT_THROW(ShardedStringMap<Counted>{m}, std::runtime_error);
    EXPECT_EQ(Counted::alive, 100);
    Counted::copies_left = 1000;
    ShardedStringMap<Counted> copy(m);
    EXPECT_EQ(Counted::alive, 200);
  }
  EXPECT_EQ(Counted::alive, 0);
}

// The prefetch calls change nothing, and PrefetchElement names the element a lookup finds.
TEST(ShardedStringMapTest, PrefetchingChangesNothing) {
  Map m;
  m.PrefetchSlot("absent");
  EXPECT_EQ(m.PrefetchElement("absent"), nullptr);
  for (int i = 0; i < 1000; ++i) m.emplace("k" + std::to_string(i), i);
  int named = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string key = "k" + std::to_string(i);
    m.PrefetchSlot(key);
    if (const auto* e = m.PrefetchElement(key)) {
      EXPECT_EQ(e, &*m.find(key));
      named++;
    }
  }
  EXPECT_GE(named, 990);  // All but keys more than kPrefetchRun slots past their own.
  EXPECT_EQ(m.PrefetchElement("absent"), nullptr);
  EXPECT_EQ(m.size(), 1000u);
}

TEST(ShardedStringMapTest, CopiesMovesAndClearsKeepTheSize) {
  Map m;
  m.emplace("a", 1);
  m.emplace("b", 2);
  Map copy = m;
  EXPECT_EQ(copy.size(), 2u);
  Map moved = std::move(m);
  EXPECT_EQ(moved.size(), 2u);
  EXPECT_TRUE(m.empty());  // NOLINT(bugprone-use-after-move): a moved-from map is empty.
  EXPECT_EQ(m.begin(), m.end());
  m = std::move(copy);
  EXPECT_EQ(m.size(), 2u);
  EXPECT_TRUE(copy.empty());  // NOLINT(bugprone-use-after-move)
  m.clear();
  EXPECT_TRUE(m.empty());
  EXPECT_FALSE(m.contains("a"));
}

TEST(ShardedStringMapTest, EmptyMapIteratesNothingAndFindsNothing) {
  const Map m;
  EXPECT_TRUE(m.empty());
  EXPECT_EQ(m.begin(), m.end());
  EXPECT_EQ(m.find("x"), m.end());
  EXPECT_FALSE(m.contains(""));
}

TEST(ShardedStringMapTest, MutableIteratorsConvertToConstOnly) {
  static_assert(std::is_convertible_v<Map::iterator, Map::const_iterator>);
  static_assert(!std::is_convertible_v<Map::const_iterator, Map::iterator>);
  Map m;
  m.emplace("a", 1);
  Map::const_iterator it = m.find("a");
  EXPECT_EQ(it->second, 1);
}

TEST(ShardedStringMapTest, EqualityIgnoresInsertionOrder) {
  Map a, b;
  for (int i = 0; i < 1000; ++i) a.emplace("k" + std::to_string(i), i);
  for (int i = 999; i >= 0; --i) b.emplace("k" + std::to_string(i), i);
  EXPECT_EQ(a, b);
  b.at("k500") = -1;
  EXPECT_NE(a, b);
  b.at("k500") = 500;
  b.erase("k1");
  EXPECT_NE(a, b);
}

TEST(ShardedStringMapTest, KeysSpreadOverShards) {
  // The growth pause is bounded only if keys of one shape (as ids are) spread over the shards.
  std::map<size_t, int> per_shard;
  constexpr int kKeys = 256 * 200;
  for (int i = 0; i < kKeys; ++i) per_shard[Map::ShardOf("ledger/0/" + std::to_string(i))]++;
  EXPECT_EQ(per_shard.size(), 256u);
  for (const auto& [shard, n] : per_shard) {
    EXPECT_LT(n, 2 * kKeys / 256) << "shard " << shard;  // No shard holds twice its share.
  }
}

}  // namespace
}  // namespace wattledger

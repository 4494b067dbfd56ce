#include "wattledger/base/stable_vector.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace wattledger {
namespace {

TEST(StableVectorTest, HoldsWhatWasAppendedInOrder) {
  StableVector<std::string> v;
  std::vector<std::string> ref;
  EXPECT_TRUE(v.empty());
  for (int i = 0; i < 5000; ++i) {
    v.push_back("e" + std::to_string(i));
    ref.push_back("e" + std::to_string(i));
    ASSERT_EQ(v.size(), ref.size());
    ASSERT_EQ(v.back(), ref.back());
  }
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(v[i], ref[i]) << i;
  std::vector<std::string> iterated(v.begin(), v.end());
  EXPECT_EQ(iterated, ref);
  EXPECT_EQ(v.at(4999), "e4999");
  EXPECT_THROW(v.at(5000), std::out_of_range);
}

TEST(StableVectorTest, ElementsNeverMoveWhileAppending) {
  StableVector<std::string> v;
  std::vector<const std::string*> where;
  for (int i = 0; i < 3000; ++i) {
    v.push_back(std::string(40, 'x'));  // Past the small-string buffer: a move would change data().
    where.push_back(&v.back());
  }
  for (size_t i = 0; i < where.size(); ++i) ASSERT_EQ(&v[i], where[i]) << i;
}

TEST(StableVectorTest, EqualityIsElementwise) {
  StableVector<int> a{1, 2, 3, 4, 5}, b{1, 2, 3, 4, 5}, c{1, 2, 3, 4}, d{1, 2, 3, 4, 6};
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  EXPECT_EQ(StableVector<int>{}, StableVector<int>{});
}

}  // namespace
}  // namespace wattledger

#include "wattledger/base/stable_vector.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace wattledger {
namespace {

// Every behaviour, with the default first chunk of four and with a first chunk of one (the
// statements').
template <typename V>
class StableVectorTest : public ::testing::Test {};
using Shapes = ::testing::Types<StableVector<std::string>, StableVector<std::string, 0>>;
TYPED_TEST_SUITE(StableVectorTest, Shapes);

TYPED_TEST(StableVectorTest, HoldsWhatWasAppendedInOrder) {
  TypeParam v;
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

TYPED_TEST(StableVectorTest, ElementsNeverMoveWhileAppending) {
  TypeParam v;
  std::vector<const std::string*> where;
  for (int i = 0; i < 3000; ++i) {
    v.push_back(std::string(40, 'x'));  // Past the small-string buffer: a move would change data().
    where.push_back(&v.back());
  }
  for (size_t i = 0; i < where.size(); ++i) ASSERT_EQ(&v[i], where[i]) << i;
}

TYPED_TEST(StableVectorTest, CopiesAreWholeAndKeepTheGuarantee) {
  TypeParam v;
  // A partly full last chunk in both shapes: 4 + 8 (of which 6 used), or 1 + 2 + 4 + 8 (3 used).
  for (int i = 0; i < 10; ++i) v.push_back(std::string(40, static_cast<char>('a' + i)));
  TypeParam copy = v;
  EXPECT_EQ(copy, v);
  const std::string* last = &copy.back();
  copy.push_back(std::string(40, 'z'));  // Into the copy's partly filled chunk.
  EXPECT_EQ(&copy[9], last) << "appending to a copy moved its elements";
  EXPECT_EQ(v.size(), 10u);

  TypeParam moved = std::move(copy);
  EXPECT_EQ(moved.size(), 11u);
  EXPECT_TRUE(copy.empty());  // NOLINT(bugprone-use-after-move): the moved-from state is defined.
  copy.push_back("again");
  EXPECT_EQ(copy.size(), 1u);
  EXPECT_EQ(copy[0], "again");
  copy = v;
  EXPECT_EQ(copy, v);
  TypeParam& self = copy;
  copy = std::move(self);  // Self-move leaves it whole.
  EXPECT_EQ(copy, v);
}

TEST(StableVectorEquality, IsElementwise) {
  StableVector<int> a{1, 2, 3, 4, 5}, b{1, 2, 3, 4, 5}, c{1, 2, 3, 4}, d{1, 2, 3, 4, 6};
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  EXPECT_EQ(StableVector<int>{}, StableVector<int>{});
}

}  // namespace
}  // namespace wattledger

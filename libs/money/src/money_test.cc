#include "wattledger/money/money.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <string>

namespace wattledger::money {
namespace {

int64_t MustParse(std::string_view s) {
  auto r = ParseYuan(s);
  EXPECT_TRUE(r.ok()) << s << ": " << r.status().ToString();
  return r.ok() ? *r : -1;
}

TEST(ParseYuan, AcceptsPlainDecimals) {
  EXPECT_EQ(MustParse("100"), 1'000'000);
  EXPECT_EQ(MustParse("-12.50"), -125'000);
  EXPECT_EQ(MustParse("12.3456"), 123'456);
  EXPECT_EQ(MustParse("+3"), 30'000);
  EXPECT_EQ(MustParse("0.0001"), 1);
  EXPECT_EQ(MustParse("0"), 0);
  EXPECT_EQ(MustParse("-0"), 0);
  EXPECT_EQ(MustParse("007.1"), 71'000);
  EXPECT_EQ(MustParse("922337203685477.5807"), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(MustParse("-922337203685477.5808"), std::numeric_limits<int64_t>::min());
}

TEST(ParseYuan, RejectsWithMessagesThatSayWhatIsExpected) {
  auto five = ParseYuan("12.34567");
  ASSERT_FALSE(five.ok());
  EXPECT_EQ(five.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(five.status().message().find("at most 4 decimal places"), std::string::npos)
      << five.status().message();

  auto empty = ParseYuan("");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("empty"), std::string::npos);
  EXPECT_NE(empty.status().message().find("expected"), std::string::npos);

  auto big = ParseYuan("922337203685477.5808");
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("out of range"), std::string::npos);

  for (const char* bad : {"abc", "1e3", "1,000", " 1", "1 ", "--1", "+", "-", ".5", "5.", "1.2.3",
                          "0x10", "１", "12.34x", "nan", "inf", "99999999999999999999999"}) {
    auto r = ParseYuan(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(FormatYuan, AlwaysFourDecimals) {
  EXPECT_EQ(FormatYuan(123456), "12.3456");
  EXPECT_EQ(FormatYuan(-5000), "-0.5000");
  EXPECT_EQ(FormatYuan(0), "0.0000");
  EXPECT_EQ(FormatYuan(1), "0.0001");
  EXPECT_EQ(FormatYuan(-1), "-0.0001");
  EXPECT_EQ(FormatYuan(1'000'000), "100.0000");
  EXPECT_EQ(FormatYuan(std::numeric_limits<int64_t>::min()), "-922337203685477.5808");
  EXPECT_EQ(FormatYuan(std::numeric_limits<int64_t>::max()), "922337203685477.5807");
}

TEST(FormatYuan, RoundTripsThroughParseYuanOnRandomValues) {
  std::mt19937_64 rng(20240601);
  std::uniform_int_distribution<int64_t> any(std::numeric_limits<int64_t>::min(),
                                             std::numeric_limits<int64_t>::max());
  std::uniform_int_distribution<int64_t> small(-100'000'000, 100'000'000);
  for (int i = 0; i < 100'000; ++i) {
    int64_t x = (i % 2 == 0) ? any(rng) : small(rng);
    auto r = ParseYuan(FormatYuan(x));
    ASSERT_TRUE(r.ok()) << x << " " << r.status().ToString();
    ASSERT_EQ(*r, x) << FormatYuan(x);
  }
}

TEST(ParseYuan, GarbageNeverCrashesAndAcceptedValuesRoundTrip) {
  std::mt19937_64 rng(7);
  const std::string alphabet("0123456789.+-eE, x\x00\xff", 20);
  std::uniform_int_distribution<size_t> len(0, 30);
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  int accepted = 0;
  for (int i = 0; i < 100'000; ++i) {
    std::string s;
    size_t n = len(rng);
    for (size_t k = 0; k < n; ++k) s += alphabet[pick(rng)];
    auto r = ParseYuan(s);
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
      continue;
    }
    ++accepted;
    // Whatever was accepted must format back to something that parses to the same value.
    auto again = ParseYuan(FormatYuan(*r));
    ASSERT_TRUE(again.ok());
    ASSERT_EQ(*again, *r) << s;
  }
  EXPECT_GT(accepted, 0);
}

TEST(ChineseCapitals, ReceiptExamples) {
  auto yuan = [](std::string_view s) { return MustParse(s); };
  EXPECT_EQ(ChineseCapitals(yuan("1409.50")), "壹仟肆佰零玖元伍角");
  EXPECT_EQ(ChineseCapitals(yuan("100")), "壹佰元整");
  EXPECT_EQ(ChineseCapitals(yuan("0.05")), "伍分");
  EXPECT_EQ(ChineseCapitals(yuan("10.01")), "壹拾元零壹分");
  EXPECT_EQ(ChineseCapitals(yuan("100000")), "壹拾万元整");
  EXPECT_EQ(ChineseCapitals(yuan("-20.5")), "负贰拾元伍角");
  EXPECT_EQ(ChineseCapitals(0), "零元整");
  EXPECT_EQ(ChineseCapitals(yuan("0.5")), "伍角");
  EXPECT_EQ(ChineseCapitals(yuan("0.15")), "壹角伍分");
  EXPECT_EQ(ChineseCapitals(yuan("1001")), "壹仟零壹元整");
  EXPECT_EQ(ChineseCapitals(yuan("1010")), "壹仟零壹拾元整");
  EXPECT_EQ(ChineseCapitals(yuan("10000001")), "壹仟万零壹元整");
  EXPECT_EQ(ChineseCapitals(yuan("107000.53")), "壹拾万柒仟元伍角叁分");
  EXPECT_EQ(ChineseCapitals(yuan("100000000")), "壹亿元整");
  EXPECT_EQ(ChineseCapitals(yuan("100010000")), "壹亿零壹万元整");
  EXPECT_EQ(ChineseCapitals(yuan("120000000")), "壹亿贰仟万元整");
  EXPECT_EQ(ChineseCapitals(yuan("1000100000000")), "壹万零壹亿元整");
  EXPECT_EQ(ChineseCapitals(yuan("325.04")), "叁佰贰拾伍元零肆分");
  EXPECT_EQ(ChineseCapitals(yuan("6007.14")), "陆仟零柒元壹角肆分");
}

TEST(ChineseCapitals, RoundsHalfAwayFromZeroToTheFen) {
  EXPECT_EQ(ChineseCapitals(49), "零元整");      // 0.0049
  EXPECT_EQ(ChineseCapitals(50), "壹分");        // 0.0050
  EXPECT_EQ(ChineseCapitals(-50), "负壹分");
  EXPECT_EQ(ChineseCapitals(-49), "零元整");     // never "负零"
  EXPECT_EQ(ChineseCapitals(99'950), "壹拾元整");  // 9.995 -> 10.00
}

TEST(ChineseCapitals, ExtremesDoNotOverflow) {
  EXPECT_EQ(ChineseCapitals(std::numeric_limits<int64_t>::max()),
            "玖佰贰拾贰万叁仟叁佰柒拾贰亿零叁佰陆拾捌万伍仟肆佰柒拾柒元伍角捌分");
  EXPECT_EQ(ChineseCapitals(std::numeric_limits<int64_t>::min()),
            "负玖佰贰拾贰万叁仟叁佰柒拾贰亿零叁佰陆拾捌万伍仟肆佰柒拾柒元伍角捌分");
}

TEST(CheckedArithmetic, DetectsOverflow) {
  int64_t out = 0;
  EXPECT_FALSE(AddOverflows(1, 2, &out));
  EXPECT_EQ(out, 3);
  EXPECT_TRUE(AddOverflows(std::numeric_limits<int64_t>::max(), 1, &out));
  EXPECT_TRUE(SubOverflows(std::numeric_limits<int64_t>::min(), 1, &out));
  EXPECT_TRUE(MulOverflows(std::numeric_limits<int64_t>::max() / 2 + 1, 2, &out));
  EXPECT_TRUE(CheckedAdd(5, 6).ok());
  auto bad = CheckedAdd(std::numeric_limits<int64_t>::max(), 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kOutOfRange);
  EXPECT_FALSE(CheckedSub(std::numeric_limits<int64_t>::min(), 1).ok());
}

}  // namespace
}  // namespace wattledger::money

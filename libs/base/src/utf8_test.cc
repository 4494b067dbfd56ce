#include "wattledger/base/utf8.h"

#include <google/protobuf/stubs/common.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace wattledger {
namespace {

// IsUtf8 settles ASCII eight bytes at a time and leaves the rest to protobuf's validator: a byte
// with its high bit set is found wherever it lies (in a word or in the tail), and the answer is
// protobuf's for every string.
TEST(IsUtf8Test, AgreesWithProtobufWhereverTheNonAsciiByteIs) {
  EXPECT_TRUE(IsUtf8(""));
  EXPECT_TRUE(IsUtf8("ledger/3/1234567"));
  EXPECT_TRUE(IsUtf8("张三"));
  const std::vector<std::string> inserts = {
      "\xff", "\x80", "\xc0\x80" /* overlong */, "\xed\xa0\x80" /* surrogate */,
      "\xf4\x90\x80\x80" /* above U+10FFFF */, "\xe5\xbc" /* cut short */, "\xc3\xa9" /* é */,
      "\xe5\xbc\xa0" /* 张 */, "\xf0\x9f\x98\x80" /* an emoji */};
  for (const std::string& insert : inserts) {
    for (size_t len = 0; len <= 24; ++len) {
      for (size_t at = 0; at <= len; ++at) {
        std::string s(len, 'a');
        s.insert(at, insert);
        const bool protobuf =
            google::protobuf::internal::IsStructurallyValidUTF8(s.data(), static_cast<int>(s.size()));
        EXPECT_EQ(IsUtf8(s), protobuf)
            << "insert " << ::testing::PrintToString(insert) << " at " << at << " of " << len;
      }
    }
  }
  EXPECT_FALSE(IsUtf8(std::string("abcdefgh\xff", 9)));
  EXPECT_FALSE(IsUtf8(std::string("abcdefg\xff", 8)));
}

}  // namespace
}  // namespace wattledger

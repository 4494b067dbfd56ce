#include "wattledger/base/utf8.h"

#include <google/protobuf/stubs/common.h>

#include <climits>
#include <cstdint>
#include <cstring>

namespace wattledger {

bool IsUtf8(std::string_view s) {
  // Nearly all text is ASCII, which is UTF-8: eight bytes at a time without a high bit settle it
  // without protobuf's validator, whose per-call cost was most of the check for short fields.
  uint64_t high = 0;
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, s.data() + i, 8);
    high |= word;
  }
  for (; i < s.size(); ++i) high |= static_cast<unsigned char>(s[i]);
  if ((high & 0x8080808080808080ull) == 0) return true;
  // Protobuf takes an int length; nothing longer can be a field of a message it parses.
  return s.size() <= INT_MAX &&
         google::protobuf::internal::IsStructurallyValidUTF8(s.data(), static_cast<int>(s.size()));
}

}  // namespace wattledger

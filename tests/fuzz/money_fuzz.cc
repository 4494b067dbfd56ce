// Amounts as operators type them (wlctl, the console). ParseYuan returns an amount or refuses the
// text with INVALID_ARGUMENT; what it returns formats back (FormatYuan) to text that parses to the
// same amount. Eight bytes or more are also read as an amount in minor units, which must survive
// FormatYuan -> ParseYuan and have Chinese capitals.
#include <cstring>
#include <string>
#include <vector>

#include "fuzz.h"
#include "wattledger/money/money.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace wattledger;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Result<int64_t> parsed = money::ParseYuan(text);
  if (parsed.ok()) {
    const std::string formatted = money::FormatYuan(*parsed);
    Result<int64_t> again = money::ParseYuan(formatted);
    WL_FUZZ_CHECK(again.ok() && *again == *parsed, "'%s' -> %lld -> '%s'", std::string(text).c_str(),
                  static_cast<long long>(*parsed), formatted.c_str());
  } else {
    WL_FUZZ_CHECK(parsed.status().code() == StatusCode::kInvalidArgument, "%s", parsed.status().ToString().c_str());
  }
  if (size >= 8) {
    int64_t minor = 0;
    std::memcpy(&minor, data, sizeof minor);
    Result<int64_t> back = money::ParseYuan(money::FormatYuan(minor));
    WL_FUZZ_CHECK(back.ok() && *back == minor, "%lld does not survive FormatYuan", static_cast<long long>(minor));
    WL_FUZZ_CHECK(!money::ChineseCapitals(minor).empty(), "no capitals for %lld", static_cast<long long>(minor));
  }
  return 0;
}

std::vector<std::string> WlFuzzSeeds() {
  return {"100",      "-12.50", "12.3456", "+3",  "0.0001", "922337203685477.5807", "-922337203685477.5808",
          "1e5",      " 1",     "1,000",   "",    ".",      "-",                    "00000000012.3000",
          "12.34567", "9223372036854775807"};
}

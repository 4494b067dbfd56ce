#include "wattledger/money/money.h"

#include <array>
#include <cstddef>

namespace wattledger::money {
namespace {

// Magnitude of int64 values as uint64, so INT64_MIN needs no special case.
uint64_t Magnitude(int64_t v) { return v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v); }

std::string Quote(std::string_view text) {
  // Garbage can be long or binary; echo a bounded, printable prefix only.
  constexpr size_t kMaxEcho = 40;
  std::string out = "\"";
  for (size_t i = 0; i < text.size() && i < kMaxEcho; ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  if (text.size() > kMaxEcho) out += "...";
  out += "\"";
  return out;
}

Status Invalid(std::string_view text, std::string_view why) {
  return InvalidArgument("invalid amount " + Quote(text) + ": " + std::string(why) +
                         "; expected a decimal number of yuan with at most 4 decimal places, "
                         "like 100, -12.50 or 0.0001");
}

constexpr std::array<std::string_view, 10> kDigits = {"零", "壹", "贰", "叁", "肆",
                                                       "伍", "陆", "柒", "捌", "玖"};

// 1..9999 without a group unit; internal zero runs become one 零, trailing zeros are silent.
std::string GroupCapitals(uint64_t n) {
  static constexpr std::array<std::string_view, 4> kUnits = {"仟", "佰", "拾", ""};
  static constexpr std::array<uint64_t, 4> kPowers = {1000, 100, 10, 1};
  std::string out;
  bool pending_zero = false;
  for (size_t i = 0; i < 4; ++i) {
    uint64_t d = (n / kPowers[i]) % 10;
    if (d == 0) {
      if (!out.empty()) pending_zero = true;
      continue;
    }
    if (pending_zero) out += kDigits[0];
    pending_zero = false;
    out += kDigits[d];
    out += kUnits[i];
  }
  return out;
}

// 1..99,999,999 with 万.
std::string Below1e8Capitals(uint64_t n) {
  uint64_t high = n / 10'000;
  uint64_t low = n % 10'000;
  std::string out;
  if (high > 0) out = GroupCapitals(high) + "万";
  if (low > 0) {
    if (high > 0 && low < 1000) out += kDigits[0];
    out += GroupCapitals(low);
  }
  return out;
}

// Any positive number of yuan up to ~9.2e14 with 亿 (the part above 亿 uses 万 itself).
std::string YuanCapitals(uint64_t n) {
  constexpr uint64_t kYi = 100'000'000;
  if (n < kYi) return Below1e8Capitals(n);
  std::string out = Below1e8Capitals(n / kYi) + "亿";
  uint64_t rest = n % kYi;
  if (rest > 0) {
    if (rest < kYi / 10) out += kDigits[0];
    out += Below1e8Capitals(rest);
  }
  return out;
}

}  // namespace

Result<int64_t> ParseYuan(std::string_view text) {
  if (text.empty()) return Invalid(text, "it is empty");
  size_t i = 0;
  bool negative = false;
  if (text[0] == '+' || text[0] == '-') {
    negative = text[0] == '-';
    i = 1;
  }
  uint64_t whole = 0;
  size_t whole_digits = 0;
  bool too_big = false;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, ++whole_digits) {
    uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (__builtin_mul_overflow(whole, uint64_t{10}, &whole) || __builtin_add_overflow(whole, d, &whole)) {
      too_big = true;
    }
  }
  if (whole_digits == 0) {
    if (i < text.size() && text[i] == '.') return Invalid(text, "there is no digit before the decimal point");
    return Invalid(text, "it does not start with a digit (after an optional sign)");
  }
  uint64_t frac = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    size_t frac_digits = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, ++frac_digits) {
      if (frac_digits < kDecimalPlaces) frac = frac * 10 + static_cast<uint64_t>(text[i] - '0');
    }
    if (frac_digits == 0) return Invalid(text, "there is no digit after the decimal point");
    if (i == text.size() && frac_digits > kDecimalPlaces) {
      return Invalid(text, "it has " + std::to_string(frac_digits) +
                               " decimal places; at most 4 decimal places are allowed (0.0001 yuan)");
    }
    for (size_t k = frac_digits; k < kDecimalPlaces; ++k) frac *= 10;
  }
  if (i != text.size()) {
    return Invalid(text, "unexpected character at position " + std::to_string(i + 1));
  }
  uint64_t mag = 0;
  if (too_big || __builtin_mul_overflow(whole, static_cast<uint64_t>(kMinorPerYuan), &mag) ||
      __builtin_add_overflow(mag, frac, &mag)) {
    return Invalid(text, "it is out of range (the limit is +/-922337203685477.5807)");
  }
  constexpr uint64_t kMaxPositive = static_cast<uint64_t>(INT64_MAX);
  if (negative) {
    if (mag > kMaxPositive + 1) return Invalid(text, "it is out of range (the limit is -922337203685477.5808)");
    return mag == kMaxPositive + 1 ? INT64_MIN : -static_cast<int64_t>(mag);
  }
  if (mag > kMaxPositive) return Invalid(text, "it is out of range (the limit is 922337203685477.5807)");
  return static_cast<int64_t>(mag);
}

std::string FormatYuan(int64_t minor) {
  uint64_t mag = Magnitude(minor);
  uint64_t whole = mag / static_cast<uint64_t>(kMinorPerYuan);
  uint64_t frac = mag % static_cast<uint64_t>(kMinorPerYuan);
  std::string frac_text = std::to_string(frac);
  std::string out = minor < 0 ? "-" : "";
  out += std::to_string(whole);
  out += '.';
  out.append(kDecimalPlaces - frac_text.size(), '0');
  out += frac_text;
  return out;
}

std::string ChineseCapitals(int64_t minor) {
  // Half away from zero; mag <= 2^63 so adding 50 cannot wrap.
  uint64_t fen_total = (Magnitude(minor) + kMinorPerFen / 2) / kMinorPerFen;
  if (fen_total == 0) return "零元整";
  uint64_t yuan = fen_total / 100;
  uint64_t jiao = (fen_total / 10) % 10;
  uint64_t fen = fen_total % 10;
  std::string out = minor < 0 ? "负" : "";
  if (yuan > 0) out += YuanCapitals(yuan) + "元";
  if (jiao == 0 && fen == 0) return out + "整";
  if (jiao > 0) {
    out += kDigits[jiao];
    out += "角";
  } else if (yuan > 0) {
    out += kDigits[0];
  }
  if (fen > 0) {
    out += kDigits[fen];
    out += "分";
  }
  return out;
}

Result<int64_t> CheckedAdd(int64_t a, int64_t b) {
  int64_t out = 0;
  if (AddOverflows(a, b, &out)) {
    return OutOfRange(FormatYuan(a) + " + " + FormatYuan(b) + " does not fit in int64 minor units");
  }
  return out;
}

Result<int64_t> CheckedSub(int64_t a, int64_t b) {
  int64_t out = 0;
  if (SubOverflows(a, b, &out)) {
    return OutOfRange(FormatYuan(a) + " - " + FormatYuan(b) + " does not fit in int64 minor units");
  }
  return out;
}

}  // namespace wattledger::money

// Money: signed 64-bit integers of minor units, one scale for the whole platform.
//
// One minor unit is 1e-4 yuan (kMinorPerYuan = 10,000), fine enough for per-kWh prices and for
// carrying rounding remainders, and wide enough for +/-922,337,203,685 yuan. No floating point
// is used anywhere money is parsed, formatted, stored or summed. Every function here is pure and
// thread-safe; none throws.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "wattledger/base/status.h"

namespace wattledger::money {

inline constexpr int64_t kMinorPerYuan = 10'000;
inline constexpr int kDecimalPlaces = 4;
// One fen (0.01 yuan) in minor units: the precision of receipts and Chinese capitals.
inline constexpr int64_t kMinorPerFen = 100;

// Parses a decimal yuan amount: an optional sign, at least one digit, and optionally a point
// followed by one to four digits ("100", "-12.50", "12.3456", "+3", "0.0001"). Anything else,
// including blanks, exponents, grouping commas and values outside int64 minor units, is
// INVALID_ARGUMENT with a message that says what was wrong and what is expected.
Result<int64_t> ParseYuan(std::string_view text);

// Always four decimals and a '-' for negatives: 123456 -> "12.3456", -5000 -> "-0.5000".
// Exact for every int64, INT64_MIN included; ParseYuan(FormatYuan(x)) == x.
std::string FormatYuan(int64_t minor);

// The amount in Chinese capitals (大写金额) for receipts, rounded half away from zero to the fen:
// 14095000 -> "壹仟肆佰零玖元伍角", 1000000 -> "壹佰元整", 500 -> "伍分", negatives start with "负".
// Zero rules: one 零 for any run of zeros inside the number; a 万 or 亿 group whose thousands
// digit is zero is preceded by 零; 零 before the fen when the jiao is zero and there are yuan.
std::string ChineseCapitals(int64_t minor);

// Checked arithmetic. Each returns true when the exact result does not fit in int64, in which
// case *out is unspecified; otherwise false and *out holds the result.
inline bool AddOverflows(int64_t a, int64_t b, int64_t* out) { return __builtin_add_overflow(a, b, out); }
inline bool SubOverflows(int64_t a, int64_t b, int64_t* out) { return __builtin_sub_overflow(a, b, out); }
inline bool MulOverflows(int64_t a, int64_t b, int64_t* out) { return __builtin_mul_overflow(a, b, out); }

// The same as Results: OUT_OF_RANGE naming both operands when the result does not fit.
Result<int64_t> CheckedAdd(int64_t a, int64_t b);
Result<int64_t> CheckedSub(int64_t a, int64_t b);

}  // namespace wattledger::money

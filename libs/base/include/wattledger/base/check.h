// Invariant checks that stay on in release builds. A crash beats a wrong balance: use these for
// conditions our own code guarantees (money conserved, sequence gap-free), never for input from
// the network, Kafka or disk, which must be validated and answered with a Status instead.
#pragma once

#include <string>

namespace wattledger::internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* expr, const std::string& msg);
}  // namespace wattledger::internal

#define WL_CHECK(cond)                                                      \
  do {                                                                      \
    if (!(cond)) [[unlikely]]                                               \
      ::wattledger::internal::CheckFailed(__FILE__, __LINE__, #cond, "");   \
  } while (0)

#define WL_CHECK_MSG(cond, msg)                                             \
  do {                                                                      \
    if (!(cond)) [[unlikely]]                                               \
      ::wattledger::internal::CheckFailed(__FILE__, __LINE__, #cond, (msg)); \
  } while (0)

#include "wattledger/base/check.h"

#include <cstdio>
#include <cstdlib>

#include "wattledger/base/log.h"

namespace wattledger::internal {

void CheckFailed(const char* file, int line, const char* expr, const std::string& msg) {
  log::Error("invariant violated", {{"file", file},
                                    {"line", std::to_string(line)},
                                    {"check", expr},
                                    {"detail", msg}});
  std::fflush(stderr);
  std::abort();
}

}  // namespace wattledger::internal

#include "wattledger/base/thread_name.h"

#include <pthread.h>

namespace wattledger {

namespace {
constexpr size_t kMaxNameBytes = 15;  // TASK_COMM_LEN 16, less the terminating zero.
}  // namespace

void NameThisThread(std::string_view name) {
  const std::string cut(name.substr(0, kMaxNameBytes));
  pthread_setname_np(pthread_self(), cut.c_str());
}

std::string ThisThreadName() {
  char name[kMaxNameBytes + 1] = {};
  if (pthread_getname_np(pthread_self(), name, sizeof(name)) != 0) return "";
  return name;
}

}  // namespace wattledger

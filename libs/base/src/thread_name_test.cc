#include "wattledger/base/thread_name.h"

#include <gtest/gtest.h>

#include <thread>

namespace wattledger {
namespace {

TEST(ThreadName, NamesTheCallingThreadCutTo15Bytes) {
  std::string short_name, long_name;
  std::thread([&] {
    NameThisThread("ledger/w3");
    short_name = ThisThreadName();
    NameThisThread("ledger<billing#12345");
    long_name = ThisThreadName();
  }).join();
  EXPECT_EQ(short_name, "ledger/w3");
  EXPECT_EQ(long_name, "ledger<billing#");
}

}  // namespace
}  // namespace wattledger

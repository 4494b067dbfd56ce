#include "wattledger/base/build_id.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>

#include <unistd.h>

namespace wattledger {
namespace {

// The ID is the one `readelf -n` shows for this test's own executable.
TEST(BuildId, IsTheExecutablesGnuBuildId) {
  const std::string& id = BuildId();
  ASSERT_FALSE(id.empty()) << "the test binary was linked without --build-id";
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
  std::unique_ptr<FILE, int (*)(FILE*)> readelf(popen(("readelf -n /proc/" + std::to_string(getpid()) + "/exe 2>/dev/null").c_str(), "r"), pclose);
  if (readelf == nullptr) GTEST_SKIP() << "readelf is not available";
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof(buf), readelf.get()) != nullptr) out += buf;
  if (out.empty()) GTEST_SKIP() << "readelf printed nothing";
  EXPECT_NE(out.find("Build ID: " + id), std::string::npos) << out;
  EXPECT_EQ(&BuildId(), &id);  // Read once.
}

}  // namespace
}  // namespace wattledger

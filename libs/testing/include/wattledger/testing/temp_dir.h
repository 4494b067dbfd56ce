// TempDir: a fresh directory under $TMPDIR removed when it goes out of scope. Tests only.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace wattledger::testing {

class TempDir {
 public:
  // A test without its directory would write wherever an empty path leads: it stops instead.
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/wattledger-test-XXXXXX";
    char* made = ::mkdtemp(pattern.data());
    if (made == nullptr) {
      std::fprintf(stderr, "TempDir: cannot make %s: %s; set TMPDIR to a writable directory\n", pattern.c_str(),
                   std::strerror(errno));
      std::abort();
    }
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace wattledger::testing

// What every benchmark binary shares: failing a run cleanly and reading the machine's load.
#pragma once

#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "wattledger/base/status.h"

namespace wattledger::bench {

// The benchmark's name for messages, and a data directory to remove if the run fails.
inline std::string& Name() {
  static std::string name = "bench";
  return name;
}
inline std::string& CleanupDir() {
  static std::string dir;
  return dir;
}

// Fails the run: exits 2 without running destructors, which would race RocksDB's (and the
// services') threads.
[[noreturn]] inline void Die(const std::string& what) {
  std::fflush(stdout);
  std::fprintf(stderr, "%s: FAILED: %s\n", Name().c_str(), what.c_str());
  if (!CleanupDir().empty()) {
    std::error_code ec;
    std::filesystem::remove_all(CleanupDir(), ec);
  }
  std::_Exit(2);
}

inline void Check(const Status& s, const std::string& what) {
  if (!s.ok()) Die(what + ": " + s.ToString());
}

// The 1-minute load average: other work on the machine shows in every absolute figure.
inline double LoadAverage() {
  double load = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1;
    std::fclose(f);
  }
  return load;
}

// The benchmark's data directory under `parent` (or $TMPDIR), removed however main returns and,
// through CleanupDir(), when the run dies half-way; kept with a message when `keep`.
class TempDir {
 public:
  TempDir(const std::string& parent, bool keep) : keep_(keep) {
    std::filesystem::path base = parent.empty() ? std::filesystem::temp_directory_path() : std::filesystem::path(parent);
    std::string tmpl = (base / (Name() + ".XXXXXX")).string();
    if (mkdtemp(tmpl.data()) == nullptr) Die("cannot create a temp dir under " + base.string());
    path_ = tmpl;
    if (!keep_) CleanupDir() = path_;
  }
  ~TempDir() {
    if (keep_) {
      std::printf("data kept in %s\n", path_.c_str());
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string Sub(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool keep_;
};

}  // namespace wattledger::bench

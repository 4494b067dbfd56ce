// Starting `wattledger` server processes from integration tests: the binary's path and a start
// that waits (bounded) for the "ready" log line and returns the bound gRPC address.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/subprocess.h"

namespace wattledger::testing {

inline std::string BinPath(const std::string& name) {
  const char* dir = std::getenv("WL_BIN_DIR");
  return std::string(dir ? dir : "build/bin") + "/" + name;
}

// Starts `argv` with stderr in `log_path` and returns the gRPC address from its "ready" line,
// or "" (with a test failure holding the log's tail) if it did not get ready within 60 s.
inline std::string StartServer(Subprocess& proc, std::vector<std::string> argv, const std::string& log_path) {
  Subprocess::Options o;
  o.argv = std::move(argv);
  o.stderr_path = log_path;
  std::filesystem::remove(log_path);
  std::string err = proc.Start(o);
  if (!err.empty()) {
    ADD_FAILURE() << err;
    return "";
  }
  static const std::regex kReady("\"grpc\":\"([0-9.]+:[0-9]+)\".*\"msg\":\"ready\"");
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline && proc.running()) {
    std::ifstream f(log_path);
    std::string line;
    std::smatch m;
    while (std::getline(f, line)) {
      if (std::regex_search(line, m, kReady)) return m[1];
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "server did not become ready:\n" << proc.StderrTail();
  return "";
}

}  // namespace wattledger::testing

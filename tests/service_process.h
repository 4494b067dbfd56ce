// Starting `wattledger` server processes from integration tests: the binary's path and a start
// that waits (bounded) for the "ready" log line and returns the bound gRPC address.
#pragma once

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

// The "http" address (metrics, health) from a server's "ready" line in `log_path`, or "".
inline std::string ReadyHttpAddr(const std::string& log_path) {
  static const std::regex kHttp("\"http\":\"([0-9.]+:[0-9]+)\".*\"msg\":\"ready\"");
  std::ifstream f(log_path);
  std::string line;
  std::smatch m;
  while (std::getline(f, line)) {
    if (std::regex_search(line, m, kHttp)) return m[1];
  }
  return "";
}

// GET http://addr/path with a plain socket; returns the whole response ("" if unreachable).
inline std::string HttpGet(const std::string& addr, const std::string& path) {
  auto colon = addr.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(addr.substr(colon + 1))));
  if (::inet_pton(AF_INET, addr.substr(0, colon).c_str(), &a.sin_addr) != 1) return "";
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\n\r\n";
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[8192];
      ssize_t n;
      while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return out;
}

}  // namespace wattledger::testing

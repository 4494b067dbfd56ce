#include "wattledger/metrics/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wattledger/eventlog/event_log.h"
#include "wattledger/testing/temp_dir.h"

namespace wattledger::metrics {
namespace {

std::string Get(int port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return "connect failed";
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
  EXPECT_EQ(::send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

TEST(HttpServerTest, ServesMetricsHealthAndReadiness) {
  testing::TempDir dir;
  eventlog::Options o;
  o.path = dir.Sub("log");
  o.name = "metricslog";
  auto log = std::move(eventlog::EventLog::Open(o)).value();
  InstrumentLog(log.get());
  eventlog::WriteSet ws;
  eventlog::NewEvent e;
  e.type = "t";
  e.causation.set_request_id("r");
  ws.Append(e);
  ws.Append(e);
  ASSERT_TRUE(log->Commit(std::move(ws)).ok());

  auto server = HttpServer::Start("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  int port = (*server)->port();
  ASSERT_GT(port, 0);
  std::string metrics = Get(port, "/metrics");
  EXPECT_NE(metrics.find("wattledger_eventlog_events_appended_total{log=\"metricslog\"} 2"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("wattledger_eventlog_commit_latency_seconds_bucket"), std::string::npos);
  EXPECT_NE(Get(port, "/healthz").find("200 OK"), std::string::npos);
  EXPECT_NE(Get(port, "/readyz").find("503"), std::string::npos);
  (*server)->set_ready(true);
  EXPECT_NE(Get(port, "/readyz").find("200 OK"), std::string::npos);
  EXPECT_NE(Get(port, "/nope").find("404"), std::string::npos);
}

TEST(HttpServerTest, BadAddressesAreExplained) {
  EXPECT_EQ(HttpServer::Start("nonsense").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(HttpServer::Start("127.0.0.1:99999").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseHostPort(":9464")->first, "0.0.0.0");
  EXPECT_EQ(ParseHostPort("[::1]:80")->first, "::1");
}

}  // namespace
}  // namespace wattledger::metrics

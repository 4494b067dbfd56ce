#include "wattledger/metrics/metrics.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fcntl.h>

#include <cstring>

#include <prometheus/text_serializer.h>

#include "wattledger/base/log.h"
#include "wattledger/eventlog/event_log.h"

namespace wattledger::metrics {

prometheus::Registry& Registry() {
  static auto* registry = new prometheus::Registry();
  return *registry;
}

Kernel& KernelMetrics() {
  static Kernel* k = [] {
    auto& r = Registry();
    return new Kernel{
        prometheus::BuildCounter().Name("wattledger_eventlog_events_appended_total")
            .Help("Events committed to an event log").Register(r),
        prometheus::BuildHistogram().Name("wattledger_eventlog_commit_batch_events")
            .Help("Events per committed write batch").Register(r),
        prometheus::BuildHistogram().Name("wattledger_eventlog_commit_latency_seconds")
            .Help("Time to build and durably write one commit").Register(r),
        prometheus::BuildGauge().Name("wattledger_bus_consumer_lag_events")
            .Help("Events on a topic not yet delivered to a consumer").Register(r),
        prometheus::BuildGauge().Name("wattledger_bus_relay_backlog_events")
            .Help("Events in a log not yet confirmed on the bus").Register(r),
        prometheus::BuildGauge().Name("wattledger_runtime_queue_depth_inputs")
            .Help("Inputs waiting for a partition writer").Register(r),
        prometheus::BuildCounter().Name("wattledger_runtime_internal_errors_total")
            .Help("Unexpected errors caught at a thread or RPC boundary").Register(r),
        prometheus::BuildCounter().Name("wattledger_runtime_rejected_inputs_total")
            .Help("Inputs refused by validation").Register(r),
    };
  }();
  return *k;
}

void InstrumentLog(eventlog::EventLog* log) {
  auto& k = KernelMetrics();
  prometheus::Labels labels{{"log", log->name()}};
  auto* appended = &k.events_appended.Add(labels);
  auto* batch = &k.commit_batch.Add(labels, prometheus::Histogram::BucketBoundaries{
                                                1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096});
  auto* latency = &k.commit_latency.Add(labels, prometheus::Histogram::BucketBoundaries{
                                                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                    0.01, 0.025, 0.05, 0.1, 0.25, 1});
  log->SetObserver({[=](size_t events, int64_t latency_us, int64_t /*write_us*/) {
    appended->Increment(static_cast<double>(events));
    batch->Observe(static_cast<double>(events));
    latency->Observe(static_cast<double>(latency_us) / 1e6);
  }});
}

Result<std::pair<std::string, int>> ParseHostPort(const std::string& addr) {
  auto colon = addr.rfind(':');
  if (colon == std::string::npos) {
    return InvalidArgument("address '" + addr + "' is not host:port (e.g. 127.0.0.1:9464, or :0 for any free port)");
  }
  std::string host = addr.substr(0, colon);
  std::string port_s = addr.substr(colon + 1);
  if (port_s.empty() || port_s.size() > 5 || port_s.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port_s) > 65535) {
    return InvalidArgument("address '" + addr + "' has no valid port (0..65535)");
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  return std::make_pair(host, std::stoi(port_s));
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& addr) {
  WL_ASSIGN_OR_RETURN(auto hp, ParseHostPort(addr));
  std::unique_ptr<HttpServer> s(new HttpServer());
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(hp.second);
  if (getaddrinfo(hp.first.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
    return InvalidArgument("cannot resolve http address '" + addr + "'");
  }
  s->listen_fd_ = ::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(s->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc = s->listen_fd_ < 0 ? -1 : ::bind(s->listen_fd_, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (rc != 0 || ::listen(s->listen_fd_, 64) != 0) {
    return Unavailable("cannot listen on http address " + addr + ": " + std::strerror(errno) +
                       " (is another process using it? pass --http-addr 127.0.0.1:0)");
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(s->listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  s->port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (::pipe2(s->wake_fd_, O_CLOEXEC) != 0) return Internal("pipe for http server");
  s->thread_ = std::thread([srv = s.get()] { srv->Serve(); });
  return s;
}

HttpServer::~HttpServer() {
  Stop();
  for (int fd : {listen_fd_, wake_fd_[0], wake_fd_[1]}) {
    if (fd >= 0) ::close(fd);
  }
}

void HttpServer::Stop() {
  if (!thread_.joinable()) return;
  char b = 1;
  ssize_t ignored = ::write(wake_fd_[1], &b, 1);
  (void)ignored;
  thread_.join();
}

void HttpServer::Serve() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents) return;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[2048];
    ssize_t n = ::recv(fd, buf, sizeof buf - 1, 0);
    std::string req(buf, n > 0 ? static_cast<size_t>(n) : 0);
    std::string path;
    if (req.rfind("GET ", 0) == 0) path = req.substr(4, req.find(' ', 4) - 4);
    int code = 200;
    std::string body, type = "text/plain; charset=utf-8";
    if (path == "/metrics") {
      body = prometheus::TextSerializer().Serialize(Registry().Collect());
      type = "text/plain; version=0.0.4";
    } else if (path == "/healthz") {
      body = "ok\n";
    } else if (path == "/readyz") {
      code = ready_ ? 200 : 503;
      body = ready_ ? "ready\n" : "starting\n";
    } else {
      code = 404;
      body = "not found: try /metrics, /healthz or /readyz\n";
    }
    std::string resp = "HTTP/1.1 " + std::to_string(code) + (code == 200 ? " OK" : " Error") +
                       "\r\nContent-Type: " + type + "\r\nContent-Length: " + std::to_string(body.size()) +
                       "\r\nConnection: close\r\n\r\n" + body;
    size_t off = 0;
    while (off < resp.size()) {
      ssize_t w = ::send(fd, resp.data() + off, resp.size() - off, MSG_NOSIGNAL);
      if (w <= 0) break;
      off += static_cast<size_t>(w);
    }
    ::close(fd);
  }
}

}  // namespace wattledger::metrics

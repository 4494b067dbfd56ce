// Process-wide Prometheus metrics and the small HTTP server that exposes them.
//
// Names follow wattledger_<area>_<noun>_<unit>; counters end in _total. Labels name a log,
// topic or service, never a meter or an account (that would explode cardinality).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "wattledger/base/status.h"

namespace wattledger::eventlog {
class EventLog;
}

namespace wattledger::metrics {

// The registry every metric of this process is registered in. Thread-safe.
prometheus::Registry& Registry();

// Kernel metric families, created once per process.
struct Kernel {
  prometheus::Family<prometheus::Counter>& events_appended;      // {log}
  prometheus::Family<prometheus::Histogram>& commit_batch;       // {log} events per commit
  prometheus::Family<prometheus::Histogram>& commit_latency;     // {log} seconds
  prometheus::Family<prometheus::Gauge>& consumer_lag;           // {topic, consumer}
  prometheus::Family<prometheus::Gauge>& relay_backlog;          // {topic}
  prometheus::Family<prometheus::Gauge>& queue_depth;            // {service}
  prometheus::Family<prometheus::Counter>& internal_errors;      // {where}
  prometheus::Family<prometheus::Counter>& rejected_inputs;      // {where}
};
Kernel& KernelMetrics();

// Wires a log's commit observer to the kernel metrics.
void InstrumentLog(eventlog::EventLog* log);

// HttpServer serves GET /metrics (Prometheus text), /healthz (alive) and /readyz (ready once
// set_ready(true)). One thread, one connection at a time: scrapes and probes are tiny.
class HttpServer {
 public:
  // addr is "host:port"; port 0 picks a free port (see port()).
  static Result<std::unique_ptr<HttpServer>> Start(const std::string& addr);
  ~HttpServer();
  int port() const { return port_; }
  void set_ready(bool ready) { ready_ = ready; }
  void Stop();

 private:
  HttpServer() = default;
  void Serve();
  int listen_fd_ = -1;
  int wake_fd_[2] = {-1, -1};
  int port_ = 0;
  std::atomic<bool> ready_{false};
  std::thread thread_;
};

// Splits "host:port" into its parts; errors say what form is expected.
Result<std::pair<std::string, int>> ParseHostPort(const std::string& addr);

}  // namespace wattledger::metrics

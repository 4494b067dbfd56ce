// What every wattledger server process shares: its flags (with WL_* environment fallbacks), the
// gRPC server with health checking, reflection and the Admin service, the /metrics HTTP server,
// and an orderly stop on SIGTERM or SIGINT: stop taking requests, drain the writers, stop the bus.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "wattledger/base/status.h"
#include "wattledger/bus/bus.h"
#include "wattledger/eventlog/event_log.h"

namespace CLI {
class App;
}

namespace wattledger::server {

inline constexpr char kVersion[] = "0.1.0";

struct ServerFlags {
  std::string data_dir = "data";
  std::string grpc_addr = "127.0.0.1:7400";
  std::string http_addr = "127.0.0.1:9464";
  std::string kafka_brokers;  // Empty: the embedded local bus.
  uint32_t partitions = 4;
  std::string fsync = "commit";
  std::string log_level = "info";
};
void AddServerFlags(CLI::App* app, ServerFlags* flags);
// Checks values CLI11 cannot: fsync policy, log level, addresses.
Status ValidateServerFlags(const ServerFlags& flags);
Result<eventlog::FsyncPolicy> ParseFsync(const std::string& name);

// The one conversion from our Status to grpc::Status (codes are equal by construction).
grpc::Status ToGrpc(const Status& status);

// A service hosted by a server process.
class Service {
 public:
  virtual ~Service() = default;
  virtual std::string name() const = 0;
  virtual eventlog::EventLog* log() = 0;
  // Adds the service's gRPC API to the builder; the service must outlive the server.
  virtual void Register(grpc::ServerBuilder& builder) = 0;
  // Publishes the service's log on the bus. Every service of a process publishes before any
  // starts, so that start order does not matter to subscriptions.
  virtual Status Publish(bus::Bus* bus) = 0;
  // Starts its processor and subscriptions.
  virtual Status Start(bus::Bus* bus) = 0;
  // Drains and stops the processor. Called after the gRPC server stopped taking requests.
  virtual void Stop() = 0;
};

// Opens (creating as needed) the event log of service `name` under flags.data_dir/name.
Result<std::unique_ptr<eventlog::EventLog>> OpenServiceLog(const ServerFlags& flags, const std::string& name);

// Builds the bus the flags ask for.
Result<std::unique_ptr<bus::Bus>> MakeBus(const ServerFlags& flags);

// Runs the services until SIGTERM/SIGINT, then stops them cleanly.
// `on_ready` runs once everything listens (the bound ports are in the log line "ready").
Status Run(const ServerFlags& flags, bus::Bus* bus, const std::vector<Service*>& services,
           const std::function<void()>& on_ready = nullptr);

// Blocks SIGTERM/SIGINT in the calling thread (call first in main, before any thread starts) so
// that Run() can wait for them synchronously.
void BlockShutdownSignals();
// Waits for SIGTERM or SIGINT (blocked by BlockShutdownSignals) and returns its name.
std::string WaitForShutdownSignal();

}  // namespace wattledger::server

#include "wattledger/server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <filesystem>
#include <thread>

#include "wattledger/admin/v1/admin.grpc.pb.h"
#include "wattledger/base/log.h"
#include "wattledger/metrics/metrics.h"

namespace wattledger::server {
namespace {

class AdminService final : public admin::v1::Admin::Service {
 public:
  AdminService(const std::vector<server::Service*>& services, std::string bus) : services_(services), bus_(std::move(bus)) {}

  grpc::Status VerifyLog(grpc::ServerContext*, const admin::v1::VerifyLogRequest*,
                         admin::v1::VerifyLogResponse* resp) override {
    try {
      // One process may host several services; verify each and report the first problem.
      resp->set_ok(true);
      for (auto* s : services_) {
        auto report = s->log()->Verify();
        if (!report.ok()) return ToGrpc(report.status());
        auto digest = s->log()->StateDigest();
        if (!digest.ok()) return ToGrpc(digest.status());
        resp->set_events_checked(resp->events_checked() + report->events_checked);
        if (!resp->log().empty()) resp->set_log(resp->log() + ",");
        resp->set_log(resp->log() + s->log()->name());
        if (services_.size() == 1) {
          for (auto h : report->heads) resp->add_heads(h);
          resp->set_state_digest(*digest);
        }
        if (!report->ok && resp->ok()) {
          resp->set_ok(false);
          resp->set_problem(s->log()->name() + ": " + report->problem);
        }
      }
      return grpc::Status::OK;
    } catch (const std::exception& e) {
      return grpc::Status(grpc::StatusCode::INTERNAL, e.what());
    }
  }

  grpc::Status GetStatus(grpc::ServerContext*, const admin::v1::GetStatusRequest*,
                         admin::v1::GetStatusResponse* resp) override {
    resp->set_version(kVersion);
    resp->set_bus(bus_);
    for (auto* s : services_) {
      auto* st = resp->add_services();
      st->set_name(s->name());
      st->set_log(s->log()->name());
      st->set_partitions(s->log()->partitions());
      uint64_t events = 0;
      for (uint32_t p = 0; p < s->log()->partitions(); ++p) events += s->log()->Head(p);
      st->set_events(events);
    }
    return grpc::Status::OK;
  }

 private:
  std::vector<server::Service*> services_;
  std::string bus_;
};

}  // namespace

void AddServerFlags(CLI::App* app, ServerFlags* f) {
  app->add_option("--data-dir", f->data_dir, "Directory for the services' RocksDB event logs")
      ->envname("WL_DATA_DIR")->capture_default_str();
  app->add_option("--grpc-addr", f->grpc_addr, "host:port of the gRPC API (port 0 picks a free one)")
      ->envname("WL_GRPC_ADDR")->capture_default_str();
  app->add_option("--http-addr", f->http_addr, "host:port of /metrics, /healthz, /readyz")
      ->envname("WL_HTTP_ADDR")->capture_default_str();
  app->add_option("--kafka-brokers", f->kafka_brokers, "Kafka bootstrap servers; empty runs on the embedded local bus")
      ->envname("WL_KAFKA_BROKERS");
  app->add_option("--partitions", f->partitions, "Partitions of a new event log (fixed once created)")
      ->envname("WL_PARTITIONS")->check(CLI::Range(1, 256))->capture_default_str();
  app->add_option("--fsync", f->fsync, "commit: fsync the WAL before acknowledging (survives power loss); "
                                       "none: survives a process crash only")
      ->envname("WL_FSYNC")->check(CLI::IsMember({"commit", "none"}))->capture_default_str();
  app->add_option("--log-level", f->log_level, "debug, info, warn or error")
      ->envname("WL_LOG_LEVEL")->check(CLI::IsMember({"debug", "info", "warn", "error"}))->capture_default_str();
}

Result<eventlog::FsyncPolicy> ParseFsync(const std::string& name) {
  if (name == "commit") return eventlog::FsyncPolicy::kEveryCommit;
  if (name == "none") return eventlog::FsyncPolicy::kNone;
  return InvalidArgument("--fsync must be commit or none, got '" + name + "'");
}

Status ValidateServerFlags(const ServerFlags& f) {
  WL_RETURN_IF_ERROR(ParseFsync(f.fsync).status());
  log::Level level;
  if (!log::ParseLevel(f.log_level, &level)) return InvalidArgument("--log-level must be debug, info, warn or error");
  log::SetMinLevel(level);
  WL_RETURN_IF_ERROR(metrics::ParseHostPort(f.grpc_addr).status());
  WL_RETURN_IF_ERROR(metrics::ParseHostPort(f.http_addr).status());
  if (f.data_dir.empty()) return InvalidArgument("--data-dir is empty");
  return Status::Ok();
}

grpc::Status ToGrpc(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), status.message());
}

Result<std::unique_ptr<eventlog::EventLog>> OpenServiceLog(const ServerFlags& flags, const std::string& name) {
  std::error_code ec;
  std::filesystem::create_directories(flags.data_dir, ec);
  if (ec) return Unavailable("cannot create --data-dir " + flags.data_dir + ": " + ec.message());
  eventlog::Options o;
  o.path = flags.data_dir + "/" + name;
  o.name = name;
  o.partitions = flags.partitions;
  WL_ASSIGN_OR_RETURN(o.fsync, ParseFsync(flags.fsync));
  WL_ASSIGN_OR_RETURN(auto log, eventlog::EventLog::Open(o));
  metrics::InstrumentLog(log.get());
  return log;
}

Result<std::unique_ptr<bus::Bus>> MakeBus(const ServerFlags& flags) {
  if (flags.kafka_brokers.empty()) return bus::NewLocalBus();
  bus::KafkaOptions k;
  k.brokers = flags.kafka_brokers;
  return bus::NewKafkaBus(k);
}

void BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

std::string WaitForShutdownSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  return sig == SIGINT ? "SIGINT" : "SIGTERM";
}


Status Run(const ServerFlags& flags, bus::Bus* bus, const std::vector<Service*>& services,
           const std::function<void()>& on_ready) {
  WL_ASSIGN_OR_RETURN(auto http, metrics::HttpServer::Start(flags.http_addr));
  // Publishing starts relay threads that read the services' logs: on every way out of here the
  // services that started are stopped and the bus is stopped before the logs can be destroyed.
  std::vector<Service*> started;
  struct Cleanup {
    std::vector<Service*>& started;
    bus::Bus* bus;
    ~Cleanup() {
      for (auto it = started.rbegin(); it != started.rend(); ++it) (*it)->Stop();
      bus->Stop();
      log::Info("stopped", {});
    }
  } cleanup{started, bus};
  for (auto* s : services) {
    Status published = s->Publish(bus);
    if (!published.ok()) return Status(published.code(), s->name() + ": " + published.message());
  }
  for (auto* s : services) {
    Status ok = s->Start(bus);
    if (!ok.ok()) return Status(ok.code(), s->name() + ": " + ok.message());
    started.push_back(s);
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(flags.grpc_addr, grpc::InsecureServerCredentials(), &grpc_port);
  AdminService admin(services, bus->kind());
  builder.RegisterService(&admin);
  for (auto* s : services) s->Register(builder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || grpc_port == 0) {
    return Unavailable("cannot listen on --grpc-addr " + flags.grpc_addr +
                       " (is another process using it? pass --grpc-addr 127.0.0.1:0)");
  }
  http->set_ready(true);
  std::string names;
  for (auto* s : services) names += (names.empty() ? "" : ",") + s->name();
  std::string host = flags.grpc_addr.substr(0, flags.grpc_addr.rfind(':'));
  std::string http_host = flags.http_addr.substr(0, flags.http_addr.rfind(':'));
  log::Info("ready", {{"services", names},
                      {"bus", bus->kind()},
                      {"grpc", host + ":" + std::to_string(grpc_port)},
                      {"http", http_host + ":" + std::to_string(http->port())},
                      {"data_dir", flags.data_dir}});
  if (on_ready) on_ready();

  log::Info("stopping", {{"signal", WaitForShutdownSignal()}});
  http->set_ready(false);
  // Stop taking requests; in-flight ones finish within the deadline.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  http->Stop();
  // Cleanup stops the services, then the bus (whose relays flush and persist their positions).
  return Status::Ok();
}

}  // namespace wattledger::server

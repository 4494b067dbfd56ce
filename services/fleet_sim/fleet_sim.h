// FleetSim: the simulated fleet of `wattledger dev`, so that a newcomer sees charges, warnings,
// cut-offs and restores within a minute of `make run`.
//
// It opens a number of tenant accounts (one meter each) through the ledger's API, then every
// tick lets each tenant use a random amount of energy and publishes the rated usage on the
// `billing` topic, exactly as the billing service will (UsageCharged, key = account id), at a
// flat simulated price. Tenants whose supply was cut pay again after a while. Its own event log
// ("fleet-sim") is what it publishes, so its output is replayable like any service's.
//
// Until the ingest and billing services exist this is the only producer of usage in dev; when
// they land, the simulator will feed meter frames to ingest instead.
#pragma once

#include <atomic>
#include <memory>
#include <random>
#include <thread>

#include "wattledger/ledger/v1/ledger.grpc.pb.h"
#include "wattledger/server/server.h"

namespace wattledger::fleet_sim {

struct FleetSimOptions {
  int accounts = 40;
  int tick_ms = 1000;
  uint64_t seed = 42;
  int64_t price_minor_per_kwh = 6000;  // 0.60 yuan/kWh.
};

class FleetSim final : public server::Service {
 public:
  FleetSim(std::unique_ptr<eventlog::EventLog> log, FleetSimOptions options,
           ledger::v1::LedgerService::Service* ledger);
  ~FleetSim() override;

  std::string name() const override { return "fleet-sim"; }
  eventlog::EventLog* log() override { return log_.get(); }
  void Register(grpc::ServerBuilder&) override {}
  Status Publish(bus::Bus* bus) override;
  Status Start(bus::Bus* bus) override;
  void Stop() override;

 private:
  void Run();
  Status OpenAccounts();
  Status Tick(int64_t tick);
  void PayWhenCut(int64_t tick);

  std::unique_ptr<eventlog::EventLog> log_;
  const FleetSimOptions options_;
  ledger::v1::LedgerService::Service* ledger_;
  std::mt19937_64 rng_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::string run_id_;
};

}  // namespace wattledger::fleet_sim

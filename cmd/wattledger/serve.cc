// `wattledger dev` (every service, one process, local bus, simulated fleet) and
// `wattledger <service>` (one service; on Kafka when --kafka-brokers is given).
#include <iostream>

#include "cmd/wattledger/commands.h"
#include "services/fleet_sim/fleet_sim.h"
#include "services/registry.h"
#include "wattledger/base/log.h"

namespace wattledger::cmd {
namespace {

using Maker = std::function<Result<std::unique_ptr<server::Service>>(const server::ServerFlags&)>;

// Builds services that need others of the same process (the dev fleet simulator).
using Extra = std::function<Result<std::unique_ptr<server::Service>>(const server::ServerFlags&,
                                                                      const std::vector<server::Service*>&)>;

int Serve(const server::ServerFlags& flags, const std::vector<Maker>& makers, const Extra& extra = nullptr) {
  if (Status s = server::ValidateServerFlags(flags); !s.ok()) {
    std::cerr << "wattledger: " << s.message() << "\n";
    return 2;
  }
  auto bus = server::MakeBus(flags);
  if (!bus.ok()) {
    std::cerr << "wattledger: " << bus.status().message() << "\n";
    return 2;
  }
  std::vector<std::unique_ptr<server::Service>> owned;
  std::vector<server::Service*> services;
  for (const auto& make : makers) {
    auto s = make(flags);
    if (!s.ok()) {
      std::cerr << "wattledger: " << s.status().ToString() << "\n";
      return 1;
    }
    services.push_back(s->get());
    owned.push_back(std::move(s).value());
  }
  if (extra) {
    auto e = extra(flags, services);
    if (!e.ok()) {
      std::cerr << "wattledger: " << e.status().ToString() << "\n";
      return 1;
    }
    if (*e) {
      services.push_back(e->get());
      owned.push_back(std::move(e).value());
    }
  }
  Status s = server::Run(flags, bus->get(), services);
  if (!s.ok()) {
    log::Error("server failed", {{"error", s.ToString()}});
    std::cerr << "wattledger: " << s.ToString() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

void AddDev(CLI::App& root, std::function<int()>* run) {
  auto* app = root.add_subcommand("dev", "Run every service in one process on the embedded local bus");
  auto flags = std::make_shared<server::ServerFlags>();
  flags->data_dir = "data/dev";
  server::AddServerFlags(app, flags.get());
  auto makers = std::make_shared<std::vector<Maker>>();
  for (const auto& f : services::Registry()) makers->push_back(f.add_flags(app));
  auto sim = std::make_shared<fleet_sim::FleetSimOptions>();
  auto no_sim = std::make_shared<bool>(false);
  app->add_option("--sim-accounts", sim->accounts, "Tenants of the simulated fleet")
      ->check(CLI::Range(1, 100000))->capture_default_str();
  app->add_option("--sim-tick-ms", sim->tick_ms, "Milliseconds between simulated usage rounds (one simulated hour each)")
      ->check(CLI::Range(10, 3600000))->capture_default_str();
  app->add_option("--sim-seed", sim->seed, "Seed of the simulated fleet")->capture_default_str();
  app->add_flag("--no-sim", *no_sim, "Run without the simulated fleet");
  app->callback([=] {
    *run = [=] {
      if (!flags->kafka_brokers.empty()) {
        std::cerr << "wattledger dev: runs on the local bus; drop --kafka-brokers or run each service on its own\n";
        return 2;
      }
      Extra extra = [=](const server::ServerFlags& f, const std::vector<server::Service*>& services)
          -> Result<std::unique_ptr<server::Service>> {
        if (*no_sim) return std::unique_ptr<server::Service>();
        ledger::v1::LedgerService::Service* ledger = nullptr;
        for (auto* s : services) {
          if (s->name() == "ledger") ledger = dynamic_cast<ledger::v1::LedgerService::Service*>(s);
        }
        WL_ASSIGN_OR_RETURN(auto log, server::OpenServiceLog(f, "fleet-sim"));
        return std::unique_ptr<server::Service>(new fleet_sim::FleetSim(std::move(log), *sim, ledger));
      };
      return Serve(*flags, *makers, extra);
    };
  });
}

void AddServices(CLI::App& root, std::function<int()>* run) {
  for (const auto& f : services::Registry()) {
    auto* app = root.add_subcommand(f.name, f.description);
    auto flags = std::make_shared<server::ServerFlags>();
    flags->data_dir = "data/" + f.name;
    server::AddServerFlags(app, flags.get());
    auto maker = f.add_flags(app);
    if (f.add_tools) f.add_tools(app, run);
    app->callback([=] {
      if (*run) return;  // A tool subcommand was chosen.
      *run = [=] { return Serve(*flags, {maker}); };
    });
  }
}

}  // namespace wattledger::cmd

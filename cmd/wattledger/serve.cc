// `wattledger dev` (every service, one process, local bus, simulated fleet) and
// `wattledger <service>` (one service; on Kafka when --kafka-brokers is given).
#include <iostream>

#include "cmd/wattledger/commands.h"
#include "services/registry.h"
#include "wattledger/base/log.h"

namespace wattledger::cmd {
namespace {

using Maker = std::function<Result<std::unique_ptr<server::Service>>(const server::ServerFlags&)>;

int Serve(const server::ServerFlags& flags, const std::vector<Maker>& makers) {
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
  app->callback([=] {
    *run = [=] {
      if (!flags->kafka_brokers.empty()) {
        std::cerr << "wattledger dev: runs on the local bus; drop --kafka-brokers or run each service on its own\n";
        return 2;
      }
      return Serve(*flags, *makers);
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

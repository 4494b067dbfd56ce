// billing_feeder: publishes UsageCharged events on Kafka topic `billing` the way the billing
// service will: from its own event log, through the Kafka bus's outbox relay. Exits once the
// relay has confirmed everything. Test helper.
//
//   billing_feeder --brokers B --dir D CHARGE_ID:ACCOUNT:AMOUNT_MINOR:ENERGY_WH ...
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "wattledger/billing/v1/events.pb.h"
#include "wattledger/bus/bus.h"
#include "wattledger/runtime/processor.h"

using namespace wattledger;

int main(int argc, char** argv) {
  std::string brokers, dir;
  std::vector<std::string> charges;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--brokers" && i + 1 < argc) brokers = argv[++i];
    else if (a == "--dir" && i + 1 < argc) dir = argv[++i];
    else charges.push_back(a);
  }
  if (brokers.empty() || dir.empty()) {
    std::fprintf(stderr, "usage: billing_feeder --brokers B --dir D ID:ACCOUNT:AMOUNT_MINOR:WH...\n");
    return 2;
  }
  eventlog::Options o;
  o.path = dir;
  o.name = "billing";
  o.partitions = 4;
  auto log = eventlog::EventLog::Open(o);
  if (!log.ok()) {
    std::fprintf(stderr, "%s\n", log.status().ToString().c_str());
    return 1;
  }
  bus::KafkaOptions k;
  k.brokers = brokers;
  k.properties = {{"log_level", "3"}};
  auto bus = bus::NewKafkaBus(k);
  if (!bus.ok() || !(*bus)->Publish("billing", log->get()).ok()) return 1;
  eventlog::WriteSet ws;
  for (const auto& c : charges) {
    size_t a = c.find(':'), b = c.find(':', a + 1), d = c.find(':', b + 1);
    if (a == std::string::npos || b == std::string::npos || d == std::string::npos) {
      std::fprintf(stderr, "bad charge '%s'\n", c.c_str());
      return 2;
    }
    billing::v1::UsageCharged u;
    u.set_charge_id(c.substr(0, a));
    u.set_account_id(c.substr(a + 1, b - a - 1));
    u.set_amount_minor(std::stoll(c.substr(b + 1, d - b - 1)));
    u.set_energy_wh(std::stoll(c.substr(d + 1)));
    u.set_meter_id("M-" + u.account_id());
    u.set_reading_id("R-" + u.charge_id());
    u.set_tariff_id("flat");
    u.set_tariff_version(1);
    eventlog::NewEvent e;
    e.partition = runtime::PartitionForKey(u.account_id(), 4);
    e.aggregate_key = u.account_id();
    e.type = billing::v1::UsageCharged::descriptor()->full_name();
    e.payload = u.SerializeAsString();
    e.actor = "billing_feeder";
    e.causation.set_request_id(u.charge_id());
    ws.Append(std::move(e));
  }
  if (!(*log)->Commit(std::move(ws)).ok()) return 1;
  for (int i = 0; i < 600; ++i) {
    if ((*bus)->relay_stats("billing").backlog == 0 && i > 2) {
      (*bus)->Stop();
      std::printf("done\n");
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::fprintf(stderr, "relay did not confirm in 60 s\n");
  return 1;
}

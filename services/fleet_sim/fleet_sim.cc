#include "services/fleet_sim/fleet_sim.h"

#include <condition_variable>

#include "wattledger/base/log.h"
#include "wattledger/billing/v1/events.pb.h"
#include "wattledger/runtime/processor.h"

namespace wattledger::fleet_sim {
namespace {

std::string AccountId(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "SIM-A%03d", i);
  return buf;
}

std::string MeterId(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "SIM-M%03d", i);
  return buf;
}

}  // namespace

FleetSim::FleetSim(std::unique_ptr<eventlog::EventLog> log, FleetSimOptions options,
                   ledger::v1::LedgerService::Service* ledger)
    : log_(std::move(log)), options_(options), ledger_(ledger), rng_(options.seed) {}

FleetSim::~FleetSim() { Stop(); }

Status FleetSim::Publish(bus::Bus* bus) { return bus->Publish("billing", log_.get()); }

Status FleetSim::Start(bus::Bus*) {
  if (ledger_ == nullptr) return FailedPrecondition("the fleet simulator needs the ledger in the same process");
  // Charge ids must never repeat across runs on the same data dir.
  run_id_ = std::to_string(SystemClock::Default()->NowMicros());
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void FleetSim::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

Status FleetSim::OpenAccounts() {
  std::uniform_int_distribution<int> opening(15, 45);
  for (int i = 0; i < options_.accounts; ++i) {
    ledger::v1::OpenAccountRequest open;
    open.set_operator_id("fleet-sim");
    open.set_account_id(AccountId(i));
    open.set_customer_name("模拟租户 " + std::to_string(i));
    open.add_phones("1380000" + std::to_string(1000 + i));
    open.set_room("B1-" + std::to_string(100 + i));
    open.add_meters(MeterId(i));
    open.set_tariff_id("flat-0.60");
    open.set_mode(ledger::v1::MODE_PREPAID);
    open.set_credit_limit_minor(5 * 10'000);
    open.set_alarm1_minor(20 * 10'000);
    open.set_alarm2_minor(10 * 10'000);
    open.set_hoarding_cap_minor(5000 * 10'000);
    ledger::v1::MutationResponse resp;
    grpc::Status s = ledger_->OpenAccount(nullptr, &open, &resp);
    if (s.error_code() == grpc::StatusCode::ALREADY_EXISTS || s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      continue;  // Opened by an earlier run on this data dir.
    }
    if (!s.ok()) return Status(static_cast<StatusCode>(s.error_code()), s.error_message());
    ledger::v1::TopUpRequest topup;
    topup.set_operator_id("fleet-sim");
    topup.set_account_id(AccountId(i));
    topup.set_idempotency_key("fleet-sim-opening-" + AccountId(i));
    topup.set_amount_minor(int64_t{opening(rng_)} * 10'000);
    topup.set_method(ledger::v1::PAYMENT_METHOD_WECHAT);
    s = ledger_->TopUp(nullptr, &topup, &resp);
    if (!s.ok()) return Status(static_cast<StatusCode>(s.error_code()), s.error_message());
  }
  log::Info("fleet simulator opened accounts", {{"accounts", std::to_string(options_.accounts)}});
  return Status::Ok();
}

Status FleetSim::Tick(int64_t tick) {
  // One simulated hour per tick: 0.3 to 3 kWh per tenant.
  std::uniform_int_distribution<int64_t> energy(300, 3000);
  eventlog::WriteSet ws;
  const int64_t now = SystemClock::Default()->NowMicros();
  for (int i = 0; i < options_.accounts; ++i) {
    billing::v1::UsageCharged u;
    const int64_t wh = energy(rng_);
    u.set_charge_id("fleet-sim/" + run_id_ + "/" + std::to_string(tick) + "/" + AccountId(i));
    u.set_account_id(AccountId(i));
    u.set_energy_wh(wh);
    // Rounded once, to the minor unit, from an exact integer product.
    u.set_amount_minor((wh * options_.price_minor_per_kwh + 500) / 1000);
    u.set_meter_id(MeterId(i));
    u.set_reading_id(MeterId(i) + "/sim/" + std::to_string(tick));
    u.set_tariff_id("flat-0.60");
    u.set_tariff_version(1);
    u.set_occurred_at_us(now);
    eventlog::NewEvent e;
    e.partition = runtime::PartitionForKey(u.account_id(), log_->partitions());
    e.aggregate_key = u.account_id();
    e.type = billing::v1::UsageCharged::descriptor()->full_name();
    e.payload = u.SerializeAsString();
    e.actor = "fleet-sim";
    e.occurred_at_us = now;
    e.causation.set_request_id("fleet-sim/" + run_id_ + "/" + std::to_string(tick));
    ws.Append(std::move(e));
  }
  return log_->Commit(std::move(ws)).status();
}

void FleetSim::PayWhenCut(int64_t tick) {
  std::bernoulli_distribution pays(0.3);
  for (int i = 0; i < options_.accounts; ++i) {
    ledger::v1::GetAccountRequest req;
    req.set_account_id(AccountId(i));
    ledger::v1::Account a;
    if (!ledger_->GetAccount(nullptr, &req, &a).ok() || !a.supply_cut() || !pays(rng_)) continue;
    ledger::v1::TopUpRequest topup;
    topup.set_operator_id("fleet-sim");
    topup.set_account_id(AccountId(i));
    topup.set_idempotency_key("fleet-sim/" + run_id_ + "/pay/" + std::to_string(tick) + "/" + AccountId(i));
    topup.set_amount_minor(50 * 10'000);
    topup.set_method(ledger::v1::PAYMENT_METHOD_ALIPAY);
    ledger::v1::MutationResponse resp;
    grpc::Status s = ledger_->TopUp(nullptr, &topup, &resp);
    if (!s.ok()) log::Warn("simulated payment failed", {{"account", AccountId(i)}, {"error", s.error_message()}});
  }
}

void FleetSim::Run() {
  if (Status s = OpenAccounts(); !s.ok()) {
    log::Error("fleet simulator cannot open its accounts; it stops", {{"error", s.ToString()}});
    return;
  }
  for (int64_t tick = 1; !stop_; ++tick) {
    if (Status s = Tick(tick); !s.ok()) log::Error("fleet simulator tick failed", {{"error", s.ToString()}});
    if (tick % 5 == 0) PayWhenCut(tick);
    for (int waited = 0; waited < options_.tick_ms && !stop_; waited += 50) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

}  // namespace wattledger::fleet_sim

#include "services/ledger/app.h"

#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "services/ledger/adapters/ledger_service.h"
#include "wattledger/money/money.h"

namespace wattledger::ledger {
namespace {

struct LedgerFlags {
  std::string default_credit_limit = "0";
  std::string default_alarm1 = "20";
  std::string default_alarm2 = "10";
  std::string default_hoarding_cap = "0";
  size_t view_postings_per_write = adapters::LedgerOptions().view_postings_per_write;
  int64_t view_max_age_ms = adapters::LedgerOptions().view_max_age.count();
  bool no_checkpoints = false;
};

Result<LedgerConfig> ToConfig(const LedgerFlags& f) {
  LedgerConfig c;
  auto parse = [](const std::string& flag, const std::string& v) -> Result<int64_t> {
    auto minor = money::ParseYuan(v);
    if (!minor.ok()) return InvalidArgument("--" + flag + ": " + minor.status().message());
    if (*minor < 0) return InvalidArgument("--" + flag + " must not be negative, got " + v);
    return *minor;
  };
  WL_ASSIGN_OR_RETURN(c.default_credit_limit_minor, parse("default-credit-limit", f.default_credit_limit));
  WL_ASSIGN_OR_RETURN(c.default_alarm1_minor, parse("default-alarm1", f.default_alarm1));
  WL_ASSIGN_OR_RETURN(c.default_alarm2_minor, parse("default-alarm2", f.default_alarm2));
  WL_ASSIGN_OR_RETURN(c.default_hoarding_cap_minor, parse("default-hoarding-cap", f.default_hoarding_cap));
  if (c.default_alarm2_minor > c.default_alarm1_minor) {
    return InvalidArgument("--default-alarm2 must not be above --default-alarm1");
  }
  return c;
}

// Rebuilds every partition of a ledger log into a fresh store and compares the state digests
// (adapters::ReplayViews), and verifies the hash chain.
int Replay(const std::string& data_dir, bool verify, bool json) {
  eventlog::Options o;
  o.path = data_dir + "/ledger";
  o.partitions = 0;
  o.read_only = true;
  auto live = eventlog::EventLog::Open(o);
  if (!live.ok()) {
    std::cerr << "wattledger ledger replay: " << live.status().message()
              << " (pass the --data-dir the ledger runs with)\n";
    return 2;
  }
  std::string tmp = std::filesystem::temp_directory_path() / ("wattledger-replay-" + std::to_string(::getpid()));
  std::filesystem::remove_all(tmp);
  eventlog::Options fo;
  fo.path = tmp;
  fo.name = "ledger";
  fo.partitions = (*live)->partitions();
  fo.fsync = eventlog::FsyncPolicy::kNone;
  auto fresh = eventlog::EventLog::Open(fo);
  if (!fresh.ok()) {
    std::cerr << "wattledger ledger replay: " << fresh.status().ToString() << "\n";
    return 1;
  }
  nlohmann::json out;
  auto start = std::chrono::steady_clock::now();
  auto replayed = adapters::ReplayViews(**live, fresh->get());
  if (!replayed.ok()) {
    std::filesystem::remove_all(tmp);
    std::cerr << "wattledger ledger replay: " << replayed.status().ToString() << "\n";
    return 1;
  }
  auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  auto chain = (*live)->Verify();
  std::filesystem::remove_all(tmp);
  if (!chain.ok()) {
    std::cerr << "wattledger ledger replay: cannot verify the chain: " << chain.status().ToString() << "\n";
    return 1;
  }
  // Each partition's checkpoint against a fold of the log up to it.
  std::vector<adapters::CheckpointCheck> checkpoints;
  bool checkpoints_equal = true;
  for (uint32_t p = 0; verify && p < (*live)->partitions(); ++p) {  // A second fold: with --verify only.
    auto check = adapters::VerifyCheckpoint(**live, adapters::CheckpointDirIn(data_dir), p);
    if (check.checked && !check.equal) checkpoints_equal = false;
    if (check.present) checkpoints.push_back(std::move(check));
  }
  const bool equal = replayed->replayed_digest == replayed->live_digest;
  out["accounts"] = replayed->accounts;
  out["events"] = chain->events_checked;
  out["replay_ms"] = elapsed_ms;
  out["live_digest"] = replayed->live_digest;
  out["replayed_digest"] = replayed->replayed_digest;
  out["view_heads"] = replayed->view_heads;
  out["view_lows"] = replayed->view_lows;
  out["heads"] = chain->heads;
  out["digests_equal"] = equal;
  out["checkpoints"] = nlohmann::json::array();
  for (const auto& c : checkpoints) {
    nlohmann::json j = {{"partition", c.partition}, {"checked", c.checked}, {"equal", c.equal}};
    if (c.checked) j["seq"] = c.seq;
    if (!c.note.empty()) j["note"] = c.note;
    out["checkpoints"].push_back(j);
  }
  out["checkpoints_equal"] = checkpoints_equal;
  out["chain_ok"] = chain->ok;
  if (!chain->ok) out["chain_problem"] = chain->problem;
  if (json) {
    std::cout << out.dump() << "\n";
  } else {
    std::cout << "events      " << chain->events_checked << " (chain " << (chain->ok ? "ok" : "BROKEN: " + chain->problem) << ")\n"
              << "accounts    " << replayed->accounts << "\n"
              << "system at   " << out["view_heads"].dump() << " (each partition's; accounts at their own)\n"
              << "live        " << replayed->live_digest << "\n"
              << "replayed    " << replayed->replayed_digest << "\n"
              << (equal ? "replay equals live\n" : "REPLAY DIFFERS FROM LIVE\n");
    for (const auto& c : checkpoints) {
      std::cout << "checkpoint  partition " << c.partition << ": ";
      if (!c.checked) std::cout << "not checked: " << c.note << "\n";
      else if (c.equal) std::cout << "at event " << c.seq << ", equals the fold of the log up to it\n";
      else std::cout << "DIFFERS: " << c.note << "\n";
    }
  }
  if (!verify) return 0;
  return equal && chain->ok && checkpoints_equal ? 0 : 1;
}

}  // namespace

services::ServiceFactory LedgerFactory() {
  services::ServiceFactory f;
  f.name = "ledger";
  f.description = "Run the balance ledger: accounts, top-ups, refunds, reversals, charges, levels";
  f.add_flags = [](CLI::App* app) {
    auto flags = std::make_shared<LedgerFlags>();
    app->add_option("--default-credit-limit", flags->default_credit_limit,
                    "Yuan an account may go below zero before cut-off, when opened without one")
        ->envname("WL_LEDGER_DEFAULT_CREDIT_LIMIT")->capture_default_str();
    app->add_option("--default-alarm1", flags->default_alarm1, "Default alarm level 1, yuan")
        ->envname("WL_LEDGER_DEFAULT_ALARM1")->capture_default_str();
    app->add_option("--default-alarm2", flags->default_alarm2, "Default alarm level 2, yuan")
        ->envname("WL_LEDGER_DEFAULT_ALARM2")->capture_default_str();
    app->add_option("--default-hoarding-cap", flags->default_hoarding_cap, "Default hoarding cap, yuan (0: none)")
        ->envname("WL_LEDGER_DEFAULT_HOARDING_CAP")->capture_default_str();
    app->add_option("--view-postings-per-write", flags->view_postings_per_write,
                    "Each batch writes one owed account view per this many postings, oldest first")
        ->envname("WL_LEDGER_VIEW_POSTINGS_PER_WRITE")->check(CLI::Range(size_t{1}, size_t{1'000'000}))->capture_default_str();
    app->add_option("--view-max-age-ms", flags->view_max_age_ms,
                    "...and every view owed for longer than this (at most 1,024 a batch)")
        ->envname("WL_LEDGER_VIEW_MAX_AGE_MS")->check(CLI::Range(int64_t{1}, int64_t{86'400'000}))->capture_default_str();
    app->add_flag("--no-checkpoints", flags->no_checkpoints,
                  "Neither write checkpoints at a clean stop nor read them at start (DATA_DIR/ledger-checkpoints): "
                  "every start folds the whole log")
        ->envname("WL_LEDGER_NO_CHECKPOINTS");
    return [flags](const server::ServerFlags& sf) -> Result<std::unique_ptr<server::Service>> {
      WL_ASSIGN_OR_RETURN(auto config, ToConfig(*flags));
      WL_ASSIGN_OR_RETURN(auto log, server::OpenServiceLog(sf, "ledger"));
      adapters::LedgerOptions o;
      o.config = config;
      o.view_postings_per_write = flags->view_postings_per_write;
      o.view_max_age = std::chrono::milliseconds(flags->view_max_age_ms);
      if (!flags->no_checkpoints) o.checkpoint_dir = adapters::CheckpointDirIn(sf.data_dir);
      return std::unique_ptr<server::Service>(new adapters::LedgerService(std::move(log), o));
    };
  };
  f.add_tools = [](CLI::App* ledger_cmd, std::function<int()>* run) {
    auto* replay = ledger_cmd->add_subcommand("replay", "Rebuild the ledger's state from its event log and compare digests");
    auto data_dir = std::make_shared<std::string>("data/ledger");
    auto verify = std::make_shared<bool>(false);
    auto json = std::make_shared<bool>(false);
    replay->add_option("--data-dir", *data_dir, "The data directory the ledger runs with (data/dev under `make run`)")
        ->envname("WL_DATA_DIR")->capture_default_str();
    replay->add_flag("--verify", *verify, "Exit 1 unless replay equals live and the hash chain verifies");
    replay->add_flag("--json", *json, "Print one JSON object");
    replay->callback([=] { *run = [=] { return Replay(*data_dir, *verify, *json); }; });
  };
  return f;
}

}  // namespace wattledger::ledger

// ledger_bench: durable postings/s of the ledger, side by side with PostgreSQL doing the same
// postings, in one run.
//
// Ours: a LedgerService run in-process on the local bus (as in ledger_service_test), with its
// event log at FsyncPolicy::kEveryCommit (the default; --fsync none is a CPU-only diagnostic) and
// 4 partitions. Every money movement is one posting (tenant account <-> a system account):
//
//   charges  A `billing` EventLog is pre-filled with N UsageCharged events (accounts drawn
//            uniformly from --accounts opened first, or all on one account: "hot"). The ledger
//            is then started and timed until it has applied all of them, i.e. until the stored
//            consumer positions of every writer ("ledger<billing#<p>") reach billing's heads;
//            then revenue must have grown by exactly N charges. Each charge is one posting
//            tenant -> revenue (revenue is kept per ledger partition).
//   top-ups  --drivers threads keep --clients calls of LedgerService::TopUpAsync in flight (the
//            entry point under the gRPC callback server; the answer comes after the durable
//            commit), with unique idempotency keys for --seconds, closed loop. Uniform accounts,
//            or all on one account. Each is one posting cash -> tenant. Latency is the call's
//            duration.
//   paced    Top-ups at --paced-fraction (70%) of the measured uniform peak, open loop: each call
//            has a scheduled start and its latency runs from that schedule (a call issued late
//            because all its driver's slots were busy counts the wait), so p99 is honest.
//            Before it, the disk under the data dir is timed alone (16 KiB appends with
//            fdatasync): a commit cannot be faster than its fdatasync.
//
// Each run also reports the CPU the hypervisor took from this VM ("steal"): on a shared host
// that, more than any build, sets how fast a run is.
//
// PostgreSQL: loadtest/pg/pg_ledger.sh runs as a co-process (started first, so that the fork
// happens before any thread exists). It starts a private postgresql-15 cluster in a temp dir with
// the durability defaults (fsync=on, synchronous_commit=on) and, when asked, runs pgbench with
// one transaction = two balance UPDATEs (tenant, revenue shard) + one journal INSERT, uniform or
// hot (one tenant row, one revenue row). The cluster is stopped and deleted when this process
// exits, however it exits (the script's stdin closes and its trap cleans up).
//
// Rounds interleave the sides (ours uniform, PostgreSQL uniform, ours hot, PostgreSQL hot, ...)
// so that machine noise and disk latency drift hit both. Prints human-readable lines and, as the
// last line, one JSON object. A missed goal is printed as "GOAL MISSED: ..." and reported in the
// JSON as "<goal>_goal_met":false; the exit code is non-zero only when something fails.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "services/ledger/adapters/ledger_service.h"
#include "loadtest/bench_common.h"
#include "wattledger/billing/v1/events.pb.h"
#include "wattledger/bus/bus.h"
#include "wattledger/eventlog/event_log.h"
#include "wattledger/runtime/processor.h"

// jemalloc's control interface: there when the bench is linked with jemalloc, as the service
// binaries are; not in the sanitizer builds, which keep their own allocator.
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

#ifndef WL_LEDGER_BENCH_PG_SCRIPT
#define WL_LEDGER_BENCH_PG_SCRIPT "loadtest/pg/pg_ledger.sh"
#endif

namespace wattledger::ledger::adapters {
namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

constexpr double kGoalPostingsPerS = 200'000;
constexpr double kGoalRatio = 20;
constexpr double kGoalPacedP99Ms = 10;

constexpr int64_t kOpeningBalanceMinor = 100'000'000'000;  // 10 M yuan: no charge here reaches an alarm level.
constexpr int64_t kChargeMinor = 1234;
constexpr int64_t kTopUpMinor = 10'000;

struct Flags {
  int rounds = 3;
  uint32_t accounts = 10'000;
  size_t charges = 100'000;     // Per uniform charge run.
  size_t hot_charges = 30'000;  // Per hot charge run (see README: the hot account's cost grows with its history).
  double seconds = 3;           // Per top-up run (after a 0.3 s warm-up).
  int clients = 1024;  // Top-up calls in flight at once (closed loop).
  int drivers = 2;      // Threads issuing them.
  double paced_fraction = 0.7;
  double paced_rate = 0;  // If set, the paced run's offered rate instead of a fraction of the peak.
  double paced_seconds = 5;
  double disk_probe_seconds = 3;  // fdatasync latencies of the data dir's disk, before the paced run.
  uint32_t partitions = 4;
  bool fsync = true;
  bool overlap = true;  // Writers build the next batch while the last one commits.
  bool pg = true;
  double pg_seconds = 4;
  int pg_clients = 16;
  int pg_jobs = 2;
  uint32_t pg_shards = 64;
  std::string pg_script = WL_LEDGER_BENCH_PG_SCRIPT;
  std::string only;  // "charges" or "topups": run one of them (diagnostic).
  std::vector<std::string> dists = {"uniform", "hot"};
  std::string dir;
  bool keep = false;
  std::string latency_log;
};


// When a run dies, the PostgreSQL co-process sees its stdin close and removes its cluster itself.
using bench::Check;
using bench::Die;
using bench::LoadAverage;
void Check(const grpc::Status& s, const std::string& what) {
  if (!s.ok()) Die(what + ": " + s.error_message());
}


double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

// User + system CPU of the whole process (every thread, RocksDB's included).
double ProcessCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) * 1e-6; };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

// CPU time the hypervisor gave to others while this VM's vCPUs wanted it ("steal" in
// /proc/stat), summed over the vCPUs; 0 where the kernel does not report it. On a shared host this
// moves every figure: a run whose cores were stolen is slower, and so is the next build's.
double HostStealSeconds() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  if (!(stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal) || cpu != "cpu") return 0;
  return static_cast<double>(steal) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Both CPU clocks at one moment; the cores of a run are the difference of two, over its seconds.
struct CpuReading {
  double used = 0;    // ProcessCpuSeconds.
  double stolen = 0;  // HostStealSeconds.
  static CpuReading Now() { return {ProcessCpuSeconds(), HostStealSeconds()}; }
};
struct Cores {
  double used = 0;    // By this process (every thread, RocksDB's included).
  double stolen = 0;  // Taken by the hypervisor for others while this VM wanted them.
  static Cores Between(const CpuReading& a, const CpuReading& b, double seconds) {
    seconds = std::max(seconds, 1e-3);
    return {(b.used - a.used) / seconds, (b.stolen - a.stolen) / seconds};
  }
};

double Percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

std::string Thousands(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", v);
  std::string s = buf, out;
  const size_t start = (s[0] == '-') ? 1 : 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i > start && (s.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(s[i]);
  }
  return out;
}

using bench::TempDir;

std::string AccountId(uint32_t i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "A%05u", i);
  return buf;
}

// ---- What the ledger keeps in memory. ----------------------------------------------------------

// Bytes the process has allocated and not freed (jemalloc's stats.allocated); nullopt without
// jemalloc.
std::optional<double> AllocatedBytes() {
  if (mallctl == nullptr) return std::nullopt;
  uint64_t epoch = 1;
  size_t len = sizeof epoch;
  if (mallctl("epoch", &epoch, &len, &epoch, len) != 0) return std::nullopt;  // Refreshes the stats.
  size_t allocated = 0;
  len = sizeof allocated;
  if (mallctl("stats.allocated", &allocated, &len, nullptr, 0) != 0) return std::nullopt;
  return static_cast<double>(allocated);
}

struct StateFigures {
  bool measured = false;
  double bytes_per_account = 0;
  double bytes_per_charge = 0;
  double charges_per_s = 0;  // Built, decided and applied on one thread: the domain's share of a charge.
};

// The memory a partition's domain ledger holds for each account and each charge, which stays for
// as long as the process runs: the accounts, the entry txns, the charge ids kept for
// exactly-once, the txn index. As many accounts and uniform charges as the charge runs, into a
// domain Ledger alone (no log, no bus), with no other thread of this process running yet.
StateFigures MeasureState(const Flags& flags) {
  StateFigures f;
  Ledger ledger;
  const auto base = AllocatedBytes();  // The empty ledger's own maps are not any account's.
  if (!base) return f;
  uint64_t seq = 0;
  auto apply = [&](Command command) {
    auto decided = ledger.Decide(command);
    if (!decided.ok()) Die("state: " + decided.status().ToString());
    if (!decided->accepted()) Die("state: the domain refused " + decided->txn_id);
    ledger.ApplyAll(decided->events);
  };
  const int64_t now_us = SystemClock::Default()->NowMicros();
  for (uint32_t i = 0; i < flags.accounts; ++i) {
    OpenAccount open;
    open.txn_id = "ledger/0/" + std::to_string(++seq);
    open.time_us = now_us;
    open.operator_id = "ledger_bench";
    open.account_id = AccountId(i);
    open.customer_name = "tenant " + std::to_string(i);
    open.phones = {"13800000000"};
    open.meters = {"M-" + open.account_id};
    open.tariff_id = "flat-0.60";
    open.opening_balance_minor = kOpeningBalanceMinor;
    open.opening_balance_source = "bench";
    apply(std::move(open));
  }
  const auto opened = AllocatedBytes();
  std::mt19937_64 rng(7);
  std::vector<uint32_t> ticks(flags.accounts, 0);  // Each account's charges so far.
  const auto t0 = SteadyClock::now();
  for (size_t n = 0; n < flags.charges; ++n) {
    Charge charge;
    charge.txn_id = "ledger/0/" + std::to_string(++seq);
    charge.time_us = now_us;
    // Ids of the simulated fleet's shape (services/fleet_sim): the charge id is too long for
    // std::string's inline buffer and takes a heap block of its own, as in production.
    const uint32_t account = static_cast<uint32_t>(rng() % flags.accounts);
    const std::string tick = std::to_string(++ticks[account]);
    charge.account_id = AccountId(account);
    charge.charge_id = "fleet-sim/1732000000/" + tick + "/" + charge.account_id;
    charge.amount_minor = kChargeMinor;
    charge.energy_wh = 2000;
    charge.meter_id = "M-" + charge.account_id;
    charge.reading_id = charge.meter_id + "/sim/" + tick;
    charge.tariff_id = "flat-0.60";
    charge.tariff_version = 1;
    apply(std::move(charge));
  }
  const double seconds = Seconds(SteadyClock::now() - t0);
  const auto charged = AllocatedBytes();
  if (!opened || !charged) return f;
  f.measured = true;
  f.bytes_per_account = (*opened - *base) / flags.accounts;
  f.bytes_per_charge = (*charged - *opened) / static_cast<double>(flags.charges);
  f.charges_per_s = seconds > 0 ? static_cast<double>(flags.charges) / seconds : 0;
  return f;
}

// ---- The PostgreSQL side: loadtest/pg/pg_ledger.sh serve, as a co-process. -------------------

struct PgResult {
  double tps = 0;
  double txns = 0;
  double failed = 0;
  double lat_avg_ms = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  // Taken by the hypervisor while the run was asked for and answered (the script's set-up and
  // checkpoint included), on average: see HostStealSeconds. (PostgreSQL's own CPU is not ours to
  // read, so `used` stays 0.)
  Cores cores;
};

class PgSide {
 public:
  // Forks the script; call before any thread exists. Returns once the cluster is up.
  void Start(const Flags& flags, const std::string& log_path) {
    log_path_ = log_path;
    int to_child[2], from_child[2];
    if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0) Die("pipe2 failed");
    std::vector<std::string> args = {"bash",
                                     flags.pg_script,
                                     "serve",
                                     "--accounts",
                                     std::to_string(flags.accounts),
                                     "--shards",
                                     std::to_string(flags.pg_shards),
                                     "--jobs",
                                     std::to_string(flags.pg_jobs)};
    if (!flags.dir.empty()) {
      args.push_back("--dir");
      args.push_back(flags.dir);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    fflush(nullptr);
    pid_ = fork();
    if (pid_ < 0) Die("fork failed");
    if (pid_ == 0) {
      int err = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (dup2(to_child[0], 0) < 0 || dup2(from_child[1], 1) < 0 || (err >= 0 && dup2(err, 2) < 0)) _exit(127);
      execv("/bin/bash", argv.data());
      _exit(127);
    }
    close(to_child[0]);
    close(from_child[1]);
    to_ = fdopen(to_child[1], "w");
    from_ = fdopen(from_child[0], "r");
    if (to_ == nullptr || from_ == nullptr) Die("fdopen failed");
    std::string line = ReadLine();
    if (line.rfind("ready ", 0) != 0) Die("PostgreSQL side did not start: " + line + LogTail());
    version_ = Field(line, "version");
  }

  PgResult Run(const std::string& variant, double seconds, int clients, double rate) {
    const int secs = std::max(1, static_cast<int>(seconds + 0.5));
    const auto t0 = SteadyClock::now();
    const CpuReading cpu0 = CpuReading::Now();
    std::fprintf(to_, "run %s %d %d %.0f\n", variant.c_str(), secs, clients, rate);
    if (std::fflush(to_) != 0) Die("PostgreSQL side is gone" + LogTail());
    std::string line = ReadLine();
    if (line.rfind("result ", 0) != 0) Die("pgbench " + variant + " failed: " + line + LogTail());
    PgResult r;
    r.tps = std::atof(Field(line, "tps").c_str());
    r.txns = std::atof(Field(line, "txns").c_str());
    r.failed = std::atof(Field(line, "failed").c_str());
    r.lat_avg_ms = std::atof(Field(line, "lat_avg_ms").c_str());
    r.p50_ms = std::atof(Field(line, "p50_ms").c_str());
    r.p99_ms = std::atof(Field(line, "p99_ms").c_str());
    r.cores.stolen = Cores::Between(cpu0, CpuReading::Now(), Seconds(SteadyClock::now() - t0)).stolen;
    if (r.tps <= 0 || r.failed > 0) Die("pgbench " + variant + " gave no usable result: " + line + LogTail());
    return r;
  }

  // Asks the script to stop and delete its cluster, and waits for it.
  void Stop() {
    if (pid_ <= 0) return;
    std::fprintf(to_, "quit\n");
    std::fclose(to_);
    while (std::fgetc(from_) != EOF) {
    }
    std::fclose(from_);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  ~PgSide() { Stop(); }

  bool running() const { return pid_ > 0; }
  const std::string& version() const { return version_; }

 private:
  std::string ReadLine() {
    std::string line;
    int c;
    while ((c = std::fgetc(from_)) != EOF && c != '\n') line.push_back(static_cast<char>(c));
    if (line.empty() && c == EOF) return "(no answer: the script exited)";
    return line;
  }
  static std::string Field(const std::string& line, const std::string& key) {
    const std::string k = " " + key + "=";
    auto at = line.find(k);
    if (at == std::string::npos) return "";
    at += k.size();
    return line.substr(at, line.find(' ', at) - at);
  }
  std::string LogTail() const {
    std::string all;
    if (FILE* f = std::fopen(log_path_.c_str(), "r")) {
      char buf[4096];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) all.append(buf, n);
      std::fclose(f);
    }
    if (all.size() > 2000) all = all.substr(all.size() - 2000);
    return all.empty() ? "" : "\n--- " + log_path_ + " (tail) ---\n" + all;
  }

  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
  std::string log_path_;
  std::string version_;
};

// ---- Our side. -----------------------------------------------------------------------------

// Watches the ledger log's commits that append events: how many, how large, how long.
struct CommitWatch {
  std::mutex mu;
  // One entry per commit, in the order they were seen.
  std::vector<double> latencies_us;
  std::vector<double> write_us;               // The part of each in RocksDB's write.
  std::vector<uint64_t> sizes;                // Events.
  std::vector<SteadyClock::time_point> ends;  // When it was seen to end.
  void Reset() {
    std::lock_guard lock(mu);
    latencies_us.clear();
    write_us.clear();
    sizes.clear();
    ends.clear();
  }
};

// One ledger with its billing log, on a local bus, with --accounts accounts opened.
class LedgerEnv {
 public:
  LedgerEnv(const Flags& flags, std::string dir) : flags_(flags), dir_(std::move(dir)) {
    fs::create_directories(dir_);
    eventlog::Options bo;
    bo.path = dir_ + "/billing";
    bo.name = "billing";
    bo.partitions = flags_.partitions;
    bo.fsync = eventlog::FsyncPolicy::kNone;  // Billing's log is input; its durability is not measured.
    auto billing = eventlog::EventLog::Open(bo);
    Check(billing.status(), "open billing log");
    billing_ = std::move(billing).value();
    bus_ = bus::NewLocalBus();
    Check(bus_->Publish(kBillingTopic, billing_.get()), "publish billing");

    eventlog::Options lo;
    lo.path = dir_ + "/ledger";
    lo.name = kLedgerTopic;
    lo.partitions = flags_.partitions;
    lo.fsync = flags_.fsync ? eventlog::FsyncPolicy::kEveryCommit : eventlog::FsyncPolicy::kNone;
    auto ledger = eventlog::EventLog::Open(lo);
    Check(ledger.status(), "open ledger log");
    LedgerOptions options;
    options.overlap_commits = flags_.overlap;
    svc_ = std::make_unique<LedgerService>(std::move(ledger).value(), options);
    svc_->log()->SetObserver({[w = &watch_](size_t events, int64_t us, int64_t write_us) {
      if (events == 0) return;  // Positions only (a writer passing a watermark): no posting.
      std::lock_guard lock(w->mu);
      w->latencies_us.push_back(static_cast<double>(us));
      w->write_us.push_back(static_cast<double>(write_us));
      w->sizes.push_back(events);
      w->ends.push_back(SteadyClock::now());
    }});
    Check(svc_->Publish(bus_.get()), "publish ledger");
    Check(svc_->Start(bus_.get()), "start ledger");
  }

  ~LedgerEnv() {
    if (svc_) svc_->Stop();
    svc_.reset();
    if (bus_) bus_->Stop();
    bus_.reset();
    billing_.reset();
    if (flags_.keep) return;  // --keep: the ledger's RocksDB LOG and files stay for a look.
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Opens --accounts prepaid accounts (one meter each, a large opening balance) from up to 64
  // threads; returns the seconds it took.
  double OpenAccounts() {
    auto t0 = SteadyClock::now();
    const uint32_t threads = static_cast<uint32_t>(std::clamp(flags_.clients, 1, 64));
    std::vector<std::thread> pool;
    for (uint32_t t = 0; t < threads; ++t) {
      pool.emplace_back([this, t, threads] {
        for (uint32_t i = t; i < flags_.accounts; i += threads) {
          v1::OpenAccountRequest r;
          r.set_operator_id("bench");
          r.set_account_id(AccountId(i));
          r.set_customer_name("bench tenant");
          r.add_phones("13800000000");
          r.add_meters("M-" + AccountId(i));
          r.set_room("R" + std::to_string(i));
          r.set_tariff_id("T1");
          r.set_mode(v1::MODE_PREPAID);
          r.set_opening_balance_minor(kOpeningBalanceMinor);
          r.set_opening_balance_source("bench");
          v1::MutationResponse resp;
          Check(svc_->OpenAccount(nullptr, &r, &resp), "open account " + AccountId(i));
        }
      });
    }
    for (auto& th : pool) th.join();
    return Seconds(SteadyClock::now() - t0);
  }

  v1::LedgerTotalsResponse Totals() {
    v1::LedgerTotalsRequest req;
    v1::LedgerTotalsResponse resp;
    Check(svc_->GetTotals(nullptr, &req, &resp), "ledger totals");
    if (resp.total_minor() != 0) Die("the sum of all balances is " + std::to_string(resp.total_minor()) + ", not 0");
    return resp;
  }

  LedgerService* svc() { return svc_.get(); }
  const std::string& dir() const { return dir_; }
  eventlog::EventLog* billing() { return billing_.get(); }
  bus::Bus* bus() { return bus_.get(); }
  CommitWatch& watch() { return watch_; }

  // True once the ledger has applied every billing event: for each billing partition, every
  // ledger writer has stored that partition's head as its position. (A writer stores a position
  // with the effects of the messages routed to it, and the runtime's watermarks let it store
  // positions past messages routed elsewhere once it has applied its own: the lowest over the
  // writers is where a restart would resume, so it reaches the head only when all are applied.)
  bool AllConsumed() {
    for (uint32_t sp = 0; sp < billing_->partitions(); ++sp) {
      const uint64_t want = billing_->Head(sp);
      for (uint32_t p = 0; p < svc_->log()->partitions(); ++p) {
        auto pos =
            svc_->log()->GetPosition(std::string(kLedgerTopic) + "<" + kBillingTopic + "#" + std::to_string(p), sp);
        Check(pos.status(), "read consumer position");
        if ((pos->has_value() ? (*pos)->seq : 0) < want) return false;
      }
    }
    return true;
  }

 private:
  const Flags& flags_;
  std::string dir_;
  std::unique_ptr<eventlog::EventLog> billing_;
  std::unique_ptr<bus::Bus> bus_;
  std::unique_ptr<LedgerService> svc_;
  CommitWatch watch_;
};

// A commit over the latency goal holds every call of its batch (and those queued behind it)
// past the goal on its own.
constexpr double kSlowCommitUs = kGoalPacedP99Ms * 1000;

struct CommitFigures {
  uint64_t commits = 0;
  double postings_per_commit = 0;  // Ledger events per commit (one per posting here).
  double p50_us = 0, p99_us = 0, max_us = 0;
  uint64_t slow = 0;  // Commits over kSlowCommitUs.
  // The commits that ended in [begin, end]: a timed window's, without its warm-up and drain.
  static CommitFigures From(CommitWatch& w, SteadyClock::time_point begin = SteadyClock::time_point::min(),
                            SteadyClock::time_point end = SteadyClock::time_point::max()) {
    std::lock_guard lock(w.mu);
    CommitFigures f;
    std::vector<double> us;
    uint64_t events = 0;
    for (size_t i = 0; i < w.ends.size(); ++i) {
      if (w.ends[i] < begin || w.ends[i] > end) continue;
      us.push_back(w.latencies_us[i]);
      events += w.sizes[i];
      f.max_us = std::max(f.max_us, w.latencies_us[i]);
      f.slow += w.latencies_us[i] > kSlowCommitUs ? 1 : 0;
    }
    f.commits = us.size();
    f.postings_per_commit = f.commits ? static_cast<double>(events) / static_cast<double>(f.commits) : 0;
    f.p50_us = Percentile(us, 0.5);
    f.p99_us = Percentile(us, 0.99);
    return f;
  }
};

// What the disk under `dir` does while the ledger beside it is idle: `seconds` of 16 KiB appends,
// each followed by fdatasync, as a WAL commit does. A commit cannot be faster than its fdatasync;
// the probe says what the disk was doing just before a run, not what it did during it.
struct DiskProbe {
  size_t syncs = 0;
  double p50_us = 0, p99_us = 0, p999_us = 0, max_us = 0;
  uint64_t slow = 0;  // Over kSlowCommitUs.
};

DiskProbe ProbeDisk(const std::string& dir, double seconds) {
  const std::string path = dir + "/disk-probe";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) Die("open " + path + ": " + std::strerror(errno));
  const std::vector<char> block(16 << 10, 'w');
  std::vector<double> us;
  DiskProbe d;
  const auto end = SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(seconds));
  for (off_t off = 0; SteadyClock::now() < end; off += static_cast<off_t>(block.size())) {
    // Emptied every 64 MiB, untimed, so the probe never fills the disk. Every timed write makes
    // the file longer, as a WAL's does: a write over blocks already in the file needs no size
    // update at its sync and syncs faster (see loadtest/README.md, WAL recycling).
    if (off >= (64 << 20)) {
      if (::ftruncate(fd, 0) != 0) Die("truncate " + path + ": " + std::strerror(errno));
      off = 0;
    }
    const auto t0 = SteadyClock::now();
    if (::pwrite(fd, block.data(), block.size(), off) != static_cast<ssize_t>(block.size()) || ::fdatasync(fd) != 0) {
      Die("write and fdatasync " + path + ": " + std::strerror(errno));
    }
    us.push_back(std::chrono::duration<double, std::micro>(SteadyClock::now() - t0).count());
    d.max_us = std::max(d.max_us, us.back());
    d.slow += us.back() > kSlowCommitUs ? 1 : 0;
  }
  ::close(fd);
  ::unlink(path.c_str());
  d.syncs = us.size();
  d.p50_us = Percentile(us, 0.5);
  d.p99_us = Percentile(us, 0.99);
  d.p999_us = Percentile(us, 0.999);
  return d;
}

struct ChargeRun {
  size_t charges = 0;
  double seconds = 0;
  double prefill_s = 0;
  double start_s = 0;
  Cores cores;
  CommitFigures commit;
  // Of the hot run: what the hot account's whole statement took to read (walked back through
  // the log, one event per entry), and how many entries it listed.
  int statement_entries = 0;
  double statement_ms = 0;
  double per_s() const { return seconds > 0 ? static_cast<double>(charges) / seconds : 0; }
};

// Stops the ledger, pre-fills billing with N UsageCharged events, starts the ledger and times it
// until every charge is applied.
ChargeRun RunCharges(LedgerEnv& env, const Flags& flags, bool hot, int round) {
  ChargeRun run;
  run.charges = hot ? flags.hot_charges : flags.charges;
  const auto before = env.Totals();  // Answered by the writers: before they stop.
  env.svc()->Stop();

  auto t0 = SteadyClock::now();
  std::mt19937_64 rng(1000 + static_cast<uint64_t>(round) * 2 + (hot ? 1 : 0));
  static const std::string kUsageType = billing::v1::UsageCharged::descriptor()->full_name();
  const int64_t now_us = SystemClock::Default()->NowMicros();
  for (size_t done = 0; done < run.charges;) {
    eventlog::WriteSet ws;
    const size_t n = std::min<size_t>(1000, run.charges - done);
    for (size_t i = 0; i < n; ++i, ++done) {
      const std::string account = AccountId(hot ? 0 : static_cast<uint32_t>(rng() % flags.accounts));
      billing::v1::UsageCharged u;
      u.set_charge_id("C" + std::to_string(round) + (hot ? "h" : "u") + std::to_string(done));
      u.set_account_id(account);
      u.set_amount_minor(kChargeMinor);
      u.set_energy_wh(2000);
      u.set_meter_id("M-" + account);
      u.set_reading_id("R" + std::to_string(done));
      u.set_tariff_id("T1");
      u.set_tariff_version(1);
      u.set_occurred_at_us(now_us);
      eventlog::NewEvent e;
      e.partition = runtime::PartitionForKey(account, env.billing()->partitions());
      e.aggregate_key = account;
      e.type = kUsageType;
      e.payload = u.SerializeAsString();
      e.actor = "billing";
      e.occurred_at_us = now_us;
      e.causation.set_request_id("ledger_bench");
      ws.Append(std::move(e));
    }
    Check(env.billing()->Commit(std::move(ws)).status(), "pre-fill billing");
  }
  run.prefill_s = Seconds(SteadyClock::now() - t0);

  env.watch().Reset();
  auto s0 = SteadyClock::now();
  Check(env.svc()->Start(env.bus()), "restart ledger");  // Rebuilds the accounts from the log first.
  // The clock starts when the writers do: the rebuild of the accounts is set-up, not posting.
  t0 = SteadyClock::now();
  run.start_s = Seconds(t0 - s0);
  const CpuReading cpu0 = CpuReading::Now();
  while (true) {
    const uint64_t commits = env.svc()->log()->CommitCount();
    if (env.AllConsumed()) break;
    env.svc()->log()->WaitForCommit(commits, std::chrono::milliseconds(50));
    if (Seconds(SteadyClock::now() - t0) > 600) Die("the ledger did not apply the charges within 600 s");
  }
  run.seconds = Seconds(SteadyClock::now() - t0);
  run.cores = Cores::Between(cpu0, CpuReading::Now(), run.seconds);
  run.commit = CommitFigures::From(env.watch());

  // Every charge must have been posted once: revenue grew by exactly N charges.
  const auto after = env.Totals();
  auto revenue = [](const v1::LedgerTotalsResponse& t) {
    auto it = t.system_minor().find("revenue");
    return it == t.system_minor().end() ? int64_t{0} : it->second;
  };
  const int64_t got = revenue(after) - revenue(before);
  const int64_t want = static_cast<int64_t>(run.charges) * kChargeMinor;
  if (got != want) {
    Die("revenue grew by " + std::to_string(got) + " minor, want " + std::to_string(want) +
        " (every charge posted exactly once)");
  }
  if (hot) {
    v1::GetStatementRequest req;
    req.set_account_id(AccountId(0));
    v1::GetStatementResponse st;
    const auto q0 = SteadyClock::now();
    Check(env.svc()->GetStatement(nullptr, &req, &st), "statement of the hot account");
    run.statement_ms = Seconds(SteadyClock::now() - q0) * 1000;
    run.statement_entries = st.entries_size();
  }
  return run;
}

struct TopUpRun {
  double seconds = 0;        // Measured window.
  uint64_t completed = 0;    // Calls that completed in the window.
  uint64_t all_ok = 0;       // Every accepted call, warm-up included (for the money check).
  double offered_per_s = 0;  // Paced runs: the schedule's rate.
  Cores cores;
  std::vector<double> latencies_us;  // Calls that started (or were scheduled) in the window.
  CommitFigures commit;
  double per_s() const { return seconds > 0 ? static_cast<double>(completed) / seconds : 0; }
  double p50_ms() { return Percentile(latencies_us, 0.5) / 1000; }
  double p99_ms() { return Percentile(latencies_us, 0.99) / 1000; }
};

// Top-ups for flags.seconds after a warm-up, through LedgerService::TopUpAsync: --drivers threads
// each keep up to --clients / --drivers calls in flight (each call is a client waiting for its
// answer, as gRPC clients of the callback server would be). Closed loop when rate == 0: a driver
// issues a call whenever one of its slots is free. Open loop at `rate` calls/s in total
// otherwise: call i is due at start + i / rate and its latency runs from that time, so a call
// issued late (its driver waited for a free slot) counts the wait.
TopUpRun RunTopUps(LedgerEnv& env, const Flags& flags, bool hot, double seconds, double rate,
                   const std::string& key_prefix) {
  constexpr double kWarmupS = 0.3;
  TopUpRun run;
  run.offered_per_s = rate;
  const auto before = env.Totals();
  const int drivers = std::min(flags.drivers, flags.clients);
  std::vector<std::string> account_ids(hot ? 1 : flags.accounts);
  for (uint32_t i = 0; i < account_ids.size(); ++i) account_ids[i] = AccountId(i);
  const auto start = SteadyClock::now() + std::chrono::milliseconds(50);  // All threads exist by then.
  const auto window_begin =
      start + std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(kWarmupS));
  const auto window_end =
      window_begin + std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(seconds));
  // One per driver. Its callbacks run on the ledger's threads (a writer or a committer): each
  // records its call and counts it out of `in_flight` under `mu`. The driver counts its calls in
  // without the lock and takes it only to wait for a free slot (`waiting` tells the callbacks to
  // wake it), so issuing a call does not contend with the answers.
  struct Driver {
    std::mutex mu;
    std::condition_variable freed;
    std::atomic<int> in_flight{0};
    std::atomic<int> low_water{0};  // The driver waits until no more than this many calls are in flight.
    bool waiting = false;           // Under mu.
    uint64_t completed = 0, ok = 0, errors = 0;
    std::string first_error;
    std::vector<double> lat;
    std::vector<double> start;  // Of each latency: when it was due, in µs from window_begin.
    // Blocks until no more than low_water calls are in flight. A callback counts out and reads
    // `waiting` under `mu`, so it either counted out before the check below or sees the flag.
    void AwaitSlots() {
      if (in_flight.load() <= low_water.load()) return;
      std::unique_lock lock(mu);
      waiting = true;
      freed.wait(lock, [&] { return in_flight.load() <= low_water.load(); });
      waiting = false;
    }
    // Once every call is answered. Without the fast path: a callback touches the driver until it
    // releases `mu`, so only a count of zero seen under `mu` says that none will again.
    void AwaitAll() {
      std::unique_lock lock(mu);
      low_water.store(0);
      waiting = true;
      freed.wait(lock, [&] { return in_flight.load() == 0; });
    }
  };
  std::vector<std::unique_ptr<Driver>> ds;
  for (int d = 0; d < drivers; ++d) ds.push_back(std::make_unique<Driver>());
  env.watch().Reset();
  CpuReading cpu0;
  std::thread cpu_probe([&] {
    std::this_thread::sleep_until(window_begin);
    cpu0 = CpuReading::Now();
  });
  std::vector<std::thread> pool;
  for (int d = 0; d < drivers; ++d) {
    pool.emplace_back([&, d] {
      Driver& me = *ds[static_cast<size_t>(d)];
      // Slots of this driver: an even share of --clients.
      const int window = flags.clients / drivers + (d < flags.clients % drivers ? 1 : 0);
      // Closed loop, the driver is woken once `refill` of its calls have been answered, not once
      // per answer, and issues that many: a wake-up per call cost this harness a context switch
      // per top-up on the ledger's two cores (real clients are not on its machine). So at times
      // up to `refill` fewer calls are in flight. Open loop, a call is issued when due if one of
      // the driver's slots is free, else as soon as one is.
      const int refill = rate > 0 ? 1 : std::max(1, window / 16);
      me.low_water.store(window - refill);
      std::mt19937_64 rng(static_cast<uint64_t>(d) * 7919 + std::hash<std::string>()(key_prefix));
      v1::TopUpRequest r;
      r.set_operator_id("bench");
      r.set_amount_minor(kTopUpMinor);
      r.set_method(v1::PAYMENT_METHOD_CASH);
      // The harness stands in for clients on other machines: what it spends per call is kept
      // small (no formatting, no allocation, no lock), as it is taken from the ledger's two cores.
      std::string key = key_prefix + "-" + std::to_string(d) + "-";
      const size_t key_base = key.size();
      auto issue = [&](uint64_t k, SteadyClock::time_point due) {
        r.set_account_id(account_ids[hot ? 0 : rng() % account_ids.size()]);
        key.resize(key_base);
        char digits[20];
        key.append(digits, std::to_chars(digits, digits + sizeof digits, k).ptr);
        r.set_idempotency_key(key);
        env.svc()->TopUpAsync(r, [&me, due, window_begin, window_end](grpc::Status s, v1::MutationResponse* resp) {
          const auto end = SteadyClock::now();
          std::lock_guard lock(me.mu);
          if (!s.ok() || resp->duplicate()) {
            if (me.errors++ == 0) me.first_error = s.ok() ? "answered as a duplicate" : s.error_message();
          } else {
            me.ok++;
            // Throughput: calls that completed in the window. Latency: calls that were due in it.
            if (end >= window_begin && end <= window_end) me.completed++;
            if (due >= window_begin) {
              me.lat.push_back(std::chrono::duration<double, std::micro>(end - due).count());
              me.start.push_back(std::chrono::duration<double, std::micro>(due - window_begin).count());
            }
          }
          if (me.in_flight.fetch_sub(1) - 1 <= me.low_water.load() && me.waiting) me.freed.notify_one();
        });
      };
      std::this_thread::sleep_until(start);
      if (rate > 0) {
        // Open loop. Driver d owns calls d, d + drivers, d + 2 drivers...: the merged stream is
        // even. Each wake-up issues every call due by then and sleeps until the next is due, but
        // at least kTick: sleeping until each call was due (one every 13 µs per driver at
        // 150,000/s) woke each driver 9,400 times a second, and the two took 0.30 of the ledger's
        // two cores, half of it in the kernel; per tick they wake 2,700 times and take 0.22. A call
        // issued up to a tick after it was due counts that wait: its latency runs from when it was due.
        constexpr auto kTick = std::chrono::microseconds(200);
        auto due_of = [&](uint64_t k) {
          return start + std::chrono::duration_cast<SteadyClock::duration>(std::chrono::duration<double>(
                             static_cast<double>(static_cast<uint64_t>(d) + k * static_cast<uint64_t>(drivers)) / rate));
        };
        for (uint64_t k = 0;; ) {
          const auto now = SteadyClock::now();
          SteadyClock::time_point due = due_of(k);
          for (; due < window_end && due <= now; due = due_of(++k)) {
            me.AwaitSlots();
            me.in_flight.fetch_add(1);
            issue(k, due);
          }
          if (due >= window_end) break;
          std::this_thread::sleep_until(std::max(due, now + kTick));
        }
      } else {
        for (uint64_t k = 0;;) {
          me.AwaitSlots();
          const int issuable = window - me.in_flight.load();  // Only answers change it meanwhile: they lower it.
          me.in_flight.fetch_add(issuable);
          int issued = 0;
          for (; issued < issuable; ++issued, ++k) {
            const auto now = SteadyClock::now();
            if (now >= window_end) break;
            issue(k, now);
          }
          if (issued < issuable) {
            // Give back the slots not used. No notify: only this thread waits, and it is not waiting.
            me.in_flight.fetch_sub(issuable - issued);
            break;
          }
        }
      }
      me.AwaitAll();
    });
  }
  cpu_probe.join();
  std::this_thread::sleep_until(window_end);
  const CpuReading cpu1 = CpuReading::Now();
  for (auto& t : pool) t.join();
  run.seconds = Seconds(window_end - window_begin);
  run.cores = Cores::Between(cpu0, cpu1, run.seconds);
  for (const auto& d : ds) {
    if (d->errors > 0) Die(std::to_string(d->errors) + " top-ups failed; first: " + d->first_error);
    run.completed += d->completed;
    run.all_ok += d->ok;
    run.latencies_us.insert(run.latencies_us.end(), d->lat.begin(), d->lat.end());
  }
  run.commit = CommitFigures::From(env.watch(), window_begin, window_end);
  if (rate > 0 && !flags.latency_log.empty()) {
    // For finding when the slow calls were: group by start, or line up with a profile taken
    // with `perf record -k CLOCK_MONOTONIC` (steady_clock is CLOCK_MONOTONIC here).
    std::ofstream out(flags.latency_log);
    out << "# window_begin_monotonic_s " << std::fixed
        << std::chrono::duration<double>(window_begin.time_since_epoch()).count() << "\n";
    for (const auto& d : ds) {
      for (size_t i = 0; i < d->lat.size(); ++i) out << d->start[i] << ' ' << d->lat[i] << '\n';
    }
    if (!out) Die("cannot write --latency-log " + flags.latency_log);
    // The window's commits beside it, to tell a slow commit from a queue: 'end_us latency_us
    // events write_us', the end from the window's begin as the calls' starts are, write_us the
    // part of the commit in RocksDB's write (CommitObserver).
    const std::string commits_path = flags.latency_log + ".commits";
    std::ofstream commits(commits_path);
    {
      CommitWatch& w = env.watch();
      std::lock_guard lock(w.mu);
      for (size_t i = 0; i < w.ends.size(); ++i) {
        if (w.ends[i] < window_begin || w.ends[i] > window_end) continue;
        commits << std::chrono::duration<double, std::micro>(w.ends[i] - window_begin).count() << ' '
                << w.latencies_us[i] << ' ' << w.sizes[i] << ' ' << w.write_us[i] << '\n';
      }
    }
    if (!commits) Die("cannot write " + commits_path);
  }
  // Exactly once: cash went out by exactly the accepted top-ups.
  auto cash = [](const v1::LedgerTotalsResponse& t) {
    auto it = t.system_minor().find("cash");
    return it == t.system_minor().end() ? int64_t{0} : it->second;
  };
  const int64_t moved = cash(before) - cash(env.Totals());
  if (moved != static_cast<int64_t>(run.all_ok) * kTopUpMinor) {
    Die("cash moved by " + std::to_string(moved) + " minor for " + std::to_string(run.all_ok) + " accepted top-ups");
  }
  return run;
}

// ---- Aggregation and output. -----------------------------------------------------------------

struct Variant {
  Variant(std::string n, std::string l, std::string p) : name(std::move(n)), label(std::move(l)), pg(std::move(p)) {}
  std::string name;   // "charges_uniform"...
  std::string label;  // "charges uniform"...
  std::string pg;     // "uniform" or "hot": the PostgreSQL run it is compared with.
  double postings = 0, seconds = 0;
  double min_round = 1e18, max_round = 0;
  std::vector<double> latencies_us;  // Top-ups only.
  void Add(double n, double s) {
    postings += n;
    seconds += s;
    min_round = std::min(min_round, n / s);
    max_round = std::max(max_round, n / s);
  }
  double per_s() const { return seconds > 0 ? postings / seconds : 0; }
};

struct PgVariant {
  std::vector<PgResult> runs;
  double tps() const {
    double sum = 0;
    for (const auto& r : runs) sum += r.tps;
    return runs.empty() ? 0 : sum / static_cast<double>(runs.size());
  }
  double p99_ms() const {
    double worst = 0;
    for (const auto& r : runs) worst = std::max(worst, r.p99_ms);
    return worst;
  }
  double p50_ms() const {
    double sum = 0;
    for (const auto& r : runs) sum += r.p50_ms;
    return runs.empty() ? 0 : sum / static_cast<double>(runs.size());
  }
};

void PrintCharges(const char* dist, const ChargeRun& c, const Flags& flags, double open_s) {
  std::printf(
      "  ours     charges %-7s: %9s postings/s  (%zu in %.2f s; %.0f per commit, commit p50 %.1f p99 %.1f ms, "
      "%.2f cores, %.2f stolen by the host; set-up: %u accounts %.1f s, pre-fill %.1f s, restart %.2f s)\n",
      dist, Thousands(c.per_s()).c_str(), c.charges, c.seconds, c.commit.postings_per_commit, c.commit.p50_us / 1000,
      c.commit.p99_us / 1000, c.cores.used, c.cores.stolen, flags.accounts, open_s, c.prefill_s, c.start_s);
  if (c.statement_entries > 0) {
    std::printf("  ours     statement of the hot account: %d entries read in %.1f ms\n", c.statement_entries,
                c.statement_ms);
  }
  std::fflush(stdout);
}

void PrintTopUps(const char* dist, TopUpRun& t, const Flags& flags) {
  std::string how = std::to_string(flags.clients) + " clients";
  if (t.offered_per_s > 0) how += ", open loop at " + Thousands(t.offered_per_s) + "/s";
  std::printf(
      "  ours     top-ups %-7s: %9s postings/s  p50 %6.2f ms  p99 %6.2f ms  (%s; %.0f per commit, commit p50 "
      "%.1f p99 %.1f max %.1f ms, %" PRIu64 " over %.0f ms; %.2f cores, %.2f stolen by the host)\n",
      dist, Thousands(t.per_s()).c_str(), t.p50_ms(), t.p99_ms(), how.c_str(), t.commit.postings_per_commit,
      t.commit.p50_us / 1000, t.commit.p99_us / 1000, t.commit.max_us / 1000, t.commit.slow, kSlowCommitUs / 1000,
      t.cores.used, t.cores.stolen);
  std::fflush(stdout);
}

void PrintPg(const char* variant, const PgResult& r, int clients, double seconds, double rate) {
  std::printf(
      "  postgres %-14s: %d clients, %.0f s%s: %9s postings/s (tps)  p50 %6.2f ms  p99 %6.2f ms  (%.2f cores stolen "
      "by the host)\n",
      variant, clients, seconds, rate > 0 ? (" at " + Thousands(rate) + "/s").c_str() : "", Thousands(r.tps).c_str(),
      r.p50_ms, r.p99_ms, r.cores.stolen);
  std::fflush(stdout);
}

int Main(int argc, char** argv) {
  Flags flags;
  CLI::App app("ledger_bench: durable ledger postings/s (charges, top-ups; uniform and hot) against PostgreSQL");
  app.add_option("--rounds", flags.rounds, "interleaved rounds (ours, PostgreSQL) per variant")
      ->check(CLI::Range(1, 100));
  app.add_option("--accounts", flags.accounts, "tenant accounts (both sides)")->check(CLI::Range(1, 10'000'000));
  app.add_option("--charges", flags.charges, "UsageCharged events per uniform charge run")
      ->check(CLI::Range(1, 100'000'000));
  app.add_option("--hot-charges", flags.hot_charges, "UsageCharged events per hot charge run")
      ->check(CLI::Range(1, 100'000'000));
  app.add_option("--seconds", flags.seconds, "timed seconds per top-up run")->check(CLI::PositiveNumber);
  app.add_option("--clients", flags.clients, "top-up calls in flight at once (each a waiting client)")
      ->check(CLI::Range(1, 65536));
  app.add_option("--drivers", flags.drivers, "threads issuing the top-up calls")->check(CLI::Range(1, 64));
  app.add_option("--paced-fraction", flags.paced_fraction, "paced top-ups at this fraction of the uniform peak")
      ->check(CLI::Range(0.01, 1.0));
  app.add_option("--paced-rate", flags.paced_rate,
                 "paced top-ups at this fixed rate/s instead (diagnostic: compares builds at one load)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--paced-seconds", flags.paced_seconds, "timed seconds of the paced run (0: skip)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--disk-probe-seconds", flags.disk_probe_seconds,
                 "seconds of 16 KiB write+fdatasync timings on the data dir's disk before the paced run (0: skip)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--partitions", flags.partitions, "ledger (and billing) log partitions")->check(CLI::Range(1, 256));
  std::string fsync = "commit";
  app.add_option("--fsync", fsync, "ledger log fsync: commit (kEveryCommit, the goal measurement) or none (CPU only)")
      ->check(CLI::IsMember({"commit", "none"}));
  bool no_pg = false;
  app.add_flag("--no-pg", no_pg, "skip PostgreSQL (no ratios)");
  bool no_overlap = false;
  app.add_flag("--no-overlap", no_overlap,
               "each writer commits a batch before it takes the next (diagnostic: the default overlaps them)");
  app.add_option("--pg-seconds", flags.pg_seconds, "seconds per pgbench run")->check(CLI::Range(1.0, 3600.0));
  app.add_option("--pg-clients", flags.pg_clients, "pgbench clients (-c)")->check(CLI::Range(1, 190));
  app.add_option("--pg-jobs", flags.pg_jobs, "pgbench threads (-j)")->check(CLI::Range(1, 64));
  app.add_option("--pg-shards", flags.pg_shards, "PostgreSQL revenue rows for the uniform variant")
      ->check(CLI::Range(1, 100000));
  app.add_option("--pg-script", flags.pg_script, "the PostgreSQL driver script");
  app.add_option("--only", flags.only, "run only the charge or only the top-up runs (diagnostic; goals then missed)")
      ->check(CLI::IsMember({"charges", "topups"}));
  app.add_option("--dist", flags.dists, "account distributions to run: uniform, hot or both (default both)")
      ->check(CLI::IsMember({"uniform", "hot"}));
  app.add_option("--dir", flags.dir, "parent of the data dirs (default $TMPDIR or /tmp)");
  app.add_flag("--keep", flags.keep, "keep the data dir");
  app.add_option("--latency-log", flags.latency_log,
                 "write each paced call as 'start_us latency_us' (start from the window's begin) to this file, "
                 "and each commit in the window as 'end_us latency_us events write_us' to FILE.commits");
  CLI11_PARSE(app, argc, argv);
  flags.fsync = fsync == "commit";
  flags.pg = !no_pg;
  flags.overlap = !no_overlap;
  signal(SIGPIPE, SIG_IGN);

  TempDir tmp(flags.dir, flags.keep);
  const double load_before = LoadAverage();
  const auto run_start = SteadyClock::now();
  std::printf("ledger_bench: %ld cpus, load average %.2f, data in %s\n", sysconf(_SC_NPROCESSORS_ONLN), load_before,
              tmp.path().c_str());
  std::printf(
      "ours: LedgerService in-process, local bus, %u partitions, %s, %s, %u accounts; charges: %zu (uniform) / "
      "%zu (hot) pre-filled per run; top-ups: %d clients x %.1f s; %d rounds\n",
      flags.partitions, flags.fsync ? "fsync every commit (kEveryCommit)" : "NO fsync (kNone, CPU only)",
      flags.overlap ? "next batch built during each commit" : "each batch committed before the next (--no-overlap)",
      flags.accounts, flags.charges, flags.hot_charges, flags.clients, flags.seconds, flags.rounds);
  std::fflush(stdout);

  PgSide pg;
  if (flags.pg) {
    pg.Start(flags, tmp.Sub("pg_ledger.log"));
    std::printf(
        "postgres: %s, private cluster, fsync=on, synchronous_commit=on; pgbench -M prepared -c %d -j %d "
        "-T %.0f; posting = UPDATE tenant + UPDATE revenue shard (%u rows uniform, 1 hot) + INSERT journal\n",
        pg.version().c_str(), flags.pg_clients, flags.pg_jobs, flags.pg_seconds, flags.pg_shards);
    std::fflush(stdout);
  }

  // Before any ledger runs, so that no other thread allocates meanwhile.
  const StateFigures state = MeasureState(flags);
  if (state.measured) {
    std::printf(
        "state: the domain ledger keeps %s bytes per account and %s bytes per charge in memory (%u accounts, "
        "%zu uniform charges, jemalloc stats.allocated); built + Decide + ApplyAll %s charges/s on one thread\n",
        Thousands(state.bytes_per_account).c_str(), Thousands(state.bytes_per_charge).c_str(), flags.accounts,
        flags.charges, Thousands(state.charges_per_s).c_str());
  } else {
    std::printf("state: memory not measured (this build allocates without jemalloc)\n");
  }
  std::fflush(stdout);

  Variant charges_u{"charges_uniform", "charges uniform", "uniform"};
  Variant charges_h{"charges_hot", "charges hot", "hot"};
  Variant topups_u{"topups_uniform", "top-ups uniform", "uniform"};
  Variant topups_h{"topups_hot", "top-ups hot", "hot"};
  std::map<std::string, PgVariant> pgv;
  std::unique_ptr<LedgerEnv> paced_env;  // The last uniform ledger, kept for the paced run.

  for (int round = 1; round <= flags.rounds; ++round) {
    std::printf("round %d/%d\n", round, flags.rounds);
    for (bool hot : {false, true}) {
      const char* dist = hot ? "hot" : "uniform";
      if (std::find(flags.dists.begin(), flags.dists.end(), dist) == flags.dists.end()) continue;
      auto env = std::make_unique<LedgerEnv>(flags, tmp.Sub("r" + std::to_string(round) + dist));
      const double open_s = env->OpenAccounts();

      if (flags.only != "topups") {
        ChargeRun c = RunCharges(*env, flags, hot, round);
        (hot ? charges_h : charges_u).Add(static_cast<double>(c.charges), c.seconds);
        PrintCharges(dist, c, flags, open_s);
      }
      if (flags.only != "charges") {
        TopUpRun t = RunTopUps(*env, flags, hot, flags.seconds, 0, "T" + std::to_string(round) + dist);
        Variant& tv = hot ? topups_h : topups_u;
        tv.Add(static_cast<double>(t.completed), t.seconds);
        tv.latencies_us.insert(tv.latencies_us.end(), t.latencies_us.begin(), t.latencies_us.end());
        PrintTopUps(dist, t, flags);
      }
      if (!hot && round == flags.rounds) {
        paced_env = std::move(env);
      } else {
        env.reset();
      }

      if (flags.pg) {
        PgResult r = pg.Run(dist, flags.pg_seconds, flags.pg_clients, 0);
        pgv[dist].runs.push_back(r);
        PrintPg(dist, r, flags.pg_clients, flags.pg_seconds, 0);
      }
    }
  }

  // Paced: top-ups at 70% of the uniform peak (and PostgreSQL at 70% of its own).
  TopUpRun paced;
  DiskProbe disk;
  PgResult pg_paced;
  const double paced_rate = flags.paced_rate > 0 ? flags.paced_rate : flags.paced_fraction * topups_u.per_s();
  const bool do_paced = flags.paced_seconds > 0 && paced_rate > 0 && paced_env != nullptr;
  if (do_paced) {
    if (flags.paced_rate > 0) {
      std::printf("paced at a fixed %s/s (--paced-rate; the goal is measured at %.0f%% of peak)\n",
                  Thousands(paced_rate).c_str(), flags.paced_fraction * 100);
    } else {
      std::printf("paced at %.0f%% of peak\n", flags.paced_fraction * 100);
    }
    if (flags.disk_probe_seconds > 0) {
      disk = ProbeDisk(paced_env->dir(), flags.disk_probe_seconds);
      std::printf(
          "  disk     %zu appends of 16 KiB, each with fdatasync, in %.1f s next to the ledger's log: p50 %.2f "
          "p99 %.2f p99.9 %.2f max %.2f ms, %" PRIu64 " over %.0f ms\n",
          disk.syncs, flags.disk_probe_seconds, disk.p50_us / 1000, disk.p99_us / 1000, disk.p999_us / 1000,
          disk.max_us / 1000, disk.slow, kSlowCommitUs / 1000);
      std::fflush(stdout);
    }
    paced = RunTopUps(*paced_env, flags, false, flags.paced_seconds, paced_rate, "P");
    PrintTopUps("uniform", paced, flags);
  }
  paced_env.reset();
  if (do_paced && flags.pg && !pgv["uniform"].runs.empty()) {
    const double rate = flags.paced_fraction * pgv["uniform"].tps();
    pg_paced = pg.Run("uniform", flags.pg_seconds, flags.pg_clients, rate);
    PrintPg("uniform", pg_paced, flags.pg_clients, flags.pg_seconds, rate);
  }
  pg.Stop();

  // ---- Summary. ----
  std::vector<Variant*> variants = {&charges_u, &charges_h, &topups_u, &topups_h};
  std::printf(
      "summary: durable postings/s over %d rounds (PostgreSQL: tps, one posting per transaction); "
      "ratio = ours / PostgreSQL\n",
      flags.rounds);
  std::vector<std::string> missed;
  for (Variant* v : variants) {
    const double pg_tps = flags.pg ? pgv[v->pg].tps() : 0;
    const double ratio = pg_tps > 0 ? v->per_s() / pg_tps : 0;
    if (v->seconds <= 0) {
      std::printf("  %-16s not measured\n", v->label.c_str());
      missed.push_back(v->label + ": not measured");
      continue;
    }
    std::printf("  %-16s ours %9s  (rounds %s..%s)   postgres %-7s %7s   ratio %6.2f\n", v->label.c_str(),
                Thousands(v->per_s()).c_str(), Thousands(v->min_round).c_str(), Thousands(v->max_round).c_str(),
                v->pg.c_str(), flags.pg ? Thousands(pg_tps).c_str() : "-", ratio);
    if (v->per_s() < kGoalPostingsPerS) {
      missed.push_back(v->label + ": " + Thousands(v->per_s()) + " postings/s < " + Thousands(kGoalPostingsPerS));
    }
    if (ratio < kGoalRatio) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "%s: %.2fx PostgreSQL < %.0fx", v->label.c_str(), ratio, kGoalRatio);
      missed.push_back(flags.pg ? buf : v->label + ": ratio not measured (--no-pg)");
    }
  }
  std::printf(
      "  top-up latency at peak (%d clients): uniform p50 %.2f ms p99 %.2f ms; hot p50 %.2f ms p99 %.2f ms; "
      "postgres (%d clients) uniform p99 %.2f ms, hot p99 %.2f ms\n",
      flags.clients, Percentile(topups_u.latencies_us, 0.5) / 1000, Percentile(topups_u.latencies_us, 0.99) / 1000,
      Percentile(topups_h.latencies_us, 0.5) / 1000, Percentile(topups_h.latencies_us, 0.99) / 1000, flags.pg_clients,
      pgv["uniform"].p99_ms(), pgv["hot"].p99_ms());
  const double paced_p99 = do_paced ? paced.p99_ms() : 0;
  if (do_paced) {
    char load[64];
    if (flags.paced_rate > 0) {
      std::snprintf(load, sizeof load, "a fixed rate, %.0f%% of peak", 100 * paced_rate / topups_u.per_s());
    } else {
      std::snprintf(load, sizeof load, "%.0f%% of peak", flags.paced_fraction * 100);
    }
    std::printf(
        "  top-up p99 at %s (%s/s offered, %s/s done): %.2f ms (p50 %.2f ms; commits over %.0f ms: %" PRIu64
        ", the slowest %.1f ms); postgres at %.0f%% of its peak: p99 %.2f ms\n",
        load, Thousands(paced_rate).c_str(), Thousands(paced.per_s()).c_str(), paced_p99, paced.p50_ms(),
        kSlowCommitUs / 1000, paced.commit.slow, paced.commit.max_us / 1000, flags.paced_fraction * 100,
        pg_paced.p99_ms);
    if (disk.syncs > 0) {
      std::printf("  the disk alone, just before: fdatasync p99 %.2f ms, max %.2f ms, %" PRIu64 " of %zu over %.0f ms\n",
                  disk.p99_us / 1000, disk.max_us / 1000, disk.slow, disk.syncs, kSlowCommitUs / 1000);
    }
  }
  // A --paced-rate below the goal's load measures nothing the goal asks.
  const bool paced_at_goal_load = paced_rate >= flags.paced_fraction * topups_u.per_s();
  const bool paced_met =
      do_paced && paced_at_goal_load && paced_p99 <= kGoalPacedP99Ms && paced.per_s() >= 0.95 * paced_rate;
  if (!paced_met) {
    char buf[200];
    if (!do_paced) {
      std::snprintf(buf, sizeof buf, "p99 at %.0f%% of peak: not measured", flags.paced_fraction * 100);
    } else if (!paced_at_goal_load) {
      std::snprintf(buf, sizeof buf, "p99 at %.0f%% of peak: not measured (--paced-rate %.0f/s is below it)",
                    flags.paced_fraction * 100, paced_rate);
    } else {
      std::snprintf(buf, sizeof buf, "p99 at %.0f%% of peak: %.2f ms > %.0f ms%s", flags.paced_fraction * 100,
                    paced_p99, kGoalPacedP99Ms,
                    paced.per_s() < 0.95 * paced_rate ? " (or the offered rate was not sustained)" : "");
    }
    missed.push_back(buf);
  }
  std::printf("goals: >= %s postings/s, >= %.0fx PostgreSQL, p99 <= %.0f ms at %.0f%% of peak: %zu missed\n",
              Thousands(kGoalPostingsPerS).c_str(), kGoalRatio, kGoalPacedP99Ms, flags.paced_fraction * 100,
              missed.size());
  for (const auto& m : missed) std::printf("GOAL MISSED: %s\n", m.c_str());
  std::printf("run took %.0f s\n", Seconds(SteadyClock::now() - run_start));
  std::fflush(stdout);

  // ---- JSON. ----
  std::string json = "{\"bench\":\"ledger\"";
  char buf[256];
  auto add = [&](const std::string& key, double v, const char* fmt = "%.1f") {
    std::snprintf(buf, sizeof buf, fmt, v);
    json += ",\"" + key + "\":" + buf;
  };
  auto add_bool = [&](const std::string& key, bool v) { json += ",\"" + key + "\":" + (v ? "true" : "false"); };
  for (Variant* v : variants) {
    const double pg_tps = flags.pg ? pgv[v->pg].tps() : 0;
    add(v->name + "_postings_per_s", v->per_s());
    add(v->name + "_ratio", pg_tps > 0 ? v->per_s() / pg_tps : 0, "%.2f");
  }
  add("pg_uniform_tps", pgv["uniform"].tps());
  add("pg_hot_tps", pgv["hot"].tps());
  add("topups_uniform_p50_ms", Percentile(topups_u.latencies_us, 0.5) / 1000, "%.3f");
  add("topups_uniform_p99_ms", Percentile(topups_u.latencies_us, 0.99) / 1000, "%.3f");
  add("topups_hot_p50_ms", Percentile(topups_h.latencies_us, 0.5) / 1000, "%.3f");
  add("topups_hot_p99_ms", Percentile(topups_h.latencies_us, 0.99) / 1000, "%.3f");
  add("paced_offered_per_s", do_paced ? paced_rate : 0);
  add("paced_postings_per_s", do_paced ? paced.per_s() : 0);
  add("paced_p50_ms", do_paced ? paced.p50_ms() : 0, "%.3f");
  add("paced_p99_ms", paced_p99, "%.3f");
  add("paced_stolen_cores", do_paced ? paced.cores.stolen : 0, "%.2f");
  add("paced_commit_max_ms", do_paced ? paced.commit.max_us / 1000 : 0, "%.3f");
  add("paced_commits_over_10_ms", do_paced ? static_cast<double>(paced.commit.slow) : 0, "%.0f");
  add("disk_fdatasync_p99_ms", disk.p99_us / 1000, "%.3f");
  add("disk_fdatasync_max_ms", disk.max_us / 1000, "%.3f");
  add("disk_fdatasync_over_10_ms", static_cast<double>(disk.slow), "%.0f");
  add("pg_uniform_p99_ms", pgv["uniform"].p99_ms(), "%.3f");
  add("pg_hot_p99_ms", pgv["hot"].p99_ms(), "%.3f");
  add("pg_paced_p99_ms", pg_paced.p99_ms, "%.3f");
  add_bool("state_measured", state.measured);  // Without jemalloc the three below are 0.
  add("state_bytes_per_account", state.bytes_per_account, "%.0f");
  add("state_bytes_per_charge", state.bytes_per_charge, "%.0f");
  add("domain_charges_per_s", state.charges_per_s, "%.0f");
  add("charges", static_cast<double>(flags.charges), "%.0f");
  add("hot_charges", static_cast<double>(flags.hot_charges), "%.0f");
  add("clients", flags.clients, "%.0f");
  add("pg_clients", flags.pg_clients, "%.0f");
  add("partitions", flags.partitions, "%.0f");
  add("rounds", flags.rounds, "%.0f");
  add_bool("fsync", flags.fsync);
  add_bool("overlap_commits", flags.overlap);
  add("goal_postings_per_s", kGoalPostingsPerS, "%.0f");
  add("goal_ratio", kGoalRatio, "%.0f");
  add("goal_paced_p99_ms", kGoalPacedP99Ms, "%.0f");
  // A goal counts only when measured, and only with fsync on.
  for (Variant* v : variants) {
    const double pg_tps = flags.pg ? pgv[v->pg].tps() : 0;
    add_bool(v->name + "_throughput_goal_met", flags.fsync && v->per_s() >= kGoalPostingsPerS);
    add_bool(v->name + "_ratio_goal_met", flags.fsync && pg_tps > 0 && v->per_s() / pg_tps >= kGoalRatio);
  }
  add_bool("paced_latency_goal_met", flags.fsync && paced_met);
  add("cpus", static_cast<double>(sysconf(_SC_NPROCESSORS_ONLN)), "%.0f");
  add("loadavg_start", load_before, "%.2f");
  add("loadavg_end", LoadAverage(), "%.2f");
  json += "}";
  std::printf("%s\n", json.c_str());
  return 0;
}

}  // namespace
}  // namespace wattledger::ledger::adapters

int main(int argc, char** argv) {
  wattledger::bench::Name() = "ledger_bench";
  return wattledger::ledger::adapters::Main(argc, argv);
}

// eventlog_bench: what EventLog costs on top of the RocksDB it is built on.
//
// Two measurements, each run side by side with its raw-RocksDB baseline in interleaved rounds
// (raw, ours, raw, ours...) so that machine noise hits both sides alike:
//
//   append  EventLog::Commit with FsyncPolicy::kEveryCommit, B events per commit, against a raw
//           RocksDB DB (the log's own RocksDB options, same column families) writing a
//           WriteBatch of B puts of the same 12-byte (partition, seq) keys, in key order, and
//           values as large as our envelopes, with WriteOptions::sync = true. Same batch, same
//           bytes, same durability: the raw side is the physical limit.
//           --state adds, per event, what the ledger writes per posting: the account's state, a
//           system account's state and the consumer position, most of them overwritten within
//           the commit. The raw side then also puts each distinct key once, with its last value,
//           in key order (worked out before the timed write): what reaches the database.
//   replay  Reading every event of an N-event log back through EventLog::Read (in chunks, all
//           partitions), against raw iterators over the same per-partition events column families
//           of the same files that parse each value into an Envelope. One thread, so events/s on one core.
//
// Prints human-readable lines and, as the last line, one JSON object with every figure. Exits
// non-zero only if something fails; a missed goal is reported in the JSON, not in the exit code.
// Data lives in a fresh directory under $TMPDIR (or /tmp) that is removed at the end.
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/options_util.h>
#include <rocksdb/write_batch.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "loadtest/bench_common.h"
#include "wattledger/base/status.h"
#include "wattledger/eventlog/event_log.h"

namespace wattledger::eventlog {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr double kAppendGoalRatio = 0.7;
constexpr double kReplayGoalEventsPerS = 1'000'000;

struct Flags {
  double seconds = 3.0;  // Append: timed seconds per side in total, split over the rounds.
  int rounds = 20;       // Append rounds per side (short, so that disk latency drifts hit both).
  size_t batch = 128;    // Events per commit.
  size_t payload = 200;  // Payload bytes per event.
  uint32_t partitions = 8;
  bool raw_key_order = true;  // Raw append batch in key order; false: in arrival order.
  bool fsync = true;  // --no-fsync: kNone vs sync=false, to see the CPU cost without the disk.
  bool state = false;       // Ledger-like state writes with every event.
  size_t state_bytes = 120;  // Size of the account state value.
  size_t replay_events = 1'000'000;
  int replay_rounds = 3;
  size_t chunk = 1000;  // Events per EventLog::Read call.
  std::string only;     // "append" or "replay" to run one measurement.
  std::string dir;      // Parent of the temp dir; default $TMPDIR or /tmp.
  bool keep = false;
};

using bench::Check;
using bench::Die;
using bench::LoadAverage;
void Check(const rocksdb::Status& s, const std::string& what) {
  if (!s.ok()) Die(what + ": " + s.ToString());
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Removes the benchmark's data directory however main returns.
using bench::TempDir;

// A plain RocksDB handle on a database with exactly the options an EventLog gave its own: they
// are loaded from the OPTIONS file RocksDB keeps next to the log, so the raw side differs from
// ours only by what EventLog does, whatever EventLog::Init chooses now or later. Each handle gets
// its own 64 MiB block cache (the size EventLog uses by default).
struct RawDb {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<std::string> names;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // handles[i] is column family names[i].
  rocksdb::ColumnFamilyHandle* cf(const std::string& name) const {
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == name) return handles[i];
    }
    Die("no column family '" + name + "' in the raw db");
  }
  rocksdb::ColumnFamilyHandle* meta() const { return cf(rocksdb::kDefaultColumnFamilyName); }
  rocksdb::ColumnFamilyHandle* state() const { return cf("state"); }
  rocksdb::ColumnFamilyHandle* events(uint32_t partition) const { return cf(eventlog::EventsColumnFamily(partition)); }

  // Opens `path` with the options of the log at `options_from` (which may be `path` itself).
  void Open(const std::string& options_from, const std::string& path, bool read_only) {
    rocksdb::ConfigOptions config;
    config.env = rocksdb::Env::Default();
    rocksdb::DBOptions db_options;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    Check(rocksdb::LoadLatestOptions(config, options_from, &db_options, &cfs),
          "load the event log's RocksDB options from " + options_from);
    db_options.create_if_missing = true;
    db_options.create_missing_column_families = true;
    // The OPTIONS file does not keep the rate limiter: the log's default one, as ours has.
    db_options.rate_limiter = eventlog::NewBackgroundWriteLimiter(eventlog::Options{}.background_write_bytes_per_s);
    auto cache = rocksdb::NewLRUCache(64 << 20);
    for (auto& cf : cfs) {
      auto* table = cf.options.table_factory->GetOptions<rocksdb::BlockBasedTableOptions>();
      if (table == nullptr) continue;
      rocksdb::BlockBasedTableOptions own = *table;
      own.block_cache = cache;
      cf.options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(own));
    }
    for (const auto& c : cfs) names.push_back(c.name);
    rocksdb::DB* raw = nullptr;
    if (read_only) {
      Check(rocksdb::DB::OpenForReadOnly(db_options, path, cfs, &handles, &raw), "open raw db " + path);
    } else {
      Check(rocksdb::DB::Open(db_options, path, cfs, &handles, &raw), "open raw db " + path);
    }
    db.reset(raw);
  }
  ~RawDb() {
    if (!db) return;
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    db->Close().PermitUncheckedError();
  }
};

void EncodeKey(char* out, uint32_t partition, uint64_t seq) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(partition >> (8 * (3 - i)));
  for (int i = 0; i < 8; ++i) out[4 + i] = static_cast<char>(seq >> (8 * (7 - i)));
}

// Payloads look like serialised messages: a mix of small integers, ids and random bytes, so
// block compression neither vanishes nor dominates. Generated once, reused round-robin.
std::vector<std::string> MakePool(size_t count, size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> pool(count);
  for (auto& s : pool) {
    s.resize(size);
    for (size_t i = 0; i < size; ++i) {
      uint64_t r = rng();
      s[i] = (i % 4 == 3) ? static_cast<char>(r) : static_cast<char>('0' + r % 16);
    }
  }
  return pool;
}

std::string AggregateKey(uint64_t n) {
  char key[32];
  std::snprintf(key, sizeof key, "acct-%08" PRIu64, (n * 2654435761u) % 100'000'000);
  return key;
}

// The state writes that go with event n under --state, as the ledger makes them per posting: the
// account's state (unique per event here), the partition's revenue account (8 keys) and the
// consumer position of one of 4 source partitions. Only the last write of a key in a commit
// reaches the database.
constexpr uint32_t kStateSourcePartitions = 4;
std::string AccountStateKey(uint64_t n) { return "acct/" + AggregateKey(n); }
std::string SystemStateKey(uint32_t partition) { return "sys/" + std::to_string(partition) + "/revenue"; }
Position PositionOf(uint64_t n) { return Position{n + 1, static_cast<int64_t>(n)}; }

class EventSource {
 public:
  explicit EventSource(const Flags& flags)
      : flags_(flags), payloads_(MakePool(1024, flags.payload, 42)), states_(MakePool(1024, flags.state_bytes, 43)) {}

  WriteSet Next(size_t events) {
    WriteSet ws;
    for (size_t i = 0; i < events; ++i, ++n_) {
      NewEvent e;
      e.partition = static_cast<uint32_t>(n_ % flags_.partitions);
      e.aggregate_key = AggregateKey(n_);
      e.type = "wattledger.ledger.v1.ChargePosted";
      e.payload = payloads_[n_ % payloads_.size()];
      e.actor = "billing";
      e.causation.set_source_topic("billing");
      e.causation.set_source_partition(static_cast<uint32_t>(n_ % 16));
      e.causation.set_source_seq(n_ + 1);
      if (flags_.state) {
        ws.PutState(AccountStateKey(n_), states_[n_ % states_.size()]);
        ws.PutState(SystemStateKey(e.partition), std::to_string(n_));
        ws.SetPosition("bench<billing", static_cast<uint32_t>(n_ % kStateSourcePartitions), PositionOf(n_));
      }
      ws.Append(std::move(e));
    }
    return ws;
  }

 private:
  const Flags& flags_;
  std::vector<std::string> payloads_;
  std::vector<std::string> states_;
  uint64_t n_ = 0;
};

// What the state writes of events [first, first + count) leave in the database: each distinct
// key once with its last value, in key order, per column family. The raw side puts exactly these.
struct FinalState {
  std::map<std::string, std::string> state, meta;
};
FinalState FinalStateOf(const Flags& flags, const std::vector<std::string>& states, uint64_t first, size_t count) {
  FinalState out;
  for (uint64_t n = first; n < first + count; ++n) {
    out.state[AccountStateKey(n)] = states[n % states.size()];
    out.state[SystemStateKey(static_cast<uint32_t>(n % flags.partitions))] = std::to_string(n);
    // The log's position record: "pos/" consumer NUL source-partition (4 B) -> seq, offset (16 B).
    std::string key = "pos/bench<billing";
    key.push_back('\0');
    const uint32_t sp = static_cast<uint32_t>(n % kStateSourcePartitions);
    key.append({'\0', '\0', '\0', static_cast<char>(sp)});
    out.meta[key] = std::string(16, '\0');  // Seq and offset; only the size matters here.
  }
  return out;
}

std::unique_ptr<EventLog> OpenLog(const std::string& path, const Flags& flags, FsyncPolicy fsync) {
  Options o;
  o.path = path;
  o.name = "bench";
  o.partitions = flags.partitions;
  o.fsync = fsync;
  auto log = EventLog::Open(o);
  Check(log.status(), "open event log " + path);
  return std::move(log).value();
}

struct Side {
  uint64_t commits = 0;
  uint64_t events = 0;
  double seconds = 0;
  std::vector<double> latencies_us;
  double events_per_s() const { return seconds > 0 ? static_cast<double>(events) / seconds : 0; }
  double commits_per_s() const { return seconds > 0 ? static_cast<double>(commits) / seconds : 0; }
  double Percentile(double q) {
    if (latencies_us.empty()) return 0;
    std::sort(latencies_us.begin(), latencies_us.end());
    size_t i = static_cast<size_t>(q * static_cast<double>(latencies_us.size() - 1));
    return latencies_us[i];
  }
};

struct AppendResult {
  Side ours, raw;
  size_t envelope_bytes = 0;
  double min_round_ratio = 1e9, max_round_ratio = 0;
  // What a commit of ours costs on top of the raw write of the same batch, on average: the part
  // EventLog can change. The ratio also moves with the disk's flush latency.
  double overhead_us_per_commit() const {
    return (ours.seconds / static_cast<double>(ours.commits) - raw.seconds / static_cast<double>(raw.commits)) * 1e6;
  }
};

AppendResult RunAppend(const Flags& flags, const TempDir& tmp) {
  AppendResult res;
  auto log = OpenLog(tmp.Sub("append-ours"), flags,
                     flags.fsync ? FsyncPolicy::kEveryCommit : FsyncPolicy::kNone);
  RawDb raw;
  raw.Open(tmp.Sub("append-ours"), tmp.Sub("append-raw"), /*read_only=*/false);
  EventSource source(flags);

  // Warm-up commit; it also tells us how large our envelopes are, which the raw side mirrors.
  {
    WriteSet ws = source.Next(flags.batch);
    ws.ReturnEnvelopes();
    auto out = log->Commit(std::move(ws));
    Check(out.status(), "warm-up commit");
    size_t bytes = 0;
    for (const auto& e : out->envelopes) bytes += e.ByteSizeLong();
    res.envelope_bytes = bytes / out->envelopes.size();
  }
  const auto values = MakePool(1024, res.envelope_bytes, 7);
  const auto states = MakePool(1024, flags.state_bytes, 43);
  rocksdb::WriteOptions raw_wo;
  raw_wo.sync = flags.fsync;
  std::vector<uint64_t> raw_seq(flags.partitions, 0);
  uint64_t raw_n = 0;
  // With --state, the state the next raw commit leaves, worked out before its timed write.
  auto raw_state = [&] {
    return flags.state ? FinalStateOf(flags, states, raw_n, flags.batch) : FinalState{};
  };
  // The batch holds the same (partition, seq) keys our side appends: event i of the run goes to
  // partition i % partitions. In key order (the default) the memtable inserts are sequential,
  // which is the cheapest way RocksDB can take them; --raw-order interleaved puts them in the
  // order the events arrive instead.
  auto raw_commit = [&](const FinalState& state) {
    rocksdb::WriteBatch batch;
    char key[12];
    auto put = [&](uint32_t p) {
      EncodeKey(key, p, ++raw_seq[p]);
      Check(batch.Put(raw.events(p), rocksdb::Slice(key, sizeof key), values[raw_n++ % values.size()]),
            "raw batch put");
    };
    const uint64_t first = raw_n;
    if (flags.raw_key_order) {
      for (uint32_t p = 0; p < flags.partitions; ++p) {
        for (uint64_t i = first; i < first + flags.batch; ++i) {
          if (i % flags.partitions == p) put(p);
        }
      }
    } else {
      for (uint64_t i = first; i < first + flags.batch; ++i) put(static_cast<uint32_t>(i % flags.partitions));
    }
    for (const auto& [k, v] : state.state) Check(batch.Put(raw.state(), k, v), "raw state put");
    for (const auto& [k, v] : state.meta) Check(batch.Put(raw.meta(), k, v), "raw meta put");
    Check(raw.db->Write(raw_wo, &batch), "raw write");
  };
  raw_commit(raw_state());  // Warm-up.

  const double per_round = flags.seconds / flags.rounds;
  for (int round = 0; round < flags.rounds; ++round) {
    // Raw side: building the WriteBatch is part of its write path, as it is inside Commit.
    Side r;
    while (r.seconds < per_round) {
      const FinalState state = raw_state();
      auto t0 = Clock::now();
      raw_commit(state);
      double s = Seconds(Clock::now() - t0);
      r.seconds += s;
      r.commits++;
      r.events += flags.batch;
      res.raw.latencies_us.push_back(s * 1e6);
    }
    // Our side: the WriteSet is the caller's input and is built outside the timed region.
    Side o;
    while (o.seconds < per_round) {
      WriteSet ws = source.Next(flags.batch);
      auto t0 = Clock::now();
      auto out = log->Commit(std::move(ws));
      double s = Seconds(Clock::now() - t0);
      Check(out.status(), "commit");
      o.seconds += s;
      o.commits++;
      o.events += out->events;
      res.ours.latencies_us.push_back(s * 1e6);
    }
    const double ratio = o.events_per_s() / r.events_per_s();
    res.min_round_ratio = std::min(res.min_round_ratio, ratio);
    res.max_round_ratio = std::max(res.max_round_ratio, ratio);
    std::printf("  append round %2d: raw %9.0f ev/s   ours %9.0f ev/s   ratio %.3f\n", round + 1,
                r.events_per_s(), o.events_per_s(), ratio);
    std::fflush(stdout);
    for (auto [total, round_side] : {std::pair{&res.raw, &r}, std::pair{&res.ours, &o}}) {
      total->commits += round_side->commits;
      total->events += round_side->events;
      total->seconds += round_side->seconds;
    }
  }
  return res;
}

struct ReplayResult {
  double ours_s = 0, raw_s = 0, ours_cpu_s = 0, raw_cpu_s = 0;
  uint64_t ours_events = 0, raw_events = 0;
  double write_s = 0;
  uint64_t db_bytes = 0;
  double ours_per_s() const { return static_cast<double>(ours_events) / ours_s; }
  double raw_per_s() const { return static_cast<double>(raw_events) / raw_s; }
};

uint64_t DirBytes(const std::string& path) {
  uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(path)) {
    if (e.is_regular_file() && e.path().extension() == ".sst") total += e.file_size();
  }
  return total;
}

ReplayResult RunReplay(const Flags& flags, const TempDir& tmp) {
  ReplayResult res;
  const std::string path = tmp.Sub("replay");

  // 1. Write the log through EventLog (kNone: durability is not what is measured here).
  {
    auto log = OpenLog(path, flags, FsyncPolicy::kNone);
    EventSource source(flags);
    auto t0 = Clock::now();
    for (size_t done = 0; done < flags.replay_events;) {
      const size_t n = std::min<size_t>(1000, flags.replay_events - done);
      Check(log->Commit(source.Next(n)).status(), "replay fill commit");
      done += n;
    }
    res.write_s = Seconds(Clock::now() - t0);
  }
  // 2. Settle the LSM (flush and compact, with the log's own table options) so that every round
  //    reads the same files.
  {
    RawDb raw;
    raw.Open(path, path, /*read_only=*/false);
    for (uint32_t p = 0; p < flags.partitions; ++p) {
      Check(raw.db->Flush(rocksdb::FlushOptions(), raw.events(p)), "flush");
      rocksdb::CompactRangeOptions cro;
      Check(raw.db->CompactRange(cro, raw.events(p), nullptr, nullptr), "compact");
    }
  }
  res.db_bytes = DirBytes(path);

  // 3. Both readers open on the same files, each with its own 64 MiB block cache. (The raw
  //    side opens read-only: a second read-write open would fight over the LOCK file.)
  auto log = OpenLog(path, flags, FsyncPolicy::kNone);
  RawDb raw;
  raw.Open(path, path, /*read_only=*/true);

  uint64_t ours_sum = 0, raw_sum = 0;
  auto replay_ours = [&](uint64_t* count) {
    uint64_t sum = 0, n = 0;
    // EventLog::Scan is what replay uses: one iterator per partition, one reused Envelope.
    for (uint32_t p = 0; p < flags.partitions; ++p) {
      Check(log->Scan(p, 1, UINT64_MAX, [&](const Envelope& e) {
        sum += e.seq() + e.payload().size();
        ++n;
        return true;
      }), "scan");
    }
    *count = n;
    return sum;
  };
  auto replay_raw = [&](uint64_t* count) {
    uint64_t sum = 0, n = 0;
    Envelope e;  // Reused: the cheapest way to parse, which is what a baseline should be.
    for (uint32_t p = 0; p < flags.partitions; ++p) {
      std::unique_ptr<rocksdb::Iterator> it(raw.db->NewIterator(rocksdb::ReadOptions(), raw.events(p)));
      for (it->SeekToFirst(); it->Valid(); it->Next()) {
        if (!e.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
          Die("raw replay: record does not parse");
        }
        sum += e.seq() + e.payload().size();
        ++n;
      }
      Check(it->status(), "raw iterate");
    }
    *count = n;
    return sum;
  };

  uint64_t n = 0;
  raw_sum = replay_raw(&n);  // Warm-up: page cache and code.
  ours_sum = replay_ours(&n);
  if (raw_sum != ours_sum) Die("replay checksums differ between raw and ours");

  for (int round = 0; round < flags.replay_rounds; ++round) {
    double c0 = ThreadCpuSeconds();
    auto t0 = Clock::now();
    if (replay_raw(&n) != raw_sum) Die("raw replay checksum changed");
    double raw_s = Seconds(Clock::now() - t0);
    res.raw_cpu_s += ThreadCpuSeconds() - c0;
    res.raw_s += raw_s;
    res.raw_events += n;
    const uint64_t raw_n = n;

    c0 = ThreadCpuSeconds();
    t0 = Clock::now();
    if (replay_ours(&n) != ours_sum) Die("replay checksum changed");
    double ours_s = Seconds(Clock::now() - t0);
    res.ours_cpu_s += ThreadCpuSeconds() - c0;
    res.ours_s += ours_s;
    res.ours_events += n;
    if (n != flags.replay_events || raw_n != flags.replay_events) {
      Die("replay read " + std::to_string(n) + "/" + std::to_string(raw_n) + " events, want " +
          std::to_string(flags.replay_events));
    }
    std::printf("  replay round %d: raw %10.0f ev/s   ours %10.0f ev/s   ratio %.3f\n", round + 1,
                static_cast<double>(raw_n) / raw_s, static_cast<double>(n) / ours_s,
                raw_s / ours_s);
    std::fflush(stdout);
  }
  return res;
}

int Main(int argc, char** argv) {
  Flags flags;
  CLI::App app("eventlog_bench: EventLog append and replay throughput against raw RocksDB");
  app.add_option("--seconds", flags.seconds, "append: timed seconds per side (split over rounds)")
      ->check(CLI::PositiveNumber);
  app.add_option("--rounds", flags.rounds, "append: interleaved rounds per side")->check(CLI::Range(1, 10000));
  app.add_option("--batch", flags.batch, "append: events per commit")->check(CLI::Range(1, 100000));
  app.add_option("--payload", flags.payload, "payload bytes per event")->check(CLI::Range(1, 1 << 20));
  app.add_option("--partitions", flags.partitions, "log partitions")->check(CLI::Range(1, 4096));
  bool no_fsync = false;
  app.add_flag("--no-fsync", no_fsync,
               "append: FsyncPolicy::kNone vs sync=false (CPU cost only; not the goal measurement)");
  app.add_flag("--state", flags.state,
               "append: with each event also the ledger's per-posting writes (account state, system account "
               "state, consumer position); raw puts the distinct keys once");
  app.add_option("--state-bytes", flags.state_bytes, "append --state: bytes of the account state value")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--replay-events", flags.replay_events, "replay: events in the log")
      ->check(CLI::Range(1, 1'000'000'000));
  app.add_option("--replay-rounds", flags.replay_rounds, "replay: interleaved rounds per side")
      ->check(CLI::Range(1, 1000));
  app.add_option("--chunk", flags.chunk, "replay: events per EventLog::Read")->check(CLI::Range(1, 10'000'000));
  app.add_option("--only", flags.only, "run one measurement")->check(CLI::IsMember({"append", "replay"}));
  app.add_option("--dir", flags.dir, "parent of the data dir (default $TMPDIR or /tmp)");
  app.add_flag("--keep", flags.keep, "keep the data dir");
  std::string raw_order = "key";
  app.add_option("--raw-order", raw_order,
                 "append: order of the raw side's puts: key (sorted, the fastest) or arrival (as ours receives them)")
      ->check(CLI::IsMember({"key", "arrival"}));
  CLI11_PARSE(app, argc, argv);
  flags.fsync = !no_fsync;
  flags.raw_key_order = raw_order == "key";

  TempDir tmp(flags.dir, flags.keep);
  const double load_before = LoadAverage();
  std::printf("eventlog_bench: %ld cpus, load average %.2f, data in %s\n", sysconf(_SC_NPROCESSORS_ONLN),
              load_before, tmp.path().c_str());
  const bool do_append = flags.only.empty() || flags.only == "append";
  const bool do_replay = flags.only.empty() || flags.only == "replay";

  AppendResult a;
  double append_ratio = 0;
  if (do_append) {
    std::printf("append: batch %zu events, payload %zu B, %u partitions, %s, raw puts in %s order, "
                "%d rounds x %.2f s per side%s\n",
                flags.batch, flags.payload, flags.partitions,
                flags.fsync ? "fsync every commit (kEveryCommit / sync=true)" : "NO fsync (kNone / sync=false)",
                flags.raw_key_order ? "key" : "arrival", flags.rounds, flags.seconds / flags.rounds,
                flags.state ? ", with ledger-like state writes (3 per event)" : "");
    std::fflush(stdout);
    a = RunAppend(flags, tmp);
    append_ratio = a.ours.events_per_s() / a.raw.events_per_s();
    std::printf("append: envelope %zu B per event (raw puts 12 B key + %zu B value)\n", a.envelope_bytes,
                a.envelope_bytes);
    std::printf("append raw : %10.0f events/s  %8.1f commits/s  p50 %7.0f us  p99 %7.0f us\n",
                a.raw.events_per_s(), a.raw.commits_per_s(), a.raw.Percentile(0.5), a.raw.Percentile(0.99));
    std::printf("append ours: %10.0f events/s  %8.1f commits/s  p50 %7.0f us  p99 %7.0f us\n",
                a.ours.events_per_s(), a.ours.commits_per_s(), a.ours.Percentile(0.5),
                a.ours.Percentile(0.99));
    std::printf("append overhead of ours: %.0f us per commit, %.2f us per event (mean commit time minus raw)\n",
                a.overhead_us_per_commit(), a.overhead_us_per_commit() / static_cast<double>(flags.batch));
    std::printf("append ratio ours/raw: %.3f (rounds %.3f..%.3f), goal >= %.2f: %s\n", append_ratio,
                a.min_round_ratio, a.max_round_ratio, kAppendGoalRatio,
                append_ratio >= kAppendGoalRatio ? "met" : "MISSED");
    std::fflush(stdout);
  }

  ReplayResult r;
  double replay_ratio = 0;
  if (do_replay) {
    std::printf("replay: %zu events, %u partitions, EventLog::Read chunks of %zu, %d rounds per side\n",
                flags.replay_events, flags.partitions, flags.chunk, flags.replay_rounds);
    std::fflush(stdout);
    r = RunReplay(flags, tmp);
    replay_ratio = r.ours_per_s() / r.raw_per_s();
    std::printf("replay: log written in %.2f s (%.0f events/s, kNone, batches of 1000); %.1f MiB of SST\n",
                r.write_s, static_cast<double>(flags.replay_events) / r.write_s,
                static_cast<double>(r.db_bytes) / (1 << 20));
    std::printf("replay raw : %10.0f events/s  (%.0f ns/event, cpu %.2f s of %.2f s wall)\n", r.raw_per_s(),
                1e9 / r.raw_per_s(), r.raw_cpu_s, r.raw_s);
    std::printf("replay ours: %10.0f events/s  (%.0f ns/event, cpu %.2f s of %.2f s wall)\n", r.ours_per_s(),
                1e9 / r.ours_per_s(), r.ours_cpu_s, r.ours_s);
    std::printf("replay ratio ours/raw: %.3f, goal ours >= %.0f events/s: %s\n", replay_ratio,
                kReplayGoalEventsPerS, r.ours_per_s() >= kReplayGoalEventsPerS ? "met" : "MISSED");
    std::fflush(stdout);
  }

  std::string json = "{\"bench\":\"eventlog\"";
  char buf[256];
  auto add = [&](const char* key, double v, const char* fmt = "%.1f") {
    std::snprintf(buf, sizeof buf, fmt, v);
    json += ",\"" + std::string(key) + "\":" + buf;
  };
  auto add_bool = [&](const char* key, bool v) { json += ",\"" + std::string(key) + "\":" + (v ? "true" : "false"); };
  if (do_append) {
    add("append_events_per_s", a.ours.events_per_s());
    add("append_raw_events_per_s", a.raw.events_per_s());
    add("append_commits_per_s", a.ours.commits_per_s());
    add("append_raw_commits_per_s", a.raw.commits_per_s());
    add("append_ratio", append_ratio, "%.3f");
    add("append_overhead_us_per_event", a.overhead_us_per_commit() / static_cast<double>(flags.batch), "%.2f");
    add("append_p99_us", a.ours.Percentile(0.99), "%.0f");
    add("append_raw_p99_us", a.raw.Percentile(0.99), "%.0f");
    add("append_batch", static_cast<double>(flags.batch), "%.0f");
    add("append_envelope_bytes", static_cast<double>(a.envelope_bytes), "%.0f");
    add_bool("append_fsync", flags.fsync);
    add_bool("append_raw_key_order", flags.raw_key_order);
    add_bool("append_state", flags.state);
  }
  if (do_replay) {
    add("replay_events_per_s", r.ours_per_s());
    add("replay_raw_events_per_s", r.raw_per_s());
    add("replay_ratio", replay_ratio, "%.3f");
    add("replay_events", static_cast<double>(flags.replay_events), "%.0f");
  }
  add("append_goal_ratio", kAppendGoalRatio, "%.1f");
  add("replay_goal_events_per_s", kReplayGoalEventsPerS, "%.0f");
  // A goal counts as met only when it was measured, and the append goal only with fsync on and
  // the events alone (--state is a diagnostic of the ledger's write pattern).
  add_bool("append_goal_met", do_append && flags.fsync && !flags.state && append_ratio >= kAppendGoalRatio);
  add_bool("replay_goal_met", do_replay && r.ours_per_s() >= kReplayGoalEventsPerS);
  add("cpus", static_cast<double>(sysconf(_SC_NPROCESSORS_ONLN)), "%.0f");
  add("loadavg_start", load_before, "%.2f");
  add("loadavg_end", LoadAverage(), "%.2f");
  json += "}";
  std::printf("%s\n", json.c_str());
  return 0;
}

}  // namespace
}  // namespace wattledger::eventlog

int main(int argc, char** argv) {
  wattledger::bench::Name() = "eventlog_bench";
  return wattledger::eventlog::Main(argc, argv);
}

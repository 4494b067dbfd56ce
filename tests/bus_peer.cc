// bus_peer: the two ends of kafka_fault_test, each in its own process so that the test can kill
// one with SIGKILL while the other carries on.
//
//   bus_peer produce --dir D --brokers B --events N [--seed S] [--pause-us U]
//     Opens EventLog "src" (4 partitions) in D, publishes it as topic "src" on the Kafka bus,
//     appends N events in random batches (aggregate keys k<i%13>, pausing U us between batches so
//     that the faults the test injects meet a live stream), waits until the relay has everything
//     confirmed by the broker, prints "done relayed=<n> restarts=<r>" and exits 0.
//   bus_peer consume --dir D --brokers B --expect N
//     Opens EventLog "sink" (3 partitions, unlike the source on purpose) in D and runs a
//     runtime::Processor on topic "src" whose handler records state "applied/<partition>/<seq>"
//     = hex hash for every message, and counts in "dups/<writer partition>" any message it sees
//     twice. Prints "applied <count>" as the count of stored keys grows and exits 0 with
//     "done applied=<n> dups=<d>" once N are stored.
//   bus_peer dump --brokers B [--topic src]
//     Diagnostics: reads every partition of the topic from its start to its end and prints
//     "msg <partition> <offset> <seq>" per message, then "end".
// Any mode takes --property KEY=VALUE (repeatable), a librdkafka property applied last.
// Exit codes: 2 usage, 3 open/start failed, 4 timed out, 5 a commit failed.
#include <librdkafka/rdkafka.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <unordered_set>

#include "wattledger/bus/bus.h"
#include "wattledger/eventlog/event_log.h"
#include "wattledger/runtime/processor.h"

namespace {

using namespace wattledger;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr uint32_t kSourcePartitions = 4;
constexpr uint32_t kSinkPartitions = 3;
constexpr auto kProduceTimeout = 120s;
constexpr auto kConsumeTimeout = 150s;

struct Flags {
  std::string mode, dir, brokers, topic = "src";
  std::vector<std::pair<std::string, std::string>> properties;
  uint64_t events = 0, expect = 0, seed = 1, pause_us = 0;
};

bool ParseFlags(int argc, char** argv, Flags* f) {
  if (argc < 2) return false;
  f->mode = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--dir") {
      f->dir = v;
    } else if (k == "--brokers") {
      f->brokers = v;
    } else if (k == "--events") {
      f->events = std::strtoull(v.c_str(), nullptr, 10);
    } else if (k == "--expect") {
      f->expect = std::strtoull(v.c_str(), nullptr, 10);
    } else if (k == "--seed") {
      f->seed = std::strtoull(v.c_str(), nullptr, 10);
    } else if (k == "--pause-us") {
      f->pause_us = std::strtoull(v.c_str(), nullptr, 10);
    } else if (k == "--topic") {
      f->topic = v;
    } else if (k == "--property" && v.find('=') != std::string::npos) {
      f->properties.emplace_back(v.substr(0, v.find('=')), v.substr(v.find('=') + 1));
    } else {
      std::fprintf(stderr, "bus_peer: unknown flag %s\n", k.c_str());
      return false;
    }
  }
  return (!f->dir.empty() || f->mode == "dump") && !f->brokers.empty();
}

bus::KafkaOptions Kafka(const Flags& f, const std::string& client_id) {
  bus::KafkaOptions k;
  k.brokers = f.brokers;
  k.client_id = client_id;
  // Reconnect quickly once a downed broker is back, so that the test does not wait on backoff.
  k.properties = {{"reconnect.backoff.ms", "50"},
                  {"reconnect.backoff.max.ms", "500"},
                  {"topic.metadata.refresh.interval.ms", "1000"},
                  {"log_level", "4"}};
  k.properties.insert(k.properties.end(), f.properties.begin(), f.properties.end());
  return k;
}

std::unique_ptr<eventlog::EventLog> OpenLog(const std::string& dir, const std::string& name, uint32_t partitions) {
  eventlog::Options o;
  o.path = dir;
  o.name = name;
  o.partitions = partitions;
  o.fsync = eventlog::FsyncPolicy::kEveryCommit;
  auto log = eventlog::EventLog::Open(o);
  if (!log.ok()) {
    std::fprintf(stderr, "bus_peer: open %s: %s\n", dir.c_str(), log.status().ToString().c_str());
    std::exit(3);
  }
  return std::move(log).value();
}

int Produce(const Flags& f) {
  auto log = OpenLog(f.dir, "src", kSourcePartitions);
  auto kafka = bus::NewKafkaBus(Kafka(f, "producer"));
  if (!kafka.ok()) {
    std::fprintf(stderr, "bus_peer: %s\n", kafka.status().ToString().c_str());
    return 3;
  }
  if (Status s = (*kafka)->Publish("src", log.get()); !s.ok()) {
    std::fprintf(stderr, "bus_peer: publish: %s\n", s.ToString().c_str());
    return 3;
  }
  std::mt19937_64 rng(f.seed);
  uint64_t appended = 0;
  for (uint32_t p = 0; p < kSourcePartitions; ++p) appended += log->Head(p);
  while (appended < f.events) {
    const uint64_t n = std::min<uint64_t>(f.events - appended, 1 + rng() % 100);
    eventlog::WriteSet ws;
    for (uint64_t i = appended; i < appended + n; ++i) {
      eventlog::NewEvent e;
      e.aggregate_key = "k" + std::to_string(i % 13);
      e.partition = runtime::PartitionForKey(e.aggregate_key, kSourcePartitions);
      e.type = "test.Produced";
      e.payload = "event-" + std::to_string(i) + std::string(rng() % 64, 'x');
      e.actor = "bus_peer";
      e.causation.set_request_id("produce-" + std::to_string(i));
      ws.Append(std::move(e));
    }
    auto done = log->Commit(std::move(ws));
    if (!done.ok()) {
      std::fprintf(stderr, "bus_peer: commit: %s\n", done.status().ToString().c_str());
      return 5;
    }
    appended += n;
    std::printf("appended %" PRIu64 "\n", appended);
    std::fflush(stdout);
    // Pacing, not synchronisation: it spreads the stream over the time the faults are injected.
    if (f.pause_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(f.pause_us));
  }
  // Wait (bounded) until the broker confirmed every event.
  const auto deadline = SteadyClock::now() + kProduceTimeout;
  bus::RelayStats stats = (*kafka)->relay_stats("src");
  while (stats.backlog > 0 && SteadyClock::now() < deadline) {
    log->WaitForCommit(log->CommitCount(), 50ms);  // Relay position commits mark progress.
    stats = (*kafka)->relay_stats("src");
  }
  if (stats.backlog > 0) {
    std::fprintf(stderr, "bus_peer: relay backlog still %" PRId64 " after %llds\n", stats.backlog,
                 static_cast<long long>(kProduceTimeout.count()));
    return 4;
  }
  (*kafka)->Stop();
  std::printf("done relayed=%" PRIu64 " restarts=%" PRIu64 "\n", stats.relayed, stats.restarts);
  std::fflush(stdout);
  return 0;
}

// Records each consumed event once under "applied/<source partition>/<seq>"; a second sighting
// (which exactly-once processing must make impossible) is counted in "dups/<partition>".
class RecordingHandler : public runtime::Handler {
 public:
  explicit RecordingHandler(eventlog::EventLog* log) : log_(log), pending_(kSinkPartitions), dups_(kSinkPartitions) {}

  void OnMessage(uint32_t p, const bus::Message& m, eventlog::WriteSet& ws) override {
    const auto& e = m.envelope;
    std::string key = "applied/" + std::to_string(e.partition()) + "/" + std::to_string(e.seq());
    bool seen = pending_[p].count(key) > 0;
    if (!seen) {
      auto stored = log_->GetState(key);
      // A read error is not a reason to apply twice: treat it as seen, and it shows as a dup.
      seen = !stored.ok() || stored->has_value();
    }
    if (seen) {
      dups_[p]++;
      ws.PutState("dups/" + std::to_string(p), std::to_string(dups_[p]));
      std::fprintf(stderr, "bus_peer: duplicate delivery of %s (topic offset %" PRId64 ")\n", key.c_str(), m.offset);
      return;
    }
    pending_[p].insert(key);
    ws.PutState(std::move(key), eventlog::HexEncode(e.hash()));
  }

  Status Reload(uint32_t p) override {
    // What the store has is checked with GetState; only what was never committed is forgotten.
    pending_[p].clear();
    auto v = log_->GetState("dups/" + std::to_string(p));
    if (!v.ok()) return v.status();
    dups_[p] = v->has_value() ? std::strtoull((*v)->c_str(), nullptr, 10) : 0;
    return Status::Ok();
  }

 private:
  eventlog::EventLog* log_;
  std::vector<std::unordered_set<std::string>> pending_;  // Per writer partition: its thread only.
  std::vector<uint64_t> dups_;
};

uint64_t CountApplied(eventlog::EventLog& log) {
  uint64_t n = 0;
  Status s = log.ScanState("applied/", [&](std::string_view, std::string_view) {
    ++n;
    return true;
  });
  if (!s.ok()) std::fprintf(stderr, "bus_peer: scan: %s\n", s.ToString().c_str());
  return n;
}

int Consume(const Flags& f) {
  auto log = OpenLog(f.dir, "sink", kSinkPartitions);
  auto kafka = bus::NewKafkaBus(Kafka(f, "consumer"));
  if (!kafka.ok()) {
    std::fprintf(stderr, "bus_peer: %s\n", kafka.status().ToString().c_str());
    return 3;
  }
  RecordingHandler handler(log.get());
  for (uint32_t p = 0; p < kSinkPartitions; ++p) {
    if (Status s = handler.Reload(p); !s.ok()) {
      std::fprintf(stderr, "bus_peer: reload: %s\n", s.ToString().c_str());
      return 3;
    }
  }
  runtime::Processor processor({"sink", {"src"}}, log.get(), kafka->get(), &handler);
  if (Status s = processor.Start(); !s.ok()) {
    std::fprintf(stderr, "bus_peer: start: %s\n", s.ToString().c_str());
    return 3;
  }
  const auto deadline = SteadyClock::now() + kConsumeTimeout;
  uint64_t applied = CountApplied(*log), reported = UINT64_MAX;
  while (applied < f.expect && SteadyClock::now() < deadline) {
    if (applied != reported) {
      std::printf("applied %" PRIu64 "\n", applied);
      std::fflush(stdout);
      reported = applied;
    }
    // Counting is a scan over every applied key: do it at most every 50 ms.
    const uint64_t commits = log->CommitCount();
    const auto next_scan = SteadyClock::now() + 50ms;
    log->WaitForCommit(commits, 200ms);
    std::this_thread::sleep_until(next_scan);
    applied = CountApplied(*log);
  }
  processor.Stop();
  (*kafka)->Stop();
  applied = CountApplied(*log);
  uint64_t dups = 0;
  for (uint32_t p = 0; p < kSinkPartitions; ++p) {
    auto v = log->GetState("dups/" + std::to_string(p));
    if (v.ok() && v->has_value()) dups += std::strtoull((*v)->c_str(), nullptr, 10);
  }
  std::printf("applied %" PRIu64 "\n", applied);
  if (applied < f.expect) {
    std::fprintf(stderr, "bus_peer: applied only %" PRIu64 " of %" PRIu64 " in %llds\n", applied, f.expect,
                 static_cast<long long>(kConsumeTimeout.count()));
    std::fflush(stdout);
    return 4;
  }
  std::printf("done applied=%" PRIu64 " dups=%" PRIu64 "\n", applied, dups);
  std::fflush(stdout);
  return 0;
}

// Reads the raw topic with a plain librdkafka consumer (no wattledger code in the way), so that
// the order in which the broker holds the events can be compared with their seqs.
int Dump(const Flags& f) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  std::vector<std::pair<std::string, std::string>> props = {
      {"bootstrap.servers", f.brokers}, {"group.id", "bus_peer-dump"}, {"enable.auto.commit", "false"},
      {"enable.partition.eof", "true"}, {"log_level", "3"}};
  props.insert(props.end(), f.properties.begin(), f.properties.end());
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      std::fprintf(stderr, "bus_peer: %s\n", err);
      return 2;
    }
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (rk == nullptr) {
    std::fprintf(stderr, "bus_peer: %s\n", err);
    return 3;
  }
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(kSourcePartitions));
  for (uint32_t p = 0; p < kSourcePartitions; ++p) {
    rd_kafka_topic_partition_list_add(list, f.topic.c_str(), static_cast<int32_t>(p))->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  uint32_t at_end = 0;
  const auto deadline = SteadyClock::now() + 30s;
  while (at_end < kSourcePartitions && SteadyClock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      at_end++;
    } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      eventlog::Envelope env;
      const bool parsed = env.ParseFromArray(m->payload, static_cast<int>(m->len));
      std::printf("msg %" PRId32 " %" PRId64 " %" PRIu64 "\n", m->partition, m->offset, parsed ? env.seq() : 0);
    }
    rd_kafka_message_destroy(m);
  }
  std::printf("%s\n", at_end == kSourcePartitions ? "end" : "timeout");
  std::fflush(stdout);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return at_end == kSourcePartitions ? 0 : 4;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  if (!ParseFlags(argc, argv, &f) || (f.mode != "produce" && f.mode != "consume" && f.mode != "dump")) {
    std::fprintf(stderr,
                 "usage: bus_peer produce --dir D --brokers B --events N [--seed S] [--pause-us U]\n"
                 "       bus_peer consume --dir D --brokers B --expect N\n"
                 "       bus_peer dump --brokers B [--topic T]\n"
                 "       any mode: --property KEY=VALUE (librdkafka, repeatable)\n");
    return 2;
  }
  if (f.mode == "dump") return Dump(f);
  return f.mode == "produce" ? Produce(f) : Consume(f);
}

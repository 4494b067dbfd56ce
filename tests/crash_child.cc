// crash_child: appends to an EventLog under load until it is killed; crash_test kills it with
// SIGKILL at random moments and checks that everything it acknowledged survived.
//
//   crash_child --dir DIR --seed SEED [--max-batches N]
//
// Each batch is one WriteSet: 1..64 events to random partitions, state "total" (events committed
// so far, this batch included), state "batches" (this batch's number) and idempotency key
// "batch-<n>" whose value is the batch's event count. Only after Commit returns does it print,
// and flush, one line per event and one for the batch:
//   ack <partition> <seq> <hex hash>
//   batch <n> <events>
// Exit codes: 2 bad arguments, 3 the log would not open, 4 a commit failed, 0 max batches reached.
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "wattledger/eventlog/event_log.h"

namespace {

using namespace wattledger;

constexpr uint32_t kPartitions = 4;

uint64_t StateNumber(eventlog::EventLog& log, const char* key) {
  auto v = log.GetState(key);
  if (!v.ok()) {
    std::fprintf(stderr, "crash_child: read state %s: %s\n", key, v.status().ToString().c_str());
    std::exit(3);
  }
  return v->has_value() ? std::strtoull((*v)->c_str(), nullptr, 10) : 0;
}

int Run(int argc, char** argv) {
  std::string dir;
  uint64_t seed = 1;
  uint64_t max_batches = 1'000'000;  // A bound, not a goal: the test kills us long before.
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--dir") {
      dir = argv[i + 1];
    } else if (flag == "--seed") {
      seed = std::strtoull(argv[i + 1], nullptr, 10);
    } else if (flag == "--max-batches") {
      max_batches = std::strtoull(argv[i + 1], nullptr, 10);
    } else {
      std::fprintf(stderr, "crash_child: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (dir.empty()) {
    std::fprintf(stderr, "usage: crash_child --dir DIR --seed SEED [--max-batches N]\n");
    return 2;
  }

  eventlog::Options options;
  options.path = dir;
  options.name = "crash";
  options.partitions = kPartitions;
  options.fsync = eventlog::FsyncPolicy::kEveryCommit;
  auto opened = eventlog::EventLog::Open(options);
  if (!opened.ok()) {
    std::fprintf(stderr, "crash_child: open %s: %s\n", dir.c_str(), opened.status().ToString().c_str());
    return 3;
  }
  auto log = std::move(opened).value();

  // Carry on from what the previous (killed) run committed.
  uint64_t total = StateNumber(*log, "total");
  uint64_t batch = StateNumber(*log, "batches");

  // One buffered write per batch keeps the acks of a batch together and the syscalls few.
  static char out_buffer[1 << 16];
  std::setvbuf(stdout, out_buffer, _IOFBF, sizeof out_buffer);

  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> count_dist(1, 64);
  std::uniform_int_distribution<uint32_t> part_dist(0, kPartitions - 1);
  std::uniform_int_distribution<int> size_dist(8, 256);
  for (uint64_t round = 0; round < max_batches; ++round) {
    ++batch;
    const int n = count_dist(rng);
    eventlog::WriteSet ws;
    for (int i = 0; i < n; ++i) {
      eventlog::NewEvent e;
      e.partition = part_dist(rng);
      e.aggregate_key = "agg-" + std::to_string(rng() % 97);
      e.type = "crash.Appended";
      e.payload = std::string(static_cast<size_t>(size_dist(rng)), static_cast<char>('a' + rng() % 26));
      e.actor = "crash_child";
      e.causation.set_request_id("batch-" + std::to_string(batch));
      ws.Append(std::move(e));
    }
    total += static_cast<uint64_t>(n);
    ws.PutState("total", std::to_string(total));
    ws.PutState("batches", std::to_string(batch));
    ws.PutIdempotency("batch-" + std::to_string(batch), std::to_string(n));
    ws.ReturnEnvelopes();  // Every event is acknowledged with its hash.
    auto committed = log->Commit(std::move(ws));
    if (!committed.ok()) {
      std::fprintf(stderr, "crash_child: commit: %s\n", committed.status().ToString().c_str());
      return 4;
    }
    // Acknowledge only now: the commit is durable.
    for (const auto& e : committed->envelopes) {
      std::printf("ack %" PRIu32 " %" PRIu64 " %s\n", e.partition(), e.seq(), eventlog::HexEncode(e.hash()).c_str());
    }
    std::printf("batch %" PRIu64 " %d\n", batch, n);
    if (std::fflush(stdout) != 0) return 0;  // The test went away.
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }

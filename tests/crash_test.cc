// Invariant 4 of the design: the log is gap-free and hash-chained, and acknowledged events survive
// kill -9. crash_child appends under load and acknowledges each event on stdout only after its
// commit returned; this test kills it with SIGKILL at random (seeded) moments, many times on the
// same directory, and after every kill opens the log itself and checks that
//   - every event ever acknowledged is there, at the same (partition, seq), with the same hash;
//   - within a run, the acknowledged seqs of a partition continue the previous head without a
//     hole or a repeat;
//   - Verify() passes: seq runs 1, 2, 3... and the hash chain holds;
//   - state "total" equals the sum of the partition heads (events and state are one write);
//   - the idempotency key of every acknowledged batch is there, and that of the last committed
//     batch, but none beyond it.
// Seed: WL_TEST_SEED (default fixed); rounds: WL_CRASH_ROUNDS (default 30).
#include <gtest/gtest.h>

#include <cinttypes>
#include <cstdlib>
#include <map>
#include <random>
#include <sstream>
#include <unordered_map>

#include "subprocess.h"
#include "wattledger/eventlog/event_log.h"
#include "wattledger/testing/temp_dir.h"

namespace wattledger {
namespace {

using testing::Clock;
using testing::In;
using testing::Subprocess;
using namespace std::chrono_literals;

constexpr uint32_t kPartitions = 4;

uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

// What the child acknowledged in one run, in the order it printed it.
struct Acks {
  std::vector<std::tuple<uint32_t, uint64_t, std::string>> events;
  std::map<uint64_t, int> batches;  // batch number -> event count
  size_t lines = 0;
};

// Parses one stdout line of crash_child; a line it cannot parse fails the test.
void ParseLine(const std::string& line, Acks* acks) {
  std::istringstream in(line);
  std::string word;
  in >> word;
  if (word == "ack") {
    uint32_t p = 0;
    uint64_t seq = 0;
    std::string hash;
    ASSERT_TRUE(in >> p >> seq >> hash) << "bad line: " << line;
    ASSERT_LT(p, kPartitions) << line;
    ASSERT_EQ(hash.size(), 2 * eventlog::kHashBytes) << line;
    acks->events.emplace_back(p, seq, hash);
  } else if (word == "batch") {
    uint64_t n = 0;
    int count = 0;
    ASSERT_TRUE(in >> n >> count) << "bad line: " << line;
    acks->batches[n] = count;
  } else {
    FAIL() << "unexpected line from crash_child: " << line;
  }
  acks->lines++;
}

class CrashTest : public ::testing::Test {
 protected:
  eventlog::Options LogOptions() const {
    eventlog::Options o;
    o.path = dir_.Sub("log");
    o.name = "crash";
    o.partitions = kPartitions;
    o.fsync = eventlog::FsyncPolicy::kEveryCommit;
    return o;
  }

  // Opens the log the killed child left and checks it against everything acknowledged so far.
  // Updates heads_ to the heads found.
  void CheckAfterKill(int round) {
    SCOPED_TRACE("after kill " + std::to_string(round));
    auto opened = eventlog::EventLog::Open(LogOptions());
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    auto log = std::move(opened).value();

    auto report = log->Verify();
    ASSERT_TRUE(report.ok()) << report.status().ToString();
    ASSERT_TRUE(report->ok) << report->problem;
    ASSERT_EQ(report->heads.size(), kPartitions);

    uint64_t sum = 0;
    for (uint32_t p = 0; p < kPartitions; ++p) {
      const uint64_t head = log->Head(p);
      ASSERT_EQ(head, report->heads[p]) << "in-memory head differs from the stored one, partition " << p;
      ASSERT_GE(head, heads_[p]) << "partition " << p << " lost committed events";
      sum += head;
      // Every acknowledged event of this partition, compared by hash with what is stored.
      const auto& acked = acked_[p];
      for (uint64_t from = 1; from <= head;) {
        auto events = log->Read(p, from, 4096);
        ASSERT_TRUE(events.ok()) << events.status().ToString();
        ASSERT_FALSE(events->empty()) << "partition " << p << " has no seq " << from << " below head " << head;
        for (const auto& e : *events) {
          ASSERT_EQ(e.seq(), from) << "partition " << p;
          auto it = acked.find(e.seq());
          if (it != acked.end()) {
            ASSERT_EQ(eventlog::HexEncode(e.hash()), it->second) << "partition " << p << " seq " << e.seq();
          }
          ++from;
        }
      }
      if (!acked.empty()) {
        uint64_t max_acked = 0;
        for (const auto& [seq, _] : acked) max_acked = std::max(max_acked, seq);
        ASSERT_LE(max_acked, head) << "partition " << p << ": acknowledged seq " << max_acked
                                   << " is missing after kill -9 (head " << head << ")";
      }
      heads_[p] = head;
    }

    auto total = log->GetState("total");
    ASSERT_TRUE(total.ok());
    const uint64_t stored_total = total->has_value() ? std::stoull(**total) : 0;
    EXPECT_EQ(stored_total, sum) << "state and events were not committed atomically";

    for (const auto& [n, count] : acked_batches_) {
      auto v = log->GetIdempotency("batch-" + std::to_string(n));
      ASSERT_TRUE(v.ok());
      ASSERT_TRUE(v->has_value()) << "idempotency key of acknowledged batch " << n << " is missing";
      EXPECT_EQ(**v, std::to_string(count)) << "batch " << n;
    }
    auto batches = log->GetState("batches");
    ASSERT_TRUE(batches.ok());
    const uint64_t last_batch = batches->has_value() ? std::stoull(**batches) : 0;
    if (last_batch > 0) {
      auto last = log->GetIdempotency("batch-" + std::to_string(last_batch));
      ASSERT_TRUE(last.ok() && last->has_value()) << "last committed batch " << last_batch << " has no key";
    }
    auto next = log->GetIdempotency("batch-" + std::to_string(last_batch + 1));
    ASSERT_TRUE(next.ok());
    EXPECT_FALSE(next->has_value()) << "batch " << last_batch + 1 << " has a key but state says "
                                    << last_batch << " batches";
    if (!acked_batches_.empty()) {
      EXPECT_GE(last_batch, acked_batches_.rbegin()->first);
    }
  }

  // Adds one run's acknowledgements; checks they continue the heads found before the run.
  void Record(const Acks& acks) {
    std::vector<uint64_t> next(heads_.begin(), heads_.end());
    for (auto& n : next) ++n;
    for (const auto& [p, seq, hash] : acks.events) {
      // The run starts from the stored head; a commit can land unacknowledged only at the very
      // end of a run (killed before printing), so within a run there is no hole and no repeat.
      ASSERT_EQ(seq, next[p]) << "partition " << p << ": acknowledged seq out of order";
      ++next[p];
      ASSERT_TRUE(acked_[p].emplace(seq, hash).second) << "partition " << p << " seq " << seq << " acked twice";
      acked_events_++;
    }
    for (const auto& [n, count] : acks.batches) acked_batches_[n] = count;
  }

  ::wattledger::testing::TempDir dir_;
  std::vector<uint64_t> heads_ = std::vector<uint64_t>(kPartitions, 0);
  std::vector<std::unordered_map<uint64_t, std::string>> acked_ =
      std::vector<std::unordered_map<uint64_t, std::string>>(kPartitions);
  std::map<uint64_t, int> acked_batches_;
  uint64_t acked_events_ = 0;
};

TEST_F(CrashTest, AcknowledgedEventsSurviveKill9) {
  const uint64_t seed = EnvNumber("WL_TEST_SEED", 20240611);
  const int rounds = static_cast<int>(EnvNumber("WL_CRASH_ROUNDS", 30));
  ASSERT_GE(rounds, 1);
  std::printf("crash_test: seed %" PRIu64 ", %d rounds (WL_TEST_SEED, WL_CRASH_ROUNDS)\n", seed, rounds);
  std::mt19937_64 rng(seed);
  const auto test_deadline = In(150s);
  int killed_mid_stream = 0;

  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    ASSERT_LT(Clock::now(), test_deadline) << "out of time after " << round << " rounds";
    Subprocess child;
    const std::string err_path = dir_.Sub("child-" + std::to_string(round) + ".stderr");
    std::string started = child.Start({{WL_CRASH_CHILD, "--dir", dir_.Sub("log"), "--seed", std::to_string(rng())},
                                       false, err_path});
    ASSERT_EQ(started, "") << started;

    // Three kinds of moment: after many acks (deep in the load), after a few (soon after
    // recovery), or after a random few milliseconds (possibly before or during Open).
    const int mode = round % 3;
    const size_t kill_after_lines = mode == 0 ? 1 + rng() % 3000 : 1 + rng() % 40;
    const auto kill_at = Clock::now() + std::chrono::microseconds(rng() % 150'000);
    Acks acks;
    std::string line;
    const auto round_deadline = In(20s);
    while (true) {
      if (mode == 2) {
        if (Clock::now() >= kill_at) break;
        auto r = child.ReadLine(&line, kill_at);
        if (r == Subprocess::Read::kLine) ParseLine(line, &acks);
        if (r == Subprocess::Read::kEof) break;
        continue;
      }
      if (acks.lines >= kill_after_lines) break;
      auto r = child.ReadLine(&line, round_deadline);
      ASSERT_NE(r, Subprocess::Read::kTimeout) << "crash_child made no progress in 20 s\n" << child.StderrTail();
      if (r == Subprocess::Read::kEof) break;
      ParseLine(line, &acks);
      if (HasFatalFailure()) return;
    }
    auto status = child.Kill(In(10s));
    ASSERT_TRUE(status.has_value()) << "crash_child did not die after SIGKILL";
    ASSERT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL)
        << "crash_child ended on its own (" << Subprocess::DescribeStatus(status) << ")\n"
        << child.StderrTail();
    // Lines already in the pipe were printed after their commit returned: they are acks too.
    for (const auto& rest : child.DrainLines(In(5s))) ParseLine(rest, &acks);
    if (HasFatalFailure()) return;
    if (!acks.events.empty()) killed_mid_stream++;

    Record(acks);
    if (HasFatalFailure()) return;
    CheckAfterKill(round);
    if (HasFatalFailure()) return;
  }

  uint64_t stored = 0;
  for (auto h : heads_) stored += h;
  std::printf("crash_test: %d kills, %d with acks in flight, %" PRIu64 " events acknowledged, %" PRIu64
              " stored, %zu batches acknowledged\n",
              rounds, killed_mid_stream, acked_events_, stored, acked_batches_.size());
  // A run that never got going proves nothing; make sure most kills hit a loaded writer.
  EXPECT_GE(killed_mid_stream, rounds / 2);
  EXPECT_GT(acked_events_, 1000u);
}

}  // namespace
}  // namespace wattledger

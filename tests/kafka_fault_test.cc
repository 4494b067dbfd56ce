// Exactly-once in effect across processes, through Kafka faults and consumer crashes.
//
// ExactlyOnceThroughBrokerFaultsAndConsumerCrashes: three processes besides the test.
// `wattledger mock-kafka` (librdkafka's mock cluster, 3 brokers, topic src with 4 partitions); a
// producer (`bus_peer produce`) whose EventLog "src" is published to the topic by the outbox
// relay; a consumer (`bus_peer consume`) whose runtime::Processor applies every message to its
// own EventLog "sink" (3 partitions) as state "applied/<source partition>/<seq>" = hash. While
// the stream runs, the test slows the brokers, injects produce and fetch errors, takes broker 1
// down and up again (all through the mock cluster's stdin), and kills the consumer with SIGKILL
// twice, restarting it on the same directory. At the end the producer's log verifies and holds N
// events; the consumer's log verifies and holds exactly one applied/ key per source event, with
// that event's hash, no other key, and the handler never saw a message twice. If the consumer
// stops making progress, the test reads the raw topic (`bus_peer dump`) and says where the seqs
// in it break, so that a stall is explained, not just timed out.
//
// RelayConfirmsOnlyWhatTheBrokerHolds: the fault of that run that loses events, made
// deterministic in one process: a produce request fails while the next request for the same
// partition is already in flight.
//
// Seed: WL_TEST_SEED (default fixed); events: WL_KAFKA_EVENTS (default 12000); WL_TEST_VERBOSE=1
// prints the children's stderr even when the test passes; WL_RELAY_PROPERTY=KEY=VALUE adds one
// librdkafka property to the relay's producer in both tests (to try a fix without a rebuild).
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <cinttypes>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "subprocess.h"
#include "wattledger/bus/bus.h"
#include "wattledger/eventlog/event_log.h"
#include "wattledger/testing/temp_dir.h"

namespace wattledger {
namespace {

using testing::Clock;
using testing::In;
using testing::Subprocess;
using namespace std::chrono_literals;

constexpr uint32_t kSourcePartitions = 4;
constexpr uint32_t kSinkPartitions = 3;

uint64_t EnvNumber(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

std::string BinDir() {
  const char* d = std::getenv("WL_BIN_DIR");
  return d != nullptr ? d : "";
}

// "applied 123" -> 123; "done ..." -> handled by the caller.
bool ParseCount(const std::string& line, const std::string& word, uint64_t* out) {
  std::istringstream in(line);
  std::string w;
  uint64_t v = 0;
  if (!(in >> w >> v) || w != word) return false;
  *out = v;
  return true;
}

std::unique_ptr<eventlog::EventLog> OpenLog(const std::string& dir, const std::string& name, uint32_t partitions) {
  eventlog::Options o;
  o.path = dir;
  o.name = name;
  o.partitions = partitions;
  auto log = eventlog::EventLog::Open(o);
  EXPECT_TRUE(log.ok()) << dir << ": " << log.status().ToString();
  return log.ok() ? std::move(log).value() : nullptr;
}

class KafkaFaultTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() || std::getenv("WL_TEST_VERBOSE") != nullptr) {
      std::printf("---- mock-kafka stderr ----\n%s\n", mock_.StderrTail().c_str());
      std::printf("---- producer stderr ----\n%s\n", producer_.StderrTail().c_str());
      for (int i = 1; i <= consumer_runs_; ++i) {
        std::string tail = Tail(dir_.Sub("consumer-" + std::to_string(i) + ".stderr"));
        std::printf("---- consumer run %d stderr ----\n%s\n", i, tail.c_str());
      }
    }
    // Children die with their Subprocess; the mock cluster also stops when its stdin closes.
    mock_.CloseStdin();
  }

  static std::string Tail(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string s = ss.str();
    return s.size() > 4000 ? "..." + s.substr(s.size() - 4000) : s;
  }

  void StartMock() {
    ASSERT_NE(BinDir(), "") << "WL_BIN_DIR is not set; run through ctest";
    std::string err = mock_.Start({{BinDir() + "/wattledger", "mock-kafka", "--brokers", "3", "--topic", "src:4"},
                                   true, dir_.Sub("mock.stderr")});
    ASSERT_EQ(err, "");
    std::string line;
    ASSERT_EQ(mock_.ReadLine(&line, In(20s)), Subprocess::Read::kLine)
        << "mock-kafka printed no bootstrap servers\n" << mock_.StderrTail();
    ASSERT_NE(line.find(':'), std::string::npos) << "not a broker list: " << line;
    brokers_ = line;
  }

  // Sends one control line to the mock cluster and expects "ok".
  void Control(const std::string& line) {
    std::printf("kafka_fault_test: mock-kafka <- %s\n", line.c_str());
    ASSERT_TRUE(mock_.WriteLine(line)) << "mock-kafka went away";
    std::string reply;
    ASSERT_EQ(mock_.ReadLine(&reply, In(10s)), Subprocess::Read::kLine) << "no answer to " << line;
    ASSERT_EQ(reply, "ok") << line;
  }

  void StartProducer(uint64_t events, uint64_t seed) {
    std::vector<std::string> argv = {WL_BUS_PEER, "produce", "--dir", dir_.Sub("producer"), "--brokers", brokers_,
                                     "--events", std::to_string(events), "--seed", std::to_string(seed),
                                     "--pause-us", "40000"};
    if (const char* prop = std::getenv("WL_RELAY_PROPERTY"); prop != nullptr && *prop != '\0') {
      argv.insert(argv.end(), {"--property", prop});
    }
    std::string err = producer_.Start({argv, false, dir_.Sub("producer.stderr")});
    ASSERT_EQ(err, "");
  }

  void StartConsumer(uint64_t expect) {
    ++consumer_runs_;
    std::string err = consumer_.Start({{WL_BUS_PEER, "consume", "--dir", dir_.Sub("consumer"), "--brokers", brokers_,
                                        "--expect", std::to_string(expect)},
                                       false, dir_.Sub("consumer-" + std::to_string(consumer_runs_) + ".stderr")});
    ASSERT_EQ(err, "");
  }

  // Reads the topic as the broker holds it and describes where seqs are out of order: for each
  // partition, the first offset whose seq skips ahead, and where the skipped seqs actually are.
  std::string DescribeTopicOrder() {
    Subprocess dump;
    std::string err = dump.Start({{WL_BUS_PEER, "dump", "--brokers", brokers_}, false, dir_.Sub("dump.stderr")});
    if (!err.empty()) return "dump: " + err;
    std::map<uint32_t, std::vector<std::pair<int64_t, uint64_t>>> topic;  // partition -> (offset, seq)
    std::string line, last;
    while (dump.ReadLine(&line, In(40s)) == Subprocess::Read::kLine) {
      uint32_t p = 0;
      int64_t offset = 0;
      uint64_t seq = 0;
      if (std::sscanf(line.c_str(), "msg %" SCNu32 " %" SCNd64 " %" SCNu64, &p, &offset, &seq) == 3) {
        topic[p].emplace_back(offset, seq);
      }
      last = line;
    }
    std::ostringstream out;
    out << "topic src as the broker holds it (" << last << "):\n";
    for (const auto& [p, msgs] : topic) {
      uint64_t high = 0, resent = 0;
      bool reported = false;
      for (size_t i = 0; i < msgs.size(); ++i) {
        const auto [offset, seq] = msgs[i];
        if (seq <= high) {
          resent++;
          continue;
        }
        if (seq > high + 1 && !reported) {
          reported = true;
          out << "  partition " << p << ": offset " << offset << " holds seq " << seq << " but the highest seq before "
              << "it is " << high << ";";
          for (uint64_t missing = high + 1; missing < seq && missing < high + 6; ++missing) {
            out << " seq " << missing << " is at offset ";
            bool found = false;
            for (size_t j = i; j < msgs.size() && !found; ++j) {
              if (msgs[j].second == missing) {
                out << msgs[j].first;
                found = true;
              }
            }
            if (!found) out << "(nowhere)";
            out << ";";
          }
          out << "\n";
        }
        high = std::max(high, seq);
      }
      out << "  partition " << p << ": " << msgs.size() << " messages, highest seq " << high << ", " << resent
          << " at or below an earlier seq" << (reported ? "" : ", in order") << "\n";
    }
    return out.str();
  }

  ::wattledger::testing::TempDir dir_;
  Subprocess mock_, producer_, consumer_;
  std::string brokers_;
  int consumer_runs_ = 0;
};

TEST_F(KafkaFaultTest, ExactlyOnceThroughBrokerFaultsAndConsumerCrashes) {
  const uint64_t seed = EnvNumber("WL_TEST_SEED", 20240611);
  const uint64_t n = EnvNumber("WL_KAFKA_EVENTS", 12'000);
  ASSERT_GE(n, 1000u);
  std::printf("kafka_fault_test: seed %" PRIu64 ", %" PRIu64 " events (WL_TEST_SEED, WL_KAFKA_EVENTS)\n", seed, n);
  std::mt19937_64 rng(seed);
  const auto start = Clock::now();
  const auto deadline = In(150s);

  ASSERT_NO_FATAL_FAILURE(StartMock());
  ASSERT_NO_FATAL_FAILURE(StartConsumer(n));
  ASSERT_NO_FATAL_FAILURE(StartProducer(n, rng()));

  // The faults follow the producer's progress, which is paced (about 10 s for the whole stream),
  // so that each meets a live stream. Slow brokers (rtt) keep several produce requests in flight
  // per partition when an error hits one of them, which is when a producer has the most to get
  // right. The consumer is killed twice at seeded points while the producer is still appending:
  // it cannot have applied everything then, however fast it is.
  struct Step {
    uint64_t at_appended;
    std::vector<std::string> commands;
  };
  const std::vector<Step> script = {
      {n / 10,
       {"rtt 1 100", "rtt 2 100", "rtt 3 100", "errors produce 5 NOT_LEADER_FOR_PARTITION",
        "errors produce 2 REQUEST_TIMED_OUT", "errors fetch 3 NOT_LEADER_FOR_PARTITION"}},
      {n / 6, {"errors produce 1 NOT_LEADER_FOR_PARTITION"}},
      {n / 4, {"errors produce 1 NOT_LEADER_FOR_PARTITION", "errors fetch 1 REQUEST_TIMED_OUT"}},
      {3 * n / 10, {"rtt 1 0", "rtt 2 0", "rtt 3 0", "down 1"}},
  };
  const uint64_t kill_at[2] = {n / 2 + rng() % (n / 10), 3 * n / 4 + rng() % (n / 10)};
  size_t next_step = 0;
  enum class Stage { kScript, kBrokerDown, kBrokerUp, kKilledOnce, kKilledTwice };
  Stage stage = Stage::kScript;
  uint64_t applied = 0, appended = 0, applied_at_down = 0;
  bool consumer_reported = false;  // The current consumer run printed a count.
  Clock::time_point down_at, last_progress = Clock::now();
  bool producer_done = false, consumer_done = false;
  std::string producer_summary, consumer_summary;

  auto read_consumer = [&](const std::string& line) {
    uint64_t v = 0;
    if (ParseCount(line, "applied", &v)) {
      if (v != applied) last_progress = Clock::now();
      applied = v;
      consumer_reported = true;
    } else if (line.rfind("done", 0) == 0) {
      consumer_summary = line;
    } else {
      ADD_FAILURE() << "unexpected consumer line: " << line;
    }
  };
  // Kills the consumer once it reported some but not all of the stream, and starts it again.
  auto kill_if_mid_way = [&](uint64_t at, Stage next) {
    if (appended < at || !consumer_reported || applied == 0) return;
    ASSERT_LT(applied, n) << "the consumer must be killed mid-way";
    auto status = consumer_.Kill(In(10s));
    ASSERT_TRUE(status && WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL)
        << "consumer was not killed mid-way: " << Subprocess::DescribeStatus(status);
    for (const auto& line : consumer_.DrainLines(In(5s))) read_consumer(line);
    std::printf("kafka_fault_test: killed consumer run %d at %" PRIu64 " applied (%" PRIu64
                " appended) after %.1fs\n",
                consumer_runs_, applied, appended,
                std::chrono::duration<double>(Clock::now() - start).count());
    consumer_reported = false;
    stage = next;
    ASSERT_NO_FATAL_FAILURE(StartConsumer(n));
  };

  while (!(producer_done && consumer_done)) {
    // Everything is on the broker, yet the consumer applies nothing: explain, then fail.
    if ((producer_done && Clock::now() - last_progress > 30s) || Clock::now() > deadline) {
      FAIL() << "the consumer is stuck at " << applied << " of " << n << " applied (stage " << static_cast<int>(stage)
             << ", producer " << (producer_done ? "done" : "running") << "; appended " << appended << ")\n"
             << DescribeTopicOrder() << "last consumer stderr:\n"
             << consumer_.StderrTail(600);
    }
    testing::WaitReadable({producer_done ? -1 : producer_.stdout_fd(), consumer_done ? -1 : consumer_.stdout_fd()},
                          std::min(deadline, In(100ms)));
    std::string line;
    while (!producer_done && producer_.TryReadLine(&line)) {
      uint64_t v = 0;
      if (ParseCount(line, "appended", &v)) {
        appended = v;
      } else if (line.rfind("done", 0) == 0) {
        producer_summary = line;
      } else {
        ADD_FAILURE() << "unexpected producer line: " << line;
      }
    }
    if (!producer_done && producer_.eof()) {
      auto status = producer_.Wait(In(10s));
      ASSERT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
          << "producer failed: " << Subprocess::DescribeStatus(status);
      ASSERT_NE(producer_summary, "") << "producer exited without reporting done";
      producer_done = true;
      std::printf("kafka_fault_test: producer %s after %.1fs\n", producer_summary.c_str(),
                  std::chrono::duration<double>(Clock::now() - start).count());
    }
    while (!consumer_done && consumer_.TryReadLine(&line)) read_consumer(line);
    if (!consumer_done && consumer_.eof()) {
      auto status = consumer_.Wait(In(10s));
      ASSERT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
          << "consumer failed: " << Subprocess::DescribeStatus(status);
      ASSERT_NE(consumer_summary, "") << "consumer exited without reporting done";
      ASSERT_EQ(stage, Stage::kKilledTwice) << "the consumer finished before every fault was injected; "
                                               "the producer's pacing is too fast for this machine";
      consumer_done = true;
    }
    if (consumer_done) continue;

    switch (stage) {
      case Stage::kScript:
        while (next_step < script.size() && appended >= script[next_step].at_appended) {
          for (const auto& command : script[next_step].commands) ASSERT_NO_FATAL_FAILURE(Control(command));
          if (++next_step == script.size()) {  // The last step took broker 1 down.
            applied_at_down = applied;
            down_at = Clock::now();
            stage = Stage::kBrokerDown;
          }
        }
        break;
      case Stage::kBrokerDown:
        // Partitions led by the other brokers go on; bring broker 1 back after some progress, or
        // after 2 s if everything happened to be led by broker 1.
        if (applied >= applied_at_down + n / 40 || Clock::now() - down_at > 2s) {
          ASSERT_NO_FATAL_FAILURE(Control("up 1"));
          stage = Stage::kBrokerUp;
        }
        break;
      case Stage::kBrokerUp:
        ASSERT_NO_FATAL_FAILURE(kill_if_mid_way(kill_at[0], Stage::kKilledOnce));
        break;
      case Stage::kKilledOnce:
        ASSERT_NO_FATAL_FAILURE(kill_if_mid_way(kill_at[1], Stage::kKilledTwice));
        break;
      case Stage::kKilledTwice:
        break;
    }
  }
  std::printf("kafka_fault_test: consumer %s after %.1fs, %d runs\n", consumer_summary.c_str(),
              std::chrono::duration<double>(Clock::now() - start).count(), consumer_runs_);
  mock_.CloseStdin();
  auto mock_status = mock_.Wait(In(10s));
  EXPECT_TRUE(mock_status && WIFEXITED(*mock_status)) << Subprocess::DescribeStatus(mock_status);

  // The source: every event the producer wrote, by (partition, seq).
  auto src = OpenLog(dir_.Sub("producer"), "src", kSourcePartitions);
  ASSERT_NE(src, nullptr);
  auto src_report = src->Verify();
  ASSERT_TRUE(src_report.ok() && src_report->ok) << (src_report.ok() ? src_report->problem : "");
  std::map<std::pair<uint32_t, uint64_t>, std::string> source;
  for (uint32_t p = 0; p < kSourcePartitions; ++p) {
    for (uint64_t from = 1; from <= src->Head(p);) {
      auto events = src->Read(p, from, 4096);
      ASSERT_TRUE(events.ok() && !events->empty());
      for (const auto& e : *events) source[{p, e.seq()}] = eventlog::HexEncode(e.hash());
      from = events->back().seq() + 1;
    }
  }
  ASSERT_EQ(source.size(), n) << "the producer's log does not hold the events it appended";

  // The sink: exactly one applied/ key per source event, with its hash, and nothing else.
  auto sink = OpenLog(dir_.Sub("consumer"), "sink", kSinkPartitions);
  ASSERT_NE(sink, nullptr);
  auto sink_report = sink->Verify();
  ASSERT_TRUE(sink_report.ok() && sink_report->ok) << (sink_report.ok() ? sink_report->problem : "");
  std::set<std::pair<uint32_t, uint64_t>> applied_keys;
  size_t wrong = 0;
  ASSERT_TRUE(sink->ScanState("applied/", [&](std::string_view k, std::string_view v) {
    uint32_t p = 0;
    uint64_t seq = 0;
    std::string key(k);
    if (std::sscanf(key.c_str(), "applied/%" SCNu32 "/%" SCNu64, &p, &seq) != 2) {
      ADD_FAILURE() << "malformed key " << key;
      return true;
    }
    auto it = source.find({p, seq});
    if (it == source.end() || it->second != v) {
      if (++wrong <= 10) {
        ADD_FAILURE() << key << " does not match a source event";
      }
    }
    applied_keys.insert({p, seq});
    return true;
  }).ok());
  size_t missing = 0;
  for (const auto& [pos, _] : source) {
    if (!applied_keys.count(pos) && ++missing <= 10) {
      ADD_FAILURE() << "source event " << pos.first << "/" << pos.second << " was never applied";
    }
  }
  EXPECT_EQ(missing, 0u);
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(applied_keys.size(), n);
  for (uint32_t p = 0; p < kSinkPartitions; ++p) {
    auto dups = sink->GetState("dups/" + std::to_string(p));
    ASSERT_TRUE(dups.ok());
    EXPECT_TRUE(!dups->has_value() || **dups == "0")
        << "writer partition " << p << " saw " << **dups << " duplicate deliveries";
  }
  std::printf("kafka_fault_test: verified %zu events applied exactly once in %.1fs\n", applied_keys.size(),
              std::chrono::duration<double>(Clock::now() - start).count());
}

// Reads partition `partition` of `topic` from its start to its end with a plain librdkafka
// consumer and returns the seq of every message, in offset order.
std::vector<uint64_t> ReadTopicSeqs(const std::string& brokers, const std::string& topic, int32_t partition) {
  std::vector<uint64_t> seqs;
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{{"bootstrap.servers", brokers},
                                                                             {"group.id", "reader"},
                                                                             {"enable.partition.eof", "true"},
                                                                             {"log_level", "3"}}) {
    EXPECT_EQ(rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err), RD_KAFKA_CONF_OK) << err;
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  EXPECT_NE(rk, nullptr) << err;
  if (rk == nullptr) return seqs;
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset = RD_KAFKA_OFFSET_BEGINNING;
  EXPECT_EQ(rd_kafka_assign(rk, list), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(list);
  const auto deadline = In(20s);
  bool at_end = false;
  while (!at_end && Clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      at_end = true;
    } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      eventlog::Envelope env;
      EXPECT_TRUE(env.ParseFromArray(m->payload, static_cast<int>(m->len)));
      seqs.push_back(env.seq());
    }
    rd_kafka_message_destroy(m);
  }
  EXPECT_TRUE(at_end) << "did not reach the end of " << topic << " in 20 s";
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return seqs;
}

// The relay's contract: what it confirms (and so will never send again) is on the broker, in seq
// order. Scenario, made deterministic with the mock broker's per-request error stack: produce
// request R1 (events 4..6) is answered NOT_LEADER_FOR_PARTITION ("not persisted") after 300 ms;
// before that answer, R2 (events 7..9) is sent and succeeds at once.
TEST(KafkaRelayTest, RelayConfirmsOnlyWhatTheBrokerHolds) {
  ::wattledger::testing::TempDir dir;
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  ASSERT_EQ(rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err), RD_KAFKA_CONF_OK);
  rd_kafka_t* host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_NE(host, nullptr) << err;
  std::unique_ptr<rd_kafka_t, void (*)(rd_kafka_t*)> host_owner(host, rd_kafka_destroy);
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(host, 1);
  ASSERT_NE(cluster, nullptr);
  std::unique_ptr<rd_kafka_mock_cluster_t, void (*)(rd_kafka_mock_cluster_t*)> cluster_owner(
      cluster, rd_kafka_mock_cluster_destroy);
  ASSERT_EQ(rd_kafka_mock_topic_create(cluster, "src", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  const std::string brokers = rd_kafka_mock_cluster_bootstraps(cluster);

  eventlog::Options o;
  o.path = dir.Sub("src");
  o.name = "src";
  o.partitions = 1;
  o.fsync = eventlog::FsyncPolicy::kNone;
  auto log = std::move(eventlog::EventLog::Open(o)).value();
  bus::KafkaOptions k;
  k.brokers = brokers;
  k.properties = {{"log_level", "3"}};
  if (const char* prop = std::getenv("WL_RELAY_PROPERTY"); prop != nullptr && std::strchr(prop, '=') != nullptr) {
    std::string p(prop);
    k.properties.emplace_back(p.substr(0, p.find('=')), p.substr(p.find('=') + 1));
  }
  auto kafka = bus::NewKafkaBus(k);
  ASSERT_TRUE(kafka.ok()) << kafka.status().ToString();
  ASSERT_TRUE((*kafka)->Publish("src", log.get()).ok());

  auto append = [&](int count) {
    eventlog::WriteSet ws;
    for (int i = 0; i < count; ++i) {
      eventlog::NewEvent e;
      e.partition = 0;
      e.aggregate_key = "k";
      e.type = "test.Produced";
      e.payload = "x";
      e.causation.set_request_id("r");
      ws.Append(std::move(e));
    }
    ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  };
  auto wait_relayed = [&] {
    const auto deadline = In(30s);
    while ((*kafka)->relay_stats("src").backlog > 0 && Clock::now() < deadline) {
      log->WaitForCommit(log->CommitCount(), 20ms);
    }
    ASSERT_EQ((*kafka)->relay_stats("src").backlog, 0) << "the relay did not finish in 30 s";
  };
  auto errors_left = [&] {
    size_t n = 0;
    EXPECT_EQ(rd_kafka_mock_broker_error_stack_cnt(cluster, 1, /*Produce*/ 0, &n), RD_KAFKA_RESP_ERR_NO_ERROR);
    return n;
  };
  auto wait_errors_left = [&](size_t n) {
    const auto deadline = In(10s);
    while (errors_left() > n && Clock::now() < deadline) log->WaitForCommit(log->CommitCount(), 2ms);
    ASSERT_EQ(errors_left(), n) << "the relay sent no produce request in 10 s";
  };

  append(3);  // Events 1..3: the producer is connected and has its producer id.
  ASSERT_NO_FATAL_FAILURE(wait_relayed());
  ASSERT_EQ(rd_kafka_mock_broker_push_request_error_rtts(cluster, 1, /*Produce*/ 0, 2,
                                                         RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 300,
                                                         RD_KAFKA_RESP_ERR_NO_ERROR, 0),
            RD_KAFKA_RESP_ERR_NO_ERROR);
  append(3);  // Events 4..6 go out as R1, which will fail after 300 ms.
  ASSERT_NO_FATAL_FAILURE(wait_errors_left(1));
  append(3);  // Events 7..9 go out as R2 while R1 is in flight, or after it failed.
  ASSERT_NO_FATAL_FAILURE(wait_errors_left(0));
  ASSERT_NO_FATAL_FAILURE(wait_relayed());
  const auto stats = (*kafka)->relay_stats("src");
  (*kafka)->Stop();

  std::vector<uint64_t> seqs = ReadTopicSeqs(brokers, "src", 0);
  std::ostringstream held;
  for (uint64_t s : seqs) held << s << " ";
  std::set<uint64_t> distinct(seqs.begin(), seqs.end());
  for (uint64_t seq = 1; seq <= 9; ++seq) {
    EXPECT_TRUE(distinct.count(seq)) << "the relay confirmed seq " << seq << " (backlog 0, " << stats.relayed
                                     << " delivery reports, " << stats.restarts << " restarts) but the topic "
                                     << "holds only: " << held.str();
  }
}

}  // namespace
}  // namespace wattledger

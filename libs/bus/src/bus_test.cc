// One contract, two buses: every test here runs against the local bus and against Kafka (an
// in-process librdkafka mock cluster). Separate-process and fault-injection runs are in tests/.
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <map>

#include "wattledger/bus/bus.h"
#include "wattledger/bus/mock_cluster.h"
#include "wattledger/testing/temp_dir.h"

namespace wattledger::bus {
namespace {

constexpr uint32_t kPartitions = 4;

eventlog::NewEvent Ev(uint32_t partition, const std::string& key, int i) {
  eventlog::NewEvent e;
  e.partition = partition;
  e.aggregate_key = key;
  e.type = "test.Event";
  e.payload = key + "#" + std::to_string(i);
  e.causation.set_request_id("r" + std::to_string(i));
  return e;
}

class BusTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    eventlog::Options o;
    o.path = dir_.Sub("producer");
    o.name = "prod";
    o.partitions = kPartitions;
    o.fsync = eventlog::FsyncPolicy::kNone;
    log_ = std::move(eventlog::EventLog::Open(o)).value();
    if (GetParam() == "kafka") {
      cluster_ = std::move(MockCluster::Start(1)).value();
      ASSERT_TRUE(cluster_->CreateTopic("prod", kPartitions).ok());
    }
    bus_ = NewBus();
    ASSERT_TRUE(bus_->Publish("prod", log_.get()).ok());
  }

  void TearDown() override {
    if (bus_) bus_->Stop();
  }

  std::unique_ptr<Bus> NewBus() {
    if (GetParam() == "local") return NewLocalBus();
    KafkaOptions k;
    k.brokers = cluster_->bootstrap_servers();
    k.properties = {{"log_level", "3"}};
    return std::move(NewKafkaBus(k)).value();
  }

  void Append(int n, int start = 0) {
    eventlog::WriteSet ws;
    for (int i = start; i < start + n; ++i) {
      ws.Append(Ev(static_cast<uint32_t>(i) % kPartitions, "k" + std::to_string(i % 7), i));
    }
    ASSERT_TRUE(log_->Commit(std::move(ws)).ok());
  }

  // Polls until `n` messages arrived or 30 s passed; then polls briefly to catch extras.
  std::vector<Message> Drain(Consumer& c, size_t n) {
    std::vector<Message> got;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
      auto batch = c.Poll(1000, std::chrono::milliseconds(100));
      EXPECT_TRUE(batch.ok()) << batch.status().ToString();
      if (!batch.ok()) break;
      for (auto& m : *batch) got.push_back(std::move(m));
    }
    auto extra = c.Poll(1000, std::chrono::milliseconds(300));
    if (extra.ok()) for (auto& m : *extra) got.push_back(std::move(m));
    return got;
  }

  static void ExpectInOrderOnce(const std::vector<Message>& got, const std::map<uint32_t, uint64_t>& first) {
    std::map<uint32_t, uint64_t> next = first;
    for (const auto& m : got) {
      const uint32_t p = m.envelope.partition();
      ASSERT_EQ(m.envelope.seq(), next[p]) << "partition " << p;
      next[p]++;
    }
  }

  testing::TempDir dir_;
  std::unique_ptr<MockCluster> cluster_;
  std::unique_ptr<eventlog::EventLog> log_;
  std::unique_ptr<Bus> bus_;
};

TEST_P(BusTest, DeliversEveryEventOnceInOrder) {
  auto consumer = bus_->Subscribe("prod", "c1", nullptr);
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  EXPECT_EQ((*consumer)->partitions(), kPartitions);
  Append(200);
  Append(100, 200);
  auto got = Drain(**consumer, 300);
  ASSERT_EQ(got.size(), 300u);
  ExpectInOrderOnce(got, {{0, 1}, {1, 1}, {2, 1}, {3, 1}});
  EXPECT_EQ(got[0].topic, "prod");
  EXPECT_EQ((*consumer)->stats().delivered, 300u);
}

TEST_P(BusTest, StartsAfterStoredPositions) {
  Append(40);  // 10 per partition.
  auto first = bus_->Subscribe("prod", "c1", nullptr);
  ASSERT_TRUE(first.ok());
  auto all = Drain(**first, 40);
  ASSERT_EQ(all.size(), 40u);
  // Remember what was applied: partition 0 up to seq 4, partition 1 up to 10, others nothing.
  std::map<uint32_t, eventlog::Position> applied;
  for (const auto& m : all) {
    const auto& e = m.envelope;
    if ((e.partition() == 0 && e.seq() == 4) || (e.partition() == 1 && e.seq() == 10)) {
      applied[e.partition()] = {e.seq(), m.offset};
    }
  }
  first->reset();
  auto second = bus_->Subscribe("prod", "c1", [&](uint32_t p) { return applied[p]; });
  ASSERT_TRUE(second.ok());
  auto rest = Drain(**second, 6 + 0 + 10 + 10);
  ASSERT_EQ(rest.size(), 26u);
  ExpectInOrderOnce(rest, {{0, 5}, {1, 11}, {2, 1}, {3, 1}});
}

TEST_P(BusTest, ProducerRestartNeitherLosesNorRepeats) {
  auto consumer = bus_->Subscribe("prod", "c1", nullptr);
  ASSERT_TRUE(consumer.ok());
  Append(50);
  ASSERT_EQ(Drain(**consumer, 50).size(), 50u);
  bus_->Stop();
  bus_ = NewBus();
  ASSERT_TRUE(bus_->Publish("prod", log_.get()).ok());
  Append(50, 50);
  auto got = Drain(**consumer, 50);
  ASSERT_EQ(got.size(), 50u);
  ExpectInOrderOnce(got, {{0, 14}, {1, 14}, {2, 13}, {3, 13}});
}

INSTANTIATE_TEST_SUITE_P(Buses, BusTest, ::testing::Values("local", "kafka"),
                         [](const auto& info) { return info.param; });

class KafkaBusTest : public BusTest {};

TEST_P(KafkaBusTest, RelayResendsAreSkippedByConsumers) {
  Append(40);
  auto c1 = bus_->Subscribe("prod", "c1", nullptr);
  ASSERT_EQ(Drain(**c1, 40).size(), 40u);
  // Forget the relay's persisted position, as if it crashed before persisting it: the next relay
  // sends all 40 again.
  bus_->Stop();
  eventlog::WriteSet ws;
  for (uint32_t p = 0; p < kPartitions; ++p) ws.SetPosition("relay/prod", p, {0, -1});
  ASSERT_TRUE(log_->Commit(std::move(ws)).ok());
  bus_ = NewBus();
  ASSERT_TRUE(bus_->Publish("prod", log_.get()).ok());
  Append(4, 40);
  auto c2 = bus_->Subscribe("prod", "c2", nullptr);
  auto got = Drain(**c2, 44);
  ASSERT_EQ(got.size(), 44u);
  ExpectInOrderOnce(got, {{0, 1}, {1, 1}, {2, 1}, {3, 1}});
  EXPECT_EQ((*c2)->stats().duplicates_skipped, 40u);
  auto more = Drain(**c1, 4);
  EXPECT_EQ(more.size(), 4u);
}

TEST_P(KafkaBusTest, ForgedAndGarbageMessagesAreRefused) {
  // Write straight to the topic, bypassing the relay.
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[256];
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", cluster_->bootstrap_servers().c_str(), err, sizeof err),
            RD_KAFKA_CONF_OK);
  rd_kafka_t* p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_NE(p, nullptr);
  std::string garbage = "not an envelope \xff\xff\xff";
  eventlog::Envelope forged;
  forged.set_partition(0);
  forged.set_seq(1);
  forged.set_type("test.Event");
  forged.set_payload("free money");
  forged.set_hash(std::string(32, 'x'));
  std::string forged_bytes = forged.SerializeAsString();
  for (const std::string* v : {&garbage, &forged_bytes}) {
    ASSERT_EQ(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("prod"), RD_KAFKA_V_PARTITION(0),
                                RD_KAFKA_V_VALUE(const_cast<char*>(v->data()), v->size()),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  ASSERT_EQ(rd_kafka_flush(p, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(p);
  Append(4);
  auto c = bus_->Subscribe("prod", "c1", nullptr);
  auto got = Drain(**c, 4);
  ASSERT_EQ(got.size(), 4u);
  ExpectInOrderOnce(got, {{0, 1}, {1, 1}, {2, 1}, {3, 1}});
  EXPECT_EQ((*c)->stats().invalid_skipped, 2u);
}

TEST_P(KafkaBusTest, GapIsPassedOverUntilTheResendFillsIt) {
  // Nine valid events of partition 0, written to the topic out of order as a relay that lost a
  // batch would and then re-sent from its confirmed position: 1 2 3 7 8 9 4 5 6 7 8 9.
  bus_->Stop();  // No relay (stopped before the events exist): this test writes the topic itself.
  eventlog::WriteSet ws;
  for (int i = 0; i < 9; ++i) ws.Append(Ev(0, "k", i));
  ws.ReturnEnvelopes();
  auto committed = log_->Commit(std::move(ws));
  ASSERT_TRUE(committed.ok());
  const auto& events = committed->envelopes;
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[256];
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", cluster_->bootstrap_servers().c_str(), err, sizeof err),
            RD_KAFKA_CONF_OK);
  rd_kafka_t* p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_NE(p, nullptr);
  for (int seq : {1, 2, 3, 7, 8, 9, 4, 5, 6, 7, 8, 9}) {
    std::string v = events[seq - 1].SerializeAsString();
    ASSERT_EQ(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("prod"), RD_KAFKA_V_PARTITION(0),
                                RD_KAFKA_V_VALUE(v.data(), v.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(rd_kafka_flush(p, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);  // Keep the order.
  }
  rd_kafka_destroy(p);
  auto c = bus_->Subscribe("prod", "c1", nullptr);
  ASSERT_TRUE(c.ok());
  auto got = Drain(**c, 9);
  ASSERT_EQ(got.size(), 9u);
  ExpectInOrderOnce(got, {{0, 1}});
  EXPECT_EQ((*c)->stats().gaps_skipped, 3u);
  EXPECT_EQ((*c)->stats().duplicates_skipped, 0u);
}

INSTANTIATE_TEST_SUITE_P(Kafka, KafkaBusTest, ::testing::Values("kafka"),
                         [](const auto& info) { return info.param; });

TEST(LocalBusTest, TopicWithoutPublisherDeliversNothing) {
  auto bus = NewLocalBus();
  auto c = bus->Subscribe("nobody", "c1", nullptr);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)->partitions(), 0u);
  auto got = (*c)->Poll(10, std::chrono::milliseconds(1));
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(got->empty());
}

TEST(MockClusterTest, ControlLinesAreValidated) {
  auto mc = MockCluster::Start(1);
  ASSERT_TRUE(mc.ok());
  EXPECT_TRUE((*mc)->Control("topic t 3").ok());
  EXPECT_TRUE((*mc)->Control("errors produce 2 NOT_LEADER_FOR_PARTITION").ok());
  EXPECT_TRUE((*mc)->Control("down 1").ok());
  EXPECT_TRUE((*mc)->Control("up 1").ok());
  EXPECT_EQ((*mc)->Control("errors produce 2 NO_SUCH_ERROR").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*mc)->Control("explode").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*mc)->Control("topic t").code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace wattledger::bus

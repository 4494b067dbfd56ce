// MockCluster: librdkafka's built-in mock Kafka cluster (rdkafka_mock.h), for tests, the load
// generator and local distributed runs. Its data lives only in this process; positions and
// truth live in the services' RocksDB, which is why losing it loses nothing.
//
// Control(line) takes the same text commands that `wattledger mock-kafka` reads on stdin:
//   topic NAME PARTITIONS          create a topic
//   errors API COUNT ERROR         next COUNT requests of API (produce|fetch|NUMBER) fail with
//                                  ERROR (a librdkafka name such as NOT_LEADER_FOR_PARTITION)
//   down BROKER | up BROKER        take a broker down or bring it back
//   rtt BROKER MS                  add round-trip latency to a broker
// Thread-safe: the mock cluster runs its own thread; Control may be called from any thread.
#pragma once

#include <memory>
#include <string>

#include "wattledger/base/status.h"

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace wattledger::bus {

class MockCluster {
 public:
  static Result<std::unique_ptr<MockCluster>> Start(int brokers);
  ~MockCluster();
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  const std::string& bootstrap_servers() const { return bootstraps_; }
  Status CreateTopic(const std::string& name, int partitions);
  Status Control(const std::string& line);

 private:
  MockCluster() = default;
  rd_kafka_s* rk_ = nullptr;
  rd_kafka_mock_cluster_s* cluster_ = nullptr;
  std::string bootstraps_;
};

}  // namespace wattledger::bus

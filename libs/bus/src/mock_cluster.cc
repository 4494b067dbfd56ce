#include "wattledger/bus/mock_cluster.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <sstream>
#include <vector>

namespace wattledger::bus {
namespace {

Result<rd_kafka_resp_err_t> ParseError(const std::string& name) {
  const struct rd_kafka_err_desc* descs = nullptr;
  size_t n = 0;
  rd_kafka_get_err_descs(&descs, &n);
  for (size_t i = 0; i < n; ++i) {
    if (descs[i].name != nullptr && name == descs[i].name) return descs[i].code;
  }
  return InvalidArgument("unknown kafka error '" + name + "'; use a name like NOT_LEADER_FOR_PARTITION");
}

Result<int16_t> ParseApi(const std::string& name) {
  if (name == "produce") return static_cast<int16_t>(0);
  if (name == "fetch") return static_cast<int16_t>(1);
  if (name == "metadata") return static_cast<int16_t>(3);
  if (name == "initproducerid") return static_cast<int16_t>(22);
  if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos && name.size() < 4) {
    return static_cast<int16_t>(std::stoi(name));
  }
  return InvalidArgument("unknown kafka API '" + name + "'; use produce, fetch, metadata or a number");
}

}  // namespace

Result<std::unique_ptr<MockCluster>> MockCluster::Start(int brokers) {
  if (brokers < 1 || brokers > 16) return InvalidArgument("mock cluster brokers must be 1..16");
  std::unique_ptr<MockCluster> mc(new MockCluster());
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char errstr[256];
  // The handle only hosts the cluster; keep it quiet.
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
  mc->rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (mc->rk_ == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Unavailable(std::string("mock cluster handle: ") + errstr);
  }
  mc->cluster_ = rd_kafka_mock_cluster_new(mc->rk_, brokers);
  if (mc->cluster_ == nullptr) return Unavailable("rd_kafka_mock_cluster_new failed");
  mc->bootstraps_ = rd_kafka_mock_cluster_bootstraps(mc->cluster_);
  return mc;
}

MockCluster::~MockCluster() {
  if (cluster_) rd_kafka_mock_cluster_destroy(cluster_);
  if (rk_) rd_kafka_destroy(rk_);
}

Status MockCluster::CreateTopic(const std::string& name, int partitions) {
  if (name.empty() || partitions < 1 || partitions > 1024) {
    return InvalidArgument("topic needs a name and 1..1024 partitions");
  }
  rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(cluster_, name.c_str(), partitions, 1);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Internal("create topic " + name + ": " + rd_kafka_err2str(err));
  }
  return Status::Ok();
}

Status MockCluster::Control(const std::string& line) {
  std::istringstream in(line);
  std::string verb;
  in >> verb;
  auto need_int = [&](const char* what) -> Result<int> {
    long long v;
    if (!(in >> v) || v < 0 || v > 1'000'000) {
      return InvalidArgument(std::string("'") + verb + "' needs " + what + " as a number");
    }
    return static_cast<int>(v);
  };
  if (verb == "topic") {
    std::string name;
    in >> name;
    WL_ASSIGN_OR_RETURN(int parts, need_int("PARTITIONS"));
    return CreateTopic(name, parts);
  }
  if (verb == "errors") {
    std::string api, err;
    in >> api;
    WL_ASSIGN_OR_RETURN(int16_t api_key, ParseApi(api));
    WL_ASSIGN_OR_RETURN(int count, need_int("COUNT"));
    in >> err;
    WL_ASSIGN_OR_RETURN(rd_kafka_resp_err_t code, ParseError(err));
    std::vector<rd_kafka_resp_err_t> errors(static_cast<size_t>(count), code);
    rd_kafka_mock_push_request_errors_array(cluster_, api_key, errors.size(), errors.data());
    return Status::Ok();
  }
  if (verb == "down" || verb == "up") {
    WL_ASSIGN_OR_RETURN(int broker, need_int("BROKER"));
    rd_kafka_resp_err_t err = verb == "down" ? rd_kafka_mock_broker_set_down(cluster_, broker)
                                             : rd_kafka_mock_broker_set_up(cluster_, broker);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return InvalidArgument(verb + ": " + rd_kafka_err2str(err));
    return Status::Ok();
  }
  if (verb == "rtt") {
    WL_ASSIGN_OR_RETURN(int broker, need_int("BROKER"));
    WL_ASSIGN_OR_RETURN(int ms, need_int("MS"));
    rd_kafka_resp_err_t err = rd_kafka_mock_broker_set_rtt(cluster_, broker, ms);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return InvalidArgument("rtt: " + std::string(rd_kafka_err2str(err)));
    return Status::Ok();
  }
  return InvalidArgument("unknown control command '" + verb +
                         "'; use topic, errors, down, up or rtt");
}

}  // namespace wattledger::bus

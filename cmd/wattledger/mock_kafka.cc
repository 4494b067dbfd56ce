// `wattledger mock-kafka`: hosts librdkafka's mock cluster in its own long-lived process, so that
// producers and consumers in other processes talk the real Kafka wire protocol to it.
#include "cmd/wattledger/commands.h"

#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <thread>

#include "wattledger/base/log.h"
#include "wattledger/bus/mock_cluster.h"
#include "wattledger/server/server.h"

namespace wattledger::cmd {

void AddMockKafka(CLI::App& root, std::function<int()>* run) {
  auto* app = root.add_subcommand("mock-kafka", "Host librdkafka's mock Kafka cluster; prints its bootstrap servers");
  auto brokers = std::make_shared<int>(1);
  auto topics = std::make_shared<std::vector<std::string>>();
  app->add_option("--brokers", *brokers, "Number of mock brokers")->check(CLI::Range(1, 16))->capture_default_str();
  app->add_option("--topic", *topics, "Topic to create, NAME:PARTITIONS (repeatable)");
  app->footer(
      "Prints the bootstrap servers as the first line of stdout, then reads control lines on stdin:\n"
      "  topic NAME PARTITIONS | errors produce|fetch|N COUNT ERROR | down BROKER | up BROKER | rtt BROKER MS\n"
      "Each line is answered with 'ok' or 'error: ...'. Stops on SIGTERM/SIGINT or end of stdin.");
  app->callback([=] {
    *run = [=]() -> int {
      auto cluster = bus::MockCluster::Start(*brokers);
      if (!cluster.ok()) {
        std::cerr << "mock-kafka: " << cluster.status().ToString() << "\n";
        return 1;
      }
      for (const auto& t : *topics) {
        auto colon = t.rfind(':');
        int parts = 0;
        if (colon != std::string::npos) parts = std::atoi(t.c_str() + colon + 1);
        Status s = colon == std::string::npos ? InvalidArgument("--topic " + t + " is not NAME:PARTITIONS")
                                              : (*cluster)->CreateTopic(t.substr(0, colon), parts);
        if (!s.ok()) {
          std::cerr << "mock-kafka: " << s.ToString() << "\n";
          return 2;
        }
      }
      std::cout << (*cluster)->bootstrap_servers() << std::endl;
      log::Info("mock kafka ready", {{"bootstrap", (*cluster)->bootstrap_servers()}});
      // Control lines from stdin on their own thread; the main thread waits for a signal.
      std::thread control([&] {
        std::string line;
        while (std::getline(std::cin, line)) {
          if (line.empty()) continue;
          Status s = (*cluster)->Control(line);
          std::cout << (s.ok() ? "ok" : "error: " + s.message()) << std::endl;
        }
        // End of stdin: a test harness that went away should not leave us running.
        ::kill(::getpid(), SIGTERM);
      });
      control.detach();
      log::Info("mock kafka stopping", {{"signal", server::WaitForShutdownSignal()}});
      std::fflush(stdout);
      // The control thread may still be blocked on stdin; leave without unwinding it.
      cluster->reset();
      ::_exit(0);
    };
  });
}

}  // namespace wattledger::cmd

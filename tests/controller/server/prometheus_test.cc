// A real Prometheus scrapes a real tenon-controller's /metrics, and its query API answers with
// the controller's series: the exposition is not just well-formed (promtool checks that in
// controller_test) but ingested. Skipped where the prometheus binary is not installed.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "child_process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "shell_command.h"

namespace {

using namespace std::chrono_literals;
using tenon::test_support::ChildProcess;
using tenon::test_support::eventually;
using tenon::test_support::run_shell;

// A TCP port nobody listens on right now (Prometheus wants a fixed one).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(PrometheusTest, ScrapesTheControllersMetrics) {
  if (run_shell("command -v prometheus").exit_code != 0) {
    GTEST_SKIP() << "prometheus is not installed (deploy/install-deps.sh installs it)";
  }
  char pattern[] = "/tmp/tenon-prometheus-test-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::string dir = pattern;
  std::optional<ChildProcess> controller = ChildProcess::start(
      {TENON_CONTROLLER_BINARY, "--data-dir", dir + "/controller", "--listen", "127.0.0.1:0",
       "--http-listen", "127.0.0.1:0", "--ready-file", dir + "/ready.json"},
      dir + "/controller.log");
  ASSERT_TRUE(controller.has_value());
  ASSERT_TRUE(
      eventually(
          [&] { return std::filesystem::exists(dir + "/ready.json") || !controller->running(); },
          20s) &&
      std::filesystem::exists(dir + "/ready.json"))
      << controller->log();
  const std::string target = nlohmann::json::parse(read_file(dir + "/ready.json"))["http_address"];
  std::ofstream(dir + "/prometheus.yml") << "global:\n  scrape_interval: 1s\n"
                                            "scrape_configs:\n  - job_name: tenon-controller\n"
                                            "    static_configs:\n      - targets: ['"
                                         << target << "']\n";
  const std::string web = "127.0.0.1:" + std::to_string(free_port());
  const std::string prometheus_binary = run_shell("command -v prometheus").output;
  std::optional<ChildProcess> prometheus =
      ChildProcess::start({prometheus_binary.substr(0, prometheus_binary.find('\n')),
                           "--config.file=" + dir + "/prometheus.yml",
                           "--storage.tsdb.path=" + dir + "/tsdb", "--web.listen-address=" + web},
                          dir + "/prometheus.log");
  ASSERT_TRUE(prometheus.has_value());
  auto query = [&](const std::string& expression) {
    return run_shell("curl -s 'http://" + web +
                     "/api/v1/query' --data-urlencode 'query=" + expression + "'")
        .output;
  };
  EXPECT_TRUE(eventually(
      [&] {
        const std::string answer = query("up{job=\"tenon-controller\"}");
        return answer.find("\"value\":[") != std::string::npos &&
               answer.find("\"1\"]") != std::string::npos;
      },
      60s))
      << query("up") << "\n"
      << prometheus->log();
  const std::string devices = query("tenon_devices");
  EXPECT_THAT(devices, ::testing::HasSubstr("\"state\":\"connected\""));
  const std::string requests = query("tenon_api_request_duration_seconds_count");
  EXPECT_THAT(requests, ::testing::HasSubstr("\"status\":\"success\""));
  prometheus->stop();
  controller->stop();
  if (!HasFailure()) std::filesystem::remove_all(dir);
}

}  // namespace

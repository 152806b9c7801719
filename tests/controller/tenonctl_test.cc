// tenonctl as an operator runs it: output formats, exit statuses and located errors.
#include <sys/wait.h>

#include <array>
#include <cstdio>

#include "nlohmann/json.hpp"
#include "shell_command.h"
#include "test_support.h"

namespace {

using tenon::controller::testing::example;
using tenon::controller::testing::TemporaryDirectory;

using CommandRun = tenon::test_support::ShellResult;  // output holds stdout and stderr

CommandRun tenonctl(const std::string& arguments) {
  return tenon::test_support::run_shell(std::string(TENONCTL_BINARY) + " " + arguments + " 2>&1");
}

std::string files(const std::string& app, const std::string& device) {
  return "-f " + example(app) + " --device " + example(device);
}

TEST(TenonctlTest, ComposePrintsJsonAndYaml) {
  CommandRun json =
      tenonctl("compose " + files("latency-probe.app.yaml", "edge-small.device.yaml") + " -o json");
  ASSERT_EQ(json.exit_code, 0) << json.output;
  nlohmann::json document = nlohmann::json::parse(json.output, nullptr, false);
  ASSERT_FALSE(document.is_discarded()) << json.output;
  EXPECT_EQ(document["schedulability"]["result"], "schedulable");
  CommandRun yaml =
      tenonctl("compose " + files("latency-probe.app.yaml", "edge-small.device.yaml"));
  ASSERT_EQ(yaml.exit_code, 0) << yaml.output;
  EXPECT_NE(yaml.output.find("explanation:\n"), std::string::npos);
}

TEST(TenonctlTest, RefusalsExitOne) {
  CommandRun run =
      tenonctl("compose " + files("control-loop-unschedulable.app.yaml", "edge-small.device.yaml"));
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find("unschedulable:"), std::string::npos) << run.output;
  run = tenonctl("build " + files("latency-probe.app.yaml", "arm-gateway.device.yaml") +
                 " -o /dev/null");
  EXPECT_EQ(run.exit_code, 1) << run.output;
}

TEST(TenonctlTest, BadInputExitsTwoAndNamesFileLineField) {
  TemporaryDirectory directory;
  const std::string bad =
      directory.write("bad.app.yaml", "program: latency-probe\nneeds: console\n");
  CommandRun run = tenonctl("compose -f " + bad + " --device " + example("edge-small.device.yaml"));
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find("bad.app.yaml:2:8: needs: expected a list of names"), std::string::npos)
      << run.output;
  run = tenonctl("compose -f /nonexistent.yaml --device " + example("edge-small.device.yaml"));
  EXPECT_EQ(run.exit_code, 2) << run.output;
  run = tenonctl("compose --device " + example("edge-small.device.yaml"));
  EXPECT_EQ(run.exit_code, 2) << run.output;
  run = tenonctl("frobnicate");
  EXPECT_EQ(run.exit_code, 2) << run.output;
}

TEST(TenonctlTest, TheOperatorTokenDoesNotStayInItsArguments) {
  // A server that accepts and never answers keeps tenonctl waiting while /proc shows its arguments.
  const std::string script = R"(
import socket, subprocess, sys, time
listener = socket.socket(); listener.bind(('127.0.0.1', 0)); listener.listen(4)
port = listener.getsockname()[1]
ctl = subprocess.Popen([sys.argv[1], '--server', '127.0.0.1:%d' % port, '--token',
                        'operator-secret-token', '--timeout', '10s', 'get', 'devices'],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(1.5)
print(open('/proc/%d/cmdline' % ctl.pid, 'rb').read().replace(b'\0', b' ').decode())
ctl.kill()
)";
  const std::string path = ::testing::TempDir() + "tenonctl-token-argv.py";
  std::ofstream(path) << script;
  const tenon::test_support::ShellResult result =
      tenon::test_support::run_shell("python3 " + path + " " + TENONCTL_BINARY + " 2>&1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("get devices"), std::string::npos) << result.output;
  EXPECT_EQ(result.output.find("operator-secret-token"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("--token *********************"), std::string::npos)
      << result.output;
}

TEST(TenonctlTest, HelpExitsZero) {
  CommandRun run = tenonctl("--help");
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_NE(run.output.find("Exit status"), std::string::npos);
}

TEST(TenonctlTest, BuildWritesTheImageAndHitsTheCacheTheSecondTime) {
  TemporaryDirectory directory;
  const std::string arguments = "build " + files("hello.app.yaml", "edge-small.device.yaml") +
                                " -o " + directory.path() + "/hello.elf --cache " +
                                directory.path() + "/cache";
  CommandRun first = tenonctl(arguments);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("(linked)"), std::string::npos) << first.output;
  CommandRun second = tenonctl(arguments);
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("(cache hit)"), std::string::npos) << second.output;
  EXPECT_TRUE(std::filesystem::exists(directory.path() + "/hello.elf"));
}

}  // namespace

// tenonctl's fleet commands without a controller: bad manifests are refused locally (exit 2,
// file:line: path: message, nothing sent), an unreachable controller is exit 5 with a clear
// message, and the client config file is read strictly. Runs the real tenonctl binary.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct CommandResult {
  int exit_status = -1;
  std::string out;
  std::string err;
};

class TenonctlFleetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    directory_ = std::filesystem::temp_directory_path() /
                 ("tenonctl-fleet-test-" + std::to_string(getpid()) + "-" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(directory_);
  }
  void TearDown() override { std::filesystem::remove_all(directory_); }

  std::string write(const std::string& name, const std::string& text) {
    const std::filesystem::path path = directory_ / name;
    std::ofstream(path) << text;
    return path.string();
  }

  static std::string slurp(const std::filesystem::path& path) {
    std::ifstream stream(path);
    std::stringstream text;
    text << stream.rdbuf();
    return text.str();
  }

  // Runs tenonctl with HOME in the temp folder, so no operator's config file is read.
  CommandResult tenonctl(const std::string& arguments, const std::string& environment = "") {
    const std::filesystem::path out = directory_ / "stdout";
    const std::filesystem::path err = directory_ / "stderr";
    const std::string command = "env -u TENONCTL_CONFIG HOME='" + directory_.string() + "' " +
                                environment + " " + TENONCTL_BINARY + " " + arguments + " >'" +
                                out.string() + "' 2>'" + err.string() + "' </dev/null";
    const int status = std::system(command.c_str());
    CommandResult run;
    run.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    run.out = slurp(out);
    run.err = slurp(err);
    return run;
  }

  std::filesystem::path directory_;
};

constexpr const char* kUnreachable = "--server 127.0.0.1:1 --timeout 5s";

TEST_F(TenonctlFleetTest, ApplyRefusesAnInvalidManifestLocallyWithFileAndLine) {
  const std::string file = write("bad.yaml", R"(apiVersion: tenon/v1
kind: App
metadata:
  name: control-loop
spec:
  program: control-loop
  tasks:
    - name: pid
      period_ns: 1000
      wcet_ns: 2000
---
apiVersion: tenon/v1
kind: Deployment
metadata:
  name: control
spec:
  app: control-loop
  placement:
    rt_priority: 150
)");
  // The controller is unreachable: exit 2 rather than 5 shows that nothing was sent.
  const CommandResult run = tenonctl(std::string("apply -f ") + file + " " + kUnreachable);
  EXPECT_EQ(run.exit_status, 2) << run.err;
  EXPECT_THAT(run.err, HasSubstr(file + ":10: spec.tasks[0].wcet_ns: worst-case execution time "
                                        "2000 ns exceeds the deadline of 1000 ns\n"));
  EXPECT_THAT(run.err, HasSubstr(file + ":19: spec.placement.rt_priority: must be 0"));
  EXPECT_EQ(run.out, "");
}

TEST_F(TenonctlFleetTest, ApplyRefusesAMalformedManifestWithFileLineAndColumn) {
  const std::string file = write("typo.yaml", R"(apiVersion: tenon/v1
kind: Deployment
metadata:
  name: control
spec:
  app: control-loop
  restart_policy: sometimes
)");
  const CommandResult run =
      tenonctl(std::string("apply --dry-run -f ") + file + " " + kUnreachable);
  EXPECT_EQ(run.exit_status, 2);
  EXPECT_EQ(run.err, "tenonctl: " + file +
                         ":7:19: spec.restart_policy: unknown value 'sometimes' (valid: NEVER, "
                         "ON_FAILURE, ALWAYS)\n");
  const CommandResult missing = tenonctl("apply -f " + (directory_ / "absent.yaml").string());
  EXPECT_EQ(missing.exit_status, 2);
  EXPECT_THAT(missing.err, HasSubstr("absent.yaml: cannot open file"));
  const CommandResult empty = tenonctl("apply -f " + write("empty.yaml", "---\n"));
  EXPECT_EQ(empty.exit_status, 2);
  EXPECT_THAT(empty.err, HasSubstr("empty.yaml: no objects found"));
}

TEST_F(TenonctlFleetTest, UnreachableControllerIsExitFive) {
  const CommandResult run = tenonctl(std::string("get devices ") + kUnreachable);
  EXPECT_EQ(run.exit_status, 5) << run.err;
  EXPECT_THAT(run.err, StartsWith("tenonctl: UNAVAILABLE: "));
  EXPECT_THAT(run.err, HasSubstr("(controller at 127.0.0.1:1)"));
  // A valid manifest gets past local validation and then cannot be sent.
  const CommandResult apply =
      tenonctl(std::string("apply -f ") + EXAMPLES_DIR + "/fleet.yaml " + kUnreachable);
  EXPECT_EQ(apply.exit_status, 5) << apply.err;
  // Global options may also come first.
  const CommandResult first = tenonctl(std::string(kUnreachable) + " describe deploy control");
  EXPECT_EQ(first.exit_status, 5) << first.err;
}

TEST_F(TenonctlFleetTest, ConfigFileNamesTheServer) {
  const std::string config = write("config.yaml", "server: 127.0.0.1:1\ntoken_file: token\n");
  write("token", "  secret-token\n");
  const CommandResult run = tenonctl("get apps --timeout 5s --config " + config);
  EXPECT_EQ(run.exit_status, 5) << run.err;
  EXPECT_THAT(run.err, HasSubstr("(controller at 127.0.0.1:1)"));
  // The same through $TENONCTL_CONFIG.
  const CommandResult from_environment =
      tenonctl("get apps --timeout 5s", "TENONCTL_CONFIG=" + config);
  EXPECT_EQ(from_environment.exit_status, 5) << from_environment.err;
}

TEST_F(TenonctlFleetTest, BadConfigAndUsageAreExitTwo) {
  const std::string config = write("config.yaml", "server: 127.0.0.1:1\nsevrer: x\n");
  const CommandResult unknown_key = tenonctl("get apps --config " + config);
  EXPECT_EQ(unknown_key.exit_status, 2);
  EXPECT_THAT(unknown_key.err, HasSubstr(config + ":2:1: sevrer: unknown field"));
  const CommandResult missing_config =
      tenonctl("get apps --config " + (directory_ / "nope.yaml").string());
  EXPECT_EQ(missing_config.exit_status, 2);
  const CommandResult missing_token =
      tenonctl("get apps --token-file " + (directory_ / "nope").string());
  EXPECT_EQ(missing_token.exit_status, 2);
  const CommandResult bad_kind = tenonctl(std::string("get pods ") + kUnreachable);
  EXPECT_EQ(bad_kind.exit_status, 2);
  EXPECT_THAT(bad_kind.err, HasSubstr("unknown kind 'pods'"));
  const CommandResult bad_selector =
      tenonctl(std::string("get devices -l 'a b=c' ") + kUnreachable);
  EXPECT_EQ(bad_selector.exit_status, 2);
  const CommandResult derived =
      tenonctl(std::string("delete instance control-0123456789ab ") + kUnreachable);
  EXPECT_EQ(derived.exit_status, 2);
  EXPECT_THAT(derived.err, HasSubstr("cannot be deleted"));
  const CommandResult bad_ttl = tenonctl(std::string("token create --ttl forever ") + kUnreachable);
  EXPECT_EQ(bad_ttl.exit_status, 2);
  const CommandResult bad_timeout = tenonctl("get apps --timeout soon");
  EXPECT_EQ(bad_timeout.exit_status, 2);
  const CommandResult no_command = tenonctl("");
  EXPECT_EQ(no_command.exit_status, 2);
}

TEST_F(TenonctlFleetTest, HelpDocumentsTheExitStatuses) {
  const CommandResult run = tenonctl("--help");
  EXPECT_EQ(run.exit_status, 0);
  EXPECT_THAT(run.out, HasSubstr("4 not found; 5 cannot reach or authenticate"));
  for (const char* command :
       {"apply", "get", "describe", "delete", "diff", "logs", "token", "compose", "build"}) {
    EXPECT_THAT(run.out, HasSubstr(command));
  }
}

}  // namespace

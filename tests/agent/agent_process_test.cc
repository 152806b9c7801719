// The real tenon-agent binary against the fake controller (fake_controller.h) and a real mortised
// running real guests on the engine `--engine auto` picks here. Tests that boot guests skip only
// where no engine can run them. Waits poll with
// generous deadlines; nothing sleeps to synchronise.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "fake_controller.h"
#include "mortised_fixture.h"
#include "mortised_process.h"

extern char** environ;

namespace {

using mortise::testing::MortisedOptions;
using mortise::testing::MortisedProcess;
using mortise::testing::wait_until;
using tenon::agent::testing::FakeController;

constexpr absl::Duration kLimit = absl::Seconds(20);
constexpr char kToken[] = "good-token";
constexpr char kDevice[] = "edge-1";

std::string read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

// One tenon-agent process with its stderr in a file.
class AgentProcess {
 public:
  AgentProcess(const std::vector<std::string>& arguments, const std::string& log_path)
      : log_path_(log_path) {
    std::vector<std::string> all = {TENON_AGENT_BINARY};
    all.insert(all.end(), arguments.begin(), arguments.end());
    std::vector<char*> argv;
    for (std::string& argument : all) argv.push_back(argument.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~AgentProcess() {
    if (pid_ > 0 && !exit_status_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool started() const { return pid_ > 0; }
  std::string log() const { return read_file(log_path_); }
  void signal(int number) { kill(pid_, number); }
  // The exit status (as from waitpid) once it ended within `limit`.
  std::optional<int> wait_exit(absl::Duration limit) {
    wait_until(
        [&] {
          int status = 0;
          if (waitpid(pid_, &status, WNOHANG) == pid_) exit_status_ = status;
          return exit_status_.has_value();
        },
        limit);
    return exit_status_;
  }

 private:
  pid_t pid_ = -1;
  std::string log_path_;
  std::optional<int> exit_status_;
};

class AgentProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char directory[] = "/tmp/agent-process-XXXXXX";
    directory_ = mkdtemp(directory);
    controller_ = FakeController::start();
    ASSERT_NE(controller_, nullptr);
    controller_->add_bootstrap_token(kToken);
    std::ofstream(directory_ + "/token") << kToken << "\n";
  }

  void TearDown() override {
    // The fake controller answers at once: no stream of these tests may look silent (a stream
    // was once dropped right after enrolment as silent for 498,954 hours).
    EXPECT_EQ(read_file(directory_ + "/agent.log").find("nothing from the controller for"),
              std::string::npos);
    if (HasFailure() || getenv("AGENT_TEST_LOGS") != nullptr) {
      std::cerr << "---- agent log ----\n" << read_file(directory_ + "/agent.log") << "----\n";
      if (mortised_) std::cerr << "---- mortised log ----\n" << mortised_->log() << "----\n";
    }
    agent_.reset();
    controller_.reset();
    mortised_.reset();
    std::filesystem::remove_all(directory_);
  }

  bool start_mortised() {
    const MortisedOptions options = mortise::testing::test_mortised_options();
    absl::StatusOr<std::unique_ptr<MortisedProcess>> started = MortisedProcess::start(options);
    EXPECT_TRUE(started.ok()) << started.status();
    if (!started.ok()) return false;
    mortised_ = std::move(*started);
    return true;
  }

  void start_agent(bool with_token = true, const std::string& token_file = "") {
    std::vector<std::string> arguments = {
        "--controller",
        controller_->address(),
        "--device-name",
        kDevice,
        "--state-dir",
        directory_ + "/state",
        "--mortised-socket",
        mortised_ ? mortised_->socket_path() : directory_ + "/no-mortised.sock",
        "--max-backoff",
        "300ms",
        "--restart-backoff-max",
        "1s"};
    if (with_token) {
      arguments.push_back("--bootstrap-token-file");
      arguments.push_back(token_file.empty() ? directory_ + "/token" : token_file);
    }
    agent_ = std::make_unique<AgentProcess>(arguments, directory_ + "/agent.log");
    ASSERT_TRUE(agent_->started());
  }

  // The first message the agent sent after `from` (an index into received()) that matches.
  std::optional<tenon::v1::AgentMessage> find_message(
      const std::function<bool(const tenon::v1::AgentMessage&)>& matches, size_t from = 0) {
    const std::vector<tenon::v1::AgentMessage> received = controller_->received();
    for (size_t i = from; i < received.size(); ++i) {
      if (matches(received[i])) return received[i];
    }
    return std::nullopt;
  }
  bool wait_for_message(const std::function<bool(const tenon::v1::AgentMessage&)>& matches,
                        size_t from = 0) {
    return wait_until([&] { return find_message(matches, from).has_value(); }, kLimit);
  }

  std::optional<tenon::v1::Vm> vm(const std::string& name) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    tenon::v1::ListVmsResponse response;
    if (!mortised_->stub().List(&context, {}, &response).ok()) return std::nullopt;
    for (const tenon::v1::Vm& candidate : response.vms()) {
      if (candidate.name() == name) return candidate;
    }
    return std::nullopt;
  }

  tenon::v1::DesiredState desired_with(uint64_t version, const std::string& digest, uint64_t size) {
    tenon::v1::DesiredState desired;
    desired.set_version(version);
    tenon::v1::DesiredInstance* instance = desired.add_instances();
    instance->set_name("idle-a");
    instance->set_uid("instance-uid-1");
    instance->set_image_digest(digest);
    instance->set_image_size_bytes(size);
    instance->mutable_placement()->set_memory_bytes(256 << 10);
    instance->set_state(tenon::v1::DESIRED_INSTANCE_STATE_RUNNING);
    return desired;
  }

  static bool is_status(const tenon::v1::AgentMessage& message, tenon::v1::InstanceState state,
                        uint64_t version) {
    return message.has_instance_status() && message.instance_status().instance_name() == "idle-a" &&
           message.instance_status().state() == state &&
           message.instance_status().desired_state_version() == version;
  }

  static bool is_ack(const tenon::v1::AgentMessage& message, uint64_t version) {
    return message.has_ack() && message.ack().desired_state_version() == version &&
           message.ack().outcome() == tenon::v1::ACK_OUTCOME_ACCEPTED;
  }

  bool engine_usable() const { return !tenon::test_support::usable_engines().empty(); }

  std::string directory_;
  std::unique_ptr<FakeController> controller_;
  std::unique_ptr<MortisedProcess> mortised_;
  std::unique_ptr<AgentProcess> agent_;
};

TEST_F(AgentProcessTest, EnrolsWithAGoodTokenAndConnectsWithTheStoredCredential) {
  start_agent();
  ASSERT_TRUE(wait_until([&] { return !controller_->hellos().empty(); }, kLimit));
  const std::string credential = controller_->credential_of(kDevice);
  ASSERT_FALSE(credential.empty());
  EXPECT_EQ(controller_->hellos()[0].credential(), credential);
  EXPECT_EQ(controller_->hellos()[0].device_name(), kDevice);
  ASSERT_EQ(controller_->enrollments().size(), 1u);
  EXPECT_EQ(controller_->enrollments()[0].profile().arch(), tenon::v1::ARCH_X86_64);
  EXPECT_GT(controller_->enrollments()[0].profile().cores(), 0u);

  // SIGTERM: a clean stop. Started again without a token, it uses the stored credential.
  agent_->signal(SIGTERM);
  std::optional<int> status = agent_->wait_exit(kLimit);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  start_agent(/*with_token=*/false);
  ASSERT_TRUE(wait_until([&] { return controller_->hellos().size() == 2; }, kLimit));
  EXPECT_EQ(controller_->hellos()[1].credential(), credential);
  EXPECT_EQ(controller_->enrollments().size(), 1u);
}

TEST_F(AgentProcessTest, AWrongTokenExitsWith3AndSaysWhy) {
  std::ofstream(directory_ + "/wrong") << "not-a-token\n";
  start_agent(true, directory_ + "/wrong");
  std::optional<int> status = agent_->wait_exit(kLimit);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 3) << *status;
  EXPECT_NE(agent_->log().find("bootstrap token unknown, expired or used up"), std::string::npos)
      << agent_->log();
}

TEST_F(AgentProcessTest, NotEnrolledAndNoTokenIsAUsageError) {
  start_agent(/*with_token=*/false);
  std::optional<int> status = agent_->wait_exit(kLimit);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << *status;
}

TEST_F(AgentProcessTest, ReconnectsAfterTheStreamEndsAndStopsWhenSuperseded) {
  start_agent();
  ASSERT_TRUE(wait_until([&] { return controller_->hellos().size() == 1; }, kLimit));
  controller_->end_stream(grpc::Status(grpc::StatusCode::UNAVAILABLE, "controller restarting"));
  ASSERT_TRUE(wait_until([&] { return controller_->hellos().size() == 2; }, kLimit));
  controller_->end_stream(grpc::Status(grpc::StatusCode::ABORTED, "superseded"));
  std::optional<int> status = agent_->wait_exit(kLimit);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 5) << *status;
  EXPECT_NE(agent_->log().find("another agent connected as edge-1"), std::string::npos);
}

TEST_F(AgentProcessTest, ARevokedCredentialExitsWith4) {
  start_agent();
  ASSERT_TRUE(wait_until([&] { return controller_->hellos().size() == 1; }, kLimit));
  controller_->end_stream(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "device deleted"));
  std::optional<int> status = agent_->wait_exit(kLimit);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 4) << *status;
  EXPECT_NE(agent_->log().find("credential rejected; re-enroll with a new bootstrap token"),
            std::string::npos);
}

TEST_F(AgentProcessTest, ACorruptedImageNeverBoots) {
  if (!engine_usable()) GTEST_SKIP() << tenon::test_support::no_engine_reason();
  ASSERT_TRUE(start_mortised());
  const std::string image = read_file(mortise::testing::image("idle-10ms.elf"));
  const std::string digest = controller_->add_image(image);
  controller_->set_send_chunk_sha256(false);  // only the whole-image check can catch it
  controller_->set_corrupt_chunk(1);
  controller_->set_desired_state(desired_with(1, digest, image.size()));
  start_agent();
  ASSERT_TRUE(wait_for_message([&](const tenon::v1::AgentMessage& message) {
    return message.has_instance_status() &&
           message.instance_status().message().find("image " + digest + " failed verification") !=
               std::string::npos;
  }));
  ASSERT_TRUE(wait_for_message([](const tenon::v1::AgentMessage& message) {
    return message.has_image_request() && message.sequence() > 1 &&
           message.image_request().offset() == 0;
  }));
  EXPECT_FALSE(vm("idle-a").has_value()) << "a corrupted image was booted";
  EXPECT_FALSE(std::filesystem::exists(directory_ + "/state/images/" + digest.substr(7)));

  // Once the controller serves it intact, the agent's retry succeeds.
  controller_->set_corrupt_chunk(-1);
  ASSERT_TRUE(wait_until(
      [&] {
        std::optional<tenon::v1::Vm> running = vm("idle-a");
        return running && running->state() == tenon::v1::VM_STATE_RUNNING;
      },
      kLimit));
}

TEST_F(AgentProcessTest, RunsTheDesiredInstanceKeepsItAcrossAgentKillsAndDestroysItWhenDropped) {
  if (!engine_usable()) GTEST_SKIP() << tenon::test_support::no_engine_reason();
  ASSERT_TRUE(start_mortised());
  const std::string image = read_file(mortise::testing::image("idle-10ms.elf"));
  const std::string digest = controller_->add_image(image);
  controller_->set_desired_state(desired_with(1, digest, image.size()));
  start_agent();

  // Image fetched, desired state acknowledged, VM running, status and telemetry reported.
  ASSERT_TRUE(wait_for_message([](const auto& message) { return is_ack(message, 1); }));
  ASSERT_TRUE(wait_for_message([](const auto& message) {
    return is_status(message, tenon::v1::INSTANCE_STATE_RUNNING, 1);
  }));
  std::optional<tenon::v1::Vm> running = vm("idle-a");
  ASSERT_TRUE(running.has_value());
  EXPECT_EQ(running->state(), tenon::v1::VM_STATE_RUNNING);
  EXPECT_EQ(running->image_digest(), digest);
  ASSERT_TRUE(wait_for_message([](const tenon::v1::AgentMessage& message) {
    return message.has_telemetry() && message.telemetry().instances_size() > 0 &&
           message.telemetry().instances(0).instance_name() == "idle-a";
  }));

  // kill -9: the instance keeps running under mortised.
  agent_->signal(SIGKILL);
  ASSERT_TRUE(agent_->wait_exit(kLimit).has_value());
  std::optional<tenon::v1::Vm> after_kill = vm("idle-a");
  ASSERT_TRUE(after_kill.has_value());
  EXPECT_EQ(after_kill->state(), tenon::v1::VM_STATE_RUNNING);
  EXPECT_EQ(after_kill->uid(), running->uid());

  // Restarted: Hello carries the stored version and the running instance; the VM is adopted,
  // not restarted, also across a reconcile towards a new version.
  const size_t before_restart = controller_->received().size();
  start_agent(/*with_token=*/false);
  ASSERT_TRUE(wait_until([&] { return controller_->hellos().size() == 2; }, kLimit));
  const tenon::v1::Hello hello = controller_->hellos()[1];
  EXPECT_EQ(hello.acknowledged_desired_state_version(), 1u);
  ASSERT_EQ(hello.image_digests_size(), 1);
  EXPECT_EQ(hello.image_digests(0), digest);
  ASSERT_EQ(hello.instances_size(), 1);
  EXPECT_EQ(hello.instances(0).instance_name(), "idle-a");
  EXPECT_EQ(hello.instances(0).state(), tenon::v1::INSTANCE_STATE_RUNNING);
  controller_->set_desired_state(desired_with(2, digest, image.size()));
  ASSERT_TRUE(wait_for_message(
      [](const auto& message) { return is_status(message, tenon::v1::INSTANCE_STATE_RUNNING, 2); },
      before_restart));
  std::optional<tenon::v1::Vm> adopted = vm("idle-a");
  ASSERT_TRUE(adopted.has_value());
  EXPECT_EQ(adopted->uid(), running->uid());
  EXPECT_EQ(adopted->vmm_pid(), running->vmm_pid());
  EXPECT_EQ(adopted->state(), tenon::v1::VM_STATE_RUNNING);
  EXPECT_EQ(find_message(
                [](const tenon::v1::AgentMessage& message) { return message.has_image_request(); },
                before_restart),
            std::nullopt)
      << "the held image was fetched again";

  // A desired state without the instance: destroyed.
  tenon::v1::DesiredState empty;
  empty.set_version(3);
  controller_->set_desired_state(empty);
  ASSERT_TRUE(wait_for_message([](const auto& message) { return is_ack(message, 3); }));
  ASSERT_TRUE(wait_until([&] { return !vm("idle-a").has_value(); }, kLimit));
}

}  // namespace

namespace {

TEST_F(AgentProcessTest, AnExitedInstanceIsReportedWithItsReasonAndRestartedPerPolicy) {
  if (!engine_usable()) GTEST_SKIP() << tenon::test_support::no_engine_reason();
  ASSERT_TRUE(start_mortised());
  // hello prints and exits with status 0: ALWAYS restarts it, after a backoff capped at 1 s here.
  const std::string image = read_file(mortise::testing::image("hello.elf"));
  const std::string digest = controller_->add_image(image);
  tenon::v1::DesiredState desired = desired_with(1, digest, image.size());
  desired.mutable_instances(0)->set_restart_policy(tenon::v1::RESTART_POLICY_ALWAYS);
  controller_->set_desired_state(desired);
  start_agent();
  ASSERT_TRUE(wait_for_message([](const tenon::v1::AgentMessage& message) {
    return message.has_instance_status() &&
           message.instance_status().state() == tenon::v1::INSTANCE_STATE_EXITED &&
           message.instance_status().exit_reason().kind() == tenon::v1::EXIT_KIND_GUEST_EXIT;
  }));
  ASSERT_TRUE(wait_for_message([](const tenon::v1::AgentMessage& message) {
    return message.has_instance_status() && message.instance_status().restart_count() >= 1 &&
           message.instance_status().exit_reason().kind() == tenon::v1::EXIT_KIND_GUEST_EXIT;
  }));
}

}  // namespace

// mortised end to end: a real mortised process on a unix socket in a temporary directory, real
// mortise-vmm children running real guests on the engine `--engine auto` picks here (KVM, else
// QEMU), and the generated gRPC client. Skipped only where no engine runs. Guests: latency-probe (a
// 1 kHz task "probe") for what must be watched closely, idle-10ms (a 100 Hz task "idle") for
// company that costs little CPU, hello (prints and exits).
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpcpp/create_channel_posix.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "mortised_fixture.h"
#include "mortised_process.h"
#include "tenon/v1/mortise.grpc.pb.h"

namespace {

using mortise::testing::image;
using mortise::testing::MortisedProcess;
using mortise::testing::open_descriptor_count;
using mortise::testing::process_running;
using mortise::testing::rpc_deadline;
using mortise::testing::wait_until;
using tenon::v1::MortiseService;

// Guest work is slow under nested KVM (about a microsecond per guest instruction): generous
// limits, which a passing run never comes near.
constexpr absl::Duration kLimit = absl::Seconds(30);
constexpr uint64_t kGuestMemory = 256 << 10;

class MortisedTest : public mortise::testing::MortisedFixture {
 protected:
  MortiseService::Stub& stub() { return mortised_->stub(); }

  grpc::Status create(const std::string& name, const std::string& image_name,
                      tenon::v1::VmOperationResponse* response = nullptr) {
    tenon::v1::CreateVmRequest request;
    request.set_name(name);
    request.set_image_path(image(image_name));
    request.set_memory_bytes(kGuestMemory);
    tenon::v1::VmOperationResponse ignored;
    grpc::ClientContext context;
    context.set_deadline(rpc_deadline());
    return stub().Create(&context, request, response != nullptr ? response : &ignored);
  }

  template <typename Request>
  grpc::Status lifecycle(grpc::Status (MortiseService::Stub::*call)(
                             grpc::ClientContext*, const Request&, tenon::v1::VmOperationResponse*),
                         const std::string& name,
                         tenon::v1::VmOperationResponse* response = nullptr) {
    Request request;
    request.set_name(name);
    tenon::v1::VmOperationResponse ignored;
    grpc::ClientContext context;
    context.set_deadline(rpc_deadline());
    return (stub().*call)(&context, request, response != nullptr ? response : &ignored);
  }
  grpc::Status start(const std::string& name, tenon::v1::VmOperationResponse* response = nullptr) {
    return lifecycle<tenon::v1::StartVmRequest>(&MortiseService::Stub::Start, name, response);
  }
  grpc::Status pause(const std::string& name, tenon::v1::VmOperationResponse* response = nullptr) {
    return lifecycle<tenon::v1::PauseVmRequest>(&MortiseService::Stub::Pause, name, response);
  }
  grpc::Status resume(const std::string& name, tenon::v1::VmOperationResponse* response = nullptr) {
    return lifecycle<tenon::v1::ResumeVmRequest>(&MortiseService::Stub::Resume, name, response);
  }
  grpc::Status destroy(const std::string& name,
                       tenon::v1::VmOperationResponse* response = nullptr) {
    return lifecycle<tenon::v1::DestroyVmRequest>(&MortiseService::Stub::Destroy, name, response);
  }

  tenon::v1::Vm get(const std::string& name, bool include_telemetry = false) {
    tenon::v1::GetVmRequest request;
    request.set_name(name);
    request.set_include_telemetry(include_telemetry);
    tenon::v1::Vm vm;
    grpc::ClientContext context;
    context.set_deadline(rpc_deadline());
    const grpc::Status status = stub().Get(&context, request, &vm);
    EXPECT_TRUE(status.ok()) << name << ": " << status.error_message();
    return vm;
  }

  // Jobs of the VM's first task so far; 0 until the guest has published its telemetry.
  uint64_t jobs(const std::string& name) {
    const tenon::v1::Vm vm = get(name, /*include_telemetry=*/true);
    return vm.telemetry().tasks_size() == 0 ? 0 : vm.telemetry().tasks(0).jobs();
  }

  void create_and_start(const std::string& name, const std::string& image_name) {
    grpc::Status created = create(name, image_name);
    ASSERT_TRUE(created.ok()) << name << ": " << created.error_message();
    grpc::Status started = start(name);
    ASSERT_TRUE(started.ok()) << name << ": " << started.error_message();
  }

  // The descriptor count of mortised once it has settled to `baseline` (or what it is after
  // the limit).
  int descriptors_settle_to(int baseline) {
    int count = -1;
    wait_until(
        [&] {
          count = open_descriptor_count(mortised_->pid());
          return count == baseline;
        },
        absl::Seconds(10));
    return count;
  }
};

// The processes `pid` started (QEMU, under the QEMU engine's mortise-vmm).
std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> children;
  std::error_code error;
  for (const auto& task :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"), error)) {
    std::ifstream file(task.path() / "children");
    for (pid_t child; file >> child;) children.push_back(child);
  }
  return children;
}

const tenon::v1::OperationLatency* latency_of(const tenon::v1::Vm& vm,
                                              tenon::v1::VmOperation operation) {
  for (const auto& latency : vm.stats().operation_latencies()) {
    if (latency.operation() == operation) return &latency;
  }
  return nullptr;
}

TEST_F(MortisedTest, HostInfoReportsThePartitionAndTheEngine) {
  tenon::v1::HostInfo info;
  grpc::ClientContext context;
  ASSERT_TRUE(stub().GetHostInfo(&context, {}, &info).ok());
  const std::string engine = mortise::engine_name(mortise::testing::test_engine());
  EXPECT_EQ(info.engine(), engine);
  EXPECT_EQ(info.engine_unavailable_reason(), "");
  if (engine == "kvm") {
    EXPECT_EQ(info.kvm_unavailable_reason(), "");
  } else {
    EXPECT_EQ(info.engine_detail(), "qemu-tcg");
    EXPECT_FALSE(info.qemu_version().empty());
  }
  EXPECT_GT(info.guest_abi_version(), 0u);
  EXPECT_FALSE(info.mortise_version().empty());
  EXPECT_FALSE(info.realtime_cpus().empty());
  EXPECT_FALSE(info.management_cpus().empty());
  EXPECT_GT(info.tsc_frequency_khz(), 0u);
  EXPECT_EQ(info.guest_memory_free_bytes(), info.guest_memory_bytes());
  EXPECT_NE(std::find(info.hypervisor_features().begin(), info.hypervisor_features().end(), engine),
            info.hypervisor_features().end());
  EXPECT_NE(std::find(info.libraries().begin(), info.libraries().end(), "loader"),
            info.libraries().end());
}

TEST_F(MortisedTest, PausedInstanceStopsWhileAnotherRunsAndResumesWithItsHistoryAndAGap) {
  create_and_start("probe", "latency-probe.elf");
  create_and_start("company-a", "idle-10ms.elf");
  create_and_start("company-b", "idle-10ms.elf");
  ASSERT_TRUE(wait_until([&] { return jobs("probe") >= 20; }, kLimit));
  ASSERT_TRUE(wait_until([&] { return jobs("company-a") >= 2; }, kLimit));

  tenon::v1::VmOperationResponse paused;
  ASSERT_TRUE(pause("probe", &paused).ok());
  EXPECT_EQ(paused.vm().state(), tenon::v1::VM_STATE_PAUSED);
  const tenon::v1::OperationLatency* pause_latency =
      latency_of(paused.vm(), tenon::v1::VM_OPERATION_PAUSE);
  ASSERT_NE(pause_latency, nullptr);
  EXPECT_TRUE(pause_latency->has_vmm_latency());
  // Pause returns once the vCPU has left the guest: from then on the counter stands still,
  // while the others go on.
  const uint64_t jobs_when_paused = jobs("probe");
  const uint64_t company_when_paused = jobs("company-a");
  ASSERT_TRUE(wait_until([&] { return jobs("company-a") >= company_when_paused + 3; }, kLimit));
  EXPECT_EQ(jobs("probe"), jobs_when_paused);
  EXPECT_EQ(get("probe").state(), tenon::v1::VM_STATE_PAUSED);
  EXPECT_EQ(get("company-b").state(), tenon::v1::VM_STATE_RUNNING);

  tenon::v1::VmOperationResponse resumed;
  ASSERT_TRUE(resume("probe", &resumed).ok());
  EXPECT_EQ(resumed.vm().state(), tenon::v1::VM_STATE_RUNNING);
  EXPECT_EQ(resumed.vm().stats().pauses(), 1u);
  const tenon::v1::OperationLatency* resume_latency =
      latency_of(resumed.vm(), tenon::v1::VM_OPERATION_RESUME);
  ASSERT_NE(resume_latency, nullptr);
  EXPECT_TRUE(resume_latency->has_vmm_latency());
  // The history is kept: the count goes on from where it stood.
  ASSERT_TRUE(wait_until([&] { return jobs("probe") >= jobs_when_paused + 20; }, kLimit));
  const tenon::v1::Vm probe = get("probe", /*include_telemetry=*/true);
  ASSERT_EQ(probe.telemetry().tasks_size(), 1);
  const tenon::v1::TaskTelemetry& task = probe.telemetry().tasks(0);
  EXPECT_EQ(task.task_name(), "probe");
  EXPECT_EQ(probe.telemetry().run_id(), probe.uid());
  // The guest saw the pause and counted the releases it slept through as a gap (that they are
  // not counted as latency is the next test's business). On QEMU the guest's clock stops while
  // it is paused: it sleeps through no release, so there is no gap.
  EXPECT_GE(probe.telemetry().pauses_observed(), 1u);
  if (mortise::testing::test_engine() == mortise::EngineKind::kKvm) {
    EXPECT_GT(task.gap_jobs(), 0u);
  } else {
    EXPECT_EQ(task.gap_jobs(), 0u);
  }
  EXPECT_EQ(get("company-a").state(), tenon::v1::VM_STATE_RUNNING);
}

// A pause that lands between a release and the start of its job, or between the scheduler's
// check of resume_count and the release, must not be recorded as release latency.
TEST_F(MortisedTest, PauseIsNeverCountedAsReleaseLatency) {
  create_and_start("probe", "latency-probe.elf");
  create_and_start("clock", "idle-10ms.elf");
  ASSERT_TRUE(wait_until([&] { return jobs("probe") >= 20; }, kLimit));
  absl::Duration shortest_pause = absl::InfiniteDuration();
  for (int cycle = 0; cycle < 10; ++cycle) {
    ASSERT_TRUE(pause("probe").ok());
    const absl::Time paused_at = absl::Now();
    // At least two whole periods of the 10 ms clock: a pause far longer than any honest latency.
    const uint64_t clock = jobs("clock");
    ASSERT_TRUE(wait_until([&] { return jobs("clock") >= clock + 3; }, kLimit));
    shortest_pause = std::min(shortest_pause, absl::Now() - paused_at);
    ASSERT_TRUE(resume("probe").ok());
    const uint64_t probe = jobs("probe");
    ASSERT_TRUE(wait_until([&] { return jobs("probe") >= probe + 5; }, kLimit));
  }
  const tenon::v1::Vm vm = get("probe", /*include_telemetry=*/true);
  ASSERT_EQ(vm.telemetry().tasks_size(), 1);
  const tenon::v1::TaskTelemetry& task = vm.telemetry().tasks(0);
  EXPECT_GE(vm.telemetry().pauses_observed(), 10u);
  // On QEMU the guest's clock stops while it is paused, so no release falls in a pause.
  if (mortise::testing::test_engine() == mortise::EngineKind::kKvm) {
    EXPECT_GE(task.gap_jobs(), 10u);
  }
  EXPECT_LT(task.release_latency_summary().max_ns(), absl::ToDoubleNanoseconds(shortest_pause))
      << "a release waited as long as a pause: the pause was counted as latency";
  EXPECT_LT(task.response_time_summary().max_ns(), absl::ToDoubleNanoseconds(shortest_pause))
      << "a job's response time spans a pause";
}

TEST_F(MortisedTest, DestroyEndsTheVmmAndReleasesEveryDescriptor) {
  const int baseline = open_descriptor_count(mortised_->pid());
  ASSERT_GT(baseline, 0);
  create_and_start("short-lived", "latency-probe.elf");
  const tenon::v1::Vm running = get("short-lived");
  const pid_t vmm = static_cast<pid_t>(running.vmm_pid());
  ASSERT_GT(vmm, 0);
  EXPECT_TRUE(process_running(vmm));
  const std::vector<pid_t> helpers = children_of(vmm);
  EXPECT_GT(open_descriptor_count(mortised_->pid()), baseline);
  // mortise-vmm holds its stdio, its control socket and its engine's handles, nothing else: on
  // KVM, /dev/kvm and its anonymous inodes; on QEMU, the guest memory, QEMU's pidfd, its QMP
  // socket and its stderr pipe.
  const bool qemu = mortise::testing::test_engine() == mortise::EngineKind::kQemu;
  EXPECT_EQ(helpers.size(), qemu ? 1u : 0u);
  for (const auto& entry :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", vmm, "/fd"))) {
    std::error_code error;
    const std::string target = std::filesystem::read_symlink(entry.path(), error).string();
    const std::string fd = entry.path().filename().string();
    if (fd == "0" || fd == "1" || fd == "2") continue;
    const bool engine_handle =
        qemu ? target.rfind("/memfd:", 0) == 0 || target == "anon_inode:[pidfd]" ||
                   target == "anon_inode:[eventfd]" || target.rfind("pipe:", 0) == 0
             : target == "/dev/kvm" || target.rfind("anon_inode:kvm", 0) == 0;
    EXPECT_TRUE(target.rfind("socket:", 0) == 0 || engine_handle)
        << "mortise-vmm fd " << fd << " -> " << target;
  }

  tenon::v1::VmOperationResponse destroyed;
  ASSERT_TRUE(destroy("short-lived", &destroyed).ok());
  EXPECT_EQ(destroyed.vm().state(), tenon::v1::VM_STATE_EXITED);
  EXPECT_EQ(destroyed.vm().exit_reason().kind(), tenon::v1::EXIT_KIND_STOPPED);
  EXPECT_EQ(destroyed.vm().vmm_pid(), 0u);
  // Killed and reaped by the time Destroy answers: no process, not even a zombie.
  EXPECT_FALSE(process_running(vmm));
  EXPECT_NE(access(absl::StrCat("/proc/", vmm).c_str(), F_OK), 0);
  for (const pid_t helper : helpers) EXPECT_FALSE(process_running(helper)) << helper;
  EXPECT_EQ(descriptors_settle_to(baseline), baseline);

  grpc::ClientContext context;
  tenon::v1::GetVmRequest request;
  request.set_name("short-lived");
  tenon::v1::Vm vm;
  EXPECT_EQ(stub().Get(&context, request, &vm).error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext list_context;
  tenon::v1::ListVmsResponse list;
  ASSERT_TRUE(stub().List(&list_context, {}, &list).ok());
  EXPECT_EQ(list.vms_size(), 0);
}

TEST_F(MortisedTest, VmmKilledFromOutsideIsReportedCrashedAndTheOthersKeepRunning) {
  create_and_start("victim", "idle-10ms.elf");
  create_and_start("survivor", "idle-10ms.elf");
  const pid_t victim = static_cast<pid_t>(get("victim").vmm_pid());
  ASSERT_GT(victim, 0);
  const std::vector<pid_t> helpers = children_of(victim);
  ASSERT_EQ(kill(victim, SIGKILL), 0);

  ASSERT_TRUE(
      wait_until([&] { return get("victim").state() == tenon::v1::VM_STATE_CRASHED; }, kLimit));
  const tenon::v1::Vm crashed = get("victim", /*include_telemetry=*/true);
  EXPECT_EQ(crashed.exit_reason().kind(), tenon::v1::EXIT_KIND_VMM_CRASHED);
  EXPECT_NE(crashed.exit_reason().message().find("signal 9"), std::string::npos)
      << crashed.exit_reason().message();
  EXPECT_EQ(crashed.vmm_pid(), 0u);
  EXPECT_FALSE(process_running(victim));
  // The VMM's own helpers (QEMU) die with it.
  for (const pid_t helper : helpers) {
    EXPECT_TRUE(wait_until([&] { return !process_running(helper); }, kLimit)) << helper;
  }

  const uint64_t survivor_jobs = jobs("survivor");
  ASSERT_TRUE(wait_until([&] { return jobs("survivor") >= survivor_jobs + 3; }, kLimit));
  EXPECT_EQ(get("survivor").state(), tenon::v1::VM_STATE_RUNNING);
  // A crashed VM is destroyed like any other.
  EXPECT_TRUE(destroy("victim").ok());
  EXPECT_TRUE(destroy("survivor").ok());
}

TEST_F(MortisedTest, IllegalTransitionsFailWithTheCurrentStateNamed) {
  ASSERT_TRUE(create("subject", "idle-10ms.elf").ok());
  auto expect_refused = [](const grpc::Status& status, const std::string& state) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
    EXPECT_NE(status.error_message().find(state), std::string::npos) << status.error_message();
  };
  expect_refused(pause("subject"), "CREATED");
  expect_refused(resume("subject"), "CREATED");
  EXPECT_EQ(create("subject", "idle-10ms.elf").error_code(), grpc::StatusCode::ALREADY_EXISTS);

  ASSERT_TRUE(start("subject").ok());
  expect_refused(start("subject"), "RUNNING");
  expect_refused(resume("subject"), "RUNNING");
  ASSERT_TRUE(pause("subject").ok());
  expect_refused(pause("subject"), "PAUSED");
  expect_refused(start("subject"), "PAUSED");
  ASSERT_TRUE(resume("subject").ok());

  // Snapshot and Restore check their paths before anything else (snapshot_test.cc has the rest).
  tenon::v1::SnapshotVmRequest snapshot;
  snapshot.set_name("subject");
  snapshot.set_path("/tmp/never-written.snapshot");
  tenon::v1::SnapshotVmResponse snapshot_response;
  grpc::ClientContext snapshot_context;
  EXPECT_EQ(stub().Snapshot(&snapshot_context, snapshot, &snapshot_response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  tenon::v1::RestoreVmRequest restore;
  restore.set_name("restored");
  tenon::v1::VmOperationResponse restore_response;
  grpc::ClientContext restore_context;
  EXPECT_EQ(stub().Restore(&restore_context, restore, &restore_response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  ASSERT_TRUE(destroy("subject").ok());
  EXPECT_EQ(start("subject").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(destroy("subject").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(start("never-created").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(pause("never-created").error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(MortisedTest, GuestExitIsTerminalAndItsConsoleStreamEnds) {
  create_and_start("hello", "hello.elf");
  ASSERT_TRUE(
      wait_until([&] { return get("hello").state() == tenon::v1::VM_STATE_EXITED; }, kLimit));
  const tenon::v1::Vm exited = get("hello");
  EXPECT_EQ(exited.exit_reason().kind(), tenon::v1::EXIT_KIND_GUEST_EXIT);
  EXPECT_EQ(exited.exit_reason().status(), 0);
  ASSERT_TRUE(wait_until([&] { return get("hello").vmm_pid() == 0; }, kLimit));
  EXPECT_EQ(pause("hello").error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // follow: the stream still ends, because the VM is terminal and every byte was sent.
  tenon::v1::StreamConsoleRequest request;
  request.set_name("hello");
  request.set_follow(true);
  grpc::ClientContext context;
  context.set_deadline(rpc_deadline());
  auto reader = stub().StreamConsole(&context, request);
  std::string console;
  tenon::v1::ConsoleChunk chunk;
  uint64_t expected_offset = 0;
  while (reader->Read(&chunk)) {
    EXPECT_EQ(chunk.offset(), expected_offset);
    expected_offset += chunk.data().size();
    console += chunk.data();
  }
  const grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_NE(console.find("Hello from Tenon"), std::string::npos) << console;
  EXPECT_EQ(exited.stats().console_bytes(), console.size());

  // Beyond what the VM wrote: OUT_OF_RANGE.
  tenon::v1::StreamConsoleRequest beyond;
  beyond.set_name("hello");
  beyond.set_from_offset(console.size() + 1);
  grpc::ClientContext beyond_context;
  auto beyond_reader = stub().StreamConsole(&beyond_context, beyond);
  while (beyond_reader->Read(&chunk)) {
  }
  EXPECT_EQ(beyond_reader->Finish().error_code(), grpc::StatusCode::OUT_OF_RANGE);
}

TEST_F(MortisedTest, ConsoleClientThatDisconnectsChangesNothing) {
  create_and_start("talker", "latency-probe.elf");
  const int baseline_after_start = open_descriptor_count(mortised_->pid());
  {
    auto client = mortised_->new_stub();
    tenon::v1::StreamConsoleRequest request;
    request.set_name("talker");
    request.set_follow(true);
    grpc::ClientContext context;
    auto reader = client->StreamConsole(&context, request);
    // A stream carries bytes, not lines: the QEMU engine's debug console may split a word.
    std::string seen;
    tenon::v1::ConsoleChunk chunk;
    while (seen.find("latency-probe") == std::string::npos && seen.size() < 4096 &&
           reader->Read(&chunk)) {
      seen += chunk.data();
    }
    EXPECT_NE(seen.find("latency-probe"), std::string::npos) << seen;
    // Gone without a word: the call is cancelled and the connection dropped with the client.
    context.TryCancel();
  }
  const uint64_t jobs_after = jobs("talker");
  ASSERT_TRUE(wait_until([&] { return jobs("talker") >= jobs_after + 10; }, kLimit));
  EXPECT_EQ(get("talker").state(), tenon::v1::VM_STATE_RUNNING);
  // The stream's handler has let go of everything it held.
  EXPECT_EQ(descriptors_settle_to(baseline_after_start), baseline_after_start);

  // Another reader gets the same bytes from the start.
  tenon::v1::StreamConsoleRequest again;
  again.set_name("talker");
  grpc::ClientContext context;
  auto reader = stub().StreamConsole(&context, again);
  std::string console;
  tenon::v1::ConsoleChunk chunk;
  while (reader->Read(&chunk)) console += chunk.data();
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_NE(console.find("latency-probe: 1 kHz task released"), std::string::npos) << console;
}

TEST_F(MortisedTest, TelemetryStreamsAtTheIntervalAndEndsAfterTheFinalSample) {
  create_and_start("watched", "latency-probe.elf");
  tenon::v1::StreamTelemetryRequest request;
  request.set_name("watched");
  request.mutable_interval()->set_nanos(10'000'000);
  {
    grpc::ClientContext context;
    auto reader = stub().StreamTelemetry(&context, request);
    tenon::v1::InstanceTelemetry sample;
    uint64_t last_jobs = 0;
    int samples = 0;
    while (samples < 5 && reader->Read(&sample)) {
      EXPECT_EQ(sample.instance_name(), "watched");
      if (sample.tasks_size() > 0) {
        EXPECT_GE(sample.tasks(0).jobs(), last_jobs);
        last_jobs = sample.tasks(0).jobs();
      }
      ++samples;
    }
    EXPECT_EQ(samples, 5);
    context.TryCancel();
  }
  ASSERT_TRUE(destroy("watched").ok());

  request.mutable_interval()->set_nanos(1'000'000);
  grpc::ClientContext context;
  auto reader = stub().StreamTelemetry(&context, request);
  tenon::v1::InstanceTelemetry sample;
  while (reader->Read(&sample)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(MortisedTest, CreateRefusesBadRequestsWithTheStatusThePromiseNames) {
  auto attempt = [&](tenon::v1::CreateVmRequest request) {
    if (request.name().empty()) request.set_name("bad");
    if (request.memory_bytes() == 0) request.set_memory_bytes(kGuestMemory);
    tenon::v1::VmOperationResponse response;
    grpc::ClientContext context;
    context.set_deadline(rpc_deadline());
    return stub().Create(&context, request, &response);
  };
  tenon::v1::CreateVmRequest request;
  request.set_image_path(image("hello.elf"));
  request.set_name("Not_A_Name");
  EXPECT_EQ(attempt(request).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  request.set_name("bad");
  request.set_memory_bytes(kGuestMemory + 1);
  EXPECT_EQ(attempt(request).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  request.set_memory_bytes(16 << 10);  // far too small for the image
  EXPECT_EQ(attempt(request).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  request.set_memory_bytes(kGuestMemory);
  request.mutable_cpu()->set_rt_priority(100);
  EXPECT_EQ(attempt(request).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  request.clear_cpu();

  request.set_image_path("images/hello.elf");
  EXPECT_EQ(attempt(request).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  request.set_image_path(image("no-such-image.elf"));
  EXPECT_EQ(attempt(request).error_code(), grpc::StatusCode::NOT_FOUND);
  request.set_image_path("/etc/hostname");
  EXPECT_EQ(attempt(request).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // A symlink inside the image directory that leads out of it is still outside.
  const std::string escape = mortised_->directory() + "/escape.elf";
  ASSERT_EQ(symlink("/etc/hostname", escape.c_str()), 0);
  request.set_image_path(escape);
  EXPECT_EQ(attempt(request).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  tenon::v1::CreateVmRequest bytes;
  bytes.set_image_bytes("definitely not an ELF image");
  EXPECT_EQ(attempt(bytes).error_code(), grpc::StatusCode::INVALID_ARGUMENT);  // no digest
  bytes.set_image_digest("sha256:0123");
  EXPECT_EQ(attempt(bytes).error_code(), grpc::StatusCode::INVALID_ARGUMENT);  // malformed
  bytes.set_image_digest("sha256:" + std::string(64, '0'));
  EXPECT_EQ(attempt(bytes).error_code(), grpc::StatusCode::INVALID_ARGUMENT);  // does not match
  tenon::v1::CreateVmRequest neither;
  EXPECT_EQ(attempt(neither).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  tenon::v1::SnapshotVmRequest snapshot;
  snapshot.set_name("bad");
  tenon::v1::SnapshotVmResponse snapshot_response;
  grpc::ClientContext snapshot_context;
  EXPECT_EQ(stub().Snapshot(&snapshot_context, snapshot, &snapshot_response).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // Nothing was left behind by any of these.
  grpc::ClientContext list_context;
  tenon::v1::ListVmsResponse list;
  ASSERT_TRUE(stub().List(&list_context, {}, &list).ok());
  EXPECT_EQ(list.vms_size(), 0);
  tenon::v1::HostInfo info;
  grpc::ClientContext info_context;
  ASSERT_TRUE(stub().GetHostInfo(&info_context, {}, &info).ok());
  EXPECT_EQ(info.guest_memory_free_bytes(), info.guest_memory_bytes());
}

TEST_F(MortisedTest, ImageBytesWithTheirDigestBootAndAreListedByName) {
  std::ifstream file(image("hello.elf"), std::ios::binary);
  const std::string elf((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(elf.empty());
  // The digest as mortised reports it for the same image by path.
  tenon::v1::VmOperationResponse by_path;
  ASSERT_TRUE(create("by-path", "hello.elf", &by_path).ok());
  const std::string digest = by_path.vm().image_digest();
  ASSERT_EQ(digest.rfind("sha256:", 0), 0u) << digest;

  tenon::v1::CreateVmRequest request;
  request.set_name("by-bytes");
  request.set_image_bytes(elf);
  request.set_image_digest(digest);
  request.set_memory_bytes(kGuestMemory);
  tenon::v1::VmOperationResponse response;
  grpc::ClientContext context;
  ASSERT_TRUE(stub().Create(&context, request, &response).ok());
  EXPECT_EQ(response.vm().state(), tenon::v1::VM_STATE_CREATED);
  EXPECT_NE(response.vm().uid(), by_path.vm().uid());

  grpc::ClientContext list_context;
  tenon::v1::ListVmsResponse list;
  ASSERT_TRUE(stub().List(&list_context, {}, &list).ok());
  ASSERT_EQ(list.vms_size(), 2);
  EXPECT_EQ(list.vms(0).name(), "by-bytes");
  EXPECT_EQ(list.vms(1).name(), "by-path");

  ASSERT_TRUE(start("by-bytes").ok());
  ASSERT_TRUE(
      wait_until([&] { return get("by-bytes").state() == tenon::v1::VM_STATE_EXITED; }, kLimit));
}

TEST_F(MortisedTest, CallerWithAnotherUidIsDenied) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  // The socket is connected by a child that has become uid 65534 (nobody); the connection,
  // with those credentials, is then used here.
  const int connection = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(connection, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, mortised_->socket_path().c_str(), sizeof(address.sun_path) - 1);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Only async-signal-safe calls between fork and _exit. Raw syscalls: glibc's setuid would
    // try to coordinate with the (copied, absent) threads of the parent.
    if (syscall(SYS_setgroups, 0, nullptr) != 0 ||
        syscall(SYS_setresgid, 65534, 65534, 65534) != 0 ||
        syscall(SYS_setresuid, 65534, 65534, 65534) != 0) {
      _exit(2);
    }
    _exit(connect(connection, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  auto channel = grpc::CreateInsecureChannelFromFd("mortised", connection);
  auto stranger = MortiseService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(rpc_deadline());
  tenon::v1::HostInfo info;
  const grpc::Status denied = stranger->GetHostInfo(&context, {}, &info);
  EXPECT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED) << denied.error_message();
  EXPECT_NE(denied.error_message().find("65534"), std::string::npos) << denied.error_message();

  // Root, on its own connection, is served as before.
  grpc::ClientContext root_context;
  EXPECT_TRUE(stub().GetHostInfo(&root_context, {}, &info).ok());
}

TEST_F(MortisedTest, StoppingMortisedLeavesNoVmmBehind) {
  create_and_start("orphan-candidate", "idle-10ms.elf");
  const pid_t vmm = static_cast<pid_t>(get("orphan-candidate").vmm_pid());
  ASSERT_GT(vmm, 0);
  const std::vector<pid_t> helpers = children_of(vmm);
  absl::StatusOr<int> status = mortised_->terminate();
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  EXPECT_TRUE(wait_until([&] { return !process_running(vmm); }, kLimit));
  for (const pid_t helper : helpers) {
    EXPECT_TRUE(wait_until([&] { return !process_running(helper); }, kLimit)) << helper;
  }
}

TEST_F(MortisedTest, VmmWhoseMortisedDiesStopsItsGuestAndExits) {
  create_and_start("abandoned", "idle-10ms.elf");
  const pid_t vmm = static_cast<pid_t>(get("abandoned").vmm_pid());
  ASSERT_GT(vmm, 0);
  const std::vector<pid_t> helpers = children_of(vmm);
  // No chance to clean up: the VMM only sees its control channel close.
  ASSERT_EQ(kill(mortised_->pid(), SIGKILL), 0);
  EXPECT_TRUE(wait_until([&] { return !process_running(vmm); }, kLimit));
  for (const pid_t helper : helpers) {
    EXPECT_TRUE(wait_until([&] { return !process_running(helper); }, kLimit)) << helper;
  }
}

}  // namespace

// Snapshot and Restore end to end, on every engine this host has: real mortised processes, real
// mortise-vmm children and real guests (KVM, or QEMU whose machine state travels in the
// snapshot). A running control loop is snapshotted by one mortised and restored by a second
// one (the migration path: snapshot, copy, restore), where its counters continue and the time
// it spent on disk is marked as a gap; every refusal the contract names is checked, a snapshot
// of the other engine among them, and mortised stays healthy after each.
#include <unistd.h>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "mortised_fixture.h"
#include "mortised_process.h"
#include "snapshot_format.h"
#include "synthetic_snapshot.h"
#include "tenon/v1/mortise.grpc.pb.h"

namespace {

using mortise::testing::image;
using mortise::testing::MortisedProcess;
using mortise::testing::rpc_deadline;
using mortise::testing::wait_until;
using tenon::v1::MortiseService;

// Guest work is slow under nested KVM: generous limits that a passing run never comes near.
constexpr absl::Duration kLimit = absl::Seconds(60);
constexpr uint64_t kGuestMemory = 1 << 20;

std::string read_file(const std::string& path) {
  std::ifstream stream(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(stream), {});
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream stream(path, std::ios::binary);
  stream.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// One mortised and the calls the tests make on it.
class Daemon {
 public:
  Daemon(std::unique_ptr<MortisedProcess> process, mortise::EngineKind engine)
      : process_(std::move(process)), engine_(engine) {}

  std::string snapshot_directory() const { return process_->directory() + "/state/snapshots"; }
  std::string log() const { return process_->log(); }

  grpc::Status create(const std::string& name, const std::string& image_name) {
    tenon::v1::CreateVmRequest request;
    request.set_name(name);
    request.set_image_path(image(image_name, engine_));
    request.set_memory_bytes(kGuestMemory);
    tenon::v1::VmOperationResponse response;
    grpc::ClientContext context;
    context.set_deadline(rpc_deadline());
    return process_->stub().Create(&context, request, &response);
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
    return (process_->stub().*call)(&context, request, response != nullptr ? response : &ignored);
  }
  grpc::Status start(const std::string& name) {
    return lifecycle<tenon::v1::StartVmRequest>(&MortiseService::Stub::Start, name);
  }
  grpc::Status resume(const std::string& name, tenon::v1::VmOperationResponse* response = nullptr) {
    return lifecycle<tenon::v1::ResumeVmRequest>(&MortiseService::Stub::Resume, name, response);
  }
  grpc::Status pause(const std::string& name) {
    return lifecycle<tenon::v1::PauseVmRequest>(&MortiseService::Stub::Pause, name);
  }
  grpc::Status destroy(const std::string& name) {
    return lifecycle<tenon::v1::DestroyVmRequest>(&MortiseService::Stub::Destroy, name);
  }

  grpc::Status snapshot(const std::string& name, const std::string& path,
                        tenon::v1::SnapshotVmResponse* response = nullptr) {
    tenon::v1::SnapshotVmRequest request;
    request.set_name(name);
    request.set_path(path);
    tenon::v1::SnapshotVmResponse ignored;
    grpc::ClientContext context;
    context.set_deadline(rpc_deadline());
    return process_->stub().Snapshot(&context, request, response != nullptr ? response : &ignored);
  }

  grpc::Status restore(const std::string& name, const std::string& path,
                       const std::string& expected_digest = "",
                       tenon::v1::VmOperationResponse* response = nullptr) {
    tenon::v1::RestoreVmRequest request;
    request.set_name(name);
    request.set_path(path);
    request.set_expected_digest(expected_digest);
    tenon::v1::VmOperationResponse ignored;
    grpc::ClientContext context;
    context.set_deadline(rpc_deadline());
    return process_->stub().Restore(&context, request, response != nullptr ? response : &ignored);
  }

  tenon::v1::Vm get(const std::string& name, bool include_telemetry = false) {
    tenon::v1::GetVmRequest request;
    request.set_name(name);
    request.set_include_telemetry(include_telemetry);
    tenon::v1::Vm vm;
    grpc::ClientContext context;
    context.set_deadline(rpc_deadline());
    const grpc::Status status = process_->stub().Get(&context, request, &vm);
    EXPECT_TRUE(status.ok()) << name << ": " << status.error_message();
    return vm;
  }

  // The first task's counters; empty until the guest has published its telemetry.
  tenon::v1::TaskTelemetry task(const std::string& name) {
    const tenon::v1::Vm vm = get(name, /*include_telemetry=*/true);
    return vm.telemetry().tasks_size() == 0 ? tenon::v1::TaskTelemetry() : vm.telemetry().tasks(0);
  }

  tenon::v1::ListVmsResponse list() {
    tenon::v1::ListVmsResponse response;
    grpc::ClientContext context;
    context.set_deadline(rpc_deadline());
    EXPECT_TRUE(process_->stub().List(&context, {}, &response).ok());
    return response;
  }

  bool healthy() {
    tenon::v1::HostInfo info;
    grpc::ClientContext context;
    context.set_deadline(rpc_deadline());
    return process_->stub().GetHostInfo(&context, {}, &info).ok();
  }

 private:
  std::unique_ptr<MortisedProcess> process_;
  mortise::EngineKind engine_;
};

class SnapshotTest : public ::testing::TestWithParam<mortise::EngineKind> {
 protected:
  void SetUp() override {
    source_ = start_daemon(GetParam());
    target_ = start_daemon(GetParam());
    ASSERT_NE(source_, nullptr);
    ASSERT_NE(target_, nullptr);
  }

  void TearDown() override {
    if (HasFailure()) {
      if (source_ != nullptr) std::cerr << "---- source mortised ----\n" << source_->log();
      if (target_ != nullptr) std::cerr << "---- target mortised ----\n" << target_->log();
    }
  }

  static std::unique_ptr<Daemon> start_daemon(mortise::EngineKind engine) {
    std::unique_ptr<MortisedProcess> started = mortise::testing::start_test_mortised(engine);
    return started != nullptr ? std::make_unique<Daemon>(std::move(started), engine) : nullptr;
  }

  std::unique_ptr<Daemon> source_;
  std::unique_ptr<Daemon> target_;
};

// A well-formed snapshot file of `engine`: mortised must refuse it for its engine before
// anything runs it.
std::string synthetic_snapshot(mortise::snapshot::Engine engine) {
  const tenon::test_support::SyntheticSnapshot snapshot(engine, kGuestMemory);
  absl::StatusOr<std::string> encoded = mortise::snapshot::encode_snapshot(snapshot.contents());
  EXPECT_TRUE(encoded.ok()) << encoded.status();
  return encoded.value_or("");
}

TEST_P(SnapshotTest, ASnapshotOfTheOtherEngineIsRefusedNamingBoth) {
  const bool here_qemu = GetParam() == mortise::EngineKind::kQemu;
  const std::string path = source_->snapshot_directory() + "/elsewhere.snap";
  write_file(path, synthetic_snapshot(here_qemu ? mortise::snapshot::Engine::kKvm
                                                : mortise::snapshot::Engine::kQemu));
  const grpc::Status status = source_->restore("elsewhere", path);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_NE(status.error_message().find(here_qemu ? "taken on the kvm engine"
                                                  : "taken on the qemu engine"),
            std::string::npos)
      << status.error_message();
  EXPECT_NE(status.error_message().find(here_qemu ? "runs the qemu engine" : "runs the kvm engine"),
            std::string::npos)
      << status.error_message();
  EXPECT_TRUE(source_->healthy());
  EXPECT_EQ(source_->list().vms_size(), 0);
}

TEST_P(SnapshotTest, BetweenEnginesARealSnapshotIsRefused) {
  const std::vector<mortise::EngineKind> engines = tenon::test_support::usable_engines();
  if (engines.size() < 2) GTEST_SKIP() << "only one engine runs here";
  const mortise::EngineKind other = GetParam() == mortise::EngineKind::kKvm
                                        ? mortise::EngineKind::kQemu
                                        : mortise::EngineKind::kKvm;
  std::unique_ptr<Daemon> elsewhere = start_daemon(other);
  ASSERT_NE(elsewhere, nullptr);
  ASSERT_TRUE(source_->create("loop", "control-loop.elf").ok());
  ASSERT_TRUE(source_->start("loop").ok());
  const std::string path = source_->snapshot_directory() + "/loop.snap";
  tenon::v1::SnapshotVmResponse snapshot;
  const grpc::Status taken = source_->snapshot("loop", path, &snapshot);
  ASSERT_TRUE(taken.ok()) << taken.error_message();
  const std::string copy = elsewhere->snapshot_directory() + "/loop.snap";
  write_file(copy, read_file(path));
  const grpc::Status status = elsewhere->restore("loop", copy, snapshot.digest());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_NE(status.error_message().find("only that engine can restore it"), std::string::npos)
      << status.error_message();
  EXPECT_TRUE(elsewhere->healthy());
}

TEST_P(SnapshotTest, RunningControlLoopContinuesInASecondMortisedWithItsCountersAndAGap) {
  ASSERT_TRUE(source_->create("loop", "control-loop.elf").ok());
  ASSERT_TRUE(source_->start("loop").ok());
  ASSERT_TRUE(wait_until([&] { return source_->task("loop").jobs() >= 50; }, kLimit));
  const tenon::v1::Vm before = source_->get("loop", /*include_telemetry=*/true);
  const uint64_t jobs_before = before.telemetry().tasks(0).jobs();

  const std::string path = source_->snapshot_directory() + "/loop.snap";
  tenon::v1::SnapshotVmResponse snapshot;
  const grpc::Status snapshotted = source_->snapshot("loop", path, &snapshot);
  ASSERT_TRUE(snapshotted.ok()) << snapshotted.error_message();
  EXPECT_EQ(snapshot.path(), path);
  EXPECT_GT(snapshot.size_bytes(), kGuestMemory);
  EXPECT_EQ(snapshot.size_bytes(), std::filesystem::file_size(path));
  EXPECT_EQ(snapshot.digest().rfind("sha256:", 0), 0u);
  EXPECT_EQ(snapshot.digest().size(), 7u + 64u);
  EXPECT_TRUE(snapshot.has_pause_duration());
  // A running VM is paused for the copy only.
  EXPECT_EQ(snapshot.vm().state(), tenon::v1::VM_STATE_RUNNING);
  const uint64_t jobs_after_snapshot = source_->task("loop").jobs();
  ASSERT_TRUE(
      wait_until([&] { return source_->task("loop").jobs() > jobs_after_snapshot + 5; }, kLimit))
      << "the source kept running after its snapshot";

  // Migration: the file travels to the other host's snapshot directory.
  const std::string copy = target_->snapshot_directory() + "/loop.snap";
  write_file(copy, read_file(path));
  tenon::v1::VmOperationResponse restored;
  const grpc::Status restore = target_->restore("loop", copy, snapshot.digest(), &restored);
  ASSERT_TRUE(restore.ok()) << restore.error_message();
  EXPECT_EQ(restored.vm().state(), tenon::v1::VM_STATE_PAUSED);
  EXPECT_NE(restored.vm().uid(), before.uid());
  EXPECT_EQ(restored.vm().memory_bytes(), kGuestMemory);
  EXPECT_EQ(restored.vm().image_digest(), before.image_digest());

  // Paused at the instant of the snapshot: the counters stand where the source's stood then.
  const tenon::v1::Vm paused = target_->get("loop", /*include_telemetry=*/true);
  ASSERT_GE(paused.telemetry().tasks_size(), 1);
  const tenon::v1::TaskTelemetry at_restore = paused.telemetry().tasks(0);
  EXPECT_GE(at_restore.jobs(), jobs_before);
  EXPECT_LE(at_restore.jobs(), jobs_after_snapshot);
  EXPECT_EQ(paused.telemetry().run_id(), before.telemetry().run_id())
      << "a restored instance's counters continue, so its run_id does too";

  tenon::v1::VmOperationResponse resumed;
  ASSERT_TRUE(target_->resume("loop", &resumed).ok());
  EXPECT_EQ(resumed.vm().state(), tenon::v1::VM_STATE_RUNNING);
  EXPECT_TRUE(resumed.vm().has_start_time());
  ASSERT_TRUE(
      wait_until([&] { return target_->task("loop").jobs() >= at_restore.jobs() + 50; }, kLimit))
      << "the restored control loop does not run";
  const tenon::v1::Vm running = target_->get("loop", /*include_telemetry=*/true);
  const tenon::v1::TaskTelemetry& task = running.telemetry().tasks(0);
  EXPECT_EQ(task.task_name(), at_restore.task_name());
  if (GetParam() == mortise::EngineKind::kKvm) {
    // The releases that fell into the time on disk are a gap, not a burst of late jobs.
    EXPECT_GT(task.gap_jobs(), at_restore.gap_jobs());
  } else {
    // QEMU's guest clock stood still from the snapshot to the resume: no release fell into
    // that time, so there is no gap.
    EXPECT_EQ(task.gap_jobs(), at_restore.gap_jobs());
  }
  EXPECT_GT(running.telemetry().pauses_observed(), paused.telemetry().pauses_observed());
  EXPECT_EQ(running.telemetry().run_id(), before.telemetry().run_id());
  bool restore_timed = false;
  for (const auto& latency : running.stats().operation_latencies()) {
    restore_timed |= latency.operation() == tenon::v1::VM_OPERATION_RESTORE;
  }
  EXPECT_TRUE(restore_timed);

  // Both instances live on, each in its own mortised.
  EXPECT_EQ(source_->get("loop").state(), tenon::v1::VM_STATE_RUNNING);
  EXPECT_TRUE(target_->destroy("loop").ok());
  EXPECT_TRUE(source_->destroy("loop").ok());
}

TEST_P(SnapshotTest, PausedVmSnapshotsWithoutRunningAndRestoresOnTheSameMortised) {
  ASSERT_TRUE(source_->create("probe", "latency-probe.elf").ok());
  ASSERT_TRUE(source_->start("probe").ok());
  ASSERT_TRUE(wait_until([&] { return source_->task("probe").jobs() >= 20; }, kLimit));
  ASSERT_TRUE(source_->pause("probe").ok());
  const uint64_t jobs_paused = source_->task("probe").jobs();
  const std::string path = source_->snapshot_directory() + "/probe.snap";
  tenon::v1::SnapshotVmResponse snapshot;
  ASSERT_TRUE(source_->snapshot("probe", path, &snapshot).ok());
  EXPECT_EQ(snapshot.vm().state(), tenon::v1::VM_STATE_PAUSED);
  EXPECT_EQ(snapshot.pause_duration().seconds() + snapshot.pause_duration().nanos(), 0);
  EXPECT_EQ(source_->task("probe").jobs(), jobs_paused);

  ASSERT_TRUE(source_->restore("probe-copy", path).ok());
  ASSERT_TRUE(source_->resume("probe-copy").ok());
  ASSERT_TRUE(
      wait_until([&] { return source_->task("probe-copy").jobs() >= jobs_paused + 20; }, kLimit));
  // The original is untouched by its copy.
  EXPECT_EQ(source_->get("probe").state(), tenon::v1::VM_STATE_PAUSED);
  EXPECT_EQ(source_->task("probe").jobs(), jobs_paused);
}

TEST_P(SnapshotTest, RefusalsNameTheirReasonAndMortisedStaysHealthy) {
  const std::string directory = source_->snapshot_directory();
  EXPECT_EQ(source_->snapshot("nobody", directory + "/x.snap").error_code(),
            grpc::StatusCode::NOT_FOUND);

  ASSERT_TRUE(source_->create("probe", "latency-probe.elf").ok());
  // Legal in RUNNING and PAUSED only.
  const grpc::Status created = source_->snapshot("probe", directory + "/created.snap");
  EXPECT_EQ(created.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(created.error_message().find("CREATED"), std::string::npos) << created.error_message();
  ASSERT_TRUE(source_->start("probe").ok());
  ASSERT_TRUE(wait_until([&] { return source_->task("probe").jobs() >= 10; }, kLimit));

  EXPECT_EQ(source_->snapshot("probe", "relative.snap").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(source_->snapshot("probe", "/tmp/outside.snap").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(source_->snapshot("probe", directory + "/../escape.snap").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  const std::string path = directory + "/probe.snap";
  tenon::v1::SnapshotVmResponse snapshot;
  ASSERT_TRUE(source_->snapshot("probe", path, &snapshot).ok());
  const std::string good = read_file(path);
  const grpc::Status again = source_->snapshot("probe", path);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::ALREADY_EXISTS) << again.error_message();
  EXPECT_EQ(read_file(path), good) << "a snapshot was overwritten";

  // Restore refusals.
  EXPECT_EQ(source_->restore("other", directory + "/missing.snap").error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(source_->restore("probe", path).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(source_->restore("other", path, "sha256:nothex").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  const grpc::Status wrong_digest =
      source_->restore("other", path, "sha256:" + std::string(64, '0'));
  EXPECT_EQ(wrong_digest.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_NE(wrong_digest.error_message().find("expected_digest"), std::string::npos);

  std::string corrupt = good;
  corrupt[corrupt.size() / 2] = static_cast<char>(corrupt[corrupt.size() / 2] ^ 0x40);
  write_file(directory + "/corrupt.snap", corrupt);
  const grpc::Status corrupted = source_->restore("other", directory + "/corrupt.snap");
  EXPECT_EQ(corrupted.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_NE(corrupted.error_message().find("checksum"), std::string::npos)
      << corrupted.error_message();

  write_file(directory + "/truncated.snap", good.substr(0, good.size() / 3));
  const grpc::Status truncated = source_->restore("other", directory + "/truncated.snap");
  EXPECT_EQ(truncated.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_NE(truncated.error_message().find("truncated"), std::string::npos)
      << truncated.error_message();

  std::string garbage = good;
  garbage[0] = 'X';
  write_file(directory + "/garbage.snap", garbage);
  const grpc::Status bad_magic = source_->restore("other", directory + "/garbage.snap");
  EXPECT_EQ(bad_magic.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_NE(bad_magic.error_message().find("magic"), std::string::npos);

  std::string newer = good;
  newer[8] = static_cast<char>(mortise::snapshot::kFormatVersion + 1);  // format version
  write_file(directory + "/newer.snap", newer);
  EXPECT_EQ(source_->restore("other", directory + "/newer.snap").error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);

  // Nothing of the refused restores is left behind, and the running VM never noticed.
  EXPECT_TRUE(source_->healthy());
  EXPECT_EQ(source_->list().vms_size(), 1);
  const uint64_t jobs = source_->task("probe").jobs();
  EXPECT_TRUE(wait_until([&] { return source_->task("probe").jobs() > jobs + 10; }, kLimit));
  EXPECT_EQ(source_->get("probe").state(), tenon::v1::VM_STATE_RUNNING);
}

INSTANTIATE_TEST_SUITE_P(Engines, SnapshotTest,
                         ::testing::ValuesIn(tenon::test_support::usable_engines()),
                         [](const ::testing::TestParamInfo<mortise::EngineKind>& info) {
                           return std::string(mortise::engine_name(info.param));
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(SnapshotTest);

}  // namespace

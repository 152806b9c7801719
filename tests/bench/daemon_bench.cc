// B4 (first part: pause and resume) and B6 (density) through a real mortised. Writes one JSON
// document and prints a short table. See ../../../shared/BENCHMARKS.md ids B4 and B6; this is a
// benchmark, nothing here fails on a timing.
//
// B4: a running latency-probe instance is paused and resumed many times; each operation is
// timed at the gRPC client (end to end), inside mortised (VmOperationResponse.latency: request
// receipt to new state) and inside mortise-vmm (OperationLatency.vmm_latency: command receipt
// to the vCPU out of / on its way back into the guest).
// B4 (second part: snapshot and restore) in the same run, against the pause/resume above as the
// baseline: a running latency-probe of --snapshot-memory bytes is snapshotted (timed at the
// client, inside mortised and inside mortise-vmm, with how long the guest was held out and the
// file's size); each file is copied to a second mortised and restored there (timed at the
// client and inside mortised), then resumed and destroyed.
// B6: instances of idle-10ms (one 100 Hz task) are created and started until a target count,
// a failure or a time limit; reported are how many are alive at once and what they cost the
// host (mortised RSS, per-mortise-vmm RSS and PSS).
#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "bench_report.h"
#include "flags/duration_flag.h"
#include "mortised_process.h"
#include "tenon/v1/mortise.grpc.pb.h"

namespace {

using mortise::testing::MortisedOptions;
using mortise::testing::MortisedProcess;
using Clock = std::chrono::steady_clock;
using tenon::bench::summarize;

constexpr uint64_t kGuestMemory = 256 << 10;

double nanoseconds(const google::protobuf::Duration& duration) {
  return static_cast<double>(duration.seconds()) * 1e9 + duration.nanos();
}

std::chrono::system_clock::time_point rpc_deadline() {
  return std::chrono::system_clock::now() + std::chrono::seconds(60);
}

tenon::v1::CpuPolicy parse_policy(const std::string& policy) {
  if (policy == "realtime") return tenon::v1::CPU_POLICY_REALTIME;
  if (policy == "dedicated") return tenon::v1::CPU_POLICY_DEDICATED;
  return tenon::v1::CPU_POLICY_ANYWHERE;
}

grpc::Status create_and_start(tenon::v1::MortiseService::Stub& stub, const std::string& name,
                              const std::string& image, tenon::v1::CpuPolicy policy,
                              uint32_t rt_priority, tenon::v1::VmOperationResponse* started) {
  tenon::v1::CreateVmRequest create;
  create.set_name(name);
  create.set_image_path(image);
  create.set_memory_bytes(kGuestMemory);
  create.mutable_cpu()->set_policy(policy);
  create.mutable_cpu()->set_rt_priority(rt_priority);
  tenon::v1::VmOperationResponse created;
  grpc::ClientContext create_context;
  create_context.set_deadline(rpc_deadline());
  grpc::Status status = stub.Create(&create_context, create, &created);
  if (!status.ok()) return status;
  tenon::v1::StartVmRequest start;
  start.set_name(name);
  grpc::ClientContext start_context;
  start_context.set_deadline(rpc_deadline());
  return stub.Start(&start_context, start, started);
}

std::optional<tenon::v1::Vm> get(tenon::v1::MortiseService::Stub& stub, const std::string& name,
                                 bool include_telemetry) {
  tenon::v1::GetVmRequest request;
  request.set_name(name);
  request.set_include_telemetry(include_telemetry);
  tenon::v1::Vm vm;
  grpc::ClientContext context;
  context.set_deadline(rpc_deadline());
  if (!stub.Get(&context, request, &vm).ok()) return std::nullopt;
  return vm;
}

uint64_t jobs(tenon::v1::MortiseService::Stub& stub, const std::string& name) {
  std::optional<tenon::v1::Vm> vm = get(stub, name, true);
  if (!vm || vm->telemetry().tasks_size() == 0) return 0;
  return vm->telemetry().tasks(0).jobs();
}

double vmm_latency_of(const tenon::v1::Vm& vm, tenon::v1::VmOperation operation) {
  for (const auto& latency : vm.stats().operation_latencies()) {
    if (latency.operation() == operation && latency.has_vmm_latency()) {
      return nanoseconds(latency.vmm_latency());
    }
  }
  return -1;
}

struct Options {
  std::string mortised;
  std::string engine;           // what mortised runs: "kvm" or "qemu"
  std::string image_directory;  // this build's images for that engine
  int iterations = 200;
  int snapshot_iterations = 20;
  uint64_t snapshot_memory = 1 << 20;
  int density_target = 1000;
  absl::Duration density_time_limit = absl::Minutes(10);
  std::string b4_policy = "realtime";
  uint32_t b4_rt_priority = 90;
  std::string b6_policy = "realtime";
};

// mortised on the benchmark's engine, serving the build's images for it.
MortisedOptions daemon_options(const Options& options) {
  MortisedOptions daemon;
  daemon.mortised_binary = options.mortised;
  daemon.image_directory = options.image_directory;
  daemon.extra_arguments = {"--engine", options.engine};
  return daemon;
}

double since(Clock::time_point start) {
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count();
}

nlohmann::json run_b4_snapshots(const Options& options) {
  const MortisedOptions daemon = daemon_options(options);
  absl::StatusOr<std::unique_ptr<MortisedProcess>> source = MortisedProcess::start(daemon);
  if (!source.ok()) return {{"error", std::string(source.status().message())}};
  absl::StatusOr<std::unique_ptr<MortisedProcess>> target = MortisedProcess::start(daemon);
  if (!target.ok()) return {{"error", std::string(target.status().message())}};
  auto& stub = (*source)->stub();
  auto& target_stub = (*target)->stub();
  const std::string source_directory = (*source)->directory() + "/state/snapshots";
  const std::string target_directory = (*target)->directory() + "/state/snapshots";
  const std::string name = "snap";
  tenon::v1::CreateVmRequest create;
  create.set_name(name);
  create.set_image_path(options.image_directory + "/latency-probe.elf");
  create.set_memory_bytes(options.snapshot_memory);
  create.mutable_cpu()->set_policy(parse_policy(options.b4_policy));
  create.mutable_cpu()->set_rt_priority(options.b4_rt_priority);
  {
    tenon::v1::VmOperationResponse created;
    grpc::ClientContext context;
    context.set_deadline(rpc_deadline());
    grpc::Status status = stub.Create(&context, create, &created);
    if (!status.ok()) return {{"error", status.error_message()}};
    tenon::v1::StartVmRequest start;
    start.set_name(name);
    grpc::ClientContext start_context;
    start_context.set_deadline(rpc_deadline());
    status = stub.Start(&start_context, start, &created);
    if (!status.ok()) return {{"error", status.error_message()}};
  }
  const auto warm_deadline = Clock::now() + std::chrono::seconds(30);
  while (jobs(stub, name) < 100 && Clock::now() < warm_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }

  std::vector<double> snapshot_client, snapshot_daemon, snapshot_vmm, snapshot_pause, size_bytes;
  std::vector<double> restore_client, restore_daemon, resume_after_restore_client;
  int failures = 0;
  std::string first_failure;
  auto failed = [&](const grpc::Status& status) {
    if (failures++ == 0) first_failure = status.error_message();
  };
  for (int i = 0; i < options.snapshot_iterations; ++i) {
    const uint64_t before = jobs(stub, name);
    const auto run_deadline = Clock::now() + std::chrono::seconds(10);
    while (jobs(stub, name) <= before && Clock::now() < run_deadline) {
    }
    const std::string file = absl::StrFormat("snap-%04d.snap", i);
    tenon::v1::SnapshotVmRequest snapshot;
    snapshot.set_name(name);
    snapshot.set_path(source_directory + "/" + file);
    tenon::v1::SnapshotVmResponse written;
    grpc::ClientContext snapshot_context;
    snapshot_context.set_deadline(rpc_deadline());
    const auto snapshot_start = Clock::now();
    grpc::Status status = stub.Snapshot(&snapshot_context, snapshot, &written);
    const double snapshot_ns = since(snapshot_start);
    if (!status.ok()) {
      failed(status);
      continue;
    }
    snapshot_client.push_back(snapshot_ns);
    snapshot_daemon.push_back(nanoseconds(written.latency()));
    snapshot_vmm.push_back(vmm_latency_of(written.vm(), tenon::v1::VM_OPERATION_SNAPSHOT));
    snapshot_pause.push_back(nanoseconds(written.pause_duration()));
    size_bytes.push_back(static_cast<double>(written.size_bytes()));

    // The transfer to the other host is not part of either operation.
    std::filesystem::copy_file(source_directory + "/" + file, target_directory + "/" + file);
    std::filesystem::remove(source_directory + "/" + file);
    const std::string copy = absl::StrFormat("copy-%04d", i);
    tenon::v1::RestoreVmRequest restore;
    restore.set_name(copy);
    restore.set_path(target_directory + "/" + file);
    restore.set_expected_digest(written.digest());
    restore.mutable_cpu()->set_policy(parse_policy(options.b4_policy));
    restore.mutable_cpu()->set_rt_priority(options.b4_rt_priority);
    tenon::v1::VmOperationResponse restored;
    grpc::ClientContext restore_context;
    restore_context.set_deadline(rpc_deadline());
    const auto restore_start = Clock::now();
    status = target_stub.Restore(&restore_context, restore, &restored);
    const double restore_ns = since(restore_start);
    if (!status.ok()) {
      failed(status);
      continue;
    }
    restore_client.push_back(restore_ns);
    restore_daemon.push_back(nanoseconds(restored.latency()));
    tenon::v1::ResumeVmRequest resume;
    resume.set_name(copy);
    tenon::v1::VmOperationResponse resumed;
    grpc::ClientContext resume_context;
    resume_context.set_deadline(rpc_deadline());
    const auto resume_start = Clock::now();
    status = target_stub.Resume(&resume_context, resume, &resumed);
    if (status.ok()) {
      resume_after_restore_client.push_back(since(resume_start));
    } else {
      failed(status);
    }
    tenon::v1::DestroyVmRequest destroy;
    destroy.set_name(copy);
    grpc::ClientContext destroy_context;
    destroy_context.set_deadline(rpc_deadline());
    (void)target_stub.Destroy(&destroy_context, destroy, &resumed);
    std::filesystem::remove(target_directory + "/" + file);
  }
  return {
      {"unit", "ns"},
      {"iterations", options.snapshot_iterations},
      {"guest_memory_bytes", options.snapshot_memory},
      {"failures", failures},
      {"first_failure", first_failure},
      {"snapshot",
       {{"client_end_to_end", summarize(snapshot_client)},
        {"mortised", summarize(snapshot_daemon)},
        {"mortise_vmm", summarize(snapshot_vmm)},
        {"guest_held_out", summarize(snapshot_pause)}}},
      {"file_size_bytes", summarize(size_bytes)},
      {"restore",
       {{"client_end_to_end", summarize(restore_client)}, {"mortised", summarize(restore_daemon)}}},
      {"resume_after_restore", {{"client_end_to_end", summarize(resume_after_restore_client)}}}};
}

nlohmann::json run_b4(const Options& options) {
  const MortisedOptions daemon = daemon_options(options);
  absl::StatusOr<std::unique_ptr<MortisedProcess>> mortised = MortisedProcess::start(daemon);
  if (!mortised.ok()) return {{"error", std::string(mortised.status().message())}};
  auto& stub = (*mortised)->stub();
  const std::string name = "probe";
  tenon::v1::VmOperationResponse started;
  grpc::Status status =
      create_and_start(stub, name, options.image_directory + "/latency-probe.elf",
                       parse_policy(options.b4_policy), options.b4_rt_priority, &started);
  if (!status.ok()) return {{"error", status.error_message()}};
  const auto warm_deadline = Clock::now() + std::chrono::seconds(30);
  while (jobs(stub, name) < 100 && Clock::now() < warm_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }

  std::vector<double> pause_client, pause_daemon, pause_vmm;
  std::vector<double> resume_client, resume_daemon, resume_vmm;
  int failures = 0;
  std::string first_failure;
  for (int i = 0; i < options.iterations; ++i) {
    // Between operations the guest runs at least one job, so every pause meets a running vCPU.
    const uint64_t before = jobs(stub, name);
    const auto run_deadline = Clock::now() + std::chrono::seconds(10);
    while (jobs(stub, name) <= before && Clock::now() < run_deadline) {
    }
    tenon::v1::PauseVmRequest pause;
    pause.set_name(name);
    tenon::v1::VmOperationResponse paused;
    grpc::ClientContext pause_context;
    pause_context.set_deadline(rpc_deadline());
    const auto pause_start = Clock::now();
    status = stub.Pause(&pause_context, pause, &paused);
    const auto pause_end = Clock::now();
    if (!status.ok()) {
      if (failures++ == 0) first_failure = status.error_message();
      continue;
    }
    pause_client.push_back(
        std::chrono::duration<double, std::nano>(pause_end - pause_start).count());
    pause_daemon.push_back(nanoseconds(paused.latency()));
    pause_vmm.push_back(vmm_latency_of(paused.vm(), tenon::v1::VM_OPERATION_PAUSE));

    tenon::v1::ResumeVmRequest resume;
    resume.set_name(name);
    tenon::v1::VmOperationResponse resumed;
    grpc::ClientContext resume_context;
    resume_context.set_deadline(rpc_deadline());
    const auto resume_start = Clock::now();
    status = stub.Resume(&resume_context, resume, &resumed);
    const auto resume_end = Clock::now();
    if (!status.ok()) {
      if (failures++ == 0) first_failure = status.error_message();
      continue;
    }
    resume_client.push_back(
        std::chrono::duration<double, std::nano>(resume_end - resume_start).count());
    resume_daemon.push_back(nanoseconds(resumed.latency()));
    resume_vmm.push_back(vmm_latency_of(resumed.vm(), tenon::v1::VM_OPERATION_RESUME));
  }
  nlohmann::json result = {{"unit", "ns"},
                           {"iterations", options.iterations},
                           {"failures", failures},
                           {"cpu_grant",
                            {{"policy", tenon::v1::CpuPolicy_Name(started.vm().cpu().policy())},
                             {"host_cpu", started.vm().cpu().has_host_cpu()
                                              ? nlohmann::json(started.vm().cpu().host_cpu())
                                              : nlohmann::json(nullptr)},
                             {"rt_priority", started.vm().cpu().rt_priority()},
                             {"note", started.vm().cpu().note()}}},
                           {"pause",
                            {{"client_end_to_end", summarize(pause_client)},
                             {"mortised", summarize(pause_daemon)},
                             {"mortise_vmm", summarize(pause_vmm)}}},
                           {"resume",
                            {{"client_end_to_end", summarize(resume_client)},
                             {"mortised", summarize(resume_daemon)},
                             {"mortise_vmm", summarize(resume_vmm)}}}};
  if (!first_failure.empty()) result["first_failure"] = first_failure;
  if (options.snapshot_iterations > 0) {
    result["snapshot_restore"] = run_b4_snapshots(options);
  }
  if (std::optional<tenon::v1::Vm> vm = get(stub, name, true);
      vm && vm->telemetry().tasks_size() > 0) {
    const auto& task = vm->telemetry().tasks(0);
    // What the guest saw of it all: pauses counted as gaps, not as release latency.
    result["guest"] = {{"jobs", task.jobs()},
                       {"gap_jobs", task.gap_jobs()},
                       {"pauses_observed", vm->telemetry().pauses_observed()},
                       {"release_latency_p99_ns", task.release_latency_summary().p99_ns()},
                       {"release_latency_max_ns", task.release_latency_summary().max_ns()}};
  }
  return result;
}

nlohmann::json run_b6(const Options& options) {
  const MortisedOptions daemon = daemon_options(options);
  absl::StatusOr<std::unique_ptr<MortisedProcess>> mortised = MortisedProcess::start(daemon);
  if (!mortised.ok()) return {{"error", std::string(mortised.status().message())}};
  auto& stub = (*mortised)->stub();
  const pid_t mortised_pid = (*mortised)->pid();
  const int descriptors_before = mortise::testing::open_descriptor_count(mortised_pid);
  absl::StatusOr<mortise::testing::MemoryUse> mortised_before =
      mortise::testing::memory_use(mortised_pid);

  std::vector<std::string> names;
  std::vector<double> create_and_start_ns;
  std::string stopped_because = "target reached";
  const auto start = Clock::now();
  for (int i = 0; i < options.density_target; ++i) {
    if (absl::FromChrono(Clock::now() - start) > options.density_time_limit) {
      stopped_because = absl::StrCat("time limit of ",
                                     absl::FormatDuration(options.density_time_limit), " reached");
      break;
    }
    const std::string name = absl::StrFormat("idle-%05d", i);
    tenon::v1::VmOperationResponse started;
    const auto begin = Clock::now();
    const grpc::Status status =
        create_and_start(stub, name, options.image_directory + "/idle-10ms.elf",
                         parse_policy(options.b6_policy), 0, &started);
    if (!status.ok()) {
      stopped_because = absl::StrFormat("instance %d failed: %s", i, status.error_message());
      break;
    }
    create_and_start_ns.push_back(
        std::chrono::duration<double, std::nano>(Clock::now() - begin).count());
    names.push_back(name);
  }
  const double fill_seconds = std::chrono::duration<double>(Clock::now() - start).count();

  // Alive at once: RUNNING, with a live mortise-vmm, and its task still releasing jobs.
  std::vector<uint64_t> first_jobs;
  for (const std::string& name : names) first_jobs.push_back(jobs(stub, name));
  // Many periods of the 10 ms task: a starved guest still gets a job in.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  int alive = 0, progressing = 0;
  std::vector<double> vmm_rss, vmm_pss;
  for (size_t i = 0; i < names.size(); ++i) {
    std::optional<tenon::v1::Vm> vm = get(stub, names[i], true);
    if (!vm || vm->state() != tenon::v1::VM_STATE_RUNNING) continue;
    const pid_t pid = static_cast<pid_t>(vm->vmm_pid());
    if (pid == 0 || !mortise::testing::process_running(pid)) continue;
    ++alive;
    if (vm->telemetry().tasks_size() > 0 && vm->telemetry().tasks(0).jobs() > first_jobs[i]) {
      ++progressing;
    }
    // The instance's whole cost: mortise-vmm and what it started (QEMU, on the qemu engine).
    std::vector<pid_t> processes = {pid};
    std::error_code error;
    for (const auto& task :
         std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"), error)) {
      std::ifstream children(task.path() / "children");
      for (pid_t child; children >> child;) processes.push_back(child);
    }
    uint64_t rss = 0, pss = 0;
    bool measured = true;
    for (const pid_t process : processes) {
      absl::StatusOr<mortise::testing::MemoryUse> use = mortise::testing::memory_use(process);
      if (!use.ok()) {
        measured = false;
        break;
      }
      rss += use->rss_kib;
      pss += use->pss_kib;
    }
    if (measured) {
      vmm_rss.push_back(static_cast<double>(rss));
      vmm_pss.push_back(static_cast<double>(pss));
    }
  }
  absl::StatusOr<mortise::testing::MemoryUse> mortised_after =
      mortise::testing::memory_use(mortised_pid);
  std::ifstream loadavg("/proc/loadavg");
  std::string load;
  std::getline(loadavg, load);

  // Several Destroys at once, as an agent tearing down a fleet would; each waits for its guest
  // to stop, which on an overloaded real-time core takes a while.
  const auto teardown_start = Clock::now();
  std::atomic<size_t> next{0};
  std::vector<std::thread> destroyers;
  for (int i = 0; i < 16; ++i) {
    destroyers.emplace_back([&] {
      for (size_t index = next++; index < names.size(); index = next++) {
        tenon::v1::DestroyVmRequest request;
        request.set_name(names[index]);
        tenon::v1::VmOperationResponse response;
        grpc::ClientContext context;
        context.set_deadline(rpc_deadline());
        (void)stub.Destroy(&context, request, &response);
      }
    });
  }
  for (std::thread& destroyer : destroyers) destroyer.join();
  const double teardown_seconds =
      std::chrono::duration<double>(Clock::now() - teardown_start).count();
  int descriptors_after = -1;
  mortise::testing::wait_until(
      [&] {
        descriptors_after = mortise::testing::open_descriptor_count(mortised_pid);
        return descriptors_after == descriptors_before;
      },
      absl::Seconds(10));

  return {{"target", options.density_target},
          {"policy", options.b6_policy},
          {"created", names.size()},
          {"alive_at_once", alive},
          {"alive_and_releasing_jobs", progressing},
          {"stopped_because", stopped_because},
          {"fill_seconds", fill_seconds},
          {"create_and_start_ns", summarize(create_and_start_ns)},
          {"mortised_rss_kib_idle", mortised_before.ok() ? mortised_before->rss_kib : 0},
          {"mortised_rss_kib_loaded", mortised_after.ok() ? mortised_after->rss_kib : 0},
          {"mortised_pss_kib_loaded", mortised_after.ok() ? mortised_after->pss_kib : 0},
          // Per instance: mortise-vmm plus its children (QEMU on the qemu engine).
          {"vmm_rss_kib", summarize(vmm_rss)},
          {"vmm_pss_kib", summarize(vmm_pss)},
          {"loadavg_when_full", load},
          {"teardown_seconds", teardown_seconds},
          {"mortised_descriptors_before", descriptors_before},
          {"mortised_descriptors_after_teardown", descriptors_after}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"B4 pause/resume and B6 density benchmarks through mortised"};
  Options options;
  std::string output_path, commit = "unknown", command;
  bool skip_b4 = false, skip_b6 = false;
  app.add_option("--mortised", options.mortised, "mortised binary (mortise-vmm next to it)")
      ->required();
  app.add_option("--image-dir", options.image_directory,
                 "the build's image directory (latency-probe.elf and idle-10ms.elf for QEMU, "
                 "under kvm/ for KVM)")
      ->required();
  app.add_option("--iterations", options.iterations, "B4: pause/resume pairs")
      ->capture_default_str();
  app.add_option("--snapshot-iterations", options.snapshot_iterations,
                 "B4: snapshot/restore rounds (0: none)")
      ->capture_default_str();
  app.add_option("--snapshot-memory", options.snapshot_memory,
                 "B4: guest memory of the snapshotted instance, bytes")
      ->capture_default_str();
  app.add_option("--density-target", options.density_target, "B6: instances to create")
      ->capture_default_str();
  tenon::flags::add_duration_option(app, "--density-time-limit", &options.density_time_limit,
                                    "B6: stop creating after this long");
  app.add_option("--b4-policy", options.b4_policy, "B4: CPU policy of the probe")
      ->check(CLI::IsMember({"anywhere", "realtime", "dedicated"}))
      ->capture_default_str();
  app.add_option("--b4-rt-priority", options.b4_rt_priority, "B4: SCHED_FIFO priority of the probe")
      ->capture_default_str();
  app.add_option("--b6-policy", options.b6_policy, "B6: CPU policy of the idle instances")
      ->check(CLI::IsMember({"anywhere", "realtime"}))  // realtime: shared real-time core(s)
      ->capture_default_str();
  app.add_flag("--skip-b4", skip_b4);
  app.add_flag("--skip-b6", skip_b6);
  app.add_option("--output", output_path, "JSON result file")->required();
  app.add_option("--commit", commit, "commit being measured");
  app.add_option("--command", command, "the command line that ran this benchmark");
  CLI11_PARSE(app, argc, argv);
  const tenon::bench::Engine engine = tenon::bench::auto_engine(
      (std::filesystem::path(options.mortised).parent_path() / "mortise").string());
  options.engine = engine.name;
  // mortised takes absolute image paths only.
  options.image_directory =
      std::filesystem::absolute(tenon::bench::image_dir(options.image_directory, engine.name))
          .lexically_normal();

  nlohmann::json report;
  report["benchmarks"] = {"B4", "B6"};
  report["commit"] = commit;
  report["command"] = command;
  report["machine"] = tenon::bench::machine_info();
  if (engine.name.empty()) {
    report["skipped"] = engine.problem;
    std::ofstream(output_path) << report.dump(2) << "\n";
    std::cout << "B4/B6 skipped: " << engine.problem << "\n";
    return tenon::bench::kSkipped;
  }
  report["engine"] = engine.name;
  if (!skip_b4) report["B4"] = run_b4(options);
  if (!skip_b6) report["B6"] = run_b6(options);
  std::ofstream(output_path) << report.dump(2) << "\n";

  if (!skip_b4) {
    const nlohmann::json& b4 = report["B4"];
    if (b4.contains("error")) {
      std::printf("B4 failed: %s\n", b4["error"].get<std::string>().c_str());
    } else {
      std::printf("%-34s %10s %10s %10s %10s\n", "B4 lifecycle (us)", "min", "p50", "p99", "max");
      for (const char* operation : {"pause", "resume"}) {
        for (const char* where : {"client_end_to_end", "mortised", "mortise_vmm"}) {
          const nlohmann::json& stats = b4[operation][where];
          if (stats.is_null()) continue;
          std::printf("%-34s %10.1f %10.1f %10.1f %10.1f\n",
                      absl::StrFormat("%s %s", operation, where).c_str(),
                      stats["min"].get<double>() / 1e3, stats["p50"].get<double>() / 1e3,
                      stats["p99"].get<double>() / 1e3, stats["max"].get<double>() / 1e3);
        }
      }
      if (b4.contains("snapshot_restore")) {
        const nlohmann::json& snapshots = b4["snapshot_restore"];
        if (snapshots.contains("skipped")) {
          std::printf("B4 snapshot/restore skipped: %s\n",
                      snapshots["skipped"].get<std::string>().c_str());
        } else if (snapshots.contains("error")) {
          std::printf("B4 snapshot/restore failed: %s\n",
                      snapshots["error"].get<std::string>().c_str());
        } else {
          auto row = [](const std::string& label, const nlohmann::json& stats) {
            if (stats.is_null()) return;
            std::printf("%-34s %10.1f %10.1f %10.1f %10.1f\n", label.c_str(),
                        stats["min"].get<double>() / 1e3, stats["p50"].get<double>() / 1e3,
                        stats["p99"].get<double>() / 1e3, stats["max"].get<double>() / 1e3);
          };
          for (const char* where :
               {"client_end_to_end", "mortised", "mortise_vmm", "guest_held_out"}) {
            if (snapshots["snapshot"].contains(where)) {
              row(std::string("snapshot ") + where, snapshots["snapshot"][where]);
            }
          }
          for (const char* where : {"client_end_to_end", "mortised"}) {
            row(std::string("restore ") + where, snapshots["restore"][where]);
          }
          row("resume after restore client",
              snapshots["resume_after_restore"]["client_end_to_end"]);
          if (!snapshots["file_size_bytes"].is_null()) {
            std::printf("snapshot file: %.0f bytes (p50), %d failures\n",
                        snapshots["file_size_bytes"]["p50"].get<double>(),
                        snapshots["failures"].get<int>());
          }
        }
      }
    }
  }
  if (!skip_b6) {
    const nlohmann::json& b6 = report["B6"];
    if (b6.contains("error")) {
      std::printf("B6 failed: %s\n", b6["error"].get<std::string>().c_str());
    } else {
      std::printf(
          "B6 density: %d of %d alive at once (%d releasing jobs; %s); mortised RSS %llu KiB; "
          "per instance (mortise-vmm and its QEMU, if any) RSS p50 %.0f KiB, PSS p50 %.0f KiB\n",
          b6["alive_at_once"].get<int>(), b6["target"].get<int>(),
          b6["alive_and_releasing_jobs"].get<int>(),
          b6["stopped_because"].get<std::string>().c_str(),
          static_cast<unsigned long long>(b6["mortised_rss_kib_loaded"].get<uint64_t>()),
          b6["vmm_rss_kib"].is_null() ? 0.0 : b6["vmm_rss_kib"]["p50"].get<double>(),
          b6["vmm_pss_kib"].is_null() ? 0.0 : b6["vmm_pss_kib"]["p50"].get<double>());
    }
  }
  std::printf("results: %s (engine %s)\n", output_path.c_str(), engine.name.c_str());
  // Any failed operation fails the benchmark (timings never do).
  bool failed = false;
  if (!skip_b4) {
    const nlohmann::json& b4 = report["B4"];
    failed |= b4.contains("error") || b4.contains("first_failure") || b4.value("failures", 0) > 0;
    if (b4.contains("snapshot_restore")) {
      const nlohmann::json& snapshots = b4["snapshot_restore"];
      failed |= snapshots.contains("error") || snapshots.value("failures", 0) > 0;
    }
  }
  if (!skip_b6) failed |= report["B6"].contains("error");
  return failed ? 1 : 0;
}

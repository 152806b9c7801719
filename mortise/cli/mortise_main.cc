// `mortise`: the local Mortise command. `mortise run IMAGE` boots one Tenon instance in the
// foreground with its console on stdout and ends with a one-line exit reason; `mortise engines`
// says which engines this host can run.
#include <sched.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <tuple>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "console_sink.h"
#include "engine.h"
#include "flags/duration_flag.h"
#include "instance.h"
#include "placement.h"
#include "telemetry.h"

namespace {

// Exit statuses of `mortise run`. 0..63 carry the guest's own exit status.
enum ExitCode : int {
  kGuestStatusMax = 63,
  kUsage = 64,
  kLoadError = 65,
  kGuestFault = 66,
  kGuestPanic = 67,
  kViolation = 68,
  kTimeout = 69,
  kHypervisorError = 70,
};

constexpr const char* kExitCodeHelp =
    "Exit status: the guest's own status when it exits with 0..63 (63 for any other status);\n"
    "64 usage error, 65 image load error, 66 guest fault, 67 guest panic, 68 hypercall\n"
    "violation, 69 time limit reached, 70 hypervisor error (e.g. no /dev/kvm, or QEMU failed).\n"
    "Engines: an image linked with plat-qemu (build/images/*.elf) runs on QEMU on any Linux host;\n"
    "one linked with plat-mortise (build/images/kvm/*.elf) runs on Mortise's own KVM engine.";

// "128K", "1M", "1MiB", "4096" -> bytes.
absl::StatusOr<uint64_t> parse_size(std::string text) {
  uint64_t multiplier = 1;
  for (const char* suffix : {"iB", "B"}) {
    if (text.size() > strlen(suffix) && text.ends_with(suffix)) {
      text.resize(text.size() - strlen(suffix));
      break;
    }
  }
  if (!text.empty()) {
    switch (text.back()) {
      case 'K':
      case 'k':
        multiplier = 1ull << 10;
        break;
      case 'M':
      case 'm':
        multiplier = 1ull << 20;
        break;
      case 'G':
      case 'g':
        multiplier = 1ull << 30;
        break;
      default:
        break;
    }
    if (multiplier != 1) text.pop_back();
  }
  uint64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value > (UINT64_MAX / multiplier)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("'%s' is not a size (examples: 131072, 128K, 1M, 1MiB)", text));
  }
  return value * multiplier;
}

int exit_code_for(const mortise::ExitReason& reason) {
  switch (reason.kind) {
    case mortise::ExitKind::kGuestExit:
      return reason.status >= 0 && reason.status <= kGuestStatusMax
                 ? static_cast<int>(reason.status)
                 : kGuestStatusMax;
    case mortise::ExitKind::kGuestFault:
      return kGuestFault;
    case mortise::ExitKind::kGuestPanic:
      return kGuestPanic;
    case mortise::ExitKind::kViolation:
      return kViolation;
    case mortise::ExitKind::kTimeout:
      return kTimeout;
    case mortise::ExitKind::kHypervisorError:
      return kHypervisorError;
  }
  return kHypervisorError;
}

double ticks_to_ns(uint64_t ticks, uint64_t tsc_khz) {
  return tsc_khz == 0 ? 0.0 : static_cast<double>(ticks) * 1e6 / static_cast<double>(tsc_khz);
}

struct RunOptions {
  std::string image;
  std::string memory = "1M";
  std::optional<int> cpu;
  std::optional<std::string> duration;
  std::optional<std::string> app_run;
  std::optional<std::string> report_every;
  bool realtime = false;
  int rt_priority = 90;
  std::string output = "text";
  std::string engine = "auto";
  bool icount = false;
  bool qemu_kvm = false;
  std::string qemu_binary = "qemu-system-x86_64";
};

nlohmann::json histogram_json(const mortise::HistogramSummary& summary) {
  return {{"count", summary.count},   {"min_ns", summary.min_ns}, {"mean_ns", summary.mean_ns},
          {"p50_ns", summary.p50_ns}, {"p99_ns", summary.p99_ns}, {"p999_ns", summary.p999_ns},
          {"max_ns", summary.max_ns}};
}

nlohmann::json telemetry_json(const mortise::TelemetrySnapshot& snapshot) {
  nlohmann::json tasks = nlohmann::json::array();
  for (const mortise::TaskSummary& task : snapshot.tasks) {
    nlohmann::json buckets = nlohmann::json::array();
    for (uint32_t count : task.raw_release_latency.buckets) buckets.push_back(count);
    tasks.push_back({{"name", task.name},
                     {"period_ns", task.period_ns},
                     {"deadline_ns", task.deadline_ns},
                     {"priority", task.priority},
                     {"jobs", task.jobs},
                     {"deadline_misses", task.deadline_misses},
                     {"gap_jobs", task.gap_jobs},
                     {"release_latency", histogram_json(task.release_latency)},
                     {"release_latency_log2_tick_buckets", buckets},
                     {"response_time", histogram_json(task.response_time)}});
  }
  return {{"scheduler", mortise::scheduler_name(snapshot.scheduler)},
          {"gaps", snapshot.gaps},
          {"tasks", tasks}};
}

void print_telemetry(const mortise::TelemetrySnapshot& snapshot) {
  if (snapshot.tasks.empty()) return;
  std::cerr << absl::StrFormat("mortise: telemetry (%s scheduler, release latency in us)\n",
                               mortise::scheduler_name(snapshot.scheduler));
  std::cerr << absl::StrFormat("  %-12s %9s %8s %8s %8s %8s %8s %7s %6s\n", "task", "jobs", "min",
                               "p50", "p99", "p99.9", "max", "misses", "gaps");
  for (const mortise::TaskSummary& task : snapshot.tasks) {
    const mortise::HistogramSummary& latency = task.release_latency;
    std::cerr << absl::StrFormat("  %-12s %9d %8.1f %8.1f %8.1f %8.1f %8.1f %7d %6d\n", task.name,
                                 task.jobs, latency.min_ns / 1e3, latency.p50_ns / 1e3,
                                 latency.p99_ns / 1e3, latency.p999_ns / 1e3, latency.max_ns / 1e3,
                                 task.deadline_misses, task.gap_jobs);
  }
}

int report_error(const RunOptions& options, int code, const std::string& kind,
                 const std::string& message) {
  if (options.output == "json") {
    nlohmann::json record{{"image", options.image},
                          {"exit", {{"kind", kind}, {"message", message}, {"code", code}}}};
    std::cout << record.dump() << std::endl;
  }
  std::cerr << "mortise: " << kind << ": " << message << std::endl;
  return code;
}

int run(const RunOptions& options, uint64_t process_start_tsc) {
  absl::StatusOr<uint64_t> memory_bytes = parse_size(options.memory);
  if (!memory_bytes.ok()) {
    return report_error(options, kUsage, "usage", std::string(memory_bytes.status().message()));
  }
  std::optional<std::chrono::nanoseconds> time_limit, app_run, report_every;
  for (auto [text, target, flag] :
       {std::tuple{&options.duration, &time_limit, "--duration"},
        std::tuple{&options.app_run, &app_run, "--app-run"},
        std::tuple{&options.report_every, &report_every, "--report-every"}}) {
    if (!*text) continue;
    absl::StatusOr<absl::Duration> duration = tenon::flags::parse_duration_flag(flag, **text);
    if (!duration.ok()) {
      return report_error(options, kUsage, "usage", std::string(duration.status().message()));
    }
    *target = absl::ToChronoNanoseconds(*duration);
  }
  absl::StatusOr<mortise::EngineChoice> choice = mortise::parse_engine_choice(options.engine);
  if (!choice.ok()) {
    return report_error(options, kUsage, "usage", std::string(choice.status().message()));
  }
  absl::StatusOr<tenon::abi::Platform> platform = mortise::image_platform(options.image);
  if (!platform.ok()) {
    return report_error(options, kLoadError, "load-error",
                        std::string(platform.status().message()));
  }
  absl::StatusOr<mortise::EngineKind> engine = mortise::engine_for_image(*choice, *platform);
  if (!engine.ok()) {
    return report_error(options, kUsage, "usage", std::string(engine.status().message()));
  }
  if ((options.icount || options.qemu_kvm) && *engine != mortise::EngineKind::kQemu) {
    return report_error(
        options, kUsage, "usage",
        options.icount ? "--icount needs the qemu engine" : "--qemu-kvm needs the qemu engine");
  }
  if (options.icount && options.qemu_kvm) {
    return report_error(options, kUsage, "usage",
                        "--icount and --qemu-kvm exclude each other: icount is TCG's");
  }
  mortise::QemuSettings qemu;
  qemu.binary = options.qemu_binary;
  qemu.icount = options.icount;
  qemu.kvm_acceleration = options.qemu_kvm;
  mortise::FileConsole console(STDOUT_FILENO);
  mortise::InstanceConfig config;
  config.image_path = options.image;
  config.memory_bytes = *memory_bytes;
  if (app_run) config.app_run_ns = static_cast<uint64_t>(app_run->count());
  config.exit_control =
      options.realtime ? mortise::ExitControl::kLowLatency : mortise::ExitControl::kDefault;
  absl::StatusOr<std::unique_ptr<mortise::Instance>> instance =
      mortise::create_instance(*engine, config, qemu, console, process_start_tsc);
  if (!instance.ok()) {
    const bool engine_failed = instance.status().code() == absl::StatusCode::kUnavailable;
    std::string message(instance.status().message());
    if (engine_failed && *engine == mortise::EngineKind::kKvm) {
      absl::StrAppend(&message,
                      " (this image is linked with plat-mortise for the kvm engine; "
                      "images linked with plat-qemu run on any host)");
    }
    return report_error(options, engine_failed ? kHypervisorError : kLoadError,
                        engine_failed ? "hypervisor-error" : "load-error", message);
  }
  // Placed once created: on the qemu engine the vCPU is QEMU's, which must exist to be pinned.
  const mortise::HostPartition partition = mortise::default_partition();
  mortise::PlacementRequest request;
  request.policy =
      options.realtime ? mortise::PlacementPolicy::kRealtime : mortise::PlacementPolicy::kAnywhere;
  request.cpu = options.cpu;
  request.realtime_priority = options.rt_priority;
  absl::StatusOr<mortise::Placement> placement =
      mortise::place_instance(**instance, request, partition);
  if (!placement.ok()) {
    return report_error(options, kUsage, "usage", std::string(placement.status().message()));
  }
  const std::string engine_detail = mortise::engine_detail(*engine, qemu);
  std::cerr << "mortise: engine " << engine_detail
            << "; placement: " << mortise::describe(*placement) << "; "
            << mortise::describe(partition)
            << "; exits disabled: " << ((*instance)->disabled_exits() == 0 ? "none" : "hlt,pause")
            << std::endl;

  // Live telemetry, read from the guest's page while it runs.
  std::mutex reporter_mutex;
  std::condition_variable reporter_wake;
  bool finished = false;
  std::thread reporter;
  if (report_every) {
    reporter = std::thread([&] {
      std::unique_lock lock(reporter_mutex);
      while (!reporter_wake.wait_for(lock, *report_every, [&] { return finished; })) {
        absl::StatusOr<mortise::TelemetrySnapshot> snapshot = (*instance)->telemetry();
        if (snapshot.ok()) print_telemetry(*snapshot);
      }
    });
  }
  const mortise::ExitReason reason = (*instance)->run(time_limit);
  const uint64_t end_tsc = mortise::read_host_tsc();
  if (reporter.joinable()) {
    {
      std::lock_guard lock(reporter_mutex);
      finished = true;
    }
    reporter_wake.notify_all();
    reporter.join();
  }
  const mortise::BootTiming timing = (*instance)->boot_timing();
  absl::StatusOr<mortise::TelemetrySnapshot> telemetry = (*instance)->telemetry();
  const int code = exit_code_for(reason);

  std::optional<double> boot_to_main_ns;
  if (timing.tsc_synchronized && timing.main_entry_tsc > timing.host_start_tsc) {
    boot_to_main_ns = ticks_to_ns(timing.main_entry_tsc - timing.host_start_tsc, timing.tsc_khz);
  }
  const double wall_ns = ticks_to_ns(end_tsc - process_start_tsc, timing.tsc_khz);
  if (options.output == "json") {
    nlohmann::json record{{"image", options.image},
                          {"memory_bytes", *memory_bytes},
                          {"exit",
                           {{"kind", mortise::exit_kind_name(reason.kind)},
                            {"status", reason.status},
                            {"message", reason.message},
                            {"code", code}}},
                          {"engine", mortise::engine_name(*engine)},
                          {"engine_detail", engine_detail},
                          {"tsc_khz", timing.tsc_khz},
                          {"tsc_synchronized", timing.tsc_synchronized},
                          {"wall_ns", wall_ns},
                          // Exits to Mortise (KVM engine; 0 where the engine does not count).
                          {"vcpu_exits", (*instance)->vcpu_exits()}};
    // Exits into the host kernel (KVM's count), of which vcpu_exits reached Mortise.
    if (const std::map<std::string, uint64_t> counters = (*instance)->hypervisor_counters();
        !counters.empty()) {
      nlohmann::json kvm = nlohmann::json::object();
      for (const auto& [name, value] : counters) {
        if (value != 0) kvm[name] = value;
      }
      record["kvm_counters"] = kvm;
    }
    record["boot_to_main_ns"] =
        boot_to_main_ns ? nlohmann::json(*boot_to_main_ns) : nlohmann::json(nullptr);
    record["placement"] = {{"cpu", placement->cpu ? nlohmann::json(*placement->cpu) : nullptr},
                           {"sched_fifo", placement->fifo},
                           {"priority", placement->priority},
                           {"note", placement->note},
                           {"exits_disabled", (*instance)->disabled_exits()}};
    if (telemetry.ok()) record["telemetry"] = telemetry_json(*telemetry);
    std::cout << "\n" << record.dump() << std::endl;
  }
  if (telemetry.ok()) print_telemetry(*telemetry);
  std::string timing_note;
  if (boot_to_main_ns)
    timing_note =
        absl::StrFormat(" (app main reached %.1f us after start)", *boot_to_main_ns / 1000.0);
  std::cerr << "mortise: " << mortise::exit_kind_name(reason.kind) << ": " << reason.message
            << timing_note << std::endl;
  return code;
}

// `mortise engines`: 0 when at least one engine can run here, kHypervisorError when none can.
int report_engines(const std::string& qemu_binary, const std::string& output) {
  mortise::QemuSettings qemu;
  qemu.binary = qemu_binary;
  const mortise::EngineProbe probe = mortise::probe_engines(qemu);
  absl::StatusOr<mortise::EngineKind> automatic =
      mortise::resolve_engine(mortise::EngineChoice::kAuto, probe);
  if (output == "json") {
    nlohmann::json record{
        {"kvm", {{"usable", probe.kvm_usable}, {"problem", probe.kvm_problem}}},
        {"qemu",
         {{"usable", probe.qemu_usable},
          {"problem", probe.qemu_problem},
          {"version", probe.qemu_version}}},
        {"auto", automatic.ok() ? nlohmann::json(mortise::engine_name(*automatic)) : nullptr}};
    std::cout << record.dump() << std::endl;
  } else {
    std::cout << "kvm   " << (probe.kvm_usable ? "usable" : "unusable: " + probe.kvm_problem)
              << "\nqemu  "
              << (probe.qemu_usable ? "usable (QEMU " + probe.qemu_version + ")"
                                    : "unusable: " + probe.qemu_problem)
              << "\nauto  " << (automatic.ok() ? mortise::engine_name(*automatic) : "none")
              << std::endl;
  }
  return automatic.ok() ? 0 : kHypervisorError;
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t process_start_tsc = mortise::read_host_tsc();
  CLI::App app{"mortise: run Tenon instances on this host (KVM, or QEMU anywhere)"};
  app.set_version_flag("--version", "mortise 0.1.0");
  app.require_subcommand(1);
  app.footer(kExitCodeHelp);

  RunOptions options;
  CLI::App* run_command = app.add_subcommand(
      "run", "Boot one Tenon image in the foreground; its console goes to stdout");
  run_command->add_option("IMAGE", options.image, "Tenon ELF image")->required();
  run_command->add_option("--memory", options.memory, "Guest memory, e.g. 128K or 1M")
      ->capture_default_str();
  run_command->add_option("--cpu", options.cpu, "Pin the vCPU to this host CPU");
  run_command->add_flag("--realtime", options.realtime,
                        "Real-time placement: a real-time partition core (or --cpu), SCHED_FIFO, "
                        "HLT/PAUSE exits disabled where KVM allows; on the qemu engine, QEMU "
                        "pinned to that core without SCHED_FIFO");
  run_command
      ->add_option("--rt-priority", options.rt_priority, "SCHED_FIFO priority for --realtime")
      ->check(CLI::Range(1, 99))
      ->capture_default_str();
  // Durations are read in run() (tenon::flags::parse_duration_flag), where a refusal is reported
  // like every other usage error, as JSON too with -o json.
  run_command
      ->add_option("--app-run", options.app_run,
                   "Tell the app's task scheduler to stop after this long (it then exits)")
      ->type_name("DURATION");
  run_command
      ->add_option("--report-every", options.report_every,
                   "Print the guest's live task telemetry to stderr this often, e.g. 1s")
      ->type_name("DURATION");
  run_command
      ->add_option("--duration", options.duration,
                   "Stop the instance after this long, e.g. 500ms, 10s")
      ->type_name("DURATION");
  run_command
      ->add_option("-o,--output", options.output,
                   "text, or json: a JSON record of the run as the last stdout line")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  run_command
      ->add_option("--engine", options.engine,
                   "auto (the engine the image is linked for), kvm or qemu")
      ->capture_default_str();
  run_command->add_flag("--icount", options.icount,
                        "QEMU engine: deterministic virtual time, one instruction per nanosecond "
                        "(-icount shift=0)");
  run_command->add_flag("--qemu-kvm", options.qemu_kvm,
                        "QEMU engine: run QEMU on /dev/kvm (-accel kvm) instead of TCG");
  run_command
      ->add_option("--qemu-binary", options.qemu_binary, "QEMU executable for the qemu engine")
      ->capture_default_str();
  run_command->footer(kExitCodeHelp);

  std::string engines_output = "text";
  CLI::App* engines_command = app.add_subcommand(
      "engines", "Probe the engines this host can run: KVM (a probe guest) and QEMU (its version)");
  engines_command->add_option("-o,--output", engines_output, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const int code = app.exit(error);
    return code == 0 ? 0 : kUsage;
  }
  if (engines_command->parsed()) return report_engines(options.qemu_binary, engines_output);
  return run(options, process_start_tsc);
}

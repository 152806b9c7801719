// B1: release-to-run latency of Tenon's 1 kHz latency-probe against Linux with PREEMPT_RT.
//
// Deterministic (QEMU engine): latency-probe (10,000 releases) and, in the same QEMU binary,
// machine type, CPU model, memory size and -icount shift=0,align=off,sleep=off, Debian's
// PREEMPT_RT kernel running `cyclictest -m -p 90 -i 1000 -l 10000` from a busybox initramfs
// (tests/bench/rt_initramfs.sh). Under icount one guest instruction is one nanosecond of virtual
// time, so this compares the two release paths in instructions, free of host noise; every run is
// made twice to show it repeats. The Linux machine also has the PIT, PIC, RTC and serial port it
// needs to boot; Tenon uses none of them.
//
// Host (KVM engine, where usable): latency-probe under Mortise (vCPU pinned to a real-time core,
// SCHED_FIFO) against cyclictest on the same host core for the same duration; idle, and with a
// CPU hog in the management partition; with VM exits per release, a count.
//
// Writes one JSON document and tables; exits 77 when no engine can run, 1 when a run fails.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench_report.h"
#include "placement.h"
#include "shell_command.h"

namespace {

// A busy loop per management CPU, pinned there, until stopped.
class CpuHog {
 public:
  explicit CpuHog(const std::vector<int>& cpus) {
    for (int cpu : cpus) {
      const pid_t pid = fork();
      if (pid == 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        sched_setaffinity(0, sizeof(set), &set);
        volatile uint64_t spin = 0;
        for (;;) spin = spin + 1;
      }
      if (pid > 0) children_.push_back(pid);
    }
  }
  ~CpuHog() {
    for (pid_t pid : children_) kill(pid, SIGKILL);
    for (pid_t pid : children_) waitpid(pid, nullptr, 0);
  }

 private:
  std::vector<pid_t> children_;
};

// Percentiles from cyclictest's 1 us histogram ("NNNNNN CCCCCC" lines).
nlohmann::json cyclictest_summary(const std::string& histogram_file, const std::string& output) {
  std::ifstream file(histogram_file);
  std::vector<std::pair<uint64_t, uint64_t>> bins;
  uint64_t total = 0;
  for (std::string line; std::getline(file, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    uint64_t latency_us, count;
    if (fields >> latency_us >> count && count > 0) {
      bins.emplace_back(latency_us, count);
      total += count;
    }
  }
  nlohmann::json summary{{"samples", total}};
  auto quantile = [&](double q) -> double {
    uint64_t seen = 0;
    for (auto [latency_us, count] : bins) {
      seen += count;
      if (static_cast<double>(seen) >= q * static_cast<double>(total)) return latency_us * 1000.0;
    }
    return bins.empty() ? 0.0 : bins.back().first * 1000.0;
  };
  summary["p50_ns"] = quantile(0.5);
  summary["p99_ns"] = quantile(0.99);
  summary["p999_ns"] = quantile(0.999);
  // The exact extremes are in the histogram's comment lines: "# Max Latencies: 00054".
  auto field = [&](const std::string& name) -> double {
    const std::string key = "# " + name + " Latencies:";
    const size_t at = output.find(key);
    return at == std::string::npos ? 0.0 : std::stod(output.substr(at + key.size())) * 1000.0;
  };
  summary["min_ns"] = field("Min");
  summary["mean_ns"] = field("Avg");
  summary["max_ns"] = field("Max");
  return summary;
}

nlohmann::json run_cyclictest(int cpu, int seconds, const std::string& scratch) {
  const std::string histogram = scratch + "/cyclictest-histogram.txt";
  const tenon::bench::ProcessResult run = tenon::bench::run_process(
      {"cyclictest", "-m", "-p", "90", "-i", "1000", "-q", "-a", std::to_string(cpu), "-D",
       std::to_string(seconds) + "s", "-h", "20000", "--histfile=" + histogram});
  if (run.exit_code != 0) return {{"error", "cyclictest failed or is not installed"}};
  std::ifstream file(histogram);
  const std::string histogram_text((std::istreambuf_iterator<char>(file)),
                                   std::istreambuf_iterator<char>());
  return cyclictest_summary(histogram, run.output + histogram_text);
}

nlohmann::json run_tenon(const std::string& mortise, const std::string& image, int seconds) {
  const tenon::bench::ProcessResult run = tenon::bench::run_process(
      {mortise, "run", image, "--engine", "kvm", "--memory", "256K", "--realtime", "--app-run",
       std::to_string(seconds) + "s", "-o", "json"});
  const std::optional<nlohmann::json> parsed = tenon::test_support::last_json_line(run.output);
  if (run.exit_code != 0 || !parsed) return {{"error", "mortise run failed"}};
  const nlohmann::json& record = *parsed;
  const nlohmann::json& probe = record["telemetry"]["tasks"][0];
  nlohmann::json summary = probe["release_latency"];
  summary["samples"] = probe["jobs"];
  summary["deadline_misses"] = probe["deadline_misses"];
  summary["note"] = "p50/p99/p99.9 are upper edges of log2 TSC-tick buckets; min/mean/max exact";
  summary["placement"] = record["placement"];
  // Counts, not times: how often the guest left for the host per release. KVM's own count takes
  // in every exit into the host kernel (timer re-arm, EOI, halt); vcpu_exits only those that
  // reached Mortise.
  summary["vcpu_exits"] = record["vcpu_exits"];
  const double jobs = probe["jobs"].get<double>();
  if (jobs > 0) summary["vcpu_exits_per_release"] = record["vcpu_exits"].get<double>() / jobs;
  if (record.contains("kvm_counters")) {
    summary["kvm_counters"] = record["kvm_counters"];
    if (jobs > 0) {
      nlohmann::json per_release = nlohmann::json::object();
      for (const auto& [name, value] : record["kvm_counters"].items()) {
        if (name.size() < 3 || name.substr(name.size() - 3) != "_ns") {
          per_release[name] = value.get<double>() / jobs;
        }
      }
      summary["kvm_counters_per_release"] = per_release;
      summary["kvm_exits_per_release"] = record["kvm_counters"].value("exits", 0.0) / jobs;
    }
  }
  return summary;
}

// ---- The deterministic comparison under QEMU's icount ----------------------------------------

// The virtual-time settings both sides run with (mortise --icount uses the same).
const std::vector<std::string> kIcountArguments = {"-icount", "shift=0,align=off,sleep=off"};
constexpr uint64_t kIcountMemoryMiB = 256;

struct IcountSetup {
  std::string mortise;
  std::string qemu_image;  // latency-probe for the QEMU platform
  std::string qemu_binary = "qemu-system-x86_64";
  std::string kernel;     // Debian's PREEMPT_RT vmlinuz
  std::string initramfs;  // from rt_initramfs.sh
  int releases = 10000;
};

nlohmann::json tenon_under_icount(const IcountSetup& setup) {
  const tenon::bench::ProcessResult run = tenon::bench::run_process(
      {setup.mortise, "run", setup.qemu_image, "--engine", "qemu", "--icount", "--qemu-binary",
       setup.qemu_binary, "--memory", std::to_string(kIcountMemoryMiB) + "M", "--app-run",
       std::to_string(setup.releases) + "ms", "--duration", "600s", "-o", "json"});
  const std::optional<nlohmann::json> parsed = tenon::test_support::last_json_line(run.output);
  if (run.exit_code != 0 || !parsed) {
    return {{"error", "mortise run --icount failed (exit " + std::to_string(run.exit_code) + ")"}};
  }
  const nlohmann::json& probe = (*parsed)["telemetry"]["tasks"][0];
  const nlohmann::json& latency = probe["release_latency"];
  return {{"samples", probe["jobs"]},
          {"deadline_misses", probe["deadline_misses"]},
          {"min_ns", latency["min_ns"]},
          {"mean_ns", latency["mean_ns"]},
          {"p50_ns", latency["p50_ns"]},
          {"p99_ns", latency["p99_ns"]},
          {"max_ns", latency["max_ns"]},
          {"note",
           "p50/p99 are upper edges of log2 tick buckets, capped at the exact max; min/mean/max "
           "exact; 1 ns of virtual time = 1 guest instruction"},
          {"engine", (*parsed)["engine_detail"]}};
}

// cyclictest's -N summary and its 1 ns histogram ("NNNNNN CCCCCC") from the serial console.
nlohmann::json cyclictest_icount_summary(const std::string& console) {
  const size_t begin = console.find("tenon-rt: cyclictest begin");
  const size_t end = console.find("tenon-rt: cyclictest end status 0");
  if (begin == std::string::npos || end == std::string::npos) {
    const size_t tail = console.size() > 600 ? console.size() - 600 : 0;
    return {{"error", "cyclictest did not finish in the guest: " + console.substr(tail)}};
  }
  std::istringstream lines(console.substr(begin, end - begin));
  std::vector<std::pair<uint64_t, uint64_t>> bins;
  uint64_t total = 0;
  double min = 0, mean = 0, max = 0;
  uint64_t overflows = 0;
  for (std::string line; std::getline(lines, line);) {
    auto field = [&](const char* key) -> std::optional<double> {
      const size_t at = line.find(key);
      if (at == std::string::npos) return std::nullopt;
      return std::stod(line.substr(at + std::string(key).size()));
    };
    if (auto value = field("# Min Latencies:")) min = *value;
    if (auto value = field("# Avg Latencies:")) mean = *value;
    if (auto value = field("# Max Latencies:")) max = *value;
    if (auto value = field("# Histogram Overflows:")) overflows = static_cast<uint64_t>(*value);
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    uint64_t latency_ns = 0, count = 0;
    if (fields >> latency_ns >> count && count > 0) {
      bins.emplace_back(latency_ns, count);
      total += count;
    }
  }
  auto quantile = [&](double q) -> double {
    uint64_t seen = 0;
    for (auto [latency_ns, count] : bins) {
      seen += count;
      if (static_cast<double>(seen) >= q * static_cast<double>(total + overflows)) {
        return static_cast<double>(latency_ns);
      }
    }
    return max;  // in the overflow
  };
  return {{"samples", total + overflows},
          {"min_ns", min},
          {"mean_ns", mean},
          {"p50_ns", quantile(0.5)},
          {"p99_ns", quantile(0.99)},
          {"max_ns", max},
          {"histogram_overflows", overflows},
          {"note", "cyclictest -N: exact ns; 1 ns of virtual time = 1 guest instruction"}};
}

nlohmann::json linux_under_icount(const IcountSetup& setup, const std::string& scratch) {
  // The same machine type, CPU model (QEMU's default), memory and icount as the Tenon run; the
  // legacy devices Linux needs to boot and to print its results are switched on.
  // Bounded: a guest that never ends is a failed run, not a hung benchmark.
  std::vector<std::string> arguments = {
      "timeout", "--kill-after=10", "1800", setup.qemu_binary, "-M",
      "microvm,x-option-roms=off,pit=on,pic=on,rtc=on,isa-serial=on,acpi=off", "-smp", "1", "-m",
      std::to_string(kIcountMemoryMiB) + "M", "-nodefaults", "-no-user-config", "-display", "none",
      "-accel", "tcg,tb-size=32", "-kernel", setup.kernel, "-initrd", setup.initramfs,
      // No address-space or stack randomisation: the same instructions on every boot.
      "-append",
      "console=ttyS0 quiet nokaslr norandmaps randomize_kstack_offset=off "
      "tenon_loops=" +
          std::to_string(setup.releases),
      "-serial", "file:" + scratch + "/linux-rt-console.txt", "-no-reboot",
      // The same exit port the Tenon machine has; the initramfs ends the run through it.
      "-device", "isa-debug-exit,iobase=0xf4,iosize=4"};
  arguments.insert(arguments.end(), kIcountArguments.begin(), kIcountArguments.end());
  const tenon::bench::ProcessResult run = tenon::bench::run_process(arguments);
  std::ifstream file(scratch + "/linux-rt-console.txt");
  const std::string console((std::istreambuf_iterator<char>(file)),
                            std::istreambuf_iterator<char>());
  // 3: the initramfs wrote 1 to the exit port; 0: the guest reset the machine (-no-reboot).
  if (run.exit_code != 3 && run.exit_code != 0) {
    return {{"error", "QEMU with the PREEMPT_RT kernel exited " + std::to_string(run.exit_code)}};
  }
  nlohmann::json summary = cyclictest_icount_summary(console);
  const size_t kernel = console.find("tenon-rt: kernel ");
  if (kernel != std::string::npos) {
    std::string line = console.substr(kernel + 10, console.find('\n', kernel) - kernel - 10);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    summary["guest"] = line;
  }
  return summary;
}

nlohmann::json icount_comparison(const IcountSetup& setup, const std::string& scratch) {
  nlohmann::json result{{"qemu", setup.qemu_binary},
                        {"machine", "microvm"},
                        {"cpu", "QEMU's default"},
                        {"memory_mib", kIcountMemoryMiB},
                        {"icount", "shift=0,align=off,sleep=off"},
                        {"releases", setup.releases},
                        {"kernel", std::filesystem::path(setup.kernel).filename().string()},
                        {"cyclictest", "-m -p 90 -i 1000 -l " + std::to_string(setup.releases)}};
  // Twice each: under icount the two runs must agree.
  for (int round = 0; round < 2; ++round) {
    nlohmann::json pair;
    pair["tenon"] = tenon_under_icount(setup);
    pair["linux_preempt_rt"] = linux_under_icount(setup, scratch);
    for (const char* key : {"p99_ns", "max_ns"}) {
      const nlohmann::json& tenon = pair["tenon"];
      const nlohmann::json& linux = pair["linux_preempt_rt"];
      if (tenon.contains(key) && linux.contains(key) && linux[key].get<double>() > 0) {
        pair["ratio_tenon_to_linux"][key] = tenon[key].get<double>() / linux[key].get<double>();
      }
    }
    result["runs"].push_back(pair);
  }
  const nlohmann::json& runs = result["runs"];
  auto same = [&](const char* who) {
    nlohmann::json first = runs[0][who], second = runs[1][who];
    first.erase("engine");
    second.erase("engine");
    return first == second;
  };
  // How far apart the two runs are, at most, over min/mean/p50/p99/max (0: identical).
  auto spread = [&](const char* who) {
    double largest = 0;
    for (const char* key : {"min_ns", "mean_ns", "p50_ns", "p99_ns", "max_ns"}) {
      if (!runs[0][who].contains(key) || !runs[1][who].contains(key)) return -1.0;
      const double a = runs[0][who][key].get<double>(), b = runs[1][who][key].get<double>();
      if (a > 0) largest = std::max(largest, std::abs(a - b) / a);
    }
    return largest;
  };
  result["repeatable"] = {{"tenon_identical", same("tenon")},
                          {"tenon_largest_relative_difference", spread("tenon")},
                          {"linux_identical", same("linux_preempt_rt")},
                          {"linux_largest_relative_difference", spread("linux_preempt_rt")}};
  if (runs[0].contains("ratio_tenon_to_linux") &&
      runs[0]["ratio_tenon_to_linux"].contains("max_ns")) {
    const nlohmann::json& ratio = runs[0]["ratio_tenon_to_linux"];
    result["target"] = {{"ratio_at_most", 0.1},
                        {"p99_met", ratio["p99_ns"].get<double>() <= 0.1},
                        {"max_met", ratio["max_ns"].get<double>() <= 0.1},
                        {"paper_ratio", 0.6}};
  }
  return result;
}

bool has_error(const nlohmann::json& node) {
  if (node.is_object()) {
    if (node.contains("error")) return true;
    for (const auto& [key, value] : node.items()) {
      if (has_error(value)) return true;
    }
  } else if (node.is_array()) {
    for (const nlohmann::json& value : node) {
      if (has_error(value)) return true;
    }
  }
  return false;
}

// The newest Debian PREEMPT_RT kernel in /boot, or "".
std::string find_rt_kernel() {
  std::string newest;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/boot", error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("vmlinuz-", 0) == 0 && name.find("-rt-") != std::string::npos &&
        entry.path().string() > newest) {
      newest = entry.path().string();
    }
  }
  return newest;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"B1 release-latency benchmark: Tenon against Linux with PREEMPT_RT"};
  std::string image_directory, output_path, commit = "unknown", command, initramfs_script;
  IcountSetup icount;
  int seconds = 60;
  bool skip_host = false;
  app.add_option("--mortise", icount.mortise)->required();
  app.add_option("--image-dir", image_directory,
                 "the build's image directory (latency-probe.elf for QEMU, kvm/ for KVM)")
      ->required();
  app.add_option("--kernel", icount.kernel,
                 "PREEMPT_RT kernel (default: newest /boot/vmlinuz-*-rt-*)");
  app.add_option("--initramfs-script", initramfs_script, "tests/bench/rt_initramfs.sh")->required();
  app.add_option("--releases", icount.releases, "icount comparison: releases per side")
      ->capture_default_str();
  app.add_option("--qemu-binary", icount.qemu_binary)->capture_default_str();
  app.add_option("--seconds", seconds, "host comparison (KVM): duration of each run")
      ->capture_default_str();
  app.add_flag("--skip-host", skip_host, "only the deterministic icount comparison");
  app.add_option("--output", output_path)->required();
  app.add_option("--commit", commit);
  app.add_option("--command", command);
  CLI11_PARSE(app, argc, argv);

  nlohmann::json report{{"benchmark", "B1"}, {"commit", commit}, {"command", command}};
  report["machine"] = tenon::bench::machine_info();
  const std::string scratch = std::filesystem::path(output_path).parent_path().string();
  const tenon::bench::ProcessResult engines =
      tenon::bench::run_process({icount.mortise, "engines", "-o", "json"});
  const nlohmann::json probe =
      tenon::test_support::last_json_line(engines.output).value_or(nlohmann::json::object());
  const bool qemu = probe.contains("qemu") && probe["qemu"].value("usable", false);
  const bool kvm = probe.contains("kvm") && probe["kvm"].value("usable", false);
  if (!qemu && !kvm) {
    report["skipped"] = "no engine can run here: " + probe.dump();
    std::ofstream(output_path) << report.dump(2) << "\n";
    std::cout << "B1 skipped: no engine can run here\n";
    return tenon::bench::kSkipped;
  }

  if (qemu) {
    if (icount.kernel.empty()) icount.kernel = find_rt_kernel();
    icount.qemu_image = image_directory + "/latency-probe.elf";
    icount.initramfs = scratch + "/linux-rt-initramfs.cpio.gz";
    if (icount.kernel.empty()) {
      report["icount"] = {{"error",
                           "no PREEMPT_RT kernel in /boot (deploy/install-deps.sh installs "
                           "linux-image-rt-amd64)"}};
    } else if (tenon::bench::run_process({"bash", initramfs_script, icount.initramfs}).exit_code !=
               0) {
      report["icount"] = {{"error", "building the initramfs failed (" + initramfs_script + ")"}};
    } else {
      report["icount"] = icount_comparison(icount, scratch);
    }
    const nlohmann::json& comparison = report["icount"];
    if (comparison.contains("runs")) {
      std::printf("%-34s %9s %9s %9s %9s %9s\n", "B1 icount (ns = instructions)", "min", "mean",
                  "p50", "p99", "max");
      for (size_t round = 0; round < comparison["runs"].size(); ++round) {
        for (const char* who : {"tenon", "linux_preempt_rt"}) {
          const nlohmann::json& side = comparison["runs"][round][who];
          if (side.contains("error")) {
            std::printf("run %zu %s: FAILED: %s\n", round + 1, who,
                        side["error"].get<std::string>().c_str());
            continue;
          }
          std::printf("%-34s %9.0f %9.0f %9.0f %9.0f %9.0f\n",
                      ("run " + std::to_string(round + 1) + " " + who).c_str(),
                      side["min_ns"].get<double>(), side["mean_ns"].get<double>(),
                      side["p50_ns"].get<double>(), side["p99_ns"].get<double>(),
                      side["max_ns"].get<double>());
        }
      }
      if (comparison.contains("target")) {
        const nlohmann::json& ratio = comparison["runs"][0]["ratio_tenon_to_linux"];
        std::printf(
            "tenon/linux: p99 %.3f, max %.3f (target <= 0.1: %s); repeatable: tenon %s, "
            "linux %s\n",
            ratio["p99_ns"].get<double>(), ratio["max_ns"].get<double>(),
            comparison["target"]["p99_met"].get<bool>() &&
                    comparison["target"]["max_met"].get<bool>()
                ? "met"
                : "NOT met",
            comparison["repeatable"]["tenon_identical"].get<bool>() ? "identical" : "differs",
            comparison["repeatable"]["linux_identical"].get<bool>() ? "identical" : "differs");
      }
    } else {
      std::printf("B1 icount comparison FAILED: %s\n",
                  comparison["error"].get<std::string>().c_str());
    }
  } else {
    report["icount"] = {{"skipped", "the qemu engine cannot run here"}};
  }

  if (kvm && !skip_host) {
    const std::string image = image_directory + "/kvm/latency-probe.elf";
    const std::string poll_image = image_directory + "/kvm/latency-probe-poll.elf";
    const mortise::HostPartition partition = mortise::default_partition();
    const int realtime_cpu = partition.realtime_cpus.front();
    report["host"]["engine"] = "kvm";
    report["host"]["seconds_per_run"] = seconds;
    report["host"]["partition"] = mortise::describe(partition);
    std::printf("%-26s %9s %9s %9s %9s %9s %7s %8s\n", "B1 host KVM (us)", "min", "p50", "p99",
                "p99.9", "max", "misses", "kvm exits/r");
    for (const char* load : {"idle", "management-cpu-hog"}) {
      std::unique_ptr<CpuHog> hog;
      if (std::string(load) != "idle") hog = std::make_unique<CpuHog>(partition.management_cpus);
      nlohmann::json scenario;
      scenario["cyclictest"] = run_cyclictest(realtime_cpu, seconds, scratch);
      scenario["tenon"] = run_tenon(icount.mortise, image, seconds);
      scenario["tenon_poll"] = run_tenon(icount.mortise, poll_image, seconds);
      const nlohmann::json& baseline = scenario["cyclictest"];
      for (const char* key : {"p99_ns", "max_ns"}) {
        if (baseline.contains(key) && scenario["tenon"].contains(key) && baseline[key] > 0) {
          scenario["ratio_tenon_to_cyclictest"][key] =
              scenario["tenon"][key].get<double>() / baseline[key].get<double>();
        }
      }
      for (const char* who : {"cyclictest", "tenon", "tenon_poll"}) {
        const nlohmann::json& side = scenario[who];
        if (side.contains("error") || side.contains("skipped")) continue;
        std::printf(
            "%-26s %9.1f %9.1f %9.1f %9.1f %9.1f %7s %8s\n",
            (std::string(load) + " " + who).c_str(), side["min_ns"].get<double>() / 1e3,
            side["p50_ns"].get<double>() / 1e3, side["p99_ns"].get<double>() / 1e3,
            side["p999_ns"].get<double>() / 1e3, side["max_ns"].get<double>() / 1e3,
            side.contains("deadline_misses")
                ? std::to_string(side["deadline_misses"].get<int>()).c_str()
                : "-",
            side.contains("kvm_exits_per_release")
                ? absl::StrFormat("%.2f", side["kvm_exits_per_release"].get<double>()).c_str()
                : "-");
      }
      report["host"]["scenarios"][load] = scenario;
    }
  } else {
    report["host"] = {{"skipped", kvm ? "--skip-host" : "the kvm engine cannot run here"}};
  }
  std::ofstream(output_path) << report.dump(2) << "\n";
  std::printf("results: %s\n", output_path.c_str());
  if (has_error(report)) {
    std::fprintf(stderr, "B1 FAILED: a run failed; see %s\n", output_path.c_str());
    return 1;
  }
  return 0;
}

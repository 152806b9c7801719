// B1: release-to-run latency of Tenon's 1 kHz latency-probe under Mortise (KVM, vCPU pinned to a
// real-time core, SCHED_FIFO) against `cyclictest -m -p 90 -i 1000` on the same host core for the
// same duration, in the same run; idle, and with a CPU hog in the management partition. Writes
// one JSON document and a table. See ../shared/BENCHMARKS.md, id B1.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
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
  if (run.exit_code != 0) return {{"skipped", "cyclictest failed or is not installed"}};
  std::ifstream file(histogram);
  const std::string histogram_text((std::istreambuf_iterator<char>(file)),
                                   std::istreambuf_iterator<char>());
  return cyclictest_summary(histogram, run.output + histogram_text);
}

nlohmann::json run_tenon(const std::string& mortise, const std::string& image, int seconds) {
  const tenon::bench::ProcessResult run =
      tenon::bench::run_process({mortise, "run", image, "--memory", "256K", "--realtime",
                                 "--app-run", std::to_string(seconds) + "s", "-o", "json"});
  const std::optional<nlohmann::json> parsed = tenon::test_support::last_json_line(run.output);
  if (run.exit_code != 0 || !parsed) return {{"skipped", "mortise run failed"}};
  const nlohmann::json& record = *parsed;
  const nlohmann::json& probe = record["telemetry"]["tasks"][0];
  nlohmann::json summary = probe["release_latency"];
  summary["samples"] = probe["jobs"];
  summary["deadline_misses"] = probe["deadline_misses"];
  summary["note"] = "p50/p99/p99.9 are upper edges of log2 TSC-tick buckets; min/mean/max exact";
  summary["placement"] = record["placement"];
  return summary;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"B1 release-latency benchmark: Tenon under Mortise vs cyclictest"};
  std::string mortise, image, poll_image, output_path, commit = "unknown", command;
  int seconds = 60;
  app.add_option("--mortise", mortise)->required();
  app.add_option("--image", image, "latency-probe image")->required();
  app.add_option("--poll-image", poll_image, "latency-probe built with TSC polling");
  app.add_option("--seconds", seconds, "duration of each run")->capture_default_str();
  app.add_option("--output", output_path)->required();
  app.add_option("--commit", commit);
  app.add_option("--command", command);
  CLI11_PARSE(app, argc, argv);

  nlohmann::json report{
      {"benchmark", "B1"}, {"commit", commit}, {"command", command}, {"seconds_per_run", seconds}};
  report["machine"] = tenon::bench::machine_info();
  if (access("/dev/kvm", R_OK | W_OK) != 0) {
    report["skipped"] = "no usable /dev/kvm on this host";
    std::ofstream(output_path) << report.dump(2) << "\n";
    std::cout << "B1 skipped: no usable /dev/kvm\n";
    return 0;
  }
  const mortise::HostPartition partition = mortise::default_partition();
  const int realtime_cpu = partition.realtime_cpus.front();
  report["partition"] = mortise::describe(partition);
  const std::string scratch = std::filesystem::path(output_path).parent_path().string();

  std::printf("%-26s %9s %9s %9s %9s %9s %7s\n", "B1 latency (us)", "min", "p50", "p99", "p99.9",
              "max", "misses");
  for (const char* load : {"idle", "management-cpu-hog"}) {
    std::unique_ptr<CpuHog> hog;
    if (std::string(load) != "idle") hog = std::make_unique<CpuHog>(partition.management_cpus);
    nlohmann::json scenario;
    scenario["cyclictest"] = run_cyclictest(realtime_cpu, seconds, scratch);
    scenario["tenon"] = run_tenon(mortise, image, seconds);
    if (!poll_image.empty()) scenario["tenon_poll"] = run_tenon(mortise, poll_image, seconds);
    const nlohmann::json& baseline = scenario["cyclictest"];
    for (const char* key : {"p99_ns", "max_ns"}) {
      if (baseline.contains(key) && scenario["tenon"].contains(key) && baseline[key] > 0) {
        scenario["ratio_tenon_to_cyclictest"][key] =
            scenario["tenon"][key].get<double>() / baseline[key].get<double>();
      }
    }
    for (const char* who : {"cyclictest", "tenon", "tenon_poll"}) {
      if (!scenario.contains(who) || scenario[who].contains("skipped")) continue;
      const nlohmann::json& s = scenario[who];
      std::printf("%-26s %9.1f %9.1f %9.1f %9.1f %9.1f %7s\n",
                  (std::string(load) + " " + who).c_str(), s["min_ns"].get<double>() / 1e3,
                  s["p50_ns"].get<double>() / 1e3, s["p99_ns"].get<double>() / 1e3,
                  s["p999_ns"].get<double>() / 1e3, s["max_ns"].get<double>() / 1e3,
                  s.contains("deadline_misses")
                      ? std::to_string(s["deadline_misses"].get<int>()).c_str()
                      : "-");
    }
    report["scenarios"][load] = scenario;
  }
  std::ofstream(output_path) << report.dump(2) << "\n";
  std::printf("results: %s\n", output_path.c_str());
  return 0;
}

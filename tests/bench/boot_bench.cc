// B2 (footprint) and B3 (boot) for Tenon under Mortise, with the bare-KVM floor measured in the
// same run. Writes one JSON document and prints a short table. See ../../../shared/BENCHMARKS.md
// ids B2 and B3; this is a benchmark, nothing here fails on a timing.
#include <elf.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <thread>
#include <vector>
#include "bench_report.h"
#include "shell_command.h"

namespace {

using tenon::bench::ProcessResult;
using tenon::bench::run_process;
using tenon::bench::summarize;
using tenon::test_support::last_json_line;

// text (R+X and R segments), data and bss of an image from its PT_LOAD headers.
nlohmann::json image_sections(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  Elf64_Ehdr header{};
  file.read(reinterpret_cast<char*>(&header), sizeof(header));
  uint64_t text = 0, data = 0, bss = 0;
  for (int i = 0; file && i < header.e_phnum; ++i) {
    Elf64_Phdr segment{};
    file.seekg(static_cast<std::streamoff>(header.e_phoff + i * sizeof(Elf64_Phdr)));
    file.read(reinterpret_cast<char*>(&segment), sizeof(segment));
    if (segment.p_type != PT_LOAD) continue;
    if (segment.p_flags & PF_W) {
      data += segment.p_filesz;
      bss += segment.p_memsz - segment.p_filesz;
    } else {
      text += segment.p_memsz;
    }
  }
  std::ifstream sized(path, std::ios::binary | std::ios::ate);
  return {{"text", text},
          {"data", data},
          {"bss", bss},
          {"total", text + data + bss},
          {"file_bytes", static_cast<uint64_t>(sized.tellg())}};
}

bool boots_in(const std::string& mortise, const std::string& engine, const std::string& image,
              uint64_t memory) {
  const ProcessResult result = run_process({mortise, "run", image, "--engine", engine, "--memory",
                                            std::to_string(memory), "--duration", "5s"});
  return result.exit_code == 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"B2 footprint and B3 boot benchmarks for Tenon under Mortise"};
  std::string mortise, image_directory, floor_program, output_path, commit = "unknown", command;
  int runs = 200;
  app.add_option("--mortise", mortise, "mortise binary")->required();
  app.add_option("--image-dir", image_directory,
                 "the build's image directory (hello.elf for QEMU, kvm/hello.elf for KVM)")
      ->required();
  app.add_option("--floor", floor_program, "bare KVM floor program (run on the kvm engine only)")
      ->required();
  app.add_option("--runs", runs, "samples per measurement")->capture_default_str();
  app.add_option("--output", output_path, "JSON result file")->required();
  app.add_option("--commit", commit, "commit being measured");
  app.add_option("--command", command, "the command line that ran this benchmark");
  CLI11_PARSE(app, argc, argv);

  nlohmann::json report;
  report["benchmarks"] = {"B2", "B3"};
  report["commit"] = commit;
  report["command"] = command;
  report["machine"] = tenon::bench::machine_info();
  const tenon::bench::Engine engine = tenon::bench::auto_engine(mortise);
  if (engine.name.empty()) {
    report["skipped"] = engine.problem;
    std::ofstream(output_path) << report.dump(2) << "\n";
    std::cout << "B2/B3 skipped: " << engine.problem << "\n";
    return tenon::bench::kSkipped;
  }
  // Every figure below comes from this engine; the floor is bare KVM, so only beside KVM.
  report["engine"] = engine.name;
  const bool kvm = engine.name == "kvm";
  const std::string image = tenon::bench::image_dir(image_directory, engine.name) + "/hello.elf";

  // B3: whole `mortise run` wall time and process start -> app main; floor alongside.
  std::vector<double> mortise_wall, boot_to_main, floor_wall, floor_first_exit, rss_kib;
  int failures = 0;
  for (int i = 0; i < runs; ++i) {
    const ProcessResult run = run_process(
        {mortise, "run", image, "--engine", engine.name, "--memory", "256K", "-o", "json"});
    std::optional<nlohmann::json> record = last_json_line(run.output);
    if (run.exit_code != 0 || !record) {
      ++failures;
      continue;
    }
    mortise_wall.push_back(run.wall_ns);
    rss_kib.push_back(static_cast<double>(run.max_rss_kib));
    if ((*record)["boot_to_main_ns"].is_number()) {
      boot_to_main.push_back((*record)["boot_to_main_ns"].get<double>());
    }
    if (!kvm) continue;
    const ProcessResult floor = run_process({floor_program});
    std::optional<nlohmann::json> floor_record = last_json_line(floor.output);
    if (floor.exit_code == 0 && floor_record) {
      floor_wall.push_back(floor.wall_ns);
      floor_first_exit.push_back((*floor_record)["first_exit_ns"].get<double>());
    }
  }
  report["B3"] = {{"unit", "ns"},
                  {"mortise_run_wall", summarize(mortise_wall)},
                  {"process_start_to_app_main", summarize(boot_to_main)},
                  {"floor_process_wall", summarize(floor_wall)},
                  {"floor_process_start_to_first_exit", summarize(floor_first_exit)},
                  {"failed_runs", failures}};

  // B2: image size, smallest guest memory that boots hello, VMM host RSS.
  uint64_t low = 4096, high = 1 << 20;  // invariant: boots at high
  if (!boots_in(mortise, engine.name, image, high)) high = 0;
  while (high != 0 && high - low > 4096) {
    const uint64_t middle = (low + high) / 2 / 4096 * 4096;
    if (boots_in(mortise, engine.name, image, middle))
      high = middle;
    else
      low = middle;
  }
  report["B2"] = {{"image", image_sections(image)},
                  {"smallest_guest_memory_bytes", high},
                  {"vmm_max_rss_kib", summarize(rss_kib)}};
  std::ofstream(output_path) << report.dump(2) << "\n";

  auto us = [](const nlohmann::json& stats, const char* key) {
    return stats.is_null() ? 0.0 : stats[key].get<double>() / 1000.0;
  };
  std::printf("%-40s %10s %10s %10s %10s\n", "B3 boot (us)", "min", "p50", "p99", "max");
  for (const char* key : {"process_start_to_app_main", "mortise_run_wall", "floor_process_wall",
                          "floor_process_start_to_first_exit"}) {
    const nlohmann::json& stats = report["B3"][key];
    std::printf("%-40s %10.1f %10.1f %10.1f %10.1f\n", key, us(stats, "min"), us(stats, "p50"),
                us(stats, "p99"), us(stats, "max"));
  }
  std::printf(
      "B2 image text+data+bss: %llu bytes; smallest guest memory: %llu KiB; VMM max RSS p50: %.0f "
      "KiB\n",
      static_cast<unsigned long long>(report["B2"]["image"]["total"].get<uint64_t>()),
      static_cast<unsigned long long>(high / 1024),
      rss_kib.empty() ? 0.0 : report["B2"]["vmm_max_rss_kib"]["p50"].get<double>());
  std::printf("results: %s (engine %s)\n", output_path.c_str(), engine.name.c_str());
  // A boot that failed, or a hello that boots in no memory size, fails the benchmark.
  if (failures > 0 || high == 0) {
    std::fprintf(stderr, "B2/B3 FAILED: %d of %d runs failed%s\n", failures, runs,
                 high == 0 ? "; hello did not boot in 1 MiB" : "");
    return 1;
  }
  return 0;
}

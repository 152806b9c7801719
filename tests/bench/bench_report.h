// What every benchmark here shares: spawning the program under test, summarising samples the
// same way (count, min, p50, p99, max, mean), and describing the machine in its JSON report.
#pragma once

#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace tenon::bench {

struct ProcessResult {
  int exit_code = -1;  // -1 when it could not be started or did not exit normally
  std::string output;  // stdout; stderr is dropped
  double wall_ns = 0;  // spawn to reap
  long max_rss_kib = 0;
};

// Runs argv[0] (searched in PATH) to completion.
ProcessResult run_process(const std::vector<std::string>& arguments);

// {count, min, p50, p99, max, mean}, or null for no samples.
nlohmann::json summarize(std::vector<double> samples);

// {cores, host_is_a_guest, kvm}: the host this report was measured on; kvm says what its
// /dev/kvm is ("absent", "hardware virtualization", "paravirtual (kvm_pvm ...)", ...).
nlohmann::json machine_info();

// A benchmark that cannot run here exits with this (ctest: SKIP_RETURN_CODE), after writing
// its JSON with a "skipped" reason; one whose run fails exits 1.
inline constexpr int kSkipped = 77;

// The engine `mortise --engine auto` picks on this host, asked of `mortise engines -o json`:
// name "kvm" or "qemu", or empty with `problem` saying why no engine can run here.
struct Engine {
  std::string name;
  std::string problem;
};
Engine auto_engine(const std::string& mortise_binary);

// Where a build keeps images for `engine`: `base` (QEMU platform) or `base`/kvm.
std::string image_dir(const std::string& base, const std::string& engine);

}  // namespace tenon::bench

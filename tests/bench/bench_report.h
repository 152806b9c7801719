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

// {cores, kvm_nested}: the host this report was measured on.
nlohmann::json machine_info();

}  // namespace tenon::bench

// Prometheus exposition of the controller: API request counts and latencies (recorded here by
// both adapters) and the fleet gauges taken from a ControllerSnapshot. Text format 0.0.4.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "controller.h"

namespace tenon::controller {

class ApiMetrics {
 public:
  // `api` is "grpc" or "rest"; `method` the RPC or route name.
  void record(const std::string& api, const std::string& method, absl::StatusCode code,
              absl::Duration duration);
  // The whole /metrics page.
  std::string render(const ControllerSnapshot& snapshot) const;

 private:
  static constexpr std::array<double, 12> kBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,   0.25,   0.5,   1,    2.5};
  struct Latency {
    std::array<uint64_t, kBuckets.size()> buckets{};
    uint64_t count = 0;
    double sum = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> requests_;
  std::map<std::pair<std::string, std::string>, Latency> latencies_;
};

}  // namespace tenon::controller

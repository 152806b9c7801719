// Periodic tasks in real guests on every engine usable here (KVM; QEMU, in real time and with
// -icount), through `mortise run -o json`: latency-probe and control-loop run with non-empty
// histograms, their job counts match their periods, and the fixed-priority and EDF builds of
// control-loop release the same jobs. Skipped only where no engine can run guests.
//
// Where this project's machines have KVM it is nested: guest code runs ~1000x slower than native
// (~0.5 us per instruction, measured) and the host stalls the guest for up to ~40 ms now and then
// (each stall costs a 1 kHz task dozens of deadlines), so misses are bounded here (<= 5% of jobs)
// rather than required to be zero, and scheduling order is checked on medians, which stalls do
// not move: a job's median response stays inside its deadline. QEMU in real time (TCG without
// icount) times the host's translator on a shared machine, so there only the releases are
// checked; under icount the bounds hold again. make bench reports the exact counts.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "engines.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "shell_command.h"

namespace {

struct GuestRun {
  int exit_code = -1;
  nlohmann::json record;
};

// An engine as these tests run it: QEMU twice, in real time and in icount's virtual time.
struct EngineRun {
  mortise::EngineKind engine;
  bool icount = false;
  std::string name() const { return icount ? "qemu_icount" : mortise::engine_name(engine); }
  // Deadlines say something about Tenon on hardware KVM and under icount; QEMU's TCG in real
  // time times the host's translator, and an emulating KVM (kvm_pvm) its instruction emulator.
  bool timing_is_meaningful() const {
    return icount ||
           (engine == mortise::EngineKind::kKvm && tenon::test_support::kvm_runs_guests_natively());
  }
};

void PrintTo(const EngineRun& run, std::ostream* out) { *out << run.name(); }

std::vector<EngineRun> engine_runs() {
  std::vector<EngineRun> runs;
  for (const mortise::EngineKind engine : tenon::test_support::usable_engines()) {
    runs.push_back({engine, false});
    if (engine == mortise::EngineKind::kQemu) runs.push_back({engine, true});
  }
  return runs;
}

GuestRun run_image(const EngineRun& engine, const std::string& image, const std::string& app_run) {
  const std::string command = std::string(MORTISE_BINARY) + " run " +
                              tenon::test_support::image_dir(TENON_IMAGE_DIR, engine.engine) + "/" +
                              image + ".elf --memory 256K --realtime" + " --app-run " + app_run +
                              // A safety net in wall time: under icount on a busy host a 10 s
                              // virtual run can take minutes.
                              " --duration 600s --engine " + mortise::engine_name(engine.engine) +
                              (engine.icount ? " --icount" : "") + " -o json 2>/dev/null";
  const tenon::test_support::ShellResult result = tenon::test_support::run_shell(command);
  GuestRun run;
  run.exit_code = result.exit_code;
  run.record = tenon::test_support::last_json_line(result.output).value_or(nlohmann::json());
  return run;
}

// Where no engine runs, this is the test that says so (skipped); elsewhere every engine the
// tests run on has this build's real-time images.
TEST(RealtimeEngines, EachUsableEngineHasItsImages) {
  if (tenon::test_support::usable_engines().empty()) {
    GTEST_SKIP() << tenon::test_support::no_engine_reason();
  }
  for (const mortise::EngineKind engine : tenon::test_support::usable_engines()) {
    for (const char* image : {"latency-probe", "control-loop", "control-loop-edf"}) {
      const std::string path =
          tenon::test_support::image_dir(TENON_IMAGE_DIR, engine) + "/" + image + ".elf";
      EXPECT_TRUE(std::filesystem::exists(path)) << path;
    }
  }
}

class RealtimeTest : public ::testing::TestWithParam<EngineRun> {};

const nlohmann::json* task(const nlohmann::json& record, const std::string& name) {
  for (const nlohmann::json& entry : record["telemetry"]["tasks"]) {
    if (entry["name"] == name) return &entry;
  }
  return nullptr;
}

void expect_healthy(const nlohmann::json& entry, uint64_t expected_jobs, bool check_deadlines) {
  const uint64_t jobs = entry["jobs"];
  // Where timing means nothing (real-time TCG, an emulating KVM) a late guest skips releases:
  // only the upper bound holds there.
  if (check_deadlines) {
    EXPECT_GE(jobs, expected_jobs * 99 / 100) << entry.dump();
  }
  EXPECT_LE(jobs, expected_jobs) << entry.dump();
  EXPECT_EQ(entry["release_latency"]["count"], jobs) << "every started job has a latency sample";
  EXPECT_GT(entry["release_latency"]["max_ns"].get<double>(), 0.0);
  if (check_deadlines) {
    EXPECT_LE(entry["deadline_misses"].get<uint64_t>(), jobs / 20) << entry.dump();
    EXPECT_LT(entry["response_time"]["p50_ns"].get<double>(), entry["deadline_ns"].get<double>())
        << entry.dump();
  }
  EXPECT_EQ(entry["gap_jobs"], 0) << "nothing paused this instance";
}

TEST_P(RealtimeTest, LatencyProbeRunsAtOneKilohertz) {
  GuestRun run = run_image(GetParam(), "latency-probe", "10s");
  ASSERT_EQ(run.exit_code, 0) << run.record.dump();
  EXPECT_EQ(run.record["telemetry"]["scheduler"], "fixed-priority");
  const nlohmann::json* probe = task(run.record, "probe");
  ASSERT_NE(probe, nullptr) << run.record.dump();
  expect_healthy(*probe, 10000, GetParam().timing_is_meaningful());
}

TEST_P(RealtimeTest, ControlLoopUnderFixedPriorityAndEdfReleasesTheSameJobs) {
  GuestRun fixed_priority = run_image(GetParam(), "control-loop", "10s");
  GuestRun edf = run_image(GetParam(), "control-loop-edf", "10s");
  ASSERT_EQ(fixed_priority.exit_code, 0) << fixed_priority.record.dump();
  ASSERT_EQ(edf.exit_code, 0) << edf.record.dump();
  EXPECT_EQ(fixed_priority.record["telemetry"]["scheduler"], "fixed-priority");
  EXPECT_EQ(edf.record["telemetry"]["scheduler"], "edf");
  const std::pair<const char*, uint64_t> tasks[] = {
      {"pid", 10000}, {"supervisor", 1000}, {"logger", 100}};
  for (const auto& [name, expected_jobs] : tasks) {
    SCOPED_TRACE(name);
    const nlohmann::json* under_fixed_priority = task(fixed_priority.record, name);
    const nlohmann::json* under_edf = task(edf.record, name);
    ASSERT_NE(under_fixed_priority, nullptr);
    ASSERT_NE(under_edf, nullptr);
    expect_healthy(*under_fixed_priority, expected_jobs, GetParam().timing_is_meaningful());
    expect_healthy(*under_edf, expected_jobs, GetParam().timing_is_meaningful());
    const int64_t difference =
        (*under_fixed_priority)["jobs"].get<int64_t>() - (*under_edf)["jobs"].get<int64_t>();
    if (GetParam().timing_is_meaningful()) {
      EXPECT_LE(std::abs(difference), static_cast<int64_t>(expected_jobs / 100));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, RealtimeTest, ::testing::ValuesIn(engine_runs()),
                         [](const ::testing::TestParamInfo<EngineRun>& info) {
                           return info.param.name();
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(RealtimeTest);

}  // namespace

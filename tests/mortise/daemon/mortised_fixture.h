// What the mortised end-to-end tests share: a real mortised per test on the engine
// `--engine auto` picks here (skipped only where no engine can run guests; its log printed when
// the test fails), images by name from this build for that engine, and the RPC deadline they all
// use. Needs TENON_IMAGE_DIR and MORTISED_BINARY from the test's target.
#pragma once

#include <unistd.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <string>

#include "engines.h"
#include "gtest/gtest.h"
#include "mortised_process.h"

namespace mortise::testing {

// The engine the tests' mortised runs unless a test names one, and the directory of this build's
// images for an engine.
inline EngineKind test_engine() { return tenon::test_support::auto_engine(); }
inline std::string test_image_directory(EngineKind engine = test_engine()) {
  return tenon::test_support::image_dir(TENON_IMAGE_DIR, engine);
}

inline std::string image(const std::string& name, EngineKind engine = test_engine()) {
  return test_image_directory(engine) + "/" + name;
}

// Guest work is slow under nested KVM: a deadline a passing run never comes near.
inline std::chrono::system_clock::time_point rpc_deadline() {
  return std::chrono::system_clock::now() + std::chrono::seconds(60);
}

// mortised serving this build's images on an engine.
inline MortisedOptions test_mortised_options(EngineKind engine = test_engine()) {
  MortisedOptions options;
  options.mortised_binary = MORTISED_BINARY;
  options.image_directory = test_image_directory(engine);
  options.extra_arguments = {"--engine", engine_name(engine)};
  return options;
}

// Starts mortised serving this build's images; null (with a test failure) when it cannot.
inline std::unique_ptr<MortisedProcess> start_test_mortised(EngineKind engine = test_engine()) {
  const MortisedOptions options = test_mortised_options(engine);
  absl::StatusOr<std::unique_ptr<MortisedProcess>> started = MortisedProcess::start(options);
  EXPECT_TRUE(started.ok()) << started.status();
  return started.ok() ? std::move(*started) : nullptr;
}

// One mortised per test.
class MortisedFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    if (tenon::test_support::usable_engines().empty()) {
      GTEST_SKIP() << tenon::test_support::no_engine_reason();
    }
    mortised_ = start_test_mortised();
    ASSERT_NE(mortised_, nullptr);
  }
  void TearDown() override {
    if (HasFailure() && mortised_ != nullptr) {
      std::cerr << "---- mortised log ----\n" << mortised_->log() << "----------------------\n";
    }
    mortised_.reset();
  }

  std::unique_ptr<MortisedProcess> mortised_;
};

}  // namespace mortise::testing

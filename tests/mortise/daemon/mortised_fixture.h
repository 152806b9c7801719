// What the mortised end-to-end tests share: a real mortised per test (skipped without a usable
// /dev/kvm, its log printed when the test fails), images by name from this build, and the RPC
// deadline they all use. Needs TENON_IMAGE_DIR and MORTISED_BINARY from the test's target.
#pragma once

#include <unistd.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "mortised_process.h"

namespace mortise::testing {

inline std::string image(const std::string& name) {
  return std::string(TENON_IMAGE_DIR) + "/" + name;
}

// Guest work is slow under nested KVM: a deadline a passing run never comes near.
inline std::chrono::system_clock::time_point rpc_deadline() {
  return std::chrono::system_clock::now() + std::chrono::seconds(60);
}

// Starts mortised serving this build's images; null (with a test failure) when it cannot.
inline std::unique_ptr<MortisedProcess> start_test_mortised() {
  MortisedOptions options;
  options.mortised_binary = MORTISED_BINARY;
  options.image_directory = TENON_IMAGE_DIR;
  absl::StatusOr<std::unique_ptr<MortisedProcess>> started = MortisedProcess::start(options);
  EXPECT_TRUE(started.ok()) << started.status();
  return started.ok() ? std::move(*started) : nullptr;
}

// One mortised per test.
class MortisedFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/kvm", R_OK | W_OK) != 0) {
      GTEST_SKIP() << "no usable /dev/kvm on this host: mortised cannot run guests here";
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

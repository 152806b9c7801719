// Which devices an instance may migrate between (controller/server/migration_policy.h): only
// where the snapshot can come back, and every refusal names both devices and what differs.
#include "migration_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace tenon::controller {
namespace {

using ::testing::HasSubstr;

tenon::v1::DeviceProfile profile(const std::string& engine, const std::string& qemu_version = "",
                                 uint64_t tsc_khz = 2'600'000) {
  tenon::v1::DeviceProfile profile;
  profile.set_arch(tenon::v1::ARCH_X86_64);
  profile.set_guest_abi_version(1);
  profile.set_engine(engine);
  profile.set_qemu_version(qemu_version);
  profile.set_tsc_frequency_khz(tsc_khz);
  return profile;
}

absl::Status check(const tenon::v1::DeviceProfile& source, const tenon::v1::DeviceProfile& target) {
  return check_migration("edge-1", source, "edge-2", target);
}

TEST(MigrationPolicy, SameEngineAndMachineMigrate) {
  EXPECT_TRUE(check(profile("kvm"), profile("kvm")).ok());
  // An agent that reports no engine predates the QEMU engine: it runs kvm.
  EXPECT_TRUE(check(profile(""), profile("kvm")).ok());
  EXPECT_TRUE(check(profile("qemu-tcg", "7.2.22"), profile("qemu-tcg", "7.2.22")).ok());
  // Under icount the guest's TSC counts virtual nanoseconds, whatever the hosts' TSCs.
  EXPECT_TRUE(check(profile("qemu-icount", "7.2.22", 2'600'000),
                    profile("qemu-icount", "7.2.22", 3'000'000))
                  .ok());
  // A TSC within half a percent is the same clock to the guest's calibration.
  EXPECT_TRUE(
      check(profile("qemu-tcg", "7.2.22", 2'600'000), profile("qemu-tcg", "7.2.22", 2'605'000))
          .ok());
}

TEST(MigrationPolicy, AnotherEngineIsRefusedNamingBoth) {
  for (const auto& [source, target] : {std::pair{"kvm", "qemu-tcg"},
                                       {"qemu-tcg", "kvm"},
                                       {"qemu-tcg", "qemu-icount"},
                                       {"", "qemu-kvm"}}) {
    const absl::Status status = check(profile(source, "7.2.22"), profile(target, "7.2.22"));
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << source << " " << target;
    EXPECT_THAT(status.message(), HasSubstr("edge-1"));
    EXPECT_THAT(status.message(), HasSubstr("edge-2"));
    EXPECT_THAT(status.message(), HasSubstr(std::string(target) + " engine"));
    EXPECT_THAT(status.message(), HasSubstr("restored only by the engine that took it"));
  }
}

TEST(MigrationPolicy, AnotherQemuVersionOrTscIsRefused) {
  absl::Status status = check(profile("qemu-tcg", "7.2.22"), profile("qemu-tcg", "8.0.0"));
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("QEMU 7.2.22, the target QEMU 8.0.0"));

  status =
      check(profile("qemu-tcg", "7.2.22", 2'600'000), profile("qemu-tcg", "7.2.22", 3'000'000));
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("2600000 kHz at the source and 3000000 kHz"));
}

TEST(MigrationPolicy, AnotherArchOrGuestAbiIsRefused) {
  tenon::v1::DeviceProfile arm = profile("kvm");
  arm.set_arch(tenon::v1::ARCH_ARM64);
  EXPECT_THAT(check(profile("kvm"), arm).message(), HasSubstr("other arch or guest ABI"));
  tenon::v1::DeviceProfile newer = profile("kvm");
  newer.set_guest_abi_version(2);
  EXPECT_EQ(check(profile("kvm"), newer).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace tenon::controller

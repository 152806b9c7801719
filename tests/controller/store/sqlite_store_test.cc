// SqliteStore's own guarantee beyond what store_test.cc checks of every backend: durability of a
// real SQLite file across SIGKILL.
#include "sqlite_store.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "object_meta.h"
#include "store_test_objects.h"
#include "temporary_directory.h"

namespace tenon::controller {
namespace {

using store_test::make_object;
using tenon::v1::Object;
using test_support::TemporaryDirectory;

// A controller killed at any instant keeps every transaction it reported as committed. The child
// commits in a loop (an object and a counter per transaction) and writes each committed count to
// a pipe only after transact returned OK; the parent SIGKILLs it mid-stream and checks the file.
TEST(SqliteStoreDurabilityTest, EveryReportedCommitSurvivesSigkill) {
  TemporaryDirectory directory;
  const std::string path = directory.file("controller.db");
  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(report[0]);
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::open(path);
    if (!store.ok()) ::_exit(2);
    for (uint64_t committed = 1;; ++committed) {
      absl::Status status = (*store)->transact([&](StoreTransaction& transaction) -> absl::Status {
        Object object =
            make_object(tenon::v1::OBJECT_KIND_DEVICE, "device-" + std::to_string(committed));
        absl::Status put = transaction.put_object(object);
        if (!put.ok()) return put;
        absl::StatusOr<uint64_t> count = transaction.next_counter("commits");
        if (!count.ok()) return count.status();
        return *count == committed ? absl::OkStatus() : absl::InternalError("counter skipped");
      });
      if (!status.ok()) ::_exit(3);
      if (::write(report[1], &committed, sizeof(committed)) != sizeof(committed)) ::_exit(4);
    }
  }
  ::close(report[1]);

  // Wait (with a deadline, not a sleep) for enough commits that the kill lands mid-stream.
  constexpr uint64_t kCommitsBeforeKill = 200;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  uint64_t last_reported = 0;
  auto read_report = [&](int timeout_ms) {
    pollfd readable{report[0], POLLIN, 0};
    if (::poll(&readable, 1, timeout_ms) <= 0) return false;
    uint64_t committed = 0;
    if (::read(report[0], &committed, sizeof(committed)) != sizeof(committed)) return false;
    EXPECT_EQ(committed, last_reported + 1);
    last_reported = committed;
    return true;
  };
  while (last_reported < kCommitsBeforeKill && std::chrono::steady_clock::now() < deadline) {
    if (!read_report(1000)) break;
  }
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int wait_status = 0;
  ASSERT_EQ(::waitpid(child, &wait_status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(wait_status))
      << "the child exited by itself with status " << WEXITSTATUS(wait_status);
  // Reports written between the last read and the kill count too.
  while (read_report(0)) {
  }
  ::close(report[0]);
  ASSERT_GE(last_reported, kCommitsBeforeKill);

  absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  absl::Status status = (*store)->transact([&](StoreTransaction& transaction) -> absl::Status {
    absl::StatusOr<std::vector<Object>> devices =
        transaction.list_objects(tenon::v1::OBJECT_KIND_DEVICE);
    if (!devices.ok()) return devices.status();
    std::set<std::string> present;
    for (const Object& device : *devices) present.insert(object_meta(device).name());
    for (uint64_t committed = 1; committed <= last_reported; ++committed) {
      EXPECT_TRUE(present.contains("device-" + std::to_string(committed))) << committed;
    }
    // At most one commit more than reported (killed between COMMIT and the report), and each
    // transaction is whole: as many devices as the counter says.
    absl::StatusOr<uint64_t> next = transaction.next_counter("commits");
    if (!next.ok()) return next.status();
    const uint64_t committed_total = *next - 1;
    EXPECT_GE(committed_total, last_reported);
    EXPECT_LE(committed_total, last_reported + 1);
    EXPECT_EQ(present.size(), committed_total);
    // One resource version per committed transaction, none lost either.
    absl::StatusOr<uint64_t> resource_version = transaction.read_counter(kResourceVersionCounter);
    if (!resource_version.ok()) return resource_version.status();
    EXPECT_EQ(*resource_version, committed_total);
    return absl::OkStatus();
  });
  EXPECT_TRUE(status.ok()) << status;
}

}  // namespace
}  // namespace tenon::controller

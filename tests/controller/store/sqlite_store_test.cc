// SqliteStore on a real SQLite file: every record type, transactions, corruption, durability
// across SIGKILL.
#include "sqlite_store.h"

#include <google/protobuf/util/message_differencer.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "object_meta.h"
#include "temporary_directory.h"

namespace tenon::controller {
namespace {

using google::protobuf::util::MessageDifferencer;
using tenon::v1::DesiredState;
using tenon::v1::Object;
using tenon::v1::ObjectKind;
using test_support::TemporaryDirectory;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr ObjectKind kAllKinds[] = {
    tenon::v1::OBJECT_KIND_DEVICE, tenon::v1::OBJECT_KIND_APP, tenon::v1::OBJECT_KIND_DEPLOYMENT,
    tenon::v1::OBJECT_KIND_INSTANCE, tenon::v1::OBJECT_KIND_COMPOSITION};

Object make_object(ObjectKind kind, const std::string& name, const std::string& tier = "edge") {
  Object object;
  switch (kind) {
    case tenon::v1::OBJECT_KIND_DEVICE:
      object.mutable_device();
      break;
    case tenon::v1::OBJECT_KIND_APP:
      object.mutable_app();
      break;
    case tenon::v1::OBJECT_KIND_DEPLOYMENT:
      object.mutable_deployment();
      break;
    case tenon::v1::OBJECT_KIND_INSTANCE:
      object.mutable_instance();
      break;
    case tenon::v1::OBJECT_KIND_COMPOSITION:
      object.mutable_composition()->set_image_digest("sha256:00");
      break;
    default:
      break;
  }
  tenon::v1::ObjectMeta* meta = mutable_object_meta(&object);
  meta->set_name(name);
  meta->set_uid("uid-" + name);
  meta->set_generation(3);
  (*meta->mutable_labels())["tier"] = tier;
  (*meta->mutable_labels())["site"] = "lab";
  return object;
}

std::vector<std::string> names(const std::vector<Object>& objects) {
  std::vector<std::string> result;
  for (const Object& object : objects) result.push_back(object_meta(object).name());
  return result;
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { reopen(); }
  void reopen() {
    store_.reset();
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::open(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  // Runs `body` in a transaction that must commit.
  void commit(const std::function<absl::Status(StoreTransaction&)>& body) {
    absl::Status status = store_->transact(body);
    ASSERT_TRUE(status.ok()) << status;
  }
  std::optional<Object> get(ObjectKind kind, const std::string& name) {
    std::optional<Object> result;
    commit([&](StoreTransaction& transaction) {
      absl::StatusOr<std::optional<Object>> object = transaction.get_object(kind, name);
      if (!object.ok()) return object.status();
      result = *object;
      return absl::OkStatus();
    });
    return result;
  }
  std::vector<Object> list(ObjectKind kind) {
    std::vector<Object> result;
    commit([&](StoreTransaction& transaction) {
      absl::StatusOr<std::vector<Object>> objects = transaction.list_objects(kind);
      if (!objects.ok()) return objects.status();
      result = *objects;
      return absl::OkStatus();
    });
    return result;
  }
  // Changes the file behind the store's back, as a damaged disk or a careless operator might.
  void raw_sql(const std::string& sql) {
    sqlite3* handle = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &handle), SQLITE_OK);
    char* error = nullptr;
    const int code = sqlite3_exec(handle, sql.c_str(), nullptr, nullptr, &error);
    EXPECT_EQ(code, SQLITE_OK) << (error ? error : "");
    sqlite3_free(error);
    sqlite3_close(handle);
  }

  TemporaryDirectory directory_;
  const std::string path_ = directory_.file("controller.db");
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(SqliteStoreTest, DescribesItselfAndIsAtTheNewestSchema) {
  EXPECT_EQ(store_->describe(), "sqlite:" + path_);
  EXPECT_EQ(store_->schema_version(), 1);
}

TEST_F(SqliteStoreTest, ObjectsOfEveryKindRoundTrip) {
  for (ObjectKind kind : kAllKinds) {
    SCOPED_TRACE(kind_name(kind));
    const Object object = make_object(kind, "thing-1");
    commit([&](StoreTransaction& transaction) { return transaction.put_object(object); });
    std::optional<Object> stored = get(kind, "thing-1");
    ASSERT_TRUE(stored.has_value());
    EXPECT_TRUE(MessageDifferencer::Equals(*stored, object)) << stored->DebugString();
  }
  // Same name, different kinds: different objects.
  for (ObjectKind kind : kAllKinds) EXPECT_EQ(list(kind).size(), 1u) << kind_name(kind);
}

TEST_F(SqliteStoreTest, PutReplacesAndDeleteRemoves) {
  commit([&](StoreTransaction& transaction) {
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1", "old"));
  });
  commit([&](StoreTransaction& transaction) {
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1", "new"));
  });
  std::optional<Object> stored = get(tenon::v1::OBJECT_KIND_DEVICE, "edge-1");
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->device().metadata().labels().at("tier"), "new");
  EXPECT_EQ(list(tenon::v1::OBJECT_KIND_DEVICE).size(), 1u);

  commit([&](StoreTransaction& transaction) {
    return transaction.delete_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1");
  });
  EXPECT_FALSE(get(tenon::v1::OBJECT_KIND_DEVICE, "edge-1").has_value());
  absl::Status again = store_->transact([&](StoreTransaction& transaction) {
    return transaction.delete_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1");
  });
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(again.message(), HasSubstr("Device/edge-1"));
}

TEST_F(SqliteStoreTest, ObjectsWithoutKindOrNameAreRefused) {
  absl::Status no_kind = store_->transact(
      [&](StoreTransaction& transaction) { return transaction.put_object(Object()); });
  EXPECT_EQ(no_kind.code(), absl::StatusCode::kInvalidArgument);
  absl::Status no_name = store_->transact([&](StoreTransaction& transaction) {
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, ""));
  });
  EXPECT_EQ(no_name.code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SqliteStoreTest, ListIsOrderedByNameWithinItsKind) {
  commit([&](StoreTransaction& transaction) {
    for (const char* name : {"probe-b", "probe-c", "probe-a", "probe-aa"}) {
      absl::Status status = transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, name));
      if (!status.ok()) return status;
    }
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEVICE, "probe-0"));
  });
  EXPECT_THAT(names(list(tenon::v1::OBJECT_KIND_APP)),
              ElementsAre("probe-a", "probe-aa", "probe-b", "probe-c"));
  EXPECT_THAT(names(list(tenon::v1::OBJECT_KIND_DEVICE)), ElementsAre("probe-0"));
  EXPECT_TRUE(list(tenon::v1::OBJECT_KIND_DEPLOYMENT).empty());
}

TEST_F(SqliteStoreTest, ReadsSeeTheTransactionsOwnWrites) {
  commit([&](StoreTransaction& transaction) -> absl::Status {
    absl::Status put = transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, "fresh"));
    if (!put.ok()) return put;
    absl::StatusOr<std::optional<Object>> object =
        transaction.get_object(tenon::v1::OBJECT_KIND_APP, "fresh");
    EXPECT_TRUE(object.ok() && object->has_value());
    absl::StatusOr<std::vector<Object>> objects =
        transaction.list_objects(tenon::v1::OBJECT_KIND_APP);
    EXPECT_TRUE(objects.ok());
    if (objects.ok()) {
      EXPECT_THAT(names(*objects), ElementsAre("fresh"));
    }
    absl::Status removed = transaction.delete_object(tenon::v1::OBJECT_KIND_APP, "fresh");
    if (!removed.ok()) return removed;
    object = transaction.get_object(tenon::v1::OBJECT_KIND_APP, "fresh");
    EXPECT_TRUE(object.ok() && !object->has_value());
    return absl::OkStatus();
  });
}

TEST_F(SqliteStoreTest, BootstrapTokensRoundTripWithTheirLabels) {
  BootstrapTokenRecord token;
  token.token_hash = std::string(64, 'a');
  token.device_name = "edge-7";
  token.uses_left = 3;
  token.expire_unix_seconds = 1'900'000'000;
  token.labels = {{"site", "lab"}, {"tier", "edge"}};
  commit([&](StoreTransaction& transaction) { return transaction.put_bootstrap_token(token); });

  std::optional<BootstrapTokenRecord> stored;
  auto read = [&] {
    commit([&](StoreTransaction& transaction) {
      absl::StatusOr<std::optional<BootstrapTokenRecord>> found =
          transaction.get_bootstrap_token(token.token_hash);
      if (!found.ok()) return found.status();
      stored = *found;
      return absl::OkStatus();
    });
  };
  read();
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->token_hash, token.token_hash);
  EXPECT_EQ(stored->device_name, "edge-7");
  EXPECT_EQ(stored->uses_left, 3u);
  EXPECT_EQ(stored->expire_unix_seconds, 1'900'000'000);
  EXPECT_EQ(stored->labels, token.labels);

  // Replacing a token replaces its labels too.
  token.uses_left = 2;
  token.labels = {{"zone", "b"}};
  commit([&](StoreTransaction& transaction) { return transaction.put_bootstrap_token(token); });
  read();
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->uses_left, 2u);
  EXPECT_EQ(stored->labels, token.labels);

  commit([&](StoreTransaction& transaction) {
    return transaction.delete_bootstrap_token(token.token_hash);
  });
  read();
  EXPECT_FALSE(stored.has_value());
  absl::Status again = store_->transact([&](StoreTransaction& transaction) {
    return transaction.delete_bootstrap_token(token.token_hash);
  });
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
}

TEST_F(SqliteStoreTest, DeviceCredentialsRoundTrip) {
  DeviceCredentialRecord credential{"edge-1", std::string(64, 'b'), 1'700'000'000};
  commit(
      [&](StoreTransaction& transaction) { return transaction.put_device_credential(credential); });
  credential.credential_hash = std::string(64, 'c');  // re-enrolment replaces it
  commit(
      [&](StoreTransaction& transaction) { return transaction.put_device_credential(credential); });
  std::optional<DeviceCredentialRecord> stored;
  commit([&](StoreTransaction& transaction) {
    absl::StatusOr<std::optional<DeviceCredentialRecord>> found =
        transaction.get_device_credential("edge-1");
    if (!found.ok()) return found.status();
    stored = *found;
    return absl::OkStatus();
  });
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->device_name, "edge-1");
  EXPECT_EQ(stored->credential_hash, std::string(64, 'c'));
  EXPECT_EQ(stored->issue_unix_seconds, 1'700'000'000);

  commit([&](StoreTransaction& transaction) {
    return transaction.delete_device_credential("edge-1");
  });
  commit([&](StoreTransaction& transaction) {
    absl::StatusOr<std::optional<DeviceCredentialRecord>> found =
        transaction.get_device_credential("edge-1");
    if (!found.ok()) return found.status();
    EXPECT_FALSE(found->has_value());
    return absl::OkStatus();
  });
  absl::Status again = store_->transact([&](StoreTransaction& transaction) {
    return transaction.delete_device_credential("edge-1");
  });
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
}

TEST_F(SqliteStoreTest, DesiredStatesRoundTripAndOnlyMoveForward) {
  DesiredState state;
  state.set_version(5);
  tenon::v1::DesiredInstance* instance = state.add_instances();
  instance->set_name("probe-0123456789ab");
  instance->set_image_digest("sha256:" + std::string(64, 'e'));
  commit([&](StoreTransaction& transaction) {
    return transaction.put_desired_state("edge-1", state);
  });
  auto stored = [&] {
    std::optional<DesiredState> result;
    commit([&](StoreTransaction& transaction) {
      absl::StatusOr<std::optional<DesiredState>> found = transaction.get_desired_state("edge-1");
      if (!found.ok()) return found.status();
      result = *found;
      return absl::OkStatus();
    });
    return result;
  };
  ASSERT_TRUE(stored().has_value());
  EXPECT_TRUE(MessageDifferencer::Equals(*stored(), state));

  for (uint64_t stale : {5u, 4u}) {
    DesiredState older = state;
    older.set_version(stale);
    absl::Status refused = store_->transact([&](StoreTransaction& transaction) {
      return transaction.put_desired_state("edge-1", older);
    });
    EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << stale;
    EXPECT_THAT(refused.message(), HasSubstr("edge-1"));
  }
  state.set_version(6);
  state.clear_instances();
  commit([&](StoreTransaction& transaction) {
    return transaction.put_desired_state("edge-1", state);
  });
  EXPECT_EQ(stored()->version(), 6u);
  EXPECT_EQ(stored()->instances_size(), 0);

  commit([&](StoreTransaction& transaction) { return transaction.delete_desired_state("edge-1"); });
  EXPECT_FALSE(stored().has_value());
  absl::Status again = store_->transact(
      [&](StoreTransaction& transaction) { return transaction.delete_desired_state("edge-1"); });
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
}

TEST_F(SqliteStoreTest, CountersCountFromOneAndSurviveReopen) {
  std::vector<uint64_t> values;
  auto next = [&](const std::string& counter) {
    commit([&](StoreTransaction& transaction) {
      absl::StatusOr<uint64_t> value = transaction.next_counter(counter);
      if (!value.ok()) return value.status();
      values.push_back(*value);
      return absl::OkStatus();
    });
  };
  next("desired-state-version");
  next("desired-state-version");
  next("other");
  next("desired-state-version");
  reopen();
  next("desired-state-version");
  next("other");
  EXPECT_THAT(values, ElementsAre(1, 2, 1, 3, 4, 2));
}

TEST_F(SqliteStoreTest, RollbackLeavesNothingBehind) {
  absl::Status status = store_->transact([&](StoreTransaction& transaction) -> absl::Status {
    EXPECT_TRUE(transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1")).ok());
    BootstrapTokenRecord token;
    token.token_hash = std::string(64, 'a');
    token.labels = {{"site", "lab"}};
    EXPECT_TRUE(transaction.put_bootstrap_token(token).ok());
    EXPECT_TRUE(transaction.put_device_credential({"edge-1", std::string(64, 'b'), 1}).ok());
    DesiredState state;
    state.set_version(1);
    EXPECT_TRUE(transaction.put_desired_state("edge-1", state).ok());
    EXPECT_EQ(*transaction.next_counter("versions"), 1u);
    return absl::InvalidArgumentError("the request was refused after all");
  });
  EXPECT_EQ(status, absl::InvalidArgumentError("the request was refused after all"));

  reopen();  // and from the file, not only this connection
  commit([&](StoreTransaction& transaction) -> absl::Status {
    EXPECT_FALSE(transaction.get_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1")->has_value());
    EXPECT_FALSE(transaction.get_bootstrap_token(std::string(64, 'a'))->has_value());
    EXPECT_FALSE(transaction.get_device_credential("edge-1")->has_value());
    EXPECT_FALSE(transaction.get_desired_state("edge-1")->has_value());
    EXPECT_EQ(*transaction.next_counter("versions"), 1u);
    return absl::OkStatus();
  });
  sqlite3* handle = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &handle), SQLITE_OK);
  sqlite3_stmt* count = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(handle, "SELECT count(*) FROM bootstrap_token_labels", -1, &count,
                               nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(count), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(count, 0), 0);
  sqlite3_finalize(count);
  sqlite3_close(handle);
}

TEST_F(SqliteStoreTest, CommittedWritesSurviveReopen) {
  commit([&](StoreTransaction& transaction) {
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEPLOYMENT, "rollout"));
  });
  reopen();
  EXPECT_TRUE(get(tenon::v1::OBJECT_KIND_DEPLOYMENT, "rollout").has_value());
}

TEST_F(SqliteStoreTest, CorruptObjectBodyIsAnErrorNamingTheObject) {
  commit([&](StoreTransaction& transaction) -> absl::Status {
    absl::Status status =
        transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1"));
    if (!status.ok()) return status;
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-2"));
  });
  store_.reset();
  raw_sql("UPDATE objects SET body = x'ffffffff0a' WHERE name = 'edge-1';");
  reopen();
  absl::Status status = store_->transact([&](StoreTransaction& transaction) {
    return transaction.get_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1").status();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("Device/edge-1"));
  EXPECT_THAT(status.message(), HasSubstr(path_));
  status = store_->transact([&](StoreTransaction& transaction) {
    return transaction.list_objects(tenon::v1::OBJECT_KIND_DEVICE).status();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("Device/edge-1"));
  // The intact neighbour still reads.
  EXPECT_TRUE(get(tenon::v1::OBJECT_KIND_DEVICE, "edge-2").has_value());
}

TEST_F(SqliteStoreTest, BodyStoredUnderAnotherKeyIsAnError) {
  commit([&](StoreTransaction& transaction) {
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, "probe"));
  });
  store_.reset();
  raw_sql("UPDATE objects SET kind = 1 WHERE name = 'probe';");  // now filed as a Device
  reopen();
  absl::Status status = store_->transact([&](StoreTransaction& transaction) {
    return transaction.get_object(tenon::v1::OBJECT_KIND_DEVICE, "probe").status();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("Device/probe"));
  EXPECT_THAT(status.message(), HasSubstr("App/probe"));
}

TEST_F(SqliteStoreTest, CorruptDesiredStateIsAnErrorNamingTheDevice) {
  DesiredState state;
  state.set_version(2);
  commit([&](StoreTransaction& transaction) {
    return transaction.put_desired_state("edge-9", state);
  });
  store_.reset();
  raw_sql("UPDATE desired_states SET body = x'ff' WHERE device = 'edge-9';");
  reopen();
  absl::Status status = store_->transact([&](StoreTransaction& transaction) {
    return transaction.get_desired_state("edge-9").status();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("edge-9"));
}

TEST_F(SqliteStoreTest, DatabaseFromANewerReleaseIsRefused) {
  store_.reset();
  raw_sql("PRAGMA user_version = 99;");
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::open(path_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("99"));
  EXPECT_THAT(store.status().message(), HasSubstr(path_));
}

TEST_F(SqliteStoreTest, TransactFromInsideABodyIsRefusedNotDeadlocked) {
  absl::Status inner;
  commit([&](StoreTransaction&) {
    inner = store_->transact([](StoreTransaction&) { return absl::OkStatus(); });
    return absl::OkStatus();
  });
  EXPECT_EQ(inner.code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SqliteStoreTest, ConcurrentTransactionsAreSerialised) {
  constexpr int kThreads = 4;
  constexpr int kIncrementsPerThread = 25;
  std::vector<std::thread> threads;
  std::vector<absl::Status> failures(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIncrementsPerThread; ++i) {
        absl::Status status = store_->transact([&](StoreTransaction& transaction) {
          return transaction.next_counter("shared").status();
        });
        if (!status.ok()) failures[t] = status;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const absl::Status& failure : failures) EXPECT_TRUE(failure.ok()) << failure;
  commit([&](StoreTransaction& transaction) -> absl::Status {
    EXPECT_EQ(*transaction.next_counter("shared"), uint64_t{kThreads * kIncrementsPerThread + 1});
    return absl::OkStatus();
  });
}

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
    return absl::OkStatus();
  });
  EXPECT_TRUE(status.ok()) << status;
}

}  // namespace
}  // namespace tenon::controller

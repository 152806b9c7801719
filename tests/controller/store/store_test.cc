// Every Store backend against the same expectations: SqliteStore on a real SQLite file and
// PostgresStore on a private PostgreSQL server (a database per test). Every record type,
// transactions, resource versions and the change listener, corruption, newer schemas.
#include <google/protobuf/util/message_differencer.h>
#include <sqlite3.h>

#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "object_meta.h"
#include "postgres_store.h"
#include "private_postgres.h"
#include "sqlite_store.h"
#include "store_test_objects.h"
#include "temporary_directory.h"

namespace tenon::controller {
namespace {

using google::protobuf::util::MessageDifferencer;
using store_test::kAllKinds;
using store_test::make_object;
using store_test::names;
using store_test::stamped;
using tenon::v1::DesiredState;
using tenon::v1::Object;
using tenon::v1::ObjectKind;
using test_support::TemporaryDirectory;
using test_support::TemporaryPostgresDatabase;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

enum class Backend { kSqlite, kPostgres };

std::string backend_name(Backend backend) {
  return backend == Backend::kSqlite ? "sqlite" : "postgres";
}
// gtest prints parameters through PrintTo, found by that name.
void PrintTo(Backend backend, std::ostream* out) {  // NOLINT(readability-identifier-naming)
  *out << backend_name(backend);
}

class StoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (postgres()) TENON_SETUP_POSTGRES_DATABASE(database_);
    reopen();
  }

  bool postgres() const { return GetParam() == Backend::kPostgres; }

  absl::StatusOr<std::unique_ptr<Store>> open() {
    if (postgres()) {
      absl::StatusOr<std::unique_ptr<PostgresStore>> store = PostgresStore::open(database_->url());
      if (!store.ok()) return store.status();
      return std::unique_ptr<Store>(*std::move(store));
    }
    absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::open(path_);
    if (!store.ok()) return store.status();
    return std::unique_ptr<Store>(*std::move(store));
  }
  void reopen() {
    store_.reset();
    absl::StatusOr<std::unique_ptr<Store>> store = open();
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  int schema_version() const {
    if (postgres()) return dynamic_cast<const PostgresStore&>(*store_).schema_version();
    return dynamic_cast<const SqliteStore&>(*store_).schema_version();
  }

  void commit(const std::function<absl::Status(StoreTransaction&)>& body) {
    store_test::commit(*store_, body);
  }
  std::optional<Object> get(ObjectKind kind, const std::string& name) {
    return store_test::get(*store_, kind, name);
  }
  std::vector<Object> list(ObjectKind kind) { return store_test::list(*store_, kind); }
  uint64_t read_counter(const std::string& counter) {
    return store_test::read_counter(*store_, counter);
  }

  // Runs SQL behind the store's back, as a damaged disk or a careless operator might; the two
  // databases spell some things differently. The first column of the first row, if any.
  std::string raw_sql(const std::string& sqlite_sql, const std::string& postgres_sql) {
    if (postgres()) {
      absl::StatusOr<std::string> value = database_->execute(postgres_sql);
      EXPECT_TRUE(value.ok()) << value.status();
      return value.ok() ? *value : std::string();
    }
    sqlite3* handle = nullptr;
    EXPECT_EQ(sqlite3_open(path_.c_str(), &handle), SQLITE_OK);
    std::string value;
    sqlite3_stmt* statement = nullptr;
    const char* rest = sqlite_sql.c_str();
    // Statement by statement: the value is the first row of the last one.
    while (*rest != '\0') {
      EXPECT_EQ(sqlite3_prepare_v2(handle, rest, -1, &statement, &rest), SQLITE_OK)
          << sqlite3_errmsg(handle);
      if (statement == nullptr) break;
      const int code = sqlite3_step(statement);
      EXPECT_TRUE(code == SQLITE_ROW || code == SQLITE_DONE) << sqlite3_errmsg(handle);
      if (code == SQLITE_ROW) {
        const unsigned char* text = sqlite3_column_text(statement, 0);
        value = text == nullptr ? "" : reinterpret_cast<const char*>(text);
      }
      sqlite3_finalize(statement);
    }
    sqlite3_close(handle);
    return value;
  }
  std::string raw_sql(const std::string& sql) { return raw_sql(sql, sql); }

  TemporaryDirectory directory_;
  const std::string path_ = directory_.file("controller.db");
  std::optional<TemporaryPostgresDatabase> database_;  // outlives store_, which connects to it
  std::unique_ptr<Store> store_;
};

TEST_P(StoreTest, DescribesItselfAndIsAtTheNewestSchema) {
  if (postgres()) {
    EXPECT_EQ(store_->describe(), "postgres://tenon@" + database_->server().socket_directory() +
                                      ":5432/" + database_->name());
  } else {
    EXPECT_EQ(store_->describe(), "sqlite:" + path_);
  }
  EXPECT_EQ(schema_version(), 1);
  reopen();  // and opening it again applies nothing
  EXPECT_EQ(schema_version(), 1);
}

TEST_P(StoreTest, ObjectsOfEveryKindRoundTrip) {
  uint64_t version = 0;
  for (ObjectKind kind : kAllKinds) {
    SCOPED_TRACE(kind_name(kind));
    const Object object = make_object(kind, "thing-1");
    commit([&](StoreTransaction& transaction) { return transaction.put_object(object); });
    ++version;  // one per transaction that writes objects
    std::optional<Object> stored = get(kind, "thing-1");
    ASSERT_TRUE(stored.has_value());
    EXPECT_TRUE(MessageDifferencer::Equals(*stored, stamped(object, version)))
        << stored->DebugString();
  }
  // Same name, different kinds: different objects.
  for (ObjectKind kind : kAllKinds) EXPECT_EQ(list(kind).size(), 1u) << kind_name(kind);
}

TEST_P(StoreTest, PutStampsTheTransactionsResourceVersionOverTheCallers) {
  Object object = make_object(tenon::v1::OBJECT_KIND_APP, "probe");
  mutable_object_meta(&object)->set_resource_version(99);
  commit([&](StoreTransaction& transaction) { return transaction.put_object(object); });
  std::optional<Object> stored = get(tenon::v1::OBJECT_KIND_APP, "probe");
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(object_meta(*stored).resource_version(), 1u);
  // Everything else as given.
  EXPECT_TRUE(MessageDifferencer::Equals(*stored, stamped(object, 1)));
}

TEST_P(StoreTest, PutReplacesAndDeleteRemoves) {
  commit([&](StoreTransaction& transaction) {
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1", "old"));
  });
  commit([&](StoreTransaction& transaction) {
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1", "new"));
  });
  std::optional<Object> stored = get(tenon::v1::OBJECT_KIND_DEVICE, "edge-1");
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->device().metadata().labels().at("tier"), "new");
  EXPECT_EQ(stored->device().metadata().resource_version(), 2u);
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

TEST_P(StoreTest, ObjectsWithoutKindOrNameAreRefused) {
  absl::Status no_kind = store_->transact(
      [&](StoreTransaction& transaction) { return transaction.put_object(Object()); });
  EXPECT_EQ(no_kind.code(), absl::StatusCode::kInvalidArgument);
  absl::Status no_name = store_->transact([&](StoreTransaction& transaction) {
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, ""));
  });
  EXPECT_EQ(no_name.code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(StoreTest, ListIsOrderedByNameWithinItsKind) {
  commit([&](StoreTransaction& transaction) {
    for (const char* name : {"probe-b", "probe-c", "probe-a", "probe-aa", "probe-B"}) {
      absl::Status status = transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, name));
      if (!status.ok()) return status;
    }
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEVICE, "probe-0"));
  });
  // By bytes, as SQLite compares: capitals first.
  EXPECT_THAT(names(list(tenon::v1::OBJECT_KIND_APP)),
              ElementsAre("probe-B", "probe-a", "probe-aa", "probe-b", "probe-c"));
  EXPECT_THAT(names(list(tenon::v1::OBJECT_KIND_DEVICE)), ElementsAre("probe-0"));
  EXPECT_TRUE(list(tenon::v1::OBJECT_KIND_DEPLOYMENT).empty());
}

TEST_P(StoreTest, ReadsSeeTheTransactionsOwnWrites) {
  commit([&](StoreTransaction& transaction) -> absl::Status {
    absl::Status put = transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, "fresh"));
    if (!put.ok()) return put;
    absl::StatusOr<std::optional<Object>> object =
        transaction.get_object(tenon::v1::OBJECT_KIND_APP, "fresh");
    EXPECT_TRUE(object.ok() && object->has_value());
    if (object.ok() && object->has_value()) {
      EXPECT_EQ(object_meta(**object).resource_version(), 1u);
    }
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

TEST_P(StoreTest, BootstrapTokensRoundTripWithTheirLabels) {
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
  EXPECT_EQ(raw_sql("SELECT count(*) FROM bootstrap_token_labels"), "0");
  absl::Status again = store_->transact([&](StoreTransaction& transaction) {
    return transaction.delete_bootstrap_token(token.token_hash);
  });
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
}

TEST_P(StoreTest, DeviceCredentialsRoundTrip) {
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

TEST_P(StoreTest, DesiredStatesRoundTripAndOnlyMoveForward) {
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

TEST_P(StoreTest, CountersCountFromOneAndSurviveReopen) {
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

TEST_P(StoreTest, ReadCounterReadsWithoutTaking) {
  EXPECT_EQ(read_counter("versions"), 0u);  // never taken
  commit([&](StoreTransaction& transaction) -> absl::Status {
    EXPECT_EQ(*transaction.next_counter("versions"), 1u);
    EXPECT_EQ(*transaction.read_counter("versions"), 1u);  // its own write
    EXPECT_EQ(*transaction.read_counter("versions"), 1u);  // and only reads
    EXPECT_EQ(*transaction.next_counter("versions"), 2u);
    return absl::OkStatus();
  });
  EXPECT_EQ(read_counter("versions"), 2u);
  EXPECT_EQ(read_counter("versions"), 2u);
  EXPECT_EQ(read_counter("other"), 0u);
  absl::Status refused = store_->transact([&](StoreTransaction& transaction) -> absl::Status {
    EXPECT_EQ(*transaction.next_counter("versions"), 3u);
    return absl::AbortedError("changed its mind");
  });
  EXPECT_EQ(refused.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(read_counter("versions"), 2u);
  reopen();
  EXPECT_EQ(read_counter("versions"), 2u);
}

TEST_P(StoreTest, RollbackLeavesNothingBehind) {
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

  reopen();  // and from the database, not only this connection
  commit([&](StoreTransaction& transaction) -> absl::Status {
    EXPECT_FALSE(transaction.get_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1")->has_value());
    EXPECT_FALSE(transaction.get_bootstrap_token(std::string(64, 'a'))->has_value());
    EXPECT_FALSE(transaction.get_device_credential("edge-1")->has_value());
    EXPECT_FALSE(transaction.get_desired_state("edge-1")->has_value());
    EXPECT_EQ(*transaction.read_counter(kResourceVersionCounter), 0u);
    EXPECT_EQ(*transaction.next_counter("versions"), 1u);
    return absl::OkStatus();
  });
  EXPECT_EQ(raw_sql("SELECT count(*) FROM bootstrap_token_labels"), "0");
}

TEST_P(StoreTest, CommittedWritesSurviveReopen) {
  commit([&](StoreTransaction& transaction) {
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEPLOYMENT, "rollout"));
  });
  reopen();
  EXPECT_TRUE(get(tenon::v1::OBJECT_KIND_DEPLOYMENT, "rollout").has_value());
}

TEST_P(StoreTest, CorruptObjectBodyIsAnErrorNamingTheObject) {
  commit([&](StoreTransaction& transaction) -> absl::Status {
    absl::Status status =
        transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1"));
    if (!status.ok()) return status;
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-2"));
  });
  store_.reset();
  raw_sql("UPDATE objects SET body = x'ffffffff0a' WHERE name = 'edge-1';",
          "UPDATE objects SET body = decode('ffffffff0a', 'hex') WHERE name = 'edge-1';");
  reopen();
  absl::Status status = store_->transact([&](StoreTransaction& transaction) {
    return transaction.get_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1").status();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("Device/edge-1"));
  EXPECT_THAT(status.message(), HasSubstr(store_->describe()));
  status = store_->transact([&](StoreTransaction& transaction) {
    return transaction.list_objects(tenon::v1::OBJECT_KIND_DEVICE).status();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("Device/edge-1"));
  // The intact neighbour still reads.
  EXPECT_TRUE(get(tenon::v1::OBJECT_KIND_DEVICE, "edge-2").has_value());
}

TEST_P(StoreTest, BodyStoredUnderAnotherKeyIsAnError) {
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

TEST_P(StoreTest, CorruptDesiredStateIsAnErrorNamingTheDevice) {
  DesiredState state;
  state.set_version(2);
  commit([&](StoreTransaction& transaction) {
    return transaction.put_desired_state("edge-9", state);
  });
  store_.reset();
  raw_sql("UPDATE desired_states SET body = x'ff' WHERE device = 'edge-9';",
          "UPDATE desired_states SET body = decode('ff', 'hex') WHERE device = 'edge-9';");
  reopen();
  absl::Status status = store_->transact([&](StoreTransaction& transaction) {
    return transaction.get_desired_state("edge-9").status();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("edge-9"));
}

TEST_P(StoreTest, CorruptCounterIsAnErrorNamingTheCounter) {
  commit(
      [&](StoreTransaction& transaction) { return transaction.next_counter("versions").status(); });
  raw_sql("UPDATE counters SET value = -4 WHERE name = 'versions';");
  absl::Status status = store_->transact(
      [&](StoreTransaction& transaction) { return transaction.read_counter("versions").status(); });
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("versions"));
}

TEST_P(StoreTest, DatabaseFromANewerReleaseIsRefused) {
  // tenon-sqlite names the file, PostgresStore its description.
  const std::string described = postgres() ? store_->describe() : path_;
  store_.reset();
  raw_sql("PRAGMA user_version = 99;", "UPDATE schema_version SET version = 99;");
  absl::StatusOr<std::unique_ptr<Store>> store = open();
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("99"));
  EXPECT_THAT(store.status().message(), HasSubstr(described));
}

TEST_P(StoreTest, TransactFromInsideABodyIsRefusedNotDeadlocked) {
  absl::Status inner;
  commit([&](StoreTransaction&) {
    inner = store_->transact([](StoreTransaction&) { return absl::OkStatus(); });
    return absl::OkStatus();
  });
  EXPECT_EQ(inner.code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(StoreTest, ConcurrentTransactionsAreSerialised) {
  constexpr int kThreads = 4;
  constexpr int kIncrementsPerThread = 25;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
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

// ---- Resource versions and the change listener -----------------------------------------------

TEST_P(StoreTest, ResourceVersionStepsOncePerTransactionThatWritesObjects) {
  const Object app = make_object(tenon::v1::OBJECT_KIND_APP, "probe");
  const Object device = make_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1");
  // Two puts, one transaction: one version for both.
  commit([&](StoreTransaction& transaction) -> absl::Status {
    if (absl::Status put = transaction.put_object(app); !put.ok()) return put;
    return transaction.put_object(device);
  });
  EXPECT_EQ(read_counter(kResourceVersionCounter), 1u);
  EXPECT_EQ(object_meta(*get(tenon::v1::OBJECT_KIND_APP, "probe")).resource_version(), 1u);
  EXPECT_EQ(object_meta(*get(tenon::v1::OBJECT_KIND_DEVICE, "edge-1")).resource_version(), 1u);

  // Transactions that write no objects take none: reads, tokens, credentials, desired states,
  // other counters.
  commit([&](StoreTransaction& transaction) -> absl::Status {
    if (absl::Status read = transaction.list_objects(tenon::v1::OBJECT_KIND_APP).status();
        !read.ok()) {
      return read;
    }
    BootstrapTokenRecord token;
    token.token_hash = std::string(64, 'a');
    if (absl::Status put = transaction.put_bootstrap_token(token); !put.ok()) return put;
    if (absl::Status put = transaction.put_device_credential({"edge-1", "c", 1}); !put.ok()) {
      return put;
    }
    DesiredState state;
    state.set_version(1);
    if (absl::Status put = transaction.put_desired_state("edge-1", state); !put.ok()) return put;
    return transaction.next_counter("desired-state-version").status();
  });
  EXPECT_EQ(read_counter(kResourceVersionCounter), 1u);

  // A put and a delete: the next version, stamped on the put object only.
  commit([&](StoreTransaction& transaction) -> absl::Status {
    if (absl::Status put = transaction.put_object(app); !put.ok()) return put;
    return transaction.delete_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1");
  });
  EXPECT_EQ(read_counter(kResourceVersionCounter), 2u);
  EXPECT_EQ(object_meta(*get(tenon::v1::OBJECT_KIND_APP, "probe")).resource_version(), 2u);

  // A delete alone writes objects too.
  commit([&](StoreTransaction& transaction) {
    return transaction.delete_object(tenon::v1::OBJECT_KIND_APP, "probe");
  });
  EXPECT_EQ(read_counter(kResourceVersionCounter), 3u);

  // A rolled-back transaction leaves the version where it was.
  absl::Status refused = store_->transact([&](StoreTransaction& transaction) -> absl::Status {
    if (absl::Status put = transaction.put_object(app); !put.ok()) return put;
    return absl::FailedPreconditionError("not after all");
  });
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(read_counter(kResourceVersionCounter), 3u);

  // Stored with the objects: it never goes back across a reopen.
  reopen();
  commit([&](StoreTransaction& transaction) { return transaction.put_object(app); });
  EXPECT_EQ(object_meta(*get(tenon::v1::OBJECT_KIND_APP, "probe")).resource_version(), 4u);
}

TEST_P(StoreTest, ChangeListenerGetsEachCommitsChangesInOrderWithItsVersion) {
  std::vector<CommittedChanges> heard;
  store_->set_change_listener([&](const CommittedChanges& changes) { heard.push_back(changes); });
  const Object device = make_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1");
  const Object app = make_object(tenon::v1::OBJECT_KIND_APP, "probe");
  commit([&](StoreTransaction& transaction) -> absl::Status {
    if (absl::Status put = transaction.put_object(device); !put.ok()) return put;
    if (absl::Status put = transaction.put_object(app); !put.ok()) return put;
    return transaction.delete_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1");
  });
  // Heard before transact returned.
  ASSERT_EQ(heard.size(), 1u);
  EXPECT_EQ(heard[0].resource_version, 1u);
  ASSERT_EQ(heard[0].changes.size(), 3u);
  EXPECT_EQ(heard[0].changes[0].kind, tenon::v1::OBJECT_KIND_DEVICE);
  EXPECT_EQ(heard[0].changes[0].name, "edge-1");
  ASSERT_TRUE(heard[0].changes[0].object.has_value());
  EXPECT_TRUE(MessageDifferencer::Equals(*heard[0].changes[0].object, stamped(device, 1)));
  EXPECT_EQ(heard[0].changes[1].kind, tenon::v1::OBJECT_KIND_APP);
  EXPECT_EQ(heard[0].changes[1].name, "probe");
  ASSERT_TRUE(heard[0].changes[1].object.has_value());
  EXPECT_TRUE(MessageDifferencer::Equals(*heard[0].changes[1].object, stamped(app, 1)));
  EXPECT_EQ(heard[0].changes[2].kind, tenon::v1::OBJECT_KIND_DEVICE);
  EXPECT_EQ(heard[0].changes[2].name, "edge-1");
  EXPECT_FALSE(heard[0].changes[2].object.has_value());

  commit([&](StoreTransaction& transaction) {
    return transaction.delete_object(tenon::v1::OBJECT_KIND_APP, "probe");
  });
  ASSERT_EQ(heard.size(), 2u);
  EXPECT_EQ(heard[1].resource_version, 2u);
  ASSERT_EQ(heard[1].changes.size(), 1u);
  EXPECT_EQ(heard[1].changes[0].kind, tenon::v1::OBJECT_KIND_APP);
  EXPECT_EQ(heard[1].changes[0].name, "probe");
  EXPECT_FALSE(heard[1].changes[0].object.has_value());

  // What the listener was given is what the store holds.
  commit([&](StoreTransaction& transaction) { return transaction.put_object(app); });
  ASSERT_EQ(heard.size(), 3u);
  ASSERT_TRUE(heard[2].changes.at(0).object.has_value());
  std::optional<Object> stored = get(tenon::v1::OBJECT_KIND_APP, "probe");
  ASSERT_TRUE(stored.has_value());
  EXPECT_TRUE(MessageDifferencer::Equals(*heard[2].changes[0].object, *stored));
}

TEST_P(StoreTest, ChangeListenerHearsNothingOfRollbacksOrTransactionsWithoutObjects) {
  int heard = 0;
  store_->set_change_listener([&](const CommittedChanges&) { ++heard; });
  absl::Status refused = store_->transact([&](StoreTransaction& transaction) -> absl::Status {
    if (absl::Status put = transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, "a"));
        !put.ok()) {
      return put;
    }
    return absl::InvalidArgumentError("refused");
  });
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  commit([&](StoreTransaction& transaction) { return transaction.next_counter("other").status(); });
  commit([&](StoreTransaction& transaction) {
    return transaction.list_objects(tenon::v1::OBJECT_KIND_APP).status();
  });
  EXPECT_EQ(heard, 0);
  // The rolled-back put took no version: the next commit gets the first.
  std::vector<uint64_t> versions;
  store_->set_change_listener(
      [&](const CommittedChanges& changes) { versions.push_back(changes.resource_version); });
  commit([&](StoreTransaction& transaction) {
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, "a"));
  });
  EXPECT_THAT(versions, ElementsAre(1));
}

TEST_P(StoreTest, ChangeListenerHearsConcurrentCommitsInCommitOrder) {
  constexpr int kThreads = 4;
  constexpr int kCommitsPerThread = 10;
  std::vector<uint64_t> versions;  // the listener runs while no other transaction can commit
  store_->set_change_listener(
      [&](const CommittedChanges& changes) { versions.push_back(changes.resource_version); });
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  std::vector<absl::Status> failures(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCommitsPerThread; ++i) {
        absl::Status status = store_->transact([&](StoreTransaction& transaction) {
          return transaction.put_object(
              make_object(tenon::v1::OBJECT_KIND_INSTANCE, absl::StrCat("thread-", t, "-", i)));
        });
        if (!status.ok()) failures[t] = status;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const absl::Status& failure : failures) EXPECT_TRUE(failure.ok()) << failure;
  std::vector<uint64_t> expected;
  for (uint64_t version = 1; version <= uint64_t{kThreads} * kCommitsPerThread; ++version) {
    expected.push_back(version);
  }
  EXPECT_EQ(versions, expected);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         [](const ::testing::TestParamInfo<Backend>& info) {
                           return backend_name(info.param);
                         });

}  // namespace
}  // namespace tenon::controller

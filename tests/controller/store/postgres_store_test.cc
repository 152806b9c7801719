// PostgresStore's own behaviour beyond what store_test.cc checks of every backend: URLs and
// passwords, the schema_version table, collation and encoding, a lost connection, and
// serialization failures caused by another controller on the same database.
#include "postgres_store.h"

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "object_meta.h"
#include "private_postgres.h"
#include "store_test_objects.h"

namespace tenon::controller {
namespace {

using store_test::commit;
using store_test::get;
using store_test::list;
using store_test::make_object;
using store_test::names;
using test_support::TemporaryPostgresDatabase;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPassword[] = "hunter2-secret";

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TENON_SETUP_POSTGRES_DATABASE(database_);
    store_ = open(database_->url());
    ASSERT_NE(store_, nullptr);
  }

  std::unique_ptr<PostgresStore> open(const std::string& url) {
    absl::StatusOr<std::unique_ptr<PostgresStore>> store = PostgresStore::open(url);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
  // The test database as an operator would write its URL: user, password and all. The private
  // server trusts local connections, so the password is accepted and ignored.
  std::string url_with_password(const std::string& scheme, const std::string& database) const {
    return scheme + "://" + test_support::PrivatePostgres::kSuperuser + ":" + kPassword + "@/" +
           database + "?host=" + socket_directory();
  }
  const std::string& socket_directory() const { return database_->server().socket_directory(); }
  // Ends the store's server session from another connection, as a restarted server would.
  void terminate_store_sessions(const std::string& database) {
    absl::StatusOr<std::string> terminated = database_->server().execute(
        "postgres",
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE datname = '" +
            database + "' AND application_name = 'tenon-controller'");
    ASSERT_TRUE(terminated.ok()) << terminated.status();
    ASSERT_EQ(*terminated, "t");
  }

  std::optional<TemporaryPostgresDatabase> database_;  // outlives store_, which connects to it
  std::unique_ptr<PostgresStore> store_;
};

TEST_F(PostgresStoreTest, AcceptsBothSchemesAndNeverShowsThePassword) {
  for (const std::string scheme : {"postgres", "postgresql"}) {
    SCOPED_TRACE(scheme);
    std::unique_ptr<PostgresStore> store = open(url_with_password(scheme, database_->name()));
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->describe(),
              "postgres://tenon@" + socket_directory() + ":5432/" + database_->name());
    EXPECT_THAT(store->describe(), Not(HasSubstr(kPassword)));
  }
}

TEST_F(PostgresStoreTest, UnreachableDatabaseIsUnavailableAndKeepsThePasswordOut) {
  absl::StatusOr<std::unique_ptr<PostgresStore>> store =
      PostgresStore::open(url_with_password("postgresql", "no_such_database"));
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(store.status().message(), HasSubstr("no_such_database"));
  EXPECT_THAT(store.status().message(), Not(HasSubstr(kPassword)));

  store = PostgresStore::open(std::string("postgresql://tenon:") + kPassword +
                              "@/postgres?host=/nonexistent-socket-directory");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(store.status().message(), HasSubstr("/nonexistent-socket-directory"));
  EXPECT_THAT(store.status().message(), Not(HasSubstr(kPassword)));
}

TEST_F(PostgresStoreTest, OnlyPostgresUrlsAreAccepted) {
  for (const std::string& refused :
       {std::string("host=/tmp dbname=controller"), std::string("mysql://tenon@db/controller"),
        std::string(""), std::string("postgresql://tenon:") + kPassword + "@[::1/controller"}) {
    SCOPED_TRACE(refused);
    absl::StatusOr<std::unique_ptr<PostgresStore>> store = PostgresStore::open(refused);
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(store.status().message(), HasSubstr("URL"));
    EXPECT_THAT(store.status().message(), Not(HasSubstr(kPassword)));
  }
}

TEST_F(PostgresStoreTest, SchemaVersionIsRecordedInItsOwnTable) {
  EXPECT_EQ(store_->schema_version(), 1);
  absl::StatusOr<std::string> version = database_->execute("SELECT version FROM schema_version");
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, "1");
  absl::StatusOr<std::string> tables = database_->execute(
      "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables "
      "WHERE table_schema = 'public'");
  ASSERT_TRUE(tables.ok()) << tables.status();
  EXPECT_EQ(*tables,
            "bootstrap_token_labels,bootstrap_tokens,counters,desired_states,device_credentials,"
            "objects,schema_version");
}

TEST_F(PostgresStoreTest, ControllersStartingTogetherMigrateOnce) {
  std::optional<TemporaryPostgresDatabase> fresh;
  TENON_SETUP_POSTGRES_DATABASE(fresh);
  constexpr int kControllers = 4;
  std::vector<absl::StatusOr<std::unique_ptr<PostgresStore>>> stores(kControllers);
  std::vector<std::thread> threads;
  threads.reserve(kControllers);
  for (int i = 0; i < kControllers; ++i) {
    threads.emplace_back([&, i] { stores[i] = PostgresStore::open(fresh->url()); });
  }
  for (std::thread& thread : threads) thread.join();
  for (const auto& store : stores) {
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->schema_version(), 1);
  }
  stores.clear();  // before the database goes
}

TEST_F(PostgresStoreTest, ObjectNamesSortAsBytesWhateverTheDatabasesCollation) {
  // ICU's English collation puts "probe-a" before "probe-B"; SQLite, and so the store, does not.
  std::optional<TemporaryPostgresDatabase> english;
  TENON_SETUP_POSTGRES_DATABASE(english,
                                "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' "
                                "LOCALE 'C' ENCODING 'UTF8'");
  absl::StatusOr<std::string> collation_works = english->execute("SELECT 'probe-a' < 'probe-B'");
  ASSERT_TRUE(collation_works.ok()) << collation_works.status();
  ASSERT_EQ(*collation_works, "t");
  std::unique_ptr<PostgresStore> store = open(english->url());
  ASSERT_NE(store, nullptr);
  commit(*store, [&](StoreTransaction& transaction) -> absl::Status {
    for (const char* name : {"probe-a", "probe-B", "probe-b"}) {
      absl::Status put = transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, name));
      if (!put.ok()) return put;
    }
    return absl::OkStatus();
  });
  EXPECT_THAT(names(list(*store, tenon::v1::OBJECT_KIND_APP)),
              ElementsAre("probe-B", "probe-a", "probe-b"));
  store.reset();  // before the database goes
}

TEST_F(PostgresStoreTest, DatabaseNotInUtf8IsRefused) {
  std::optional<TemporaryPostgresDatabase> latin1;
  TENON_SETUP_POSTGRES_DATABASE(latin1, "TEMPLATE template0 ENCODING 'LATIN1' LOCALE 'C'");
  absl::StatusOr<std::unique_ptr<PostgresStore>> store = PostgresStore::open(latin1->url());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("LATIN1"));
  EXPECT_THAT(store.status().message(), HasSubstr(latin1->name()));
}

TEST_F(PostgresStoreTest, LostConnectionIsUnavailableAndTheNextTransactionReconnects) {
  commit(*store_, [&](StoreTransaction& transaction) {
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1"));
  });

  // Lost between transactions: the next one fails, the one after reconnects.
  terminate_store_sessions(database_->name());
  absl::Status lost = store_->transact([&](StoreTransaction& transaction) {
    return transaction.get_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-1").status();
  });
  EXPECT_EQ(lost.code(), absl::StatusCode::kUnavailable) << lost;
  EXPECT_THAT(lost.message(), HasSubstr(store_->describe()));
  EXPECT_TRUE(get(*store_, tenon::v1::OBJECT_KIND_DEVICE, "edge-1").has_value());

  // Lost in the middle of a transaction: nothing of it is committed.
  lost = store_->transact([&](StoreTransaction& transaction) -> absl::Status {
    absl::Status put = transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-2"));
    if (!put.ok()) return put;
    terminate_store_sessions(database_->name());
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-3"));
  });
  EXPECT_EQ(lost.code(), absl::StatusCode::kUnavailable) << lost;
  EXPECT_THAT(names(list(*store_, tenon::v1::OBJECT_KIND_DEVICE)), ElementsAre("edge-1"));
  // Statements prepared on the lost session are prepared again on the new one.
  commit(*store_, [&](StoreTransaction& transaction) {
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_DEVICE, "edge-2"));
  });
  EXPECT_THAT(names(list(*store_, tenon::v1::OBJECT_KIND_DEVICE)), ElementsAre("edge-1", "edge-2"));
}

TEST_F(PostgresStoreTest, FailedStatementFailsTheTransactionEvenIfTheBodyCarriesOn) {
  // PostgreSQL refuses everything after a failed statement; the store does not pretend otherwise.
  absl::Status status = store_->transact([&](StoreTransaction& transaction) -> absl::Status {
    absl::Status refused = transaction.put_object(
        make_object(tenon::v1::OBJECT_KIND_APP, std::string("nul\0name", 8)));  // no NUL in text
    EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << refused;
    EXPECT_FALSE(transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, "good")).ok());
    return absl::OkStatus();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_FALSE(get(*store_, tenon::v1::OBJECT_KIND_APP, "good").has_value());
}

TEST_F(PostgresStoreTest, TwoStoresOnOneDatabaseShareTheResourceVersion) {
  std::unique_ptr<PostgresStore> other = open(database_->url());
  ASSERT_NE(other, nullptr);
  commit(*store_, [&](StoreTransaction& transaction) {
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, "first"));
  });
  commit(*other, [&](StoreTransaction& transaction) {
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, "second"));
  });
  std::vector<tenon::v1::Object> seen = list(*store_, tenon::v1::OBJECT_KIND_APP);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(object_meta(seen[0]).resource_version(), 1u);
  EXPECT_EQ(object_meta(seen[1]).resource_version(), 2u);
}

TEST_F(PostgresStoreTest, SerializationFailureRunsTheBodyAgain) {
  std::unique_ptr<PostgresStore> other = open(database_->url());
  ASSERT_NE(other, nullptr);
  commit(*store_,
         [](StoreTransaction& transaction) { return transaction.next_counter("shared").status(); });
  std::vector<CommittedChanges> heard;
  store_->set_change_listener([&](const CommittedChanges& changes) { heard.push_back(changes); });
  int attempts = 0;
  uint64_t seen = 0;
  uint64_t taken = 0;
  commit(*store_, [&](StoreTransaction& transaction) -> absl::Status {
    ++attempts;
    absl::StatusOr<uint64_t> read = transaction.read_counter("shared");
    if (!read.ok()) return read.status();
    seen = *read;
    if (attempts == 1) {
      // Another controller takes the counter between this transaction's read and its write.
      absl::Status interloper = other->transact([](StoreTransaction& transaction) {
        return transaction.next_counter("shared").status();
      });
      EXPECT_TRUE(interloper.ok()) << interloper;
    }
    absl::Status put = transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, "probe"));
    if (!put.ok()) return put;
    absl::StatusOr<uint64_t> next = transaction.next_counter("shared");
    if (!next.ok()) return next.status();
    taken = *next;
    return absl::OkStatus();
  });
  EXPECT_EQ(attempts, 2);
  EXPECT_EQ(seen, 2u);  // the second run read what the other controller wrote
  EXPECT_EQ(taken, 3u);
  // Only the committed run is heard of, with the version it took (the first run's went with it).
  ASSERT_EQ(heard.size(), 1u);
  EXPECT_EQ(heard[0].resource_version, 1u);
  ASSERT_EQ(heard[0].changes.size(), 1u);
  EXPECT_EQ(heard[0].changes[0].name, "probe");
}

TEST_F(PostgresStoreTest, SerializationFailuresGiveUpAfterAFewAttempts) {
  std::unique_ptr<PostgresStore> other = open(database_->url());
  ASSERT_NE(other, nullptr);
  commit(*store_,
         [](StoreTransaction& transaction) { return transaction.next_counter("shared").status(); });
  int heard = 0;
  store_->set_change_listener([&](const CommittedChanges&) { ++heard; });
  int attempts = 0;
  absl::Status status = store_->transact([&](StoreTransaction& transaction) -> absl::Status {
    ++attempts;
    absl::StatusOr<uint64_t> read = transaction.read_counter("shared");
    if (!read.ok()) return read.status();
    absl::Status interloper = other->transact(
        [](StoreTransaction& transaction) { return transaction.next_counter("shared").status(); });
    EXPECT_TRUE(interloper.ok()) << interloper;
    absl::Status put = transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, "probe"));
    if (!put.ok()) return put;
    return transaction.next_counter("shared").status();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted) << status;
  EXPECT_THAT(status.message(), HasSubstr("40001"));
  EXPECT_THAT(status.message(), HasSubstr("attempts"));
  EXPECT_GT(attempts, 1);
  EXPECT_LE(attempts, 10);
  EXPECT_EQ(heard, 0);
  EXPECT_FALSE(get(*store_, tenon::v1::OBJECT_KIND_APP, "probe").has_value());
}

}  // namespace
}  // namespace tenon::controller

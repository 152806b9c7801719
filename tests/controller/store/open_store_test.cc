// open_store: every form of the --store flag, and the ones it refuses.
#include "open_store.h"

#include <filesystem>
#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "private_postgres.h"
#include "store_test_objects.h"
#include "temporary_directory.h"

namespace tenon::controller {
namespace {

using store_test::commit;
using store_test::get;
using store_test::make_object;
using test_support::TemporaryDirectory;
using test_support::TemporaryPostgresDatabase;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

TEST(OpenStoreTest, DefaultIsSqliteInTheDataDirectory) {
  for (const std::string spec : {"", "sqlite"}) {
    SCOPED_TRACE(spec);
    TemporaryDirectory directory;
    absl::StatusOr<std::unique_ptr<Store>> store = open_store(spec, directory.path());
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->describe(), "sqlite:" + directory.file("controller.db"));
    EXPECT_TRUE(std::filesystem::exists(directory.file("controller.db")));
  }
}

TEST(OpenStoreTest, SqliteAtAPathOfItsOwn) {
  TemporaryDirectory directory;
  const std::string path = directory.file("elsewhere.db");
  absl::StatusOr<std::unique_ptr<Store>> store = open_store("sqlite:" + path, "/nonexistent");
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->describe(), "sqlite:" + path);
  commit(**store, [](StoreTransaction& transaction) {
    return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, "probe"));
  });
  EXPECT_TRUE(get(**store, tenon::v1::OBJECT_KIND_APP, "probe").has_value());
  EXPECT_FALSE(std::filesystem::exists(directory.file("controller.db")));
}

TEST(OpenStoreTest, PostgresUrlsOpenAPostgresStore) {
  std::optional<TemporaryPostgresDatabase> database;
  TENON_SETUP_POSTGRES_DATABASE(database);
  TemporaryDirectory directory;
  const std::string url = database->url();  // postgresql://...
  ASSERT_THAT(url, StartsWith("postgresql://"));
  for (const std::string& spec : {url, "postgres" + url.substr(std::string("postgresql").size())}) {
    SCOPED_TRACE(spec);
    absl::StatusOr<std::unique_ptr<Store>> store = open_store(spec, directory.path());
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_THAT((*store)->describe(), StartsWith("postgres://"));
    EXPECT_THAT((*store)->describe(), HasSubstr(database->name()));
    commit(**store, [](StoreTransaction& transaction) {
      return transaction.put_object(make_object(tenon::v1::OBJECT_KIND_APP, "probe"));
    });
  }
  // Nothing was written in the data directory.
  EXPECT_TRUE(std::filesystem::is_empty(directory.path()));
}

TEST(OpenStoreTest, OtherFormsAreRefusedNamingTheAcceptedOnes) {
  TemporaryDirectory directory;
  for (const std::string spec : {"mysql://root:hunter2@db/controller", "SQLite",
                                 "/var/lib/tenon/controller.db", "postgres:/db", "sqlite:"}) {
    SCOPED_TRACE(spec);
    absl::StatusOr<std::unique_ptr<Store>> store = open_store(spec, directory.path());
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(store.status().message(), HasSubstr("sqlite:<path>"));
    EXPECT_THAT(store.status().message(), HasSubstr("postgres://"));
    EXPECT_THAT(store.status().message(), Not(HasSubstr("hunter2")));
  }
  EXPECT_TRUE(std::filesystem::is_empty(directory.path()));
}

TEST(OpenStoreTest, DefaultWithoutADataDirectoryIsRefused) {
  absl::StatusOr<std::unique_ptr<Store>> store = open_store("", "");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(store.status().message(), HasSubstr("data directory"));
}

}  // namespace
}  // namespace tenon::controller

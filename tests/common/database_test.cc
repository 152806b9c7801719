// tenon::sqlite::Database (common/sqlite): open, migrations, refusals, statements, transactions.
// It lives here until tests/common/ exists: the store is its first user.
#include "sqlite/database.h"

#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "temporary_directory.h"

namespace tenon::sqlite {
namespace {

using test_support::TemporaryDirectory;
using ::testing::HasSubstr;

constexpr Migration kCreateTable{1, "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT);"};
constexpr Migration kInsertFirst{2, "INSERT INTO notes (text) VALUES ('first');"};
constexpr Migration kAddColumn{3, "ALTER TABLE notes ADD COLUMN flag INTEGER NOT NULL DEFAULT 7;"};

int64_t query_int(Database& database, const std::string& sql) {
  absl::StatusOr<Statement> statement = database.prepare(sql);
  EXPECT_TRUE(statement.ok()) << statement.status();
  if (!statement.ok()) return -1;
  absl::StatusOr<bool> row = statement->step();
  EXPECT_TRUE(row.ok() && *row) << sql;
  if (!row.ok() || !*row) return -1;
  return statement->column_int64(0);
}

std::string query_text(Database& database, const std::string& sql) {
  absl::StatusOr<Statement> statement = database.prepare(sql);
  EXPECT_TRUE(statement.ok()) << statement.status();
  if (!statement.ok()) return "";
  absl::StatusOr<bool> row = statement->step();
  EXPECT_TRUE(row.ok() && *row) << sql;
  if (!row.ok() || !*row) return "";
  return statement->column_text(0);
}

TEST(DatabaseTest, OpenCreatesTheFileWithDurableSettingsAndMigrates) {
  TemporaryDirectory directory;
  const std::string path = directory.file("state.db");
  const Migration migrations[] = {kCreateTable, kInsertFirst};
  absl::StatusOr<std::unique_ptr<Database>> database = Database::open(path, migrations);
  ASSERT_TRUE(database.ok()) << database.status();
  EXPECT_EQ((*database)->path(), path);
  EXPECT_EQ((*database)->schema_version(), 2);
  EXPECT_EQ(query_int(**database, "PRAGMA user_version"), 2);
  EXPECT_EQ(query_text(**database, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(query_int(**database, "PRAGMA synchronous"), 2);  // FULL
  EXPECT_EQ(query_int(**database, "PRAGMA foreign_keys"), 1);
  EXPECT_EQ(query_int(**database, "PRAGMA busy_timeout"), 5000);
  EXPECT_EQ(query_text(**database, "SELECT text FROM notes"), "first");
}

TEST(DatabaseTest, TheFileAndItsWalArePrivate) {
  // The controller's database (token hashes, credentials) was created 0644.
  TemporaryDirectory directory;
  const std::string path = directory.file("state.db");
  const Migration migrations[] = {kCreateTable, kInsertFirst};
  auto mode_of = [](const std::string& file) {
    struct stat status {};
    EXPECT_EQ(stat(file.c_str(), &status), 0) << file;
    return status.st_mode & 0777;
  };
  {
    const mode_t previous = umask(022);
    absl::StatusOr<std::unique_ptr<Database>> database = Database::open(path, migrations);
    umask(previous);
    ASSERT_TRUE(database.ok()) << database.status();
    EXPECT_EQ(mode_of(path), 0600u);
    EXPECT_EQ(mode_of(path + "-wal"), 0600u);
  }
  // One loosened by hand is made private again when opened.
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  ASSERT_TRUE(Database::open(path, migrations).ok());
  EXPECT_EQ(mode_of(path), 0600u);
}

TEST(DatabaseTest, ReopenAppliesOnlyTheNewerMigrations) {
  TemporaryDirectory directory;
  const std::string path = directory.file("state.db");
  {
    const Migration migrations[] = {kCreateTable, kInsertFirst};
    ASSERT_TRUE(Database::open(path, migrations).ok());
  }
  const Migration migrations[] = {kCreateTable, kInsertFirst, kAddColumn};
  absl::StatusOr<std::unique_ptr<Database>> database = Database::open(path, migrations);
  ASSERT_TRUE(database.ok()) << database.status();
  EXPECT_EQ((*database)->schema_version(), 3);
  // Migration 2 inserted its row once, not again on reopen; migration 3 ran.
  EXPECT_EQ(query_int(**database, "SELECT count(*) FROM notes"), 1);
  EXPECT_EQ(query_int(**database, "SELECT flag FROM notes"), 7);
  database->reset();
  // Reopening with the same list changes nothing.
  database = Database::open(path, migrations);
  ASSERT_TRUE(database.ok()) << database.status();
  EXPECT_EQ(query_int(**database, "SELECT count(*) FROM notes"), 1);
}

TEST(DatabaseTest, FileFromANewerReleaseIsRefused) {
  TemporaryDirectory directory;
  const std::string path = directory.file("state.db");
  {
    const Migration migrations[] = {kCreateTable, kInsertFirst, kAddColumn};
    ASSERT_TRUE(Database::open(path, migrations).ok());
  }
  const Migration older[] = {kCreateTable, kInsertFirst};
  absl::StatusOr<std::unique_ptr<Database>> database = Database::open(path, older);
  ASSERT_FALSE(database.ok());
  EXPECT_EQ(database.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(database.status().message(), HasSubstr(path));
  EXPECT_THAT(database.status().message(), HasSubstr("schema version 3"));
  EXPECT_THAT(database.status().message(), HasSubstr("(2)"));
}

TEST(DatabaseTest, FileThatIsNotADatabaseIsRefused) {
  TemporaryDirectory directory;
  const std::string path = directory.file("state.db");
  {
    std::ofstream garbage(path, std::ios::binary);
    for (int i = 0; i < 512; ++i) garbage << "this is not a database; ";
  }
  const Migration migrations[] = {kCreateTable};
  absl::StatusOr<std::unique_ptr<Database>> database = Database::open(path, migrations);
  ASSERT_FALSE(database.ok());
  EXPECT_THAT(database.status().message(), HasSubstr(path));
  EXPECT_THAT(database.status().message(), HasSubstr("file is not a database"));
}

TEST(DatabaseTest, MissingParentDirectoryIsAnErrorNamingThePath) {
  TemporaryDirectory directory;
  const std::string path = directory.file("absent/state.db");
  const Migration migrations[] = {kCreateTable};
  absl::StatusOr<std::unique_ptr<Database>> database = Database::open(path, migrations);
  ASSERT_FALSE(database.ok());
  EXPECT_THAT(database.status().message(), HasSubstr(path));
}

TEST(DatabaseTest, MigrationsOutOfOrderAreRefused) {
  TemporaryDirectory directory;
  const Migration migrations[] = {kCreateTable, kAddColumn};  // 1, 3
  absl::StatusOr<std::unique_ptr<Database>> database =
      Database::open(directory.file("state.db"), migrations);
  ASSERT_FALSE(database.ok());
  EXPECT_EQ(database.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(database.status().message(), HasSubstr("has version 3; expected version 2"));
}

TEST(DatabaseTest, FailedMigrationLeavesNothingOfItself) {
  TemporaryDirectory directory;
  const std::string path = directory.file("state.db");
  const Migration broken{2, "CREATE TABLE extra (x); INSERT INTO missing_table VALUES (1);"};
  {
    const Migration migrations[] = {kCreateTable, broken};
    absl::StatusOr<std::unique_ptr<Database>> database = Database::open(path, migrations);
    ASSERT_FALSE(database.ok());
    EXPECT_THAT(database.status().message(), HasSubstr(path));
    EXPECT_THAT(database.status().message(), HasSubstr("missing_table"));
    EXPECT_THAT(database.status().message(), HasSubstr("migration 2"));
  }
  const Migration migrations[] = {kCreateTable};
  absl::StatusOr<std::unique_ptr<Database>> database = Database::open(path, migrations);
  ASSERT_TRUE(database.ok()) << database.status();
  EXPECT_EQ((*database)->schema_version(), 1);
  EXPECT_EQ(query_int(**database, "SELECT count(*) FROM sqlite_schema WHERE name = 'extra'"), 0);
}

TEST(DatabaseTest, TransactionCommitsOnOkAndRollsBackOnError) {
  TemporaryDirectory directory;
  const Migration migrations[] = {kCreateTable};
  absl::StatusOr<std::unique_ptr<Database>> opened =
      Database::open(directory.file("state.db"), migrations);
  ASSERT_TRUE(opened.ok()) << opened.status();
  Database& database = **opened;

  absl::Status status = database.transaction([&] {
    absl::Status inserted = database.exec("INSERT INTO notes (text) VALUES ('kept')");
    if (!inserted.ok()) return inserted;
    return absl::OkStatus();
  });
  ASSERT_TRUE(status.ok()) << status;

  status = database.transaction([&] {
    absl::Status inserted = database.exec("INSERT INTO notes (text) VALUES ('dropped')");
    if (!inserted.ok()) return inserted;
    return absl::AbortedError("body gave up");
  });
  EXPECT_EQ(status, absl::AbortedError("body gave up"));  // the body's own status
  EXPECT_EQ(query_int(database, "SELECT count(*) FROM notes"), 1);
  EXPECT_EQ(query_text(database, "SELECT text FROM notes"), "kept");

  // Nothing is left open: the next transaction begins normally.
  status = database.transaction([] { return absl::OkStatus(); });
  EXPECT_TRUE(status.ok()) << status;
}

TEST(DatabaseTest, TransactionIsNotReentrant) {
  TemporaryDirectory directory;
  const Migration migrations[] = {kCreateTable};
  absl::StatusOr<std::unique_ptr<Database>> opened =
      Database::open(directory.file("state.db"), migrations);
  ASSERT_TRUE(opened.ok()) << opened.status();
  Database& database = **opened;
  absl::Status inner;
  absl::Status outer = database.transaction([&] {
    inner = database.transaction([] { return absl::OkStatus(); });
    return absl::OkStatus();
  });
  EXPECT_TRUE(outer.ok()) << outer;
  EXPECT_EQ(inner.code(), absl::StatusCode::kFailedPrecondition);
}

TEST(DatabaseTest, StatementsBindReadAndReset) {
  TemporaryDirectory directory;
  const Migration migrations[] = {
      {1, "CREATE TABLE values_ (number INTEGER, text TEXT, bytes BLOB, absent TEXT);"}};
  absl::StatusOr<std::unique_ptr<Database>> opened =
      Database::open(directory.file("state.db"), migrations);
  ASSERT_TRUE(opened.ok()) << opened.status();
  Database& database = **opened;

  absl::StatusOr<Statement> insert =
      database.prepare("INSERT INTO values_ VALUES (?1, ?2, ?3, ?4);");
  ASSERT_TRUE(insert.ok()) << insert.status();
  const std::string bytes("a\0b\xff", 4);
  ASSERT_TRUE(insert->bind(1, int64_t{-1} << 40)
                  .bind(2, std::string_view("text"))
                  .bind_blob(3, bytes)
                  .bind_null(4)
                  .run()
                  .ok());
  insert->reset();
  ASSERT_TRUE(insert->bind(1, int64_t{2})
                  .bind(2, std::string_view())
                  .bind_blob(3, std::string_view())
                  .bind(4, std::string_view("x"))
                  .run()
                  .ok());

  absl::StatusOr<Statement> select = database.prepare("SELECT * FROM values_ ORDER BY number");
  ASSERT_TRUE(select.ok()) << select.status();
  ASSERT_TRUE(*select->step());
  EXPECT_EQ(select->column_int64(0), int64_t{-1} << 40);
  EXPECT_EQ(select->column_text(1), "text");
  EXPECT_EQ(select->column_blob(2), bytes);
  EXPECT_TRUE(select->column_is_null(3));
  ASSERT_TRUE(*select->step());
  EXPECT_EQ(select->column_int64(0), 2);
  // An empty value is empty, not NULL.
  EXPECT_FALSE(select->column_is_null(1));
  EXPECT_FALSE(select->column_is_null(2));
  EXPECT_EQ(select->column_text(1), "");
  EXPECT_EQ(select->column_blob(2), "");
  EXPECT_FALSE(*select->step());
  // Done stays done until reset(), instead of running again.
  EXPECT_FALSE(*select->step());
  select->reset();
  EXPECT_TRUE(*select->step());

  // A moved-from statement is inert; the moved-to one works.
  Statement moved = *std::move(select);
  EXPECT_EQ(moved.column_int64(0), int64_t{-1} << 40);
}

TEST(DatabaseTest, ErrorsNameThePathAndTheSql) {
  TemporaryDirectory directory;
  const std::string path = directory.file("state.db");
  const Migration migrations[] = {kCreateTable};
  absl::StatusOr<std::unique_ptr<Database>> opened = Database::open(path, migrations);
  ASSERT_TRUE(opened.ok()) << opened.status();
  Database& database = **opened;

  absl::StatusOr<Statement> bad = database.prepare("SELEC text FROM notes");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr(path));
  EXPECT_THAT(bad.status().message(), HasSubstr("prepare `SELEC text FROM notes`"));

  absl::Status exec = database.exec("DROP TABLE nowhere");
  EXPECT_THAT(exec.message(), HasSubstr(path));
  EXPECT_THAT(exec.message(), HasSubstr("exec `DROP TABLE nowhere`"));

  absl::StatusOr<Statement> two = database.prepare("SELECT 1; SELECT 2");
  ASSERT_FALSE(two.ok());
  EXPECT_EQ(two.status().code(), absl::StatusCode::kInvalidArgument);

  absl::StatusOr<Statement> insert =
      database.prepare("INSERT INTO notes (id, text) VALUES (?1, ?2)");
  ASSERT_TRUE(insert.ok()) << insert.status();
  ASSERT_TRUE(insert->bind(1, int64_t{1}).bind(2, std::string_view("a")).run().ok());
  insert->reset();
  absl::Status duplicate = insert->bind(1, int64_t{1}).bind(2, std::string_view("b")).run();
  EXPECT_EQ(duplicate.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(duplicate.message(), HasSubstr(path));
  EXPECT_THAT(duplicate.message(), HasSubstr("step `INSERT INTO notes"));
  EXPECT_THAT(duplicate.message(), HasSubstr("UNIQUE constraint failed"));

  insert->reset();
  absl::Status out_of_range = insert->bind(9, int64_t{1}).run();  // the bind error, reported here
  EXPECT_EQ(out_of_range.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(out_of_range.message(), HasSubstr("bind parameter 9"));
}

}  // namespace
}  // namespace tenon::sqlite

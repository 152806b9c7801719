// A small SQLite wrapper shared by the controller's store and the agent's state file: open with
// durable settings, versioned migrations, prepared statements and transactions, all reporting
// absl::Status errors that name the database file and the SQL that failed.
//
// Not thread-safe by itself: a Database and its Statements are used by one thread at a time
// (callers serialise, e.g. with a mutex around each transaction). Statements must be destroyed
// before the Database they came from.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct sqlite3;
struct sqlite3_stmt;

namespace tenon::sqlite {

// One step of a schema's history. Versions are 1, 2, 3... in order; `sql` may hold several
// statements. A released migration is never edited: changes go into a new one.
struct Migration {
  int version;
  const char* sql;
};

// A prepared statement. Movable, finalized on destruction. A failed bind is remembered and
// reported by the next step() or run(), so that binds can be chained.
class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  // Indexes are 1-based, as in sqlite3_bind_*.
  Statement& bind(int index, int64_t value);
  Statement& bind(int index, std::string_view text);  // TEXT
  Statement& bind_blob(int index, std::string_view bytes);
  Statement& bind_null(int index);

  // True: a row is available through the column_* accessors; false: the statement is done (and
  // stays done until reset(), rather than running again as sqlite3_step would).
  absl::StatusOr<bool> step();
  // Steps until done, for statements without rows (rows, if any, are skipped).
  absl::Status run();

  // Columns are 0-based, as in sqlite3_column_*; valid after step() returned true.
  int64_t column_int64(int column) const;
  std::string column_text(int column) const;
  std::string column_blob(int column) const;
  bool column_is_null(int column) const;

  // Resets the statement and clears its bindings, for reuse.
  void reset();

 private:
  friend class Database;
  Statement(sqlite3_stmt* statement, std::string database_path, std::string sql);
  absl::Status error(int code, std::string_view operation) const;
  void remember_bind_error(int code, int index);

  sqlite3_stmt* statement_ = nullptr;
  std::string database_path_;
  std::string sql_;  // shortened, for error messages
  absl::Status bind_status_;
  bool done_ = false;  // stepped to SQLITE_DONE or failed since the last reset()
};

class Database {
 public:
  // Opens or creates the file (parent dir must exist), sets journal_mode=WAL, synchronous=FULL,
  // foreign_keys=ON, busy_timeout 5000 ms; applies the migrations newer than PRAGMA user_version,
  // each in its own transaction that also sets user_version. A file whose user_version is newer
  // than the last migration is refused (FailedPrecondition naming the path and both versions); a
  // file that is not a database is refused with the path and sqlite's message.
  static absl::StatusOr<std::unique_ptr<Database>> open(const std::string& path,
                                                        std::span<const Migration> migrations);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Runs one or more statements that return no rows of interest.
  absl::Status exec(std::string_view sql);
  // Exactly one statement (a trailing ';' is fine); more is InvalidArgument.
  absl::StatusOr<Statement> prepare(std::string_view sql);
  // BEGIN IMMEDIATE; body; COMMIT (or ROLLBACK when body fails or COMMIT fails). Returns the
  // body's status, or COMMIT's error. Not reentrant: a body must not call transaction() itself.
  absl::Status transaction(const std::function<absl::Status()>& body);

  // The user_version after migrations, i.e. the version of the last migration applied.
  int schema_version() const;
  const std::string& path() const;

 private:
  Database(sqlite3* handle, std::string path);
  absl::Status configure();
  absl::StatusOr<int> read_user_version();
  absl::Status migrate(std::span<const Migration> migrations);
  absl::Status error(int code, std::string_view operation) const;

  sqlite3* handle_ = nullptr;
  std::string path_;
  int schema_version_ = 0;
};

}  // namespace tenon::sqlite

// The SQLite wrapper; see database.h. Errors read "<path>: <operation> `<sql>`: <sqlite message>".
#include "database.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "text/one_line.h"

namespace tenon::sqlite {
namespace {

// How long a writer waits for another connection's lock before giving up with Unavailable.
constexpr int kBusyTimeoutMilliseconds = 5000;

absl::StatusCode status_code_for(int sqlite_code) {
  switch (sqlite_code & 0xff) {  // the primary code of an extended one
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kUnavailable;
    case SQLITE_CONSTRAINT:
      if (sqlite_code == SQLITE_CONSTRAINT_PRIMARYKEY || sqlite_code == SQLITE_CONSTRAINT_UNIQUE) {
        return absl::StatusCode::kAlreadyExists;
      }
      return absl::StatusCode::kFailedPrecondition;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      return absl::StatusCode::kPermissionDenied;
    case SQLITE_CANTOPEN:
      return absl::StatusCode::kFailedPrecondition;
    case SQLITE_INTERRUPT:
      return absl::StatusCode::kCancelled;
    case SQLITE_RANGE:
    case SQLITE_TOOBIG:
      return absl::StatusCode::kOutOfRange;
    default:
      return absl::StatusCode::kInternal;
  }
}

// Debian's Abseil has its own string_view type; StrCat takes only that one.
absl::string_view view(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

absl::Status make_error(int code, std::string_view path, std::string_view operation,
                        std::string_view message) {
  return absl::Status(status_code_for(code),
                      absl::StrCat(view(path), ": ", view(operation), ": ", view(message)));
}

// Non-null even for an empty view: sqlite binds NULL for a null pointer.
const char* non_null(std::string_view bytes) { return bytes.data() ? bytes.data() : ""; }

}  // namespace

// ---- Statement ------------------------------------------------------------------------------

Statement::Statement(sqlite3_stmt* statement, std::string database_path, std::string sql)
    : statement_(statement), database_path_(std::move(database_path)), sql_(std::move(sql)) {}

Statement::Statement(Statement&& other) noexcept
    : statement_(std::exchange(other.statement_, nullptr)),
      database_path_(std::move(other.database_path_)),
      sql_(std::move(other.sql_)),
      bind_status_(std::move(other.bind_status_)),
      done_(other.done_) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(statement_);
    statement_ = std::exchange(other.statement_, nullptr);
    database_path_ = std::move(other.database_path_);
    sql_ = std::move(other.sql_);
    bind_status_ = std::move(other.bind_status_);
    done_ = other.done_;
  }
  return *this;
}

Statement::~Statement() { sqlite3_finalize(statement_); }

absl::Status Statement::error(int code, std::string_view operation) const {
  return make_error(code, database_path_, absl::StrCat(view(operation), " `", sql_, "`"),
                    sqlite3_errmsg(sqlite3_db_handle(statement_)));
}

void Statement::remember_bind_error(int code, int index) {
  if (code == SQLITE_OK || !bind_status_.ok()) return;
  bind_status_ = error(code, absl::StrCat("bind parameter ", index, " of"));
}

Statement& Statement::bind(int index, int64_t value) {
  remember_bind_error(sqlite3_bind_int64(statement_, index, value), index);
  return *this;
}

Statement& Statement::bind(int index, std::string_view text) {
  remember_bind_error(sqlite3_bind_text64(statement_, index, non_null(text), text.size(),
                                          SQLITE_TRANSIENT, SQLITE_UTF8),
                      index);
  return *this;
}

Statement& Statement::bind_blob(int index, std::string_view bytes) {
  remember_bind_error(
      sqlite3_bind_blob64(statement_, index, non_null(bytes), bytes.size(), SQLITE_TRANSIENT),
      index);
  return *this;
}

Statement& Statement::bind_null(int index) {
  remember_bind_error(sqlite3_bind_null(statement_, index), index);
  return *this;
}

absl::StatusOr<bool> Statement::step() {
  if (!bind_status_.ok()) return bind_status_;
  // sqlite would silently run a finished statement again; here it stays done until reset().
  if (done_) return false;
  const int code = sqlite3_step(statement_);
  if (code == SQLITE_ROW) return true;
  if (code == SQLITE_DONE) {
    done_ = true;
    return false;
  }
  absl::Status status = error(code, "step");
  sqlite3_reset(statement_);  // releases the statement's locks; the error is already taken
  done_ = true;
  return status;
}

absl::Status Statement::run() {
  while (true) {
    absl::StatusOr<bool> row = step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
  }
}

int64_t Statement::column_int64(int column) const {
  return sqlite3_column_int64(statement_, column);
}

std::string Statement::column_text(int column) const {
  // Text first, then its length: the order sqlite documents.
  const unsigned char* text = sqlite3_column_text(statement_, column);
  const int length = sqlite3_column_bytes(statement_, column);
  if (text == nullptr) return std::string();
  return std::string(reinterpret_cast<const char*>(text), static_cast<size_t>(length));
}

std::string Statement::column_blob(int column) const {
  const void* bytes = sqlite3_column_blob(statement_, column);
  const int length = sqlite3_column_bytes(statement_, column);
  if (bytes == nullptr) return std::string();
  return std::string(static_cast<const char*>(bytes), static_cast<size_t>(length));
}

bool Statement::column_is_null(int column) const {
  return sqlite3_column_type(statement_, column) == SQLITE_NULL;
}

void Statement::reset() {
  sqlite3_reset(statement_);
  sqlite3_clear_bindings(statement_);
  bind_status_ = absl::OkStatus();
  done_ = false;
}

// ---- Database -------------------------------------------------------------------------------

Database::Database(sqlite3* handle, std::string path) : handle_(handle), path_(std::move(path)) {}

Database::~Database() { sqlite3_close_v2(handle_); }

absl::Status Database::error(int code, std::string_view operation) const {
  return make_error(code, path_, operation, sqlite3_errmsg(handle_));
}

absl::StatusOr<std::unique_ptr<Database>> Database::open(const std::string& path,
                                                         std::span<const Migration> migrations) {
  // Fleet state (credentials, token hashes, desired states) is private to its owner: the file is
  // created 0600 before SQLite opens it (SQLite gives its WAL and shared-memory files the
  // database's mode), and an existing one is made 0600.
  if (path != ":memory:") {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
      return absl::Status(absl::ErrnoToStatusCode(errno),
                          absl::StrCat(path, ": cannot create: ", std::strerror(errno)));
    }
    const int changed = fchmod(fd, 0600);
    ::close(fd);
    if (changed != 0) {
      return absl::Status(absl::ErrnoToStatusCode(errno),
                          absl::StrCat(path, ": cannot make private: ", std::strerror(errno)));
    }
  }
  sqlite3* handle = nullptr;
  const int code =
      sqlite3_open_v2(path.c_str(), &handle,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (code != SQLITE_OK) {
    absl::Status status =
        make_error(code, path, "open", handle ? sqlite3_errmsg(handle) : sqlite3_errstr(code));
    sqlite3_close_v2(handle);
    return status;
  }
  std::unique_ptr<Database> database(new Database(handle, path));
  sqlite3_extended_result_codes(handle, 1);
  if (absl::Status status = database->configure(); !status.ok()) return status;
  if (absl::Status status = database->migrate(migrations); !status.ok()) return status;
  return database;
}

absl::Status Database::configure() {
  const int code = sqlite3_busy_timeout(handle_, kBusyTimeoutMilliseconds);
  if (code != SQLITE_OK) return error(code, "busy_timeout");
  // The first statement reads the file header: a file that is not a database fails here.
  absl::StatusOr<Statement> journal = prepare("PRAGMA journal_mode=WAL");
  if (!journal.ok()) return journal.status();
  absl::StatusOr<bool> row = journal->step();
  if (!row.ok()) return row.status();
  const std::string mode = *row ? journal->column_text(0) : std::string();
  // In-memory databases cannot use WAL and have nothing to keep across a crash anyway.
  const bool in_memory = path_.empty() || path_ == ":memory:";
  if (mode != "wal" && !in_memory) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": PRAGMA journal_mode=WAL: the journal mode stayed '", mode, "'"));
  }
  return exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
}

absl::StatusOr<int> Database::read_user_version() {
  absl::StatusOr<Statement> statement = prepare("PRAGMA user_version");
  if (!statement.ok()) return statement.status();
  absl::StatusOr<bool> row = statement->step();
  if (!row.ok()) return row.status();
  if (!*row) {
    return absl::InternalError(absl::StrCat(path_, ": PRAGMA user_version: returned no row"));
  }
  return static_cast<int>(statement->column_int64(0));
}

absl::Status Database::migrate(std::span<const Migration> migrations) {
  for (size_t i = 0; i < migrations.size(); ++i) {
    if (migrations[i].version != static_cast<int>(i + 1) || migrations[i].sql == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": migration #", i + 1, " has version ", migrations[i].version,
                       migrations[i].sql == nullptr ? " and no SQL" : "", "; expected version ",
                       i + 1, " (versions are 1, 2, 3... in order)"));
    }
  }
  const int newest_known = static_cast<int>(migrations.size());
  absl::StatusOr<int> current = read_user_version();
  if (!current.ok()) return current.status();
  auto refuse_newer = [&](int version) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": schema version ", version, " is newer than this program's newest (",
                     newest_known, "); refusing to open a database written by a newer release"));
  };
  if (*current > newest_known) return refuse_newer(*current);

  for (const Migration& migration : migrations) {
    if (migration.version <= *current) continue;
    absl::Status status = transaction([&]() -> absl::Status {
      // Another process may have migrated while this one waited for the write lock.
      absl::StatusOr<int> version = read_user_version();
      if (!version.ok()) return version.status();
      if (*version >= migration.version) return absl::OkStatus();
      if (absl::Status applied = exec(migration.sql); !applied.ok()) return applied;
      return exec(absl::StrCat("PRAGMA user_version = ", migration.version));
    });
    if (!status.ok()) {
      return absl::Status(status.code(), absl::StrCat(status.message(), " (applying migration ",
                                                      migration.version, ")"));
    }
  }
  current = read_user_version();
  if (!current.ok()) return current.status();
  if (*current > newest_known) return refuse_newer(*current);
  schema_version_ = *current;
  return absl::OkStatus();
}

absl::Status Database::exec(std::string_view sql) {
  const std::string text(sql);
  const int code = sqlite3_exec(handle_, text.c_str(), nullptr, nullptr, nullptr);
  if (code != SQLITE_OK)
    return error(code, absl::StrCat("exec `", tenon::text::shorten_sql(sql), "`"));
  return absl::OkStatus();
}

absl::StatusOr<Statement> Database::prepare(std::string_view sql) {
  if (sql.size() > static_cast<size_t>(INT_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": prepare: SQL text too long"));
  }
  sqlite3_stmt* statement = nullptr;
  const char* tail = nullptr;
  const int code =
      sqlite3_prepare_v2(handle_, sql.data(), static_cast<int>(sql.size()), &statement, &tail);
  if (code != SQLITE_OK)
    return error(code, absl::StrCat("prepare `", tenon::text::shorten_sql(sql), "`"));
  Statement result(statement, path_, tenon::text::shorten_sql(sql));
  if (statement == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": prepare `", tenon::text::shorten_sql(sql), "`: holds no statement"));
  }
  const std::string_view rest = sql.substr(static_cast<size_t>(tail - sql.data()));
  for (char c : rest) {
    if (c != ';' && !absl::ascii_isspace(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": prepare `", tenon::text::shorten_sql(sql),
                       "`: holds more than one statement (use exec)"));
    }
  }
  return result;
}

absl::Status Database::transaction(const std::function<absl::Status()>& body) {
  if (sqlite3_get_autocommit(handle_) == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": BEGIN IMMEDIATE: already inside a transaction (not reentrant)"));
  }
  if (absl::Status begun = exec("BEGIN IMMEDIATE"); !begun.ok()) return begun;
  // Rolls back whatever is still open when this scope ends: a failed body, a failed COMMIT, or an
  // exception thrown through the body.
  struct RollbackUnlessCommitted {
    sqlite3* handle;
    ~RollbackUnlessCommitted() {
      // sqlite may already have rolled back by itself (e.g. after SQLITE_FULL).
      if (sqlite3_get_autocommit(handle) == 0) {
        sqlite3_exec(handle, "ROLLBACK", nullptr, nullptr, nullptr);
      }
    }
  } rollback{handle_};
  absl::Status status = body();
  if (!status.ok()) return status;
  return exec("COMMIT");
}

int Database::schema_version() const { return schema_version_; }

const std::string& Database::path() const { return path_; }

}  // namespace tenon::sqlite

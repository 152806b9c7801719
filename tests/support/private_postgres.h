// A PostgreSQL server of the tests' own: initdb into a temporary directory, listening only on a
// unix socket there, stopped (pg_ctl stop -m immediate) and removed with the directory. The
// system's cluster, if any, is neither used nor touched. One server per test binary, started
// at its first use; each test takes a fresh database on it (TemporaryPostgresDatabase). A test
// binary that crashes or is killed (a ctest timeout) leaves no server behind: a watchdog process
// stops it and removes the directory when the binary is gone.
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace tenon::test_support {

class PrivatePostgres {
 public:
  // Starts a server with the newest /usr/lib/postgresql/<version>/bin (or $TENON_POSTGRES_BIN).
  // As root, the server's programs run as `nobody`: initdb refuses root. Check status().
  PrivatePostgres();
  ~PrivatePostgres();
  PrivatePostgres(const PrivatePostgres&) = delete;
  PrivatePostgres& operator=(const PrivatePostgres&) = delete;

  // False when no PostgreSQL server programs are installed: the tests that need one skip.
  bool installed() const { return !bin_directory_.empty(); }
  // OK when the server runs; otherwise why not (with the end of initdb's or the server's log).
  const absl::Status& status() const { return status_; }

  // postgresql:///<database>?host=<socket directory>&user=<superuser>
  std::string url(const std::string& database) const;
  const std::string& socket_directory() const { return directory_; }
  static constexpr char kSuperuser[] = "tenon";

  // Runs `sql` (one or more statements) in `database` as the superuser, over a connection of its
  // own. Returns the first column of the last statement's first row, "" when it has none.
  absl::StatusOr<std::string> execute(const std::string& database, const std::string& sql) const;

 private:
  absl::Status start();

  std::string bin_directory_;
  std::string directory_;  // the data directory, the socket and the logs
  bool started_ = false;
  pid_t watchdog_ = -1;     // stops the server if this process dies without doing it
  int watchdog_pipe_ = -1;  // its end closing is what tells the watchdog
  absl::Status status_;
};

// Owns the binary's server: started by server() at the first call, so that a run of tests that
// need none starts none, and stopped by TearDown after the last test. Registered with gtest
// when this file is linked into a test binary.
class PrivatePostgresEnvironment : public ::testing::Environment {
 public:
  static PrivatePostgres& server();
  void TearDown() override;

 private:
  static std::mutex mutex_;
  static std::unique_ptr<PrivatePostgres> server_;
};

// A database of one test's own on the binary's server, dropped at the end of the test.
class TemporaryPostgresDatabase {
 public:
  // `options` follow CREATE DATABASE <name>, e.g. "ENCODING 'LATIN1' TEMPLATE template0".
  explicit TemporaryPostgresDatabase(const std::string& options = "");
  ~TemporaryPostgresDatabase();
  TemporaryPostgresDatabase(const TemporaryPostgresDatabase&) = delete;
  TemporaryPostgresDatabase& operator=(const TemporaryPostgresDatabase&) = delete;

  // Why there is no database: a test skips when !installed() and fails otherwise.
  bool installed() const { return server_.installed(); }
  const absl::Status& status() const { return status_; }

  const std::string& name() const { return name_; }
  std::string url() const { return server_.url(name_); }
  PrivatePostgres& server() const { return server_; }
  // PrivatePostgres::execute in this database.
  absl::StatusOr<std::string> execute(const std::string& sql) const;

 private:
  PrivatePostgres& server_;
  std::string name_;
  absl::Status status_;
};

// In a fixture's SetUp: a fresh database in `database` (a std::optional of one; the rest are
// TemporaryPostgresDatabase's arguments), or the test skipped when PostgreSQL is not installed
// (with the reason) and failed when it is but does not work.
#define TENON_SETUP_POSTGRES_DATABASE(database, ...)                              \
  do {                                                                            \
    (database).emplace(__VA_ARGS__);                                              \
    if (!(database)->installed()) GTEST_SKIP() << (database)->status().message(); \
    ASSERT_TRUE((database)->status().ok()) << (database)->status();               \
  } while (false)

}  // namespace tenon::test_support

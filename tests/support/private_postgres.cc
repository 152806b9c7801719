// See private_postgres.h.
#include "private_postgres.h"

#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"

namespace tenon::test_support {
namespace {

// Longer than this, a unix socket path ("<dir>/.s.PGSQL.5432") no longer fits sockaddr_un.
constexpr size_t kMaxSocketDirectoryChars = 90;

// The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl, or $TENON_POSTGRES_BIN;
// empty when there is none.
std::string find_bin_directory() {
  auto usable = [](const std::filesystem::path& bin) {
    return ::access((bin / "initdb").c_str(), X_OK) == 0 &&
           ::access((bin / "pg_ctl").c_str(), X_OK) == 0;
  };
  if (const char* chosen = std::getenv("TENON_POSTGRES_BIN"); chosen != nullptr && *chosen) {
    return usable(chosen) ? std::string(chosen) : std::string();
  }
  std::string newest;
  int newest_version = -1;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", error)) {
    const std::string name = entry.path().filename().string();
    int version = 0;
    const auto [end, parsed] = std::from_chars(name.data(), name.data() + name.size(), version);
    if (parsed != std::errc() || end != name.data() + name.size()) continue;
    if (version > newest_version && usable(entry.path() / "bin")) {
      newest_version = version;
      newest = (entry.path() / "bin").string();
    }
  }
  return newest;
}

// Who runs the server's programs: initdb refuses root, so as root they run as `nobody`.
struct Account {
  uid_t uid;
  gid_t gid;
};

absl::StatusOr<std::optional<Account>> server_account() {
  if (::geteuid() != 0) return std::nullopt;
  const passwd* nobody = ::getpwnam("nobody");
  if (nobody == nullptr) {
    return absl::FailedPreconditionError(
        "running as root, and there is no user `nobody` to run PostgreSQL as");
  }
  return Account{nobody->pw_uid, nobody->pw_gid};
}

std::string tail_of(const std::string& path) {
  std::ifstream file(path);
  std::stringstream contents;
  contents << file.rdbuf();
  const std::string text = contents.str();
  constexpr size_t kTailChars = 1500;
  return text.size() > kTailChars ? text.substr(text.size() - kTailChars) : text;
}

// Runs `arguments` (arguments[0] a path) in `directory` as `account`, output appended to
// `log_path`, and waits for it. OK when it exits 0; otherwise the end of the log.
absl::Status run(const std::vector<std::string>& arguments, const std::string& directory,
                 const std::optional<Account>& account, const std::string& log_path) {
  std::vector<char*> argv;
  argv.reserve(arguments.size() + 1);
  for (const std::string& argument : arguments) argv.push_back(const_cast<char*>(argument.c_str()));
  argv.push_back(nullptr);
  const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return absl::InternalError(absl::StrCat("cannot open ", log_path));
  if (account && ::fchown(log, account->uid, account->gid) != 0) {
    ::close(log);
    return absl::InternalError(absl::StrCat("cannot chown ", log_path));
  }
  const pid_t parent = ::getpid();
  const pid_t child = ::fork();
  if (child < 0) {
    ::close(log);
    return absl::InternalError("fork failed");
  }
  if (child == 0) {
    ::dup2(log, STDOUT_FILENO);
    ::dup2(log, STDERR_FILENO);
    // The server inherits whatever else this test process holds open; it gets nothing.
    ::close_range(STDERR_FILENO + 1, ~0U, 0);
    if (::chdir(directory.c_str()) != 0) ::_exit(126);
    if (account && (::setgroups(0, nullptr) != 0 || ::setgid(account->gid) != 0 ||
                    ::setuid(account->uid) != 0)) {
      ::_exit(126);
    }
    // An initdb or pg_ctl outliving a killed test would race the watchdog's cleanup. Set after
    // setuid, which clears it.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) ::_exit(126);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(log);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(arguments[0], " failed (",
                                          WIFEXITED(status)
                                              ? absl::StrCat("exit status ", WEXITSTATUS(status))
                                              : absl::StrCat("signal ", WTERMSIG(status)),
                                          "); the end of ", log_path, ":\n", tail_of(log_path)));
}

// What the watchdog runs once the test process is gone: $0 is pg_ctl, $1 the data directory, $2
// the directory to remove. A server still starting when the test died writes its pid file in a
// moment; until it does, pg_ctl stop finds nothing to stop.
constexpr char kWatchdogScript[] =
    "for attempt in 1 2 3 4 5 6 7 8 9 10; do "
    "\"$0\" stop --pgdata=\"$1\" --mode=immediate --wait --silent && break; sleep 0.2; "
    "done; rm -rf \"$2\"";

struct Watchdog {
  pid_t pid;
  int pipe;  // the write end
};

// Forks a process that waits, in a session of its own (a ctest timeout kills the test's process
// group), for this process to end, then stops the server in `directory` and removes the
// directory. It learns of the end from its pipe: the write end closes with this process however
// it ends. Everything in `directory` belongs to `account`, so it runs as that account.
absl::StatusOr<Watchdog> start_watchdog(const std::string& bin_directory,
                                        const std::string& directory,
                                        const std::optional<Account>& account) {
  int pipe_ends[2];
  // Close-on-exec: the server and the programs run for it must not hold the write end open.
  if (::pipe2(pipe_ends, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  const std::string pg_ctl = bin_directory + "/pg_ctl";
  const std::string data = directory + "/data";
  const char* const argv[] = {
      "/bin/sh", "-c", kWatchdogScript, pg_ctl.c_str(), data.c_str(), directory.c_str(), nullptr};
  const pid_t child = ::fork();
  if (child < 0) {
    ::close(pipe_ends[0]);
    ::close(pipe_ends[1]);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (child == 0) {
    ::dup2(pipe_ends[0], STDIN_FILENO);  // dup2 clears close-on-exec
    ::close_range(STDIN_FILENO + 1, ~0U, 0);
    const int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0) {
      ::dup2(null, STDOUT_FILENO);
      ::dup2(null, STDERR_FILENO);
    }
    ::setsid();
    if (account && (::setgroups(0, nullptr) != 0 || ::setgid(account->gid) != 0 ||
                    ::setuid(account->uid) != 0)) {
      ::_exit(126);
    }
    char ignored;
    ssize_t got = 0;
    do {
      got = ::read(STDIN_FILENO, &ignored, 1);
    } while (got > 0 || (got < 0 && errno == EINTR));
    ::execv(argv[0], const_cast<char* const*>(argv));
    ::_exit(127);
  }
  ::close(pipe_ends[0]);
  return Watchdog{child, pipe_ends[1]};
}

}  // namespace

PrivatePostgres::PrivatePostgres() : bin_directory_(find_bin_directory()) {
  if (!installed()) {
    status_ = absl::FailedPreconditionError(
        "no PostgreSQL server programs (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or "
        "$TENON_POSTGRES_BIN; install the postgresql package (deploy/install-deps.sh)");
    return;
  }
  status_ = start();
}

absl::Status PrivatePostgres::start() {
  absl::StatusOr<std::optional<Account>> account = server_account();
  if (!account.ok()) return account.status();
  std::string pattern = (std::filesystem::temp_directory_path() / "tenon-postgres-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp ", pattern, ": ", std::strerror(errno)));
  }
  directory_ = pattern;
  if (directory_.size() > kMaxSocketDirectoryChars) {
    return absl::FailedPreconditionError(
        absl::StrCat(directory_, ": too long a path for a unix socket; set TMPDIR shorter"));
  }
  if (*account && ::chown(directory_.c_str(), (*account)->uid, (*account)->gid) != 0) {
    return absl::InternalError(absl::StrCat("chown ", directory_, ": ", std::strerror(errno)));
  }
  absl::StatusOr<Watchdog> watchdog = start_watchdog(bin_directory_, directory_, *account);
  if (!watchdog.ok()) return watchdog.status();
  watchdog_ = watchdog->pid;
  watchdog_pipe_ = watchdog->pipe;
  const std::string data = directory_ + "/data";
  // --no-sync and fsync=off: a test server's data need not survive a crash of the machine.
  absl::Status initialised =
      run({bin_directory_ + "/initdb", "--pgdata=" + data, "--username=" + std::string(kSuperuser),
           "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"},
          directory_, *account, directory_ + "/initdb.log");
  if (!initialised.ok()) return initialised;
  {
    std::ofstream settings(data + "/postgresql.conf", std::ios::app);
    settings << "\n# The tests' private server (tests/support/private_postgres.cc)\n"
             << "listen_addresses = ''\n"
             << "unix_socket_directories = '" << directory_ << "'\n"
             << "fsync = off\n"
             << "synchronous_commit = off\n"
             << "full_page_writes = off\n"
             << "shared_buffers = 16MB\n"
             << "max_connections = 40\n";
    if (!settings.flush()) return absl::InternalError("cannot write " + data + "/postgresql.conf");
  }
  absl::Status started =
      run({bin_directory_ + "/pg_ctl", "start", "--pgdata=" + data,
           "--log=" + directory_ + "/server.log", "--wait", "--timeout=60", "--silent"},
          directory_, *account, directory_ + "/pg_ctl.log");
  if (!started.ok()) {
    return absl::InternalError(absl::StrCat(started.message(), "\nthe end of the server's log:\n",
                                            tail_of(directory_ + "/server.log")));
  }
  started_ = true;
  return absl::OkStatus();
}

PrivatePostgres::~PrivatePostgres() {
  // Also a server whose start timed out: whatever wrote a pid file.
  std::error_code error;
  if (started_ || (!directory_.empty() &&
                   std::filesystem::exists(directory_ + "/data/postmaster.pid", error))) {
    absl::StatusOr<std::optional<Account>> account = server_account();
    absl::Status stopped =
        run({bin_directory_ + "/pg_ctl", "stop", "--pgdata=" + directory_ + "/data",
             "--mode=immediate", "--wait", "--silent"},
            directory_, account.ok() ? *account : std::nullopt, directory_ + "/pg_ctl.log");
    if (!stopped.ok() && started_) {
      ADD_FAILURE() << "stopping the private PostgreSQL server: " << stopped;
    }
  }
  // Stopped here already: the watchdog has nothing left to do.
  if (watchdog_ > 0) {
    ::kill(watchdog_, SIGKILL);
    ::waitpid(watchdog_, nullptr, 0);
    ::close(watchdog_pipe_);
  }
  if (!directory_.empty()) std::filesystem::remove_all(directory_, error);
}

std::string PrivatePostgres::url(const std::string& database) const {
  return absl::StrCat("postgresql:///", database, "?host=", directory_, "&user=", kSuperuser);
}

absl::StatusOr<std::string> PrivatePostgres::execute(const std::string& database,
                                                     const std::string& sql) const {
  if (!status_.ok()) return status_;
  PGconn* connection = PQconnectdb(url(database).c_str());
  if (PQstatus(connection) != CONNECTION_OK) {
    absl::Status status = absl::UnavailableError(
        absl::StrCat("connecting to ", url(database), ": ", PQerrorMessage(connection)));
    PQfinish(connection);
    return status;
  }
  PQsetNoticeProcessor(
      connection, [](void*, const char*) {}, nullptr);
  PGresult* result = PQexec(connection, sql.c_str());
  absl::StatusOr<std::string> value;
  const ExecStatusType status = PQresultStatus(result);
  if (status == PGRES_TUPLES_OK && PQntuples(result) > 0 && PQnfields(result) > 0) {
    value = std::string(PQgetvalue(result, 0, 0));
  } else if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
    value = std::string();
  } else {
    value = absl::InternalError(absl::StrCat(sql, ": ", PQresultErrorMessage(result)));
  }
  PQclear(result);
  PQfinish(connection);
  return value;
}

std::mutex PrivatePostgresEnvironment::mutex_;
std::unique_ptr<PrivatePostgres> PrivatePostgresEnvironment::server_;

PrivatePostgres& PrivatePostgresEnvironment::server() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (server_ == nullptr) server_ = std::make_unique<PrivatePostgres>();
  return *server_;
}

void PrivatePostgresEnvironment::TearDown() {
  std::lock_guard<std::mutex> lock(mutex_);
  server_.reset();
}

namespace {

[[maybe_unused]] ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new PrivatePostgresEnvironment);

}  // namespace

TemporaryPostgresDatabase::TemporaryPostgresDatabase(const std::string& options)
    : server_(PrivatePostgresEnvironment::server()), status_(server_.status()) {
  if (!status_.ok()) return;
  static std::atomic<int> created{0};
  name_ = absl::StrCat("test_", ++created);
  absl::StatusOr<std::string> made =
      server_.execute("postgres", absl::StrCat("CREATE DATABASE ", name_, " ", options));
  status_ = made.status();
}

TemporaryPostgresDatabase::~TemporaryPostgresDatabase() {
  if (!status_.ok()) return;
  // WITH (FORCE): a store the test leaked must not keep its database alive.
  absl::StatusOr<std::string> dropped =
      server_.execute("postgres", "DROP DATABASE " + name_ + " WITH (FORCE)");
  if (!dropped.ok()) ADD_FAILURE() << "dropping database " << name_ << ": " << dropped.status();
}

absl::StatusOr<std::string> TemporaryPostgresDatabase::execute(const std::string& sql) const {
  return server_.execute(name_, sql);
}

}  // namespace tenon::test_support

// The PostgreSQL store: the tables of the SQLite one (store.h lists them) in a PostgreSQL
// database reached through libpq, for controllers whose state lives outside their machine.
// The schema and its migrations are in postgres_store.cc and described in README.md.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "store.h"

namespace tenon::controller {

class PostgresConnection;  // postgres_store.cc: the libpq connection and its prepared statements

class PostgresStore : public Store {
 public:
  // Connects to `url` (postgres://user[:password]@host[:port]/database[?parameters], or the same
  // with postgresql://; libpq parses it, so e.g. ?host=/run/postgresql reaches a unix socket)
  // and creates or migrates the schema. InvalidArgument for anything else than such a URL,
  // Unavailable when the server cannot be reached, FailedPrecondition for a database migrated by
  // a newer release or not encoded in UTF-8. No error repeats the password.
  static absl::StatusOr<std::unique_ptr<PostgresStore>> open(const std::string& url);
  ~PostgresStore() override;

  // Safe to call from several threads: transactions run one at a time over one connection.
  // Calling transact from inside a body is refused (FailedPrecondition) instead of deadlocking.
  // A lost connection fails the transaction with Unavailable; the next one reconnects.
  std::string describe() const override;  // "postgres://user@host:port/database", no password

  int schema_version() const { return schema_version_; }

 protected:
  // BEGIN ISOLATION LEVEL SERIALIZABLE; body; COMMIT. Another process writing what the body read
  // makes PostgreSQL refuse the transaction (a serialization failure): the whole body then runs
  // again, a few times at most, so a body must be safe to run more than once.
  absl::Status run_transaction(const std::function<absl::Status(StoreTransaction&)>& body,
                               const std::function<void()>& committed) override;

 private:
  PostgresStore(std::unique_ptr<PostgresConnection> connection, int schema_version);

  std::unique_ptr<PostgresConnection> connection_;
  const int schema_version_;
};

}  // namespace tenon::controller

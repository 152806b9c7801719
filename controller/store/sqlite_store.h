// The embedded store: one SQLite file (WAL, synchronous=FULL) holding everything store.h lists.
// The schema and its migrations are in sqlite_store.cc and described in README.md.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "sqlite/database.h"
#include "store.h"

namespace tenon::controller {

class SqliteStore : public Store {
 public:
  // Opens or creates the database file (its directory must exist) and migrates it to the newest
  // schema. Refuses a file written by a newer release, or one that is not a SQLite database.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> open(const std::string& path);

  // Safe to call from several threads: transactions run one at a time. Calling transact from
  // inside a body is refused (FailedPrecondition) instead of deadlocking.
  std::string describe() const override;  // "sqlite:<path>"

  int schema_version() const;

 protected:
  absl::Status run_transaction(const std::function<absl::Status(StoreTransaction&)>& body,
                               const std::function<void()>& committed) override;

 private:
  explicit SqliteStore(std::unique_ptr<tenon::sqlite::Database> database);

  std::unique_ptr<tenon::sqlite::Database> database_;
  // Prepared once, keyed by their SQL (string literals); declared after database_ so that they
  // are finalized before it closes.
  std::map<std::string_view, std::unique_ptr<tenon::sqlite::Statement>> statements_;
};

}  // namespace tenon::controller

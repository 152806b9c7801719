// Picks the controller's store from its --store flag: the embedded SQLite file by default, or a
// PostgreSQL database given by URL.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "store.h"

namespace tenon::controller {

// `spec` is one of
//   ""  or "sqlite"                     SqliteStore at <data_dir>/controller.db
//   "sqlite:<path>"                     SqliteStore at <path>
//   "postgres://..." "postgresql://..." PostgresStore (postgres_store.h)
// Anything else is InvalidArgument naming the accepted forms (and never echoing a password).
absl::StatusOr<std::unique_ptr<Store>> open_store(const std::string& spec,
                                                  const std::string& data_dir);

}  // namespace tenon::controller

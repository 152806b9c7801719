// The --store flag's forms; see open_store.h.
#include "open_store.h"

#include <filesystem>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "postgres_store.h"
#include "sqlite_store.h"

namespace tenon::controller {
namespace {

constexpr char kAcceptedForms[] =
    "expected sqlite (the default: <data dir>/controller.db), sqlite:<path>, or a postgres:// or "
    "postgresql:// URL";

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> open_store(const std::string& spec,
                                                  const std::string& data_dir) {
  if (spec.starts_with("postgres://") || spec.starts_with("postgresql://")) {
    absl::StatusOr<std::unique_ptr<PostgresStore>> store = PostgresStore::open(spec);
    if (!store.ok()) return store.status();
    return std::unique_ptr<Store>(*std::move(store));
  }
  std::string path;
  if (spec.empty() || spec == "sqlite") {
    if (data_dir.empty()) {
      return absl::InvalidArgumentError("store sqlite: no data directory to keep controller.db in");
    }
    path = (std::filesystem::path(data_dir) / "controller.db").string();
  } else if (spec.starts_with("sqlite:")) {
    path = spec.substr(std::string_view("sqlite:").size());
    if (path.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("store sqlite: without a path; ", kAcceptedForms));
    }
  } else {
    // Only what precedes the first ':' is repeated: a mistyped URL may hold a password.
    return absl::InvalidArgumentError(absl::StrCat(
        "store: unknown kind '", spec.substr(0, spec.find(':')), "'; ", kAcceptedForms));
  }
  absl::StatusOr<std::unique_ptr<SqliteStore>> store = SqliteStore::open(path);
  if (!store.ok()) return store.status();
  return std::unique_ptr<Store>(*std::move(store));
}

}  // namespace tenon::controller

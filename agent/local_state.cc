// See local_state.h. Messages are stored as serialized protobuf blobs: the schema keeps what the
// agent looks up by (names, digests, versions) in columns and the rest opaque.
#include "local_state.h"

#include <sys/stat.h>

#include <array>

#include "absl/strings/str_cat.h"

namespace tenon::agent {
namespace {

using tenon::sqlite::Migration;

constexpr std::array<Migration, 1> kMigrations = {{
    {1, R"sql(
      CREATE TABLE identity (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        device_name TEXT NOT NULL,
        device_uid TEXT NOT NULL,
        credential TEXT NOT NULL);
      CREATE TABLE desired_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL,
        message BLOB NOT NULL);
      CREATE TABLE instances (
        name TEXT PRIMARY KEY,
        instance_uid TEXT NOT NULL,
        vm_uid TEXT NOT NULL,
        image_digest TEXT NOT NULL,
        restart_count INTEGER NOT NULL,
        consecutive_failures INTEGER NOT NULL,
        last_exit BLOB,
        exit_handled_vm_uid TEXT NOT NULL,
        restart_at_unix_ms INTEGER);
      CREATE TABLE images (
        digest TEXT PRIMARY KEY,
        size_bytes INTEGER NOT NULL);
    )sql"},
}};

}  // namespace

absl::StatusOr<std::unique_ptr<LocalState>> LocalState::open(const std::string& path) {
  // The file will hold the device credential: Database::open keeps it 0600.
  absl::StatusOr<std::unique_ptr<tenon::sqlite::Database>> database =
      tenon::sqlite::Database::open(path, kMigrations);
  if (!database.ok()) return database.status();
  return std::unique_ptr<LocalState>(new LocalState(std::move(*database)));
}

absl::StatusOr<std::optional<Identity>> LocalState::identity() {
  std::lock_guard lock(mutex_);
  absl::StatusOr<tenon::sqlite::Statement> select =
      database_->prepare("SELECT device_name, device_uid, credential FROM identity WHERE id = 1");
  if (!select.ok()) return select.status();
  absl::StatusOr<bool> row = select->step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<Identity>();
  return std::optional<Identity>(
      Identity{select->column_text(0), select->column_text(1), select->column_text(2)});
}

absl::Status LocalState::store_identity(const Identity& identity) {
  std::lock_guard lock(mutex_);
  absl::StatusOr<tenon::sqlite::Statement> insert = database_->prepare(
      "INSERT OR REPLACE INTO identity (id, device_name, device_uid, credential) "
      "VALUES (1, ?, ?, ?)");
  if (!insert.ok()) return insert.status();
  return insert->bind(1, identity.device_name)
      .bind(2, identity.device_uid)
      .bind(3, identity.credential)
      .run();
}

absl::Status LocalState::forget_identity() {
  std::lock_guard lock(mutex_);
  return database_->exec("DELETE FROM identity");
}

absl::StatusOr<std::optional<tenon::v1::DesiredState>> LocalState::desired_state() {
  std::lock_guard lock(mutex_);
  absl::StatusOr<tenon::sqlite::Statement> select =
      database_->prepare("SELECT message FROM desired_state WHERE id = 1");
  if (!select.ok()) return select.status();
  absl::StatusOr<bool> row = select->step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<tenon::v1::DesiredState>();
  tenon::v1::DesiredState desired;
  if (!desired.ParseFromString(select->column_blob(0))) {
    return absl::DataLossError(
        absl::StrCat(database_->path(), ": the stored desired state does not parse"));
  }
  return std::optional<tenon::v1::DesiredState>(std::move(desired));
}

absl::Status LocalState::store_desired_state(const tenon::v1::DesiredState& desired) {
  std::lock_guard lock(mutex_);
  return database_->transaction([&]() -> absl::Status {
    absl::StatusOr<tenon::sqlite::Statement> select =
        database_->prepare("SELECT version FROM desired_state WHERE id = 1");
    if (!select.ok()) return select.status();
    absl::StatusOr<bool> row = select->step();
    if (!row.ok()) return row.status();
    if (*row && static_cast<uint64_t>(select->column_int64(0)) >= desired.version()) {
      return absl::FailedPreconditionError(absl::StrCat("desired state version ", desired.version(),
                                                        " is not above the stored version ",
                                                        select->column_int64(0)));
    }
    absl::StatusOr<tenon::sqlite::Statement> insert = database_->prepare(
        "INSERT OR REPLACE INTO desired_state (id, version, message) VALUES (1, ?, ?)");
    if (!insert.ok()) return insert.status();
    return insert->bind(1, static_cast<int64_t>(desired.version()))
        .bind_blob(2, desired.SerializeAsString())
        .run();
  });
}

absl::StatusOr<std::map<std::string, InstanceRecord>> LocalState::instance_records() {
  std::lock_guard lock(mutex_);
  absl::StatusOr<tenon::sqlite::Statement> select = database_->prepare(
      "SELECT name, instance_uid, vm_uid, image_digest, restart_count, consecutive_failures, "
      "last_exit, exit_handled_vm_uid, restart_at_unix_ms FROM instances ORDER BY name");
  if (!select.ok()) return select.status();
  std::map<std::string, InstanceRecord> records;
  for (;;) {
    absl::StatusOr<bool> row = select->step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    InstanceRecord record;
    record.name = select->column_text(0);
    record.instance_uid = select->column_text(1);
    record.vm_uid = select->column_text(2);
    record.image_digest = select->column_text(3);
    record.restart_count = static_cast<uint32_t>(select->column_int64(4));
    record.consecutive_failures = static_cast<uint32_t>(select->column_int64(5));
    if (!select->column_is_null(6)) {
      tenon::v1::ExitReason exit;
      if (exit.ParseFromString(select->column_blob(6))) record.last_exit = std::move(exit);
    }
    record.exit_handled_vm_uid = select->column_text(7);
    if (!select->column_is_null(8)) {
      record.restart_at = absl::FromUnixMillis(select->column_int64(8));
    }
    records.emplace(record.name, std::move(record));
  }
  return records;
}

absl::Status LocalState::put_instance_record(const InstanceRecord& record) {
  std::lock_guard lock(mutex_);
  absl::StatusOr<tenon::sqlite::Statement> insert = database_->prepare(
      "INSERT OR REPLACE INTO instances (name, instance_uid, vm_uid, image_digest, "
      "restart_count, consecutive_failures, last_exit, exit_handled_vm_uid, restart_at_unix_ms) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  if (!insert.ok()) return insert.status();
  insert->bind(1, record.name)
      .bind(2, record.instance_uid)
      .bind(3, record.vm_uid)
      .bind(4, record.image_digest)
      .bind(5, static_cast<int64_t>(record.restart_count))
      .bind(6, static_cast<int64_t>(record.consecutive_failures));
  if (record.last_exit.has_value()) {
    insert->bind_blob(7, record.last_exit->SerializeAsString());
  } else {
    insert->bind_null(7);
  }
  insert->bind(8, record.exit_handled_vm_uid);
  if (record.restart_at.has_value()) {
    insert->bind(9, absl::ToUnixMillis(*record.restart_at));
  } else {
    insert->bind_null(9);
  }
  return insert->run();
}

absl::Status LocalState::delete_instance_record(const std::string& name) {
  std::lock_guard lock(mutex_);
  absl::StatusOr<tenon::sqlite::Statement> remove =
      database_->prepare("DELETE FROM instances WHERE name = ?");
  if (!remove.ok()) return remove.status();
  return remove->bind(1, name).run();
}

absl::StatusOr<std::map<std::string, uint64_t>> LocalState::images() {
  std::lock_guard lock(mutex_);
  absl::StatusOr<tenon::sqlite::Statement> select =
      database_->prepare("SELECT digest, size_bytes FROM images ORDER BY digest");
  if (!select.ok()) return select.status();
  std::map<std::string, uint64_t> images;
  for (;;) {
    absl::StatusOr<bool> row = select->step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    images.emplace(select->column_text(0), static_cast<uint64_t>(select->column_int64(1)));
  }
  return images;
}

absl::Status LocalState::put_image(const std::string& digest, uint64_t size_bytes) {
  std::lock_guard lock(mutex_);
  absl::StatusOr<tenon::sqlite::Statement> insert =
      database_->prepare("INSERT OR REPLACE INTO images (digest, size_bytes) VALUES (?, ?)");
  if (!insert.ok()) return insert.status();
  return insert->bind(1, digest).bind(2, static_cast<int64_t>(size_bytes)).run();
}

absl::Status LocalState::delete_image(const std::string& digest) {
  std::lock_guard lock(mutex_);
  absl::StatusOr<tenon::sqlite::Statement> remove =
      database_->prepare("DELETE FROM images WHERE digest = ?");
  if (!remove.ok()) return remove.status();
  return remove->bind(1, digest).run();
}

}  // namespace tenon::agent

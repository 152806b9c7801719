// SqliteStore: the schema, its migrations and the StoreTransaction over tenon::sqlite.
#include "sqlite_store.h"

#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "object_meta.h"
#include "record_encoding.h"

namespace tenon::controller {
namespace {

using tenon::sqlite::Database;
using tenon::sqlite::Migration;
using tenon::sqlite::Statement;
using tenon::v1::DesiredState;
using tenon::v1::Object;
using tenon::v1::ObjectKind;

// Released migrations are never edited; a schema change is a new entry (see README.md).
constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE objects (
  kind INTEGER NOT NULL,  -- tenon.v1.ObjectKind
  name TEXT NOT NULL,     -- metadata.name
  body BLOB NOT NULL,     -- serialized tenon.v1.Object
  PRIMARY KEY (kind, name)
) WITHOUT ROWID;

CREATE TABLE bootstrap_tokens (
  token_hash TEXT PRIMARY KEY NOT NULL,  -- lowercase hex sha256 of the secret
  device_name TEXT NOT NULL,             -- empty: any device name
  uses_left INTEGER NOT NULL CHECK (uses_left >= 0),
  expire_unix_seconds INTEGER NOT NULL
);

CREATE TABLE bootstrap_token_labels (
  token_hash TEXT NOT NULL REFERENCES bootstrap_tokens (token_hash) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (token_hash, key)
) WITHOUT ROWID;

CREATE TABLE device_credentials (
  device_name TEXT PRIMARY KEY NOT NULL,
  credential_hash TEXT NOT NULL,  -- lowercase hex sha256 of the secret
  issue_unix_seconds INTEGER NOT NULL
);

CREATE TABLE desired_states (
  device TEXT PRIMARY KEY NOT NULL,
  version INTEGER NOT NULL,  -- DesiredState.version, copied out to check it only increases
  body BLOB NOT NULL         -- serialized tenon.v1.DesiredState
);

CREATE TABLE counters (
  name TEXT PRIMARY KEY NOT NULL,
  value INTEGER NOT NULL
);
)sql"},
};

// Resets its statement when it goes out of scope, so that a cached statement holds no read
// cursor and no bindings between uses.
class StatementLease {
 public:
  explicit StatementLease(Statement* statement) : statement_(statement) {}
  StatementLease(StatementLease&& other) noexcept
      : statement_(std::exchange(other.statement_, nullptr)) {}
  StatementLease& operator=(StatementLease&&) = delete;
  ~StatementLease() {
    if (statement_ != nullptr) statement_->reset();
  }
  Statement* operator->() const { return statement_; }

 private:
  Statement* statement_;
};

class SqliteTransaction : public StoreTransaction {
 public:
  SqliteTransaction(Database& database,
                    std::map<std::string_view, std::unique_ptr<Statement>>& statements)
      : database_(database),
        statements_(statements),
        name_(absl::StrCat("sqlite:", database.path())) {}

  absl::StatusOr<std::optional<Object>> get_object(ObjectKind kind,
                                                   const std::string& name) override {
    absl::StatusOr<StatementLease> select =
        statement("SELECT body FROM objects WHERE kind = ?1 AND name = ?2");
    if (!select.ok()) return select.status();
    (*select)->bind(1, static_cast<int64_t>(kind)).bind(2, name);
    absl::StatusOr<bool> row = (*select)->step();
    if (!row.ok()) return row.status();
    if (!*row) return std::nullopt;
    absl::StatusOr<Object> object =
        parse_stored_object(name_, kind, name, (*select)->column_blob(0));
    if (!object.ok()) return object.status();
    return *std::move(object);
  }

  absl::StatusOr<std::vector<Object>> list_objects(ObjectKind kind) override {
    absl::StatusOr<StatementLease> select =
        statement("SELECT name, body FROM objects WHERE kind = ?1 ORDER BY name");
    if (!select.ok()) return select.status();
    (*select)->bind(1, static_cast<int64_t>(kind));
    std::vector<Object> objects;
    while (true) {
      absl::StatusOr<bool> row = (*select)->step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      absl::StatusOr<Object> object =
          parse_stored_object(name_, kind, (*select)->column_text(0), (*select)->column_blob(1));
      if (!object.ok()) return object.status();
      objects.push_back(*std::move(object));
    }
    return objects;
  }

  absl::Status put_object(const Object& object) override {
    absl::StatusOr<ObjectRow> row = object_row(name_, object);
    if (!row.ok()) return row.status();
    absl::StatusOr<StatementLease> upsert = statement(
        "INSERT INTO objects (kind, name, body) VALUES (?1, ?2, ?3) "
        "ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body");
    if (!upsert.ok()) return upsert.status();
    return (*upsert)
        ->bind(1, static_cast<int64_t>(row->kind))
        .bind(2, row->name)
        .bind_blob(3, row->body)
        .run();
  }

  absl::Status delete_object(ObjectKind kind, const std::string& name) override {
    absl::StatusOr<StatementLease> remove =
        statement("DELETE FROM objects WHERE kind = ?1 AND name = ?2 RETURNING name");
    if (!remove.ok()) return remove.status();
    (*remove)->bind(1, static_cast<int64_t>(kind)).bind(2, name);
    return deleted_or_not_found(*remove, absl::StrCat("object ", kind_name(kind), "/", name));
  }

  absl::Status put_bootstrap_token(const BootstrapTokenRecord& token) override {
    if (token.token_hash.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name_, ": put_bootstrap_token: empty token_hash"));
    }
    absl::StatusOr<StatementLease> upsert = statement(
        "INSERT INTO bootstrap_tokens (token_hash, device_name, uses_left, expire_unix_seconds) "
        "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (token_hash) DO UPDATE SET "
        "device_name = excluded.device_name, uses_left = excluded.uses_left, "
        "expire_unix_seconds = excluded.expire_unix_seconds");
    if (!upsert.ok()) return upsert.status();
    absl::Status status = (*upsert)
                              ->bind(1, token.token_hash)
                              .bind(2, token.device_name)
                              .bind(3, static_cast<int64_t>(token.uses_left))
                              .bind(4, token.expire_unix_seconds)
                              .run();
    if (!status.ok()) return status;
    absl::StatusOr<StatementLease> clear_labels =
        statement("DELETE FROM bootstrap_token_labels WHERE token_hash = ?1");
    if (!clear_labels.ok()) return clear_labels.status();
    status = (*clear_labels)->bind(1, token.token_hash).run();
    if (!status.ok()) return status;
    for (const auto& [key, value] : token.labels) {
      absl::StatusOr<StatementLease> insert_label = statement(
          "INSERT INTO bootstrap_token_labels (token_hash, key, value) VALUES (?1, ?2, ?3)");
      if (!insert_label.ok()) return insert_label.status();
      status = (*insert_label)->bind(1, token.token_hash).bind(2, key).bind(3, value).run();
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<BootstrapTokenRecord>> get_bootstrap_token(
      const std::string& token_hash) override {
    BootstrapTokenRecord token;
    {
      absl::StatusOr<StatementLease> select = statement(
          "SELECT device_name, uses_left, expire_unix_seconds FROM bootstrap_tokens "
          "WHERE token_hash = ?1");
      if (!select.ok()) return select.status();
      (*select)->bind(1, token_hash);
      absl::StatusOr<bool> row = (*select)->step();
      if (!row.ok()) return row.status();
      if (!*row) return std::nullopt;
      token.token_hash = token_hash;
      token.device_name = (*select)->column_text(0);
      const int64_t uses_left = (*select)->column_int64(1);
      if (uses_left < 0 || uses_left > std::numeric_limits<uint32_t>::max()) {
        return absl::DataLossError(absl::StrCat(name_, ": bootstrap token ", token_hash,
                                                ": uses_left ", uses_left, " out of range"));
      }
      token.uses_left = static_cast<uint32_t>(uses_left);
      token.expire_unix_seconds = (*select)->column_int64(2);
    }
    absl::StatusOr<StatementLease> labels = statement(
        "SELECT key, value FROM bootstrap_token_labels WHERE token_hash = ?1 ORDER BY key");
    if (!labels.ok()) return labels.status();
    (*labels)->bind(1, token_hash);
    while (true) {
      absl::StatusOr<bool> row = (*labels)->step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      token.labels.emplace((*labels)->column_text(0), (*labels)->column_text(1));
    }
    return token;
  }

  absl::Status delete_bootstrap_token(const std::string& token_hash) override {
    // The labels go with it (ON DELETE CASCADE).
    absl::StatusOr<StatementLease> remove =
        statement("DELETE FROM bootstrap_tokens WHERE token_hash = ?1 RETURNING token_hash");
    if (!remove.ok()) return remove.status();
    (*remove)->bind(1, token_hash);
    return deleted_or_not_found(*remove, absl::StrCat("bootstrap token ", token_hash));
  }

  absl::Status put_device_credential(const DeviceCredentialRecord& credential) override {
    if (credential.device_name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name_, ": put_device_credential: empty device_name"));
    }
    absl::StatusOr<StatementLease> upsert = statement(
        "INSERT INTO device_credentials (device_name, credential_hash, issue_unix_seconds) "
        "VALUES (?1, ?2, ?3) ON CONFLICT (device_name) DO UPDATE SET "
        "credential_hash = excluded.credential_hash, "
        "issue_unix_seconds = excluded.issue_unix_seconds");
    if (!upsert.ok()) return upsert.status();
    return (*upsert)
        ->bind(1, credential.device_name)
        .bind(2, credential.credential_hash)
        .bind(3, credential.issue_unix_seconds)
        .run();
  }

  absl::StatusOr<std::optional<DeviceCredentialRecord>> get_device_credential(
      const std::string& device_name) override {
    absl::StatusOr<StatementLease> select = statement(
        "SELECT credential_hash, issue_unix_seconds FROM device_credentials "
        "WHERE device_name = ?1");
    if (!select.ok()) return select.status();
    (*select)->bind(1, device_name);
    absl::StatusOr<bool> row = (*select)->step();
    if (!row.ok()) return row.status();
    if (!*row) return std::nullopt;
    DeviceCredentialRecord credential;
    credential.device_name = device_name;
    credential.credential_hash = (*select)->column_text(0);
    credential.issue_unix_seconds = (*select)->column_int64(1);
    return credential;
  }

  absl::Status delete_device_credential(const std::string& device_name) override {
    absl::StatusOr<StatementLease> remove =
        statement("DELETE FROM device_credentials WHERE device_name = ?1 RETURNING device_name");
    if (!remove.ok()) return remove.status();
    (*remove)->bind(1, device_name);
    return deleted_or_not_found(*remove, absl::StrCat("credential of device ", device_name));
  }

  absl::Status put_desired_state(const std::string& device_name,
                                 const DesiredState& state) override {
    const std::string what = absl::StrCat(name_, ": desired state of device ", device_name);
    if (device_name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(name_, ": put_desired_state: empty device"));
    }
    if (state.version() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": version ", state.version(), " does not fit a signed 64-bit"));
    }
    {
      absl::StatusOr<StatementLease> select =
          statement("SELECT version FROM desired_states WHERE device = ?1");
      if (!select.ok()) return select.status();
      (*select)->bind(1, device_name);
      absl::StatusOr<bool> row = (*select)->step();
      if (!row.ok()) return row.status();
      if (*row) {
        const int64_t stored = (*select)->column_int64(0);
        if (static_cast<int64_t>(state.version()) <= stored) {
          return absl::FailedPreconditionError(
              absl::StrCat(what, ": version ", state.version(),
                           " is not newer than the stored version ", stored));
        }
      }
    }
    absl::StatusOr<std::string> body = serialize_record(state, what);
    if (!body.ok()) return body.status();
    absl::StatusOr<StatementLease> upsert = statement(
        "INSERT INTO desired_states (device, version, body) VALUES (?1, ?2, ?3) "
        "ON CONFLICT (device) DO UPDATE SET version = excluded.version, body = excluded.body");
    if (!upsert.ok()) return upsert.status();
    return (*upsert)
        ->bind(1, device_name)
        .bind(2, static_cast<int64_t>(state.version()))
        .bind_blob(3, *body)
        .run();
  }

  absl::StatusOr<std::optional<DesiredState>> get_desired_state(
      const std::string& device_name) override {
    absl::StatusOr<StatementLease> select =
        statement("SELECT version, body FROM desired_states WHERE device = ?1");
    if (!select.ok()) return select.status();
    (*select)->bind(1, device_name);
    absl::StatusOr<bool> row = (*select)->step();
    if (!row.ok()) return row.status();
    if (!*row) return std::nullopt;
    absl::StatusOr<DesiredState> state = parse_stored_desired_state(
        name_, device_name, (*select)->column_int64(0), (*select)->column_blob(1));
    if (!state.ok()) return state.status();
    return *std::move(state);
  }

  absl::Status delete_desired_state(const std::string& device_name) override {
    absl::StatusOr<StatementLease> remove =
        statement("DELETE FROM desired_states WHERE device = ?1 RETURNING device");
    if (!remove.ok()) return remove.status();
    (*remove)->bind(1, device_name);
    return deleted_or_not_found(*remove, absl::StrCat("desired state of device ", device_name));
  }

  absl::StatusOr<uint64_t> next_counter(const std::string& counter) override {
    absl::StatusOr<StatementLease> increment = statement(
        "INSERT INTO counters (name, value) VALUES (?1, 1) "
        "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value");
    if (!increment.ok()) return increment.status();
    (*increment)->bind(1, counter);
    absl::StatusOr<bool> row = (*increment)->step();
    if (!row.ok()) return row.status();
    if (!*row) {
      return absl::InternalError(absl::StrCat(name_, ": counter ", counter, ": no value returned"));
    }
    const int64_t value = (*increment)->column_int64(0);
    if (absl::Status finished = (*increment)->run(); !finished.ok()) return finished;
    if (value < 1) {
      return absl::DataLossError(
          absl::StrCat(name_, ": counter ", counter, ": stored value ", value, " is corrupt"));
    }
    return static_cast<uint64_t>(value);
  }

  absl::StatusOr<uint64_t> read_counter(const std::string& counter) override {
    absl::StatusOr<StatementLease> select = statement("SELECT value FROM counters WHERE name = ?1");
    if (!select.ok()) return select.status();
    (*select)->bind(1, counter);
    absl::StatusOr<bool> row = (*select)->step();
    if (!row.ok()) return row.status();
    if (!*row) return 0;
    const int64_t value = (*select)->column_int64(0);
    if (value < 1) {
      return absl::DataLossError(
          absl::StrCat(name_, ": counter ", counter, ": stored value ", value, " is corrupt"));
    }
    return static_cast<uint64_t>(value);
  }

 private:
  absl::StatusOr<StatementLease> statement(std::string_view sql) {
    auto found = statements_.find(sql);
    if (found == statements_.end()) {
      absl::StatusOr<Statement> prepared = database_.prepare(sql);
      if (!prepared.ok()) return prepared.status();
      found = statements_.emplace(sql, std::make_unique<Statement>(*std::move(prepared))).first;
    }
    return StatementLease(found->second.get());
  }

  // For DELETE ... RETURNING: a row means something was deleted.
  absl::Status deleted_or_not_found(const StatementLease& remove, std::string_view what) {
    absl::StatusOr<bool> row = remove->step();
    if (!row.ok()) return row.status();
    if (!*row) {
      return absl::NotFoundError(absl::StrCat(name_, ": ", std::string(what), ": not found"));
    }
    return remove->run();
  }

  Database& database_;
  std::map<std::string_view, std::unique_ptr<Statement>>& statements_;
  const std::string name_;  // "sqlite:<path>", the prefix of this layer's errors
};

}  // namespace

SqliteStore::SqliteStore(std::unique_ptr<Database> database) : database_(std::move(database)) {}

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path) {
  absl::StatusOr<std::unique_ptr<Database>> database = Database::open(path, kMigrations);
  if (!database.ok()) return database.status();
  return std::unique_ptr<SqliteStore>(new SqliteStore(*std::move(database)));
}

absl::Status SqliteStore::run_transaction(
    const std::function<absl::Status(StoreTransaction&)>& body,
    const std::function<void()>& committed) {
  SqliteTransaction transaction(*database_, statements_);
  absl::Status status = database_->transaction([&] { return body(transaction); });
  if (status.ok()) committed();
  return status;
}

std::string SqliteStore::describe() const { return absl::StrCat("sqlite:", database_->path()); }

int SqliteStore::schema_version() const { return database_->schema_version(); }

}  // namespace tenon::controller

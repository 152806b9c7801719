// PostgresStore: the schema, its migrations and the StoreTransaction over one libpq connection.
// Statements are prepared once per connection and exchange values in binary, so that bodies
// travel as raw bytes (nothing to escape) and integers as 64-bit ones.
#include "postgres_store.h"

#include <endian.h>
#include <libpq-fe.h>

#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "object_meta.h"
#include "record_encoding.h"
#include "text/one_line.h"

namespace tenon::controller {
namespace {

using tenon::v1::DesiredState;
using tenon::v1::Object;
using tenon::v1::ObjectKind;

struct Migration {
  int version;
  const char* sql;
};

// Released migrations are never edited; a schema change is a new entry (see README.md). The
// tables are SQLite's (sqlite_store.cc). Object names compare as bytes (COLLATE "C"), so that
// lists come in the order SQLite gives them whatever the database's locale.
constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE objects (
  kind bigint NOT NULL,            -- tenon.v1.ObjectKind
  name text COLLATE "C" NOT NULL,  -- metadata.name
  body bytea NOT NULL,             -- serialized tenon.v1.Object
  PRIMARY KEY (kind, name)
);

CREATE TABLE bootstrap_tokens (
  token_hash text PRIMARY KEY,  -- lowercase hex sha256 of the secret
  device_name text NOT NULL,    -- empty: any device name
  uses_left bigint NOT NULL CHECK (uses_left >= 0),
  expire_unix_seconds bigint NOT NULL
);

CREATE TABLE bootstrap_token_labels (
  token_hash text NOT NULL REFERENCES bootstrap_tokens (token_hash) ON DELETE CASCADE,
  key text NOT NULL,
  value text NOT NULL,
  PRIMARY KEY (token_hash, key)
);

CREATE TABLE device_credentials (
  device_name text PRIMARY KEY,
  credential_hash text NOT NULL,  -- lowercase hex sha256 of the secret
  issue_unix_seconds bigint NOT NULL
);

CREATE TABLE desired_states (
  device text PRIMARY KEY,
  version bigint NOT NULL,  -- DesiredState.version, copied out to check it only increases
  body bytea NOT NULL       -- serialized tenon.v1.DesiredState
);

CREATE TABLE counters (
  name text PRIMARY KEY,
  value bigint NOT NULL
);
)sql"},
};

constexpr bool migration_versions_in_order() {
  for (size_t i = 0; i < std::size(kMigrations); ++i) {
    if (kMigrations[i].version != static_cast<int>(i + 1) || kMigrations[i].sql == nullptr) {
      return false;
    }
  }
  return true;
}
static_assert(migration_versions_in_order(), "migration versions are 1, 2, 3... in order");

// Which migrations ran: one row, created before them since it is not part of any.
constexpr char kSchemaVersionTable[] = R"sql(
CREATE TABLE IF NOT EXISTS schema_version (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  version integer NOT NULL
);
INSERT INTO schema_version (version) VALUES (0) ON CONFLICT DO NOTHING;
)sql";

// Held (pg_advisory_xact_lock) while the schema version is read and changed, so that
// controllers starting together do not apply a migration twice. "tenon-v1" in ASCII.
constexpr int64_t kMigrationLock = 0x74656e6f6e2d7631;

// Serialization failures only come from other processes (this one runs a transaction at a
// time), so a few attempts are plenty; more would hide a livelock.
constexpr int kTransactionAttempts = 5;

// Type OIDs of the parameters and columns used here (pg_type.h is a server header).
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt4Oid = 23;
constexpr Oid kTextOid = 25;

constexpr int kBinaryFormat = 1;

// 40001 serialization_failure, 40P01 deadlock_detected: the transaction may succeed if run again.
bool is_serialization_failure(std::string_view sqlstate) {
  return sqlstate == "40001" || sqlstate == "40P01";
}

absl::StatusCode status_code_for(const char* sqlstate) {
  if (sqlstate == nullptr) return absl::StatusCode::kInternal;
  const std::string_view state(sqlstate);
  const std::string_view category = state.substr(0, 2);
  // 25P02: a statement after another failed, which is what the transaction ends with.
  if (is_serialization_failure(state) || state == "25P02") return absl::StatusCode::kAborted;
  // Connection exceptions, and the server shutting down or starting up.
  if (category == "08" || state == "57P01" || state == "57P02" || state == "57P03") {
    return absl::StatusCode::kUnavailable;
  }
  if (state == "23505") return absl::StatusCode::kAlreadyExists;  // unique_violation
  if (category == "23") return absl::StatusCode::kFailedPrecondition;
  if (category == "22") return absl::StatusCode::kInvalidArgument;  // data exception
  if (category == "53") return absl::StatusCode::kResourceExhausted;
  if (category == "28" || state == "42501") return absl::StatusCode::kPermissionDenied;
  if (state == "57014") return absl::StatusCode::kCancelled;  // query_canceled
  if (state == "XX001" || state == "XX002") return absl::StatusCode::kDataLoss;
  return absl::StatusCode::kInternal;
}

// libpq quotes a URL it cannot parse in its message: whatever stands between the user name's
// ':' and the last '@' (the password, even one that should have been percent-encoded) is masked.
std::string redact_password(std::string message, const std::string& url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return message;
  const size_t authority = scheme_end + 3;
  const size_t query = url.find('?', authority);
  const size_t at = url.rfind('@', query == std::string::npos ? std::string::npos : query);
  if (at == std::string::npos || at < authority) return message;
  const size_t colon = url.find(':', authority);
  if (colon == std::string::npos || colon >= at) return message;
  const std::string password = url.substr(colon + 1, at - colon - 1);
  if (password.empty()) return message;
  absl::StrReplaceAll({{password, "****"}}, &message);
  return message;
}

// "postgres://user@host:port/database" from what libpq resolved (defaults included).
std::string describe_connection(const PGconn* connection) {
  auto text = [](const char* value) { return std::string(value == nullptr ? "" : value); };
  return absl::StrCat("postgres://", text(PQuser(connection)), "@", text(PQhost(connection)), ":",
                      text(PQport(connection)), "/", text(PQdb(connection)));
}

// The parameters of one statement, all sent in binary: bytes as they are, integers as int8.
class Parameters {
 public:
  Parameters& integer(int64_t value) {
    const uint64_t big_endian = htobe64(static_cast<uint64_t>(value));
    return add(std::string(reinterpret_cast<const char*>(&big_endian), sizeof(big_endian)),
               kInt8Oid);
  }
  Parameters& text(const std::string& value) { return add(value, kTextOid); }
  Parameters& bytes(const std::string& value) { return add(value, kByteaOid); }

  const std::vector<std::string>& values() const { return values_; }
  const std::vector<Oid>& types() const { return types_; }

 private:
  Parameters& add(std::string value, Oid type) {
    values_.push_back(std::move(value));
    types_.push_back(type);
    return *this;
  }

  std::vector<std::string> values_;
  std::vector<Oid> types_;
};

// A PGresult, cleared when it goes out of scope.
class Result {
 public:
  explicit Result(PGresult* result) : result_(result) {}

  PGresult* get() const { return result_.get(); }
  ExecStatusType status() const { return PQresultStatus(result_.get()); }
  int rows() const { return PQntuples(result_.get()); }
  std::string command_status() const { return PQcmdStatus(result_.get()); }
  // A text or bytea column: in binary format both are their raw bytes.
  std::string bytes(int row, int column) const {
    return std::string(PQgetvalue(result_.get(), row, column),
                       static_cast<size_t>(PQgetlength(result_.get(), row, column)));
  }
  // An int8 or int4 column in binary format; nullopt for anything else (a NULL, another type).
  std::optional<int64_t> integer(int row, int column) const {
    if (PQgetisnull(result_.get(), row, column)) return std::nullopt;
    const char* value = PQgetvalue(result_.get(), row, column);
    const int length = PQgetlength(result_.get(), row, column);
    const Oid type = PQftype(result_.get(), column);
    if (type == kInt8Oid && length == sizeof(uint64_t)) {
      uint64_t big_endian = 0;
      std::memcpy(&big_endian, value, sizeof(big_endian));
      return static_cast<int64_t>(be64toh(big_endian));
    }
    if (type == kInt4Oid && length == sizeof(uint32_t)) {
      uint32_t big_endian = 0;
      std::memcpy(&big_endian, value, sizeof(big_endian));
      return static_cast<int32_t>(be32toh(big_endian));
    }
    return std::nullopt;
  }

 private:
  struct Clear {
    void operator()(PGresult* result) const { PQclear(result); }
  };
  std::unique_ptr<PGresult, Clear> result_;
};

}  // namespace

// One libpq connection: its prepared statements, errors as absl::Status naming the database and
// the SQL, and the first failure of the current transaction. PostgreSQL refuses every statement
// after one failed, so that first failure is what the transaction ends with.
class PostgresConnection {
 public:
  static absl::StatusOr<std::unique_ptr<PostgresConnection>> connect(const std::string& url);
  ~PostgresConnection() { PQfinish(connection_); }
  PostgresConnection(const PostgresConnection&) = delete;
  PostgresConnection& operator=(const PostgresConnection&) = delete;

  // "postgres://user@host:port/database", the prefix of this layer's errors.
  const std::string& name() const { return name_; }
  bool lost() const { return PQstatus(connection_) != CONNECTION_OK; }

  // Reconnects a lost connection and ends a transaction left open (by a body that threw).
  absl::Status ready();
  // Statements without parameters, several at once if need be; rows come as text.
  absl::StatusOr<Result> exec(const std::string& sql);
  // One statement with parameters, prepared at its first use on this connection (`sql` is a
  // literal: it keys the prepared statement); rows come in binary.
  absl::StatusOr<Result> query(std::string_view sql, const Parameters& parameters);
  // `begin`; body; COMMIT. Rolls back when the body or any statement in it failed.
  absl::Status transaction(const std::string& begin, const std::function<absl::Status()>& body);
  // Whether the last transaction failed on another transaction's writes (worth running again).
  bool serialization_failed() const { return serialization_failed_; }

 private:
  explicit PostgresConnection(PGconn* connection)
      : connection_(connection), name_(describe_connection(connection)) {}
  absl::Status failed(const PGresult* result, const std::string& operation);
  void rollback();

  PGconn* connection_;
  const std::string name_;
  std::map<std::string_view, std::string> prepared_;  // SQL → name of its prepared statement
  absl::Status failure_;  // the first failure since the transaction began
  bool serialization_failed_ = false;
};

absl::StatusOr<std::unique_ptr<PostgresConnection>> PostgresConnection::connect(
    const std::string& url) {
  if (!url.starts_with("postgres://") && !url.starts_with("postgresql://")) {
    return absl::InvalidArgumentError(
        "postgres store: expected a postgres:// or postgresql:// URL");
  }
  // Parsed first so that a malformed URL is InvalidArgument, not a failed connection.
  char* parse_error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &parse_error);
  if (options == nullptr) {
    const std::string message =
        parse_error == nullptr ? "out of memory" : tenon::text::one_line(parse_error);
    PQfreemem(parse_error);
    return absl::InvalidArgumentError(
        absl::StrCat("postgres store: invalid URL: ", redact_password(message, url)));
  }
  PQconninfoFree(options);
  // The URL's own parameters override those before it (expand_dbname); client_encoding comes
  // after, since text crosses the connection as UTF-8 whatever the URL says.
  const char* const keywords[] = {"application_name", "connect_timeout", "dbname",
                                  "client_encoding", nullptr};
  const char* const values[] = {"tenon-controller", "10", url.c_str(), "UTF8", nullptr};
  PGconn* connection = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (connection == nullptr) {
    return absl::ResourceExhaustedError("postgres store: libpq could not allocate a connection");
  }
  // Notices ("relation ... already exists, skipping") are not errors, and this library reports
  // through statuses rather than on the controller's stderr.
  PQsetNoticeProcessor(
      connection, [](void*, const char*) {}, nullptr);
  std::unique_ptr<PostgresConnection> result(new PostgresConnection(connection));
  if (result->lost()) {
    return absl::UnavailableError(absl::StrCat(
        result->name(), ": cannot connect: ", tenon::text::one_line(PQerrorMessage(connection))));
  }
  return result;
}

absl::Status PostgresConnection::failed(const PGresult* result, const std::string& operation) {
  const char* sqlstate = result == nullptr ? nullptr : PQresultErrorField(result, PG_DIAG_SQLSTATE);
  const char* primary =
      result == nullptr ? nullptr : PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  std::string message =
      tenon::text::one_line(primary != nullptr ? primary : PQerrorMessage(connection_));
  absl::StatusCode code = status_code_for(sqlstate);
  if (lost()) {
    code = absl::StatusCode::kUnavailable;
    message = absl::StrCat("connection lost: ", message);
  }
  if (sqlstate != nullptr) absl::StrAppend(&message, " (SQLSTATE ", sqlstate, ")");
  absl::Status status(code, absl::StrCat(name_, ": ", operation, ": ", message));
  if (failure_.ok()) {
    failure_ = status;
    serialization_failed_ = sqlstate != nullptr && is_serialization_failure(sqlstate);
  }
  return status;
}

void PostgresConnection::rollback() {
  if (lost() || PQtransactionStatus(connection_) == PQTRANS_IDLE) return;
  // Its failure needs no report: the connection is then lost, and the next transaction resets it.
  Result ignored(PQexec(connection_, "ROLLBACK"));
}

absl::Status PostgresConnection::ready() {
  if (lost()) {
    PQreset(connection_);
    prepared_.clear();  // they lived in the server session that was lost
    if (lost()) {
      return absl::UnavailableError(absl::StrCat(
          name_, ": reconnecting: ", tenon::text::one_line(PQerrorMessage(connection_))));
    }
  }
  rollback();
  return absl::OkStatus();
}

absl::StatusOr<Result> PostgresConnection::exec(const std::string& sql) {
  Result result(PQexec(connection_, sql.c_str()));
  if (result.status() != PGRES_COMMAND_OK && result.status() != PGRES_TUPLES_OK) {
    return failed(result.get(), absl::StrCat("`", tenon::text::shorten_sql(sql), "`"));
  }
  return result;
}

absl::StatusOr<Result> PostgresConnection::query(std::string_view sql,
                                                 const Parameters& parameters) {
  const int count = static_cast<int>(parameters.values().size());
  auto found = prepared_.find(sql);
  if (found == prepared_.end()) {
    std::string statement_name = absl::StrCat("tenon_", prepared_.size() + 1);
    const std::string text(sql);
    Result prepared(PQprepare(connection_, statement_name.c_str(), text.c_str(), count,
                              parameters.types().data()));
    if (prepared.status() != PGRES_COMMAND_OK) {
      return failed(prepared.get(), absl::StrCat("prepare `", tenon::text::shorten_sql(sql), "`"));
    }
    found = prepared_.emplace(sql, std::move(statement_name)).first;
  }
  std::vector<const char*> values;
  std::vector<int> lengths;
  const std::vector<int> formats(parameters.values().size(), kBinaryFormat);
  for (const std::string& value : parameters.values()) {
    if (value.size() > static_cast<size_t>(INT_MAX)) {
      return absl::InvalidArgumentError(absl::StrCat(name_, ": `", tenon::text::shorten_sql(sql),
                                                     "`: a ", value.size(), "-byte parameter"));
    }
    values.push_back(value.data());
    lengths.push_back(static_cast<int>(value.size()));
  }
  Result result(PQexecPrepared(connection_, found->second.c_str(), count, values.data(),
                               lengths.data(), formats.data(), kBinaryFormat));
  if (result.status() != PGRES_COMMAND_OK && result.status() != PGRES_TUPLES_OK) {
    return failed(result.get(), absl::StrCat("`", tenon::text::shorten_sql(sql), "`"));
  }
  return result;
}

absl::Status PostgresConnection::transaction(const std::string& begin,
                                             const std::function<absl::Status()>& body) {
  failure_ = absl::OkStatus();
  serialization_failed_ = false;
  if (absl::StatusOr<Result> begun = exec(begin); !begun.ok()) return begun.status();
  absl::Status status = body();
  // A body that went on after a failed statement still ends with that failure: PostgreSQL
  // would turn its COMMIT into a ROLLBACK.
  if (status.ok() && !failure_.ok()) status = failure_;
  if (!status.ok()) {
    rollback();
    return status;
  }
  absl::StatusOr<Result> committed = exec("COMMIT");
  if (!committed.ok()) {
    if (lost()) {
      return absl::UnavailableError(absl::StrCat(committed.status().message(),
                                                 "; whether the transaction committed is unknown"));
    }
    rollback();
    return committed.status();
  }
  if (committed->command_status() != "COMMIT") {
    return absl::AbortedError(absl::StrCat(name_, ": COMMIT: the server rolled back instead (",
                                           committed->command_status(), ")"));
  }
  return absl::OkStatus();
}

namespace {

class PostgresTransaction : public StoreTransaction {
 public:
  explicit PostgresTransaction(PostgresConnection& connection)
      : connection_(connection), name_(connection.name()) {}

  absl::StatusOr<std::optional<Object>> get_object(ObjectKind kind,
                                                   const std::string& name) override {
    absl::StatusOr<Result> found =
        connection_.query("SELECT body FROM objects WHERE kind = $1 AND name = $2",
                          Parameters().integer(kind).text(name));
    if (!found.ok()) return found.status();
    if (found->rows() == 0) return std::nullopt;
    absl::StatusOr<Object> object = parse_stored_object(name_, kind, name, found->bytes(0, 0));
    if (!object.ok()) return object.status();
    return *std::move(object);
  }

  absl::StatusOr<std::vector<Object>> list_objects(ObjectKind kind) override {
    absl::StatusOr<Result> found = connection_.query(
        "SELECT name, body FROM objects WHERE kind = $1 ORDER BY name", Parameters().integer(kind));
    if (!found.ok()) return found.status();
    std::vector<Object> objects;
    for (int row = 0; row < found->rows(); ++row) {
      absl::StatusOr<Object> object =
          parse_stored_object(name_, kind, found->bytes(row, 0), found->bytes(row, 1));
      if (!object.ok()) return object.status();
      objects.push_back(*std::move(object));
    }
    return objects;
  }

  absl::Status put_object(const Object& object) override {
    absl::StatusOr<ObjectRow> row = object_row(name_, object);
    if (!row.ok()) return row.status();
    return connection_
        .query(
            "INSERT INTO objects (kind, name, body) VALUES ($1, $2, $3) "
            "ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body",
            Parameters().integer(row->kind).text(row->name).bytes(row->body))
        .status();
  }

  absl::Status delete_object(ObjectKind kind, const std::string& name) override {
    return deleted_or_not_found(
        connection_.query("DELETE FROM objects WHERE kind = $1 AND name = $2 RETURNING name",
                          Parameters().integer(kind).text(name)),
        absl::StrCat("object ", kind_name(kind), "/", name));
  }

  absl::Status put_bootstrap_token(const BootstrapTokenRecord& token) override {
    if (token.token_hash.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name_, ": put_bootstrap_token: empty token_hash"));
    }
    absl::StatusOr<Result> upserted = connection_.query(
        "INSERT INTO bootstrap_tokens (token_hash, device_name, uses_left, expire_unix_seconds) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (token_hash) DO UPDATE SET "
        "device_name = excluded.device_name, uses_left = excluded.uses_left, "
        "expire_unix_seconds = excluded.expire_unix_seconds",
        Parameters()
            .text(token.token_hash)
            .text(token.device_name)
            .integer(token.uses_left)
            .integer(token.expire_unix_seconds));
    if (!upserted.ok()) return upserted.status();
    absl::StatusOr<Result> cleared =
        connection_.query("DELETE FROM bootstrap_token_labels WHERE token_hash = $1",
                          Parameters().text(token.token_hash));
    if (!cleared.ok()) return cleared.status();
    for (const auto& [key, value] : token.labels) {
      absl::StatusOr<Result> inserted = connection_.query(
          "INSERT INTO bootstrap_token_labels (token_hash, key, value) VALUES ($1, $2, $3)",
          Parameters().text(token.token_hash).text(key).text(value));
      if (!inserted.ok()) return inserted.status();
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<BootstrapTokenRecord>> get_bootstrap_token(
      const std::string& token_hash) override {
    absl::StatusOr<Result> found = connection_.query(
        "SELECT device_name, uses_left, expire_unix_seconds FROM bootstrap_tokens "
        "WHERE token_hash = $1",
        Parameters().text(token_hash));
    if (!found.ok()) return found.status();
    if (found->rows() == 0) return std::nullopt;
    const std::string what = absl::StrCat("bootstrap token ", token_hash);
    absl::StatusOr<int64_t> uses_left = integer(*found, 0, 1, what);
    if (!uses_left.ok()) return uses_left.status();
    absl::StatusOr<int64_t> expire_unix_seconds = integer(*found, 0, 2, what);
    if (!expire_unix_seconds.ok()) return expire_unix_seconds.status();
    if (*uses_left < 0 || *uses_left > std::numeric_limits<uint32_t>::max()) {
      return absl::DataLossError(
          absl::StrCat(name_, ": ", what, ": uses_left ", *uses_left, " out of range"));
    }
    BootstrapTokenRecord token;
    token.token_hash = token_hash;
    token.device_name = found->bytes(0, 0);
    token.uses_left = static_cast<uint32_t>(*uses_left);
    token.expire_unix_seconds = *expire_unix_seconds;
    absl::StatusOr<Result> labels = connection_.query(
        "SELECT key, value FROM bootstrap_token_labels WHERE token_hash = $1 ORDER BY key",
        Parameters().text(token_hash));
    if (!labels.ok()) return labels.status();
    for (int row = 0; row < labels->rows(); ++row) {
      token.labels.emplace(labels->bytes(row, 0), labels->bytes(row, 1));
    }
    return token;
  }

  absl::Status delete_bootstrap_token(const std::string& token_hash) override {
    // The labels go with it (ON DELETE CASCADE).
    return deleted_or_not_found(
        connection_.query("DELETE FROM bootstrap_tokens WHERE token_hash = $1 RETURNING token_hash",
                          Parameters().text(token_hash)),
        absl::StrCat("bootstrap token ", token_hash));
  }

  absl::Status put_device_credential(const DeviceCredentialRecord& credential) override {
    if (credential.device_name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name_, ": put_device_credential: empty device_name"));
    }
    return connection_
        .query(
            "INSERT INTO device_credentials (device_name, credential_hash, issue_unix_seconds) "
            "VALUES ($1, $2, $3) ON CONFLICT (device_name) DO UPDATE SET "
            "credential_hash = excluded.credential_hash, "
            "issue_unix_seconds = excluded.issue_unix_seconds",
            Parameters()
                .text(credential.device_name)
                .text(credential.credential_hash)
                .integer(credential.issue_unix_seconds))
        .status();
  }

  absl::StatusOr<std::optional<DeviceCredentialRecord>> get_device_credential(
      const std::string& device_name) override {
    absl::StatusOr<Result> found = connection_.query(
        "SELECT credential_hash, issue_unix_seconds FROM device_credentials "
        "WHERE device_name = $1",
        Parameters().text(device_name));
    if (!found.ok()) return found.status();
    if (found->rows() == 0) return std::nullopt;
    absl::StatusOr<int64_t> issue_unix_seconds =
        integer(*found, 0, 1, absl::StrCat("credential of device ", device_name));
    if (!issue_unix_seconds.ok()) return issue_unix_seconds.status();
    DeviceCredentialRecord credential;
    credential.device_name = device_name;
    credential.credential_hash = found->bytes(0, 0);
    credential.issue_unix_seconds = *issue_unix_seconds;
    return credential;
  }

  absl::Status delete_device_credential(const std::string& device_name) override {
    return deleted_or_not_found(
        connection_.query(
            "DELETE FROM device_credentials WHERE device_name = $1 RETURNING device_name",
            Parameters().text(device_name)),
        absl::StrCat("credential of device ", device_name));
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
    // SERIALIZABLE makes this read and the write below one step, even against other processes.
    absl::StatusOr<Result> found = connection_.query(
        "SELECT version FROM desired_states WHERE device = $1", Parameters().text(device_name));
    if (!found.ok()) return found.status();
    if (found->rows() > 0) {
      absl::StatusOr<int64_t> stored =
          integer(*found, 0, 0, absl::StrCat("desired state of device ", device_name));
      if (!stored.ok()) return stored.status();
      if (static_cast<int64_t>(state.version()) <= *stored) {
        return absl::FailedPreconditionError(absl::StrCat(what, ": version ", state.version(),
                                                          " is not newer than the stored version ",
                                                          *stored));
      }
    }
    absl::StatusOr<std::string> body = serialize_record(state, what);
    if (!body.ok()) return body.status();
    return connection_
        .query(
            "INSERT INTO desired_states (device, version, body) VALUES ($1, $2, $3) "
            "ON CONFLICT (device) DO UPDATE SET version = excluded.version, body = excluded.body",
            Parameters()
                .text(device_name)
                .integer(static_cast<int64_t>(state.version()))
                .bytes(*body))
        .status();
  }

  absl::StatusOr<std::optional<DesiredState>> get_desired_state(
      const std::string& device_name) override {
    absl::StatusOr<Result> found =
        connection_.query("SELECT version, body FROM desired_states WHERE device = $1",
                          Parameters().text(device_name));
    if (!found.ok()) return found.status();
    if (found->rows() == 0) return std::nullopt;
    absl::StatusOr<int64_t> version =
        integer(*found, 0, 0, absl::StrCat("desired state of device ", device_name));
    if (!version.ok()) return version.status();
    absl::StatusOr<DesiredState> state =
        parse_stored_desired_state(name_, device_name, *version, found->bytes(0, 1));
    if (!state.ok()) return state.status();
    return *std::move(state);
  }

  absl::Status delete_desired_state(const std::string& device_name) override {
    return deleted_or_not_found(
        connection_.query("DELETE FROM desired_states WHERE device = $1 RETURNING device",
                          Parameters().text(device_name)),
        absl::StrCat("desired state of device ", device_name));
  }

  absl::StatusOr<uint64_t> next_counter(const std::string& counter) override {
    absl::StatusOr<Result> incremented = connection_.query(
        "INSERT INTO counters (name, value) VALUES ($1, 1) "
        "ON CONFLICT (name) DO UPDATE SET value = counters.value + 1 RETURNING value",
        Parameters().text(counter));
    if (!incremented.ok()) return incremented.status();
    if (incremented->rows() == 0) {
      return absl::InternalError(absl::StrCat(name_, ": counter ", counter, ": no value returned"));
    }
    return counter_value(*incremented, counter);
  }

  absl::StatusOr<uint64_t> read_counter(const std::string& counter) override {
    absl::StatusOr<Result> found =
        connection_.query("SELECT value FROM counters WHERE name = $1", Parameters().text(counter));
    if (!found.ok()) return found.status();
    if (found->rows() == 0) return 0;
    return counter_value(*found, counter);
  }

 private:
  // For DELETE ... RETURNING: a row means something was deleted.
  absl::Status deleted_or_not_found(const absl::StatusOr<Result>& removed,
                                    const std::string& what) {
    if (!removed.ok()) return removed.status();
    if (removed->rows() == 0)
      return absl::NotFoundError(absl::StrCat(name_, ": ", what, ": not found"));
    return absl::OkStatus();
  }

  // An integer column of `what`; DataLoss when it holds something else (a table changed by hand).
  absl::StatusOr<int64_t> integer(const Result& result, int row, int column,
                                  const std::string& what) {
    std::optional<int64_t> value = result.integer(row, column);
    if (!value) {
      return absl::DataLossError(absl::StrCat(name_, ": ", what, ": column ", column + 1,
                                              " does not hold a 64-bit integer"));
    }
    return *value;
  }

  absl::StatusOr<uint64_t> counter_value(const Result& result, const std::string& counter) {
    absl::StatusOr<int64_t> value = integer(result, 0, 0, absl::StrCat("counter ", counter));
    if (!value.ok()) return value.status();
    if (*value < 1) {
      return absl::DataLossError(
          absl::StrCat(name_, ": counter ", counter, ": stored value ", *value, " is corrupt"));
    }
    return static_cast<uint64_t>(*value);
  }

  PostgresConnection& connection_;
  const std::string& name_;
};

// Applies the migrations newer than the database's schema version, each in its own transaction
// together with the version it leaves, under the migration lock. Returns the version reached.
absl::StatusOr<int> migrate(PostgresConnection& connection) {
  const int newest_known = static_cast<int>(std::size(kMigrations));
  while (true) {
    int version = 0;
    bool applied = false;
    absl::Status status = connection.transaction("BEGIN", [&]() -> absl::Status {
      absl::StatusOr<Result> locked = connection.query("SELECT pg_advisory_xact_lock($1)",
                                                       Parameters().integer(kMigrationLock));
      if (!locked.ok()) return locked.status();
      if (absl::StatusOr<Result> created = connection.exec(kSchemaVersionTable); !created.ok()) {
        return created.status();
      }
      absl::StatusOr<Result> found =
          connection.query("SELECT version FROM schema_version", Parameters());
      if (!found.ok()) return found.status();
      std::optional<int64_t> stored = found->rows() == 1 ? found->integer(0, 0) : std::nullopt;
      if (!stored) {
        return absl::DataLossError(
            absl::StrCat(connection.name(), ": schema_version does not hold one version"));
      }
      version = static_cast<int>(*stored);
      if (version > newest_known) {
        return absl::FailedPreconditionError(
            absl::StrCat(connection.name(), ": schema version ", version,
                         " is newer than this program's newest (", newest_known,
                         "); refusing to open a database written by a newer release"));
      }
      if (version == newest_known) return absl::OkStatus();
      const Migration& migration = kMigrations[version];  // versions are 1, 2, 3...
      absl::StatusOr<Result> migrated = connection.exec(migration.sql);
      if (!migrated.ok()) {
        return absl::Status(migrated.status().code(),
                            absl::StrCat(migrated.status().message(), " (applying migration ",
                                         migration.version, ")"));
      }
      absl::StatusOr<Result> recorded = connection.query("UPDATE schema_version SET version = $1",
                                                         Parameters().integer(migration.version));
      if (!recorded.ok()) return recorded.status();
      applied = true;
      return absl::OkStatus();
    });
    if (!status.ok()) return status;
    if (!applied) return version;
  }
}

// Randomised so that two controllers that collided do not collide again in step.
void pause_before_retry(int attempt) {
  thread_local std::minstd_rand random(std::random_device{}());
  std::uniform_int_distribution<int> milliseconds(1, 5 << attempt);
  std::this_thread::sleep_for(std::chrono::milliseconds(milliseconds(random)));
}

}  // namespace

PostgresStore::PostgresStore(std::unique_ptr<PostgresConnection> connection, int schema_version)
    : connection_(std::move(connection)), schema_version_(schema_version) {}

PostgresStore::~PostgresStore() = default;

absl::StatusOr<std::unique_ptr<PostgresStore>> PostgresStore::open(const std::string& url) {
  absl::StatusOr<std::unique_ptr<PostgresConnection>> connection = PostgresConnection::connect(url);
  if (!connection.ok()) return connection.status();
  // Names and labels are UTF-8; a database in another encoding would refuse some of them.
  absl::StatusOr<Result> encoding = (*connection)->exec("SHOW server_encoding");
  if (!encoding.ok()) return encoding.status();
  const std::string server_encoding = encoding->rows() == 1 ? encoding->bytes(0, 0) : "";
  if (server_encoding != "UTF8") {
    return absl::FailedPreconditionError(absl::StrCat(
        (*connection)->name(), ": the database is encoded in ", server_encoding,
        "; the store needs UTF8 (CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)"));
  }
  absl::StatusOr<int> version = migrate(**connection);
  if (!version.ok()) return version.status();
  return std::unique_ptr<PostgresStore>(new PostgresStore(*std::move(connection), *version));
}

absl::Status PostgresStore::run_transaction(
    const std::function<absl::Status(StoreTransaction&)>& body,
    const std::function<void()>& committed) {
  if (absl::Status ready = connection_->ready(); !ready.ok()) return ready;
  PostgresTransaction transaction(*connection_);
  for (int attempt = 1;; ++attempt) {
    absl::Status status = connection_->transaction("BEGIN ISOLATION LEVEL SERIALIZABLE",
                                                   [&] { return body(transaction); });
    if (status.ok()) {
      committed();
      return status;
    }
    if (!connection_->serialization_failed()) return status;
    if (attempt == kTransactionAttempts) {
      return absl::Status(status.code(), absl::StrCat(status.message(), " (gave up after ",
                                                      kTransactionAttempts, " attempts)"));
    }
    pause_before_retry(attempt);
  }
}

std::string PostgresStore::describe() const { return connection_->name(); }

}  // namespace tenon::controller

// See controller.h. This file: the device side of the agent protocol (enrolment, the session's
// Hello, every agent message, image transfers) and the store writes of migration steps.
#include <openssl/crypto.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "controller.h"
#include "crypto/sha256.h"
#include "google/protobuf/util/message_differencer.h"
#include "object_meta.h"
#include "time/proto_time.h"
#include "random_ids.h"
#include "validate.h"

namespace tenon::controller {

namespace v1 = tenon::v1;

namespace {

bool equal_hashes(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

absl::StatusOr<v1::EnrollResponse> Controller::enroll(const v1::EnrollRequest& request) {
  v1::Object probe;
  probe.mutable_device()->mutable_metadata()->set_name(request.device_name());
  if (absl::Status valid = check_object(probe); !valid.ok()) return valid;
  if (request.bootstrap_token().empty()) {
    return absl::UnauthenticatedError("no bootstrap token");
  }
  if (request.profile().arch() == v1::ARCH_UNSPECIFIED) {
    return absl::InvalidArgumentError("profile.arch is unspecified");
  }
  const std::string& name = request.device_name();
  absl::MutexLock lock(&write_mutex_);
  v1::EnrollResponse response;
  ReplanOutcome outcome;
  absl::Status status = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    outcome = ReplanOutcome();
    const std::string token_hash = crypto::sha256_hex(request.bootstrap_token());
    absl::StatusOr<std::optional<BootstrapTokenRecord>> token = tx.get_bootstrap_token(token_hash);
    if (!token.ok()) return token.status();
    if (!token->has_value() || (*token)->uses_left == 0 ||
        (*token)->expire_unix_seconds < absl::ToUnixSeconds(absl::Now())) {
      return absl::UnauthenticatedError("bootstrap token unknown, expired or used up");
    }
    BootstrapTokenRecord record = **token;
    if (!record.device_name.empty() && record.device_name != name) {
      return absl::PermissionDeniedError(
          absl::StrCat("this bootstrap token enrolls device ", record.device_name, " only"));
    }
    absl::StatusOr<std::optional<DeviceCredentialRecord>> credential =
        tx.get_device_credential(name);
    if (!credential.ok()) return credential.status();
    if (credential->has_value() && record.device_name != name) {
      return absl::AlreadyExistsError(absl::StrCat(
          "device ", name, " is already enrolled; re-enrolling needs a token bound to it"));
    }
    absl::StatusOr<std::optional<v1::Object>> stored = tx.get_object(v1::OBJECT_KIND_DEVICE, name);
    if (!stored.ok()) return stored.status();
    const absl::Time now = absl::Now();
    v1::Object object;
    if (stored->has_value()) {
      object = **stored;
    } else {
      v1::ObjectMeta* meta = object.mutable_device()->mutable_metadata();
      meta->set_name(name);
      meta->set_uid(new_uid());
      meta->set_generation(1);
      *meta->mutable_create_time() = time::to_proto(now);
      *meta->mutable_update_time() = time::to_proto(now);
    }
    v1::Device* device = object.mutable_device();
    for (const auto& [key, value] : record.labels) {
      (*device->mutable_metadata()->mutable_labels())[key] = value;
    }
    v1::DeviceStatus* device_status = device->mutable_status();
    device_status->set_connection_state(v1::CONNECTION_STATE_DISCONNECTED);
    *device_status->mutable_profile() = request.profile();
    *device_status->mutable_enroll_time() = time::to_proto(now);
    if (absl::Status put = tx.put_object(object); !put.ok()) return put;
    const std::string secret = absl::StrCat("tenon-device-", random_hex(32));
    DeviceCredentialRecord issued;
    issued.device_name = name;
    issued.credential_hash = crypto::sha256_hex(secret);
    issued.issue_unix_seconds = absl::ToUnixSeconds(now);
    if (absl::Status put = tx.put_device_credential(issued); !put.ok()) return put;
    record.uses_left -= 1;
    absl::Status token_update = record.uses_left == 0 ? tx.delete_bootstrap_token(token_hash)
                                                      : tx.put_bootstrap_token(record);
    if (!token_update.ok()) return token_update;
    response.set_device_name(name);
    response.set_device_uid(device->metadata().uid());
    response.set_credential(secret);
    return replan(tx, {name}, &outcome);
  });
  if (!status.ok()) return status;
  finish(outcome);
  // A re-enrolment revokes the old credential and with it the old stream.
  sessions_.close(name,
                  absl::PermissionDeniedError("the device re-enrolled; this credential is revoked"),
                  SessionHub::Ending::kKeepDevice);
  return response;
}

absl::Status Controller::open_session(const std::shared_ptr<AgentSession>& session,
                                      const v1::Hello& hello) {
  const std::string& name = hello.device_name();
  std::optional<v1::DesiredState> desired;
  ReplanOutcome outcome;
  bool profile_changed = false;
  // Authentication reads only; the write path's lock is taken only when the profile changed.
  absl::Status status = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    absl::StatusOr<std::optional<DeviceCredentialRecord>> credential =
        tx.get_device_credential(name);
    if (!credential.ok()) return credential.status();
    if (!credential->has_value() ||
        !equal_hashes((*credential)->credential_hash, crypto::sha256_hex(hello.credential()))) {
      return absl::UnauthenticatedError(
          absl::StrCat("unknown device ", name, " or wrong credential"));
    }
    absl::StatusOr<std::optional<v1::Object>> device = tx.get_object(v1::OBJECT_KIND_DEVICE, name);
    if (!device.ok()) return device.status();
    if (!device->has_value()) {
      return absl::PermissionDeniedError(absl::StrCat("device ", name, " was deleted"));
    }
    profile_changed =
        hello.has_profile() && !google::protobuf::util::MessageDifferencer::Equals(
                                   (**device).device().status().profile(), hello.profile());
    absl::StatusOr<std::optional<v1::DesiredState>> stored = tx.get_desired_state(name);
    if (!stored.ok()) return stored.status();
    desired = std::move(*stored);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  sessions_.attach(name, session, hello.acknowledged_desired_state_version(),
                   {hello.image_digests().begin(), hello.image_digests().end()});
  for (const v1::InstanceStatusUpdate& update : hello.instances()) {
    if (reported_.record_status(name, update)) migrations_.on_status(name, update);
  }
  v1::ControllerMessage welcome;
  v1::Welcome* body = welcome.mutable_welcome();
  *body->mutable_controller_time() = time::to_proto(absl::Now());
  *body->mutable_ping_interval() = time::to_proto(config_.ping_interval);
  *body->mutable_telemetry_interval() = time::to_proto(config_.telemetry_interval);
  body->set_max_chunk_bytes(config_.max_chunk_bytes);
  body->set_controller_version(config_.version);
  session->send(std::move(welcome));
  if (profile_changed) {
    absl::MutexLock lock(&write_mutex_);
    status = store_->transact([&](StoreTransaction& tx) -> absl::Status {
      outcome = ReplanOutcome();
      absl::StatusOr<std::optional<v1::Object>> device =
          tx.get_object(v1::OBJECT_KIND_DEVICE, name);
      if (!device.ok()) return device.status();
      if (!device->has_value()) {
        return absl::PermissionDeniedError(absl::StrCat("device ", name, " was deleted"));
      }
      *(**device).mutable_device()->mutable_status()->mutable_profile() = hello.profile();
      if (absl::Status put = tx.put_object(**device); !put.ok()) return put;
      if (absl::Status planned = replan(tx, {name}, &outcome); !planned.ok()) return planned;
      absl::StatusOr<std::optional<v1::DesiredState>> stored = tx.get_desired_state(name);
      if (!stored.ok()) return stored.status();
      desired = std::move(*stored);
      return absl::OkStatus();
    });
    if (!status.ok()) return status;
    finish(outcome);
  }
  // Sent unless the agent holds it already (or finish just sent it).
  if (desired.has_value()) {
    const bool sent_now = std::any_of(outcome.to_send.begin(), outcome.to_send.end(),
                                      [&](const auto& entry) { return entry.first == name; });
    if (!sent_now && desired->version() > hello.acknowledged_desired_state_version()) {
      send_desired_state(name, std::make_shared<const v1::DesiredState>(*std::move(desired)));
    } else if (!sent_now) {
      for (v1::ConsoleSubscription& subscription : reported_.console_subscriptions(*desired)) {
        v1::ControllerMessage message;
        *message.mutable_console_subscription() = std::move(subscription);
        sessions_.send(name, std::move(message));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Controller::handle(const std::string& device,
                                const std::shared_ptr<AgentSession>& session,
                                const v1::AgentMessage& message) {
  if (!sessions_.touch(device, session.get())) {
    return absl::AbortedError("this stream is no longer the device's session");
  }
  switch (message.kind_case()) {
    case v1::AgentMessage::kHello:
      return absl::FailedPreconditionError("a second Hello on one stream");
    case v1::AgentMessage::kInstanceStatus:
      if (reported_.record_status(device, message.instance_status())) {
        migrations_.on_status(device, message.instance_status());
      }
      break;
    case v1::AgentMessage::kTelemetry:
      for (const v1::InstanceTelemetry& sample : message.telemetry().instances()) {
        reported_.record_telemetry(device, sample);
      }
      break;
    case v1::AgentMessage::kAck: {
      const v1::Ack& ack = message.ack();
      if (ack.desired_state_version() != 0) {
        if (ack.outcome() == v1::ACK_OUTCOME_REJECTED) {
          sessions_.reject(device, ack.message());
        } else {
          sessions_.acknowledge(device, ack.desired_state_version());
        }
      }
      break;
    }
    case v1::AgentMessage::kImageRequest:
      return handle_image_request(device, *session, message.image_request(), message.sequence());
    case v1::AgentMessage::kConsole:
      reported_.append_console(device, message.console());
      break;
    case v1::AgentMessage::kSnapshotUpload:
      migrations_.on_snapshot_upload(device, message.snapshot_upload());
      break;
    case v1::AgentMessage::KIND_NOT_SET:
      return absl::InvalidArgumentError(
          absl::StrCat("message ", message.sequence(), " carries no kind"));
  }
  return absl::OkStatus();
}

absl::Status Controller::handle_image_request(const std::string& device, AgentSession& session,
                                              const v1::ImageRequest& request, uint64_t sequence) {
  auto reply_error = [&](int code, std::string text) {
    v1::ControllerMessage reply;
    reply.mutable_error()->set_code(code);
    reply.mutable_error()->set_message(std::move(text));
    reply.mutable_error()->set_related_sequence(sequence);
    session.send(std::move(reply));
    return absl::OkStatus();
  };
  // Only images of the device's own instances are served: checked against the desired state
  // the hub holds, or the stored one when none was sent since the controller started.
  std::shared_ptr<const v1::DesiredState> desired = sessions_.desired_state(device);
  if (desired == nullptr) {
    absl::Status lookup = store_->transact([&](StoreTransaction& tx) -> absl::Status {
      absl::StatusOr<std::optional<v1::DesiredState>> stored = tx.get_desired_state(device);
      if (!stored.ok()) return stored.status();
      if (stored->has_value()) desired = std::make_shared<const v1::DesiredState>(**stored);
      return absl::OkStatus();
    });
    if (!lookup.ok()) return lookup;
  }
  const bool wanted = desired != nullptr && !request.digest().empty() &&
                      std::any_of(desired->instances().begin(), desired->instances().end(),
                                  [&](const v1::DesiredInstance& instance) {
                                    return instance.image_digest() == request.digest() ||
                                           instance.restore_snapshot_digest() == request.digest();
                                  });
  if (!wanted) {
    return reply_error(
        5, absl::StrCat("image ", request.digest(), " is not in this device's desired state"));
  }
  absl::StatusOr<std::shared_ptr<const ImageChunks>> chunks = image_chunks(request.digest());
  if (!chunks.ok()) return reply_error(5, std::string(chunks.status().message()));
  const uint64_t total = (*chunks)->total_size_bytes;
  if (request.offset() > total) {
    return reply_error(
        11, absl::StrCat("offset ", request.offset(), " is beyond the image's ", total, " bytes"));
  }
  if (request.offset() == 0) ++image_transfers_;
  if (request.offset() == total && total > 0) {  // all held already: the end, and nothing else
    v1::ControllerMessage message;
    v1::ImageChunk* end = message.mutable_image_chunk();
    end->set_digest(request.digest());
    end->set_offset(total);
    end->set_total_size_bytes(total);
    end->set_chunk_sha256(crypto::sha256_hex(""));
    end->set_last(true);
    session.send(std::move(message));
  }
  for (const v1::ImageChunk& chunk : (*chunks)->chunks) {
    // A transfer resumed mid-chunk gets that chunk's tail, with its own checksum.
    if (chunk.offset() + chunk.data().size() <= request.offset() && total > 0) continue;
    v1::ControllerMessage message;
    v1::ImageChunk* sent = message.mutable_image_chunk();
    *sent = chunk;
    if (chunk.offset() < request.offset()) {
      sent->set_data(chunk.data().substr(request.offset() - chunk.offset()));
      sent->set_offset(request.offset());
      sent->set_chunk_sha256(crypto::sha256_hex(sent->data()));
    }
    image_bytes_sent_ += sent->data().size();
    session.send(std::move(message));
  }
  sessions_.add_image(device, request.digest());
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Controller::ImageChunks>> Controller::image_chunks(
    const std::string& digest) {
  {
    absl::MutexLock lock(&image_chunks_mutex_);
    for (const auto& [cached_digest, chunks] : image_chunks_) {
      if (cached_digest == digest) return chunks;
    }
  }
  absl::StatusOr<std::string> blob = blobs_->read(digest);
  if (!blob.ok()) return blob.status();
  auto chunks = std::make_shared<ImageChunks>();
  chunks->total_size_bytes = blob->size();
  uint64_t offset = 0;
  do {
    const uint64_t length = std::min<uint64_t>(config_.max_chunk_bytes, blob->size() - offset);
    v1::ImageChunk& chunk = chunks->chunks.emplace_back();
    chunk.set_digest(digest);
    chunk.set_offset(offset);
    chunk.set_data(blob->substr(offset, length));
    chunk.set_total_size_bytes(blob->size());
    chunk.set_chunk_sha256(crypto::sha256_hex(chunk.data()));
    offset += length;
    chunk.set_last(offset == blob->size());
  } while (offset < blob->size());
  absl::MutexLock lock(&image_chunks_mutex_);
  image_chunks_.emplace_back(digest, chunks);
  if (image_chunks_.size() > kImageChunksKept) image_chunks_.pop_front();
  return chunks;
}

void Controller::close_session(const std::string& device,
                               const std::shared_ptr<AgentSession>& session) {
  if (sessions_.detach(device, session.get())) device_disconnected(device);
}

void Controller::device_disconnected(const std::string& device) {
  reported_.device_disconnected(device);
  migrations_.on_disconnect(device);
}

absl::Status Controller::assign_instance(const std::string& instance, const std::string& device,
                                         const std::string& migrated_from) {
  absl::Status stored = store_->transact([&](StoreTransaction& tx) -> absl::Status {
    absl::StatusOr<std::optional<v1::Object>> object =
        tx.get_object(v1::OBJECT_KIND_INSTANCE, instance);
    if (!object.ok()) return object.status();
    if (!object->has_value()) {
      // Rolling back an instance deleted meanwhile leaves nothing to do.
      return migrated_from.empty() ? absl::OkStatus()
                                   : absl::AbortedError("the instance was deleted meanwhile");
    }
    v1::Instance* stored_instance = (**object).mutable_instance();
    stored_instance->mutable_spec()->set_device(device);
    if (!migrated_from.empty()) stored_instance->mutable_status()->set_migrated_from(migrated_from);
    return tx.put_object(**object);
  });
  if (!stored.ok()) return stored;
  reported_.move(instance, device);
  if (!migrated_from.empty()) reported_.set_migrated_from(instance, migrated_from);
  return absl::OkStatus();
}

}  // namespace tenon::controller

// See rollout.h.
#include "rollout.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "crypto/sha256.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "time/proto_time.h"

namespace tenon::controller {

namespace v1 = tenon::v1;

namespace {

std::string deterministic_bytes(const google::protobuf::Message& message) {
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  message.SerializeToCodedStream(&coded);
  coded.Trim();
  return bytes;
}

v1::DeploymentSpec without_rollout(const v1::DeploymentSpec& spec) {
  v1::DeploymentSpec copy = spec;
  copy.clear_rollout();
  return copy;
}

uint32_t wave_count(const v1::RolloutPolicy& policy, size_t matched) {
  if (policy.wave_size() == 0 || matched == 0) return 1;
  return static_cast<uint32_t>((matched + policy.wave_size() - 1) / policy.wave_size());
}

std::string wave_name(const v1::DeploymentStatus& status) {
  return absl::StrCat("wave ", status.wave(), " of ", status.waves(),
                      status.wave() == 1 ? " (canary)" : "");
}

}  // namespace

void record_event(absl::Time now, const std::string& reason, const std::string& message,
                  v1::DeploymentStatus* status) {
  v1::RolloutEvent* event = status->add_events();
  *event->mutable_time() = time::to_proto(now);
  event->set_revision(status->revision());
  event->set_wave(status->wave());
  event->set_reason(reason);
  event->set_message(message);
  while (static_cast<size_t>(status->events_size()) > kRolloutEventsKept) {
    status->mutable_events()->DeleteSubrange(0, 1);
  }
}

std::string revision_digest(const v1::DeploymentSpec& spec, const v1::AppSpec& app) {
  crypto::Sha256 hash;
  hash.add_field(deterministic_bytes(without_rollout(spec)));
  hash.add_field(deterministic_bytes(app));
  return hash.digest();
}

bool has_rollout_policy(const v1::DeploymentSpec& spec) {
  return spec.has_rollout() && spec.rollout().ByteSizeLong() > 0;
}

const v1::DeploymentRevision* find_revision(const v1::DeploymentStatus& status, uint64_t number) {
  for (const v1::DeploymentRevision& revision : status.revisions()) {
    if (revision.number() == number) return &revision;
  }
  return nullptr;
}

bool start_revision(const v1::DeploymentSpec& spec, const v1::AppSpec& app, size_t matched_devices,
                    absl::Time now, v1::DeploymentStatus* status) {
  const std::string digest = revision_digest(spec, app);
  const v1::DeploymentRevision* current = find_revision(*status, status->revision());
  const uint64_t current_number = current != nullptr ? current->number() : 0;
  if (current != nullptr && current->digest() == digest) {
    if (status->phase() != v1::ROLLOUT_PHASE_ROLLED_BACK) return false;
    // The spec and app are the revision rolled back to again (the manifest was reverted): the
    // rollback is settled, and the phase is the roll-up's once more.
    status->set_phase(v1::ROLLOUT_PHASE_UNSPECIFIED);
    status->set_wave(0);
    status->set_waves(0);
    status->clear_wave_start_time();
    status->clear_message();
    record_event(
        now, "SpecRestored",
        absl::StrCat("the deployment and its app are revision ", current_number, "'s again"),
        status);
    return true;
  }
  // What a failed rollout of the new revision returns to: the last revision that reached every
  // device. A rollout stopped part way (halted, paused, in its waves) never did, so it is the
  // one that revision fell back on.
  const uint64_t fallback =
      rollout_restricts_devices(*status) ? status->previous_revision() : current_number;
  const uint64_t number =
      status->revisions().empty() ? 1 : status->revisions().rbegin()->number() + 1;
  v1::DeploymentRevision* revision = status->add_revisions();
  revision->set_number(number);
  revision->set_digest(digest);
  *revision->mutable_spec() = without_rollout(spec);
  *revision->mutable_app() = app;
  *revision->mutable_create_time() = time::to_proto(now);
  status->set_previous_revision(fallback);
  status->set_revision(number);
  // The oldest go first, never the new revision or the one it falls back on.
  while (static_cast<size_t>(status->revisions_size()) > kRevisionsKept) {
    int oldest = 0;
    while (status->revisions(oldest).number() == number ||
           status->revisions(oldest).number() == fallback) {
      ++oldest;
    }
    status->mutable_revisions()->DeleteSubrange(oldest, 1);
  }
  const uint64_t previous = fallback;
  if (previous != 0 && has_rollout_policy(spec)) {
    status->set_phase(v1::ROLLOUT_PHASE_PROGRESSING);
    status->set_wave(1);
    status->set_waves(wave_count(spec.rollout(), matched_devices));
    *status->mutable_wave_start_time() = time::to_proto(now);
    status->set_message(absl::StrCat(wave_name(*status), " of revision ", number, " started"));
    record_event(now, "RevisionCreated",
                 absl::StrCat("revision ", number, " after ", previous, ", in ", status->waves(),
                              " waves of ", spec.rollout().wave_size(), " (0: all)"),
                 status);
    record_event(now, "WaveStarted", status->message(), status);
  } else {
    // At once: the phase is the roll-up's, from what the devices report.
    status->set_phase(v1::ROLLOUT_PHASE_UNSPECIFIED);
    status->set_wave(0);
    status->set_waves(0);
    status->clear_wave_start_time();
    status->clear_message();
    record_event(now, "RevisionCreated",
                 absl::StrCat("revision ", number, ", to every selected device at once"), status);
  }
  return true;
}

bool rollout_restricts_devices(const v1::DeploymentStatus& status) {
  return status.wave() > 0 &&
         (status.phase() == v1::ROLLOUT_PHASE_PROGRESSING ||
          status.phase() == v1::ROLLOUT_PHASE_PAUSED || status.phase() == v1::ROLLOUT_PHASE_HALTED);
}

absl::Status apply_control(const v1::ControlRolloutRequest& request, absl::Time now,
                           v1::DeploymentStatus* status) {
  const v1::RolloutPhase phase = status->phase();
  const bool staged = status->wave() > 0;
  const std::string phase_name = v1::RolloutPhase_Name(phase);
  auto refuse = [&](absl::string_view action) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot ", action, " a rollout in phase ", phase_name,
                     staged ? "" : " without waves (no staged rollout is under way)"));
  };
  switch (request.action()) {
    case v1::ControlRolloutRequest::ACTION_PAUSE:
      if (!staged || phase != v1::ROLLOUT_PHASE_PROGRESSING) return refuse("pause");
      status->set_phase(v1::ROLLOUT_PHASE_PAUSED);
      status->set_message(absl::StrCat(wave_name(*status), ": paused by an operator"));
      record_event(now, "Paused", status->message(), status);
      return absl::OkStatus();
    case v1::ControlRolloutRequest::ACTION_RESUME:
      if (!staged || (phase != v1::ROLLOUT_PHASE_PAUSED && phase != v1::ROLLOUT_PHASE_HALTED)) {
        return refuse("resume");
      }
      status->set_phase(v1::ROLLOUT_PHASE_PROGRESSING);
      *status->mutable_wave_start_time() = time::to_proto(now);
      status->set_message(absl::StrCat(wave_name(*status), " resumed by an operator"));
      record_event(now, "Resumed", status->message(), status);
      return absl::OkStatus();
    case v1::ControlRolloutRequest::ACTION_ABORT: {
      if (!staged || (phase != v1::ROLLOUT_PHASE_PROGRESSING && phase != v1::ROLLOUT_PHASE_PAUSED &&
                      phase != v1::ROLLOUT_PHASE_HALTED)) {
        return refuse("abort");
      }
      const uint64_t aborted = status->revision();
      status->set_phase(v1::ROLLOUT_PHASE_ROLLED_BACK);
      status->set_revision(status->previous_revision());
      status->set_previous_revision(aborted);
      status->set_message(absl::StrCat("revision ", aborted, " aborted by an operator in ",
                                       wave_name(*status), "; rolled back to revision ",
                                       status->revision()));
      record_event(now, "Aborted", status->message(), status);
      return absl::OkStatus();
    }
    case v1::ControlRolloutRequest::ACTION_UNDO: {
      uint64_t target = request.revision();
      if (target == 0) {
        // The newest kept revision before the current one.
        for (const v1::DeploymentRevision& revision : status->revisions()) {
          if (revision.number() < status->revision()) target = revision.number();
        }
      }
      if (target == 0 || find_revision(*status, target) == nullptr) {
        std::vector<std::string> kept;
        for (const v1::DeploymentRevision& revision : status->revisions()) {
          kept.push_back(absl::StrCat(revision.number()));
        }
        return absl::InvalidArgumentError(absl::StrCat(
            "revision ", request.revision() == 0 ? "before the current one" : absl::StrCat(target),
            " is not kept (kept: ", kept.empty() ? "none" : absl::StrJoin(kept, ", "), ")"));
      }
      if (target == status->revision()) {
        return absl::FailedPreconditionError(
            absl::StrCat("revision ", target, " is the current revision already"));
      }
      const uint64_t undone = status->revision();
      status->set_phase(v1::ROLLOUT_PHASE_ROLLED_BACK);
      status->set_revision(target);
      status->set_previous_revision(undone);
      status->set_wave(0);
      status->set_waves(0);
      status->set_message(absl::StrCat("undone by an operator: revision ", undone,
                                       " replaced by revision ", target, " on every device"));
      record_event(now, "Undone", status->message(), status);
      return absl::OkStatus();
    }
    default:
      return absl::InvalidArgumentError("action: PAUSE, RESUME, ABORT or UNDO");
  }
}

std::vector<std::string> wave_order(
    const std::string& deployment,
    const std::vector<
        std::pair<std::string, const google::protobuf::Map<std::string, std::string>*>>& devices) {
  std::vector<std::tuple<bool, std::string, std::string>> keyed;
  keyed.reserve(devices.size());
  for (const auto& [name, labels] : devices) {
    auto canary = labels->find("canary");
    const bool is_canary = canary != labels->end() && canary->second == "true";
    keyed.emplace_back(!is_canary, crypto::sha256_hex(absl::StrCat(deployment, "/", name)), name);
  }
  std::sort(keyed.begin(), keyed.end());
  std::vector<std::string> order;
  order.reserve(keyed.size());
  for (auto& entry : keyed) order.push_back(std::move(std::get<2>(entry)));
  return order;
}

size_t admitted_count(uint32_t wave, uint32_t waves, size_t matched) {
  if (wave == 0) return 0;
  if (wave >= waves) return matched;
  // The waves were sized when the rollout started; a fleet that grew or shrank since is spread
  // over the same number of waves.
  return (matched * wave + waves - 1) / waves;
}

RolloutDecision decide_rollout(const v1::RolloutPolicy& policy, const v1::DeploymentStatus& status,
                               absl::Time now, const std::vector<WaveMember>& admitted) {
  RolloutDecision decision;
  const std::string wave = wave_name(status);
  // The gate, on every device updated so far.
  std::vector<std::string> failed;
  uint64_t jobs = 0, misses = 0;
  size_t ready = 0;
  for (const WaveMember& member : admitted) {
    if (!member.on_revision) continue;
    if (member.failed) failed.push_back(member.device);
    if (member.running) {
      ++ready;
      jobs += member.jobs;
      misses += member.deadline_misses;
    }
  }
  std::string failure;
  if (!failed.empty()) {
    failure = absl::StrCat(
        "the instance on ", failed.front(),
        failed.size() > 1 ? absl::StrCat(" and ", failed.size() - 1, " more") : std::string(),
        " faulted or crashed");
  } else if (jobs > 0 && static_cast<double>(misses) / static_cast<double>(jobs) >
                             policy.max_deadline_miss_ratio()) {
    failure = absl::StrFormat(
        "deadline misses %d of %d jobs (ratio %.6g) on the updated devices, above the gate's %.6g",
        misses, jobs, static_cast<double>(misses) / static_cast<double>(jobs),
        policy.max_deadline_miss_ratio());
  }
  if (!failure.empty()) {
    decision.kind = policy.rollback_on_failure() ? RolloutDecision::Kind::kRollBack
                                                 : RolloutDecision::Kind::kHalt;
    decision.message = absl::StrCat(wave, " of revision ", status.revision(),
                                    " failed its health gate: ", failure);
    return decision;
  }
  // Waiting messages carry no live counts: each change of the message is a write of the
  // deployment (and a watch event), so it changes only when a device becomes ready.
  const std::string gate = absl::StrCat("deadline misses ", misses, " of ", jobs, " jobs so far");
  if (ready < admitted.size()) {
    decision.message = absl::StrCat(wave, ": ", ready, " of ", admitted.size(),
                                    " devices run revision ", status.revision());
    return decision;
  }
  absl::StatusOr<absl::Duration> bake = time::from_proto(policy.bake_time(), "bake_time");
  absl::StatusOr<absl::Time> started =
      time::from_proto(status.wave_start_time(), "wave_start_time");
  const absl::Time baked_at =
      (started.ok() ? *started : now) + (bake.ok() ? *bake : absl::ZeroDuration());
  if (now < baked_at) {
    decision.message =
        absl::StrCat(wave, ": every device runs revision ", status.revision(), ", baking until ",
                     absl::FormatTime("%H:%M:%SZ", baked_at, absl::UTCTimeZone()));
    return decision;
  }
  decision.kind = status.wave() < status.waves() ? RolloutDecision::Kind::kNextWave
                                                 : RolloutDecision::Kind::kComplete;
  decision.message = absl::StrCat(wave, " passed its health gate (", gate, ")");
  return decision;
}

void apply_decision(const RolloutDecision& decision, absl::Time now, v1::DeploymentStatus* status) {
  switch (decision.kind) {
    case RolloutDecision::Kind::kWait:
      status->set_message(decision.message);
      return;
    case RolloutDecision::Kind::kNextWave:
      record_event(now, "GatePassed", decision.message, status);
      status->set_wave(status->wave() + 1);
      *status->mutable_wave_start_time() = time::to_proto(now);
      status->set_message(absl::StrCat(decision.message, "; ", wave_name(*status), " started"));
      record_event(now, "WaveStarted", absl::StrCat(wave_name(*status), " started"), status);
      return;
    case RolloutDecision::Kind::kComplete:
      record_event(now, "GatePassed", decision.message, status);
      status->set_phase(v1::ROLLOUT_PHASE_COMPLETE);
      status->set_message(absl::StrCat(decision.message, "; revision ", status->revision(),
                                       " rolled out to every wave"));
      record_event(now, "Completed", status->message(), status);
      return;
    case RolloutDecision::Kind::kHalt:
      record_event(now, "GateFailed", decision.message, status);
      status->set_phase(v1::ROLLOUT_PHASE_HALTED);
      status->set_message(absl::StrCat(decision.message,
                                       "; halted: devices not yet updated keep "
                                       "revision ",
                                       status->previous_revision()));
      record_event(now, "Halted", status->message(), status);
      return;
    case RolloutDecision::Kind::kRollBack: {
      record_event(now, "GateFailed", decision.message, status);
      const uint64_t bad = status->revision();
      status->set_phase(v1::ROLLOUT_PHASE_ROLLED_BACK);
      status->set_revision(status->previous_revision());
      status->set_previous_revision(bad);
      status->set_message(
          absl::StrCat(decision.message, "; rolled back to revision ", status->revision()));
      record_event(now, "RolledBack", status->message(), status);
      return;
    }
  }
}

}  // namespace tenon::controller

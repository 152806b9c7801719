// Fuzzes the device side of the agent protocol: a real Controller (SQLite store, catalog, linker)
// with two enrolled devices, each running one instance, fed the input as one device's stream.
//
// Input: records of a control byte, a varint length and that many bytes of a serialized
// tenon.v1.AgentMessage. The control byte's low three bits choose what the record does:
//   0-4  Controller::handle on device A's current stream (as the gRPC adapter does: an error
//        ends the stream, and later records go to the ended stream until a reconnect);
//   5    handle on a stream that was never A's, which must be ABORTED;
//   6    handle naming device B over A's stream, which must be ABORTED;
//   7    reconnect: close A's stream and open a new one with the message's Hello, its name and
//        credential made A's unless the top bit is set (then it must be refused), and its
//        profile, when it has one, made A's enrolled profile (a new profile replans and links
//        an image: too slow per input, and the operator side's business).
// A payload that does not parse ends the stream, as the gRPC layer would.
//
// After every input: B's instance reports exactly what it did before, B's stream is open and
// heard nothing, every image chunk sent to A carries its own checksum and belongs to an image of
// A's desired state, and the controller still answers get, list and its snapshot. Each input
// starts from a fresh stream for A whose Hello resets A's instance to Running, so inputs depend
// on each other only through console and telemetry tails (bounded).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "blob_store.h"
#include "controller.h"
#include "crypto/sha256.h"
#include "example_objects.h"
#include "fleet_composer.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/message_differencer.h"
#include "recording_session.h"
#include "simulated_devices.h"
#include "sqlite_store.h"
#include "tenonctl_defaults.h"

namespace {

namespace v1 = tenon::v1;
using tenon::controller::Controller;
using tenon::controller::RecordingSession;

constexpr char kDeviceA[] = "edge-a";  // the fuzzed stream's device
constexpr char kDeviceB[] = "edge-b";  // its neighbour, whose instance must stay untouched

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "agent_stream_fuzz: %s\n", what.c_str());
  std::abort();
}

void expect_ok(const absl::Status& status, const char* what) {
  if (!status.ok()) fail(std::string(what) + ": " + status.ToString());
}

std::vector<v1::Object> fleet_objects() {
  std::vector<v1::Object> objects;
  for (const char* name : {kDeviceA, kDeviceB}) {
    objects.push_back(tenon::test_support::site_device(name, "lab"));
  }
  objects.push_back(tenon::test_support::control_loop_app());
  v1::Deployment* deployment = objects.emplace_back().mutable_deployment();
  deployment->mutable_metadata()->set_name("control");
  deployment->mutable_spec()->set_app("control");
  (*deployment->mutable_spec()->mutable_selector()->mutable_match_labels())["site"] = "lab";
  return objects;
}

// The controller and what the checks compare against; built once per process (it links an image).
struct Fleet {
  std::string dir;
  std::unique_ptr<tenon::controller::Store> store;
  std::unique_ptr<tenon::controller::BlobStore> blobs;
  std::unique_ptr<tenon::controller::FleetComposer> composer;
  std::unique_ptr<Controller> controller;
  v1::Hello hello_a;  // A's Hello at the start of every input: its instance Running
  std::string instance_a;
  std::string instance_b;
  std::set<std::string> images_a;  // digests A may be sent
  v1::InstanceStatus status_b;     // what B's instance reports, for good
  std::shared_ptr<RecordingSession> session_b;
  // Never attached: a stream that is not the device's.
  std::shared_ptr<RecordingSession> foreign = std::make_shared<RecordingSession>();
};

std::string enroll(Controller& controller, const std::string& name) {
  v1::CreateBootstrapTokenRequest token_request;
  token_request.set_device_name(name);
  absl::StatusOr<v1::CreateBootstrapTokenResponse> token =
      controller.create_bootstrap_token(token_request);
  expect_ok(token.status(), "bootstrap token");
  v1::EnrollRequest request;
  request.set_bootstrap_token(token->token());
  request.set_device_name(name);
  *request.mutable_profile() = tenon::test_support::simulated_device_profile();
  absl::StatusOr<v1::EnrollResponse> enrolled = controller.enroll(request);
  expect_ok(enrolled.status(), "enrolment");
  return enrolled->credential();
}

// The one instance of the desired state the device was sent.
const v1::DesiredInstance& desired_instance(const std::vector<v1::ControllerMessage>& messages,
                                            const char* device) {
  const v1::DesiredState* desired = nullptr;
  for (const v1::ControllerMessage& message : messages) {
    if (message.has_desired_state()) desired = &message.desired_state();
  }
  if (desired == nullptr || desired->instances_size() != 1) {
    fail(std::string(device) + " was not sent a desired state with one instance");
  }
  return desired->instances(0);
}

v1::Object get(Controller& controller, v1::ObjectKind kind, const std::string& name) {
  v1::GetRequest request;
  request.set_kind(kind);
  request.set_name(name);
  absl::StatusOr<v1::Object> object = controller.get(request);
  expect_ok(object.status(), "get");
  return *std::move(object);
}

Fleet* make_fleet() {
  // Payloads that do not parse (invalid UTF-8 in a string field, say) are routine here, and
  // protobuf would log every one.
  google::protobuf::SetLogHandler(nullptr);
  auto* fleet = new Fleet();
  char pattern[] = "/tmp/tenon-agent-stream-fuzz-XXXXXX";
  if (::mkdtemp(pattern) == nullptr) fail("mkdtemp failed");
  fleet->dir = pattern;
  // The fleet lives as long as the process; its files go when the process ends normally.
  static const std::string dir = fleet->dir;
  std::atexit([] { std::filesystem::remove_all(dir); });

  auto store = tenon::controller::SqliteStore::open(fleet->dir + "/controller.db");
  expect_ok(store.status(), "store");
  fleet->store = *std::move(store);
  auto blobs = tenon::controller::BlobStore::open(fleet->dir + "/blobs");
  expect_ok(blobs.status(), "blob store");
  fleet->blobs = std::make_unique<tenon::controller::BlobStore>(*std::move(blobs));
  namespace defaults = tenon::controller::defaults;
  tenon::controller::FleetComposerConfig config;
  config.catalog.source_root = defaults::kSourceRoot;
  config.catalog.archive_root = defaults::kArchiveRoot;
  config.builder.compiler = defaults::kCompiler;
  for (const char* option : defaults::kLinkOptions) config.builder.link_options.push_back(option);
  config.builder.linker_script = defaults::kLinkerScript;
  config.builder.cache_dir = fleet->dir + "/cache";
  auto composer = tenon::controller::FleetComposer::create(config, fleet->blobs.get());
  expect_ok(composer.status(), "composer (are the archives built?)");
  fleet->composer = *std::move(composer);
  auto controller = Controller::create(tenon::controller::ControllerConfig{}, fleet->store.get(),
                                       fleet->blobs.get(), fleet->composer.get());
  expect_ok(controller.status(), "controller");
  fleet->controller = *std::move(controller);
  Controller& c = *fleet->controller;

  v1::ApplyRequest apply;
  for (v1::Object& object : fleet_objects()) *apply.add_objects() = std::move(object);
  expect_ok(c.apply(apply).status(), "apply");
  const std::string credential_a = enroll(c, kDeviceA);
  const std::string credential_b = enroll(c, kDeviceB);

  v1::Hello hello;
  *hello.mutable_profile() = tenon::test_support::simulated_device_profile();
  hello.set_device_name(kDeviceB);
  hello.set_credential(credential_b);
  fleet->session_b = std::make_shared<RecordingSession>();
  expect_ok(c.open_session(fleet->session_b, hello), "B's Hello");
  auto session_a = std::make_shared<RecordingSession>();
  hello.set_device_name(kDeviceA);
  hello.set_credential(credential_a);
  expect_ok(c.open_session(session_a, hello), "A's Hello");
  c.wait_for_sends();

  const v1::DesiredInstance desired_b = desired_instance(fleet->session_b->take(), kDeviceB);
  fleet->instance_b = desired_b.name();
  const std::vector<v1::ControllerMessage> sent_a = session_a->take();
  const v1::DesiredInstance& desired_a = desired_instance(sent_a, kDeviceA);
  fleet->instance_a = desired_a.name();
  fleet->images_a = {desired_a.image_digest()};
  uint64_t version_a = 0;
  for (const v1::ControllerMessage& message : sent_a) {
    if (message.has_desired_state()) version_a = message.desired_state().version();
  }

  // B's instance runs; from now on only B could change that.
  v1::AgentMessage running;
  running.set_sequence(1);
  v1::InstanceStatusUpdate* update = running.mutable_instance_status();
  update->set_instance_name(fleet->instance_b);
  update->set_state(v1::INSTANCE_STATE_RUNNING);
  update->set_image_digest(desired_b.image_digest());
  expect_ok(c.handle(kDeviceB, fleet->session_b, running), "B's status");
  fleet->status_b = get(c, v1::OBJECT_KIND_INSTANCE, fleet->instance_b).instance().status();
  if (fleet->status_b.observed_state() != v1::INSTANCE_STATE_RUNNING) {
    fail("B's instance did not take its own report");
  }
  fleet->session_b->take();

  fleet->hello_a = hello;
  fleet->hello_a.set_acknowledged_desired_state_version(version_a);
  v1::InstanceStatusUpdate* own = fleet->hello_a.add_instances();
  own->set_instance_name(fleet->instance_a);
  own->set_state(v1::INSTANCE_STATE_RUNNING);
  own->set_image_digest(desired_a.image_digest());
  return fleet;
}

Fleet& fleet() {
  static Fleet* const fleet = make_fleet();
  return *fleet;
}

// One record of the input; false at its end (or where a length runs past it).
bool next_record(std::string_view* input, uint8_t* control, std::string_view* payload) {
  if (input->size() < 2) return false;
  *control = static_cast<uint8_t>((*input)[0]);
  input->remove_prefix(1);
  uint64_t length = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    if (input->empty()) return false;
    const uint8_t byte = static_cast<uint8_t>(input->front());
    input->remove_prefix(1);
    length |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) break;
  }
  if (length > input->size()) return false;
  *payload = input->substr(0, length);
  input->remove_prefix(length);
  return true;
}

absl::Status handle(Controller& controller, const std::string& device,
                    const std::shared_ptr<RecordingSession>& session,
                    const v1::AgentMessage& message) {
  try {
    return controller.handle(device, session, message);
  } catch (...) {
    fail("Controller::handle threw");
  }
}

void check_sent_to_a(Fleet& fleet, RecordingSession& session) {
  for (const v1::ControllerMessage& message : session.take()) {
    if (!message.has_image_chunk()) continue;
    const v1::ImageChunk& chunk = message.image_chunk();
    if (fleet.images_a.count(chunk.digest()) == 0) fail("A was sent an image not its own");
    if (chunk.chunk_sha256() != tenon::crypto::sha256_hex(chunk.data())) {
      fail("an image chunk's checksum does not match its bytes");
    }
    if (chunk.offset() > chunk.total_size_bytes() ||
        chunk.data().size() > chunk.total_size_bytes() - chunk.offset()) {
      fail("an image chunk reaches past the image's end");
    }
  }
}

void check_fleet(Fleet& fleet) {
  Controller& c = *fleet.controller;
  const v1::Object b = get(c, v1::OBJECT_KIND_INSTANCE, fleet.instance_b);
  if (!google::protobuf::util::MessageDifferencer::Equals(b.instance().status(), fleet.status_b)) {
    fail("B's instance status changed:\n" + b.instance().status().DebugString() + "was\n" +
         fleet.status_b.DebugString());
  }
  if (fleet.session_b->closed().has_value()) {
    fail("B's stream was closed: " + fleet.session_b->closed()->ToString());
  }
  if (fleet.session_b->count() != 0) fail("B's stream was sent something");
  (void)get(c, v1::OBJECT_KIND_INSTANCE, fleet.instance_a);
  (void)get(c, v1::OBJECT_KIND_DEVICE, kDeviceA);
  for (v1::ObjectKind kind : {v1::OBJECT_KIND_DEVICE, v1::OBJECT_KIND_INSTANCE}) {
    v1::ListRequest list;
    list.set_kind(kind);
    absl::StatusOr<v1::ListResponse> listed = c.list(list);
    expect_ok(listed.status(), "list");
    if (listed->objects_size() != 2) fail("list no longer shows two devices and two instances");
  }
  (void)c.snapshot();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Fleet& fleet = ::fleet();
  Controller& c = *fleet.controller;
  auto session = std::make_shared<RecordingSession>();
  expect_ok(c.open_session(session, fleet.hello_a), "A's baseline Hello");

  std::string_view input(reinterpret_cast<const char*>(data), size);
  uint8_t control = 0;
  std::string_view payload;
  while (next_record(&input, &control, &payload)) {
    v1::AgentMessage message;
    if (!message.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
      c.close_session(kDeviceA, session);
      continue;
    }
    switch (control & 7) {
      case 5:
        if (!absl::IsAborted(handle(c, kDeviceA, fleet.foreign, message))) {
          fail("a stream that is not the device's was heard");
        }
        break;
      case 6:
        if (!absl::IsAborted(handle(c, kDeviceB, session, message))) {
          fail("A's stream was heard as B's");
        }
        break;
      case 7: {
        c.close_session(kDeviceA, session);
        check_sent_to_a(fleet, *session);
        session = std::make_shared<RecordingSession>();
        v1::Hello hello = message.hello();
        const bool impostor = (control & 0x80) != 0;
        if (!impostor) {
          hello.set_device_name(kDeviceA);
          hello.set_credential(fleet.hello_a.credential());
        }
        if (hello.has_profile())
          *hello.mutable_profile() = tenon::test_support::simulated_device_profile();
        absl::Status opened;
        try {
          opened = c.open_session(session, hello);
        } catch (...) {
          fail("Controller::open_session threw");
        }
        if (impostor && opened.ok()) fail("a Hello with a made-up credential was accepted");
        if (!impostor && !opened.ok()) fail("A's own Hello was refused: " + opened.ToString());
        break;
      }
      default:
        if (!handle(c, kDeviceA, session, message).ok()) c.close_session(kDeviceA, session);
        break;
    }
  }
  c.close_session(kDeviceA, session);
  check_sent_to_a(fleet, *session);
  check_fleet(fleet);
  return 0;
}

// Round trips of every tenon.v1 message family through the binary wire format and through JSON
// (REST serves the same messages as JSON), plus the contracts the schema promises in its
// comments: JSON names of manifests, presence of CPU 0, exact 64-bit values, relays that forward
// fields they do not know.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include "tenon/v1/agent.pb.h"
#include "tenon/v1/fleet.pb.h"
#include "tenon/v1/mortise.pb.h"
#include "tenon/v1/telemetry.pb.h"
#include "tenon/v1/vmm.pb.h"

namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using google::protobuf::util::MessageDifferencer;
using google::protobuf::util::TimeUtil;

// ---- Filling every field through reflection ---------------------------------------------------
//
// A hand-written "full" message silently stops being full when a field is added; reflection
// cannot forget one. `variant` chooses which member of each oneof is set, so that looping over
// variants covers every member.

constexpr int kMaxDepth =
    10;  // ApplyResponse > ... > DeploymentRevision > DeploymentSpec > LabelExpression

void fill_message(Message* message, int variant, int depth);

bool is_chosen_oneof_member(const FieldDescriptor* field, int variant) {
  const auto* oneof = field->real_containing_oneof();
  if (oneof == nullptr) return true;
  return oneof->field(variant % oneof->field_count()) == field;
}

const google::protobuf::EnumValueDescriptor* non_default_enum_value(
    const google::protobuf::EnumDescriptor* type, int variant) {
  // Value 0 is the UNSPECIFIED default of every tenon.v1 enum and would not be encoded at all.
  if (type->value_count() == 1) return type->value(0);
  return type->value(1 + variant % (type->value_count() - 1));
}

void fill_well_known(Message* message, int variant) {
  const std::string& name = message->GetDescriptor()->full_name();
  if (name == "google.protobuf.Timestamp") {
    message->CopyFrom(TimeUtil::SecondsToTimestamp(1'700'000'000 + variant));
    auto* timestamp = static_cast<google::protobuf::Timestamp*>(message);
    timestamp->set_nanos(123'456'789);
  } else if (name == "google.protobuf.Duration") {
    message->CopyFrom(TimeUtil::NanosecondsToDuration(2'500'000'123 + variant));
  }
}

void set_singular(Message* message, const FieldDescriptor* field, int variant, int depth) {
  const Reflection* reflection = message->GetReflection();
  const int number = field->number();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      reflection->SetInt32(message, field, -1'000'000 - number);
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      reflection->SetInt64(message, field, std::numeric_limits<int64_t>::min() + number);
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      reflection->SetUInt32(message, field, 4'000'000'000u + number);
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      reflection->SetUInt64(message, field, std::numeric_limits<uint64_t>::max() - number);
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      reflection->SetDouble(message, field, number / 3.0 + 1e-9);
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      reflection->SetFloat(message, field, number * 0.25f + 0.5f);
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      reflection->SetBool(message, field, true);
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      reflection->SetEnum(message, field, non_default_enum_value(field->enum_type(), variant));
      break;
    case FieldDescriptor::CPPTYPE_STRING:
      if (field->type() == FieldDescriptor::TYPE_BYTES) {
        reflection->SetString(message, field, std::string("\x00\xff\x01 bytes", 9));
      } else {
        reflection->SetString(message, field,
                              field->name() + "-\xc3\xbc-" + std::to_string(variant));
      }
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      fill_message(reflection->MutableMessage(message, field), variant, depth + 1);
      break;
  }
}

void add_repeated(Message* message, const FieldDescriptor* field, int variant, int depth,
                  int index) {
  const Reflection* reflection = message->GetReflection();
  const int number = field->number() + 100 * index;
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      reflection->AddInt32(message, field, -number);
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      reflection->AddInt64(message, field, -(int64_t{1} << 60) - number);
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      reflection->AddUInt32(message, field, 3'000'000'000u + number);
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      reflection->AddUInt64(message, field, (uint64_t{1} << 63) + number);
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      reflection->AddDouble(message, field, number / 7.0);
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      reflection->AddFloat(message, field, number * 0.5f);
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      reflection->AddBool(message, field, index % 2 == 0);
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      reflection->AddEnum(message, field,
                          non_default_enum_value(field->enum_type(), variant + index));
      break;
    case FieldDescriptor::CPPTYPE_STRING:
      reflection->AddString(message, field, field->name() + "-" + std::to_string(index));
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      Message* element = reflection->AddMessage(message, field);
      if (field->is_map()) {
        // Map entries: a distinct key per element, a full value.
        const FieldDescriptor* key = element->GetDescriptor()->map_key();
        const FieldDescriptor* value = element->GetDescriptor()->map_value();
        ASSERT_EQ(key->cpp_type(), FieldDescriptor::CPPTYPE_STRING) << field->full_name();
        element->GetReflection()->SetString(element, key, "key-" + std::to_string(index));
        set_singular(element, value, variant + index, depth + 1);
      } else {
        fill_message(element, variant + index, depth + 1);
      }
      break;
    }
  }
}

void fill_message(Message* message, int variant, int depth) {
  ASSERT_LT(depth, kMaxDepth) << "message nesting too deep at " << message->GetTypeName();
  const Descriptor* descriptor = message->GetDescriptor();
  if (descriptor->file()->package() == "google.protobuf") {
    fill_well_known(message, variant);
    return;
  }
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    if (!is_chosen_oneof_member(field, variant)) continue;
    if (field->is_repeated()) {
      add_repeated(message, field, variant, depth, 0);
      add_repeated(message, field, variant, depth, 1);
    } else {
      set_singular(message, field, variant, depth);
    }
  }
}

// Every field that is still at its default (and so would not be on the wire), by path. In a
// oneof exactly one member must be set.
void collect_unset_fields(const Message& message, const std::string& path,
                          std::vector<std::string>* unset) {
  const Descriptor* descriptor = message.GetDescriptor();
  const Reflection* reflection = message.GetReflection();
  for (int i = 0; i < descriptor->oneof_decl_count(); ++i) {
    const auto* oneof = descriptor->oneof_decl(i);
    if (!oneof->is_synthetic() && !reflection->HasOneof(message, oneof)) {
      unset->push_back(path + oneof->name());
    }
  }
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    const std::string field_path = path + field->name();
    if (field->is_repeated()) {
      const int size = reflection->FieldSize(message, field);
      if (size == 0) unset->push_back(field_path);
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        for (int j = 0; j < size; ++j) {
          collect_unset_fields(reflection->GetRepeatedMessage(message, field, j),
                               field_path + "[" + std::to_string(j) + "].", unset);
        }
      }
      continue;
    }
    if (field->real_containing_oneof() != nullptr && !reflection->HasField(message, field)) {
      continue;  // another member of the oneof is the chosen one
    }
    if (!reflection->HasField(message, field)) {
      unset->push_back(field_path);
    } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      collect_unset_fields(reflection->GetMessage(message, field), field_path + ".", unset);
    }
  }
}

// The largest oneof anywhere under `descriptor`: how many variants cover every member.
int variants_needed(const Descriptor* descriptor, int depth = 0) {
  int needed = 1;
  if (depth > kMaxDepth) return needed;
  for (int i = 0; i < descriptor->oneof_decl_count(); ++i) {
    needed = std::max(needed, descriptor->oneof_decl(i)->field_count());
  }
  for (int i = 0; i < descriptor->field_count(); ++i) {
    if (descriptor->field(i)->message_type() != nullptr) {
      needed = std::max(needed, variants_needed(descriptor->field(i)->message_type(), depth + 1));
    }
  }
  return needed;
}

std::string deterministic_bytes(const Message& message) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return bytes;
}

::testing::AssertionResult same_message(const Message& expected, const Message& actual) {
  MessageDifferencer differencer;
  std::string report;
  differencer.ReportDifferencesToString(&report);
  if (differencer.Compare(expected, actual)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << expected.GetTypeName() << " differs:\n" << report;
}

void expect_binary_round_trip(const Message& original) {
  std::string bytes;
  ASSERT_TRUE(original.SerializeToString(&bytes)) << original.GetTypeName();
  std::unique_ptr<Message> parsed(original.New());
  ASSERT_TRUE(parsed->ParseFromString(bytes)) << original.GetTypeName();
  EXPECT_TRUE(same_message(original, *parsed));
  // Canonical bytes are what content addresses (composition input digests) are computed over.
  EXPECT_EQ(deterministic_bytes(original), deterministic_bytes(*parsed)) << original.GetTypeName();
}

void expect_json_round_trip(const Message& original) {
  std::string json;
  const auto printed = google::protobuf::util::MessageToJsonString(original, &json);
  ASSERT_TRUE(printed.ok()) << original.GetTypeName() << ": " << printed.ToString();
  std::unique_ptr<Message> parsed(original.New());
  const auto status = google::protobuf::util::JsonStringToMessage(json, parsed.get());
  ASSERT_TRUE(status.ok()) << original.GetTypeName() << ": " << status.ToString() << "\n" << json;
  EXPECT_TRUE(same_message(original, *parsed)) << json;
}

enum class Json { kAlso, kNo };

// Fills `prototype`'s type completely in every variant and round-trips each one.
void expect_full_round_trips(const Message& prototype, Json json) {
  const int variants = variants_needed(prototype.GetDescriptor());
  for (int variant = 0; variant < variants; ++variant) {
    SCOPED_TRACE(prototype.GetTypeName() + " variant " + std::to_string(variant));
    std::unique_ptr<Message> message(prototype.New());
    fill_message(message.get(), variant, 0);
    std::vector<std::string> unset;
    collect_unset_fields(*message, "", &unset);
    EXPECT_TRUE(unset.empty()) << "not populated: " << ::testing::PrintToString(unset);
    expect_binary_round_trip(*message);
    if (json == Json::kAlso) expect_json_round_trip(*message);
  }
}

// Every message type declared in one .proto file (nested ones included).
std::vector<const Descriptor*> messages_of_file(const std::string& file_name) {
  const auto* file = google::protobuf::DescriptorPool::generated_pool()->FindFileByName(file_name);
  std::vector<const Descriptor*> result;
  if (file == nullptr) {
    ADD_FAILURE() << "no generated descriptor for " << file_name;
    return result;
  }
  std::vector<const Descriptor*> pending;
  pending.reserve(file->message_type_count());
  for (int i = 0; i < file->message_type_count(); ++i) pending.push_back(file->message_type(i));
  while (!pending.empty()) {
    const Descriptor* descriptor = pending.back();
    pending.pop_back();
    if (descriptor->options().map_entry()) continue;
    result.push_back(descriptor);
    for (int i = 0; i < descriptor->nested_type_count(); ++i) {
      pending.push_back(descriptor->nested_type(i));
    }
  }
  return result;
}

void expect_every_message_of_file_round_trips(const std::string& file_name, Json json) {
  const auto descriptors = messages_of_file(file_name);
  EXPECT_FALSE(descriptors.empty()) << file_name;
  for (const Descriptor* descriptor : descriptors) {
    const Message* prototype =
        google::protobuf::MessageFactory::generated_factory()->GetPrototype(descriptor);
    ASSERT_NE(prototype, nullptr) << descriptor->full_name();
    expect_full_round_trips(*prototype, json);
  }
}

// ---- Fleet --------------------------------------------------------------------------------------

tenon::v1::Object example_deployment() {
  tenon::v1::Object object;
  auto* deployment = object.mutable_deployment();
  deployment->mutable_metadata()->set_name("control-loop");
  (*deployment->mutable_metadata()->mutable_labels())["team"] = "motion";
  auto* spec = deployment->mutable_spec();
  spec->set_app("control-loop");
  (*spec->mutable_selector()->mutable_match_labels())["site"] = "line-3";
  auto* expression = spec->mutable_selector()->add_match_expressions();
  expression->set_key("arch");
  expression->set_relation(tenon::v1::LabelExpression::RELATION_IN);
  expression->add_values("x86_64");
  spec->mutable_placement()->set_dedicated_core(true);
  spec->mutable_placement()->set_rt_priority(90);
  spec->mutable_placement()->set_memory_bytes(2 << 20);
  spec->set_restart_policy(tenon::v1::RESTART_POLICY_ON_FAILURE);
  spec->mutable_rollout()->set_wave_size(2);
  *spec->mutable_rollout()->mutable_bake_time() = TimeUtil::SecondsToDuration(60);
  spec->mutable_rollout()->set_max_deadline_miss_ratio(0.001);
  return object;
}

TEST(FleetMessages, EveryMessageRoundTripsFullyPopulatedInBinaryAndJson) {
  expect_every_message_of_file_round_trips("tenon/v1/fleet.proto", Json::kAlso);
}

TEST(FleetMessages, EveryObjectKindRoundTripsInsideObject) {
  // Object's oneof is the unit of Apply, Get and List: each kind must come back as that kind.
  const Descriptor* descriptor = tenon::v1::Object::descriptor();
  const auto* kind = descriptor->FindOneofByName("kind");
  ASSERT_NE(kind, nullptr);
  for (int variant = 0; variant < kind->field_count(); ++variant) {
    tenon::v1::Object object;
    fill_message(&object, variant, 0);
    std::string bytes;
    ASSERT_TRUE(object.SerializeToString(&bytes));
    tenon::v1::Object parsed;
    ASSERT_TRUE(parsed.ParseFromString(bytes));
    EXPECT_EQ(static_cast<int>(parsed.kind_case()), kind->field(variant)->number());
    EXPECT_TRUE(same_message(object, parsed));
  }
}

TEST(FleetMessages, ManifestJsonParsesIntoTheSameDeployment) {
  // What tenonctl sends after turning a YAML manifest into JSON: lowerCamelCase field names,
  // enums by name, 64-bit integers as strings or numbers, durations as "60s".
  const std::string manifest = R"json({
    "deployment": {
      "metadata": {"name": "control-loop", "labels": {"team": "motion"}},
      "spec": {
        "app": "control-loop",
        "selector": {
          "matchLabels": {"site": "line-3"},
          "matchExpressions": [{"key": "arch", "relation": "RELATION_IN", "values": ["x86_64"]}]
        },
        "placement": {"dedicatedCore": true, "rtPriority": 90, "memoryBytes": "2097152"},
        "restartPolicy": "RESTART_POLICY_ON_FAILURE",
        "rollout": {"waveSize": 2, "bakeTime": "60s", "maxDeadlineMissRatio": 0.001}
      }
    }
  })json";
  tenon::v1::Object parsed;
  const auto status = google::protobuf::util::JsonStringToMessage(manifest, &parsed);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_TRUE(same_message(example_deployment(), parsed));
}

TEST(FleetMessages, JsonWritesEnumsByNameAndDurationsAsText) {
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(example_deployment(), &json).ok());
  EXPECT_NE(json.find("\"restartPolicy\":\"RESTART_POLICY_ON_FAILURE\""), std::string::npos)
      << json;
  EXPECT_NE(json.find("\"bakeTime\":\"60s\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"memoryBytes\":\"2097152\""), std::string::npos) << json;
}

TEST(FleetMessages, MisspeltManifestFieldIsRejectedNotIgnored) {
  // A typo in a manifest must be an error, never a silently defaulted field.
  tenon::v1::Object parsed;
  const auto status = google::protobuf::util::JsonStringToMessage(
      R"json({"deployment": {"spec": {"placement": {"rtPriorty": 90}}}})json", &parsed);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.ToString().find("rtPriorty"), std::string::npos) << status.ToString();
}

TEST(FleetMessages, CompositionWithVerdictRoundTrips) {
  tenon::v1::Composition composition;
  composition.mutable_metadata()->set_name("control-loop-0123456789ab");
  auto* library = composition.add_libraries();
  library->set_name("sched-fp");
  library->set_layer(tenon::v1::LIBRARY_LAYER_TENON);
  (*library->mutable_config())["task_stack_bytes"].set_int_value(4096);
  (*library->mutable_config())["poll"].set_bool_value(false);  // set, even though false
  library->add_provides("sched-policy");
  auto* region = composition.mutable_memory_plan()->add_regions();
  region->set_name("image.text");
  region->set_guest_address(0x8000);
  region->set_size_bytes(0x3000);
  region->set_access(tenon::v1::MEMORY_ACCESS_READ_EXECUTE);
  composition.mutable_memory_plan()->set_total_bytes(1 << 20);
  auto* verdict = composition.mutable_schedulability();
  verdict->set_result(tenon::v1::SCHEDULABILITY_RESULT_UNSCHEDULABLE);
  verdict->set_analysis(tenon::v1::SCHEDULABILITY_ANALYSIS_RESPONSE_TIME);
  auto* task = verdict->add_tasks();
  task->set_task_name("control");
  task->set_relative_deadline_ns(1'000'000);
  task->set_worst_case_response_time_ns(0);  // diverged past the deadline
  task->set_meets_deadline(false);
  composition.add_explanation("sched-fp: the app pins fixed-priority scheduling");
  composition.set_image_digest("sha256:" + std::string(64, 'a'));

  expect_binary_round_trip(composition);
  expect_json_round_trip(composition);

  // A config value that is false is still present: the oneof records which member is set.
  tenon::v1::Composition parsed;
  ASSERT_TRUE(parsed.ParseFromString(composition.SerializeAsString()));
  const auto& config = parsed.libraries(0).config();
  ASSERT_EQ(config.count("poll"), 1u);
  EXPECT_EQ(config.at("poll").value_case(), tenon::v1::ConfigValue::kBoolValue);
}

// ---- Agent stream -------------------------------------------------------------------------------

TEST(AgentMessages, EveryMessageRoundTripsFullyPopulated) {
  expect_every_message_of_file_round_trips("tenon/v1/agent.proto", Json::kAlso);
}

TEST(AgentMessages, EveryStreamMessageKindKeepsItsKind) {
  // The stream's oneofs are the protocol: a message of one kind must never arrive as another.
  for (const Message* prototype :
       {static_cast<const Message*>(&tenon::v1::AgentMessage::default_instance()),
        static_cast<const Message*>(&tenon::v1::ControllerMessage::default_instance())}) {
    const auto* kind = prototype->GetDescriptor()->FindOneofByName("kind");
    ASSERT_NE(kind, nullptr) << prototype->GetTypeName();
    for (int variant = 0; variant < kind->field_count(); ++variant) {
      std::unique_ptr<Message> message(prototype->New());
      fill_message(message.get(), variant, 0);
      std::unique_ptr<Message> parsed(prototype->New());
      ASSERT_TRUE(parsed->ParseFromString(message->SerializeAsString()));
      const FieldDescriptor* set = parsed->GetReflection()->GetOneofFieldDescriptor(*parsed, kind);
      ASSERT_NE(set, nullptr) << prototype->GetTypeName() << " variant " << variant;
      EXPECT_EQ(set, kind->field(variant));
      EXPECT_TRUE(same_message(*message, *parsed));
    }
  }
}

TEST(AgentMessages, HelloAndDesiredStateRoundTrip) {
  tenon::v1::AgentMessage hello_message;
  hello_message.set_sequence(1);
  auto* hello = hello_message.mutable_hello();
  hello->set_device_name("edge-3");
  hello->set_credential("secret");
  hello->set_acknowledged_desired_state_version(41);
  hello->add_image_digests("sha256:" + std::string(64, 'b'));
  hello->mutable_profile()->set_arch(tenon::v1::ARCH_X86_64);
  hello->mutable_profile()->set_realtime_cores(1);
  hello->mutable_profile()->add_mortise_libraries("snapshot");
  auto* running = hello->add_instances();
  running->set_instance_name("control-loop-0123456789ab");
  running->set_state(tenon::v1::INSTANCE_STATE_RUNNING);
  expect_binary_round_trip(hello_message);

  tenon::v1::ControllerMessage desired_message;
  desired_message.set_sequence(2);
  auto* desired = desired_message.mutable_desired_state();
  desired->set_version(42);
  auto* instance = desired->add_instances();
  instance->set_name("control-loop-0123456789ab");
  instance->set_image_digest("sha256:" + std::string(64, 'c'));
  instance->mutable_placement()->set_memory_bytes(1 << 20);
  instance->set_state(tenon::v1::DESIRED_INSTANCE_STATE_RUNNING);
  *instance->mutable_runtime()->mutable_app_run_time() = TimeUtil::MillisecondsToDuration(250);
  expect_binary_round_trip(desired_message);

  tenon::v1::ControllerMessage parsed;
  ASSERT_TRUE(parsed.ParseFromString(desired_message.SerializeAsString()));
  ASSERT_EQ(parsed.kind_case(), tenon::v1::ControllerMessage::kDesiredState);
  EXPECT_EQ(parsed.desired_state().version(), 42u);
  EXPECT_EQ(TimeUtil::DurationToMilliseconds(
                parsed.desired_state().instances(0).runtime().app_run_time()),
            250);
}

TEST(AgentMessages, ImageChunkCarriesArbitraryBinaryExactly) {
  tenon::v1::ControllerMessage message;
  auto* chunk = message.mutable_image_chunk();
  chunk->set_digest("sha256:" + std::string(64, 'd'));
  chunk->set_offset(uint64_t{3} << 32);  // beyond 4 GiB: offsets are 64-bit
  std::string data(1 << 20, '\0');
  uint32_t state = 0x12345678;
  for (char& byte : data) {  // every byte value, zeros included, in no simple pattern
    state = state * 1'664'525u + 1'013'904'223u;
    byte = static_cast<char>(state >> 24);
  }
  chunk->set_data(data);
  chunk->set_last(true);
  chunk->set_total_size_bytes((uint64_t{3} << 32) + data.size());

  tenon::v1::ControllerMessage parsed;
  ASSERT_TRUE(parsed.ParseFromString(message.SerializeAsString()));
  EXPECT_EQ(parsed.image_chunk().data(), data);
  EXPECT_EQ(parsed.image_chunk().offset(), uint64_t{3} << 32);
  EXPECT_TRUE(parsed.image_chunk().last());
}

// ---- mortised <-> mortise-vmm control channel -------------------------------------------------

TEST(VmmMessages, EveryMessageRoundTripsFullyPopulated) {
  expect_every_message_of_file_round_trips("tenon/v1/vmm.proto", Json::kAlso);
}

TEST(VmmMessages, EveryCommandAndEventKindKeepsItsKind) {
  for (const auto& [prototype, oneof_name] :
       {std::pair{static_cast<const Message*>(&tenon::v1::VmmCommand::default_instance()),
                  "command"},
        std::pair{static_cast<const Message*>(&tenon::v1::VmmEvent::default_instance()),
                  "event"}}) {
    const auto* kind = prototype->GetDescriptor()->FindOneofByName(oneof_name);
    ASSERT_NE(kind, nullptr) << prototype->GetTypeName();
    for (int variant = 0; variant < kind->field_count(); ++variant) {
      std::unique_ptr<Message> message(prototype->New());
      fill_message(message.get(), variant, 0);
      std::unique_ptr<Message> parsed(prototype->New());
      ASSERT_TRUE(parsed->ParseFromString(message->SerializeAsString()));
      EXPECT_EQ(parsed->GetReflection()->GetOneofFieldDescriptor(*parsed, kind),
                kind->field(variant));
      EXPECT_TRUE(same_message(*message, *parsed));
    }
  }
}

// ---- Mortise ------------------------------------------------------------------------------------

TEST(MortiseMessages, EveryMessageRoundTripsFullyPopulated) {
  expect_every_message_of_file_round_trips("tenon/v1/mortise.proto", Json::kAlso);
}

TEST(MortiseMessages, HostCpuZeroIsDistinctFromUnset) {
  // CPU 0 is a real CPU: "pin to CPU 0" must not turn into "let the partition choose".
  tenon::v1::CreateVmRequest pinned;
  pinned.set_name("probe");
  pinned.set_image_path("/var/lib/mortise/images/probe.elf");
  pinned.mutable_cpu()->set_policy(tenon::v1::CPU_POLICY_DEDICATED);
  pinned.mutable_cpu()->set_host_cpu(0);
  tenon::v1::CreateVmRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(pinned.SerializeAsString()));
  EXPECT_TRUE(parsed.cpu().has_host_cpu());
  EXPECT_EQ(parsed.cpu().host_cpu(), 0u);

  tenon::v1::CreateVmRequest unpinned = pinned;
  unpinned.mutable_cpu()->clear_host_cpu();
  ASSERT_TRUE(parsed.ParseFromString(unpinned.SerializeAsString()));
  EXPECT_FALSE(parsed.cpu().has_host_cpu());

  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(pinned, &json).ok());
  EXPECT_NE(json.find("\"hostCpu\":0"), std::string::npos) << json;
}

TEST(MortiseMessages, CreateKeepsWhichImageSourceWasGiven) {
  tenon::v1::CreateVmRequest by_bytes;
  by_bytes.set_name("hello");
  by_bytes.set_image_bytes(std::string("\177ELF\2\1\1\0", 8));
  by_bytes.set_image_digest("sha256:" + std::string(64, 'e'));
  by_bytes.set_memory_bytes(1 << 20);
  expect_binary_round_trip(by_bytes);
  tenon::v1::CreateVmRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(by_bytes.SerializeAsString()));
  EXPECT_EQ(parsed.image_case(), tenon::v1::CreateVmRequest::kImageBytes);
  EXPECT_EQ(parsed.image_bytes().size(), 8u);

  // Setting the path replaces the bytes: a request can never carry both.
  by_bytes.set_image_path("/var/lib/mortise/images/hello.elf");
  ASSERT_TRUE(parsed.ParseFromString(by_bytes.SerializeAsString()));
  EXPECT_EQ(parsed.image_case(), tenon::v1::CreateVmRequest::kImagePath);
}

TEST(MortiseMessages, VmWithExitReasonAndTelemetryRoundTrips) {
  tenon::v1::Vm vm;
  vm.set_name("faulty");
  vm.set_state(tenon::v1::VM_STATE_FAULTED);
  vm.mutable_exit_reason()->set_kind(tenon::v1::EXIT_KIND_GUEST_FAULT);
  vm.mutable_exit_reason()->set_message("#PF at 0x0 (never mapped: null page)");
  vm.mutable_exit_reason()->mutable_fault()->set_vector(14);
  vm.mutable_exit_reason()->mutable_fault()->set_fault_address(0);
  auto* latency = vm.mutable_stats()->add_operation_latencies();
  latency->set_operation(tenon::v1::VM_OPERATION_START);
  *latency->mutable_latency() = TimeUtil::MicrosecondsToDuration(180);
  vm.mutable_telemetry()->set_instance_name("faulty");
  vm.mutable_telemetry()->add_tasks()->set_task_name("control");
  expect_binary_round_trip(vm);
  expect_json_round_trip(vm);
}

// ---- Telemetry ----------------------------------------------------------------------------------

TEST(TelemetryMessages, EveryMessageRoundTripsFullyPopulated) {
  expect_every_message_of_file_round_trips("tenon/v1/telemetry.proto", Json::kAlso);
}

TEST(TelemetryMessages, HistogramExtremesSurviveBinaryAndJsonExactly) {
  // Counters run for months: 64-bit values must not pass through a double anywhere (JSON
  // writes them as strings).
  tenon::v1::LatencyHistogram histogram;
  histogram.set_count(std::numeric_limits<uint64_t>::max());
  histogram.set_sum_ticks(std::numeric_limits<uint64_t>::max() - 1);
  histogram.set_min_ticks(1);
  histogram.set_max_ticks((uint64_t{1} << 53) + 1);  // not representable as a double
  for (int bucket = 0; bucket < 32; ++bucket) {
    histogram.add_bucket_counts(bucket == 31 ? std::numeric_limits<uint64_t>::max() : bucket);
  }
  histogram.set_tick_frequency_khz(2'995'200);

  expect_binary_round_trip(histogram);
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(histogram, &json).ok());
  tenon::v1::LatencyHistogram parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &parsed).ok()) << json;
  EXPECT_EQ(parsed.max_ticks(), (uint64_t{1} << 53) + 1);
  EXPECT_EQ(parsed.count(), std::numeric_limits<uint64_t>::max());
  ASSERT_EQ(parsed.bucket_counts_size(), 32);
  EXPECT_EQ(parsed.bucket_counts(0), 0u);  // zero buckets keep their place
  EXPECT_EQ(parsed.bucket_counts(31), std::numeric_limits<uint64_t>::max());
}

TEST(TelemetryMessages, RelayBuiltOnOlderSchemaForwardsNewFieldsUnchanged) {
  // Telemetry is forwarded unchanged mortised -> agent -> controller, and those are upgraded at
  // different times. An agent whose schema lacks a field must pass it through intact.
  const auto* file = tenon::v1::TaskTelemetry::descriptor()->file();
  google::protobuf::FileDescriptorProto older;
  file->CopyTo(&older);
  bool removed = false;
  for (auto& message : *older.mutable_message_type()) {
    if (message.name() != "TaskTelemetry") continue;
    auto* fields = message.mutable_field();
    for (int i = 0; i < fields->size(); ++i) {
      if (fields->Get(i).name() == "response_time_summary") {
        fields->DeleteSubrange(i, 1);
        removed = true;
        break;
      }
    }
  }
  ASSERT_TRUE(removed);
  google::protobuf::DescriptorPool older_pool;
  for (const char* dependency : {"google/protobuf/timestamp.proto"}) {
    google::protobuf::FileDescriptorProto proto;
    google::protobuf::DescriptorPool::generated_pool()->FindFileByName(dependency)->CopyTo(&proto);
    ASSERT_NE(older_pool.BuildFile(proto), nullptr);
  }
  ASSERT_NE(older_pool.BuildFile(older), nullptr);
  const Descriptor* older_report = older_pool.FindMessageTypeByName("tenon.v1.InstanceTelemetry");
  ASSERT_NE(older_report, nullptr);

  tenon::v1::InstanceTelemetry original;
  fill_message(&original, 0, 0);
  ASSERT_TRUE(original.tasks(0).has_response_time_summary());

  google::protobuf::DynamicMessageFactory factory(&older_pool);
  std::unique_ptr<Message> relay(factory.GetPrototype(older_report)->New());
  ASSERT_TRUE(relay->ParseFromString(original.SerializeAsString()));
  tenon::v1::InstanceTelemetry forwarded;
  ASSERT_TRUE(forwarded.ParseFromString(relay->SerializeAsString()));
  EXPECT_TRUE(same_message(original, forwarded));
}

}  // namespace

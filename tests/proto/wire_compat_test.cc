// Wire and JSON compatibility of tenon.v1: agents, mortised and controllers are upgraded at
// different times, and REST clients see field names. Every field (number, name, label, type),
// enum value and RPC of the released schema is listed below; none may change or disappear
// (retire a field by leaving it in place, commented as deprecated). Additions are fine and are
// appended to the list in the same change, so that they are protected from then on.
#include <algorithm>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <gtest/gtest.h>

#include "tenon/v1/agent.pb.h"
#include "tenon/v1/fleet.pb.h"
#include "tenon/v1/mortise.pb.h"
#include "tenon/v1/telemetry.pb.h"
#include "tenon/v1/vmm.pb.h"

namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::FileDescriptor;

constexpr const char* kProtoFiles[] = {
    "tenon/v1/telemetry.proto", "tenon/v1/fleet.proto", "tenon/v1/agent.proto",
    "tenon/v1/mortise.proto",   "tenon/v1/vmm.proto",
};

// The released schema, one line per field, enum value and RPC.
constexpr const char kGolden[] = R"golden(
field tenon.v1.LatencyHistogram.count = 1: uint64
field tenon.v1.LatencyHistogram.sum_ticks = 2: uint64
field tenon.v1.LatencyHistogram.min_ticks = 3: uint64
field tenon.v1.LatencyHistogram.max_ticks = 4: uint64
field tenon.v1.LatencyHistogram.bucket_counts = 5: repeated uint64
field tenon.v1.LatencyHistogram.tick_frequency_khz = 6: uint64
field tenon.v1.LatencySummary.count = 1: uint64
field tenon.v1.LatencySummary.min_ns = 2: double
field tenon.v1.LatencySummary.mean_ns = 3: double
field tenon.v1.LatencySummary.max_ns = 4: double
field tenon.v1.LatencySummary.p50_ns = 5: double
field tenon.v1.LatencySummary.p99_ns = 6: double
field tenon.v1.LatencySummary.p999_ns = 7: double
field tenon.v1.TaskTelemetry.task_name = 1: string
field tenon.v1.TaskTelemetry.period_ns = 2: uint64
field tenon.v1.TaskTelemetry.relative_deadline_ns = 3: uint64
field tenon.v1.TaskTelemetry.priority = 4: uint32
field tenon.v1.TaskTelemetry.jobs = 5: uint64
field tenon.v1.TaskTelemetry.deadline_misses = 6: uint64
field tenon.v1.TaskTelemetry.gap_jobs = 7: uint64
field tenon.v1.TaskTelemetry.release_latency = 8: tenon.v1.LatencyHistogram
field tenon.v1.TaskTelemetry.response_time = 9: tenon.v1.LatencyHistogram
field tenon.v1.TaskTelemetry.release_latency_summary = 10: tenon.v1.LatencySummary
field tenon.v1.TaskTelemetry.response_time_summary = 11: tenon.v1.LatencySummary
field tenon.v1.InstanceTelemetry.instance_name = 1: string
field tenon.v1.InstanceTelemetry.run_id = 2: string
field tenon.v1.InstanceTelemetry.sample_time = 3: google.protobuf.Timestamp
field tenon.v1.InstanceTelemetry.scheduler = 4: tenon.v1.SchedulerKind
field tenon.v1.InstanceTelemetry.pauses_observed = 5: uint64
field tenon.v1.InstanceTelemetry.tasks = 6: repeated tenon.v1.TaskTelemetry
field tenon.v1.ConsoleChunk.offset = 1: uint64
field tenon.v1.ConsoleChunk.data = 2: bytes
field tenon.v1.ConsoleChunk.time = 3: google.protobuf.Timestamp
field tenon.v1.GuestFault.vector = 1: uint32
field tenon.v1.GuestFault.error_code = 2: uint64
field tenon.v1.GuestFault.instruction_pointer = 3: uint64
field tenon.v1.GuestFault.stack_pointer = 4: uint64
field tenon.v1.GuestFault.fault_address = 5: uint64
field tenon.v1.ExitReason.kind = 1: tenon.v1.ExitKind
field tenon.v1.ExitReason.status = 2: int64
field tenon.v1.ExitReason.message = 3: string
field tenon.v1.ExitReason.fault = 4: tenon.v1.GuestFault
field tenon.v1.ExitReason.time = 5: google.protobuf.Timestamp
enum tenon.v1.SchedulerKind.SCHEDULER_KIND_UNSPECIFIED = 0
enum tenon.v1.SchedulerKind.SCHEDULER_KIND_FIXED_PRIORITY = 1
enum tenon.v1.SchedulerKind.SCHEDULER_KIND_EARLIEST_DEADLINE_FIRST = 2
enum tenon.v1.ExitKind.EXIT_KIND_UNSPECIFIED = 0
enum tenon.v1.ExitKind.EXIT_KIND_GUEST_EXIT = 1
enum tenon.v1.ExitKind.EXIT_KIND_GUEST_FAULT = 2
enum tenon.v1.ExitKind.EXIT_KIND_GUEST_PANIC = 3
enum tenon.v1.ExitKind.EXIT_KIND_VIOLATION = 4
enum tenon.v1.ExitKind.EXIT_KIND_TIME_LIMIT = 5
enum tenon.v1.ExitKind.EXIT_KIND_STOPPED = 6
enum tenon.v1.ExitKind.EXIT_KIND_VMM_CRASHED = 7
enum tenon.v1.ExitKind.EXIT_KIND_HYPERVISOR_ERROR = 8
field tenon.v1.ObjectMeta.name = 1: string
field tenon.v1.ObjectMeta.labels = 2: map<string, string>
field tenon.v1.ObjectMeta.uid = 3: string
field tenon.v1.ObjectMeta.generation = 4: uint64
field tenon.v1.ObjectMeta.create_time = 5: google.protobuf.Timestamp
field tenon.v1.ObjectMeta.update_time = 6: google.protobuf.Timestamp
field tenon.v1.Object.device = 1: tenon.v1.Device (oneof kind)
field tenon.v1.Object.app = 2: tenon.v1.App (oneof kind)
field tenon.v1.Object.deployment = 3: tenon.v1.Deployment (oneof kind)
field tenon.v1.Object.instance = 4: tenon.v1.Instance (oneof kind)
field tenon.v1.Object.composition = 5: tenon.v1.Composition (oneof kind)
field tenon.v1.DeviceProfile.arch = 1: tenon.v1.Arch
field tenon.v1.DeviceProfile.cores = 2: uint32
field tenon.v1.DeviceProfile.realtime_cores = 3: uint32
field tenon.v1.DeviceProfile.memory_bytes = 4: uint64
field tenon.v1.DeviceProfile.guest_memory_bytes = 5: uint64
field tenon.v1.DeviceProfile.tsc_frequency_khz = 6: uint64
field tenon.v1.DeviceProfile.hypervisor_features = 7: repeated string
field tenon.v1.DeviceProfile.mortise_libraries = 8: repeated string
field tenon.v1.DeviceProfile.guest_abi_version = 9: uint32
field tenon.v1.DeviceProfile.mortise_version = 10: string
field tenon.v1.DeviceProfile.agent_version = 11: string
field tenon.v1.DeviceProfile.kernel_release = 12: string
field tenon.v1.DeviceProfile.engine = 13: string
field tenon.v1.DeviceProfile.qemu_version = 14: string
field tenon.v1.DeviceSpec.cordoned = 1: bool
field tenon.v1.DeviceStatus.connection_state = 1: tenon.v1.ConnectionState
field tenon.v1.DeviceStatus.profile = 2: tenon.v1.DeviceProfile
field tenon.v1.DeviceStatus.last_seen = 3: google.protobuf.Timestamp
field tenon.v1.DeviceStatus.enroll_time = 4: google.protobuf.Timestamp
field tenon.v1.DeviceStatus.desired_state_version = 5: uint64
field tenon.v1.DeviceStatus.acknowledged_desired_state_version = 6: uint64
field tenon.v1.DeviceStatus.instance_count = 7: uint32
field tenon.v1.Device.metadata = 1: tenon.v1.ObjectMeta
field tenon.v1.Device.spec = 2: tenon.v1.DeviceSpec
field tenon.v1.Device.status = 3: tenon.v1.DeviceStatus
field tenon.v1.TaskSpec.name = 1: string
field tenon.v1.TaskSpec.period_ns = 2: uint64
field tenon.v1.TaskSpec.relative_deadline_ns = 3: uint64
field tenon.v1.TaskSpec.wcet_ns = 4: uint64
field tenon.v1.TaskSpec.priority = 5: uint32
field tenon.v1.TaskSpec.criticality = 6: tenon.v1.Criticality
field tenon.v1.AppSpec.program = 1: string
field tenon.v1.AppSpec.tasks = 2: repeated tenon.v1.TaskSpec
field tenon.v1.AppSpec.needs = 3: repeated string
field tenon.v1.AppSpec.scheduler = 4: tenon.v1.SchedulerKind
field tenon.v1.AppSpec.heap_bytes = 5: uint64
field tenon.v1.App.metadata = 1: tenon.v1.ObjectMeta
field tenon.v1.App.spec = 2: tenon.v1.AppSpec
field tenon.v1.LabelSelector.match_labels = 1: map<string, string>
field tenon.v1.LabelSelector.match_expressions = 2: repeated tenon.v1.LabelExpression
field tenon.v1.LabelExpression.key = 1: string
field tenon.v1.LabelExpression.relation = 2: tenon.v1.LabelExpression.Relation
field tenon.v1.LabelExpression.values = 3: repeated string
enum tenon.v1.LabelExpression.Relation.RELATION_UNSPECIFIED = 0
enum tenon.v1.LabelExpression.Relation.RELATION_IN = 1
enum tenon.v1.LabelExpression.Relation.RELATION_NOT_IN = 2
enum tenon.v1.LabelExpression.Relation.RELATION_EXISTS = 3
enum tenon.v1.LabelExpression.Relation.RELATION_DOES_NOT_EXIST = 4
field tenon.v1.Placement.dedicated_core = 1: bool
field tenon.v1.Placement.rt_priority = 2: uint32
field tenon.v1.Placement.memory_bytes = 3: uint64
field tenon.v1.RolloutPolicy.wave_size = 1: uint32
field tenon.v1.RolloutPolicy.bake_time = 2: google.protobuf.Duration
field tenon.v1.RolloutPolicy.max_deadline_miss_ratio = 3: double
field tenon.v1.RolloutPolicy.rollback_on_failure = 4: bool
field tenon.v1.RuntimeConfig.app_run_time = 1: google.protobuf.Duration
field tenon.v1.RuntimeConfig.stack_bytes = 2: uint64
field tenon.v1.DeploymentSpec.app = 1: string
field tenon.v1.DeploymentSpec.selector = 2: tenon.v1.LabelSelector
field tenon.v1.DeploymentSpec.placement = 3: tenon.v1.Placement
field tenon.v1.DeploymentSpec.restart_policy = 4: tenon.v1.RestartPolicy
field tenon.v1.DeploymentSpec.composition_policy = 5: tenon.v1.CompositionPolicy
field tenon.v1.DeploymentSpec.rollout = 6: tenon.v1.RolloutPolicy
field tenon.v1.DeploymentSpec.runtime = 7: tenon.v1.RuntimeConfig
field tenon.v1.DeploymentSpec.channels = 8: repeated tenon.v1.ChannelEndpoint
field tenon.v1.DeploymentStatus.observed_generation = 1: uint64
field tenon.v1.DeploymentStatus.phase = 2: tenon.v1.RolloutPhase
field tenon.v1.DeploymentStatus.matched_devices = 3: uint32
field tenon.v1.DeploymentStatus.updated_instances = 4: uint32
field tenon.v1.DeploymentStatus.running_instances = 5: uint32
field tenon.v1.DeploymentStatus.failed_instances = 6: uint32
field tenon.v1.DeploymentStatus.compositions = 7: repeated string
field tenon.v1.DeploymentStatus.message = 8: string
field tenon.v1.DeploymentStatus.update_time = 9: google.protobuf.Timestamp
field tenon.v1.Deployment.metadata = 1: tenon.v1.ObjectMeta
field tenon.v1.Deployment.spec = 2: tenon.v1.DeploymentSpec
field tenon.v1.Deployment.status = 3: tenon.v1.DeploymentStatus
field tenon.v1.LatencyTelemetry.window = 1: google.protobuf.Duration
field tenon.v1.LatencyTelemetry.update_time = 2: google.protobuf.Timestamp
field tenon.v1.LatencyTelemetry.tasks = 3: repeated tenon.v1.TaskLatency
field tenon.v1.TaskLatency.task_name = 1: string
field tenon.v1.TaskLatency.jobs = 2: uint64
field tenon.v1.TaskLatency.deadline_misses = 3: uint64
field tenon.v1.TaskLatency.release_latency = 4: tenon.v1.LatencySummary
field tenon.v1.TaskLatency.response_time = 5: tenon.v1.LatencySummary
field tenon.v1.InstanceSpec.deployment = 1: string
field tenon.v1.InstanceSpec.device = 2: string
field tenon.v1.InstanceSpec.app = 3: string
field tenon.v1.InstanceSpec.composition = 4: string
field tenon.v1.InstanceSpec.image_digest = 5: string
field tenon.v1.InstanceSpec.placement = 6: tenon.v1.Placement
field tenon.v1.InstanceSpec.desired_state = 7: tenon.v1.DesiredInstanceState
field tenon.v1.InstanceSpec.restart_policy = 8: tenon.v1.RestartPolicy
field tenon.v1.InstanceSpec.deployment_generation = 9: uint64
field tenon.v1.InstanceSpec.runtime = 10: tenon.v1.RuntimeConfig
field tenon.v1.InstanceSpec.channels = 11: repeated tenon.v1.ChannelEndpoint
field tenon.v1.InstanceStatus.observed_state = 1: tenon.v1.InstanceState
field tenon.v1.InstanceStatus.image_digest = 2: string
field tenon.v1.InstanceStatus.exit_reason = 3: tenon.v1.ExitReason
field tenon.v1.InstanceStatus.restart_count = 4: uint32
field tenon.v1.InstanceStatus.last_transition_time = 5: google.protobuf.Timestamp
field tenon.v1.InstanceStatus.message = 6: string
field tenon.v1.InstanceStatus.latency = 7: tenon.v1.LatencyTelemetry
field tenon.v1.InstanceStatus.migrated_from = 8: string
field tenon.v1.Instance.metadata = 1: tenon.v1.ObjectMeta
field tenon.v1.Instance.spec = 2: tenon.v1.InstanceSpec
field tenon.v1.Instance.status = 3: tenon.v1.InstanceStatus
field tenon.v1.ConfigValue.int_value = 1: int64 (oneof value)
field tenon.v1.ConfigValue.bool_value = 2: bool (oneof value)
field tenon.v1.ConfigValue.string_value = 3: string (oneof value)
field tenon.v1.ChosenLibrary.name = 1: string
field tenon.v1.ChosenLibrary.layer = 2: tenon.v1.LibraryLayer
field tenon.v1.ChosenLibrary.config = 3: map<string, tenon.v1.ConfigValue>
field tenon.v1.ChosenLibrary.provides = 4: repeated string
field tenon.v1.ChosenLibrary.footprint_bytes = 5: uint64
field tenon.v1.ChosenLibrary.reason = 6: string
field tenon.v1.MemoryRegion.name = 1: string
field tenon.v1.MemoryRegion.guest_address = 2: uint64
field tenon.v1.MemoryRegion.size_bytes = 3: uint64
field tenon.v1.MemoryRegion.access = 4: tenon.v1.MemoryAccess
field tenon.v1.MemoryPlan.total_bytes = 1: uint64
field tenon.v1.MemoryPlan.regions = 2: repeated tenon.v1.MemoryRegion
field tenon.v1.TaskVerdict.task_name = 1: string
field tenon.v1.TaskVerdict.criticality = 2: tenon.v1.Criticality
field tenon.v1.TaskVerdict.period_ns = 3: uint64
field tenon.v1.TaskVerdict.relative_deadline_ns = 4: uint64
field tenon.v1.TaskVerdict.wcet_ns = 5: uint64
field tenon.v1.TaskVerdict.worst_case_response_time_ns = 6: uint64
field tenon.v1.TaskVerdict.meets_deadline = 7: bool
field tenon.v1.SchedulabilityVerdict.result = 1: tenon.v1.SchedulabilityResult
field tenon.v1.SchedulabilityVerdict.analysis = 2: tenon.v1.SchedulabilityAnalysis
field tenon.v1.SchedulabilityVerdict.scheduler = 3: tenon.v1.SchedulerKind
field tenon.v1.SchedulabilityVerdict.utilisation = 4: double
field tenon.v1.SchedulabilityVerdict.per_job_overhead_ns = 5: uint64
field tenon.v1.SchedulabilityVerdict.tasks = 6: repeated tenon.v1.TaskVerdict
field tenon.v1.CompositionInputs.app = 1: string
field tenon.v1.CompositionInputs.app_generation = 2: uint64
field tenon.v1.CompositionInputs.app_spec = 3: tenon.v1.AppSpec
field tenon.v1.CompositionInputs.profile = 4: tenon.v1.DeviceProfile
field tenon.v1.CompositionInputs.placement = 5: tenon.v1.Placement
field tenon.v1.CompositionInputs.policy = 6: tenon.v1.CompositionPolicy
field tenon.v1.CompositionInputs.catalog_digest = 7: string
field tenon.v1.CompositionInputs.input_digest = 8: string
field tenon.v1.Composition.metadata = 1: tenon.v1.ObjectMeta
field tenon.v1.Composition.inputs = 2: tenon.v1.CompositionInputs
field tenon.v1.Composition.libraries = 3: repeated tenon.v1.ChosenLibrary
field tenon.v1.Composition.memory_plan = 4: tenon.v1.MemoryPlan
field tenon.v1.Composition.schedulability = 5: tenon.v1.SchedulabilityVerdict
field tenon.v1.Composition.explanation = 6: repeated string
field tenon.v1.Composition.image_digest = 7: string
field tenon.v1.Composition.image_size_bytes = 8: uint64
field tenon.v1.ApplyRequest.objects = 1: repeated tenon.v1.Object
field tenon.v1.ApplyRequest.dry_run = 2: bool
field tenon.v1.ApplyResult.object = 1: tenon.v1.Object
field tenon.v1.ApplyResult.action = 2: tenon.v1.ChangeAction
field tenon.v1.ApplyResponse.results = 1: repeated tenon.v1.ApplyResult
field tenon.v1.GetRequest.kind = 1: tenon.v1.ObjectKind
field tenon.v1.GetRequest.name = 2: string
field tenon.v1.ListRequest.kind = 1: tenon.v1.ObjectKind
field tenon.v1.ListRequest.selector = 2: tenon.v1.LabelSelector
field tenon.v1.ListRequest.device = 3: string
field tenon.v1.ListRequest.deployment = 4: string
field tenon.v1.ListRequest.page_size = 5: uint32
field tenon.v1.ListRequest.page_token = 6: string
field tenon.v1.ListResponse.objects = 1: repeated tenon.v1.Object
field tenon.v1.ListResponse.next_page_token = 2: string
field tenon.v1.DeleteRequest.kind = 1: tenon.v1.ObjectKind
field tenon.v1.DeleteRequest.name = 2: string
field tenon.v1.DeleteRequest.expected_generation = 3: uint64
field tenon.v1.DeleteRequest.force = 4: bool
field tenon.v1.DeleteResponse.object = 1: tenon.v1.Object
field tenon.v1.DiffRequest.objects = 1: repeated tenon.v1.Object
field tenon.v1.FieldChange.path = 1: string
field tenon.v1.FieldChange.old_value = 2: string
field tenon.v1.FieldChange.new_value = 3: string
field tenon.v1.ObjectDiff.kind = 1: tenon.v1.ObjectKind
field tenon.v1.ObjectDiff.name = 2: string
field tenon.v1.ObjectDiff.action = 3: tenon.v1.ChangeAction
field tenon.v1.ObjectDiff.changes = 4: repeated tenon.v1.FieldChange
field tenon.v1.ObjectDiff.effects = 5: repeated string
field tenon.v1.DiffResponse.diffs = 1: repeated tenon.v1.ObjectDiff
field tenon.v1.ComposeRequest.app = 1: string (oneof app_source)
field tenon.v1.ComposeRequest.app_spec = 2: tenon.v1.AppSpec (oneof app_source)
field tenon.v1.ComposeRequest.device = 3: string (oneof target)
field tenon.v1.ComposeRequest.profile = 4: tenon.v1.DeviceProfile (oneof target)
field tenon.v1.ComposeRequest.placement = 5: tenon.v1.Placement
field tenon.v1.ComposeRequest.policy = 6: tenon.v1.CompositionPolicy
field tenon.v1.ComposeRequest.build_image = 7: bool
field tenon.v1.ComposeResponse.composition = 1: tenon.v1.Composition
field tenon.v1.GetInstanceLogsRequest.instance = 1: string
field tenon.v1.GetInstanceLogsRequest.follow = 2: bool
field tenon.v1.GetInstanceLogsRequest.from_offset = 3: uint64
field tenon.v1.GetInstanceLogsRequest.tail_bytes = 4: uint64
field tenon.v1.MigrateRequest.instance = 1: string
field tenon.v1.MigrateRequest.target_device = 2: string
field tenon.v1.MigrationReport.source_device = 1: string
field tenon.v1.MigrationReport.target_device = 2: string
field tenon.v1.MigrationReport.downtime = 3: google.protobuf.Duration
field tenon.v1.MigrationReport.snapshot_time = 4: google.protobuf.Duration
field tenon.v1.MigrationReport.transfer_time = 5: google.protobuf.Duration
field tenon.v1.MigrationReport.restore_time = 6: google.protobuf.Duration
field tenon.v1.MigrationReport.snapshot_bytes = 7: uint64
field tenon.v1.MigrationReport.snapshot_digest = 8: string
field tenon.v1.MigrateResponse.instance = 1: tenon.v1.Instance
field tenon.v1.MigrateResponse.report = 2: tenon.v1.MigrationReport
field tenon.v1.CreateBootstrapTokenRequest.device_name = 1: string
field tenon.v1.CreateBootstrapTokenRequest.max_uses = 2: uint32
field tenon.v1.CreateBootstrapTokenRequest.ttl = 3: google.protobuf.Duration
field tenon.v1.CreateBootstrapTokenRequest.labels = 4: map<string, string>
field tenon.v1.CreateBootstrapTokenResponse.token = 1: string
field tenon.v1.CreateBootstrapTokenResponse.expire_time = 2: google.protobuf.Timestamp
enum tenon.v1.ObjectKind.OBJECT_KIND_UNSPECIFIED = 0
enum tenon.v1.ObjectKind.OBJECT_KIND_DEVICE = 1
enum tenon.v1.ObjectKind.OBJECT_KIND_APP = 2
enum tenon.v1.ObjectKind.OBJECT_KIND_DEPLOYMENT = 3
enum tenon.v1.ObjectKind.OBJECT_KIND_INSTANCE = 4
enum tenon.v1.ObjectKind.OBJECT_KIND_COMPOSITION = 5
enum tenon.v1.Arch.ARCH_UNSPECIFIED = 0
enum tenon.v1.Arch.ARCH_X86_64 = 1
enum tenon.v1.Arch.ARCH_ARM64 = 2
enum tenon.v1.ConnectionState.CONNECTION_STATE_UNSPECIFIED = 0
enum tenon.v1.ConnectionState.CONNECTION_STATE_NOT_ENROLLED = 1
enum tenon.v1.ConnectionState.CONNECTION_STATE_CONNECTED = 2
enum tenon.v1.ConnectionState.CONNECTION_STATE_DISCONNECTED = 3
enum tenon.v1.Criticality.CRITICALITY_UNSPECIFIED = 0
enum tenon.v1.Criticality.CRITICALITY_HARD = 1
enum tenon.v1.Criticality.CRITICALITY_SOFT = 2
enum tenon.v1.Criticality.CRITICALITY_BEST_EFFORT = 3
enum tenon.v1.RestartPolicy.RESTART_POLICY_UNSPECIFIED = 0
enum tenon.v1.RestartPolicy.RESTART_POLICY_NEVER = 1
enum tenon.v1.RestartPolicy.RESTART_POLICY_ON_FAILURE = 2
enum tenon.v1.RestartPolicy.RESTART_POLICY_ALWAYS = 3
enum tenon.v1.CompositionPolicy.COMPOSITION_POLICY_UNSPECIFIED = 0
enum tenon.v1.CompositionPolicy.COMPOSITION_POLICY_MINIMISE_FOOTPRINT = 1
enum tenon.v1.CompositionPolicy.COMPOSITION_POLICY_MINIMISE_LATENCY = 2
enum tenon.v1.RolloutPhase.ROLLOUT_PHASE_UNSPECIFIED = 0
enum tenon.v1.RolloutPhase.ROLLOUT_PHASE_PROGRESSING = 1
enum tenon.v1.RolloutPhase.ROLLOUT_PHASE_COMPLETE = 2
enum tenon.v1.RolloutPhase.ROLLOUT_PHASE_HALTED = 3
enum tenon.v1.RolloutPhase.ROLLOUT_PHASE_ROLLED_BACK = 4
enum tenon.v1.DesiredInstanceState.DESIRED_INSTANCE_STATE_UNSPECIFIED = 0
enum tenon.v1.DesiredInstanceState.DESIRED_INSTANCE_STATE_RUNNING = 1
enum tenon.v1.DesiredInstanceState.DESIRED_INSTANCE_STATE_PAUSED = 2
enum tenon.v1.InstanceState.INSTANCE_STATE_UNSPECIFIED = 0
enum tenon.v1.InstanceState.INSTANCE_STATE_PENDING = 1
enum tenon.v1.InstanceState.INSTANCE_STATE_CREATED = 2
enum tenon.v1.InstanceState.INSTANCE_STATE_RUNNING = 3
enum tenon.v1.InstanceState.INSTANCE_STATE_PAUSED = 4
enum tenon.v1.InstanceState.INSTANCE_STATE_MIGRATING = 5
enum tenon.v1.InstanceState.INSTANCE_STATE_EXITED = 6
enum tenon.v1.InstanceState.INSTANCE_STATE_FAULTED = 7
enum tenon.v1.InstanceState.INSTANCE_STATE_CRASHED = 8
enum tenon.v1.InstanceState.INSTANCE_STATE_UNKNOWN = 9
enum tenon.v1.LibraryLayer.LIBRARY_LAYER_UNSPECIFIED = 0
enum tenon.v1.LibraryLayer.LIBRARY_LAYER_TENON = 1
enum tenon.v1.LibraryLayer.LIBRARY_LAYER_MORTISE = 2
enum tenon.v1.MemoryAccess.MEMORY_ACCESS_UNSPECIFIED = 0
enum tenon.v1.MemoryAccess.MEMORY_ACCESS_NONE = 1
enum tenon.v1.MemoryAccess.MEMORY_ACCESS_READ_ONLY = 2
enum tenon.v1.MemoryAccess.MEMORY_ACCESS_READ_WRITE = 3
enum tenon.v1.MemoryAccess.MEMORY_ACCESS_READ_EXECUTE = 4
enum tenon.v1.SchedulabilityResult.SCHEDULABILITY_RESULT_UNSPECIFIED = 0
enum tenon.v1.SchedulabilityResult.SCHEDULABILITY_RESULT_SCHEDULABLE = 1
enum tenon.v1.SchedulabilityResult.SCHEDULABILITY_RESULT_UNSCHEDULABLE = 2
enum tenon.v1.SchedulabilityResult.SCHEDULABILITY_RESULT_SOFT_MISSES = 3
enum tenon.v1.SchedulabilityResult.SCHEDULABILITY_RESULT_NOT_ANALYSED = 4
enum tenon.v1.SchedulabilityAnalysis.SCHEDULABILITY_ANALYSIS_UNSPECIFIED = 0
enum tenon.v1.SchedulabilityAnalysis.SCHEDULABILITY_ANALYSIS_RESPONSE_TIME = 1
enum tenon.v1.SchedulabilityAnalysis.SCHEDULABILITY_ANALYSIS_PROCESSOR_DEMAND = 2
enum tenon.v1.ChangeAction.CHANGE_ACTION_UNSPECIFIED = 0
enum tenon.v1.ChangeAction.CHANGE_ACTION_CREATE = 1
enum tenon.v1.ChangeAction.CHANGE_ACTION_UPDATE = 2
enum tenon.v1.ChangeAction.CHANGE_ACTION_UNCHANGED = 3
rpc tenon.v1.FleetService.Apply(tenon.v1.ApplyRequest) returns (tenon.v1.ApplyResponse)
rpc tenon.v1.FleetService.Get(tenon.v1.GetRequest) returns (tenon.v1.Object)
rpc tenon.v1.FleetService.List(tenon.v1.ListRequest) returns (tenon.v1.ListResponse)
rpc tenon.v1.FleetService.Delete(tenon.v1.DeleteRequest) returns (tenon.v1.DeleteResponse)
rpc tenon.v1.FleetService.Diff(tenon.v1.DiffRequest) returns (tenon.v1.DiffResponse)
rpc tenon.v1.FleetService.Compose(tenon.v1.ComposeRequest) returns (tenon.v1.ComposeResponse)
rpc tenon.v1.FleetService.GetInstanceLogs(tenon.v1.GetInstanceLogsRequest) returns (stream tenon.v1.ConsoleChunk)
rpc tenon.v1.FleetService.Migrate(tenon.v1.MigrateRequest) returns (tenon.v1.MigrateResponse)
rpc tenon.v1.FleetService.CreateBootstrapToken(tenon.v1.CreateBootstrapTokenRequest) returns (tenon.v1.CreateBootstrapTokenResponse)
field tenon.v1.EnrollRequest.bootstrap_token = 1: string
field tenon.v1.EnrollRequest.device_name = 2: string
field tenon.v1.EnrollRequest.profile = 3: tenon.v1.DeviceProfile
field tenon.v1.EnrollResponse.device_name = 1: string
field tenon.v1.EnrollResponse.device_uid = 2: string
field tenon.v1.EnrollResponse.credential = 3: string
field tenon.v1.EnrollResponse.credential_expire_time = 4: google.protobuf.Timestamp
field tenon.v1.AgentMessage.sequence = 1: uint64
field tenon.v1.AgentMessage.hello = 10: tenon.v1.Hello (oneof kind)
field tenon.v1.AgentMessage.instance_status = 11: tenon.v1.InstanceStatusUpdate (oneof kind)
field tenon.v1.AgentMessage.telemetry = 12: tenon.v1.TelemetryReport (oneof kind)
field tenon.v1.AgentMessage.ack = 13: tenon.v1.Ack (oneof kind)
field tenon.v1.AgentMessage.image_request = 14: tenon.v1.ImageRequest (oneof kind)
field tenon.v1.AgentMessage.console = 15: tenon.v1.ConsoleOutput (oneof kind)
field tenon.v1.AgentMessage.snapshot_upload = 16: tenon.v1.SnapshotUpload (oneof kind)
field tenon.v1.Hello.device_name = 1: string
field tenon.v1.Hello.credential = 2: string
field tenon.v1.Hello.acknowledged_desired_state_version = 3: uint64
field tenon.v1.Hello.image_digests = 4: repeated string
field tenon.v1.Hello.profile = 5: tenon.v1.DeviceProfile
field tenon.v1.Hello.instances = 6: repeated tenon.v1.InstanceStatusUpdate
field tenon.v1.Hello.agent_time = 7: google.protobuf.Timestamp
field tenon.v1.InstanceStatusUpdate.instance_name = 1: string
field tenon.v1.InstanceStatusUpdate.instance_uid = 2: string
field tenon.v1.InstanceStatusUpdate.state = 3: tenon.v1.InstanceState
field tenon.v1.InstanceStatusUpdate.image_digest = 4: string
field tenon.v1.InstanceStatusUpdate.exit_reason = 5: tenon.v1.ExitReason
field tenon.v1.InstanceStatusUpdate.restart_count = 6: uint32
field tenon.v1.InstanceStatusUpdate.desired_state_version = 7: uint64
field tenon.v1.InstanceStatusUpdate.time = 8: google.protobuf.Timestamp
field tenon.v1.InstanceStatusUpdate.message = 9: string
field tenon.v1.TelemetryReport.instances = 1: repeated tenon.v1.InstanceTelemetry
field tenon.v1.Ack.controller_sequence = 1: uint64
field tenon.v1.Ack.desired_state_version = 2: uint64
field tenon.v1.Ack.outcome = 3: tenon.v1.AckOutcome
field tenon.v1.Ack.message = 4: string
field tenon.v1.ImageRequest.digest = 1: string
field tenon.v1.ImageRequest.offset = 2: uint64
field tenon.v1.SnapshotUpload.migration_id = 1: string
field tenon.v1.SnapshotUpload.instance_name = 2: string
field tenon.v1.SnapshotUpload.chunk = 3: tenon.v1.ImageChunk
field tenon.v1.ConsoleOutput.instance_name = 1: string
field tenon.v1.ConsoleOutput.chunk = 2: tenon.v1.ConsoleChunk
field tenon.v1.ControllerMessage.sequence = 1: uint64
field tenon.v1.ControllerMessage.welcome = 10: tenon.v1.Welcome (oneof kind)
field tenon.v1.ControllerMessage.desired_state = 11: tenon.v1.DesiredState (oneof kind)
field tenon.v1.ControllerMessage.image_chunk = 12: tenon.v1.ImageChunk (oneof kind)
field tenon.v1.ControllerMessage.ping = 13: tenon.v1.Ping (oneof kind)
field tenon.v1.ControllerMessage.error = 14: tenon.v1.Error (oneof kind)
field tenon.v1.ControllerMessage.console_subscription = 15: tenon.v1.ConsoleSubscription (oneof kind)
field tenon.v1.ControllerMessage.snapshot = 16: tenon.v1.SnapshotCommand (oneof kind)
field tenon.v1.Welcome.controller_time = 1: google.protobuf.Timestamp
field tenon.v1.Welcome.ping_interval = 2: google.protobuf.Duration
field tenon.v1.Welcome.telemetry_interval = 3: google.protobuf.Duration
field tenon.v1.Welcome.max_chunk_bytes = 4: uint32
field tenon.v1.Welcome.controller_version = 5: string
field tenon.v1.DesiredState.version = 1: uint64
field tenon.v1.DesiredState.instances = 2: repeated tenon.v1.DesiredInstance
field tenon.v1.DesiredState.generate_time = 3: google.protobuf.Timestamp
field tenon.v1.DesiredInstance.name = 1: string
field tenon.v1.DesiredInstance.uid = 2: string
field tenon.v1.DesiredInstance.deployment = 3: string
field tenon.v1.DesiredInstance.image_digest = 4: string
field tenon.v1.DesiredInstance.image_size_bytes = 5: uint64
field tenon.v1.DesiredInstance.placement = 6: tenon.v1.Placement
field tenon.v1.DesiredInstance.state = 7: tenon.v1.DesiredInstanceState
field tenon.v1.DesiredInstance.restart_policy = 8: tenon.v1.RestartPolicy
field tenon.v1.DesiredInstance.runtime = 9: tenon.v1.RuntimeConfig
field tenon.v1.DesiredInstance.restore_snapshot_digest = 10: string
field tenon.v1.DesiredInstance.channels = 11: repeated tenon.v1.ChannelEndpoint
field tenon.v1.ImageChunk.digest = 1: string
field tenon.v1.ImageChunk.offset = 2: uint64
field tenon.v1.ImageChunk.data = 3: bytes
field tenon.v1.ImageChunk.last = 4: bool
field tenon.v1.ImageChunk.total_size_bytes = 5: uint64
field tenon.v1.ImageChunk.chunk_sha256 = 6: string
field tenon.v1.Ping.send_time = 1: google.protobuf.Timestamp
field tenon.v1.Error.code = 1: int32
field tenon.v1.Error.message = 2: string
field tenon.v1.Error.related_sequence = 3: uint64
field tenon.v1.ConsoleSubscription.instance_name = 1: string
field tenon.v1.ConsoleSubscription.enabled = 2: bool
field tenon.v1.ConsoleSubscription.from_offset = 3: uint64
field tenon.v1.SnapshotCommand.instance_name = 1: string
field tenon.v1.SnapshotCommand.migration_id = 2: string
enum tenon.v1.AckOutcome.ACK_OUTCOME_UNSPECIFIED = 0
enum tenon.v1.AckOutcome.ACK_OUTCOME_ACCEPTED = 1
enum tenon.v1.AckOutcome.ACK_OUTCOME_REJECTED = 2
rpc tenon.v1.AgentService.Enroll(tenon.v1.EnrollRequest) returns (tenon.v1.EnrollResponse)
rpc tenon.v1.AgentService.Connect(stream tenon.v1.AgentMessage) returns (stream tenon.v1.ControllerMessage)
field tenon.v1.CpuRequest.policy = 1: tenon.v1.CpuPolicy
field tenon.v1.CpuRequest.host_cpu = 2: optional uint32
field tenon.v1.CpuRequest.rt_priority = 3: uint32
field tenon.v1.CpuGrant.policy = 1: tenon.v1.CpuPolicy
field tenon.v1.CpuGrant.host_cpu = 2: optional uint32
field tenon.v1.CpuGrant.rt_priority = 3: uint32
field tenon.v1.CpuGrant.note = 4: string
field tenon.v1.OperationLatency.operation = 1: tenon.v1.VmOperation
field tenon.v1.OperationLatency.latency = 2: google.protobuf.Duration
field tenon.v1.OperationLatency.time = 3: google.protobuf.Timestamp
field tenon.v1.VmStats.vcpu_exits = 1: uint64
field tenon.v1.VmStats.pauses = 2: uint64
field tenon.v1.VmStats.run_time = 3: google.protobuf.Duration
field tenon.v1.VmStats.console_bytes = 4: uint64
field tenon.v1.VmStats.boot_time = 5: google.protobuf.Duration
field tenon.v1.VmStats.operation_latencies = 6: repeated tenon.v1.OperationLatency
field tenon.v1.Vm.name = 1: string
field tenon.v1.Vm.uid = 2: string
field tenon.v1.Vm.state = 3: tenon.v1.VmState
field tenon.v1.Vm.image_digest = 4: string
field tenon.v1.Vm.memory_bytes = 5: uint64
field tenon.v1.Vm.cpu = 6: tenon.v1.CpuGrant
field tenon.v1.Vm.vmm_pid = 7: uint32
field tenon.v1.Vm.create_time = 8: google.protobuf.Timestamp
field tenon.v1.Vm.start_time = 9: google.protobuf.Timestamp
field tenon.v1.Vm.exit_reason = 10: tenon.v1.ExitReason
field tenon.v1.Vm.stats = 11: tenon.v1.VmStats
field tenon.v1.Vm.telemetry = 12: tenon.v1.InstanceTelemetry
field tenon.v1.CreateVmRequest.name = 1: string
field tenon.v1.CreateVmRequest.image_path = 2: string (oneof image)
field tenon.v1.CreateVmRequest.image_bytes = 3: bytes (oneof image)
field tenon.v1.CreateVmRequest.image_digest = 4: string
field tenon.v1.CreateVmRequest.memory_bytes = 5: uint64
field tenon.v1.CreateVmRequest.cpu = 6: tenon.v1.CpuRequest
field tenon.v1.CreateVmRequest.stack_bytes = 7: uint64
field tenon.v1.CreateVmRequest.app_run_time = 8: google.protobuf.Duration
field tenon.v1.StartVmRequest.name = 1: string
field tenon.v1.PauseVmRequest.name = 1: string
field tenon.v1.ResumeVmRequest.name = 1: string
field tenon.v1.DestroyVmRequest.name = 1: string
field tenon.v1.VmOperationResponse.vm = 1: tenon.v1.Vm
field tenon.v1.VmOperationResponse.latency = 2: google.protobuf.Duration
field tenon.v1.SnapshotVmRequest.name = 1: string
field tenon.v1.SnapshotVmRequest.path = 2: string
field tenon.v1.SnapshotVmResponse.vm = 1: tenon.v1.Vm
field tenon.v1.SnapshotVmResponse.path = 2: string
field tenon.v1.SnapshotVmResponse.size_bytes = 3: uint64
field tenon.v1.SnapshotVmResponse.digest = 4: string
field tenon.v1.SnapshotVmResponse.latency = 5: google.protobuf.Duration
field tenon.v1.SnapshotVmResponse.pause_duration = 6: google.protobuf.Duration
field tenon.v1.RestoreVmRequest.name = 1: string
field tenon.v1.RestoreVmRequest.path = 2: string
field tenon.v1.RestoreVmRequest.expected_digest = 3: string
field tenon.v1.RestoreVmRequest.cpu = 4: tenon.v1.CpuRequest
field tenon.v1.ListVmsResponse.vms = 1: repeated tenon.v1.Vm
field tenon.v1.GetVmRequest.name = 1: string
field tenon.v1.GetVmRequest.include_telemetry = 2: bool
field tenon.v1.StreamConsoleRequest.name = 1: string
field tenon.v1.StreamConsoleRequest.follow = 2: bool
field tenon.v1.StreamConsoleRequest.from_offset = 3: uint64
field tenon.v1.StreamTelemetryRequest.name = 1: string
field tenon.v1.StreamTelemetryRequest.interval = 2: google.protobuf.Duration
field tenon.v1.HostInfo.mortise_version = 1: string
field tenon.v1.HostInfo.guest_abi_version = 2: uint32
field tenon.v1.HostInfo.kvm_unavailable_reason = 3: string
field tenon.v1.HostInfo.hypervisor_features = 4: repeated string
field tenon.v1.HostInfo.libraries = 5: repeated string
field tenon.v1.HostInfo.management_cpus = 6: repeated uint32
field tenon.v1.HostInfo.realtime_cpus = 7: repeated uint32
field tenon.v1.HostInfo.guest_memory_bytes = 8: uint64
field tenon.v1.HostInfo.guest_memory_free_bytes = 9: uint64
field tenon.v1.HostInfo.tsc_frequency_khz = 10: uint64
field tenon.v1.HostInfo.snapshot_directory = 11: string
field tenon.v1.HostInfo.engine = 12: string
field tenon.v1.HostInfo.engine_detail = 13: string
field tenon.v1.HostInfo.engine_unavailable_reason = 14: string
field tenon.v1.HostInfo.qemu_version = 15: string
enum tenon.v1.VmState.VM_STATE_UNSPECIFIED = 0
enum tenon.v1.VmState.VM_STATE_CREATED = 1
enum tenon.v1.VmState.VM_STATE_RUNNING = 2
enum tenon.v1.VmState.VM_STATE_PAUSED = 3
enum tenon.v1.VmState.VM_STATE_EXITED = 4
enum tenon.v1.VmState.VM_STATE_FAULTED = 5
enum tenon.v1.VmState.VM_STATE_CRASHED = 6
enum tenon.v1.CpuPolicy.CPU_POLICY_UNSPECIFIED = 0
enum tenon.v1.CpuPolicy.CPU_POLICY_ANYWHERE = 1
enum tenon.v1.CpuPolicy.CPU_POLICY_REALTIME = 2
enum tenon.v1.CpuPolicy.CPU_POLICY_DEDICATED = 3
enum tenon.v1.VmOperation.VM_OPERATION_UNSPECIFIED = 0
enum tenon.v1.VmOperation.VM_OPERATION_CREATE = 1
enum tenon.v1.VmOperation.VM_OPERATION_START = 2
enum tenon.v1.VmOperation.VM_OPERATION_PAUSE = 3
enum tenon.v1.VmOperation.VM_OPERATION_RESUME = 4
enum tenon.v1.VmOperation.VM_OPERATION_SNAPSHOT = 5
enum tenon.v1.VmOperation.VM_OPERATION_RESTORE = 6
enum tenon.v1.VmOperation.VM_OPERATION_DESTROY = 7
rpc tenon.v1.MortiseService.Create(tenon.v1.CreateVmRequest) returns (tenon.v1.VmOperationResponse)
rpc tenon.v1.MortiseService.Start(tenon.v1.StartVmRequest) returns (tenon.v1.VmOperationResponse)
rpc tenon.v1.MortiseService.Pause(tenon.v1.PauseVmRequest) returns (tenon.v1.VmOperationResponse)
rpc tenon.v1.MortiseService.Resume(tenon.v1.ResumeVmRequest) returns (tenon.v1.VmOperationResponse)
rpc tenon.v1.MortiseService.Snapshot(tenon.v1.SnapshotVmRequest) returns (tenon.v1.SnapshotVmResponse)
rpc tenon.v1.MortiseService.Restore(tenon.v1.RestoreVmRequest) returns (tenon.v1.VmOperationResponse)
rpc tenon.v1.MortiseService.Destroy(tenon.v1.DestroyVmRequest) returns (tenon.v1.VmOperationResponse)
rpc tenon.v1.MortiseService.List(tenon.v1.ListVmsRequest) returns (tenon.v1.ListVmsResponse)
rpc tenon.v1.MortiseService.Get(tenon.v1.GetVmRequest) returns (tenon.v1.Vm)
rpc tenon.v1.MortiseService.StreamConsole(tenon.v1.StreamConsoleRequest) returns (stream tenon.v1.ConsoleChunk)
rpc tenon.v1.MortiseService.StreamTelemetry(tenon.v1.StreamTelemetryRequest) returns (stream tenon.v1.InstanceTelemetry)
rpc tenon.v1.MortiseService.GetHostInfo(tenon.v1.GetHostInfoRequest) returns (tenon.v1.HostInfo)
field tenon.v1.OperationLatency.vmm_latency = 4: google.protobuf.Duration
field tenon.v1.VmmCommand.request_id = 1: uint64
field tenon.v1.VmmCommand.start = 10: tenon.v1.VmmStart (oneof command)
field tenon.v1.VmmCommand.pause = 11: tenon.v1.VmmPause (oneof command)
field tenon.v1.VmmCommand.resume = 12: tenon.v1.VmmResume (oneof command)
field tenon.v1.VmmCommand.stop = 13: tenon.v1.VmmStop (oneof command)
field tenon.v1.VmmCommand.get_telemetry = 14: tenon.v1.VmmGetTelemetry (oneof command)
field tenon.v1.VmmEvent.request_id = 1: uint64
field tenon.v1.VmmEvent.ready = 10: tenon.v1.VmmReady (oneof event)
field tenon.v1.VmmEvent.failed = 11: tenon.v1.VmmFailure (oneof event)
field tenon.v1.VmmEvent.started = 12: tenon.v1.OperationLatency (oneof event)
field tenon.v1.VmmEvent.paused = 13: tenon.v1.OperationLatency (oneof event)
field tenon.v1.VmmEvent.resumed = 14: tenon.v1.OperationLatency (oneof event)
field tenon.v1.VmmEvent.exited = 15: tenon.v1.ExitReason (oneof event)
field tenon.v1.VmmEvent.console = 16: tenon.v1.ConsoleChunk (oneof event)
field tenon.v1.VmmEvent.telemetry = 17: tenon.v1.VmmTelemetry (oneof event)
field tenon.v1.VmmReady.cpu = 1: tenon.v1.CpuGrant
field tenon.v1.VmmReady.tsc_frequency_khz = 2: uint64
field tenon.v1.VmmReady.disabled_exits = 3: uint32
field tenon.v1.VmmReady.load_time = 4: google.protobuf.Duration
field tenon.v1.VmmFailure.code = 1: int32
field tenon.v1.VmmFailure.message = 2: string
field tenon.v1.VmmTelemetry.telemetry = 1: tenon.v1.InstanceTelemetry
field tenon.v1.VmmTelemetry.vcpu_exits = 2: uint64
field tenon.v1.VmmTelemetry.boot_time = 3: google.protobuf.Duration
field tenon.v1.VmmCommand.snapshot = 20: tenon.v1.VmmSnapshot (oneof command)
field tenon.v1.VmmSnapshot.path = 1: string
field tenon.v1.VmmSnapshot.run_id = 2: string
field tenon.v1.VmmSnapshot.image_digest = 3: string
field tenon.v1.VmmSnapshot.vm_name = 4: string
field tenon.v1.VmmEvent.snapshotted = 20: tenon.v1.VmmSnapshotWritten (oneof event)
field tenon.v1.VmmSnapshotWritten.path = 1: string
field tenon.v1.VmmSnapshotWritten.size_bytes = 2: uint64
field tenon.v1.VmmSnapshotWritten.digest = 3: string
field tenon.v1.VmmSnapshotWritten.latency = 4: google.protobuf.Duration
field tenon.v1.VmmSnapshotWritten.pause_duration = 5: google.protobuf.Duration
field tenon.v1.InstanceTelemetry.channels = 7: repeated tenon.v1.ChannelTelemetry
field tenon.v1.ChannelTelemetry.name = 1: string
field tenon.v1.ChannelTelemetry.messages_sent = 2: uint64
field tenon.v1.ChannelTelemetry.messages_received = 3: uint64
field tenon.v1.ChannelTelemetry.send_full = 4: uint64
field tenon.v1.ChannelTelemetry.peer_errors = 5: uint64
field tenon.v1.ChannelTelemetry.doorbells_sent = 6: uint64
field tenon.v1.ChannelTelemetry.doorbells_received = 7: uint64
field tenon.v1.CreateVmRequest.channels = 9: repeated tenon.v1.ChannelEndpoint
field tenon.v1.Vm.channels = 13: repeated tenon.v1.ChannelEndpoint
field tenon.v1.ChannelEndpoint.name = 1: string
field tenon.v1.ChannelEndpoint.side = 2: tenon.v1.ChannelSide
enum tenon.v1.ChannelSide.CHANNEL_SIDE_UNSPECIFIED = 0
enum tenon.v1.ChannelSide.CHANNEL_SIDE_A = 1
enum tenon.v1.ChannelSide.CHANNEL_SIDE_B = 2
field tenon.v1.ObjectMeta.resource_version = 7: uint64
field tenon.v1.ListResponse.resource_version = 3: uint64
field tenon.v1.WatchRequest.kind = 1: tenon.v1.ObjectKind
field tenon.v1.WatchRequest.selector = 2: tenon.v1.LabelSelector
field tenon.v1.WatchRequest.resource_version = 3: uint64
field tenon.v1.WatchEvent.type = 1: tenon.v1.WatchEvent.Type
field tenon.v1.WatchEvent.object = 2: tenon.v1.Object
field tenon.v1.WatchEvent.resource_version = 3: uint64
enum tenon.v1.WatchEvent.Type.TYPE_UNSPECIFIED = 0
enum tenon.v1.WatchEvent.Type.TYPE_ADDED = 1
enum tenon.v1.WatchEvent.Type.TYPE_MODIFIED = 2
enum tenon.v1.WatchEvent.Type.TYPE_DELETED = 3
enum tenon.v1.WatchEvent.Type.TYPE_BOOKMARK = 4
rpc tenon.v1.FleetService.Watch(tenon.v1.WatchRequest) returns (stream tenon.v1.WatchEvent)
field tenon.v1.SnapshotUpload.error = 4: string
field tenon.v1.DeploymentRevision.number = 1: uint64
field tenon.v1.DeploymentRevision.digest = 2: string
field tenon.v1.DeploymentRevision.spec = 3: tenon.v1.DeploymentSpec
field tenon.v1.DeploymentRevision.app = 4: tenon.v1.AppSpec
field tenon.v1.DeploymentRevision.create_time = 5: google.protobuf.Timestamp
field tenon.v1.DeploymentStatus.revision = 10: uint64
field tenon.v1.DeploymentStatus.previous_revision = 11: uint64
field tenon.v1.DeploymentStatus.wave = 12: uint32
field tenon.v1.DeploymentStatus.waves = 13: uint32
field tenon.v1.DeploymentStatus.wave_start_time = 14: google.protobuf.Timestamp
field tenon.v1.DeploymentStatus.revisions = 15: repeated tenon.v1.DeploymentRevision
field tenon.v1.InstanceSpec.revision = 12: uint64
field tenon.v1.RolloutEvent.time = 1: google.protobuf.Timestamp
field tenon.v1.RolloutEvent.revision = 2: uint64
field tenon.v1.RolloutEvent.wave = 3: uint32
field tenon.v1.RolloutEvent.reason = 4: string
field tenon.v1.RolloutEvent.message = 5: string
field tenon.v1.DeploymentStatus.events = 16: repeated tenon.v1.RolloutEvent
field tenon.v1.ControlRolloutRequest.deployment = 1: string
field tenon.v1.ControlRolloutRequest.action = 2: tenon.v1.ControlRolloutRequest.Action
field tenon.v1.ControlRolloutRequest.revision = 3: uint64
enum tenon.v1.ControlRolloutRequest.Action.ACTION_UNSPECIFIED = 0
enum tenon.v1.ControlRolloutRequest.Action.ACTION_PAUSE = 1
enum tenon.v1.ControlRolloutRequest.Action.ACTION_RESUME = 2
enum tenon.v1.ControlRolloutRequest.Action.ACTION_ABORT = 3
enum tenon.v1.ControlRolloutRequest.Action.ACTION_UNDO = 4
enum tenon.v1.RolloutPhase.ROLLOUT_PHASE_PAUSED = 5
rpc tenon.v1.FleetService.ControlRollout(tenon.v1.ControlRolloutRequest) returns (tenon.v1.Deployment)
)golden";

std::string type_of(const FieldDescriptor* field) {
  if (field->is_map()) {
    return "map<" + type_of(field->message_type()->map_key()) + ", " +
           type_of(field->message_type()->map_value()) + ">";
  }
  switch (field->type()) {
    case FieldDescriptor::TYPE_MESSAGE:
    case FieldDescriptor::TYPE_GROUP:
      return field->message_type()->full_name();
    case FieldDescriptor::TYPE_ENUM:
      return field->enum_type()->full_name();
    default:
      return field->type_name();
  }
}

void describe_enum(const EnumDescriptor* type, std::vector<std::string>* lines) {
  for (int i = 0; i < type->value_count(); ++i) {
    lines->push_back("enum " + type->full_name() + "." + type->value(i)->name() + " = " +
                     std::to_string(type->value(i)->number()));
  }
}

void describe_message(const Descriptor* type, std::vector<std::string>* lines) {
  if (type->options().map_entry()) return;
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    std::string label;
    if (field->is_map()) {
      label = "";
    } else if (field->is_repeated()) {
      label = "repeated ";
    } else if (field->has_optional_keyword()) {
      label = "optional ";
    }
    std::string line = "field " + field->full_name() + " = " + std::to_string(field->number()) +
                       ": " + label + type_of(field);
    if (field->real_containing_oneof() != nullptr) {
      line += " (oneof " + field->real_containing_oneof()->name() + ")";
    }
    lines->push_back(line);
  }
  for (int i = 0; i < type->nested_type_count(); ++i) {
    describe_message(type->nested_type(i), lines);
  }
  for (int i = 0; i < type->enum_type_count(); ++i) describe_enum(type->enum_type(i), lines);
}

std::vector<std::string> current_schema() {
  std::vector<std::string> lines;
  for (const char* name : kProtoFiles) {
    const FileDescriptor* file =
        google::protobuf::DescriptorPool::generated_pool()->FindFileByName(name);
    if (file == nullptr) {
      ADD_FAILURE() << "no generated descriptor for " << name;
      continue;
    }
    for (int i = 0; i < file->message_type_count(); ++i) {
      describe_message(file->message_type(i), &lines);
    }
    for (int i = 0; i < file->enum_type_count(); ++i) describe_enum(file->enum_type(i), &lines);
    for (int i = 0; i < file->service_count(); ++i) {
      const auto* service = file->service(i);
      for (int j = 0; j < service->method_count(); ++j) {
        const auto* method = service->method(j);
        lines.push_back("rpc " + method->full_name() + "(" +
                        (method->client_streaming() ? "stream " : "") +
                        method->input_type()->full_name() + ") returns (" +
                        (method->server_streaming() ? "stream " : "") +
                        method->output_type()->full_name() + ")");
      }
    }
  }
  return lines;
}

std::vector<std::string> golden_schema() {
  std::vector<std::string> lines;
  std::istringstream input(kGolden);
  for (std::string line; std::getline(input, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

std::string join(const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& line : lines) text += line + "\n";
  return text;
}

TEST(WireCompatibility, ReleasedFieldsEnumValuesAndRpcsAreUnchanged) {
  const auto current = current_schema();
  const std::set<std::string> present(current.begin(), current.end());
  std::vector<std::string> broken;
  for (const auto& line : golden_schema()) {
    if (present.count(line) == 0) broken.push_back(line);
  }
  EXPECT_TRUE(broken.empty())
      << "These released lines no longer hold; changing or removing them breaks deployed peers "
         "or REST clients. Restore them (add new fields under new numbers instead):\n"
      << join(broken);
}

TEST(WireCompatibility, GoldenListsEveryFieldEnumValueAndRpc) {
  const auto golden = golden_schema();
  const std::set<std::string> released(golden.begin(), golden.end());
  std::vector<std::string> added;
  for (const auto& line : current_schema()) {
    if (released.count(line) == 0) added.push_back(line);
  }
  EXPECT_TRUE(added.empty()) << "New schema lines: append them to kGolden in "
                                "tests/proto/wire_compat_test.cc so they stay stable:\n"
                             << join(added);
}

TEST(WireCompatibility, GoldenHasNoDuplicateLines) {
  auto golden = golden_schema();
  std::sort(golden.begin(), golden.end());
  EXPECT_EQ(std::adjacent_find(golden.begin(), golden.end()), golden.end());
}

}  // namespace

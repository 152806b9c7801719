// mortise-vmm's view of an instance (telemetry snapshot, exit reason, placement) in the wire
// types of tenon.v1, converted in one place.
#pragma once

#include <cstdint>

#include "instance.h"
#include "placement.h"
#include "telemetry.h"
#include "tenon/v1/mortise.pb.h"
#include "tenon/v1/telemetry.pb.h"

namespace mortise {

// Histograms keep their raw ticks (with the tick frequency) and gain their summaries in ns.
tenon::v1::InstanceTelemetry telemetry_to_wire(const TelemetrySnapshot& snapshot, uint64_t tsc_khz);

tenon::v1::LatencyHistogram histogram_to_wire(const tenon::abi::Histogram& histogram,
                                              uint64_t tsc_khz);

// kTimeout becomes EXIT_KIND_STOPPED: mortise-vmm runs without a host-side time limit (the
// app's run time is the guest's own), so the only way to it is a stop.
tenon::v1::ExitReason exit_reason_to_wire(const ExitReason& reason);

tenon::v1::CpuGrant placement_to_wire(tenon::v1::CpuPolicy policy, const Placement& placement);

}  // namespace mortise

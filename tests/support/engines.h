// The engines guest tests run on: probed once per process, the same way mortised's `--engine auto`
// probes (mortise/vmm/engine.h). A guest test runs on every usable engine and skips only when
// there is none.
#pragma once

#include <string>
#include <vector>

#include "engine.h"

namespace tenon::test_support {

// Every engine usable here, KVM first.
const std::vector<mortise::EngineKind>& usable_engines();
// Why no engine is usable (empty when one is).
std::string no_engine_reason();
// The engine `--engine auto` picks here; only meaningful when usable_engines() is not empty.
mortise::EngineKind auto_engine();
// Where this build puts images for `engine`: `base` (QEMU platform) or `base`/kvm (native).
std::string image_dir(const std::string& base, mortise::EngineKind engine);
// KVM runs guest code on the CPU (hardware virtualization: vmx or svm, not the paravirtual
// kvm_pvm that emulates every guest instruction): only then do guest timings on the kvm engine
// say something about Tenon rather than about an emulator.
bool kvm_runs_guests_natively();

}  // namespace tenon::test_support

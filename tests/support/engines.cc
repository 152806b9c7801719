// Engine probing for tests; see engines.h.
#include "engines.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace tenon::test_support {
namespace {

const mortise::EngineProbe& probe() {
  static const mortise::EngineProbe result = mortise::probe_engines(mortise::QemuSettings{});
  return result;
}

}  // namespace

const std::vector<mortise::EngineKind>& usable_engines() {
  static const std::vector<mortise::EngineKind> engines = [] {
    std::vector<mortise::EngineKind> found;
    if (probe().kvm_usable) found.push_back(mortise::EngineKind::kKvm);
    if (probe().qemu_usable) found.push_back(mortise::EngineKind::kQemu);
    return found;
  }();
  return engines;
}

std::string no_engine_reason() {
  if (!usable_engines().empty()) return "";
  return "no engine can run guests here: kvm: " + probe().kvm_problem +
         "; qemu: " + probe().qemu_problem;
}

mortise::EngineKind auto_engine() {
  return probe().kvm_usable ? mortise::EngineKind::kKvm : mortise::EngineKind::kQemu;
}

std::string image_dir(const std::string& base, mortise::EngineKind engine) {
  return engine == mortise::EngineKind::kKvm ? base + "/kvm" : base;
}

bool kvm_runs_guests_natively() {
  static const bool native = [] {
    if (std::filesystem::exists("/sys/module/kvm_pvm")) return false;
    std::ifstream cpuinfo("/proc/cpuinfo");
    for (std::string line; std::getline(cpuinfo, line);) {
      if (line.rfind("flags", 0) != 0) continue;
      std::istringstream flags(line);
      for (std::string flag; flags >> flag;) {
        if (flag == "vmx" || flag == "svm") return true;
      }
      return false;
    }
    return false;
  }();
  return native;
}

}  // namespace tenon::test_support

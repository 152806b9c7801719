// Device profile parsing; see device.h.
#include "device.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "yaml_fields.h"

namespace tenon::controller {

absl::StatusOr<DeviceProfile> parse_device_profile(std::string_view text, const std::string& file) {
  absl::StatusOr<YAML::Node> root = yaml_fields::load_mapping(text, file);
  if (!root.ok()) return root.status();
  yaml_fields::MappingReader reader(file, *root, "");
  if (absl::Status status = reader.check_shape(); !status.ok()) return status;
  if (absl::Status status = reader.no_unknown_keys(
          {"name", "arch", "cores", "realtime_cores", "memory_bytes", "guest_memory_bytes",
           "tsc_frequency_khz", "hypervisor_features", "mortise_libraries", "guest_abi_version",
           "scheduling_overhead_ns"});
      !status.ok()) {
    return status;
  }
  DeviceProfile device;
  device.file = file;
  for (const auto& entry : *root)
    device.field_lines[entry.first.Scalar()] = entry.first.Mark().line + 1;
  absl::StatusOr<std::string> name = reader.string("name", false);
  if (!name.ok()) return name.status();
  device.name = *name;
  absl::StatusOr<std::string> arch = reader.string("arch", true);
  if (!arch.ok()) return arch.status();
  if (!yaml_fields::is_valid_name(*arch)) {
    return yaml_fields::error_at(file, reader.get("arch"), "arch", "not a valid arch name");
  }
  device.arch = *arch;
  struct Number {
    const char* key;
    bool required;
    uint64_t maximum;
    uint64_t* target64;
    uint32_t* target32;
  };
  for (const Number& number : std::initializer_list<Number>{
           {"cores", true, 4096, nullptr, &device.cores},
           {"realtime_cores", false, 4096, nullptr, &device.realtime_cores},
           {"memory_bytes", true, 1ull << 50, &device.memory_bytes, nullptr},
           {"guest_memory_bytes", false, 1ull << 50, &device.guest_memory_bytes, nullptr},
           {"tsc_frequency_khz", false, 1ull << 32, &device.tsc_frequency_khz, nullptr},
           {"guest_abi_version", false, 0xffffffffull, nullptr, &device.guest_abi_version},
           {"scheduling_overhead_ns", false, 1'000'000'000, &device.scheduling_overhead_ns,
            nullptr}}) {
    absl::StatusOr<uint64_t> value = reader.unsigned_integer(number.key, number.required);
    if (!value.ok()) return value.status();
    if (*value > number.maximum) {
      return yaml_fields::error_at(file, reader.get(number.key), number.key,
                                   absl::StrCat("at most ", number.maximum));
    }
    if (number.target64) *number.target64 = *value;
    if (number.target32) *number.target32 = static_cast<uint32_t>(*value);
  }
  if (device.cores == 0) {
    return yaml_fields::error_at(file, reader.get("cores"), "cores",
                                 "a device has at least one core");
  }
  if (device.memory_bytes == 0) {
    return yaml_fields::error_at(file, reader.get("memory_bytes"), "memory_bytes",
                                 "must be positive");
  }
  if (device.guest_memory_bytes > device.memory_bytes) {
    return yaml_fields::error_at(file, reader.get("guest_memory_bytes"), "guest_memory_bytes",
                                 "more than the device's memory_bytes");
  }
  for (auto [key, target] : {std::pair{"hypervisor_features", &device.hypervisor_features},
                             std::pair{"mortise_libraries", &device.mortise_libraries}}) {
    absl::StatusOr<std::vector<std::string>> list = reader.string_list(key, false);
    if (!list.ok()) return list.status();
    *target = std::move(*list);
    std::sort(target->begin(), target->end());
  }
  return device;
}

}  // namespace tenon::controller

// Hypercall decoding and dispatch; see hypercall_dispatch.h.
#include "hypercall_dispatch.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mortise {
namespace {

using tenon::abi::Hypercall;

HypercallOutcome violation(std::string reason) {
  return {HypercallOutcomeKind::kViolation, 0, {}, std::move(reason)};
}

template <typename Args>
absl::StatusOr<Args> read_args(const GuestMemory& memory, uint32_t address, const char* name) {
  absl::StatusOr<Args> args = memory.read<Args>(address);
  if (!args.ok()) {
    return absl::OutOfRangeError(absl::StrFormat("hypercall %s: argument block at %#x: %s", name,
                                                 address, args.status().message()));
  }
  return args;
}

HypercallOutcome console_write(uint32_t address, const GuestMemory& memory, ConsoleSink& console) {
  auto args = read_args<tenon::abi::ConsoleWriteArgs>(memory, address, "console-write");
  if (!args.ok()) return violation(std::string(args.status().message()));
  if (args->length > tenon::abi::kConsoleWriteMax) {
    return violation(absl::StrFormat("hypercall console-write: length %d exceeds the limit of %d",
                                     args->length, tenon::abi::kConsoleWriteMax));
  }
  absl::StatusOr<std::span<uint8_t>> bytes = memory.checked(args->buffer_address, args->length);
  if (!bytes.ok()) {
    return violation(absl::StrCat("hypercall console-write: buffer: ", bytes.status().message()));
  }
  console.write(*bytes);
  args->written = args->length;
  if (!memory.write(address, *args).ok()) {
    return violation("hypercall console-write: cannot write the result back");
  }
  return {};
}

HypercallOutcome panic(uint32_t address, const GuestMemory& memory) {
  auto args = read_args<tenon::abi::PanicArgs>(memory, address, "panic");
  if (!args.ok()) return violation(std::string(args.status().message()));
  if (args->length > tenon::abi::kPanicMessageMax) {
    return violation(absl::StrFormat("hypercall panic: message length %d exceeds the limit of %d",
                                     args->length, tenon::abi::kPanicMessageMax));
  }
  absl::StatusOr<std::span<uint8_t>> bytes = memory.checked(args->message_address, args->length);
  if (!bytes.ok()) {
    return violation(absl::StrCat("hypercall panic: message: ", bytes.status().message()));
  }
  return {HypercallOutcomeKind::kPanic, 0, {}, printable_line(*bytes)};
}

const char* vector_name(uint64_t vector) {
  static const char* const kNames[] = {"divide error (#DE)",
                                       "debug (#DB)",
                                       "non-maskable interrupt",
                                       "breakpoint (#BP)",
                                       "overflow (#OF)",
                                       "bound range (#BR)",
                                       "invalid opcode (#UD)",
                                       "device not available (#NM)",
                                       "double fault (#DF)",
                                       "coprocessor segment overrun",
                                       "invalid TSS (#TS)",
                                       "segment not present (#NP)",
                                       "stack-segment fault (#SS)",
                                       "general protection (#GP)",
                                       "page fault (#PF)",
                                       "reserved",
                                       "x87 floating point (#MF)",
                                       "alignment check (#AC)",
                                       "machine check (#MC)",
                                       "SIMD floating point (#XM)",
                                       "virtualization (#VE)",
                                       "control protection (#CP)"};
  return vector < std::size(kNames) ? kNames[vector] : "reserved exception";
}

}  // namespace

bool is_hypercall_port(uint16_t port) {
  return port >= tenon::abi::kHypercallPortBase &&
         port < tenon::abi::kHypercallPortBase + tenon::abi::kHypercallPortWindow;
}

HypercallOutcome dispatch_hypercall(uint16_t port, uint32_t value, uint32_t access_size,
                                    const GuestMemory& memory, ConsoleSink& console) {
  if (!is_hypercall_port(port) ||
      port >= tenon::abi::kHypercallPortBase + static_cast<uint16_t>(Hypercall::kCount)) {
    return violation(absl::StrFormat("unknown hypercall number %d (port %#x)",
                                     port - tenon::abi::kHypercallPortBase, port));
  }
  if (access_size != 4) {
    return violation(absl::StrFormat("hypercall on port %#x with a %d-byte access (expected 4)",
                                     port, access_size));
  }
  switch (static_cast<Hypercall>(port - tenon::abi::kHypercallPortBase)) {
    case Hypercall::kConsoleWrite:
      return console_write(value, memory, console);
    case Hypercall::kExit: {
      auto args = read_args<tenon::abi::ExitArgs>(memory, value, "exit");
      if (!args.ok()) return violation(std::string(args.status().message()));
      return {HypercallOutcomeKind::kExit, args->status, {}, {}};
    }
    case Hypercall::kFault: {
      auto args = read_args<tenon::abi::FaultArgs>(memory, value, "fault");
      if (!args.ok()) return violation(std::string(args.status().message()));
      return {HypercallOutcomeKind::kFault, 0, *args, describe_fault(*args)};
    }
    case Hypercall::kPanic:
      return panic(value, memory);
    case Hypercall::kCount:
      break;
  }
  return violation(absl::StrFormat("unknown hypercall on port %#x", port));
}

std::string printable_line(std::span<const uint8_t> bytes) {
  std::string line;
  line.reserve(bytes.size());
  for (uint8_t byte : bytes) {
    line.push_back(byte >= 0x20 && byte < 0x7f ? static_cast<char>(byte) : '?');
  }
  return line;
}

std::string describe_fault(const tenon::abi::FaultArgs& fault) {
  std::string text = absl::StrFormat("%s at rip %#x, error code %#x", vector_name(fault.vector),
                                     fault.rip, fault.error_code);
  constexpr uint64_t kPageFault = 14;
  if (fault.vector == kPageFault) {
    const uint64_t code = fault.error_code;
    absl::StrAppendFormat(&text, ", address %#x (%s, %s)", fault.cr2,
                          (code & 0x10)  ? "instruction fetch"
                          : (code & 0x2) ? "write"
                                         : "read",
                          (code & 0x1) ? "protection violation" : "page not present");
  }
  return text;
}

}  // namespace mortise

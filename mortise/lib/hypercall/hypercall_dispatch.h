// Decodes and carries out one hypercall from a guest. All of it is untrusted: the port, the
// argument address, every field of the argument struct. A bad hypercall is a violation with a
// reason; it never touches memory outside the guest.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "console_sink.h"
#include "guest_memory.h"
#include "tenon/abi.h"

namespace mortise {

enum class HypercallOutcomeKind {
  kContinue,   // handled; resume the guest
  kExit,       // the guest asked to end with exit_status
  kFault,      // the guest reported an exception it cannot handle
  kPanic,      // the guest reported a failed invariant
  kViolation,  // the hypercall broke the ABI; stop the guest
};

struct HypercallOutcome {
  HypercallOutcomeKind kind = HypercallOutcomeKind::kContinue;
  int64_t exit_status = 0;
  tenon::abi::FaultArgs fault{};
  std::string message;  // panic text or violation reason
};

// True when `port` lies in the hypercall port window (other ports are not hypercalls).
bool is_hypercall_port(uint16_t port);

// `port` and `value` come from the guest's `outl`; `access_size` is the I/O width in bytes.
HypercallOutcome dispatch_hypercall(uint16_t port, uint32_t value, uint32_t access_size,
                                    const GuestMemory& memory, ConsoleSink& console);

// "page fault (#PF) at rip 0x.. accessing 0x.. (write, page not present)"
std::string describe_fault(const tenon::abi::FaultArgs& fault);

// Guest text as one printable line, whatever the guest sent: other bytes become '?'.
std::string printable_line(std::span<const uint8_t> bytes);

}  // namespace mortise

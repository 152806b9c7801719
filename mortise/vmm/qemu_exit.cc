// Decoding a QEMU engine instance's end; see qemu_exit.h.
#include "qemu_exit.h"

#include <sys/wait.h>

#include <cstring>
#include <span>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "guest_setup.h"
#include "hypercall_dispatch.h"
#include "tenon/abi.h"

namespace mortise {
namespace {

using tenon::abi::Hypercall;

// The last line QEMU printed, for messages: enough to say what went wrong, never a flood.
std::string last_line(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  const size_t newline = text.rfind('\n');
  std::string_view line = newline == std::string_view::npos ? text : text.substr(newline + 1);
  if (line.size() > 300) line = line.substr(line.size() - 300);
  return printable_line({reinterpret_cast<const uint8_t*>(line.data()), line.size()});
}

ExitReason violation(std::string message) { return {ExitKind::kViolation, 0, std::move(message)}; }

ExitReason from_record(uint32_t port_value, const GuestMemory& memory, const MemoryLayout& layout) {
  if (port_value != static_cast<uint32_t>(Hypercall::kExit) &&
      port_value != static_cast<uint32_t>(Hypercall::kFault) &&
      port_value != static_cast<uint32_t>(Hypercall::kPanic)) {
    return violation(absl::StrFormat(
        "the guest wrote %d to the exit port, which names no way to end", port_value));
  }
  absl::StatusOr<tenon::abi::ExitRecord> record =
      memory.read<tenon::abi::ExitRecord>(tenon::abi::kExitRecordAddress);
  if (!record.ok()) return violation(absl::StrCat("exit record: ", record.status().message()));
  if (record->magic != tenon::abi::kExitRecordMagic) {
    return violation(absl::StrFormat(
        "the guest ended through the exit port without an exit record (magic %#x, expected %#x)",
        record->magic, tenon::abi::kExitRecordMagic));
  }
  if (record->kind != port_value) {
    return violation(
        absl::StrFormat("the exit record says kind %d but the guest wrote %d to the exit port",
                        record->kind, port_value));
  }
  switch (static_cast<Hypercall>(port_value)) {
    case Hypercall::kExit:
      return {ExitKind::kGuestExit, record->exit.status,
              absl::StrCat("guest exited with status ", record->exit.status)};
    case Hypercall::kFault:
      return {ExitKind::kGuestFault, 0, describe_guest_fault(record->fault, layout)};
    case Hypercall::kPanic: {
      if (record->panic_length > sizeof(record->panic_message)) {
        return violation(
            absl::StrFormat("exit record: panic message length %d exceeds the limit of %d",
                            record->panic_length, sizeof(record->panic_message)));
      }
      const auto* text = reinterpret_cast<const uint8_t*>(record->panic_message);
      return {ExitKind::kGuestPanic, 0,
              absl::StrCat("guest panic: ", printable_line({text, record->panic_length}))};
    }
    default:
      break;
  }
  return violation("unreachable exit kind");
}

}  // namespace

ExitReason decode_qemu_exit(int wait_status, const GuestMemory& memory, const MemoryLayout& layout,
                            bool guest_reset, std::string_view qemu_diagnostics) {
  if (WIFSIGNALED(wait_status)) {
    return {ExitKind::kHypervisorError, 0,
            absl::StrCat("QEMU was killed by signal ", WTERMSIG(wait_status),
                         qemu_diagnostics.empty() ? "" : ": ", last_line(qemu_diagnostics))};
  }
  const int code = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
  if (code == 0) {
    // QEMU runs with -action reboot=shutdown: a guest that resets the machine ends it.
    return {ExitKind::kGuestFault, 0,
            guest_reset ? "triple fault (the guest could not handle an exception): the machine "
                          "reset"
                        : "the machine shut down without an exit record"};
  }
  // isa-debug-exit exits with (value << 1) | 1; QEMU's own failures exit with 1 (value 0, which
  // plat-qemu never writes).
  if (code == 1) {
    return {ExitKind::kHypervisorError, 0,
            absl::StrCat("QEMU failed", qemu_diagnostics.empty() ? "" : ": ",
                         last_line(qemu_diagnostics))};
  }
  if ((code & 1) == 0) {
    return {ExitKind::kHypervisorError, 0,
            absl::StrCat("QEMU exited with status ", code, qemu_diagnostics.empty() ? "" : ": ",
                         last_line(qemu_diagnostics))};
  }
  // Only the low bits of the written value survive in an exit code; a value naming no kind of
  // end is refused either way.
  return from_record(static_cast<uint32_t>(code >> 1), memory, layout);
}

}  // namespace mortise

// libFuzzer target for hypercall decoding: a guest controls the port, the 32-bit argument
// address, the access width and every byte of its memory. Whatever it sends, dispatch returns an
// outcome (most often a violation) and never reads or writes outside guest memory; ASan checks
// the "never".
//
// Input layout: 2 bytes port offset, 4 bytes argument address, 1 byte access width, then the
// initial contents of a small guest memory (the rest stays zero).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "console_sink.h"
#include "guest_memory.h"
#include "hypercall_dispatch.h"
#include "tenon/abi.h"

namespace {
constexpr uint64_t kGuestMemorySize = 16 * 4096;

// Keeps the console cheap: only counts what it is given.
class CountingConsole final : public mortise::ConsoleSink {
 public:
  void write(std::span<const uint8_t> bytes) override { total_ += bytes.size(); }
  uint64_t total() const { return total_; }

 private:
  uint64_t total_ = 0;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kHeader = 7;
  if (size < kHeader) return 0;
  uint16_t port_offset;
  uint32_t address;
  std::memcpy(&port_offset, data, 2);
  std::memcpy(&address, data + 2, 4);
  const uint32_t width = data[6] % 5;
  // Mostly aim at real hypercall ports and at addresses inside guest memory, sometimes not.
  const uint16_t port = tenon::abi::kHypercallPortBase + (port_offset % 0x120);
  if ((port_offset & 0x8000) == 0) address %= kGuestMemorySize;

  static absl::StatusOr<mortise::GuestMemory> memory =
      mortise::GuestMemory::create(kGuestMemorySize);
  if (!memory.ok()) std::abort();
  std::memset(memory->host_base(), 0, kGuestMemorySize);
  std::memcpy(memory->host_base(), data + kHeader,
              std::min<size_t>(size - kHeader, kGuestMemorySize));

  CountingConsole console;
  const mortise::HypercallOutcome outcome =
      mortise::dispatch_hypercall(port, address, width, *memory, console);
  // A console write that succeeded must have passed a length within the limit.
  if (console.total() > tenon::abi::kConsoleWriteMax) std::abort();
  if (outcome.kind == mortise::HypercallOutcomeKind::kPanic &&
      outcome.message.size() > tenon::abi::kPanicMessageMax) {
    std::abort();
  }
  return 0;
}

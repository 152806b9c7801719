// The guest ABI between Tenon and Mortise: hypercall numbers and argument structs, the boot info
// block, the guest-physical memory layout and the telemetry page. This one header is compiled by
// both sides (freestanding guest and hosted hypervisor); it holds types and constants only.
//
// Hypercall convention (x86_64): the guest writes the guest-physical address of the argument
// struct, a 32-bit value, to I/O port kHypercallPortBase + number with `outl`. Mortise copies the
// struct out of guest memory through its bounds-checked accessor, acts, and may write results back
// into the same struct. Guest memory is identity-mapped, so a guest pointer is its physical
// address.
#pragma once

#include <stdint.h>

namespace tenon::abi {

// Bumped on any incompatible change to this header. An image carries the version it was built
// against in an ELF note (see kNoteName); Mortise refuses an image whose version differs.
inline constexpr uint32_t kVersion = 1;

// ELF note that carries the ABI version: name "Tenon", type kNoteTypeAbiVersion, 4-byte payload.
inline constexpr char kNoteName[] = "Tenon";
inline constexpr uint32_t kNoteTypeAbiVersion = 1;
// A second "Tenon" note, type kNoteTypePlatform, 4-byte payload: the Platform the image was linked
// for. Images without one were linked for kMortise (they predate the note).
inline constexpr uint32_t kNoteTypePlatform = 2;

// How an image talks to its host. Both platforms share the boot contract, the boot info, the
// memory layout and the telemetry page; they differ in how console output and the instance's end
// reach the host.
enum class Platform : uint32_t {
  kMortise = 1,  // plat-mortise: hypercalls (below), on Mortise's native KVM engine
  kQemu = 2,     // plat-qemu: emulated ports and an exit record (see "QEMU platform" below)
};

// ---- Guest-physical memory layout -----------------------------------------------------------
// [0, 0x1000)                 never mapped: catches null-pointer accesses
// [kBootInfoAddress, +4K)     BootInfo, read-only to the guest
// [kTelemetryAddress, +4K)    TelemetryPage, read-write
// [0x3000, kExitRecordAddress) reserved for later ABI pages, never mapped
// [kExitRecordAddress, +4K)   ExitRecord, read-write, mapped for the QEMU platform only
// [kImageBase, image end)     the ELF image's PT_LOAD segments, with their own permissions
// [heap_start, heap_end)      free memory for the guest, read-write, no-execute
// one unmapped guard page, then the boot stack (read-write, no-execute), stack_top at its end
// [page tables, memory end)   built by Mortise, not mapped into the guest
// [kIvcWindowBase, +2 MiB)    inter-VM channel regions, only in instances with channels
inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kBootInfoAddress = 0x1000;
inline constexpr uint64_t kTelemetryAddress = 0x2000;
inline constexpr uint64_t kImageBase = 0x8000;

// ---- Hypercalls -----------------------------------------------------------------------------
inline constexpr uint16_t kHypercallPortBase = 0x500;
// Ports [kHypercallPortBase, +kHypercallPortWindow) are reserved for hypercalls; a write to one
// that names no hypercall is an unknown hypercall, not a stray I/O access.
inline constexpr uint16_t kHypercallPortWindow = 0x100;

enum class Hypercall : uint16_t {
  kConsoleWrite = 0,  // ConsoleWriteArgs: write bytes to the instance console
  kExit = 1,          // ExitArgs: the instance ends with a status
  kFault = 2,         // FaultArgs: an exception the guest cannot handle; the instance stops
  kPanic = 3,         // PanicArgs: a guest assertion failed; the instance stops with the message
  kCount = 4,
};

// Largest console write accepted in one hypercall; longer writes are refused as a violation.
inline constexpr uint64_t kConsoleWriteMax = 4096;
// Largest panic message; longer ones are truncated by the guest side.
inline constexpr uint64_t kPanicMessageMax = 256;

struct ConsoleWriteArgs {
  uint64_t buffer_address;  // in: guest-physical address of the bytes
  uint64_t length;          // in: number of bytes, at most kConsoleWriteMax
  uint64_t written;         // out: bytes accepted
};

struct ExitArgs {
  int64_t status;  // in: 0 is success
};

struct FaultArgs {
  uint64_t vector;      // in: x86 exception vector (0..31)
  uint64_t error_code;  // in: the CPU's error code, or 0 where the vector has none
  uint64_t rip;         // in: faulting instruction
  uint64_t rsp;         // in: stack pointer at the fault
  uint64_t cr2;         // in: faulting linear address for #PF, else 0
};

struct PanicArgs {
  uint64_t message_address;  // in: guest-physical address of the message
  uint64_t length;           // in: bytes, at most kPanicMessageMax
};

// ---- Inter-VM channels (IVC) ---------------------------------------------------------------
// A channel joins two instances on one host. Mortise maps the channel's shared region (an
// IvcRegion) into the two endpoints only, at kIvcWindowBase + index * kIvcChannelStride, where
// index is the channel's position in BootInfo::ivc_channels; the window is one 2 MiB page at the
// top of the first GiB, so an instance with channels has at most kIvcWindowBase bytes of memory.
// Accesses to the window outside a region are outside guest memory (the instance is stopped).
//
// Doorbells: a one-byte `outb` to kIvcDoorbellPortBase + index raises interrupt vector
// kIvcFirstDoorbellVector + index in the peer (KVM ioeventfd -> irqfd, no exit to user space).
//
// The region holds two single-producer single-consumer rings, ring[s] written by side s. Each
// side writes only its own IvcSideControl line and its own ring's slots; nothing stops a hostile
// peer from writing anywhere in the region, so every index and length read from it is validated
// before use (tenon/ivc_ring.h), and a violation is a peer error counted in telemetry.
inline constexpr uint32_t kIvcMaxChannels = 8;
inline constexpr uint32_t kIvcChannelNameMax = 16;  // NUL-padded, not necessarily terminated
inline constexpr uint64_t kIvcWindowBase = 0x3fe00000;
inline constexpr uint64_t kIvcWindowSize = 2ull << 20;
inline constexpr uint64_t kIvcChannelStride = 64ull << 10;
inline constexpr uint16_t kIvcDoorbellPortBase = 0x600;
inline constexpr uint32_t kIvcFirstDoorbellVector = 33;
inline constexpr uint32_t kIvcSlotBytes = 64;
inline constexpr uint32_t kIvcMessageMax = kIvcSlotBytes - sizeof(uint32_t);  // 60 bytes
inline constexpr uint32_t kIvcRingSlots = 64;

struct IvcSlot {
  uint32_t length;  // bytes of payload in use, at most kIvcMessageMax
  uint8_t payload[kIvcMessageMax];
};

// One cache line, written only by its side.
struct IvcSideControl {
  uint64_t produced;  // messages this side has put into ring[side], free-running
  uint64_t consumed;  // messages this side has taken from the peer's ring, free-running
  uint64_t waiting;   // non-zero: this side sleeps until the peer rings its doorbell
  uint64_t reserved[5];
};

struct IvcRegion {
  IvcSideControl sides[2];
  uint8_t reserved[kPageSize - 2 * sizeof(IvcSideControl)];
  IvcSlot rings[2][kIvcRingSlots];
};
inline constexpr uint64_t kIvcRegionBytes = sizeof(IvcRegion);

// What Mortise tells an endpoint about one of its channels (in BootInfo).
struct IvcChannelInfo {
  char name[kIvcChannelNameMax];
  uint64_t region_address;   // guest-physical
  uint64_t region_size;      // kIvcRegionBytes
  uint32_t side;             // 0 or 1: which ring this endpoint writes
  uint16_t doorbell_port;    // rings the peer
  uint16_t doorbell_vector;  // raised here when the peer rings
};

static_assert(sizeof(IvcSideControl) == 64);
static_assert(sizeof(IvcSlot) == kIvcSlotBytes);
static_assert(kIvcRegionBytes == 3 * kPageSize);
static_assert(kIvcRegionBytes <= kIvcChannelStride);
static_assert(kIvcMaxChannels * kIvcChannelStride <= kIvcWindowSize);

// ---- QEMU platform (plat-qemu) ---------------------------------------------------------------
// On Mortise's QEMU engine the guest makes no hypercalls. Console bytes go to the debug console
// port (`rep outsb` to kQemuConsolePort). To end, the guest fills the ExitRecord page and then
// writes the record's kind (a Hypercall number: kExit, kFault or kPanic) to the exit port
// (QEMU's isa-debug-exit); QEMU then ends, and Mortise reads the record from guest memory and
// trusts none of it. The local APIC is in xAPIC mode at kLocalApicAddress; Mortise maps that
// page (read-write, no-execute) for QEMU-platform images only.
inline constexpr uint16_t kQemuConsolePort = 0xe9;
inline constexpr uint16_t kQemuExitPort = 0xf4;
inline constexpr uint64_t kExitRecordAddress = 0x7000;
inline constexpr uint64_t kLocalApicAddress = 0xfee00000;
inline constexpr uint32_t kExitRecordMagic = 0x54495845;  // "EXIT"

struct ExitRecord {
  uint32_t magic;         // kExitRecordMagic
  uint32_t kind;          // Hypercall::kExit, kFault or kPanic: the value written to kQemuExitPort
  ExitArgs exit;          // kind kExit
  FaultArgs fault;        // kind kFault
  uint64_t panic_length;  // kind kPanic: bytes of panic_message, at most its size
  char panic_message[kPanicMessageMax];
};
static_assert(sizeof(ExitRecord) <= kPageSize);

// ---- Boot info --------------------------------------------------------------------------------
inline constexpr uint32_t kBootInfoMagic = 0x4e4f4e54;  // "TNON"

// Mortise enters the image at its ELF entry in 64-bit long mode, paging on, interrupts off,
// with RSP = stack_top and RDI = kBootInfoAddress.
struct BootInfo {
  uint32_t magic;
  uint32_t abi_version;
  uint64_t memory_size;  // bytes of guest-physical memory
  uint64_t tsc_khz;      // guest TSC frequency as reported by KVM
  uint64_t heap_start;   // first free byte after the image (page aligned)
  uint64_t heap_end;     // end of free memory (page aligned)
  uint64_t stack_top;    // initial RSP
  uint64_t stack_size;   // bytes below stack_top, above the guard page
  uint64_t telemetry_address;
  uint64_t host_start_tsc;  // host TSC when the hypervisor process started, for boot timing
  uint64_t app_run_ns;      // how long the task scheduler runs before it returns; 0: forever
  // Written by Mortise while the guest runs (the page is read-only to the guest): how many times
  // the instance was resumed after a pause, and the TSC of the last resume. Periodic tasks use it
  // to mark the pause as a gap instead of counting it as release latency.
  uint64_t resume_count;
  uint64_t last_resume_tsc;
  // Inter-VM channels this instance is an endpoint of (see "Inter-VM channels" below); fields
  // appended in the same ABI version, so an older Mortise leaves them zero: no channels.
  uint32_t ivc_channel_count;  // valid entries in ivc_channels, at most kIvcMaxChannels
  uint32_t ivc_reserved;
  IvcChannelInfo ivc_channels[kIvcMaxChannels];
};

// ---- Telemetry page ---------------------------------------------------------------------------
inline constexpr uint32_t kTelemetryMagic = 0x4d4c4554;  // "TELM"

inline constexpr uint32_t kMaxTasks = 8;
inline constexpr uint32_t kHistogramBuckets = 32;
inline constexpr uint32_t kTaskNameMax = 16;

// Values in TSC ticks. Bucket i counts values v with floor(log2(v)) == i (v == 0 goes to bucket
// 0; values of 2^31 ticks and more go to the last bucket). min, max, count and sum are exact.
struct Histogram {
  uint64_t count;
  uint64_t sum;
  uint64_t min;
  uint64_t max;
  uint32_t buckets[kHistogramBuckets];
};

enum class SchedulerKind : uint32_t { kNone = 0, kFixedPriority = 1, kEarliestDeadlineFirst = 2 };

struct TaskTelemetry {
  char name[kTaskNameMax];  // NUL-padded, not necessarily NUL-terminated
  uint64_t period_ticks;
  uint64_t deadline_ticks;  // relative deadline
  uint32_t priority;
  uint32_t reserved;
  uint64_t jobs;              // jobs started
  uint64_t deadline_misses;   // jobs completed after their absolute deadline
  uint64_t gap_jobs;          // releases skipped across a pause, not counted as latency
  Histogram release_latency;  // release instant -> job start
  Histogram response_time;    // release instant -> job completion
};

struct IvcChannelTelemetry {
  char name[kIvcChannelNameMax];  // NUL-padded, not necessarily NUL-terminated
  uint64_t messages_sent;
  uint64_t messages_received;
  uint64_t send_full;    // sends refused because the ring was full
  uint64_t peer_errors;  // indices or lengths from the peer that failed validation
  uint64_t doorbells_sent;
  uint64_t doorbells_received;
};

// Written by the guest, read by Mortise while the guest runs. The task section is published
// under a sequence lock: the guest makes `sequence` odd before it changes anything below it and
// even afterwards; a reader that sees an odd value, or a different value after copying, retries.
struct TelemetryPage {
  uint32_t magic;
  uint32_t abi_version;
  uint64_t entry_tsc;       // TSC at the image's first instruction
  uint64_t main_entry_tsc;  // TSC just before the application's main runs
  uint64_t sequence;
  uint32_t scheduler;   // SchedulerKind
  uint32_t task_count;  // valid entries in tasks
  uint64_t gaps;        // pauses the guest noticed (resume_count seen)
  TaskTelemetry tasks[kMaxTasks];
  // Inter-VM channel counters (appended in the same ABI version; zero from older guests). Not
  // under the seqlock: each counter is one aligned 64-bit store, so a reader sees every counter
  // whole, possibly from slightly different instants.
  uint32_t ivc_channel_count;  // valid entries in ivc_channels
  uint32_t ivc_reserved;
  IvcChannelTelemetry ivc_channels[kIvcMaxChannels];
};

static_assert(sizeof(BootInfo) <= kPageSize);
static_assert(sizeof(TelemetryPage) <= kPageSize);

}  // namespace tenon::abi

// ivc: the guest side of inter-VM channels. Channels come from the boot info (Mortise maps each
// shared region and wires its doorbell); the ring protocol, with its validation of everything
// the peer writes, is tenon/ivc_ring.h; this file adds handles, waiting, doorbells and the
// per-channel counters in the telemetry page.
#include "tenon/ivc.h"

#include <stdint.h>

#include "tenon/abi.h"
#include "tenon/arch.h"
#include "tenon/ivc_ring.h"
#include "tenon/platform.h"
#include "tenon/time.h"

namespace {

namespace abi = tenon::abi;
using tenon::ivc::RingEndpoint;
using tenon::ivc::RingStatus;

constexpr uint32_t kApicBaseMsr = 0x1b;
constexpr uint64_t kApicGlobalEnable = 1ull << 11;
constexpr uint64_t kApicX2Mode = 1ull << 10;
constexpr uint32_t kEndOfInterruptMsr = 0x80b;
constexpr uint32_t kSpuriousVectorMsr = 0x80f;
constexpr uint64_t kApicSoftwareEnable = 1ull << 8;
constexpr uint32_t kSpuriousVector =
    tenon::arch::kFirstInterruptVector + tenon::arch::kInterruptVectorCount - 1;
constexpr uint64_t kInterruptFlag = 1ull << 9;

struct Channel {
  RingEndpoint ring;
  uint16_t doorbell_port = 0;
};

Channel channels[abi::kIvcMaxChannels];
uint32_t channel_count = 0;
bool initialized = false;

abi::IvcChannelTelemetry& counters(uint32_t index) {
  return tenon_platform_telemetry()->ivc_channels[index];
}

// One aligned 64-bit store per update: the host reads these while the guest runs.
void bump(uint64_t& counter) {
  __atomic_store_n(&counter, __atomic_load_n(&counter, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

void on_doorbell(uint32_t vector) {
  tenon_arch_write_msr(kEndOfInterruptMsr, 0);
  const uint32_t index = vector - abi::kIvcFirstDoorbellVector;
  if (index < channel_count) bump(counters(index).doorbells_received);
}

void on_spurious_interrupt(uint32_t) {}

// The local APIC in x2APIC mode, software-enabled; the same state the timer library sets, so
// whichever comes first does it and the other finds it done.
void enable_local_apic() {
  const uint64_t base = tenon_arch_read_msr(kApicBaseMsr);
  if ((base & (kApicGlobalEnable | kApicX2Mode)) != (kApicGlobalEnable | kApicX2Mode)) {
    tenon_arch_write_msr(kApicBaseMsr, base | kApicGlobalEnable | kApicX2Mode);
  }
  if ((tenon_arch_read_msr(kSpuriousVectorMsr) & kApicSoftwareEnable) == 0) {
    tenon_arch_set_interrupt_handler(kSpuriousVector, on_spurious_interrupt);
    tenon_arch_write_msr(kSpuriousVectorMsr, kApicSoftwareEnable | kSpuriousVector);
  }
}

void initialize() {
  if (initialized) return;
  initialized = true;
  const abi::BootInfo* boot_info = tenon_platform_boot_info();
  uint32_t count = boot_info->ivc_channel_count;
  if (count > abi::kIvcMaxChannels) count = abi::kIvcMaxChannels;
  abi::TelemetryPage* telemetry = tenon_platform_telemetry();
  for (uint32_t i = 0; i < count; ++i) {
    const abi::IvcChannelInfo& info = boot_info->ivc_channels[i];
    // Mortise is trusted, but an entry that does not describe a whole region is left unusable
    // rather than believed.
    if (info.region_address == 0 || info.region_size < abi::kIvcRegionBytes || info.side > 1 ||
        info.doorbell_vector != abi::kIvcFirstDoorbellVector + i) {
      continue;
    }
    channels[i].ring =
        RingEndpoint(reinterpret_cast<abi::IvcRegion*>(info.region_address), info.side);
    channels[i].doorbell_port = info.doorbell_port;
    for (uint32_t c = 0; c < abi::kIvcChannelNameMax; ++c) {
      telemetry->ivc_channels[i].name[c] = info.name[c];
    }
    tenon_arch_set_interrupt_handler(info.doorbell_vector, on_doorbell);
  }
  channel_count = count;
  telemetry->ivc_channel_count = count;
  if (count != 0) enable_local_apic();
}

Channel* channel_of(int32_t handle) {
  if (handle < 0 || static_cast<uint32_t>(handle) >= channel_count) return nullptr;
  Channel* channel = &channels[handle];
  return channel->ring.valid() ? channel : nullptr;
}

bool names_equal(const char* wanted, const char* name) {
  uint32_t i = 0;
  for (; i < abi::kIvcChannelNameMax; ++i) {
    if (wanted[i] != name[i]) return false;
    if (wanted[i] == '\0') return true;
  }
  return wanted[i] == '\0';
}

void ring_doorbell_if_waited_for(int32_t handle, Channel& channel) {
  if (!channel.ring.peer_waiting()) return;
  const uint8_t value = 1;
  asm volatile("outb %0, %1" : : "a"(value), "Nd"(channel.doorbell_port) : "memory");
  bump(counters(static_cast<uint32_t>(handle)).doorbells_sent);
}

// A full ring is counted for non-blocking sends only: a blocking send retries until it fits.
enum class CountFull { kNo, kYes };

int32_t send_once(int32_t handle, Channel& channel, const void* data, uint32_t length,
                  CountFull count_full) {
  const RingStatus status = channel.ring.send(data, length);
  abi::IvcChannelTelemetry& entry = counters(static_cast<uint32_t>(handle));
  switch (status) {
    case RingStatus::kOk:
      bump(entry.messages_sent);
      ring_doorbell_if_waited_for(handle, channel);
      return TENON_IVC_OK;
    case RingStatus::kWouldBlock:
      if (count_full == CountFull::kYes) bump(entry.send_full);
      return TENON_IVC_WOULD_BLOCK;
    case RingStatus::kTooLong:
      return TENON_IVC_TOO_LONG;
    case RingStatus::kPeerError:
      bump(entry.peer_errors);
      return TENON_IVC_PEER_ERROR;
  }
  return TENON_IVC_PEER_ERROR;
}

int32_t recv_once(int32_t handle, Channel& channel, void* buffer, uint32_t capacity) {
  uint32_t length = 0;
  const RingStatus status = channel.ring.receive(buffer, capacity, &length);
  abi::IvcChannelTelemetry& entry = counters(static_cast<uint32_t>(handle));
  switch (status) {
    case RingStatus::kOk:
      bump(entry.messages_received);
      ring_doorbell_if_waited_for(handle, channel);
      return static_cast<int32_t>(length);
    case RingStatus::kWouldBlock:
      return TENON_IVC_WOULD_BLOCK;
    case RingStatus::kTooLong:
      return TENON_IVC_TOO_LONG;
    case RingStatus::kPeerError:
      bump(entry.peer_errors);
      return TENON_IVC_PEER_ERROR;
  }
  return TENON_IVC_PEER_ERROR;
}

uint64_t read_flags() {
  uint64_t flags;
  asm volatile("pushfq; popq %0" : "=r"(flags)::"memory");
  return flags;
}

// Repeats `attempt` while it would block. Doorbell waits announce themselves, retry once more
// with interrupts off (a doorbell between the retry and the halt would otherwise be lost), and
// halt; the interrupt flag is restored as found.
template <typename Attempt>
int32_t wait_for(Channel& channel, tenon_ivc_wait wait, uint64_t timeout_ns, Attempt attempt) {
  const uint64_t deadline =
      timeout_ns == 0 ? 0 : tenon::time::read_tsc() + timeout_ns * tenon_time_tsc_khz() / 1'000'000;
  for (;;) {
    int32_t result = attempt();
    if (result != TENON_IVC_WOULD_BLOCK) return result;
    if (deadline != 0 && tenon::time::read_tsc() >= deadline) return TENON_IVC_TIMED_OUT;
    if (wait == TENON_IVC_WAIT_POLL) {
      asm volatile("pause");
      continue;
    }
    const bool interrupts_were_on = (read_flags() & kInterruptFlag) != 0;
    tenon_arch_interrupts_disable();
    channel.ring.set_waiting(true);
    result = attempt();
    if (result == TENON_IVC_WOULD_BLOCK) tenon_arch_wait_for_interrupt();
    channel.ring.set_waiting(false);
    if (interrupts_were_on) tenon_arch_interrupts_enable();
    if (result != TENON_IVC_WOULD_BLOCK) return result;
  }
}

}  // namespace

extern "C" int32_t tenon_ivc_open(const char* name) {
  initialize();
  if (name == nullptr) return TENON_IVC_NO_CHANNEL;
  const abi::BootInfo* boot_info = tenon_platform_boot_info();
  for (uint32_t i = 0; i < channel_count; ++i) {
    if (channels[i].ring.valid() && names_equal(name, boot_info->ivc_channels[i].name)) {
      return static_cast<int32_t>(i);
    }
  }
  return TENON_IVC_NO_CHANNEL;
}

extern "C" uint32_t tenon_ivc_channel_count(void) {
  initialize();
  return channel_count;
}

extern "C" int32_t tenon_ivc_send(int32_t handle, const void* data, uint32_t length) {
  Channel* channel = channel_of(handle);
  if (channel == nullptr) return TENON_IVC_NO_CHANNEL;
  return send_once(handle, *channel, data, length, CountFull::kYes);
}

extern "C" int32_t tenon_ivc_recv(int32_t handle, void* buffer, uint32_t capacity) {
  Channel* channel = channel_of(handle);
  if (channel == nullptr) return TENON_IVC_NO_CHANNEL;
  return recv_once(handle, *channel, buffer, capacity);
}

extern "C" int32_t tenon_ivc_send_wait(int32_t handle, const void* data, uint32_t length,
                                       tenon_ivc_wait wait, uint64_t timeout_ns) {
  Channel* channel = channel_of(handle);
  if (channel == nullptr) return TENON_IVC_NO_CHANNEL;
  return wait_for(*channel, wait, timeout_ns,
                  [&] { return send_once(handle, *channel, data, length, CountFull::kNo); });
}

extern "C" int32_t tenon_ivc_recv_wait(int32_t handle, void* buffer, uint32_t capacity,
                                       tenon_ivc_wait wait, uint64_t timeout_ns) {
  Channel* channel = channel_of(handle);
  if (channel == nullptr) return TENON_IVC_NO_CHANNEL;
  return wait_for(*channel, wait, timeout_ns,
                  [&] { return recv_once(handle, *channel, buffer, capacity); });
}

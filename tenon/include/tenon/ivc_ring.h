// One endpoint of an inter-VM channel's shared region (tenon/abi.h, IvcRegion): the
// single-producer single-consumer ring operations, written once and compiled by both the guest
// library (tenon/lib/ivc) and host code (tests, the benchmark's same-run baseline).
//
// The region is shared with a peer that may be hostile. The endpoint keeps its own indices in
// private memory and only publishes them; it never reads its own state back from the region.
// Every value it reads from the peer (the peer's produced and consumed counts, a slot's length)
// is read once and validated before use, so a peer that scribbles over the region can make this
// endpoint see garbage messages or peer errors, never read or write outside the region.
//
// Ordering: x86 is TSO, so release/acquire are compiler barriers; the one store->load ordering
// that matters (publish, then look whether the peer sleeps) takes a full fence.
#pragma once

#include <stdint.h>

#include "tenon/abi.h"

namespace tenon::ivc {

enum class RingStatus : int32_t {
  kOk = 0,
  kWouldBlock = -1,  // send: the ring is full; receive: it is empty
  kTooLong = -2,     // send: message above kIvcMessageMax; receive: buffer too small
  kPeerError = -3,   // the peer published an impossible index or length
};

class RingEndpoint {
 public:
  RingEndpoint() = default;
  // Starts from what the region says this side had done, so an endpoint that re-attaches to a
  // live channel carries on. Whatever those values are, later operations validate them.
  RingEndpoint(abi::IvcRegion* region, uint32_t side)
      : region_(region),
        side_(side & 1),
        produced_(load(&region->sides[side & 1].produced)),
        consumed_(load(&region->sides[side & 1].consumed)) {}

  bool valid() const { return region_ != nullptr; }
  uint32_t side() const { return side_; }

  // Copies `length` bytes into the next free slot of this side's ring and publishes it.
  RingStatus send(const void* data, uint32_t length) {
    if (length > abi::kIvcMessageMax) return RingStatus::kTooLong;
    const uint64_t peer_consumed = load(&peer().consumed);
    const uint64_t in_flight = produced_ - peer_consumed;
    if (in_flight > abi::kIvcRingSlots) return RingStatus::kPeerError;
    if (in_flight == abi::kIvcRingSlots) return RingStatus::kWouldBlock;
    abi::IvcSlot& slot = region_->rings[side_][produced_ % abi::kIvcRingSlots];
    __atomic_store_n(&slot.length, length, __ATOMIC_RELAXED);
    if (length != 0) __builtin_memcpy(slot.payload, data, length);
    ++produced_;
    __atomic_store_n(&self().produced, produced_, __ATOMIC_RELEASE);
    return RingStatus::kOk;
  }

  // Takes the next message from the peer's ring into `buffer`; its length goes to *length.
  // A slot with an impossible length is consumed and reported as a peer error, so one bad
  // message does not wedge the channel.
  RingStatus receive(void* buffer, uint32_t capacity, uint32_t* length) {
    const uint64_t peer_produced = load(&peer().produced);
    const uint64_t available = peer_produced - consumed_;
    if (available > abi::kIvcRingSlots) return RingStatus::kPeerError;
    if (available == 0) return RingStatus::kWouldBlock;
    const abi::IvcSlot& slot = region_->rings[side_ ^ 1][consumed_ % abi::kIvcRingSlots];
    const uint32_t slot_length = __atomic_load_n(&slot.length, __ATOMIC_RELAXED);
    if (slot_length > abi::kIvcMessageMax) {
      advance_consumed();
      return RingStatus::kPeerError;
    }
    if (slot_length > capacity) return RingStatus::kTooLong;
    if (slot_length != 0) __builtin_memcpy(buffer, slot.payload, slot_length);
    advance_consumed();
    *length = slot_length;
    return RingStatus::kOk;
  }

  // Whether the peer asked to be woken; called after send or receive published something.
  bool peer_waiting() const {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return load(&peer().waiting) != 0;
  }
  // Announces (or withdraws) that this side is about to sleep until a doorbell; the caller
  // retries its operation after announcing, so a message published meanwhile is not missed.
  void set_waiting(bool waiting) {
    __atomic_store_n(&self().waiting, waiting ? 1ull : 0ull, __ATOMIC_RELAXED);
    if (waiting) __atomic_thread_fence(__ATOMIC_SEQ_CST);
  }

  uint64_t produced() const { return produced_; }
  uint64_t consumed() const { return consumed_; }

 private:
  static uint64_t load(const uint64_t* shared) { return __atomic_load_n(shared, __ATOMIC_ACQUIRE); }
  abi::IvcSideControl& self() const { return region_->sides[side_]; }
  const abi::IvcSideControl& peer() const { return region_->sides[side_ ^ 1]; }
  void advance_consumed() {
    ++consumed_;
    __atomic_store_n(&self().consumed, consumed_, __ATOMIC_RELEASE);
  }

  abi::IvcRegion* region_ = nullptr;
  uint32_t side_ = 0;
  uint64_t produced_ = 0;  // private: the region's copy is only published, never read back
  uint64_t consumed_ = 0;
};

}  // namespace tenon::ivc

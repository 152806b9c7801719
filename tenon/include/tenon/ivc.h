// Tenon inter-VM channels (micro-library `ivc`): messages of up to 60 bytes to and from another
// instance on the same host, over a shared-memory ring Mortise sets up for the two endpoints.
//
//   int32_t channel = tenon_ivc_open("readings");      // a channel the deployment declared
//   tenon_ivc_send(channel, &reading, sizeof reading);  // never blocks
//   int32_t length = tenon_ivc_recv(channel, buffer, sizeof buffer);  // >= 0: a message
//
// The non-blocking calls suit periodic tasks. The blocking calls wait either by polling the
// ring (lowest latency, burns the CPU) or by halting until the peer rings the doorbell; while
// one waits, tasks of higher priority still preempt it, lower ones do not run.
#pragma once

#include <stdint.h>

extern "C" {

enum tenon_ivc_status : int32_t {
  TENON_IVC_OK = 0,
  TENON_IVC_WOULD_BLOCK = -1,  // send: ring full; receive: ring empty
  TENON_IVC_TOO_LONG = -2,     // send: over TENON_IVC_MESSAGE_MAX; receive: buffer too small
  TENON_IVC_PEER_ERROR = -3,   // the peer broke the ring protocol (counted in telemetry)
  TENON_IVC_NO_CHANNEL = -4,   // no such channel, or a bad handle
  TENON_IVC_TIMED_OUT = -5,
};

enum tenon_ivc_wait : uint32_t {
  TENON_IVC_WAIT_DOORBELL = 0,  // halt until the peer's doorbell (or any interrupt)
  TENON_IVC_WAIT_POLL = 1,      // spin on the shared ring
};

#define TENON_IVC_MESSAGE_MAX 60

// The handle of the channel named `name` in this instance's boot info, or TENON_IVC_NO_CHANNEL.
int32_t tenon_ivc_open(const char* name);
// Number of channels Mortise gave this instance.
uint32_t tenon_ivc_channel_count(void);

// Non-blocking. send returns TENON_IVC_OK or a negative status; recv returns the message length
// (>= 0) or a negative status.
int32_t tenon_ivc_send(int32_t channel, const void* data, uint32_t length);
int32_t tenon_ivc_recv(int32_t channel, void* buffer, uint32_t capacity);

// Blocking: wait while the ring is full (send) or empty (recv). timeout_ns 0 waits forever; with
// TENON_IVC_WAIT_DOORBELL a timeout is noticed at the next interrupt of any kind.
int32_t tenon_ivc_send_wait(int32_t channel, const void* data, uint32_t length,
                            enum tenon_ivc_wait wait, uint64_t timeout_ns);
int32_t tenon_ivc_recv_wait(int32_t channel, void* buffer, uint32_t capacity,
                            enum tenon_ivc_wait wait, uint64_t timeout_ns);
}

// ivc-ping: measures an inter-VM channel from the guest's own TSC. First IVC_PING_ROUND_TRIPS
// round trips (send, wait for the echo), then a one-way stream of IVC_PING_STREAM messages that
// ivc-pong counts; every sequence number is checked on both ends. Prints one line of results
// for the host to parse and exits 0 only when nothing was lost, reordered or malformed.
#include <stdint.h>

#include "pingpong.h"
#include "tenon/console.h"
#include "tenon/ivc.h"
#include "tenon/time.h"

namespace {

using pingpong::Kind;
using pingpong::Message;

constexpr tenon_ivc_wait kWait = IVC_PING_WAIT;
constexpr uint64_t kRoundTrips = IVC_PING_ROUND_TRIPS;
constexpr uint64_t kStreamMessages = IVC_PING_STREAM;
constexpr uint64_t kTimeoutNs = 10'000'000'000;  // a peer this late is gone
// Round-trip times in log-linear buckets: four per power of two (25 % resolution), any range.
constexpr uint32_t kBuckets = 256;
uint32_t rtt_buckets[kBuckets];

uint32_t bucket_of(uint64_t ns) {
  if (ns < 4) return static_cast<uint32_t>(ns);
  const uint32_t top_bit = 63 - static_cast<uint32_t>(__builtin_clzll(ns));
  return (top_bit - 1) * 4 + static_cast<uint32_t>((ns >> (top_bit - 2)) & 3);
}

uint64_t bucket_upper_ns(uint32_t bucket) {
  if (bucket < 4) return bucket + 1;
  const uint32_t top_bit = bucket / 4 + 1;
  return (4ull + bucket % 4 + 1) << (top_bit - 2);
}

uint64_t ticks_to_ns(uint64_t ticks) { return ticks * 1'000'000 / tenon_time_tsc_khz(); }

uint64_t percentile_ns(uint64_t count, uint64_t permille) {
  const uint64_t rank = (count * permille + 999) / 1000;
  uint64_t seen = 0;
  for (uint32_t i = 0; i < kBuckets; ++i) {
    seen += rtt_buckets[i];
    if (seen >= rank && seen != 0) return bucket_upper_ns(i);
  }
  return 0;
}

const char* status_name(int32_t status) {
  switch (status) {
    case TENON_IVC_WOULD_BLOCK:
      return "would-block";
    case TENON_IVC_TOO_LONG:
      return "too-long";
    case TENON_IVC_PEER_ERROR:
      return "peer-error";
    case TENON_IVC_NO_CHANNEL:
      return "no-channel";
    case TENON_IVC_TIMED_OUT:
      return "timed-out";
  }
  return "ok";
}

int64_t fail(const char* what, int32_t status) {
  tenon::console::println("ivc-ping: FAILED ", what, ": ", status_name(status));
  return 1;
}

}  // namespace

extern "C" int64_t tenon_main(void) {
  const int32_t channel = tenon_ivc_open(pingpong::kChannel);
  if (channel < 0) return fail("open", channel);

  // Round trips.
  uint64_t rtt_sum = 0, rtt_min = ~0ull, rtt_max = 0, mismatches = 0;
  for (uint64_t i = 0; i < kRoundTrips; ++i) {
    Message message{i, Kind::kRoundTrip, kWait, 0, {}};
    const uint64_t start = tenon::time::read_tsc();
    int32_t status = tenon_ivc_send_wait(channel, &message, sizeof message, kWait, kTimeoutNs);
    if (status != TENON_IVC_OK) return fail("round-trip send", status);
    Message reply{};
    status = tenon_ivc_recv_wait(channel, &reply, sizeof reply, kWait, kTimeoutNs);
    const uint64_t ns = ticks_to_ns(tenon::time::read_tsc() - start);
    if (status < 0) return fail("round-trip receive", status);
    if (status != sizeof reply || reply.kind != Kind::kRoundTrip || reply.sequence != i) {
      ++mismatches;
    }
    rtt_sum += ns;
    if (ns < rtt_min) rtt_min = ns;
    if (ns > rtt_max) rtt_max = ns;
    ++rtt_buckets[bucket_of(ns)];
  }

  // The stream: as fast as the ring takes it.
  const uint64_t stream_start = tenon::time::read_tsc();
  for (uint64_t i = 0; i < kStreamMessages; ++i) {
    Message message{i, i + 1 == kStreamMessages ? Kind::kStreamEnd : Kind::kStream, kWait, 0, {}};
    const int32_t status =
        tenon_ivc_send_wait(channel, &message, sizeof message, kWait, kTimeoutNs);
    if (status != TENON_IVC_OK) return fail("stream send", status);
  }
  Message report{};
  uint64_t stream_received = 0, stream_errors = 0;
  if (kStreamMessages != 0) {
    const int32_t status = tenon_ivc_recv_wait(channel, &report, sizeof report, kWait, kTimeoutNs);
    if (status < 0) return fail("stream report", status);
    if (report.kind != Kind::kStreamReport) ++mismatches;
    stream_received = report.sequence;
    stream_errors = report.errors;
  }
  const uint64_t stream_ns = ticks_to_ns(tenon::time::read_tsc() - stream_start);

  Message done{0, Kind::kDone, kWait, 0, {}};
  const int32_t status = tenon_ivc_send_wait(channel, &done, sizeof done, kWait, kTimeoutNs);
  if (status != TENON_IVC_OK) return fail("done", status);

  const uint64_t count = kRoundTrips != 0 ? kRoundTrips : 1;
  tenon::console::println(
      "ivc-ping: wait=", kWait == TENON_IVC_WAIT_POLL ? "poll" : "doorbell",
      " round_trips=", kRoundTrips, " rtt_min_ns=", kRoundTrips != 0 ? rtt_min : 0,
      " rtt_mean_ns=", rtt_sum / count, " rtt_p50_ns=", percentile_ns(kRoundTrips, 500),
      " rtt_p99_ns=", percentile_ns(kRoundTrips, 990), " rtt_max_ns=", rtt_max,
      " mismatches=", mismatches, " stream_sent=", kStreamMessages,
      " stream_received=", stream_received, " stream_errors=", stream_errors,
      " stream_ns=", stream_ns);
  const bool clean = mismatches == 0 && stream_errors == 0 && stream_received == kStreamMessages;
  return clean ? 0 : 1;
}

// ivc-control: control-loop's PID, fed by another instance. Every millisecond it takes the
// newest reading the sensor instance sent over channel "plant" (older ones still queued are
// skipped, and sequence gaps counted as lost), computes the fixed-point PID and sends the command
// back. The set point alternates between 50 and 60 every second.
#include <stdint.h>

#include "../sensor/plant.h"
#include "tenon/app.h"
#include "tenon/console.h"
#include "tenon/ivc.h"
#include "tenon/task.h"

namespace {

using plant::kOne;

struct Loop {
  int32_t channel = -1;
  int64_t set_point = 50 * kOne;
  int64_t output = 0;
  int64_t integral = 0;
  int64_t previous_error = 0;
  uint64_t jobs = 0;
  uint64_t readings = 0;
  uint64_t readings_lost = 0;  // gaps in the sensor's sequence numbers
  uint64_t next_sequence = 0;
  uint64_t commands_sent = 0;
  bool have_reading = false;
} loop;

int64_t multiply(int64_t a, int64_t b) { return (a * b) / kOne; }

void pid(void*) {
  constexpr int64_t kProportional = kOne / 2, kIntegral = kOne / 50, kDerivative = kOne / 10;
  for (;;) {
    plant::Reading reading{};
    while (tenon_ivc_recv(loop.channel, &reading, sizeof reading) == sizeof reading) {
      if (loop.have_reading && reading.sequence > loop.next_sequence) {
        loop.readings_lost += reading.sequence - loop.next_sequence;
      }
      loop.next_sequence = reading.sequence + 1;
      loop.have_reading = true;
      loop.output = reading.output;
      ++loop.readings;
    }
    if (++loop.jobs % 1000 == 0) {
      loop.set_point = loop.set_point == 50 * kOne ? 60 * kOne : 50 * kOne;
    }
    const int64_t error = loop.set_point - loop.output;
    loop.integral += error;
    const int64_t control = multiply(kProportional, error) + multiply(kIntegral, loop.integral) +
                            multiply(kDerivative, error - loop.previous_error);
    loop.previous_error = error;
    const plant::Command command{loop.jobs, control};
    if (tenon_ivc_send(loop.channel, &command, sizeof command) == TENON_IVC_OK) {
      ++loop.commands_sent;
    }
    tenon_task_wait_next_period();
  }
}

}  // namespace

extern "C" int64_t tenon_main(void) {
  loop.channel = tenon_ivc_open(plant::kChannel);
  if (loop.channel < 0) {
    tenon::console::println("ivc-control: no channel ", plant::kChannel);
    return 2;
  }
  const tenon_task_params task = {"pid", 1'000'000, 1'000'000, 30, pid, nullptr};
  if (tenon_task_create(&task) < 0) return 3;
  tenon::console::println("ivc-control: pid 1 kHz on channel ", plant::kChannel);
  tenon_sched_run();
  tenon::console::println("ivc-control: readings=", loop.readings,
                          " readings_lost=", loop.readings_lost,
                          " commands_sent=", loop.commands_sent, " output=", loop.output / kOne,
                          " set_point=", loop.set_point / kOne);
  return 0;
}

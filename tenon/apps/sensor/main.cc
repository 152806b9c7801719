// sensor: the plant side of a control loop split across two instances. Every millisecond it
// applies the latest actuator command from channel "plant", advances a simulated first-order
// plant, and sends the new output; it never blocks, so a slow or absent controller costs it
// nothing but full-ring counts.
#include <stdint.h>

#include "plant.h"
#include "tenon/app.h"
#include "tenon/console.h"
#include "tenon/ivc.h"
#include "tenon/task.h"

namespace {

struct State {
  int32_t channel = -1;
  int64_t output = 0;
  int64_t control = 0;
  uint64_t readings_sent = 0;
  uint64_t readings_dropped = 0;  // ring full: the controller is behind or not there yet
  uint64_t commands_received = 0;
} state;

void sample(void*) {
  for (;;) {
    plant::Command command{};
    while (tenon_ivc_recv(state.channel, &command, sizeof command) == sizeof command) {
      state.control = command.control;
      ++state.commands_received;
    }
    // Plant: y += (u - y) / 8 per millisecond.
    state.output += (state.control - state.output) / 8;
    const plant::Reading reading{state.readings_sent + state.readings_dropped, state.output};
    if (tenon_ivc_send(state.channel, &reading, sizeof reading) == TENON_IVC_OK) {
      ++state.readings_sent;
    } else {
      ++state.readings_dropped;
    }
    tenon_task_wait_next_period();
  }
}

}  // namespace

extern "C" int64_t tenon_main(void) {
  state.channel = tenon_ivc_open(plant::kChannel);
  if (state.channel < 0) {
    tenon::console::println("sensor: no channel ", plant::kChannel);
    return 2;
  }
  const tenon_task_params task = {"sample", 1'000'000, 1'000'000, 30, sample, nullptr};
  if (tenon_task_create(&task) < 0) return 3;
  tenon::console::println("sensor: sampling at 1 kHz on channel ", plant::kChannel);
  tenon_sched_run();
  tenon::console::println(
      "sensor: readings_sent=", state.readings_sent, " readings_dropped=", state.readings_dropped,
      " commands_received=", state.commands_received, " output=", state.output / plant::kOne);
  return 0;
}

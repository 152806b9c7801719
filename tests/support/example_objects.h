// Fleet objects that tests, fuzzers and benchmarks apply: the control-loop app with the tasks its
// app.yaml declares, and a device labelled with its site.
#pragma once

#include <cstdint>
#include <string>

#include "tenon/v1/fleet.pb.h"

namespace tenon::test_support {

// `pid_wcet_ns` changes the analysis (and the composition) but not the image; `scheduler` changes
// the scheduler library and so the image.
inline tenon::v1::Object control_loop_app(
    uint64_t pid_wcet_ns = 20'000,
    tenon::v1::SchedulerKind scheduler = tenon::v1::SCHEDULER_KIND_UNSPECIFIED) {
  tenon::v1::Object object;
  tenon::v1::App* app = object.mutable_app();
  app->mutable_metadata()->set_name("control");
  app->mutable_spec()->set_program("control-loop");
  app->mutable_spec()->set_scheduler(scheduler);
  struct Task {
    const char* name;
    uint64_t period, wcet;
    uint32_t priority;
  };
  for (const Task& task :
       {Task{"pid", 1'000'000, pid_wcet_ns, 30}, Task{"supervisor", 10'000'000, 300'000, 20},
        Task{"logger", 100'000'000, 3'000'000, 10}}) {
    tenon::v1::TaskSpec* spec = app->mutable_spec()->add_tasks();
    spec->set_name(task.name);
    spec->set_period_ns(task.period);
    spec->set_wcet_ns(task.wcet);
    spec->set_priority(task.priority);
  }
  return object;
}

inline tenon::v1::Object site_device(const std::string& name, const std::string& site) {
  tenon::v1::Object object;
  object.mutable_device()->mutable_metadata()->set_name(name);
  (*object.mutable_device()->mutable_metadata()->mutable_labels())["site"] = site;
  return object;
}

}  // namespace tenon::test_support

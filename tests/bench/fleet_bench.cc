// B7: fleet scale. One real tenon-controller (SQLite, gRPC on loopback) and N simulated agents
// in this process that speak the real agent protocol (Enroll, then one Connect stream each:
// Hello, Ack, ImageRequest, sha256-checked ImageChunks, InstanceStatusUpdate). Their hypervisor
// is a STAND-IN: an instance is "running" as soon as its image has been received and verified;
// no guest boots. Measured per N: enrolment, connection, the first rollout of a deployment to
// every device and the rollout of a changed composition (apply -> every agent reports the new
// image running), the operator API's latency while agents converge, and the controller's RSS.
// Writes one JSON file; never fails on a timing.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "bench_report.h"
#include "crypto/sha256.h"
#include "example_objects.h"
#include "flags/duration_flag.h"
#include "nlohmann/json.hpp"
#include "simulated_devices.h"
#include "tenon/v1/agent.grpc.pb.h"
#include "tenon/v1/fleet.grpc.pb.h"

namespace {

namespace v1 = tenon::v1;
using Clock = std::chrono::steady_clock;
using tenon::bench::summarize;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// What every simulated agent reports, counted in one place.
struct Convergence {
  std::mutex mutex;
  std::condition_variable changed;
  std::map<std::string, uint64_t> running_by_image;  // digest -> agents reporting it running
  uint64_t welcomed = 0;
  uint64_t failed_streams = 0;
  uint64_t images_fetched = 0;

  bool wait(const std::function<bool()>& done, std::chrono::nanoseconds limit) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, limit, done);
  }
};

// The fleet's device kinds: agent i reports kind i % kProfileKinds. Native KVM hosts and QEMU
// hosts get different platform and timer libraries, so a rollout links one image per engine;
// the TSC frequency differs too, which the image does not depend on (two kinds, one image):
// the report's distinct_images says how many were linked.
constexpr int kProfileKinds = 4;

v1::DeviceProfile simulated_profile(int agent) {
  const int kind = agent % kProfileKinds;
  v1::DeviceProfile profile = tenon::test_support::simulated_device_profile(
      kind % 2 == 1 ? tenon::test_support::SimulatedEngine::kQemu
                    : tenon::test_support::SimulatedEngine::kKvm);
  profile.set_tsc_frequency_khz(kind < 2 ? 2'000'000 : 2'400'000);
  profile.set_mortise_version("stand-in");
  profile.set_agent_version("fleet_bench simulated agent");
  return profile;
}

// One simulated device: a client bidi reactor with one write in flight at a time.
class SimulatedAgent final
    : public grpc::ClientBidiReactor<v1::AgentMessage, v1::ControllerMessage> {
 public:
  SimulatedAgent(int index, std::string credential, Convergence* convergence)
      : index_(index),
        name_(absl::StrCat("sim-", index)),
        credential_(std::move(credential)),
        convergence_(convergence) {}

  void start(v1::AgentService::Stub* stub) {
    stub->async()->Connect(&context_, this);
    v1::AgentMessage hello;
    v1::Hello* body = hello.mutable_hello();
    body->set_device_name(name_);
    body->set_credential(credential_);
    *body->mutable_profile() = simulated_profile(index_);
    send(std::move(hello));
    StartRead(&incoming_);
    StartCall();
  }

  void stop() { context_.TryCancel(); }

  bool wait_done() {
    std::unique_lock lock(mutex_);
    return done_changed_.wait_for(lock, std::chrono::seconds(10), [&] { return done_; });
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    handle(incoming_);
    StartRead(&incoming_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mutex_);
    outgoing_.pop_front();
    if (!ok) {
      writing_ = false;
      return;
    }
    if (!outgoing_.empty()) {
      StartWrite(&outgoing_.front());
    } else {
      writing_ = false;
    }
  }

  void OnDone(const grpc::Status& status) override {
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      std::lock_guard lock(convergence_->mutex);
      ++convergence_->failed_streams;
      if (convergence_->failed_streams <= 3) {
        std::cerr << "fleet_bench: " << name_ << " stream ended: " << status.error_message()
                  << "\n";
      }
      convergence_->changed.notify_all();
    }
    std::lock_guard lock(mutex_);
    done_ = true;
    done_changed_.notify_all();
  }

 private:
  void send(v1::AgentMessage message) {
    std::lock_guard lock(mutex_);
    message.set_sequence(++sequence_);
    outgoing_.push_back(std::move(message));
    if (!writing_) {
      writing_ = true;
      StartWrite(&outgoing_.front());
    }
  }

  void report_running(const std::string& digest) {
    if (running_digest_ == digest) return;
    v1::AgentMessage status;
    v1::InstanceStatusUpdate* update = status.mutable_instance_status();
    update->set_instance_name(instance_);
    update->set_instance_uid(instance_uid_);
    update->set_state(v1::INSTANCE_STATE_RUNNING);
    update->set_image_digest(digest);
    update->set_desired_state_version(desired_version_);
    update->set_message("stand-in hypervisor: not booted");
    send(std::move(status));
    std::lock_guard lock(convergence_->mutex);
    if (!running_digest_.empty()) --convergence_->running_by_image[running_digest_];
    ++convergence_->running_by_image[digest];
    running_digest_ = digest;
    convergence_->changed.notify_all();
  }

  void handle(const v1::ControllerMessage& message) {
    switch (message.kind_case()) {
      case v1::ControllerMessage::kWelcome: {
        std::lock_guard lock(convergence_->mutex);
        ++convergence_->welcomed;
        convergence_->changed.notify_all();
        break;
      }
      case v1::ControllerMessage::kDesiredState: {
        const v1::DesiredState& state = message.desired_state();
        desired_version_ = state.version();
        v1::AgentMessage ack;
        ack.mutable_ack()->set_controller_sequence(message.sequence());
        ack.mutable_ack()->set_desired_state_version(state.version());
        ack.mutable_ack()->set_outcome(v1::ACK_OUTCOME_ACCEPTED);
        send(std::move(ack));
        if (state.instances().empty()) break;
        const v1::DesiredInstance& instance = state.instances(0);
        instance_ = instance.name();
        instance_uid_ = instance.uid();
        wanted_digest_ = instance.image_digest();
        if (images_.contains(wanted_digest_)) {
          report_running(wanted_digest_);
        } else {
          image_.clear();
          v1::AgentMessage request;
          request.mutable_image_request()->set_digest(wanted_digest_);
          send(std::move(request));
        }
        break;
      }
      case v1::ControllerMessage::kImageChunk: {
        const v1::ImageChunk& chunk = message.image_chunk();
        if (chunk.digest() != wanted_digest_ || chunk.offset() != image_.size()) break;
        image_ += chunk.data();
        if (!chunk.last()) break;
        if (tenon::crypto::sha256_digest(image_) != chunk.digest()) {
          std::cerr << "fleet_bench: " << name_ << ": image failed verification\n";
          break;
        }
        images_.insert(chunk.digest());
        image_.clear();
        {
          std::lock_guard lock(convergence_->mutex);
          ++convergence_->images_fetched;
        }
        report_running(chunk.digest());
        break;
      }
      case v1::ControllerMessage::kPing: {
        v1::AgentMessage ack;
        ack.mutable_ack()->set_controller_sequence(message.sequence());
        send(std::move(ack));
        break;
      }
      default:
        break;
    }
  }

  int index_;
  std::string name_;
  std::string credential_;
  Convergence* convergence_;
  grpc::ClientContext context_;
  v1::ControllerMessage incoming_;
  std::mutex mutex_;
  std::condition_variable done_changed_;
  bool done_ = false;
  std::deque<v1::AgentMessage> outgoing_;
  bool writing_ = false;
  uint64_t sequence_ = 0;
  // Touched only by the read callbacks, which gRPC runs one at a time per stream.
  std::string instance_, instance_uid_, wanted_digest_, running_digest_, image_;
  uint64_t desired_version_ = 0;
  std::set<std::string> images_;
};

struct ControllerProcess {
  pid_t pid = -1;
  std::string grpc_address;
  std::string http_address;
  std::string token;
};

// GET http://<address><path> over a plain socket (HTTP/1.0, so the server closes when done);
// the whole answer, or empty on any failure.
std::string http_get(const std::string& address, const std::string& path) {
  const size_t colon = address.rfind(':');
  sockaddr_in peer{};
  peer.sin_family = AF_INET;
  peer.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  if (inet_pton(AF_INET, address.substr(0, colon).c_str(), &peer.sin_addr) != 1) return "";
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  std::string answer;
  if (connect(fd, reinterpret_cast<sockaddr*>(&peer), sizeof peer) == 0) {
    const std::string request =
        absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", address, "\r\n\r\n");
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[1 << 16];
      ssize_t got;
      while ((got = read(fd, buffer, sizeof buffer)) > 0) answer.append(buffer, got);
    }
  }
  close(fd);
  return answer;
}

std::optional<ControllerProcess> start_controller(const std::string& binary,
                                                  const std::string& dir) {
  const std::string ready = dir + "/ready.json";
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string log = dir + "/controller.log";
    freopen(log.c_str(), "w", stderr);
    execl(binary.c_str(), binary.c_str(), "--data-dir", dir.c_str(), "--listen", "127.0.0.1:0",
          "--http-listen", "127.0.0.1:0", "--ready-file", ready.c_str(), "--ping-interval", "30s",
          "--telemetry-interval", "10s", "--rollout-interval", "200ms", nullptr);
    _exit(127);
  }
  for (int i = 0; i < 300 && !std::filesystem::exists(ready); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!std::filesystem::exists(ready)) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return std::nullopt;
  }
  ControllerProcess process;
  process.pid = pid;
  const nlohmann::json addresses = nlohmann::json::parse(std::ifstream(ready));
  process.grpc_address = addresses["grpc_address"];
  process.http_address = addresses["http_address"];
  std::ifstream(dir + "/operator-token") >> process.token;
  return process;
}

long rss_kib(pid_t pid, const char* field) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field) + 1));
  }
  return 0;
}

// The control loop, scheduled by fixed priority or by EDF: a different policy library, so a
// different composition and image.
v1::Object bench_app(v1::SchedulerKind scheduler) {
  return tenon::test_support::control_loop_app(20'000, scheduler);
}

class Operator {
 public:
  Operator(std::shared_ptr<grpc::Channel> channel, std::string token)
      : stub_(v1::FleetService::NewStub(channel)), token_(std::move(token)) {}

  template <typename Request, typename Response, typename Method>
  grpc::Status call(Method method, const Request& request, Response* response) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token_);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    return (stub_.get()->*method)(&context, request, response);
  }

  grpc::Status apply(std::vector<v1::Object> objects) {
    v1::ApplyRequest request;
    for (v1::Object& object : objects) *request.add_objects() = std::move(object);
    v1::ApplyResponse response;
    return call(&v1::FleetService::Stub::Apply, request, &response);
  }

 private:
  std::unique_ptr<v1::FleetService::Stub> stub_;
  std::string token_;
};

nlohmann::json run_fleet(const std::string& controller_binary, int agents, int channels,
                         absl::Duration timeout) {
  nlohmann::json result;
  result["agents"] = agents;
  std::string pattern = (std::filesystem::temp_directory_path() / "tenon-b7-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) return {{"error", "no temporary directory"}};
  const std::string dir = pattern;
  std::optional<ControllerProcess> controller = start_controller(controller_binary, dir);
  if (!controller) return {{"agents", agents}, {"error", "controller did not start"}};
  const std::chrono::nanoseconds limit = absl::ToChronoNanoseconds(timeout);

  std::vector<std::shared_ptr<grpc::Channel>> pool;
  for (int i = 0; i < channels; ++i) {
    grpc::ChannelArguments arguments;
    arguments.SetInt("grpc.use_local_subchannel_pool", 1);  // one connection per channel
    arguments.SetInt("tenon.bench.channel", i);
    pool.push_back(grpc::CreateCustomChannel(controller->grpc_address,
                                             grpc::InsecureChannelCredentials(), arguments));
  }
  Operator op(pool[0], controller->token);

  // Enrolment: one bootstrap token for the whole simulated fleet, labels from the token.
  v1::CreateBootstrapTokenRequest token_request;
  token_request.set_max_uses(static_cast<uint32_t>(agents));
  token_request.mutable_ttl()->set_seconds(3600);
  (*token_request.mutable_labels())["fleet"] = "bench";
  v1::CreateBootstrapTokenResponse token;
  grpc::Status status =
      op.call(&v1::FleetService::Stub::CreateBootstrapToken, token_request, &token);
  if (!status.ok()) return {{"agents", agents}, {"error", status.error_message()}};
  Clock::time_point start = Clock::now();
  std::vector<std::string> credentials(agents);
  {
    std::atomic<int> next{0};
    std::atomic<int> failures{0};
    std::vector<std::thread> workers;
    for (int w = 0; w < 8; ++w) {
      workers.emplace_back([&, w] {
        auto stub = v1::AgentService::NewStub(pool[w % pool.size()]);
        for (int i = next++; i < agents; i = next++) {
          v1::EnrollRequest request;
          request.set_bootstrap_token(token.token());
          request.set_device_name(absl::StrCat("sim-", i));
          *request.mutable_profile() = simulated_profile(i);
          v1::EnrollResponse response;
          grpc::ClientContext context;
          if (stub->Enroll(&context, request, &response).ok()) {
            credentials[i] = response.credential();
          } else {
            ++failures;
          }
        }
      });
    }
    for (std::thread& worker : workers) worker.join();
    result["enrol_failures"] = failures.load();
  }
  result["enrol_seconds"] = seconds_since(start);

  Convergence convergence;
  std::vector<std::unique_ptr<SimulatedAgent>> fleet;
  std::vector<std::unique_ptr<v1::AgentService::Stub>> stubs;
  for (auto& channel : pool) stubs.push_back(v1::AgentService::NewStub(channel));
  start = Clock::now();
  for (int i = 0; i < agents; ++i) {
    fleet.push_back(std::make_unique<SimulatedAgent>(i, credentials[i], &convergence));
    fleet.back()->start(stubs[i % stubs.size()].get());
  }
  const bool connected = convergence.wait(
      [&] { return convergence.welcomed == static_cast<uint64_t>(agents); }, limit);
  result["connect_seconds"] = seconds_since(start);
  result["connected"] = connected;

  // The operator API's latency while the fleet converges: Get the deployment every 20 ms.
  std::atomic<bool> probing{true};
  std::vector<double> api_ms;
  // And a Prometheus scrape of /metrics every 250 ms, as a scraper would while it converges.
  std::vector<double> scrape_ms;
  size_t scrape_bytes = 0;
  std::thread scraper([&] {
    while (probing) {
      const Clock::time_point sent = Clock::now();
      const std::string page = http_get(controller->http_address, "/metrics");
      if (!page.empty()) {
        scrape_ms.push_back(seconds_since(sent) * 1e3);
        scrape_bytes = page.size();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  });
  std::thread prober([&] {
    while (probing) {
      v1::GetRequest get;
      get.set_kind(v1::OBJECT_KIND_DEPLOYMENT);
      get.set_name("control");
      v1::Object object;
      const Clock::time_point sent = Clock::now();
      op.call(&v1::FleetService::Stub::Get, get, &object);
      api_ms.push_back(seconds_since(sent) * 1e3);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });

  auto rollout = [&](v1::SchedulerKind scheduler, const char* label) {
    v1::Object deployment;
    v1::Deployment* body = deployment.mutable_deployment();
    body->mutable_metadata()->set_name("control");
    body->mutable_spec()->set_app("control");
    (*body->mutable_spec()->mutable_selector()->mutable_match_labels())["fleet"] = "bench";
    const Clock::time_point applied = Clock::now();
    grpc::Status applied_status = op.apply({bench_app(scheduler), deployment});
    nlohmann::json phase;
    phase["apply_seconds"] = seconds_since(applied);
    if (!applied_status.ok()) {
      phase["error"] = applied_status.error_message();
      return phase;
    }
    // The new images (one per kind of device): what the deployment's instances run now.
    std::set<std::string> digests;
    v1::ListRequest list;
    list.set_kind(v1::OBJECT_KIND_INSTANCE);
    list.set_page_size(1000);
    do {
      v1::ListResponse instances;
      op.call(&v1::FleetService::Stub::List, list, &instances);
      for (const v1::Object& object : instances.objects()) {
        digests.insert(object.instance().spec().image_digest());
      }
      list.set_page_token(instances.next_page_token());
    } while (!list.page_token().empty());
    auto running_new = [&] {
      uint64_t running = 0;
      for (const std::string& digest : digests) running += convergence.running_by_image[digest];
      return running;
    };
    const bool converged =
        convergence.wait([&] { return running_new() == static_cast<uint64_t>(agents); }, limit);
    phase["converge_seconds"] = seconds_since(applied);
    phase["converged"] = converged;
    phase["distinct_images"] = digests.size();
    phase["image_digests"] = digests;
    {
      std::lock_guard lock(convergence.mutex);
      phase["agents_running_it"] = running_new();
    }
    // The controller's own view agrees: every instance updated and running.
    v1::Object object;
    while (true) {
      v1::GetRequest get;
      get.set_kind(v1::OBJECT_KIND_DEPLOYMENT);
      get.set_name("control");
      op.call(&v1::FleetService::Stub::Get, get, &object);
      const v1::DeploymentStatus& status = object.deployment().status();
      if ((status.running_instances() == static_cast<uint32_t>(agents) &&
           status.updated_instances() == static_cast<uint32_t>(agents)) ||
          Clock::now() - applied > limit) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    phase["controller_converge_seconds"] = seconds_since(applied);
    phase["controller_running_instances"] = object.deployment().status().running_instances();
    phase["controller_updated_instances"] = object.deployment().status().updated_instances();
    std::cerr << "fleet_bench: N=" << agents << " " << label << ": "
              << phase["converge_seconds"].get<double>() << " s, converged=" << converged << "\n";
    return phase;
  };
  result["first_rollout"] = rollout(v1::SCHEDULER_KIND_FIXED_PRIORITY, "first rollout");
  result["changed_composition_rollout"] =
      rollout(v1::SCHEDULER_KIND_EARLIEST_DEADLINE_FIRST, "changed composition");
  // A staged rollout: the same change back, in waves of a tenth of the fleet (the first the
  // canary), no bake time, the gate open: what the waves themselves cost, apply to COMPLETE.
  {
    nlohmann::json phase;
    v1::Object deployment;
    v1::Deployment* body = deployment.mutable_deployment();
    body->mutable_metadata()->set_name("control");
    body->mutable_spec()->set_app("control");
    (*body->mutable_spec()->mutable_selector()->mutable_match_labels())["fleet"] = "bench";
    v1::RolloutPolicy* policy = body->mutable_spec()->mutable_rollout();
    policy->set_wave_size(std::max(1, agents / 10));
    policy->set_max_deadline_miss_ratio(1.0);
    const Clock::time_point applied = Clock::now();
    grpc::Status applied_status =
        op.apply({bench_app(v1::SCHEDULER_KIND_FIXED_PRIORITY), deployment});
    phase["apply_seconds"] = seconds_since(applied);
    v1::DeploymentStatus status;
    bool complete = false;
    while (applied_status.ok() && Clock::now() - applied < limit) {
      v1::GetRequest get;
      get.set_kind(v1::OBJECT_KIND_DEPLOYMENT);
      get.set_name("control");
      v1::Object object;
      op.call(&v1::FleetService::Stub::Get, get, &object);
      status = object.deployment().status();
      complete = status.phase() == v1::ROLLOUT_PHASE_COMPLETE &&
                 status.updated_instances() == static_cast<uint32_t>(agents) &&
                 status.running_instances() == static_cast<uint32_t>(agents);
      if (complete) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!applied_status.ok()) phase["error"] = applied_status.error_message();
    phase["converged"] = complete;
    phase["complete_seconds"] = seconds_since(applied);
    phase["waves"] = status.waves();
    phase["revision"] = status.revision();
    std::cerr << "fleet_bench: N=" << agents << " staged rollout in " << status.waves()
              << " waves: " << phase["complete_seconds"].get<double>()
              << " s, complete=" << complete << "\n";
    result["staged_rollout"] = phase;
  }
  probing = false;
  prober.join();
  scraper.join();
  result["api_get_latency_ms"] = summarize(api_ms);
  result["metrics_scrape_ms"] = summarize(scrape_ms);
  result["metrics_page_bytes"] = scrape_bytes;
  result["controller_rss_kib"] = rss_kib(controller->pid, "VmRSS:");
  result["controller_peak_rss_kib"] = rss_kib(controller->pid, "VmHWM:");
  {
    std::lock_guard lock(convergence.mutex);
    result["failed_streams"] = convergence.failed_streams;
    result["images_fetched"] = convergence.images_fetched;
  }
  for (auto& agent : fleet) agent->stop();
  for (auto& agent : fleet) agent->wait_done();
  kill(controller->pid, SIGTERM);
  waitpid(controller->pid, nullptr, 0);
  std::filesystem::remove_all(dir);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"B7: N simulated agents (stand-in hypervisor) against one tenon-controller"};
  std::string controller_binary, output_path, commit = "unknown", command, sizes = "100,1000,10000";
  int channels = 16;
  absl::Duration timeout = absl::Minutes(5);
  cli.add_option("--controller", controller_binary, "tenon-controller binary")->required();
  cli.add_option("--agents", sizes, "comma-separated fleet sizes")->capture_default_str();
  cli.add_option("--channels", channels, "gRPC connections the agents share")
      ->capture_default_str();
  tenon::flags::add_duration_option(cli, "--timeout", &timeout, "how long each phase may take");
  cli.add_option("--output", output_path, "JSON result file")->required();
  cli.add_option("--commit", commit, "commit being measured");
  cli.add_option("--command", command, "the command line that ran this benchmark");
  CLI11_PARSE(cli, argc, argv);

  nlohmann::json report;
  report["benchmarks"] = {"B7"};
  report["commit"] = commit;
  report["command"] = command;
  report["machine"] = tenon::bench::machine_info();
  report["engine"] = "none: a stand-in hypervisor (no guest boots)";
  report["stand_in"] =
      "simulated agents in the benchmark process; their hypervisor is a stand-in that reports an "
      "instance running once its image is received and verified (no guest boots)";
  report["fleets"] = nlohmann::json::array();
  for (absl::string_view size : absl::StrSplit(sizes, ',', absl::SkipEmpty())) {
    const int agents = std::stoi(std::string(size));
    report["fleets"].push_back(run_fleet(controller_binary, agents, channels, timeout));
    std::ofstream(output_path) << report.dump(2) << "\n";
  }
  std::cout << report.dump(2) << "\n";
  // Non-convergence, an error in a phase or a broken agent stream fails the benchmark.
  bool failed = false;
  for (const nlohmann::json& fleet : report["fleets"]) {
    if (fleet.contains("error")) failed = true;
    for (const char* phase : {"first_rollout", "changed_composition_rollout", "staged_rollout"}) {
      if (!fleet.contains(phase)) continue;
      const nlohmann::json& result = fleet[phase];
      if (result.contains("error") || !result.value("converged", false)) failed = true;
    }
    if (fleet.value("failed_streams", 0) > 0) failed = true;
  }
  if (failed) std::cerr << "B7 FAILED: a fleet did not converge or an agent stream failed\n";
  return failed ? 1 : 0;
}

// B5: inter-VM channel round trip (polling and doorbell modes) and one-way throughput between
// two Tenon instances under Mortise, timed by the guests' own TSC (ivc-ping against ivc-pong,
// each on its own vCPU thread in this process, joined by one IvcChannel as mortised joins two
// mortise-vmm processes). Same-run baselines: two Linux processes ping-ponging 32-byte messages
// over a unix socket (BENCHMARKS.md's baseline), and the same ring code between two host threads.
// `--million` also streams a million messages between the guests with every sequence number
// checked (slow under nested KVM: minutes).
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "bench_report.h"
#include "console_sink.h"
#include "instance.h"
#include "ivc_channel.h"
#include "kvm.h"
#include "kvm_instance.h"
#include "tenon/ivc_ring.h"

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kMessageBytes = 32;  // what ivc-ping sends

double elapsed_ns(Clock::time_point start) {
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count();
}

// ---- Tenon pair -----------------------------------------------------------------------------

nlohmann::json run_guest_pair(const mortise::Kvm& kvm, const std::string& ping_image,
                              const std::string& pong_image) {
  absl::StatusOr<mortise::IvcChannel> channel = mortise::IvcChannel::create("pingpong");
  if (!channel.ok()) return {{"error", std::string(channel.status().message())}};
  mortise::BufferConsole ping_console, pong_console;
  auto create = [&](const std::string& image, uint32_t side, mortise::BufferConsole& console) {
    mortise::InstanceConfig config;
    config.image_path = image;
    config.memory_bytes = 1 << 20;
    config.channels.push_back(channel->endpoint(side));
    return mortise::KvmInstance::create(kvm, config, console);
  };
  absl::StatusOr<std::unique_ptr<mortise::Instance>> ping = create(ping_image, 0, ping_console);
  absl::StatusOr<std::unique_ptr<mortise::Instance>> pong = create(pong_image, 1, pong_console);
  if (!ping.ok()) return {{"error", std::string(ping.status().message())}};
  if (!pong.ok()) return {{"error", std::string(pong.status().message())}};
  const auto limit = std::chrono::minutes(30);
  std::future<mortise::ExitReason> pong_run =
      std::async(std::launch::async, [&] { return (*pong)->run(limit); });
  const mortise::ExitReason ping_reason = (*ping)->run(limit);
  const mortise::ExitReason pong_reason = pong_run.get();
  nlohmann::json result;
  const std::string console = ping_console.contents();
  const size_t line = console.find("ivc-ping:");
  if (ping_reason.kind != mortise::ExitKind::kGuestExit || line == std::string::npos) {
    return {{"error", "ivc-ping did not finish: " + ping_reason.message + " " + console}};
  }
  static const std::regex kPair(R"(([a-z0-9_]+)=([^ \n]+))");
  const std::string text = console.substr(line, console.find('\n', line) - line);
  for (std::sregex_iterator it(text.begin(), text.end(), kPair), end; it != end; ++it) {
    const std::string key = (*it)[1], value = (*it)[2];
    if (key == "wait") {
      result[key] = value;
    } else {
      result[key] = std::stod(value);
    }
  }
  result["ping_exit_status"] = ping_reason.status;
  result["pong_exit_status"] = pong_reason.status;
  result["no_loss_no_reordering"] =
      ping_reason.status == 0 && pong_reason.status == 0 &&
      result.value("stream_received", -1.0) == result.value("stream_sent", -2.0);
  const double stream_ns = result.value("stream_ns", 0.0);
  if (stream_ns > 0) {
    result["throughput_messages_per_s"] = result.value("stream_sent", 0.0) * 1e9 / stream_ns;
  }
  absl::StatusOr<mortise::TelemetrySnapshot> telemetry = (*ping)->telemetry();
  if (telemetry.ok() && !telemetry->channels.empty()) {
    result["ping_doorbells_sent"] = telemetry->channels[0].doorbells_sent;
    result["ping_doorbells_received"] = telemetry->channels[0].doorbells_received;
  }
  result["ping_vcpu_exits"] = (*ping)->vcpu_exits();
  return result;
}

// ---- Baseline: two processes over a unix socket ---------------------------------------------

bool write_all(int fd, const void* data, size_t length) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  while (length > 0) {
    const ssize_t written = write(fd, bytes, length);
    if (written <= 0) return false;
    bytes += written;
    length -= static_cast<size_t>(written);
  }
  return true;
}

bool read_all(int fd, void* data, size_t length) {
  auto* bytes = static_cast<uint8_t*>(data);
  while (length > 0) {
    const ssize_t got = read(fd, bytes, length);
    if (got <= 0) return false;
    bytes += got;
    length -= static_cast<size_t>(got);
  }
  return true;
}

nlohmann::json run_unix_socket(uint64_t round_trips, uint64_t stream) {
  int sockets[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sockets) != 0) return {{"skipped", "socketpair"}};
  const pid_t child = fork();
  if (child == 0) {
    close(sockets[0]);
    uint8_t message[kMessageBytes];
    for (uint64_t i = 0; i < round_trips; ++i) {
      if (!read_all(sockets[1], message, sizeof message)) _exit(1);
      if (!write_all(sockets[1], message, sizeof message)) _exit(1);
    }
    uint64_t received = 0;
    for (uint64_t i = 0; i < stream; ++i) {
      if (!read_all(sockets[1], message, sizeof message)) _exit(1);
      uint64_t sequence = 0;
      std::memcpy(&sequence, message, sizeof sequence);
      if (sequence == received) ++received;
    }
    if (!write_all(sockets[1], &received, sizeof received)) _exit(1);
    _exit(0);
  }
  close(sockets[1]);
  std::vector<double> rtt;
  rtt.reserve(round_trips);
  uint8_t message[kMessageBytes] = {};
  for (uint64_t i = 0; i < round_trips; ++i) {
    std::memcpy(message, &i, sizeof i);
    const Clock::time_point start = Clock::now();
    write_all(sockets[0], message, sizeof message);
    read_all(sockets[0], message, sizeof message);
    rtt.push_back(elapsed_ns(start));
  }
  const Clock::time_point stream_start = Clock::now();
  for (uint64_t i = 0; i < stream; ++i) {
    std::memcpy(message, &i, sizeof i);
    write_all(sockets[0], message, sizeof message);
  }
  uint64_t received = 0;
  read_all(sockets[0], &received, sizeof received);
  const double stream_ns = elapsed_ns(stream_start);
  close(sockets[0]);
  int status = 0;
  waitpid(child, &status, 0);
  nlohmann::json result;
  result["rtt_ns"] = tenon::bench::summarize(rtt);
  result["stream_sent"] = stream;
  result["stream_received_in_order"] = received;
  result["throughput_messages_per_s"] = static_cast<double>(stream) * 1e9 / stream_ns;
  return result;
}

// ---- Reference: the same ring between two host threads --------------------------------------

nlohmann::json run_host_ring(uint64_t round_trips) {
  auto region = std::make_unique<tenon::abi::IvcRegion>();
  std::memset(region.get(), 0, sizeof(tenon::abi::IvcRegion));
  tenon::ivc::RingEndpoint ping(region.get(), 0), pong(region.get(), 1);
  std::thread echo([&] {
    uint8_t message[kMessageBytes];
    for (uint64_t i = 0; i < round_trips; ++i) {
      uint32_t length = 0;
      while (pong.receive(message, sizeof message, &length) != tenon::ivc::RingStatus::kOk) {
        sched_yield();
      }
      while (pong.send(message, length) != tenon::ivc::RingStatus::kOk) sched_yield();
    }
  });
  std::vector<double> rtt;
  uint8_t message[kMessageBytes] = {};
  for (uint64_t i = 0; i < round_trips; ++i) {
    const Clock::time_point start = Clock::now();
    ping.send(message, sizeof message);
    uint32_t length = 0;
    while (ping.receive(message, sizeof message, &length) != tenon::ivc::RingStatus::kOk) {
      sched_yield();
    }
    rtt.push_back(elapsed_ns(start));
  }
  echo.join();
  return {{"rtt_ns", tenon::bench::summarize(rtt)}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"B5 inter-VM channel benchmark: Tenon IVC vs a unix socket between two processes"};
  std::string image_dir, output_path, commit = "unknown", command;
  bool million = false, smoke = false;
  uint64_t baseline_round_trips = 20000, baseline_stream = 200000;
  app.add_option("--image-dir", image_dir, "where ivc-ping*.elf and ivc-pong.elf are")->required();
  app.add_option("--output", output_path)->required();
  app.add_option("--commit", commit);
  app.add_option("--command", command);
  app.add_flag("--smoke", smoke, "the short ctest images (ivc-ping, ivc-ping-poll)");
  app.add_flag("--million", million, "also stream a million messages between the guests");
  app.add_option("--baseline-round-trips", baseline_round_trips)->capture_default_str();
  app.add_option("--baseline-stream", baseline_stream)->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  nlohmann::json report{{"benchmark", "B5"}, {"commit", commit}, {"command", command}};
  report["machine"] = tenon::bench::machine_info();
  report["message_bytes"] = kMessageBytes;
  report["baseline"]["unix_socket_two_processes"] =
      run_unix_socket(baseline_round_trips, baseline_stream);
  report["reference"]["ring_two_host_threads"] = run_host_ring(baseline_round_trips);
  absl::StatusOr<mortise::Kvm> kvm = mortise::Kvm::open();
  if (!kvm.ok() || !kvm->capabilities().irqchip) {
    report["skipped"] =
        std::string("channels run on the kvm engine only, and ") +
        (kvm.ok() ? "KVM has no in-kernel irqchip here"
                  : "the kvm engine cannot run here: " + std::string(kvm.status().message()));
    std::ofstream(output_path) << report.dump(2) << "\n";
    std::cout << "B5 skipped: " << report["skipped"].get<std::string>() << "\n";
    return tenon::bench::kSkipped;
  }
  report["engine"] = "kvm";
  const std::string suffix = smoke ? "" : "-bench";
  report["tenon"]["poll"] = run_guest_pair(*kvm, image_dir + "/ivc-ping-poll" + suffix + ".elf",
                                           image_dir + "/ivc-pong.elf");
  report["tenon"]["doorbell"] =
      run_guest_pair(*kvm, image_dir + "/ivc-ping" + suffix + ".elf", image_dir + "/ivc-pong.elf");
  if (million) {
    report["tenon"]["million"] =
        run_guest_pair(*kvm, image_dir + "/ivc-ping-million.elf", image_dir + "/ivc-pong.elf");
  }
  std::ofstream(output_path) << report.dump(2) << "\n";

  const nlohmann::json& socket = report["baseline"]["unix_socket_two_processes"];
  std::printf("%-34s %10s %10s %10s %12s\n", "B5 ivc (us)", "rtt min", "rtt p50", "rtt p99",
              "msgs/s");
  std::printf("%-34s %10.2f %10.2f %10.2f %12.0f\n", "baseline unix socket, 2 processes",
              socket["rtt_ns"]["min"].get<double>() / 1e3,
              socket["rtt_ns"]["p50"].get<double>() / 1e3,
              socket["rtt_ns"]["p99"].get<double>() / 1e3,
              socket["throughput_messages_per_s"].get<double>());
  const nlohmann::json& ring = report["reference"]["ring_two_host_threads"]["rtt_ns"];
  std::printf("%-34s %10.2f %10.2f %10.2f %12s\n", "reference ring, 2 host threads",
              ring["min"].get<double>() / 1e3, ring["p50"].get<double>() / 1e3,
              ring["p99"].get<double>() / 1e3, "-");
  bool failed = false;
  for (const auto& [mode, result] : report["tenon"].items()) {
    if (result.contains("error")) {
      std::printf("tenon %s: FAILED: %s\n", mode.c_str(),
                  result["error"].get<std::string>().c_str());
      failed = true;
      continue;
    }
    if (!result.value("no_loss_no_reordering", false)) failed = true;
    std::printf(
        "%-34s %10.2f %10.2f %10.2f %12.0f  %s\n", ("tenon ivc " + mode).c_str(),
        result.value("rtt_min_ns", 0.0) / 1e3, result.value("rtt_p50_ns", 0.0) / 1e3,
        result.value("rtt_p99_ns", 0.0) / 1e3, result.value("throughput_messages_per_s", 0.0),
        result.value("no_loss_no_reordering", false) ? "no loss, in order" : "LOSS/REORDER");
  }
  std::printf("results: %s\n", output_path.c_str());
  // Lost or reordered messages, or a guest that did not finish, fail the benchmark.
  return failed ? 1 : 0;
}

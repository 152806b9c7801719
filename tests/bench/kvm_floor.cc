// The floor for boot benchmarks: the least a KVM program can do - create a VM with one page of
// memory, one vCPU in real mode, run a single `out` instruction and exit. Prints the ns from
// process start to that exit as one JSON line.
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <x86intrin.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>

int main() {
  const auto start = std::chrono::steady_clock::now();
  const int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) {
    std::printf("{\"error\":\"no /dev/kvm\"}\n");
    return 2;
  }
  const int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  auto* memory = static_cast<uint8_t*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  const uint8_t code[] = {0xe6, 0x10};  // out %al, $0x10
  std::memcpy(memory, code, sizeof(code));
  kvm_userspace_memory_region region{0, 0, 0, 4096, reinterpret_cast<uint64_t>(memory)};
  if (vm < 0 || ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) return 3;
  const int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  const int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  auto* run =
      static_cast<kvm_run*>(mmap(nullptr, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0));
  kvm_sregs sregs{};
  ioctl(vcpu, KVM_GET_SREGS, &sregs);
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  ioctl(vcpu, KVM_SET_SREGS, &sregs);
  kvm_regs regs{};
  regs.rip = 0;
  regs.rflags = 2;
  ioctl(vcpu, KVM_SET_REGS, &regs);
  if (ioctl(vcpu, KVM_RUN, 0) < 0 || run->exit_reason != KVM_EXIT_IO) return 4;
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
          .count();
  std::printf("{\"first_exit_ns\":%lld}\n", static_cast<long long>(ns));
  return 0;
}

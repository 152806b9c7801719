// Mortise's boot ROM for the QEMU engine: the 64 KiB "BIOS" QEMU maps at the top of the fourth
// GiB. The CPU leaves reset in real mode at the ROM's last 16 bytes; this code enters 32-bit
// protected mode, turns on the page tables Mortise already built in guest memory, enters long
// mode and jumps to the image entry with RSP = stack top and RDI = boot info, the same state the
// native engine gives a vCPU (tenon/abi.h). Mortise writes the values into the parameter block
// at the ROM's start (boot_rom.h) for each instance. Nothing else: no devices, no tables.
//
// Linked at kBootRomBase (boot_rom.ld). In real mode CS's base is the ROM's base, so 16-bit code
// addresses the ROM by offset (label - rom_start); later code uses absolute addresses, and its
// 2 MiB page is mapped read-only and executable by Mortise's page tables.

    .set CR0_PE, 1 << 0
    .set CR0_MP, 1 << 1
    .set CR0_ET, 1 << 4
    .set CR0_NE, 1 << 5
    .set CR0_WP, 1 << 16
    .set CR0_PG, 1 << 31
    .set CR4_PAE, 1 << 5
    .set MSR_EFER, 0xc0000080
    .set EFER_LME, 1 << 8
    .set EFER_NXE, 1 << 11
    .set CODE64_SELECTOR, 0x08
    .set DATA_SELECTOR, 0x10
    .set CODE32_SELECTOR, 0x18

    .section .rom.parameters, "a"
    .globl rom_start
rom_start:
parameters:
    .long 0                      // magic, written by Mortise (kBootRomMagic)
    .long 0
parameter_entry:
    .quad 0
parameter_cr3:
    .quad 0
parameter_stack_top:
    .quad 0
parameter_boot_info:
    .quad 0

    .balign 16
gdt:
    .quad 0
    .quad 0x00af9a000000ffff     // 0x08: 64-bit code
    .quad 0x00cf92000000ffff     // 0x10: data
    .quad 0x00cf9a000000ffff     // 0x18: 32-bit code
gdt_end:
gdt_descriptor:
    .word gdt_end - gdt - 1
    .long gdt

    .section .rom.text, "ax"
    .code16
start16:
    cli
    cld
    lgdtl %cs:(gdt_descriptor - rom_start)
    movl %cr0, %eax
    orl $CR0_PE, %eax
    movl %eax, %cr0
    ljmpl $CODE32_SELECTOR, $start32

    .code32
start32:
    movl $DATA_SELECTOR, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    movl parameter_cr3, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $CR4_PAE, %eax
    movl %eax, %cr4
    movl $MSR_EFER, %ecx
    rdmsr
    orl $(EFER_LME | EFER_NXE), %eax
    wrmsr
    movl $(CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG), %eax
    movl %eax, %cr0
    ljmpl $CODE64_SELECTOR, $start64

    .code64
start64:
    movq parameter_stack_top(%rip), %rsp
    movq parameter_boot_info(%rip), %rdi
    movq parameter_entry(%rip), %rax
    xorl %ebx, %ebx
    xorl %ecx, %ecx
    xorl %edx, %edx
    xorl %esi, %esi
    xorl %ebp, %ebp
    pushq $2                     // RFLAGS as the native engine sets them: interrupts off
    popfq
    jmpq *%rax

    .section .rom.reset, "ax"
    .code16
reset:
    jmp start16
    .balign 16, 0xf4

    .section .note.GNU-stack, "", @progbits

// Entry for external interrupt vectors 32..47: save the caller-saved registers on the current
// stack, call tenon_arch_interrupt(vector), restore, return. No IST: a handler may switch to
// another task's stack and come back here much later.
    .section .text.tenon_arch_interrupts, "ax"

.macro interrupt_stub vector
interrupt_stub_\vector:
    pushq $\vector
    jmp interrupt_common
.endm

.irp vector, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
interrupt_stub \vector
.endr

interrupt_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %rbx
    movq 80(%rsp), %rdi          // the vector pushed by the stub
    movq %rsp, %rbx              // callee-saved, so it still holds this rsp after the call
    andq $-16, %rsp
    call tenon_arch_interrupt
    movq %rbx, %rsp
    popq %rbx
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    addq $8, %rsp                // the vector
    iretq

// void tenon_arch_context_switch(uint64_t* save_sp, uint64_t next_sp)
    .section .text.tenon_arch_context_switch, "ax"
    .globl tenon_arch_context_switch
tenon_arch_context_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret

// First code a fresh context runs: r12 = entry, r13 = argument (placed by context_init).
    .globl tenon_arch_context_start
tenon_arch_context_start:
    sti
    movq %r13, %rdi
    call *%r12
    ud2

    .section .rodata.tenon_arch_interrupt_stubs, "a"
    .balign 8
    .globl tenon_arch_interrupt_stubs
tenon_arch_interrupt_stubs:
    .irp vector, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
    .quad interrupt_stub_\vector
    .endr

    .section .note.GNU-stack, "", @progbits

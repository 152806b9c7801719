// Exception entry for vectors 0..31: each stub pushes a uniform frame (vector, error code) and
// jumps to a common path that hands the frame to tenon_arch_exception (exceptions.cc). All of them
// run on IST1, so a fault caused by a bad stack pointer is still reported.
    .section .text.tenon_arch_exceptions, "ax"

.macro exception_stub vector, has_error_code
exception_stub_\vector:
    .if \has_error_code == 0
    pushq $0
    .endif
    pushq $\vector
    jmp exception_common
.endm

exception_stub 0, 0
exception_stub 1, 0
exception_stub 2, 0
exception_stub 3, 0
exception_stub 4, 0
exception_stub 5, 0
exception_stub 6, 0
exception_stub 7, 0
exception_stub 8, 1
exception_stub 9, 0
exception_stub 10, 1
exception_stub 11, 1
exception_stub 12, 1
exception_stub 13, 1
exception_stub 14, 1
exception_stub 15, 0
exception_stub 16, 0
exception_stub 17, 1
exception_stub 18, 0
exception_stub 19, 0
exception_stub 20, 0
exception_stub 21, 1
exception_stub 22, 0
exception_stub 23, 0
exception_stub 24, 0
exception_stub 25, 0
exception_stub 26, 0
exception_stub 27, 0
exception_stub 28, 0
exception_stub 29, 1
exception_stub 30, 1
exception_stub 31, 0

exception_common:
    // Frame on the stack now: vector, error code, RIP, CS, RFLAGS, RSP, SS.
    movq %rsp, %rdi
    andq $-16, %rsp
    call tenon_arch_exception
    ud2

    .section .rodata.tenon_arch_exception_stubs, "a"
    .balign 8
    .globl tenon_arch_exception_stubs
tenon_arch_exception_stubs:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_stub_\vector
    .endr

    .section .note.GNU-stack, "", @progbits

// Image entry: Mortise's QEMU engine starts here in long mode with RSP = stack top and
// RDI = boot info, exactly as the native engine does (its boot ROM does the mode switches).
    .section .text.boot, "ax"
    .globl _start
_start:
    andq $-16, %rsp
    xorl %ebp, %ebp
    call tenon_plat_qemu_start
    ud2

    .section .note.GNU-stack, "", @progbits

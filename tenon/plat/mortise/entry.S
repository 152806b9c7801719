// Image entry: Mortise starts here in long mode with RSP = stack top and RDI = boot info.
    .section .text.boot, "ax"
    .globl _start
_start:
    andq $-16, %rsp
    xorl %ebp, %ebp
    call tenon_plat_mortise_start
    ud2

    .section .note.GNU-stack, "", @progbits

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Entry points of the guest payload.
 *
 * _start32: the Multiboot v1 entry (QEMU -kernel, GRUB). 32-bit protected
 *   mode, paging off, EAX = 0x2BADB002, EBX = Multiboot info. It builds an
 *   identity map of the first 4 GiB with 2 MiB pages, enables PAE and long
 *   mode itself, and jumps to 64-bit code.
 * _start64: the entry a VMM may use instead (ferry-vm does): long mode
 *   already on with an identity map covering guest RAM, RDI = Multiboot
 *   info (guest physical), RSI = CPU index (0 is the boot CPU), RDX = 0.
 *   Every vCPU enters here; a Multiboot loader starts only the BSP (RDX
 *   = 1 tells the C side so).
 *
 * The Multiboot header uses the a.out kludge (flag 16) so that the image is
 * a flat binary loaded at its link address; after it comes a Ferry header
 * naming the 64-bit entry, which ferry-vm reads.
 *
 * Assembled as 64-bit object code; the 32-bit part is in .code32.
 */
#define MB_MAGIC	0x1BADB002
#define MB_FLAGS	((1 << 1) | (1 << 16))
#define FERRY_MAGIC	0x31595246	/* "FRY1": UT_FERRY_MAGIC of util/le.h */
#define STACK_SIZE	16384
#define MAX_CPUS	4

	.section .multiboot, "a"
	.balign 4
mb_header:
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)
	.long mb_header		/* header_addr */
	.long _load_start	/* load_addr */
	.long _load_end		/* load_end_addr */
	.long _bss_end		/* bss_end_addr */
	.long _start32		/* entry_addr */
ferry_header:
	.long FERRY_MAGIC
	.long _start64		/* 64-bit entry */
	.long STACK_SIZE	/* per-CPU stack size (informational) */
	.long MAX_CPUS

	.section .text.entry, "ax"
	.code32
	.globl _start32
_start32:
	cli
	cld
	cmpl	$0x2BADB002, %eax
	je	1f
	xorl	%ebx, %ebx
1:	movl	%ebx, %esi		/* keep the Multiboot info pointer */

	/* PML4[0] -> PDPT, PDPT[0..3] -> PD0..3, PDn[i] -> 2 MiB pages. */
	movl	$boot_pml4, %edi
	movl	$boot_pdpt, %eax
	orl	$3, %eax
	movl	%eax, (%edi)
	movl	$boot_pdpt, %edi
	movl	$boot_pd, %eax
	orl	$3, %eax
	movl	$4, %ecx
2:	movl	%eax, (%edi)
	addl	$4096, %eax
	addl	$8, %edi
	loop	2b
	movl	$boot_pd, %edi
	movl	$0x83, %eax		/* present, writable, 2 MiB page */
	xorl	%edx, %edx
	movl	$2048, %ecx
3:	movl	%eax, (%edi)
	movl	%edx, 4(%edi)
	addl	$0x200000, %eax
	adcl	$0, %edx
	addl	$8, %edi
	loop	3b

	movl	$boot_pml4, %eax
	movl	%eax, %cr3
	movl	%cr4, %eax
	orl	$((1 << 5) | (1 << 9) | (1 << 10)), %eax /* PAE, OSFXSR, OSXMMEXCPT */
	movl	%eax, %cr4
	movl	$0xC0000080, %ecx	/* EFER */
	rdmsr
	orl	$(1 << 8), %eax		/* LME */
	wrmsr
	movl	%cr0, %eax
	andl	$~(1 << 2), %eax	/* no EM */
	orl	$((1 << 31) | (1 << 1) | 1), %eax /* PG, MP, PE */
	movl	%eax, %cr0
	lgdt	boot_gdt_desc
	ljmp	$0x08, $long_from32

	.code64
long_from32:
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	%ax, %fs
	movw	%ax, %gs
	movl	%esi, %edi		/* Multiboot info, zero-extended */
	xorl	%esi, %esi		/* CPU 0 */
	movl	$1, %edx		/* booted by a Multiboot loader */
	jmp	common64

	.globl _start64
_start64:
	cli
	cld
common64:
	cmpq	$MAX_CPUS, %rsi
	jae	halt
	movq	%rsi, %rax
	incq	%rax
	shlq	$14, %rax		/* (cpu + 1) * STACK_SIZE */
	leaq	boot_stacks(%rax), %rsp
	xorl	%ebp, %ebp
	call	guest_main
halt:
	cli
	hlt
	jmp	halt

	.section .rodata
	.balign 16
boot_gdt:
	.quad	0
	.quad	0x00af9a000000ffff	/* 0x08: 64-bit code */
	.quad	0x00cf92000000ffff	/* 0x10: data */
boot_gdt_end:
	.balign 4
boot_gdt_desc:
	.word	boot_gdt_end - boot_gdt - 1
	.long	boot_gdt

	.section .bss
	.balign 4096
boot_pml4:
	.space 4096
boot_pdpt:
	.space 4096
boot_pd:
	.space 4 * 4096
	.balign 16
boot_stacks:
	.space MAX_CPUS * STACK_SIZE

	.section .note.GNU-stack, "", @progbits

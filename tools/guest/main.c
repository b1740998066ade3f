// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The guest payload's C side: reads the Multiboot command line, finds the
 * TSC frequency, runs the workload on every CPU and reports through port
 * I/O. No interrupts, no LAPIC timer: pacing is by the TSC only, so the
 * same binary runs under ferry-vm (KVM, nested PVM included) and QEMU TCG.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workload.h"

#define MB_INFO_MEM (1u << 0)
#define MB_INFO_CMDLINE (1u << 2)
#define PIT_HZ 1193182u

void guest_main(const uint32_t *mbi, uint64_t cpu, uint64_t multiboot);
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);

/* The compiler may emit calls to these even with -ffreestanding. */
void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;

	while (n--)
		*p++ = (unsigned char)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *p = d;
	const unsigned char *q = s;

	while (n--)
		*p++ = *q++;
	return d;
}

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;

	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static uint64_t env_now(void *arg)
{
	return rdtsc();
}

static void env_write(void *arg, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		outb(WL_PORT_CONSOLE, (uint8_t)s[i]);
}

static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

#define FW_CFG_PORT_SEL 0x510
#define FW_CFG_PORT_DATA 0x511
#define FW_CFG_SIGNATURE 0x0000
#define FW_CFG_FILE_DIR 0x0019
#define FW_CFG_RESUME_FILE "opt/ferry/resume"

static uint32_t fw_cfg_be32(void)
{
	uint32_t v = 0;

	for (int i = 0; i < 4; i++)
		v = v << 8 | inb(FW_CFG_PORT_DATA);
	return v;
}

/*
 * QEMU: the token is the fw_cfg file opt/ferry/resume, which each QEMU
 * process is given anew on its command line (-fw_cfg name=...,string=...)
 * and which migration does not carry. A QEMU's guest thus sees a new token
 * once it runs in another QEMU. 0 without such a file.
 */
static uint32_t fw_cfg_token(void)
{
	static const char want[] = FW_CFG_RESUME_FILE;
	uint32_t n, h = 2166136261u;

	outw(FW_CFG_PORT_SEL, FW_CFG_SIGNATURE);
	if (fw_cfg_be32() != 0x51454d55u)	/* "QEMU" */
		return 0;
	outw(FW_CFG_PORT_SEL, FW_CFG_FILE_DIR);
	n = fw_cfg_be32();
	for (uint32_t f = 0; f < n && f < 4096; f++) {
		uint32_t size = fw_cfg_be32(), sel;
		bool match = true;

		sel = fw_cfg_be32() >> 16;	/* u16 select, u16 reserved */
		for (unsigned int i = 0; i < 56; i++) {
			char c = (char)inb(FW_CFG_PORT_DATA);

			if (i < sizeof(want) && c != want[i])
				match = false;
		}
		if (!match)
			continue;
		outw(FW_CFG_PORT_SEL, (uint16_t)sel);
		for (uint32_t i = 0; i < size && i < 64; i++)
			h = (h ^ inb(FW_CFG_PORT_DATA)) * 16777619u;
		return h ? h : 1;
	}
	return 0;
}

/* ferry-vm answers port WL_PORT_RESUME with a new token at each resume;
 * elsewhere the port is unassigned and reads as all ones. */
static uint32_t env_resume_token(void *arg)
{
	uint32_t t = inl(WL_PORT_RESUME);

	return t != 0xffffffffu ? t : fw_cfg_token();
}

static const struct wl_env env = {
	.now = env_now,
	.write = env_write,
	.resume_token = env_resume_token,
	.mem = (uint8_t *)0,
};

static void puts_(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	env_write(NULL, s, n);
}

static __attribute__((noreturn)) void guest_exit(uint32_t code)
{
	outl(WL_PORT_EXIT, code);
	for (;;)
		__asm__ volatile("cli; hlt");
}

/*
 * TSC ticks per ms from PIT channel 2 counting down 10 ms (the way Linux
 * calibrates). Bounded, so a VMM without a PIT only costs a guess.
 */
static uint64_t calibrate_tsc_khz(void)
{
	uint32_t latch = PIT_HZ / 100;
	uint64_t t0, t1, spins = 0;

	outb(0x61, (inb(0x61) & ~0x02) | 0x01);
	outb(0x43, 0xb0);		/* channel 2, lo/hi byte, mode 0 */
	outb(0x42, latch & 0xff);
	outb(0x42, latch >> 8);
	t0 = rdtsc();
	while (!(inb(0x61) & 0x20))
		if (++spins > 100000000)
			return 0;
	t1 = rdtsc();
	return (t1 - t0) / 10;
}

static void boot_cpu(const uint32_t *mbi, bool multiboot)
{
	struct wl_params p;
	const char *cmdline = "", *bad = NULL;
	uint64_t ram = 0;
	char num[24];

	wl_params_default(&p);
	if (mbi && (mbi[0] & MB_INFO_CMDLINE))
		cmdline = (const char *)(uintptr_t)mbi[4];
	if (mbi && (mbi[0] & MB_INFO_MEM))
		ram = ((uint64_t)mbi[2] + 1024) * 1024;
	if (wl_params_parse(&p, cmdline, &bad)) {
		puts_("FAIL bad command line at: ");
		puts_(bad);
		puts_("\n");
		guest_exit(WL_EXIT_CONFIG);
	}
	if (multiboot && p.cpus > 1) {
		/* Only the BSP runs: nobody sends the APs a SIPI. */
		puts_("WARN Multiboot starts one CPU; running with cpus=1\n");
		p.cpus = 1;
	}
	if (!p.tsc_khz)
		p.tsc_khz = calibrate_tsc_khz();
	if (!p.tsc_khz) {
		puts_("WARN no PIT to calibrate the TSC; assuming 2 GHz\n");
		p.tsc_khz = 2000000;
	}
	if (ram && wl_ram_needed(&p) > ram) {
		puts_("FAIL working set needs ");
		num[wl_fmt_u64(num, wl_ram_needed(&p) >> 20)] = 0;
		puts_(num);
		puts_(" MiB of RAM\n");
		guest_exit(WL_EXIT_CONFIG);
	}
	if (wl_init(&env, &p)) {
		puts_("FAIL bad parameters\n");
		guest_exit(WL_EXIT_CONFIG);
	}
}

void guest_main(const uint32_t *mbi, uint64_t cpu, uint64_t multiboot)
{
	enum wl_status st;

	if (cpu == 0)
		boot_cpu(mbi, multiboot);
	while (!wl_hdr_get(&env))
		__asm__ volatile("pause");
	if (cpu >= wl_hdr_get(&env)->p.cpus)
		for (;;)
			__asm__ volatile("cli; hlt");
	do
		st = wl_step(&env, (unsigned int)cpu);
	while (st == WL_RUNNING);
	if (st == WL_FAILED) {
		puts_("FAIL guest memory verification\n");
		guest_exit(WL_EXIT_VERIFY);
	}
	guest_exit(WL_EXIT_OK);
}

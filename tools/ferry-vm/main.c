// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ferry-vm: the reference micro-VMM. Options and setup here; see vm.h for
 * the map of the other files and the man page (docs/man/ferry-vm.1) for use.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define LOG_PREFIX "ferry-vm"
#include "tools/ferry-vm/vm.h"
#include "tools/ferry.h"

#ifndef FERRY_GUEST_DEFAULT
#define FERRY_GUEST_DEFAULT "/usr/local/share/ferry/ferry-guest"
#endif

static const char usage[] =
	"Usage: ferry vm [OPTIONS]            run a VM with the self-verifying guest\n"
	"       ferry vm snapshot -s SOCKET FILE [--keep-running]\n"
	"       ferry vm load -s SOCKET FILE      (into a ferry vm --incoming;\n"
	"                                         `restore` is its old name)\n"
	"\n"
	"VM:\n"
	"  -k, --kernel PATH       guest payload (default: next to ferry-vm, then\n"
	"                          " FERRY_GUEST_DEFAULT ")\n"
	"  -c, --cpus N            vCPUs, 1 to 4 (default 1)\n"
	"  -m, --memory SIZE       guest RAM, e.g. 64M, 1G (default: what the\n"
	"                          working set needs, rounded to the page size)\n"
	"  -b, --backing NAME      shmem (default), hugetlb-2M, hugetlb-1G, anon,\n"
	"                          anon-thp (the last two private: KSM merges them)\n"
	"      --no-reserve        hugetlb: reserve no huge pages up front (as\n"
	"                          QEMU's reserve=off): an incoming VM's pages\n"
	"                          are reserved by ferry dest when it attaches\n"
	"      --thp               advise shmem RAM for transparent huge pages\n"
	"                          (MADV_HUGEPAGE, as QEMU does; takes effect\n"
	"                          where shmem_enabled is advise or wider)\n"
	"      --mergeable         advise anonymous RAM for KSM (MADV_MERGEABLE,\n"
	"                          as QEMU's mem-merge=on)\n"
	"  -s, --socket PATH       serve the VM link on this Unix socket\n"
	"  -i, --incoming          create RAM, hand over the uffd, wait for\n"
	"                          load-state and resume on the VM link\n"
	"  -r, --restore FILE      start from a snapshot file (in this process;\n"
	"                          `ferry vm load` fills another VM instead)\n"
	"      --console FILE      guest console to FILE (default stdout)\n"
	"      --accel WHAT        auto (default, or $FERRY_ACCEL): KVM where it\n"
	"                          runs guest code at native speed (measured),\n"
	"                          else native threads; kvm: KVM even if it\n"
	"                          emulates; none: the workload as native threads\n"
	"      --no-kvm            the same as --accel none\n"
	"      --probe-accel       measure KVM, print what auto would use, exit\n"
	"      --watchdog MS       exit 5 if no heartbeat for MS ms while running\n"
	"  -v, --verbose           log link requests and setup\n"
	"  -h, --help              this text\n"
	"  -V, --version           the version\n"
	"\n"
	"Guest workload (or pass key=value words with -a/--append):\n"
	"      --ws SIZE           working-set size (default 16M)\n"
	"      --rate MIBS         dirty rate in MiB/s (default 8; 0: none)\n"
	"      --zero PCT          percent of zero pages (default 10)\n"
	"      --dup PCT           percent of duplicate pages (default 10)\n"
	"      --pattern P         random (default) or sequential\n"
	"      --seed N            seed (default 1)\n"
	"      --heartbeat-ms N    heartbeat interval (default 1000)\n"
	"      --heartbeats N      stop after N heartbeats, exit 0 (default: run)\n"
	"  -a, --append WORDS      raw guest command line words\n"
	"\n"
	"Exit status: 0 ok, 1 error, 2 usage, 3 guest memory corrupt,\n"
	"4 guest crashed, 5 heartbeat watchdog.\n";

enum {
	OPT_CONSOLE = 256, OPT_NOKVM, OPT_WATCHDOG, OPT_THP, OPT_WS, OPT_RATE,
	OPT_ZERO, OPT_DUP, OPT_PATTERN, OPT_SEED, OPT_HBMS, OPT_HBS,
	OPT_ACCEL, OPT_PROBE, OPT_NO_RESERVE, OPT_MERGEABLE,
};

static const struct option long_opts[] = {
	{ "kernel", required_argument, NULL, 'k' },
	{ "cpus", required_argument, NULL, 'c' },
	{ "memory", required_argument, NULL, 'm' },
	{ "backing", required_argument, NULL, 'b' },
	{ "socket", required_argument, NULL, 's' },
	{ "incoming", no_argument, NULL, 'i' },
	{ "no-reserve", no_argument, NULL, OPT_NO_RESERVE },
	{ "restore", required_argument, NULL, 'r' },
	{ "append", required_argument, NULL, 'a' },
	{ "console", required_argument, NULL, OPT_CONSOLE },
	{ "no-kvm", no_argument, NULL, OPT_NOKVM },
	{ "accel", required_argument, NULL, OPT_ACCEL },
	{ "probe-accel", no_argument, NULL, OPT_PROBE },
	{ "watchdog", required_argument, NULL, OPT_WATCHDOG },
	{ "thp", no_argument, NULL, OPT_THP },
	{ "mergeable", no_argument, NULL, OPT_MERGEABLE },
	{ "ws", required_argument, NULL, OPT_WS },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "zero", required_argument, NULL, OPT_ZERO },
	{ "dup", required_argument, NULL, OPT_DUP },
	{ "pattern", required_argument, NULL, OPT_PATTERN },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "heartbeat-ms", required_argument, NULL, OPT_HBMS },
	{ "heartbeats", required_argument, NULL, OPT_HBS },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* Parses SIZE with an optional K/M/G/T suffix. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	int shift = 0;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (*end) {
		const char *units = "kmgt", *u = strchr(units, *end | 0x20);

		if (u && *u) {
			shift = 10 * (int)(u - units + 1);
			end++;
		}
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static int append_word(struct vm_config *cfg, const char *key,
		       const char *val)
{
	size_t len = strlen(cfg->cmdline);
	int n;

	n = snprintf(cfg->cmdline + len, sizeof(cfg->cmdline) - len, "%s%s%s%s",
		     len ? " " : "", key ? key : "", key ? "=" : "", val);
	if (n < 0 || (size_t)n >= sizeof(cfg->cmdline) - len) {
		fprintf(stderr, "ferry-vm: guest command line too long\n");
		return -E2BIG;
	}
	return 0;
}

static int parse_opt(struct vm_config *cfg, int c, const char *arg)
{
	static const char *const keys[] = {
		[OPT_WS - OPT_WS] = "ws", [OPT_RATE - OPT_WS] = "rate",
		[OPT_ZERO - OPT_WS] = "zero", [OPT_DUP - OPT_WS] = "dup",
		[OPT_PATTERN - OPT_WS] = "pattern", [OPT_SEED - OPT_WS] = "seed",
		[OPT_HBMS - OPT_WS] = "hb_ms", [OPT_HBS - OPT_WS] = "hbs",
	};
	char *end;

	switch (c) {
	case 'k':
		cfg->payload = arg;
		return 0;
	case 's':
		cfg->socket = arg;
		return 0;
	case 'i':
		cfg->incoming = true;
		return 0;
	case 'r':
		cfg->restore = arg;
		return 0;
	case 'a':
		return append_word(cfg, NULL, arg);
	case OPT_CONSOLE:
		cfg->console = arg;
		return 0;
	case OPT_NOKVM:
		cfg->accel = VM_ACCEL_NONE;
		return 0;
	case OPT_ACCEL:
		return vm_accel_parse(arg, &cfg->accel);
	case 'v':
		ut_log_set_level(UT_LOG_INFO);
		return 0;
	case 'm':
		return parse_size(arg, &cfg->ram_bytes);
	case OPT_NO_RESERVE:
		cfg->no_reserve = true;
		return 0;
	case 'b':
		return gm_backing_parse(arg, &cfg->backing);
	case 'c':
		cfg->nr_cpus = (unsigned int)strtoul(arg, &end, 10);
		return *end || !cfg->nr_cpus || cfg->nr_cpus > VM_MAX_CPUS ?
			-EINVAL : 0;
	case OPT_THP:
		cfg->thp = true;
		return 0;
	case OPT_MERGEABLE:
		cfg->mergeable = true;
		return 0;
	case OPT_WATCHDOG:
		cfg->watchdog_ms = (unsigned int)strtoul(arg, &end, 10);
		return *end ? -EINVAL : 0;
	default:
		if (c >= OPT_WS && c <= OPT_HBS)
			return append_word(cfg, keys[c - OPT_WS], arg);
		return -EINVAL;
	}
}

/* FERRY_ACCEL, the default of --accel: 0, 1 (set) or -EINVAL (logged). */
static int accel_from_env(enum vm_accel *accel)
{
	const char *env = getenv("FERRY_ACCEL");

	if (!env || !*env)
		return 0;
	if (vm_accel_parse(env, accel)) {
		fprintf(stderr, "ferry-vm: FERRY_ACCEL='%s': use auto, kvm or "
			"none\n", env);
		return -EINVAL;
	}
	return 1;
}

/* Returns -1 to go on, or an exit status. */
static int parse_args(struct vm_config *cfg, int argc, char **argv)
{
	bool probe = false;
	int c, forced;

	*cfg = (struct vm_config){ .nr_cpus = 1, .backing = GM_BACKING_SHMEM };
	forced = accel_from_env(&cfg->accel);
	if (forced < 0)
		return VM_EXIT_USAGE;
	while ((c = getopt_long(argc, argv, "k:c:m:b:s:ir:a:vhV", long_opts,
				NULL)) != -1) {
		if (c == OPT_PROBE) {
			probe = true;
			continue;
		}
		if (c == 'h') {
			fputs(usage, stdout);
			return VM_EXIT_OK;
		}
		if (c == 'V') {
			printf("ferry vm %s\n", PACKAGE_VERSION);
			return VM_EXIT_OK;
		}
		if (c == '?' || parse_opt(cfg, c, optarg)) {
			if (c != '?')
				fprintf(stderr, "ferry-vm: invalid option "
					"value '%s' (see ferry-vm --help)\n",
					optarg);
			else
				fprintf(stderr, "Try 'ferry-vm --help'.\n");
			return VM_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ferry-vm: unexpected argument '%s'\n",
			argv[optind]);
		return VM_EXIT_USAGE;
	}
	if (probe)
		return vm_cmd_probe_accel(cfg->accel, forced > 0);
	if (cfg->incoming && !cfg->socket) {
		fprintf(stderr, "ferry-vm: --incoming needs --socket (the agent "
			"loads the guest through it)\n");
		return VM_EXIT_USAGE;
	}
	if (cfg->incoming && cfg->restore) {
		fprintf(stderr, "ferry-vm: --incoming and --restore exclude "
			"each other\n");
		return VM_EXIT_USAGE;
	}
	return -1;
}

static const char *find_payload(const struct vm_config *cfg, char *buf,
				size_t len)
{
	/* Beside the binary (installed), or in the build tree: ferry is
	 * tools/ferry, the payload tools/guest/ferry-guest. */
	static const char *const rel[] = { "/guest/ferry-guest",
					   "/../guest/ferry-guest",
					   "/ferry-guest" };
	char exe[PATH_MAX];
	ssize_t n;

	if (cfg->payload)
		return cfg->payload;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		*strrchr(exe, '/') = 0;
		for (unsigned int i = 0; i < UT_ARRAY_SIZE(rel); i++) {
			int w = snprintf(buf, len, "%s%s", exe, rel[i]);

			if (w > 0 && (size_t)w < len && !access(buf, R_OK))
				return buf;
		}
	}
	return FERRY_GUEST_DEFAULT;
}

/* MemAvailable in bytes, 0 if unknown. */
static uint64_t mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	unsigned long long kb = 0;
	char line[128];

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb << 10;
}

static int size_ram(struct vm_config *cfg, struct wl_params *p)
{
	size_t psz = gm_backing_page_size(cfg->backing);
	uint64_t need, avail;
	const char *bad = NULL;

	wl_params_default(p);
	if (wl_params_parse(p, cfg->cmdline, &bad)) {
		if (!strcmp(bad, "(combination)"))
			pr_err("invalid guest parameters '%s' (ws: a multiple "
			       "of 4K, at least 16K; zero + dup <= 100)",
			       cfg->cmdline);
		else
			pr_err("invalid guest parameter at '%s'", bad);
		return -EINVAL;
	}
	p->cpus = cfg->nr_cpus;
	/* Restoring: the workload's parameters are in the snapshot's RAM. */
	need = cfg->restore ? psz : UT_ALIGN_UP(wl_ram_needed(p), psz);
	if (!cfg->ram_bytes)
		cfg->ram_bytes = need;
	if (cfg->ram_bytes < need || !UT_IS_ALIGNED(cfg->ram_bytes, psz)) {
		pr_err("--memory %" PRIu64 " MiB: the working set needs %" PRIu64
		       " MiB, in multiples of the %zu KiB page",
		       cfg->ram_bytes >> 20, need >> 20, psz >> 10);
		return -EINVAL;
	}
	avail = mem_available();
	if (psz == 4096 && avail && cfg->ram_bytes > avail) {
		pr_err("guest RAM of %" PRIu64 " MiB exceeds available host "
		       "memory (%" PRIu64 " MiB)", cfg->ram_bytes >> 20,
		       avail >> 20);
		return -ENOMEM;
	}
	return 0;
}

static void kick_handler(int sig)
{
}

/* SIGUSR1 kicks vCPUs out of KVM_RUN (no SA_RESTART); SIGINT/SIGTERM are
 * blocked everywhere and read from a signalfd by main(). */
static int setup_signals(void)
{
	struct sigaction sa = { .sa_handler = kick_handler };
	sigset_t set;
	int fd;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	fd = signalfd(-1, &set, SFD_CLOEXEC);
	if (fd < 0)
		pr_err("signalfd: %s", strerror(errno));
	return fd;
}

static int setup(struct vm *vm, char *payload_buf, size_t len)
{
	struct vm_config *cfg = &vm->cfg;
	uint64_t snap_ram;
	int ret;

	if (!cfg->nokvm)
		cfg->payload = find_payload(cfg, payload_buf, len);
	if (cfg->restore) {
		ret = vm_snapshot_peek(cfg->restore, &snap_ram);
		if (ret)
			return ret;
		if (!cfg->ram_bytes)
			cfg->ram_bytes = snap_ram;
	}
	ret = size_ram(cfg, &vm->params);
	if (ret)
		return ret;
	ret = vm_console_init(&vm->con, cfg->console);
	if (ret)
		return ret;
	ret = gm_region_init_flags(&vm->ram, cfg->backing, cfg->ram_bytes,
				   "ferry-vm-ram", cfg->no_reserve ?
				   GM_REGION_NORESERVE : 0);
	if (ret)
		return ret;
	if (cfg->thp && cfg->backing != GM_BACKING_SHMEM) {
		pr_err("--thp is for shmem RAM, not %s",
		       gm_backing_name(cfg->backing));
		return -EINVAL;
	}
	if (cfg->thp && (ret = gm_region_advise_thp(&vm->ram, true))) {
		pr_err("madvise(MADV_HUGEPAGE) on guest RAM: %s",
		       strerror(-ret));
		return ret;
	}
	if (cfg->mergeable && cfg->backing != GM_BACKING_ANON &&
	    cfg->backing != GM_BACKING_ANON_THP) {
		pr_err("--mergeable is for anonymous RAM (KSM merges nothing "
		       "else), not %s", gm_backing_name(cfg->backing));
		return -EINVAL;
	}
	if (cfg->mergeable && madvise(vm->ram.host, vm->ram.size,
				      MADV_MERGEABLE)) {
		ret = -errno;
		pr_err("madvise(MADV_MERGEABLE) on guest RAM: %s",
		       strerror(-ret));
		return ret;
	}
	/* The address lets a test ask where the RAM's pages are
	 * (tools/nested/pages: move_pages on this pid). */
	pr_info("%s VM, %u vCPUs, %" PRIu64 " MiB %s RAM at %p", vm->ops->name,
		cfg->nr_cpus, cfg->ram_bytes >> 20,
		gm_backing_name(cfg->backing), vm->ram.host);
	return vm->ops->init(vm, !cfg->incoming && !cfg->restore);
}

static int start(struct vm *vm)
{
	int ret = 0;

	if (vm->cfg.restore) {
		ret = vm_restore_file(vm, vm->cfg.restore);
		if (!ret)
			ret = vm_resume(vm);
	} else if (!vm->cfg.incoming) {
		vm->loaded = true;
		ret = vm_resume(vm);
	}
	return ret;
}

static int watchdog_expired(struct vm *vm)
{
	uint64_t last, since, now = ut_now_ns();

	if (!vm->cfg.watchdog_ms || vm_run_state(vm) != VML_STATE_RUNNING)
		return 0;
	vm_console_heartbeats(&vm->con, &last);
	pthread_mutex_lock(&vm->lock);
	since = vm->run_since_ns;
	pthread_mutex_unlock(&vm->lock);
	if (since > last)
		last = since;
	if (now - last < vm->cfg.watchdog_ms * 1000000ull)
		return 0;
	pr_err("no guest heartbeat for %" PRIu64 " ms (watchdog %u ms)",
	       (now - last) / 1000000, vm->cfg.watchdog_ms);
	return 1;
}

/* Waits for the guest to stop, a quit, a signal or the watchdog. */
static int main_loop(struct vm *vm, int sig_fd)
{
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = vm->event_fd, .events = POLLIN },
			{ .fd = sig_fd, .events = POLLIN },
		};
		int code;
		bool quit;

		if (poll(p, sig_fd >= 0 ? 2 : 1, 100) < 0 && errno != EINTR)
			return VM_EXIT_ERROR;
		if (p[1].revents) {
			pr_info("signal: stopping");
			return VM_EXIT_OK;
		}
		pthread_mutex_lock(&vm->lock);
		code = vm->exit_code;
		quit = vm->quit;
		pthread_mutex_unlock(&vm->lock);
		if (code >= 0)
			return code;
		if (quit)
			return VM_EXIT_OK;
		if (watchdog_expired(vm))
			return VM_EXIT_WATCHDOG;
	}
}

static int run_vm(int argc, char **argv)
{
	char payload_buf[PATH_MAX], note[320];
	struct vm_link *link = NULL;
	bool warn;
	struct vm_config cfg;
	struct vm vm;
	int ret, sig_fd, status;

	status = parse_args(&cfg, argc, argv);
	if (status >= 0)
		return status;
	vm_accel_resolve(cfg.accel, &cfg.nokvm, note, sizeof(note), &warn);
	sig_fd = setup_signals();
	status = VM_EXIT_ERROR;
	if (vm_init(&vm, &cfg))
		goto fini_vm;
	if (cfg.socket && vm_link_open(&link, cfg.socket))
		goto fini_vm;
	ret = setup(&vm, payload_buf, sizeof(payload_buf));
	if (ret)
		goto stop_link;
	/* After setup: a setup error stays the one line it is. */
	if (warn)
		pr_warn("%s", note);
	else if (*note)
		pr_info("%s", note);
	if (link && vm_link_start(link, &vm))
		goto stop_link;
	if (start(&vm))
		goto stop_link;
	status = main_loop(&vm, sig_fd);
	if (status == VM_EXIT_VERIFY)
		pr_err("the guest found corrupt memory (see its ERR line)");
stop_link:
	vm_link_stop(link);
fini_vm:
	vm_fini(&vm);
	if (vm.con.fd >= 0)
		vm_console_fini(&vm.con);
	if (sig_fd >= 0)
		close(sig_fd);
	return status;
}

int ferry_vm_main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "snapshot"))
		return vm_cmd_snapshot(argc - 1, argv + 1);
	if (argc > 1 && (!strcmp(argv[1], "load") ||
			 !strcmp(argv[1], "restore")))
		return vm_cmd_restore(argc - 1, argv + 1);
	return run_vm(argc, argv);
}

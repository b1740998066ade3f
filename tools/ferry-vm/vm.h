/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ferry-vm internals: the VM object shared by the program's subsystems.
 *
 *   main.c         options, setup and teardown, the main loop
 *   accel.c        the accelerator: KVM only where it is not emulating
 *   vm.c           run control (pause/resume/save/load/quit), console
 *   kvm.c          /dev/kvm, the VM, guest memory slots, payload loading
 *   cpu.c          vCPUs: long-mode setup and the run loop
 *   state.c        the state blob (framing; KVM and no-KVM sections)
 *   nokvm.c        the workload as native threads over guest RAM
 *   link-server.c  the VM link server thread (vmlink/vmlink.h)
 *   snapshot.c     snapshot / restore to a file through the VM link
 *
 * Locking: vm->lock guards run state; backends are called with it held
 * only where noted. The link server thread and main() are the only
 * callers of run control.
 */
#ifndef FERRY_VM_H
#define FERRY_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guestmem/guestmem.h"
#include "vmlink/vmlink.h"
#include "tools/guest/workload.h"

/* Exit statuses of ferry-vm (also in the man page). */
#define VM_EXIT_OK 0
#define VM_EXIT_ERROR 1		/* setup or VMM error */
#define VM_EXIT_USAGE 2		/* bad options */
#define VM_EXIT_VERIFY 3	/* the guest found corrupt memory */
#define VM_EXIT_GUEST 4		/* the guest crashed or stopped oddly */
#define VM_EXIT_WATCHDOG 5	/* no heartbeat within --watchdog */

#define VM_MAX_CPUS WL_MAX_CPUS
#define VM_CMDLINE_MAX 1024

/* --accel: what runs the guest. */
enum vm_accel {
	VM_ACCEL_AUTO = 0,	/* KVM where it runs guest code natively */
	VM_ACCEL_KVM,		/* KVM, even an emulating one */
	VM_ACCEL_NONE,		/* the workload as native threads */
};

struct vm_config {
	const char *payload;	/* guest image (KVM mode) */
	const char *socket;	/* VM link socket path, NULL: none */
	const char *console;	/* console log file, NULL: stdout */
	const char *restore;	/* snapshot file to restore, NULL: none */
	char cmdline[VM_CMDLINE_MAX]; /* guest command line */
	enum gm_backing backing;
	uint64_t ram_bytes;	/* 0: what the workload needs */
	unsigned int nr_cpus;	/* 1..VM_MAX_CPUS */
	unsigned int watchdog_ms; /* 0: off */
	bool thp;		/* MADV_HUGEPAGE on shmem RAM */
	bool mergeable;		/* MADV_MERGEABLE on anonymous RAM */
	bool incoming;		/* wait for load-state + resume */
	bool no_reserve;	/* hugetlb RAM without a reservation */
	enum vm_accel accel;	/* as asked (--accel, FERRY_ACCEL) */
	bool nokvm;		/* as decided: native threads, not KVM */
};

struct vm;
struct vm_blob;

/* A way to run the guest: KVM vCPUs or native threads. */
struct vm_backend_ops {
	const char *name;
	/* Prepares the guest (vCPUs, memory, payload or workload header);
	 * @fresh: false in incoming/restore mode (RAM comes from elsewhere). */
	int (*init)(struct vm *vm, bool fresh);
	int (*start)(struct vm *vm);	/* starts vCPUs (once) */
	int (*pause)(struct vm *vm);	/* returns once all are stopped */
	int (*resume)(struct vm *vm);
	/* Paused or not started: appends sections to a blob / applies one. */
	int (*save)(struct vm *vm, struct vm_blob *b);
	int (*load)(struct vm *vm, const uint8_t *blob, size_t len);
	void (*fini)(struct vm *vm);	/* stops and joins; accepts half-built */
	/* Optional (NULL: none): KVM's dirty log, VML_DIRTY_* @op; FETCH
	 * fills a malloc'ed bitmap of *@words u64 words. */
	int (*dirty_log)(struct vm *vm, uint32_t op, uint64_t **bm,
			 size_t *words);
};

extern const struct vm_backend_ops vm_kvm_ops;
extern const struct vm_backend_ops vm_nokvm_ops;

struct vm_console {
	int fd;			/* where guest lines go */
	bool own_fd;		/* close on fini */
	bool write_failed;	/* warned once about a failed write */
	pthread_mutex_t lock;
	char line[512];		/* the line being assembled */
	size_t len;
	uint64_t hbs;		/* heartbeat lines seen */
	uint64_t last_hb_ns;	/* ut_now_ns() of the last one (or start) */
};

struct vm {
	struct vm_config cfg;
	struct wl_params params;	/* the guest's parameters */
	struct gm_region ram;		/* guest physical 0 .. ram.size */
	const struct vm_backend_ops *ops;
	void *backend;			/* the backend's own struct */
	struct vm_console con;

	pthread_mutex_t lock;		/* guards the fields below */
	enum vml_run_state state;
	bool started;			/* backend start() was called */
	bool loaded;			/* incoming: state was loaded */
	int exit_code;			/* -1 until the guest stops */
	bool quit;			/* quit requested */
	bool committed;			/* the agent's COMMIT, until a resume */
	uint64_t run_since_ns;		/* ut_now_ns() of the last start/resume */
	uint32_t resume_token;		/* new at each start/resume; the guest
					 * reads it (vm_resume_token()) */
	int event_fd;			/* wakes main(): exit, quit */
};

/* ---- vm.c: run control (link server thread and main) ---- */

/* Prepares @vm (caller's storage) for @cfg: picks the backend, run state
 * INCOMING, an eventfd for main(). 0 or -errno; vm_fini() either way. */
int vm_init(struct vm *vm, const struct vm_config *cfg);
/* Stops and joins the backend, frees guest RAM. Accepts a half-built @vm. */
void vm_fini(struct vm *vm);
/*
 * Run control, each returning 0 or -errno (-EBUSY in the wrong state) and
 * serialised by vm->lock. pause returns once every vCPU is stopped;
 * resume starts the guest the first time (incoming: after a load).
 */
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
/* Paused (or stopped): a malloc'ed blob in *@blob, freed by the caller. */
int vm_save_state(struct vm *vm, void **blob, size_t *len);
/* Paused or incoming: checks @blob is for this VM and applies it. */
int vm_load_state(struct vm *vm, const void *blob, size_t len);
/* The link's DIRTY_LOG for region @region (0): -EOPNOTSUPP without a
 * dirty log (no-KVM), else as vm_backend_ops.dirty_log. */
int vm_dirty_log(struct vm *vm, uint32_t region, uint32_t op, uint64_t **bm,
		 size_t *words);
/* The link's ADVISE, decoded: madvise() of the ranges of guest RAM
 * (region 0). 0 or -errno (the first failing range's). */
int vm_advise(struct vm *vm, const struct vml_advise *a);
/* The link's COMMIT: paused, the switchover is committed. 0 or -EBUSY. */
int vm_commit(struct vm *vm);
/* The agent disconnected: resumes a paused VM whose switchover was not
 * committed (and says so), keeps a committed one paused (and says so). */
void vm_agent_gone(struct vm *vm);
/* Asks main() to exit with status 0 (the link's QUIT). */
void vm_request_quit(struct vm *vm);
/* The guest stopped with @code (VM_EXIT_*); first caller wins. Any thread. */
void vm_guest_exited(struct vm *vm, int code);
enum vml_run_state vm_run_state(struct vm *vm);
/* The token of the VM's last start or resume, different at each one and
 * from any other VMM's (the guest restarts its verification pass when it
 * changes). Any thread, lock-free: vCPUs read it in guest port I/O. */
uint32_t vm_resume_token(struct vm *vm);
/* Names vCPU thread @t "vcpuN" (N = @idx), so that tools such as
 * tools/bench can tell guest work from VMM and agent work in
 * /proc/PID/task/TID/comm. Best effort: a failure is ignored. */
void vm_thread_name_vcpu(pthread_t t, unsigned int idx);

/* Console: opens @path for appending (NULL: stdout). 0 or -errno. */
int vm_console_init(struct vm_console *c, const char *path);
/* Flushes a partial line and closes the file. */
void vm_console_fini(struct vm_console *c);
/* Bytes from the guest, from any thread; whole lines are written out and
 * heartbeat lines counted. */
void vm_console_write(struct vm_console *c, const char *s, size_t len);
/* Heartbeat lines seen; *@last_ns (may be NULL) gets the time of the last. */
uint64_t vm_console_heartbeats(struct vm_console *c, uint64_t *last_ns);

/* ---- accel.c: the accelerator, by measurement ---- */

enum vm_probe_verdict {
	VM_PROBE_NONE = 0,	/* no /dev/kvm, or it cannot run a guest */
	VM_PROBE_KVM,		/* KVM runs guest code at native-like speed */
	VM_PROBE_KVM_EMULATED,	/* KVM works but emulates guest code */
};

struct vm_accel_probe {
	enum vm_probe_verdict verdict;
	double kvm_mips;	/* guest loop on KVM, M instructions/s */
	double host_mips;	/* the same loop on the host */
	double ratio;		/* kvm_mips / host_mips */
	char reason[160];	/* VM_PROBE_NONE: why */
};

/* Runs the calibration (well under a second: a real-mode loop on KVM for
 * at most 200 ms, the same loop natively for 20 ms). A KVM that cannot
 * run it is the verdict NONE, with the reason. Main thread only (it
 * borrows SIGUSR1 for the duration). */
void vm_accel_probe(struct vm_accel_probe *p);
const char *vm_probe_name(enum vm_probe_verdict v);
/* "auto", "kvm" or "none"; 0 or -EINVAL. */
int vm_accel_parse(const char *s, enum vm_accel *out);
/* Decides *@nokvm for @accel (probing unless NONE); @note gets one line
 * on what it found ("" for none asked), *@warn whether that departs from a
 * native KVM (the caller prints it once the VM is set up). */
void vm_accel_resolve(enum vm_accel accel, bool *nokvm, char *note,
		      size_t len, bool *warn);
/* `ferry-vm --probe-accel`: prints "VERDICT use=kvm|none [kvm_mips=..
 * host_mips=.. ratio=..] [forced=FERRY_ACCEL] [reason=\"..\"]"; @forced
 * (when @is_forced, from FERRY_ACCEL) overrides use=. An exit status. */
int vm_cmd_probe_accel(enum vm_accel forced, bool is_forced);

/* ---- state.c: the blob ---- */

enum vm_blob_kind {
	VM_BLOB_KVM = 1,
	VM_BLOB_NOKVM = 2,
};

struct vm_blob {
	uint8_t *buf;		/* malloc'ed */
	size_t len, cap;	/* bytes used, allocated */
	uint32_t nr_sections;
};

/* Starts a blob for @kind with @nr_vcpus and @ram_size. */
int vm_blob_init(struct vm_blob *b, enum vm_blob_kind kind,
		 unsigned int nr_vcpus, uint64_t ram_size);
/* Frees the buffer; accepts a zeroed or finished @b. */
void vm_blob_fini(struct vm_blob *b);
/* Appends a section (@type, @vcpu or VM_BLOB_VM) with @len bytes. */
#define VM_BLOB_VM 0xffffffffu
int vm_blob_add(struct vm_blob *b, uint32_t type, uint32_t vcpu,
		const void *data, size_t len);
/* Checks the framing of a received blob and that it is of @kind for
 * @nr_vcpus and @ram_size. Returns 0 or -EINVAL (logged). */
int vm_blob_check(const uint8_t *blob, size_t len, enum vm_blob_kind kind,
		  unsigned int nr_vcpus, uint64_t ram_size);
/* Finds a section; returns its data or NULL; *@len receives its size. */
const void *vm_blob_find(const uint8_t *blob, size_t len, uint32_t type,
			 uint32_t vcpu, size_t *out_len);

/* ---- link-server.c ---- */

struct vm_link;
/* Listens on @path (early, so that a path in use fails before anything
 * else is set up). */
int vm_link_open(struct vm_link **out, const char *path);
/* Starts the server thread for @vm, once @vm is fully set up. */
int vm_link_start(struct vm_link *l, struct vm *vm);
/* Stops the thread, closes sockets, unlinks the path. Accepts NULL. */
void vm_link_stop(struct vm_link *l);

/* ---- snapshot.c: the client subcommands ---- */

/* `ferry-vm snapshot -s SOCK FILE`: pause, save, dump RAM, quit (or
 * resume with --keep-running). Returns an exit status (VM_EXIT_*). */
int vm_cmd_snapshot(int argc, char **argv);
/* `ferry-vm restore -s SOCK FILE` into a ferry-vm --incoming: fill RAM
 * (memfd or UFFDIO_COPY), load-state, resume. Returns an exit status. */
int vm_cmd_restore(int argc, char **argv);
/* Restores @path into @vm (RAM and state) in-process (--restore). */
int vm_restore_file(struct vm *vm, const char *path);
/* Reads the guest RAM size recorded in snapshot @path. */
int vm_snapshot_peek(const char *path, uint64_t *ram_size);

#endif /* FERRY_VM_H */

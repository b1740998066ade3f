/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ferry-qemu: a VM link server (vmlink/vmlink.h) for an unmodified QEMU.
 *
 * One daemon per QEMU. It drives QEMU over a private QMP socket given on
 * QEMU's command line, takes a fresh userfaultfd per agent from
 * libferry-preload.so (preload.c) inside QEMU, and the RAM backends' fds
 * from QEMU's fd table (pidfd_getfd). QEMU's own migration stream, with the
 * capability x-ignore-shared, is the opaque state blob: device state and
 * the small non-shared blocks (BIOS, ROMs, ACPI), no guest RAM.
 *
 * Everything returns 0 or -errno and logs once where it fails. The whole
 * daemon is one thread: requests are served one at a time, as the VM link
 * wants, and nothing here is shared between threads.
 */
#ifndef FERRY_TOOLS_FERRY_QEMU_FQ_H
#define FERRY_TOOLS_FERRY_QEMU_FQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/err.h"
#include "vmlink/vmlink.h"

/* ---- QMP (qmp.c) ---- */

struct fq_qmp {
	int fd;			/* the monitor socket, -1 when closed */
	pid_t peer;		/* QEMU's pid (SO_PEERCRED) */
	char *buf;		/* received bytes not yet consumed */
	size_t len, cap;	/* bytes in buf, its allocation */
	struct ut_err err;	/* QEMU's "desc" of the last error reply */
	int timeout_ms;		/* bound on every wait for a reply */
	unsigned int stops;	/* STOP events seen (the vCPUs have stopped) */
};

/* Connects to QEMU's QMP socket at @path (waiting up to @wait_ms for it
 * to appear and accept) and leaves capability negotiation. The caller
 * owns @q and closes it with fq_qmp_close(). */
int fq_qmp_open(struct fq_qmp *q, const char *path, int wait_ms);
/* Accepts a @q whose open failed. */
void fq_qmp_close(struct fq_qmp *q);
/*
 * Sends @json (one command object) with @fd as SCM_RIGHTS if >= 0, and
 * waits for its reply, skipping events. *@reply (may be NULL) receives the
 * malloc'ed reply line. An error reply returns -EREMOTEIO with QEMU's
 * description in q->err.msg; a closed monitor -ECONNRESET.
 */
int fq_qmp_cmd(struct fq_qmp *q, const char *json, int fd, char **reply);
/* Runs an HMP command through human-monitor-command; *@out receives its
 * text output, unescaped (caller frees). */
int fq_qmp_hmp(struct fq_qmp *q, const char *cmd, char **out);
/* Reads and drops what QEMU sent unasked (events): for a poll loop that
 * saw the socket readable. -ECONNRESET once QEMU has gone. */
int fq_qmp_drain(struct fq_qmp *q);
/* QEMU's run state ("running", "paused", "inmigrate", ...) into @st. */
int fq_qmp_status(struct fq_qmp *q, char *st, size_t cap);

/* Copies the string value of "@key" in the JSON text @js into @out;
 * -ENOENT when absent. Handles the escapes QEMU emits. */
int fq_json_str(const char *js, const char *key, char *out, size_t cap);
/* Reads the number value of "@key"; -ENOENT when absent. */
int fq_json_u64(const char *js, const char *key, uint64_t *out);
/* Reads the boolean value of "@key"; -ENOENT when absent. */
int fq_json_bool(const char *js, const char *key, bool *out);

/* ---- the guest's RAM (ram.c) ---- */

struct fq_ram {
	unsigned int nr;	/* regions found */
	struct vml_region r[VML_MAX_REGIONS];	/* fds owned here */
	char name[VML_MAX_REGIONS][64];	/* the RAM block behind each */
};

/*
 * Finds every RAM backend of the QEMU behind @q: its host mapping and fd
 * (from /proc/PID/maps and QEMU's fd table, matched by inode), its guest
 * physical address (from `info mtree -f`). A backend that is not shared
 * (share=on) fails with -EINVAL and one line naming the option to use;
 * 1 GiB pages and files outside tmpfs/hugetlbfs with -EOPNOTSUPP.
 * On success the caller owns @ram and releases it with fq_ram_fini().
 */
int fq_ram_init(struct fq_ram *ram, struct fq_qmp *q);
void fq_ram_fini(struct fq_ram *ram);

/*
 * Makes an incoming QEMU's RAM fresh, as an agent placing pages into it
 * expects (docs/vmlink.md): holes, unmapped, so that each page reads zero
 * until placed and, in postcopy, faults until its data comes. QEMU may
 * have populated it already: libvirt starts hugetlb backends with
 * prealloc=on, which allocates and maps every page. A region whose file
 * has pages allocated is punched whole (which also zaps QEMU's mappings);
 * an incoming QEMU reads no guest RAM before its state loads. 0, or
 * -errno with one line.
 */
int fq_ram_make_fresh(struct fq_ram *ram);

/* ---- the device-state stream (state.c) ---- */

/* Sets x-ignore-shared on or off (on: both sides, before a stream). */
int fq_state_prepare(struct fq_qmp *q, bool on);
/* (paused) QEMU's migration stream over fd: into a malloc'ed *@blob.
 * On success x-ignore-shared is still on: fq_state_done() turns it off,
 * once the agent has its answer (that QMP round trip is not downtime). */
int fq_state_save(struct fq_qmp *q, void **blob, size_t *len);
/* (incoming) Feeds @blob to migrate-incoming over fd: and waits until
 * QEMU has loaded it; QEMU stays paused (it was started with -S). On
 * success, fq_state_done() after the answer, as for fq_state_save(). */
int fq_state_load(struct fq_qmp *q, const void *blob, size_t len);
/* x-ignore-shared off again after a good fq_state_save/load. */
void fq_state_done(struct fq_qmp *q);
/* Polls query-migrate until QEMU's migration (outgoing, or incoming on a
 * destination) has completed (0) or failed; bounded (60 s). @what names
 * it in the one line logged on failure. */
int fq_state_wait(struct fq_qmp *q, const char *what);
/* Writes all of @len bytes of @b to @fd (blocking), or -errno. */
int fq_write_all(int fd, const void *b, size_t len);

/* ---- libvirt's migration stream (stream.c, docs/libvirt.md) ---- */

struct fq_stream {
	int listen_fd;		/* source: where QEMU's stream arrives, -1 */
	int fd;			/* source: QEMU's connection, -1 before */
	uint8_t *buf;		/* what QEMU sent so far */
	size_t len, cap;	/* bytes in buf, its allocation */
};

/* A listener on numeric @host:@port for a source QEMU's outgoing stream,
 * with a small window (QEMU blocks early while it is not read). */
int fq_stream_listen(const char *host, const char *port, int *fd);
/* @listen_fd stays the caller's. */
void fq_stream_init(struct fq_stream *s, int listen_fd);
void fq_stream_fini(struct fq_stream *s);
/* Accepts QEMU's connection if not yet done, waiting up to @wait_ms. */
int fq_stream_accept(struct fq_stream *s, int wait_ms);
/* Source, at the agent's PAUSE: reads the stream until QEMU's own
 * migration has stopped the vCPUs (bounded). */
int fq_stream_wait_stop(struct fq_stream *s, struct fq_qmp *q);
/* Source, at SAVE_STATE: reads the stream to its end and waits for QEMU
 * to call its migration completed; *@blob (malloc'ed) is all of it. */
int fq_stream_finish(struct fq_stream *s, struct fq_qmp *q, void **blob,
		     size_t *len);
/* Destination: x-ignore-shared on, then @blob into the listener the
 * incoming QEMU was given by libvirt; waits until QEMU has loaded it. */
int fq_stream_load(struct fq_qmp *q, const void *blob, size_t len);

/* ---- the VM link server (link.c) ---- */

struct fq_link_params {
	const char *qmp_path;	/* QEMU's private monitor */
	const char *uffd_path;	/* the preload's socket */
	const char *link_path;	/* where agents connect */
	/* Under libvirt (docs/libvirt.md), else -1, false, -1, -1, NULL: */
	int stream_listen;	/* source: listener for libvirt's stream */
	bool libvirt_incoming;	/* destination: QEMU listens (libvirt) */
	int notify_fd;		/* an eventfd written once the stream came */
	int stop_fd;		/* readable: stop serving */
	size_t *stream_bytes;	/* out: the stream's size once saved */
};

/* Serves the VM link until QEMU exits or an agent sends QUIT (under
 * libvirt: until the agent has gone; QEMU's exit after the switchover is
 * libvirt's doing and does not end the link). Returns 0
 * then, or -errno when QEMU cannot be served at all (one line logged). */
int fq_link_serve(const struct fq_link_params *p);

/* ---- command lines (cmdline.c) ---- */

#define FQ_MAX_NODES 8u	/* NUMA nodes, each on its own backend */

struct fq_cmdline {
	const char *dir;	/* the VM's directory: sockets live there */
	const char *mem;	/* guest RAM size, K/M/G suffix ("64M") */
	unsigned int nodes;	/* NUMA nodes (0 or 1: none), RAM split evenly */
	bool hugetlb;		/* 2 MiB hugetlb memfds instead of 4 KiB shmem */
	const char *mem_path;	/* memory-backend-file in this directory (a
				 * tmpfs or hugetlbfs) instead of memfds;
				 * NULL: memfds */
	const char *accel;	/* "tcg" or "kvm", with QEMU's -accel
				 * options after a comma ("tcg,thread=single") */
	const char *preload;	/* path of libferry-preload.so */
	bool incoming;		/* destination: -incoming defer -S */
	int nextra;		/* extra QEMU arguments */
	char **extra;
};

/* The QEMU argv (NULL-terminated, malloc'ed strings, caller frees with
 * fq_cmdline_free) and environment additions for @c. -EINVAL for a size
 * that does not split into @c->nodes whole 2 MiB parts, or for
 * @c->hugetlb with @c->mem_path (a hugetlbfs mount is the file's way). */
int fq_cmdline_build(const struct fq_cmdline *c, char ***argv, char ***env);
void fq_cmdline_free(char **v);

#endif /* FERRY_TOOLS_FERRY_QEMU_FQ_H */

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The VM link: how a VMM hands its guest to a Ferry agent.
 *
 * A Unix stream socket; the VMM listens, the agent connects. All integers
 * are little-endian. Every message is a 16-byte header and a payload:
 *
 *   u32 magic    0x4c4d5646 ("FVML")
 *   u16 type     VML_MSG_*
 *   u16 flags    0
 *   u32 len      payload bytes, at most VML_MAX_PAYLOAD
 *   i32 status   in replies: 0 or -errno; in requests: 0
 *
 * File descriptors travel as SCM_RIGHTS on the header's first byte.
 *
 * 1. On accept the VMM sends HELLO, with fds [uffd, region fds...]:
 *      u32 version (1)   u32 pid   u32 flags (VML_F_*)   u32 nr_vcpus
 *      u32 nr_regions    i32 uffd_fd_index (-1: none)
 *      nr_regions x 48 bytes:
 *        u64 gpa  u64 size  u64 host_addr  u64 fd_offset  u64 page_size
 *        u32 backing (enum gm_backing)  i32 fd_index (-1: anonymous)
 *    The uffd was created in the VMM's process without UFFDIO_API: the
 *    agent performs the handshake and registers the VMM's host ranges.
 *    A VMM should create a fresh uffd for each connection and keep no
 *    copy, so that an agent's death releases its registrations.
 * 2. Then the agent sends requests, one at a time, and the VMM answers
 *    each with a reply of type (request | VML_MSG_REPLY):
 *      PAUSE       stop all vCPUs; replied once they are stopped
 *      RESUME      run them (in incoming mode: after LOAD_STATE)
 *      SAVE_STATE  (paused) reply payload: the opaque state blob
 *      LOAD_STATE  (paused or incoming) payload: a blob from SAVE_STATE
 *      QUIT        reply, then the VMM exits (status 0)
 *      STATUS      reply payload: u32 run state (VML_STATE_*), u32 0,
 *                  u64 guest heartbeats seen by the VMM
 *      DIRTY_LOG   optional (HELLO flag VML_F_DIRTY_LOG): payload u32
 *                  region, u32 op (VML_DIRTY_*); FETCH replies with the
 *                  region's bitmap, one bit per 4 KiB page written by a
 *                  vCPU since START or the previous FETCH (u64 LE words).
 *                  The VMM's own writes are not in it.
 *      ADVISE      optional (HELLO flag VML_F_ADVISE): advice the VMM
 *                  applies to its own guest RAM, for memory the agent
 *                  cannot reach through an fd (anonymous regions).
 *                  Payload u32 region, u32 advice (VML_ADVISE_*), u32
 *                  node (BIND; else 0), u32 0, then up to VML_MAX_ADVISE
 *                  ranges of u64 offset, u64 length (bytes from the
 *                  region's start, 4 KiB aligned, inside it). DONTNEED
 *                  drops the pages (madvise MADV_DONTNEED: with the
 *                  agent's uffd registered, the next touch faults to
 *                  it); MERGEABLE marks them for KSM (MADV_MERGEABLE);
 *                  BIND sets their memory policy to node only (mbind
 *                  MPOL_BIND), so that pages the agent places later
 *                  with UFFDIO_COPY are allocated there. Replied once
 *                  applied.
 *      COMMIT      (paused) the switchover is committed: the agent is about
 *                  to hand the guest's state to the destination, which
 *                  may run it from then on. Until a COMMIT, a VMM whose
 *                  agent disconnects while the VM is paused resumes the
 *                  guest by itself (the migration failed before the
 *                  switchover); after one, it keeps the VM paused (the
 *                  running copy may be elsewhere). RESUME clears it.
 *    A request the VMM cannot serve is answered with a negative status
 *    (-EBUSY: wrong state, -EOPNOTSUPP: unknown type, -EINVAL: bad blob).
 *
 * That is the whole protocol; docs/vmlink.md has a worked example.
 * Everything here returns 0 or -errno and logs once; nothing keeps global
 * state. Functions on one socket must not be called concurrently.
 */
#ifndef FERRY_MIGRATE_VMLINK_H
#define FERRY_MIGRATE_VMLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VML_MAGIC 0x4c4d5646u
#define VML_VERSION 1u
#define VML_HDR_SIZE 16u
#define VML_MAX_PAYLOAD (64u << 20)
#define VML_MAX_REGIONS 8u
#define VML_MAX_FDS (1u + VML_MAX_REGIONS)
#define VML_REGION_SIZE 48u
#define VML_HELLO_FIXED 24u
#define VML_ADVISE_FIXED 16u
#define VML_ADVISE_ENTRY 16u
#define VML_MAX_ADVISE 4096u	/* ranges in one ADVISE */
#define VML_MAX_NODE 63u	/* highest node id BIND names */

enum vml_msg_type {
	VML_MSG_HELLO = 1,
	VML_MSG_PAUSE = 2,
	VML_MSG_RESUME = 3,
	VML_MSG_SAVE_STATE = 4,
	VML_MSG_LOAD_STATE = 5,
	VML_MSG_QUIT = 6,
	VML_MSG_STATUS = 7,
	VML_MSG_DIRTY_LOG = 8,
	VML_MSG_COMMIT = 9,
	VML_MSG_ADVISE = 10,
	VML_MSG_REPLY = 0x8000,	/* OR-ed into a request's type */
};

/* HELLO flags. */
#define VML_F_INCOMING (1u << 0) /* RAM is empty: waiting for load+resume */
#define VML_F_NOKVM (1u << 1)	 /* vCPUs are native threads (no KVM) */
#define VML_F_DIRTY_LOG (1u << 2) /* serves DIRTY_LOG (KVM's dirty log) */
#define VML_F_ADVISE (1u << 3)	 /* serves ADVISE */

/* ADVISE advice. */
enum vml_advice {
	VML_ADVISE_DONTNEED = 1,	/* drop: the next touch faults */
	VML_ADVISE_MERGEABLE = 2,	/* a KSM candidate */
	VML_ADVISE_BIND = 3,		/* allocate on one node (mbind) */
};

/* DIRTY_LOG operations. */
enum vml_dirty_op {
	VML_DIRTY_START = 1,	/* start logging vCPU writes */
	VML_DIRTY_FETCH = 2,	/* return and clear the bitmap */
	VML_DIRTY_STOP = 3,
};

/* STATUS run states. */
enum vml_run_state {
	VML_STATE_RUNNING = 1,
	VML_STATE_PAUSED = 2,
	VML_STATE_INCOMING = 3,	/* not started yet */
	VML_STATE_STOPPED = 4,	/* the guest exited or failed */
};

struct vml_hdr {
	uint16_t type;
	uint16_t flags;
	uint32_t len;		/* payload bytes */
	int32_t status;		/* 0 or -errno */
};

struct vml_region {
	uint64_t gpa;		/* guest physical address */
	uint64_t size;		/* bytes */
	uint64_t host_addr;	/* address in the VMM's process */
	uint64_t fd_offset;	/* offset of the region in fd */
	uint64_t page_size;	/* backing page size, bytes */
	uint32_t backing;	/* enum gm_backing */
	int fd;			/* backing fd (here), -1 if anonymous */
};

struct vml_hello {
	uint32_t version;
	uint32_t pid;		/* the VMM's pid (for /proc/PID/pagemap) */
	uint32_t flags;		/* VML_F_* */
	uint32_t nr_vcpus;
	uint32_t nr_regions;
	int uffd;		/* the VMM's userfaultfd (here), -1 if none */
	struct vml_region regions[VML_MAX_REGIONS];
};

/* One ADVISE request: @nr ranges of region @region, in caller storage. */
struct vml_range {
	uint64_t off;		/* bytes from the region's start */
	uint64_t len;		/* bytes */
};

struct vml_advise {
	uint32_t region;
	uint32_t advice;	/* enum vml_advice */
	uint32_t node;		/* BIND: the node id; else 0 */
	uint32_t nr;		/* ranges, at most VML_MAX_ADVISE */
	struct vml_range *ranges;
};

/* A received message: the payload is malloc'ed, fds are owned by it until
 * taken (set the slot to -1). */
struct vml_msg {
	struct vml_hdr hdr;
	uint8_t *payload;	/* hdr.len bytes, NULL if empty */
	int fds[VML_MAX_FDS];
	unsigned int nfds;
};

/* What the calling thread's last failed call of this module refused in
 * what the peer sent ("regions 0 and 1 overlap", "the VMM answered pause
 * with message type 0x8007"), else strerror(-@ret). One line, valid until
 * the thread's next call. */
const char *vml_strerror(int ret);

/* ---- encoding (pure functions, fuzzable) ---- */

/* Writes @h as VML_HDR_SIZE bytes to @out. */
void vml_hdr_encode(uint8_t *out, const struct vml_hdr *h);
/* Parses a header from @len bytes; -EPROTO for a bad magic or flags,
 * -EMSGSIZE for a payload above VML_MAX_PAYLOAD, -EINVAL if short. */
int vml_hdr_decode(struct vml_hdr *h, const uint8_t *buf, size_t len);
/*
 * Encodes @h's payload into @buf of @cap bytes. Region fds are not
 * encoded as such: region i with fd >= 0 gets the next index of the fd
 * list [uffd if >= 0, region fds in order], which @fds receives (up to
 * VML_MAX_FDS; *@nfds their number). Returns bytes written or -errno.
 */
ssize_t vml_hello_encode(const struct vml_hello *h, uint8_t *buf, size_t cap,
			 int *fds, unsigned int *nfds);
/*
 * Decodes a HELLO payload of @len bytes received with @nfds fds (@fds).
 * Fills @h with fds taken from @fds: the taken slots become -1, so that
 * the caller's cleanup closes only the rest. Checks every length, index
 * and range (page sizes 4 KiB, 2 MiB or 1 GiB, aligned, no overflow, no
 * two regions sharing a guest address); returns 0, -EPROTO or -EINVAL.
 */
int vml_hello_decode(struct vml_hello *h, const uint8_t *buf, size_t len,
		     int *fds, unsigned int nfds);

/* Encodes ADVISE @a into @buf of @cap bytes; bytes written or -EINVAL. */
ssize_t vml_advise_encode(const struct vml_advise *a, uint8_t *buf,
			  size_t cap);
/*
 * Decodes an ADVISE payload of @len bytes into @a, whose a->ranges holds
 * VML_MAX_ADVISE entries. Checks the advice and its node (BIND: at most
 * VML_MAX_NODE, else 0), the region against @h (the
 * VMM's own HELLO) and every range: 4 KiB aligned, non-empty, inside the
 * region. Returns 0, -EPROTO or -EINVAL (vml_strerror() says why).
 */
int vml_advise_decode(struct vml_advise *a, const uint8_t *buf, size_t len,
		      const struct vml_hello *h);

/* ---- messages on a socket ---- */

/* Sends one message with optional fds. Retries EINTR and short writes;
 * -EPIPE when the peer went away. */
int vml_send(int sock, uint16_t type, int32_t status, const void *payload,
	     size_t len, const int *fds, unsigned int nfds);
/* Receives one message into @m (initialised here). -ECONNRESET when the
 * peer closed. Release @m with vml_msg_fini() whatever this returns. */
int vml_recv(int sock, struct vml_msg *m);
/* Frees the payload and closes the fds still held. Accepts a zeroed @m. */
void vml_msg_fini(struct vml_msg *m);

/* ---- the VMM side ---- */

/*
 * Binds and listens on @path. A stale socket (nobody accepting) is
 * replaced; a live one fails with -EADDRINUSE, any other existing file
 * with -EEXIST, each with one clear message. *@fd receives the socket.
 */
int vml_server_listen(const char *path, int *fd);
/* Sends HELLO for @h on an accepted connection. */
int vml_server_hello(int sock, const struct vml_hello *h);
/* Encodes a STATUS reply payload (16 bytes). */
void vml_status_encode(uint8_t *out, uint32_t state, uint64_t hbs);
/* Answers request @req_type with @status and an optional payload. */
int vml_server_reply(int sock, uint16_t req_type, int32_t status,
		     const void *payload, size_t len);

/* ---- the agent side ---- */

struct vml_client {
	int sock;		/* -1 when closed */
	struct vml_hello hello;	/* what the VMM sent; fds owned here */
};

/*
 * Connects to the VMM at @path and receives its HELLO. On success the
 * caller owns @c (and the fds in c->hello) and releases it with
 * vml_client_close(). Fails with -ENOENT / -ECONNREFUSED when no VMM
 * listens, -EPROTO on a malformed HELLO.
 */
int vml_client_open(struct vml_client *c, const char *path);
/* Closes the socket and every fd received. Accepts a @c whose open
 * failed or that was closed already (open sets every fd to -1 first). */
void vml_client_close(struct vml_client *c);
/* Takes the uffd out of @c: the caller owns the returned fd (or -1). */
int vml_client_take_uffd(struct vml_client *c);

/* Requests; each waits for the reply and returns its status. */
int vml_client_pause(struct vml_client *c);
int vml_client_resume(struct vml_client *c);
int vml_client_quit(struct vml_client *c);
/* COMMIT (see above); -EOPNOTSUPP from a VMM that predates it. */
int vml_client_commit(struct vml_client *c);
/* Reads the run state (enum vml_run_state) and heartbeats seen. */
int vml_client_status(struct vml_client *c, uint32_t *state, uint64_t *hbs);
/*
 * DIRTY_LOG on region @region: @op is VML_DIRTY_*. For FETCH, *@bitmap
 * receives a malloc'ed bitmap of *@words u64 words (caller frees), bit i
 * for the region's 4 KiB page i. -EOPNOTSUPP where the VMM has no dirty
 * log (then track with uffd-wp instead).
 */
int vml_client_dirty_log(struct vml_client *c, uint32_t region, uint32_t op,
			 uint64_t **bitmap, size_t *words);
/*
 * ADVISE (see above) for @a's ranges, in as many requests as they need.
 * -EOPNOTSUPP where the VMM does not serve it (no VML_F_ADVISE).
 */
int vml_client_advise(struct vml_client *c, const struct vml_advise *a);
/* Fetches the state blob; on success *@blob is malloc'ed (caller frees). */
int vml_client_save_state(struct vml_client *c, void **blob, size_t *len);
int vml_client_load_state(struct vml_client *c, const void *blob, size_t len);

/* "pause", "resume", ... for logs; "?" for an unknown type. */
const char *vml_msg_name(uint16_t type);

#endif /* FERRY_MIGRATE_VMLINK_H */

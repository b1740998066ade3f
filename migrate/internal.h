/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* migrate private declarations: the attached VM, shared by both engines. */
#ifndef FERRY_MIGRATE_INTERNAL_H
#define FERRY_MIGRATE_INTERNAL_H

#include <stdarg.h>

#include "guestmem/guestmem.h"
#include "migrate/migrate.h"
#include "migrate/wire.h"

/* A VMM attached over the VM link, its RAM mapped here through its fds. */
struct mig_vm {
	struct vml_client link;
	unsigned int nr;			/* regions */
	struct gm_region map[VML_MAX_REGIONS];	/* our view of each */
	uint64_t first[VML_MAX_REGIONS];	/* global index of page 0 */
	uint64_t total_pages;
	uint64_t ram_bytes;
	struct mig_layout layout;		/* as sent in HELLO */
	bool copy;				/* MIG_MEM_COPY in effect */
};

/* Connects to the VMM at @path and maps every region. Anonymous RAM has
 * no fd to map and is refused with a message saying so. */
int mig_vm_attach(struct mig_vm *vm, const char *path,
		  enum mig_mem_access access, char *err);
/* COPY mode: reads / writes @len bytes at page @idx of region @r. */
int mig_vm_read(const struct mig_vm *vm, uint32_t r, uint64_t idx, void *buf,
		size_t len);
int mig_vm_write(const struct mig_vm *vm, uint32_t r, uint64_t idx,
		 const void *buf, size_t len);
void mig_vm_detach(struct mig_vm *vm);

/* Host address (here) of page @idx of region @r. */
static inline uint8_t *mig_vm_page(const struct mig_vm *vm, uint32_t r,
				   uint64_t idx)
{
	return (uint8_t *)vm->map[r].host + idx * vm->map[r].page_size;
}

/* Formats a one-line reason into @err (MIG_ERR_LEN) and returns @ret. */
int mig_fail(char *err, int ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* CLOCK_REALTIME in ns: comparable between the two hosts' agents. */
uint64_t mig_realtime_ns(void);

/* Breaks every stream of @sess so that a thread blocked on one returns. */
void mig_session_cut(struct tp_session *sess);

/* Receives one control message into @buf: 0 when it is of @type, the
 * peer's reason when it is an ERROR, -EPROTO otherwise; @what names the
 * wait in the message. */
int mig_recv_expect(struct tp_stream *ctl, uint32_t type, uint8_t *buf,
		    size_t cap, struct tp_msg *m, const char *what, char *err);

/* Sends an encoded control message; returns 0 or -errno. */
int mig_send_msg(struct tp_stream *st, uint32_t type, const void *buf,
		 size_t len);

#endif /* FERRY_MIGRATE_INTERNAL_H */

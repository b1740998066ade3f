// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The cursor every wire encoder and decoder (wire.c, wire-pages.c,
 * wire-placement.c) writes and reads a body through: it refuses to step
 * past its end, so a short or truncated buffer can only produce an error.
 * Internal to migrate/'s wire files.
 */
#ifndef FERRY_MIGRATE_WIRE_CURSOR_H
#define FERRY_MIGRATE_WIRE_CURSOR_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "migrate/wire.h"
#include "util/le.h"

struct cur {
	uint8_t *w;		/* encoder: output, NULL when decoding */
	const uint8_t *r;	/* decoder: input */
	size_t len, off;
	bool short_;		/* a read or write went past len */
};

static inline void put(struct cur *c, uint64_t v, unsigned int n)
{
	if (c->off + n > c->len) {
		c->short_ = true;
		return;
	}
	ut_put_le(c->w + c->off, v, n);
	c->off += n;
}

static inline uint64_t get(struct cur *c, unsigned int n)
{
	uint64_t v;

	if (c->off + n > c->len) {
		c->short_ = true;
		return 0;
	}
	v = ut_get_le(c->r + c->off, n);
	c->off += n;
	return v;
}

#define put16(c, v) put(c, v, 2)
#define put32(c, v) put(c, v, 4)
#define put64(c, v) put(c, v, 8)
#define get16(c) ((uint16_t)get(c, 2))
#define get32(c) ((uint32_t)get(c, 4))
#define get64(c) get(c, 8)

static inline ssize_t enc_done(const struct cur *c)
{
	return c->short_ ? -ENOSPC : (ssize_t)c->off;
}

/* A decoder's last word: the body was neither short nor too long. */
static inline int dec_done(const struct cur *c, const char *what)
{
	if (c->short_)
		return mig_wire_reject("%s: message truncated at %zu bytes",
				       what, c->len);
	if (c->off != c->len)
		return mig_wire_reject("%s: %zu trailing bytes", what,
				       c->len - c->off);
	return 0;
}

static inline int bad(const char *what, const char *why)
{
	return mig_wire_reject("%s: %s", what, why);
}

#endif

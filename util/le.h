/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * util/le.h: the one little-endian codec of every Ferry protocol (the
 * transport's frames and handshake, the migration wire, the VM link), and
 * the one protocol magic they share. Byte by byte, so that any alignment
 * and any host byte order read the same bytes.
 */
#ifndef FERRY_UTIL_LE_H
#define FERRY_UTIL_LE_H

#include <stdint.h>

/* "FRY1" as bytes on the wire: the first word of every transport frame and
 * of the migration wire's HELLO and WELCOME. */
#define UT_FERRY_MAGIC 0x31595246u

/* Writes the low @n bytes of @v at @p, least significant first. */
static inline void ut_put_le(uint8_t *p, uint64_t v, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Reads @n bytes at @p, least significant first. */
static inline uint64_t ut_get_le(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static inline void ut_put_le16(uint8_t *p, uint16_t v) { ut_put_le(p, v, 2); }
static inline void ut_put_le32(uint8_t *p, uint32_t v) { ut_put_le(p, v, 4); }
static inline void ut_put_le64(uint8_t *p, uint64_t v) { ut_put_le(p, v, 8); }
static inline uint16_t ut_get_le16(const uint8_t *p)
{
	return (uint16_t)ut_get_le(p, 2);
}
static inline uint32_t ut_get_le32(const uint8_t *p)
{
	return (uint32_t)ut_get_le(p, 4);
}
static inline uint64_t ut_get_le64(const uint8_t *p)
{
	return ut_get_le(p, 8);
}

#endif

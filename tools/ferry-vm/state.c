// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The state blob that SAVE_STATE returns and LOAD_STATE takes. Agents treat
 * it as opaque bytes; inside it is a small framing of sections:
 *
 *   header (32 bytes, little-endian):
 *     u64 magic "FVMSTATE"  u32 version (1)  u32 kind (vm_blob_kind)
 *     u32 nr_vcpus  u32 nr_sections  u64 ram_size
 *   sections: u32 type  u32 vcpu (or 0xffffffff for the VM)  u32 len
 *             u32 0, then len bytes padded to 8.
 *
 * KVM section payloads are the KVM ABI structs as the kernel returns them
 * (stable ABI, same architecture on both ends); see cpu.c for the list.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LOG_PREFIX "ferry-vm"
#include "tools/ferry-vm/vm.h"

#define BLOB_MAGIC 0x45544154534d5646ull /* "FVMSTATE" */
#define BLOB_VERSION 1u
#define BLOB_HDR 32u
#define SEC_HDR 16u

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);	/* x86 only: host order is little-endian */
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static int reserve(struct vm_blob *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 4096;
	uint8_t *n;

	if (b->len + more <= b->cap)
		return 0;
	while (cap < b->len + more)
		cap *= 2;
	n = realloc(b->buf, cap);
	if (!n)
		return -ENOMEM;
	b->buf = n;
	b->cap = cap;
	return 0;
}

int vm_blob_init(struct vm_blob *b, enum vm_blob_kind kind,
		 unsigned int nr_vcpus, uint64_t ram_size)
{
	uint64_t magic = BLOB_MAGIC;

	*b = (struct vm_blob){ 0 };
	if (reserve(b, BLOB_HDR))
		return -ENOMEM;
	memset(b->buf, 0, BLOB_HDR);
	memcpy(b->buf, &magic, 8);
	put32(b->buf + 8, BLOB_VERSION);
	put32(b->buf + 12, kind);
	put32(b->buf + 16, nr_vcpus);
	memcpy(b->buf + 24, &ram_size, 8);
	b->len = BLOB_HDR;
	return 0;
}

void vm_blob_fini(struct vm_blob *b)
{
	if (!b)
		return;
	free(b->buf);
	*b = (struct vm_blob){ 0 };
}

int vm_blob_add(struct vm_blob *b, uint32_t type, uint32_t vcpu,
		const void *data, size_t len)
{
	size_t padded = UT_ALIGN_UP(len, 8);

	if (len > UINT32_MAX || reserve(b, SEC_HDR + padded))
		return -ENOMEM;
	put32(b->buf + b->len, type);
	put32(b->buf + b->len + 4, vcpu);
	put32(b->buf + b->len + 8, (uint32_t)len);
	put32(b->buf + b->len + 12, 0);
	memset(b->buf + b->len + SEC_HDR, 0, padded);
	memcpy(b->buf + b->len + SEC_HDR, data, len);
	b->len += SEC_HDR + padded;
	put32(b->buf + 20, ++b->nr_sections);
	return 0;
}

/* Walks the sections; returns 0 if the framing is sound. */
static int walk(const uint8_t *blob, size_t len, uint32_t type, uint32_t vcpu,
		const void **found, size_t *found_len)
{
	uint32_t n = get32(blob + 20);
	size_t off = BLOB_HDR;

	for (uint32_t i = 0; i < n; i++) {
		uint32_t slen;

		if (len - off < SEC_HDR)
			return -EINVAL;
		slen = get32(blob + off + 8);
		if (UT_ALIGN_UP(slen, 8) > len - off - SEC_HDR)
			return -EINVAL;
		if (found && get32(blob + off) == type &&
		    get32(blob + off + 4) == vcpu) {
			*found = blob + off + SEC_HDR;
			*found_len = slen;
			return 0;
		}
		off += SEC_HDR + UT_ALIGN_UP(slen, 8);
	}
	return off == len ? 0 : -EINVAL;
}

int vm_blob_check(const uint8_t *blob, size_t len, enum vm_blob_kind kind,
		  unsigned int nr_vcpus, uint64_t ram_size)
{
	static const char *const kinds[] = { "?", "KVM", "no-KVM" };
	uint32_t k;

	if (!blob || len < BLOB_HDR || get64(blob) != BLOB_MAGIC ||
	    get32(blob + 8) != BLOB_VERSION || walk(blob, len, 0, 0, NULL,
						    NULL)) {
		pr_err("state blob is malformed (%zu bytes)", len);
		return -EINVAL;
	}
	k = get32(blob + 12);
	if (k != kind) {
		pr_err("state blob is from a %s VM, this one is %s",
		       k < 3 ? kinds[k] : "?", kinds[kind]);
		return -EINVAL;
	}
	if (get32(blob + 16) != nr_vcpus || get64(blob + 24) != ram_size) {
		pr_err("state blob is for %u vCPUs and %llu MiB of RAM, this "
		       "VM has %u and %llu MiB", get32(blob + 16),
		       (unsigned long long)(get64(blob + 24) >> 20), nr_vcpus,
		       (unsigned long long)(ram_size >> 20));
		return -EINVAL;
	}
	return 0;
}

const void *vm_blob_find(const uint8_t *blob, size_t len, uint32_t type,
			 uint32_t vcpu, size_t *out_len)
{
	const void *found = NULL;

	*out_len = 0;
	if (walk(blob, len, type, vcpu, &found, out_len))
		return NULL;
	return found;
}

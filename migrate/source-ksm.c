// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The source's KSM hints (MIG_FEAT_KSM_PAGES): which pages of the VM's
 * anonymous RAM KSM has merged here, read from the VMM's pagemap and
 * /proc/kpageflags once before round 0, and told to the destination on
 * the control stream, which marks them MADV_MERGEABLE as they land
 * (dest-ksm.c). Pages KSM found identical here are the ones most worth
 * ksmd's first look there. Only root sees frames and kpageflags: without
 * them there are no such hints, said once, and the migration goes on.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LOG_PREFIX "source"
#include "migrate/source-internal.h"

/* The merged pages of region @r in @bits, sent as KSM messages of up to
 * MIG_KSM_MAX_PAGES pages, windows without one skipped. */
static int send_region(struct tp_stream *ctl, uint32_t r, uint64_t pages,
		       const uint8_t *bits, struct ut_err *err)
{
	uint8_t buf[MIG_ZERO_FIXED + MIG_KSM_MAX_PAGES / 8];

	for (uint64_t w = 0; w < pages; w += MIG_KSM_MAX_PAGES) {
		uint64_t n = pages - w < MIG_KSM_MAX_PAGES ? pages - w :
							     MIG_KSM_MAX_PAGES;
		struct mig_zero z = { .region = r, .first = w, .npages = n,
				      .bits = bits + w / 8 };
		bool any = false;
		ssize_t len;
		int ret;

		for (uint64_t b = 0; b < mig_zero_bytes(n) && !any; b++)
			any = z.bits[b];
		if (!any)
			continue;
		len = mig_enc_ksm(buf, sizeof(buf), &z);
		ret = len < 0 ? (int)len :
		      mig_send_msg(ctl, MIG_MSG_KSM, buf, (size_t)len);
		if (ret)
			return ut_err_first(err, ret, "sending KSM hints: %s",
					len < 0 ? strerror(-ret) :
					tp_stream_err(ctl)->msg);
	}
	return 0;
}

int src_ksm_tell(struct mig_src *s, struct tp_stream *ctl, struct ut_err *err)
{
	const struct mig_vm *vm = &s->vm;
	uint64_t merged = 0, scanned = 0;
	int ret = 0;

	for (uint32_t r = 0; r < vm->nr && !ret; r++) {
		uint64_t pages = mig_region_pages(&vm->layout, r);
		uint8_t *bits;
		ssize_t n;

		/* KSM merges 4 KiB anonymous pages only. */
		if (vm->map[r].fd >= 0 || vm->layout.r[r].page_size != 4096)
			continue;
		bits = malloc(mig_zero_bytes(pages));
		if (!bits)
			return ut_err_first(err, -ENOMEM, "out of memory");
		n = gm_ksm_merged((pid_t)vm->link.hello.pid,
				  vm->link.hello.regions[r].host_addr, pages,
				  bits);
		if (n < 0) {
			pr_info("no KSM hints from here: cannot read which "
				"pages KSM merged (/proc/kpageflags and the "
				"VMM's pagemap frames need root): %s",
				strerror((int)-n));
			free(bits);
			return 0;
		}
		scanned += pages;
		merged += (uint64_t)n;
		if (n)
			ret = send_region(ctl, r, pages, bits, err);
		free(bits);
	}
	s->st->ksm_told = true;
	s->st->ksm_source_pages = merged;
	if (scanned)
		pr_info("KSM had merged %llu of %llu pages of anonymous RAM "
			"here: told the destination",
			(unsigned long long)merged,
			(unsigned long long)scanned);
	return ret;
}

// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The phases of a migration and the hand-offs between them, one table
 * for both engines. An engine moves only along the table; a move off it
 * is a bug in the engine, refused and logged, never a silent state.
 */
#include "config.h"

#include <errno.h>

#define LOG_PREFIX "phase"
#include "migrate/internal.h"

#define BIT(p) (1u << (p))

/* From each phase, the phases it may hand off to. */
static const unsigned int next_ok[MIG_PHASE_COUNT] = {
	[MIG_PHASE_SETUP] = BIT(MIG_PHASE_PRECOPY) |
		/* ferry-source --recover resumes a postcopy */
		BIT(MIG_PHASE_POSTCOPY) | BIT(MIG_PHASE_FAILED) |
		BIT(MIG_PHASE_CANCELLED),
	[MIG_PHASE_PRECOPY] = BIT(MIG_PHASE_SWITCHOVER) |
		BIT(MIG_PHASE_FAILED) | BIT(MIG_PHASE_CANCELLED),
	[MIG_PHASE_SWITCHOVER] = BIT(MIG_PHASE_POSTCOPY) |
		BIT(MIG_PHASE_COMPLETE) | BIT(MIG_PHASE_FAILED) |
		BIT(MIG_PHASE_CANCELLED),
	/* FAILED and CANCELLED: the destination gave up before it ran the
	 * guest, so the source's copy is still the only one. */
	[MIG_PHASE_POSTCOPY] = BIT(MIG_PHASE_RECOVERING) |
		BIT(MIG_PHASE_COMPLETE) | BIT(MIG_PHASE_INTERRUPTED) |
		BIT(MIG_PHASE_FAILED) | BIT(MIG_PHASE_CANCELLED),
	[MIG_PHASE_RECOVERING] = BIT(MIG_PHASE_POSTCOPY) |
		BIT(MIG_PHASE_INTERRUPTED) | BIT(MIG_PHASE_FAILED) |
		BIT(MIG_PHASE_CANCELLED),
};

static const char *const names[MIG_PHASE_COUNT] = {
	[MIG_PHASE_SETUP] = "setup",
	[MIG_PHASE_PRECOPY] = "precopy",
	[MIG_PHASE_SWITCHOVER] = "switchover",
	[MIG_PHASE_POSTCOPY] = "postcopy",
	[MIG_PHASE_RECOVERING] = "recovering",
	[MIG_PHASE_COMPLETE] = "completed",
	[MIG_PHASE_FAILED] = "failed",
	[MIG_PHASE_CANCELLED] = "cancelled",
	[MIG_PHASE_INTERRUPTED] = "interrupted",
};

const char *mig_phase_name(enum mig_phase p)
{
	return (unsigned int)p < MIG_PHASE_COUNT ? names[p] : "?";
}

bool mig_phase_can(enum mig_phase from, enum mig_phase to)
{
	return (unsigned int)from < MIG_PHASE_COUNT &&
	       (unsigned int)to < MIG_PHASE_COUNT &&
	       (next_ok[from] & BIT(to));
}

bool mig_phase_terminal(enum mig_phase p)
{
	return p >= MIG_PHASE_COMPLETE && p < MIG_PHASE_COUNT;
}

int mig_phase_enter(enum mig_phase *cur, enum mig_phase to)
{
	if (!mig_phase_can(*cur, to)) {
		pr_err("no hand-off from %s to %s", mig_phase_name(*cur),
		       mig_phase_name(to));
		return -EINVAL;
	}
	pr_debug("%s -> %s", mig_phase_name(*cur), mig_phase_name(to));
	*cur = to;
	return 0;
}

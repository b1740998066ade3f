// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Runtime limits: what an operator changes while the source runs. The
 * setters only record; the engine reads them between the waits of a round
 * (the downtime limit at the end of each round, the bandwidth cap before
 * each batch, the postcopy request at the next chunk boundary).
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "migrate/internal.h"

#define TUNE_MIN_BANDWIDTH (64 * UT_KiB)	/* bytes/s */
#define TUNE_MAX_DOWNTIME_MS 600000

int mig_tune_init(struct mig_tune *t, uint64_t downtime_ms, uint64_t bandwidth)
{
	memset(t, 0, sizeof(*t));
	t->downtime_limit_ms = downtime_ms;
	t->bandwidth_limit = bandwidth;
	t->postcopy_why = "the migration has not negotiated postcopy yet";
	return -pthread_mutex_init(&t->lock, NULL);
}

void mig_tune_fini(struct mig_tune *t)
{
	if (t)
		pthread_mutex_destroy(&t->lock);
}

static const char settled_why[] =
	"the switchover has begun: the limits no longer apply";

int mig_tune_set_downtime(struct mig_tune *t, uint64_t ms, const char **why)
{
	int ret = 0;

	if (!ms || ms > TUNE_MAX_DOWNTIME_MS)
		return -EINVAL;
	pthread_mutex_lock(&t->lock);
	if (t->settled) {
		ret = -EBUSY;
		if (why)
			*why = settled_why;
	} else {
		t->downtime_limit_ms = ms;
	}
	pthread_mutex_unlock(&t->lock);
	return ret;
}

int mig_tune_set_bandwidth(struct mig_tune *t, uint64_t bytes_per_s,
			   const char **why)
{
	int ret = 0;

	if (bytes_per_s && bytes_per_s < TUNE_MIN_BANDWIDTH)
		return -EINVAL;
	pthread_mutex_lock(&t->lock);
	/* After a postcopy switchover the cap still paces the push. */
	t->bandwidth_limit = bytes_per_s;
	pthread_mutex_unlock(&t->lock);
	(void)why;
	return ret;
}

int mig_tune_postcopy(struct mig_tune *t, const char **why)
{
	int ret = 0;

	pthread_mutex_lock(&t->lock);
	if (t->settled) {
		ret = -EBUSY;
		*why = settled_why;
	} else if (t->postcopy_requested) {
		ret = -EALREADY;
	} else if (!t->postcopy_ok) {
		ret = -ENOTSUP;
		*why = t->postcopy_why;
	} else {
		t->postcopy_requested = true;
	}
	pthread_mutex_unlock(&t->lock);
	return ret;
}

void mig_tune_read(struct mig_tune *t, struct mig_tune_now *now)
{
	pthread_mutex_lock(&t->lock);
	now->downtime_limit_ms = t->downtime_limit_ms;
	now->bandwidth_limit = t->bandwidth_limit;
	now->postcopy = t->postcopy_requested;
	pthread_mutex_unlock(&t->lock);
}

void mig_tune_engine(struct mig_tune *t, bool postcopy_ok, const char *why,
		     bool settled)
{
	pthread_mutex_lock(&t->lock);
	t->postcopy_ok = postcopy_ok;
	if (why)
		t->postcopy_why = why;
	t->settled = t->settled || settled;
	pthread_mutex_unlock(&t->lock);
}

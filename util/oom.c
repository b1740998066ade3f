// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Keeping an agent away from the OOM killer for the window in which it
 * holds the only way a running guest gets its memory (postcopy): killed
 * then, the guest dies with it. /proc/self/oom_score_adj -1000 exempts the
 * process; lowering it needs CAP_SYS_RESOURCE, so without it the agent
 * goes on unprotected and says so (at info level, -v).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_PREFIX "ferry"
#include "util/util.h"

#define OOM_ADJ_PATH "/proc/self/oom_score_adj"

static int adj_read(int *v)
{
	char buf[16] = { 0 };
	int fd = open(OOM_ADJ_PATH, O_RDONLY | O_CLOEXEC), ret = 0;
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		ret = n < 0 ? -errno : -EIO;
	else
		*v = atoi(buf);
	close(fd);
	return ret;
}

static int adj_write(int v)
{
	char buf[16];
	int fd = open(OOM_ADJ_PATH, O_WRONLY | O_CLOEXEC), ret = 0, len;

	if (fd < 0)
		return -errno;
	len = snprintf(buf, sizeof(buf), "%d\n", v);
	if (write(fd, buf, (size_t)len) != len)
		ret = -errno;
	close(fd);
	return ret;
}

int ut_oom_protect(struct ut_oom_guard *g, const char *why)
{
	int ret;

	if (g->active)
		return 0;
	ret = adj_read(&g->saved);
	if (!ret)
		ret = adj_write(UT_OOM_ADJ_MIN);
	if (ret) {
		/* Info, not a warning: hosts that drop CAP_SYS_RESOURCE
		 * (sandboxes) would print it for every postcopy. */
		pr_info("cannot exempt this agent from the OOM killer (%s) "
			"while %s: %s", OOM_ADJ_PATH, why, strerror(-ret));
		return ret;
	}
	g->active = true;
	pr_info("exempt from the OOM killer while %s", why);
	return 0;
}

void ut_oom_restore(struct ut_oom_guard *g)
{
	int ret;

	if (!g->active)
		return;
	ret = adj_write(g->saved);
	if (ret)
		pr_warn("restoring %s to %d: %s", OOM_ADJ_PATH, g->saved,
			strerror(-ret));
	g->active = false;
}

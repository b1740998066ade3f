// SPDX-License-Identifier: LGPL-2.1-or-later
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "util/util.h"

static _Atomic int log_level = UT_LOG_WARN;
static _Atomic(ut_log_sink_fn) log_sink;
static void *_Atomic log_sink_arg;

static const char *const level_names[] = {
	[UT_LOG_ERR] = "err",
	[UT_LOG_WARN] = "warn",
	[UT_LOG_INFO] = "info",
	[UT_LOG_DEBUG] = "debug",
};

void ut_log_set_level(enum ut_log_level lvl)
{
	if (lvl > UT_LOG_DEBUG)
		lvl = UT_LOG_DEBUG;
	atomic_store(&log_level, lvl);
}

enum ut_log_level ut_log_get_level(void)
{
	return atomic_load(&log_level);
}

int ut_log_level_parse(const char *s, enum ut_log_level *out)
{
	if (!s || !out)
		return -EINVAL;
	for (unsigned int i = 0; i < UT_ARRAY_SIZE(level_names); i++) {
		if (!strcmp(s, level_names[i])) {
			*out = i;
			return 0;
		}
	}
	return -EINVAL;
}

void ut_log_set_sink(ut_log_sink_fn fn, void *arg)
{
	atomic_store(&log_sink_arg, arg);
	atomic_store(&log_sink, fn);
}

void ut_log(enum ut_log_level lvl, const char *prefix, const char *fmt, ...)
{
	char msg[1024];
	ut_log_sink_fn sink;
	va_list ap;
	int n;

	if ((int)lvl > atomic_load(&log_level))
		return;
	/* Format into one buffer so that lines from threads never interleave. */
	n = snprintf(msg, sizeof(msg), "%s: ", prefix ? prefix : "ferry");
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
	va_end(ap);

	sink = atomic_load(&log_sink);
	if (sink) {
		sink(lvl, msg, atomic_load(&log_sink_arg));
		return;
	}
	fprintf(stderr, "%s\n", msg);
}

// SPDX-License-Identifier: LGPL-2.1-or-later
#include "config.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "util/err.h"

static void format(struct ut_err *err, const char *fmt, va_list ap)
{
	char tmp[UT_ERR_LEN];

	/* Through a copy: the arguments may include err->msg itself
	 * ("%s stream: %s", ..., err->msg). */
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	snprintf(err->msg, sizeof(err->msg), "%s", tmp);
}

int ut_err_set(struct ut_err *err, int ret, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return ret;
	va_start(ap, fmt);
	format(err, fmt, ap);
	va_end(ap);
	return ret;
}

/*
 * Threads of one engine fail into one reason, at once at times (ferry-dest's
 * main thread cancelling while a receiver's stream breaks: tools/sanitize
 * thread saw both write): the first byte, claimed atomically, decides whose
 * reason stays; only the claimant writes the rest, which is read once
 * those threads are joined.
 */
int ut_err_first(struct ut_err *err, int ret, const char *fmt, ...)
{
	char tmp[UT_ERR_LEN], none = 0;
	va_list ap;

	if (!err || __atomic_load_n(&err->msg[0], __ATOMIC_ACQUIRE))
		return ret;
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (__atomic_compare_exchange_n(&err->msg[0], &none, tmp[0], false,
					__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) &&
	    tmp[0])
		memcpy(err->msg + 1, tmp + 1, strlen(tmp));
	return ret;
}

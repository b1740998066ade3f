// SPDX-License-Identifier: LGPL-2.1-or-later
#include "config.h"

#include <stdarg.h>
#include <stdio.h>

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

int ut_err_first(struct ut_err *err, int ret, const char *fmt, ...)
{
	va_list ap;

	if (!err || err->msg[0])
		return ret;
	va_start(ap, fmt);
	format(err, fmt, ap);
	va_end(ap);
	return ret;
}

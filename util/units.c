// SPDX-License-Identifier: LGPL-2.1-or-later
/* Durations and sizes as a person types them on a command line. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* A non-negative decimal (digits, at most one point) at @s; the rest in
 * *@end. strtod would also take "inf", hex and exponents. */
static int parse_decimal(const char *s, double *v, const char **end)
{
	const char *p = s;
	bool digits = false, point = false;

	for (; *p; p++) {
		if (*p >= '0' && *p <= '9')
			digits = true;
		else if (*p == '.' && !point)
			point = true;
		else
			break;
	}
	if (!digits)
		return -EINVAL;
	*v = strtod(s, NULL);
	*end = p;
	return 0;
}

int ut_parse_duration_ms(const char *s, uint64_t bare_ms, uint64_t *out)
{
	static const struct { const char *unit; double ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "min", 60000 },
		{ "h", 3600000 },
	};
	const char *end;
	double v, ms = -1;

	if (!s || parse_decimal(s, &v, &end))
		return -EINVAL;
	if (!*end)
		ms = (double)bare_ms;
	for (unsigned int i = 0; ms < 0 && i < UT_ARRAY_SIZE(units); i++)
		if (!strcmp(end, units[i].unit))
			ms = units[i].ms;
	if (ms < 0)
		return -EINVAL;
	v = v * ms + 0.5;
	if (v > 1e15)
		return -ERANGE;
	*out = (uint64_t)v;
	return 0;
}

int ut_parse_size(const char *s, uint64_t bare_unit, uint64_t *out)
{
	static const char units[] = "kmgt";
	const char *end, *u;
	double v, mult = (double)bare_unit;

	if (!s || parse_decimal(s, &v, &end))
		return -EINVAL;
	if (*end) {
		u = strchr(units, *end | 0x20);
		if (!u || !*u)
			return -EINVAL;
		mult = (double)(1ULL << (10 * (int)(u - units + 1)));
		end++;
		if (!strcmp(end, "iB") || !strcmp(end, "B"))
			end += strlen(end);
		if (*end)
			return -EINVAL;
	}
	v = v * mult + 0.5;
	if (v >= 18446744073709551616.0)
		return -ERANGE;
	*out = (uint64_t)v;
	return 0;
}

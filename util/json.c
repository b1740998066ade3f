// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Flat JSON objects: a builder that cannot overrun its buffer and a
 * parser for the one-line requests of the control socket. Deliberately
 * small: no nesting, no allocation.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

static void put(struct ut_json *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void put(struct ut_json *j, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (j->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(j->buf + j->len, j->cap - j->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= j->cap - j->len)
		j->overflow = true;
	else
		j->len += n;
}

static void put_string(struct ut_json *j, const char *s)
{
	put(j, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			put(j, "\\%c", *p);
		else if (*p == '\n')
			put(j, "\\n");
		else if (*p == '\t')
			put(j, "\\t");
		else if (*p < 0x20 || *p == 0x7f)
			put(j, "\\u%04x", *p);
		else
			put(j, "%c", *p);
	}
	put(j, "\"");
}

static void key(struct ut_json *j, const char *k)
{
	if (!j->first)
		put(j, ", ");
	j->first = false;
	put_string(j, k);
	put(j, ": ");
}

void ut_json_begin(struct ut_json *j, char *buf, size_t cap)
{
	*j = (struct ut_json){ .buf = buf, .cap = cap, .first = true };
	if (cap)
		buf[0] = 0;
	put(j, "{");
}

void ut_json_str(struct ut_json *j, const char *k, const char *v)
{
	key(j, k);
	if (v)
		put_string(j, v);
	else
		put(j, "null");
}

void ut_json_u64(struct ut_json *j, const char *k, uint64_t v)
{
	key(j, k);
	put(j, "%" PRIu64, v);
}

void ut_json_i64(struct ut_json *j, const char *k, int64_t v)
{
	key(j, k);
	put(j, "%" PRId64, v);
}

void ut_json_dbl(struct ut_json *j, const char *k, double v, int prec)
{
	key(j, k);
	if (isfinite(v))
		put(j, "%.*f", prec, v);
	else
		put(j, "null");
}

void ut_json_bool(struct ut_json *j, const char *k, bool v)
{
	key(j, k);
	put(j, "%s", v ? "true" : "false");
}

void ut_json_null(struct ut_json *j, const char *k)
{
	key(j, k);
	put(j, "null");
}

ssize_t ut_json_end(struct ut_json *j)
{
	put(j, "}\n");
	return j->overflow ? -ENOSPC : (ssize_t)j->len;
}

/* ---- the parser ---- */

struct in {
	const char *p, *end;
};

static void blanks(struct in *in)
{
	while (in->p < in->end && (*in->p == ' ' || *in->p == '\t' ||
				   *in->p == '\r' || *in->p == '\n'))
		in->p++;
}

static bool eat(struct in *in, char c)
{
	blanks(in);
	if (in->p < in->end && *in->p == c) {
		in->p++;
		return true;
	}
	return false;
}

static int hex4(const char *p)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			v |= (c | 0x20) - 'a' + 10;
		else
			return -1;
	}
	return v;
}

/* A string into @out of @cap bytes; in->p at the opening quote. */
static int string(struct in *in, char *out, size_t cap)
{
	size_t n = 0;

	if (!eat(in, '"'))
		return -EINVAL;
	while (in->p < in->end && *in->p != '"') {
		int c = (unsigned char)*in->p++;

		if (c < 0x20)
			return -EINVAL;
		if (c == '\\') {
			if (in->p >= in->end)
				return -EINVAL;
			c = *in->p++;
			switch (c) {
			case '"': case '\\': case '/': break;
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'u':
				if (in->end - in->p < 4)
					return -EINVAL;
				c = hex4(in->p);
				in->p += 4;
				if (c <= 0 || c > 0x7f)
					return -EINVAL; /* ASCII only */
				break;
			default:
				return -EINVAL;
			}
		}
		if (n + 1 >= cap)
			return -EINVAL;
		out[n++] = (char)c;
	}
	if (in->p >= in->end)
		return -EINVAL;
	in->p++;
	out[n] = 0;
	return 0;
}

static bool word(struct in *in, const char *w)
{
	size_t n = strlen(w);

	if ((size_t)(in->end - in->p) < n || memcmp(in->p, w, n))
		return false;
	in->p += n;
	return true;
}

static int number(struct in *in, struct ut_json_member *m)
{
	const char *s = in->p;
	size_t n;
	char *e;

	while (in->p < in->end && strchr("+-0123456789.eE", *in->p))
		in->p++;
	n = in->p - s;
	if (!n || n >= sizeof(m->str))
		return -EINVAL;
	memcpy(m->str, s, n);
	m->str[n] = 0;
	m->num = strtod(m->str, &e);
	if (*e || !isfinite(m->num))
		return -EINVAL;
	m->type = UT_JSON_NUMBER;
	return 0;
}

static int value(struct in *in, struct ut_json_member *m)
{
	blanks(in);
	if (in->p >= in->end)
		return -EINVAL;
	m->str[0] = 0;
	if (*in->p == '"') {
		m->type = UT_JSON_STRING;
		return string(in, m->str, sizeof(m->str));
	}
	if (word(in, "true") || word(in, "false")) {
		m->type = UT_JSON_BOOL;
		m->b = in->p[-1] == 'e' && in->p[-2] == 'u';
		return 0;
	}
	if (word(in, "null")) {
		m->type = UT_JSON_NULL;
		return 0;
	}
	return number(in, m);
}

int ut_json_parse(const char *s, size_t len, struct ut_json_member *m,
		  int max)
{
	struct in in = { s, s + len };
	int n = 0, ret;

	if (!eat(&in, '{'))
		return -EINVAL;
	if (!eat(&in, '}')) {
		do {
			struct ut_json_member tmp;

			blanks(&in);
			ret = string(&in, tmp.key, sizeof(tmp.key));
			if (!ret && !eat(&in, ':'))
				ret = -EINVAL;
			if (!ret)
				ret = value(&in, &tmp);
			if (ret)
				return ret;
			if (n >= max)
				return -E2BIG;
			m[n++] = tmp;
		} while (eat(&in, ','));
		if (!eat(&in, '}'))
			return -EINVAL;
	}
	blanks(&in);
	return in.p == in.end ? n : -EINVAL;
}

const struct ut_json_member *ut_json_get(const struct ut_json_member *m,
					 int n, const char *key)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(m[i].key, key))
			return &m[i];
	return NULL;
}

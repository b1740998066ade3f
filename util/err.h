// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The one error-reason type of every module: a failing call returns
 * -errno and, where the caller passed a struct ut_err, one line saying
 * why ("cannot listen on 127.0.0.1:4000: Address already in use"). The
 * transport's calls, the engines' and the tools' all take one; a stream
 * keeps its own (tp_stream_err()). Decoders that keep a two-argument
 * signature (the wire's, the VM link's) record their refusal per thread
 * instead, and the engine that called them copies it into a ut_err.
 */
#ifndef FERRY_UTIL_ERR_H
#define FERRY_UTIL_ERR_H

#define UT_ERR_LEN 256

struct ut_err {
	char msg[UT_ERR_LEN];	/* "" until a reason is set */
};

/* Formats the reason into @err (NULL: dropped), replacing any before it,
 * and returns @ret, so that a failing path reads
 * "return ut_err_set(err, -EINVAL, ...)". */
int ut_err_set(struct ut_err *err, int ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The same, but a reason already set stays: where several threads or
 * layers report one failure, the first reason is the one that counts.
 * Threads may race to set it (one wins whole); read the reason once they
 * are joined. */
int ut_err_first(struct ut_err *err, int ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* True when @err holds a reason. */
static inline int ut_err_isset(const struct ut_err *err)
{
	return err && err->msg[0];
}
/* Forgets the reason. */
static inline void ut_err_clear(struct ut_err *err)
{
	if (err)
		err->msg[0] = 0;
}

#endif

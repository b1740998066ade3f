# util: logging, bitmaps, clock, histogram (the leaf every module links).
noinst_LIBRARIES += util/libutil.a
util_libutil_a_SOURCES = \
	util/util.h \
	util/log.c \
	util/bitmap.c \
	util/clock.c \
	util/hist.c \
	util/oom.c \
	util/units.c \
	util/json.c

check_PROGRAMS += tests/check-util
TESTS += tests/check-util
tests_check_util_SOURCES = tests/check-util.c
tests_check_util_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_util_LDADD = util/libutil.a $(CHECK_LIBS)

# util: logging, bitmaps, clock, histogram (the leaf every module links).
noinst_LIBRARIES += util/libutil.a
util_libutil_a_SOURCES = \
	util/le.h \
	util/err.h \
	util/err.c \
	util/util.h \
	util/log.c \
	util/bitmap.c \
	util/clock.c \
	util/hist.c \
	util/oom.c \
	util/units.c \
	util/json.c


# transport: TLS 1.3 streams over io_uring (see Makefile.am).
noinst_LIBRARIES += transport/libtransport.a
transport_libtransport_a_SOURCES = \
	transport/transport.h \
	transport/internal.h \
	transport/ring.c \
	transport/wire-tls.c \
	transport/wire-plain.c \
	transport/stream.c \
	transport/session.c \
	transport/cert.c
transport_libtransport_a_CFLAGS = $(AM_CFLAGS) $(URING_CFLAGS) $(SSL_CFLAGS)
TRANSPORT_LIBS = transport/libtransport.a util/libutil.a $(URING_LIBS) $(SSL_LIBS)


# The benchmark: figures, not a test.
noinst_PROGRAMS += tools/bench-transport
tools_bench_transport_SOURCES = tools/bench-transport.c
tools_bench_transport_CFLAGS = $(AM_CFLAGS) $(SSL_CFLAGS)
tools_bench_transport_LDADD = $(TRANSPORT_LIBS)

check_PROGRAMS += tests/check-transport
TESTS += tests/check-transport
tests_check_transport_SOURCES = tests/check-transport.c
tests_check_transport_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(SSL_CFLAGS) $(URING_CFLAGS) $(XXHASH_CFLAGS)
tests_check_transport_LDADD = $(TRANSPORT_LIBS) $(CHECK_LIBS) $(XXHASH_LIBS)

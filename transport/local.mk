# transport: TLS 1.3 streams over io_uring (see Makefile.am).
noinst_LIBRARIES += transport/libtransport.a
transport_libtransport_a_SOURCES = \
	transport/transport.h \
	transport/internal.h \
	transport/ring.c \
	transport/record.c \
	transport/wire-tls.c \
	transport/wire-plain.c \
	transport/stream.c \
	transport/session.c \
	transport/cert.c
transport_libtransport_a_CFLAGS = $(AM_CFLAGS) $(URING_CFLAGS) $(SSL_CFLAGS)
TRANSPORT_LIBS = transport/libtransport.a util/libutil.a $(URING_LIBS) $(SSL_LIBS)

# The cert helper: a CA and host certificates for the demo and the tests.
bin_PROGRAMS += tools/ferry-cert
tools_ferry_cert_SOURCES = tools/ferry-cert.c
tools_ferry_cert_CFLAGS = $(AM_CFLAGS) $(SSL_CFLAGS)
tools_ferry_cert_LDADD = $(TRANSPORT_LIBS)

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

# Seeds for the record-layer fuzzer, and the harness (tests/fuzz-records.c).
noinst_PROGRAMS += tests/fuzz-records-seeds
tests_fuzz_records_seeds_SOURCES = tests/fuzz-records.c
tests_fuzz_records_seeds_CFLAGS = $(AM_CFLAGS) $(URING_CFLAGS) $(SSL_CFLAGS)
tests_fuzz_records_seeds_LDADD = $(TRANSPORT_LIBS)

if ENABLE_FUZZ
noinst_PROGRAMS += tests/fuzz-records
tests_fuzz_records_SOURCES = tests/fuzz-records.c
tests_fuzz_records_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZING
tests_fuzz_records_CFLAGS = $(AM_CFLAGS) $(URING_CFLAGS) $(SSL_CFLAGS)
tests_fuzz_records_LDFLAGS = $(AM_LDFLAGS) $(FUZZ_LDFLAGS)
tests_fuzz_records_LDADD = $(TRANSPORT_LIBS)
endif

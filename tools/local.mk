# tools: the programs.

# The guestmem benchmark (figures, not a test).
noinst_PROGRAMS += tools/bench-guestmem
tools_bench_guestmem_SOURCES = tools/bench-guestmem.c
tools_bench_guestmem_LDADD = $(GUESTMEM_LIBS)

# The agents.
bin_PROGRAMS += tools/ferry-source tools/ferry-dest
tools_ferry_source_SOURCES = tools/ferry-source.c tools/cli.c tools/cli.h
tools_ferry_source_LDADD = $(MIGRATE_LIBS)
tools_ferry_dest_SOURCES = tools/ferry-dest.c tools/cli.c tools/cli.h
tools_ferry_dest_LDADD = $(MIGRATE_LIBS)
dist_man1_MANS += tools/ferry-source.1 tools/ferry-dest.1

# The benchmark suite against QEMU (a script, run from the source tree).
EXTRA_DIST += tools/bench tools/bench.d/procs.py tools/bench.d/ferry.py \
	tools/bench.d/qemu.py tools/bench.d/report.py

# Making certificates (tools/cert.h): ferry-cert, the benchmark and the
# tests link it; the transport itself only checks certificates.
noinst_LIBRARIES += tools/libcert.a
tools_libcert_a_SOURCES = tools/cert.h tools/cert.c
tools_libcert_a_CFLAGS = $(AM_CFLAGS) $(SSL_CFLAGS)
CERT_LIBS = tools/libcert.a

# The cert helper: a CA and host certificates for the demo and the tests.
bin_PROGRAMS += tools/ferry-cert
tools_ferry_cert_SOURCES = tools/ferry-cert.c
tools_ferry_cert_CFLAGS = $(AM_CFLAGS) $(SSL_CFLAGS)
tools_ferry_cert_LDADD = $(CERT_LIBS) $(TRANSPORT_LIBS)

# The benchmark: figures, not a test.
noinst_PROGRAMS += tools/bench-transport
tools_bench_transport_SOURCES = tools/bench-transport.c
tools_bench_transport_CFLAGS = $(AM_CFLAGS) $(SSL_CFLAGS)
tools_bench_transport_LDADD = $(CERT_LIBS) $(TRANSPORT_LIBS)

# The nested NUMA host (a 6.12 kernel under QEMU TCG with a CPU-less
# node), booted by tests/migrate.sh's nested_* cases.
EXTRA_DIST += tools/nested/fetch tools/nested/host tools/nested/init \
	tools/nested/runner

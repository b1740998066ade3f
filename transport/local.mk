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
	transport/setup.c \
	transport/session.c
transport_libtransport_a_CFLAGS = $(AM_CFLAGS) $(URING_CFLAGS) $(SSL_CFLAGS)
TRANSPORT_LIBS = transport/libtransport.a util/libutil.a $(URING_LIBS) $(SSL_LIBS)

# guestmem: regions, userfaultfd, dirty tracking, page scanning, NUMA.
noinst_LIBRARIES += guestmem/libguestmem.a
guestmem_libguestmem_a_SOURCES = \
	guestmem/guestmem.h \
	guestmem/internal.h \
	guestmem/region.c \
	guestmem/region-memfd.c \
	guestmem/region-anon.c \
	guestmem/uffd.c \
	guestmem/dirty.c \
	guestmem/dirty-uffdwp.c \
	guestmem/scan.c \
	guestmem/numa.c \
	guestmem/thp.c \
	guestmem/access.c
guestmem_libguestmem_a_CFLAGS = $(AM_CFLAGS) $(XXHASH_CFLAGS)
GUESTMEM_LIBS = guestmem/libguestmem.a util/libutil.a $(XXHASH_LIBS) $(NUMA_LIBS)


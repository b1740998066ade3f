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
	guestmem/numa.c
guestmem_libguestmem_a_CFLAGS = $(AM_CFLAGS) $(XXHASH_CFLAGS)
GUESTMEM_LIBS = guestmem/libguestmem.a util/libutil.a $(XXHASH_LIBS) $(NUMA_LIBS)

check_PROGRAMS += tests/check-guestmem tests/check-guestmem-hugetlb
TESTS += tests/check-guestmem tests/check-guestmem-hugetlb
tests_check_guestmem_SOURCES = tests/check-guestmem.c tests/testutil.h
tests_check_guestmem_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(XXHASH_CFLAGS)
tests_check_guestmem_LDADD = $(GUESTMEM_LIBS) $(CHECK_LIBS)
tests_check_guestmem_hugetlb_SOURCES = tests/check-guestmem.c tests/testutil.h
tests_check_guestmem_hugetlb_CPPFLAGS = $(AM_CPPFLAGS) -DGM_TEST_HUGETLB
# The matrix-free cases run in check-guestmem only.
tests_check_guestmem_hugetlb_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(XXHASH_CFLAGS) \
	-Wno-unused-variable -Wno-unused-function
tests_check_guestmem_hugetlb_LDADD = $(GUESTMEM_LIBS) $(CHECK_LIBS)

check_PROGRAMS += tests/check-guestmem-kvm
TESTS += tests/check-guestmem-kvm
tests_check_guestmem_kvm_SOURCES = tests/check-guestmem-kvm.c tests/testutil.h
tests_check_guestmem_kvm_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_guestmem_kvm_LDADD = $(GUESTMEM_LIBS) $(CHECK_LIBS)

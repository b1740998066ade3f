# tools: the programs.

# The guestmem benchmark (figures, not a test).
noinst_PROGRAMS += tools/bench-guestmem
tools_bench_guestmem_SOURCES = tools/bench-guestmem.c
tools_bench_guestmem_LDADD = $(GUESTMEM_LIBS)

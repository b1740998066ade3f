# tools: the programs.

# The guestmem benchmark (figures, not a test).
noinst_PROGRAMS += tools/bench-guestmem
tools_bench_guestmem_SOURCES = tools/bench-guestmem.c
tools_bench_guestmem_LDADD = $(GUESTMEM_LIBS)

# The README's main command runs this (until live migration lands).
noinst_PROGRAMS += tools/ferry-demo
tools_ferry_demo_SOURCES = tools/ferry-demo.c
tools_ferry_demo_LDADD = $(GUESTMEM_LIBS)

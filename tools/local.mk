# tools: the programs.

# The guestmem benchmark (figures, not a test).
noinst_PROGRAMS += tools/bench-guestmem
tools_bench_guestmem_SOURCES = tools/bench-guestmem.c
tools_bench_guestmem_LDADD = $(GUESTMEM_LIBS)

# ferry: one binary, its subcommands dispatched from the table in
# tools/ferry.c. The agents' subcommands and `cert` (the certificates of
# the demo and the tests) are here; tools/vm.mk and
# tools/ferry-qemu/local.mk add `vm` and `qemu`.
bin_PROGRAMS += tools/ferry
tools_ferry_SOURCES = tools/ferry.c tools/ferry.h \
	tools/ferry-source.c tools/ferry-dest.c tools/ferry-ctl.c \
	tools/ferry-cert.c \
	tools/cli.c tools/cli.h tools/control.c
tools_ferry_CPPFLAGS = $(AM_CPPFLAGS) $(FERRY_CPPFLAGS)
tools_ferry_CFLAGS = $(AM_CFLAGS) $(SSL_CFLAGS)
tools_ferry_LDADD = $(MIGRATE_LIBS) $(PTHREAD_LIBS)

# The old program names are links to it (in the build tree too, where
# the tests and tools/demo run them).
FERRY_LINKS = ferry-source ferry-dest ferry-ctl ferry-cert ferry-vm ferry-qemu
FERRY_BUILD_LINKS = tools/ferry-source tools/ferry-dest tools/ferry-ctl \
	tools/ferry-cert tools/ferry-vm/ferry-vm tools/ferry-qemu/ferry-qemu
all-local: ferry-links
ferry-links: tools/ferry$(EXEEXT)
	$(AM_V_GEN)for l in $(FERRY_BUILD_LINKS); do \
		$(MKDIR_P) `dirname $$l` && \
		ln -sf $(abs_top_builddir)/tools/ferry$(EXEEXT) $$l || exit 1; \
	done
.PHONY: ferry-links
install-exec-hook:
	for l in $(FERRY_LINKS); do \
		ln -sf ferry$(EXEEXT) $(DESTDIR)$(bindir)/$$l || exit 1; \
	done
uninstall-hook:
	for l in $(FERRY_LINKS); do rm -f $(DESTDIR)$(bindir)/$$l; done
CLEANFILES += $(FERRY_BUILD_LINKS)
# The manual pages, one per subcommand, in docs/man/; the test checks each
# against its subcommand's --help (options and exit statuses).
dist_man1_MANS += docs/man/ferry.1 docs/man/ferry-source.1 \
	docs/man/ferry-dest.1 docs/man/ferry-ctl.1 docs/man/ferry-cert.1
TESTS += tests/manpages.sh
EXTRA_DIST += tests/manpages.sh

# The benchmark suite against QEMU (a script, run from the source tree).
EXTRA_DIST += tools/bench tools/bench.d/procs.py tools/bench.d/ferry.py \
	tools/bench.d/qemu.py tools/bench.d/report.py

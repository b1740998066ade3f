# ferry-libvirt: migrating libvirt domains with Ferry (docs/libvirt.md):
# ferry-migrate, the operator's command on the source host, and the qemu
# hook that serves the destination; its test is in tests/local.mk.

bin_PROGRAMS += tools/ferry-libvirt/ferry-migrate
tools_ferry_libvirt_ferry_migrate_SOURCES = tools/ferry-libvirt/ferry-migrate.c
tools_ferry_libvirt_ferry_migrate_CPPFLAGS = $(AM_CPPFLAGS) \
	-DFERRY_BINDIR=\"$(bindir)\" $(LIBVIRT_CFLAGS) $(LIBVIRT_QEMU_CFLAGS)
tools_ferry_libvirt_ferry_migrate_LDADD = $(FQ_LIBS) $(LIBVIRT_QEMU_LIBS) \
	$(LIBVIRT_LIBS)

# The hook, with this build's bindir; `make install` puts it where libvirt
# looks (configure --sysconfdir=/etc for /etc/libvirt/hooks/qemu.d).
libvirthookdir = $(sysconfdir)/libvirt/hooks/qemu.d
libvirthook_SCRIPTS = tools/ferry-libvirt/ferry
tools/ferry-libvirt/ferry: $(srcdir)/tools/ferry-libvirt/ferry-hook.in Makefile
	$(AM_V_GEN)mkdir -p tools/ferry-libvirt && \
	sed 's|@bindir[@]|$(bindir)|g' $(srcdir)/tools/ferry-libvirt/ferry-hook.in >$@ && \
	chmod +x $@
CLEANFILES += tools/ferry-libvirt/ferry
EXTRA_DIST += tools/ferry-libvirt/ferry-hook.in docs/libvirt.md \
	docs/libvirt-domain.xml

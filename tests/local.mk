# tests: shared test helpers; each module's local.mk lists its own Check program.

# Scripts speak TAP (tests/migrate.sh): each case is its own test result,
# counted as such by make check and tools/test-summary.
TEST_EXTENSIONS = .sh
SH_LOG_DRIVER = env AM_TAP_AWK='$(AWK)' $(SHELL) \
	$(top_srcdir)/build-aux/tap-driver.sh

# tests: shared test helpers; each module's local.mk lists its own Check program.

/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers for the ferry-vm Check programs: run ferry-vm, read its console. */
#ifndef FERRY_TESTS_CHECK_VM_HELPERS_H
#define FERRY_TESTS_CHECK_VM_HELPERS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* A ferry-vm (or other) child process with its output in files. */
struct vmp {
	pid_t pid;		/* -1 once reaped */
	int status;		/* exit status once reaped, 128+sig if killed */
	char out[512];		/* stdout file */
	char err[512];		/* stderr file */
};

/* Paths of the built ferry-vm and guest payload. */
const char *vmt_ferry_vm(void);
const char *vmt_payload(void);

/* A fresh temporary directory (caller frees with vmt_rmdir). */
char *vmt_tmpdir(void);
void vmt_rmdir(char *dir);

/* Starts @argv (argv[0] NULL means ferry-vm) with output in @dir/@tag.out
 * and .err. The child dies with the test (PR_SET_PDEATHSIG). 0 or -errno. */
int vmt_spawn(struct vmp *p, const char *dir, const char *tag,
	      const char *const *argv);
/* Waits up to @ms for exit; returns the status or -ETIMEDOUT. */
int vmt_wait(struct vmp *p, int ms);
/* SIGKILLs and reaps if still running. */
void vmt_kill(struct vmp *p);
/* Waits until stdout has @n heartbeat lines; returns how many it has
 * (fewer if the process exited or @ms passed). */
unsigned int vmt_wait_hb(struct vmp *p, unsigned int n, int ms);

/* Waits until a heartbeat reports a full verification pass (iter >= 1),
 * i.e. the guest has filled its working set. False on timeout or exit. */
bool vmt_wait_filled(struct vmp *p, int ms);
/* A file's content, NUL-terminated, malloc'ed ("" if missing). */
char *vmt_slurp(const char *path);
/* Lines of @s starting with @prefix. */
unsigned int vmt_count(const char *s, const char *prefix);
/* The value of key=... on the last line starting with @prefix, or -1. */
long long vmt_last_value(const char *s, const char *prefix, const char *key);
/* True if every HB line says errors=0. */
bool vmt_hb_clean(const char *s);
/* Lines in a string (non-empty ones). */
unsigned int vmt_lines(const char *s);

#endif

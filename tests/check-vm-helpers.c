// SPDX-License-Identifier: LGPL-2.1-or-later
/* Helpers for the ferry-vm Check programs. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/check-vm-helpers.h"

const char *vmt_ferry_vm(void)
{
	return VM_BUILDDIR "/tools/ferry-vm/ferry-vm";
}

const char *vmt_payload(void)
{
	return VM_BUILDDIR "/tools/guest/ferry-guest";
}

char *vmt_tmpdir(void)
{
	char *d = strdup("/tmp/ferry-vm-test.XXXXXX");

	if (d && !mkdtemp(d)) {
		free(d);
		return NULL;
	}
	return d;
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	return remove(path);
}

void vmt_rmdir(char *dir)
{
	if (!dir)
		return;
	nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	free(dir);
}

int vmt_spawn(struct vmp *p, const char *dir, const char *tag,
	      const char *const *argv)
{
	pid_t parent = getpid();
	int fd;

	snprintf(p->out, sizeof(p->out), "%s/%s.out", dir, tag);
	snprintf(p->err, sizeof(p->err), "%s/%s.err", dir, tag);
	p->status = -1;
	p->pid = fork();
	if (p->pid < 0)
		return -errno;
	if (p->pid > 0)
		return 0;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(127);
	fd = open(p->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	dup2(fd, STDOUT_FILENO);
	fd = open(p->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	dup2(fd, STDERR_FILENO);
	fd = open("/dev/null", O_RDONLY);
	dup2(fd, STDIN_FILENO);
	if (!argv[0]) {
		size_t n = 0;
		const char **v;

		while (argv[++n])
			;
		v = calloc(n + 1, sizeof(*v));
		memcpy(v, argv, n * sizeof(*v));
		v[0] = vmt_ferry_vm();
		argv = v;
	}
	execv(argv[0], (char *const *)argv);
	_exit(127);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static bool reap(struct vmp *p)
{
	int st;

	if (p->pid < 0)
		return true;
	if (waitpid(p->pid, &st, WNOHANG) != p->pid)
		return false;
	p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	p->pid = -1;
	return true;
}

int vmt_wait(struct vmp *p, int ms)
{
	for (int t = 0; t <= ms; t += 10) {
		if (reap(p))
			return p->status;
		sleep_ms(10);
	}
	return -ETIMEDOUT;
}

void vmt_kill(struct vmp *p)
{
	if (p->pid <= 0)
		return;
	kill(p->pid, SIGKILL);
	waitpid(p->pid, NULL, 0);
	p->pid = -1;
}

unsigned int vmt_wait_hb(struct vmp *p, unsigned int n, int ms)
{
	unsigned int got = 0;

	for (int t = 0; t <= ms; t += 20) {
		char *s = vmt_slurp(p->out);
		bool gone;

		got = vmt_count(s, "HB ");
		free(s);
		if (got >= n)
			break;
		gone = reap(p);
		if (gone) {
			s = vmt_slurp(p->out);
			got = vmt_count(s, "HB ");
			free(s);
			break;
		}
		sleep_ms(20);
	}
	return got;
}

bool vmt_wait_filled(struct vmp *p, int ms)
{
	for (unsigned int n = 1; ms > 0; n++, ms -= 100) {
		char *s;
		long long iter;

		if (vmt_wait_hb(p, n, ms) < n)
			return false;
		s = vmt_slurp(p->out);
		iter = vmt_last_value(s, "HB ", "iter");
		free(s);
		if (iter >= 1)
			return true;
	}
	return false;
}

char *vmt_slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (f) {
		do {
			if (cap - len < 4096) {
				cap = cap ? cap * 2 : 8192;
				buf = realloc(buf, cap);
			}
			n = fread(buf + len, 1, cap - len - 1, f);
			len += n;
		} while (n > 0);
		fclose(f);
	}
	if (!buf)
		buf = calloc(1, 1);
	else
		buf[len] = 0;
	return buf;
}

unsigned int vmt_count(const char *s, const char *prefix)
{
	size_t pl = strlen(prefix);
	unsigned int n = 0;

	for (const char *l = s; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : l)
		if (!strncmp(l, prefix, pl))
			n++;
	return n;
}

long long vmt_last_value(const char *s, const char *prefix, const char *key)
{
	size_t pl = strlen(prefix), kl = strlen(key);
	long long v = -1;

	for (const char *l = s; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : l) {
		const char *end = strchr(l, '\n'), *k;

		if (strncmp(l, prefix, pl))
			continue;
		for (k = l; k && (!end || k < end); k = strchr(k + 1, ' ')) {
			const char *w = *k == ' ' ? k + 1 : k;

			if (!strncmp(w, key, kl) && w[kl] == '=')
				v = strtoll(w + kl + 1, NULL, 0);
		}
	}
	return v;
}

bool vmt_hb_clean(const char *s)
{
	for (const char *l = s; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : l) {
		const char *e;

		if (strncmp(l, "HB ", 3))
			continue;
		e = strstr(l, " errors=");
		if (!e || strncmp(e, " errors=0 ", 10))
			return false;
	}
	return true;
}

unsigned int vmt_lines(const char *s)
{
	unsigned int n = 0;

	for (const char *l = s; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : l)
		if (*l != '\n')
			n++;
	return n;
}

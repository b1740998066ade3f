// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ferry-migrate: migrates a libvirt domain with Ferry carrying its RAM and
 * libvirt its definition and device state (docs/libvirt.md).
 *
 * libvirt has no hook on the source when a migration starts, so this
 * command is the source's half: it checks the domain, sets x-ignore-shared
 * through libvirt's monitor, serves the domain's QEMU a VM link in-process
 * (tools/ferry-qemu, libvirt mode), runs libvirt's own migration
 * (virDomainMigrate3) with QEMU's stream pointed at that link, and once the
 * destination has the domain (its hook started ferry-dest) runs
 * ferry-source against it. The order that keeps the guest correct is the
 * link's: QEMU's stream travels as Ferry's state blob, so the destination
 * QEMU loads it, and can run, only after the source's last pages.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>

#define LOG_PREFIX "ferry-migrate"
#include "tools/ferry-qemu/fq.h"
#include "util/util.h"

#ifndef FERRY_BINDIR
#define FERRY_BINDIR "/usr/local/bin"
#endif

#define CONNECT_WAIT_MS 60000	/* libvirt's Prepare, the hook included */
#define FERRY_NS "https://ferry.invalid/libvirt/1"

extern char **environ;

static const char usage[] =
	"Usage: ferry-migrate [OPTIONS] DOMAIN DEST-URI --ferry HOST:PORT\n"
	"Migrates the running libvirt DOMAIN to the libvirt at DEST-URI:\n"
	"Ferry moves its RAM (ferry-source here, to the ferry-dest that the\n"
	"destination's ferry hook starts on PORT), libvirt its definition and\n"
	"device state. It ends running there and gone here; after any failure\n"
	"before the switchover it runs here. The domain needs the XML of\n"
	"docs/libvirt.md (shared memfd RAM, the preload, a private QMP).\n"
	"\n"
	"  -c, --connect URI        the source libvirt (default: libvirt's)\n"
	"      --ferry HOST:PORT    where ferry-dest listens at the destination\n"
	"      --stream-port PORT   port of libvirt's stream on both hosts (48199)\n"
	"      --stream-addr ADDR   where this host's link takes it (127.0.0.1)\n"
	"      --dest-stream-addr ADDR  where the destination QEMU listens for\n"
	"                           it on its host (127.0.0.1)\n"
	"      --persistent         define the domain at the destination\n"
	"      --undefinesource     undefine it here afterwards\n"
	"      --ferry-source PATH  the agent (default " FERRY_BINDIR "/ferry-source)\n"
	"\n"
	"Passed to ferry-source (see ferry-source --help): -m/--mode,\n"
	"-n/--streams, -D/--downtime, -b/--bandwidth, --ca, --cert, --key,\n"
	"--crl, --peer-name, --psk-file, --insecure, --timeout, --json, -q, -v.\n"
	"\n"
	"Exit status: 0 migrated, 1 failed (the domain runs here if the\n"
	"switchover was not reached), 2 usage.\n";

enum {
	OPT_FERRY = 256, OPT_SPORT, OPT_SADDR, OPT_DADDR, OPT_PERSIST,
	OPT_UNDEF, OPT_AGENT, OPT_FWD,	/* OPT_FWD + i: forwarded option i */
};

/* ferry-source's options, passed through as given. */
static const char *const fwd_names[] = {
	"mode", "streams", "downtime", "bandwidth", "ca", "cert", "key", "crl",
	"peer-name", "psk-file", "timeout", "json", "insecure", "quiet",
	"verbose",
};
#define NFWD_ARG 12	/* the first 12 take a value */
#define NFWD (sizeof(fwd_names) / sizeof(fwd_names[0]))

struct args {
	const char *src_uri, *dom, *dst_uri, *ferry;
	const char *sport, *saddr, *daddr, *agent;
	unsigned int flags;		/* VIR_MIGRATE_* */
	const char *fwd[2 * NFWD + 1];	/* ferry-source's argv tail */
	int nfwd;
	bool quiet;
};

struct run {
	struct args *a;
	virConnectPtr src;
	virDomainPtr dom;
	char *xml;			/* the domain, migratable */
	char qmp[256], uffd[256], link[256];
	int listen_fd;
	struct fq_link_params lp;
	size_t stream_bytes;
	unsigned long long lv_downtime, lv_elapsed;	/* ms, libvirt's job */
	pthread_t link_thr, mig_thr;
	bool link_started, mig_started;
	int link_ret;
	int mig_done;			/* eventfd: libvirt's migration ended */
	int mig_ret;			/* 0 migrated, else -1 and mig_err */
	char mig_err[512];
	char *dest_xml;
};

static int parse(struct args *a, int argc, char **argv)
{
	struct option opts[NFWD + 16] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "ferry", required_argument, NULL, OPT_FERRY },
		{ "stream-port", required_argument, NULL, OPT_SPORT },
		{ "stream-addr", required_argument, NULL, OPT_SADDR },
		{ "dest-stream-addr", required_argument, NULL, OPT_DADDR },
		{ "persistent", no_argument, NULL, OPT_PERSIST },
		{ "undefinesource", no_argument, NULL, OPT_UNDEF },
		{ "ferry-source", required_argument, NULL, OPT_AGENT },
		{ "help", no_argument, NULL, 'h' },
	};
	int n = 9, c;

	for (unsigned int i = 0; i < NFWD; i++)
		opts[n++] = (struct option){ fwd_names[i], i < NFWD_ARG ?
					     required_argument : no_argument,
					     NULL, OPT_FWD + (int)i };
	while ((c = getopt_long(argc, argv, "c:m:n:D:b:qvh", opts, NULL)) != -1) {
		const char *shorts = "mnDb";
		int fwd = -1;

		if (c >= OPT_FWD)
			fwd = c - OPT_FWD;
		else if (c > 0 && c < 128 && strchr(shorts, c))
			fwd = (int)(strchr(shorts, c) - shorts);
		else if (c == 'q')
			fwd = 13;
		else if (c == 'v')
			fwd = 14;
		if (fwd >= 0) {
			static char names[NFWD][24];

			snprintf(names[fwd], sizeof(names[fwd]), "--%s",
				 fwd_names[fwd]);
			a->fwd[a->nfwd++] = names[fwd];
			if (fwd < NFWD_ARG)
				a->fwd[a->nfwd++] = optarg;
			a->quiet |= fwd == 13;
			continue;
		}
		switch (c) {
		case 'c': a->src_uri = optarg; break;
		case OPT_FERRY: a->ferry = optarg; break;
		case OPT_SPORT: a->sport = optarg; break;
		case OPT_SADDR: a->saddr = optarg; break;
		case OPT_DADDR: a->daddr = optarg; break;
		case OPT_PERSIST: a->flags |= VIR_MIGRATE_PERSIST_DEST; break;
		case OPT_UNDEF: a->flags |= VIR_MIGRATE_UNDEFINE_SOURCE; break;
		case OPT_AGENT: a->agent = optarg; break;
		case 'h': fputs(usage, stdout); exit(0);
		default: return -EINVAL;
		}
	}
	if (argc - optind != 2 || !a->ferry) {
		fprintf(stderr, "ferry-migrate: give DOMAIN DEST-URI and --ferry "
			"HOST:PORT (see --help)\n");
		return -EINVAL;
	}
	a->dom = argv[optind];
	a->dst_uri = argv[optind + 1];
	return 0;
}

/* The value of the attribute @attr in the first element that begins with
 * @elem (libvirt formats its XML with single quotes). */
static bool xml_attr(const char *xml, const char *elem, const char *attr,
		     char *out, size_t cap)
{
	const char *e = strstr(xml, elem), *v, *end;
	char key[64];

	if (!e)
		return false;
	snprintf(key, sizeof(key), " %s='", attr);
	v = strstr(e, key);
	end = strchr(e, '>');
	if (!v || !end || v > end)
		return false;
	v += strlen(key);
	end = strchr(v, '\'');
	if (!end || (size_t)(end - v) >= cap)
		return false;
	memcpy(out, v, end - v);
	out[end - v] = 0;
	return true;
}

/*
 * The private QMP socket: the path of a `-qmp unix:PATH,...` argument in
 * the directory of the preload's socket @uffd (a domain may have other
 * monitors of its own). @out gets PATH.
 */
static bool find_qmp(const char *xml, const char *uffd, char *out, size_t cap)
{
	const char *dir_end = strrchr(uffd, '/');
	const char *q = xml;
	char v[256];

	while (dir_end && (q = strstr(q, "<qemu:arg value='-qmp'/>"))) {
		q++;
		if (!xml_attr(q, "<qemu:arg value='unix:", "value", v, sizeof(v)) ||
		    !strchr(v, ','))
			continue;
		*strchr(v, ',') = 0;
		if (strncmp(v + 5, uffd, dir_end + 1 - uffd) ||
		    strchr(v + 5 + (dir_end + 1 - uffd), '/') ||
		    strlen(v + 5) >= cap)
			continue;
		strcpy(out, v + 5);	/* after "unix:" */
		return true;
	}
	return false;
}

/*
 * What Ferry needs of the domain, each missing part named with the XML
 * that gives it: shared memfd RAM, the preload and its socket, the
 * private QMP socket. Fills r->qmp, r->uffd, r->link.
 */
static int check_domain(struct run *r)
{
	const char *mb = strstr(r->xml, "<memoryBacking>");
	const char *mbe = mb ? strstr(mb, "</memoryBacking>") : NULL;
	char pre[256], *slash;
	bool memfd = false, shared = false;

	if (mb && mbe) {
		const char *s = strstr(mb, "<source type='memfd'/>");
		const char *h = strstr(mb, "<access mode='shared'/>");

		memfd = s && s < mbe;
		shared = h && h < mbe;
	}
	if (!memfd || !shared) {
		fprintf(stderr, "ferry-migrate: %s: guest RAM is not shared memfd: "
			"add <memoryBacking><source type='memfd'/><access "
			"mode='shared'/></memoryBacking>\n", r->a->dom);
		return -EINVAL;
	}
	if (!xml_attr(r->xml, "<qemu:env name='LD_PRELOAD'", "value", pre,
		      sizeof(pre)) || !strstr(pre, "libferry-preload") ||
	    !xml_attr(r->xml, "<qemu:env name='FERRY_UFFD_SOCKET'", "value",
		      r->uffd, sizeof(r->uffd))) {
		fprintf(stderr, "ferry-migrate: %s: QEMU lacks the preload: add "
			"<qemu:env name='LD_PRELOAD' value='.../libferry-preload.so'/> "
			"and <qemu:env name='FERRY_UFFD_SOCKET' value='DIR/uffd.sock'/>\n",
			r->a->dom);
		return -EINVAL;
	}
	if (!find_qmp(r->xml, r->uffd, r->qmp, sizeof(r->qmp))) {
		fprintf(stderr, "ferry-migrate: %s: no private QMP socket beside "
			"%s: add <qemu:arg value='-qmp'/><qemu:arg value='unix:"
			"DIR/qmp.sock,server=on,wait=off'/>\n", r->a->dom, r->uffd);
		return -EINVAL;
	}
	snprintf(r->link, sizeof(r->link), "%s", r->qmp);
	slash = strrchr(r->link, '/');
	if (!slash || strlen(r->link) + 8 > sizeof(r->link))
		return -ENAMETOOLONG;
	strcpy(slash + 1, "vm.sock");
	return 0;
}

static int set_ignore_shared(struct run *r, bool on)
{
	char js[256], *res = NULL;
	int ret;

	snprintf(js, sizeof(js), "{\"execute\":\"migrate-set-capabilities\","
		 "\"arguments\":{\"capabilities\":[{\"capability\":"
		 "\"x-ignore-shared\",\"state\":%s}]}}", on ? "true" : "false");
	ret = virDomainQemuMonitorCommand(r->dom, js, &res, 0);
	if (ret < 0)
		fprintf(stderr, "ferry-migrate: cannot set x-ignore-shared through "
			"libvirt's monitor: %s\n", virGetLastErrorMessage());
	free(res);
	return ret < 0 ? -EIO : 0;
}

/*
 * The definition libvirt sends, marked for the destination's hook: a
 * Ferry migration (ferry-dest on this port), which a plain one of the same
 * domain is not. The hook takes the mark out again.
 */
static int mark_xml(struct run *r)
{
	const char *port = strrchr(r->a->ferry, ':');
	const char *at = strstr(r->xml, "<metadata>");
	const char *empty = strstr(r->xml, "<metadata/>");
	const char *end = strstr(r->xml, "</domain>");
	size_t off, skip = 0;
	char mark[256];

	if (!port || !port[1] || !end)
		return -EINVAL;
	snprintf(mark, sizeof(mark), "%s<ferry:migration xmlns:ferry='"
		 FERRY_NS "' port='%s'/>%s", at ? "" : "<metadata>", port + 1,
		 at ? "" : "</metadata>");
	if (at)
		off = (size_t)(at - r->xml) + strlen("<metadata>");
	else if (empty)	/* one metadata element only: libvirt reads one */
		off = (size_t)(empty - r->xml), skip = strlen("<metadata/>");
	else
		off = (size_t)(end - r->xml);
	if (asprintf(&r->dest_xml, "%.*s%s%s", (int)off, r->xml, mark,
		     r->xml + off + skip) < 0)
		return -ENOMEM;
	return 0;
}

static void *link_main(void *arg)
{
	struct run *r = arg;

	r->link_ret = fq_link_serve(&r->lp);
	return NULL;
}

/* libvirt's own account of its job (the destination keeps it): how long
 * QEMU had the guest stopped, of how long its migration ran. */
static void job_stats(struct run *r, virDomainPtr dd)
{
	virTypedParameterPtr p = NULL;
	int np = 0, type;

	if (virDomainGetJobStats(dd, &type, &p, &np,
				 VIR_DOMAIN_JOB_STATS_COMPLETED) < 0) {
		virResetLastError();
		return;
	}
	virTypedParamsGetULLong(p, np, VIR_DOMAIN_JOB_DOWNTIME, &r->lv_downtime);
	virTypedParamsGetULLong(p, np, VIR_DOMAIN_JOB_TIME_ELAPSED,
				&r->lv_elapsed);
	virTypedParamsFree(p, np);
}

/* libvirt's migration, blocking for all of it. */
static void *mig_main(void *arg)
{
	struct run *r = arg;
	virTypedParameterPtr p = NULL;
	int np = 0, maxp = 0;
	char uri[128];
	uint64_t one = 1;
	virConnectPtr dst = virConnectOpen(r->a->dst_uri);
	virDomainPtr dd = NULL;

	snprintf(uri, sizeof(uri), "tcp://%s:%s", r->a->saddr, r->a->sport);
	if (dst &&
	    virTypedParamsAddString(&p, &np, &maxp, VIR_MIGRATE_PARAM_DEST_XML,
				    r->dest_xml) >= 0 &&
	    virTypedParamsAddString(&p, &np, &maxp, VIR_MIGRATE_PARAM_URI,
				    uri) >= 0 &&
	    virTypedParamsAddString(&p, &np, &maxp,
				    VIR_MIGRATE_PARAM_LISTEN_ADDRESS,
				    r->a->daddr) >= 0)
		dd = virDomainMigrate3(r->dom, dst, p, np,
				       VIR_MIGRATE_LIVE | r->a->flags);
	if (!dd)
		snprintf(r->mig_err, sizeof(r->mig_err), "%s",
			 virGetLastErrorMessage());
	r->mig_ret = dd ? 0 : -1;
	if (dd) {
		job_stats(r, dd);
		virDomainFree(dd);
	}
	virTypedParamsFree(p, np);
	if (dst)
		virConnectClose(dst);
	if (write(r->mig_done, &one, sizeof(one)) != sizeof(one))
		pr_warn("eventfd write failed");
	return NULL;
}

/* 1: the stream connected (ferry-dest listens there), 0: libvirt's
 * migration ended first, -ETIMEDOUT. */
static int wait_stream(struct run *r)
{
	struct pollfd p[2] = { { r->lp.notify_fd, POLLIN, 0 },
			       { r->mig_done, POLLIN, 0 } };
	int n = poll(p, 2, CONNECT_WAIT_MS);

	if (n <= 0)
		return -ETIMEDOUT;
	return p[1].revents ? 0 : 1;
}

static int run_agent(struct run *r, pid_t *pid)
{
	const char *argv[2 * NFWD + 8];
	char agent[512];
	int n = 0, ret;

	snprintf(agent, sizeof(agent), "%s", r->a->agent ? r->a->agent :
		 FERRY_BINDIR "/ferry-source");
	argv[n++] = agent;
	argv[n++] = "--vm";
	argv[n++] = r->link;
	argv[n++] = "--dest";
	argv[n++] = r->a->ferry;
	for (int i = 0; i < r->a->nfwd; i++)
		argv[n++] = r->a->fwd[i];
	argv[n] = NULL;
	ret = posix_spawn(pid, agent, NULL, NULL, (char **)argv, environ);
	if (ret)
		fprintf(stderr, "ferry-migrate: cannot run %s: %s\n", agent,
			strerror(ret));
	return -ret;
}

static int wait_agent(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Everything started here ends here, whatever the outcome. */
static void teardown(struct run *r, bool migrated)
{
	uint64_t one = 1;

	if (r->link_started) {
		if (write(r->lp.stop_fd, &one, sizeof(one)) != sizeof(one))
			pr_warn("eventfd write failed");
		pthread_join(r->link_thr, NULL);
	}
	if (!migrated && virDomainIsActive(r->dom) == 1)
		set_ignore_shared(r, false);
}

static int start(struct run *r)
{
	int ret = fq_stream_listen(r->a->saddr, r->a->sport, &r->listen_fd);

	if (ret) {
		fprintf(stderr, "ferry-migrate: cannot listen on %s:%s for "
			"libvirt's stream: %s\n", r->a->saddr, r->a->sport,
			strerror(-ret));
		return ret;
	}
	r->lp = (struct fq_link_params){
		.qmp_path = r->qmp, .uffd_path = r->uffd, .link_path = r->link,
		.stream_listen = r->listen_fd, .stream_bytes = &r->stream_bytes,
		.notify_fd = eventfd(0, EFD_CLOEXEC),
		.stop_fd = eventfd(0, EFD_CLOEXEC),
	};
	r->mig_done = eventfd(0, EFD_CLOEXEC);
	if (r->lp.notify_fd < 0 || r->lp.stop_fd < 0 || r->mig_done < 0)
		return -errno;
	ret = set_ignore_shared(r, true);
	if (ret)
		return ret;
	unlink(r->link);	/* a link of ours that did not end cleanly */
	ret = -pthread_create(&r->link_thr, NULL, link_main, r);
	r->link_started = !ret;
	/* The link's own socket appears once it has attached to QEMU. */
	for (int i = 0; !ret && i < 1000 && access(r->link, F_OK); i++) {
		if (!pthread_tryjoin_np(r->link_thr, NULL)) {
			r->link_started = false;
			fprintf(stderr, "ferry-migrate: %s: cannot serve its QEMU "
				"(see above)\n", r->a->dom);
			return r->link_ret ? r->link_ret : -EIO;
		}
		usleep(10000);
	}
	ret = ret ?: mark_xml(r);
	ret = ret ?: -pthread_create(&r->mig_thr, NULL, mig_main, r);
	r->mig_started = !ret;
	return ret;
}

/* Ends libvirt's migration early (QEMU's stream was not carried): the
 * domain stays here. Nothing to abort is no error. */
static void abort_job(struct run *r)
{
	if (virDomainAbortJob(r->dom) < 0)
		virResetLastError();
}

static int migrate(struct run *r)
{
	uint64_t t0 = ut_now_ns();
	int ret = start(r), rc = 1;
	bool migrated;
	pid_t pid;

	ret = ret ?: wait_stream(r);
	if (ret == 1 && !run_agent(r, &pid)) {
		rc = wait_agent(pid);
		if (rc) {
			fprintf(stderr, "ferry-migrate: ferry-source failed (exit "
				"%d)\n", rc);
			abort_job(r);
		}
	} else if (ret == -ETIMEDOUT) {
		fprintf(stderr, "ferry-migrate: libvirt's migration did not reach "
			"QEMU's stream in %d s\n", CONNECT_WAIT_MS / 1000);
		abort_job(r);
	}
	if (r->mig_started)
		pthread_join(r->mig_thr, NULL);
	migrated = ret == 1 && !rc && !r->mig_ret;
	if (!migrated && r->mig_ret && r->mig_err[0])
		fprintf(stderr, "ferry-migrate: libvirt: %s\n", r->mig_err);
	teardown(r, migrated);
	if (migrated && !r->a->quiet)
		printf("ferry-migrate: %s runs at %s (%.1f s; libvirt's own "
		       "stream %zu bytes; its job: guest stopped %llu ms of "
		       "%llu ms)\n", r->a->dom, r->a->dst_uri,
		       (ut_now_ns() - t0) / 1e9, r->stream_bytes,
		       r->lv_downtime, r->lv_elapsed);
	return migrated ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct args a = { .sport = "48199", .saddr = "127.0.0.1",
			  .daddr = "127.0.0.1" };
	struct run r = { .a = &a, .listen_fd = -1, .mig_done = -1 };
	int rc = 1, active;

	if (parse(&a, argc, argv))
		return 2;
	ut_log_set_level(UT_LOG_WARN);
	signal(SIGPIPE, SIG_IGN);
	r.src = virConnectOpen(a.src_uri);
	if (!r.src) {
		fprintf(stderr, "ferry-migrate: %s\n", virGetLastErrorMessage());
		return 1;
	}
	r.dom = virDomainLookupByName(r.src, a.dom);
	active = r.dom ? virDomainIsActive(r.dom) : -1;
	if (active != 1)
		fprintf(stderr, "ferry-migrate: %s: %s\n", a.dom, active == 0 ?
			"not running" : virGetLastErrorMessage());
	else if (!(r.xml = virDomainGetXMLDesc(r.dom, VIR_DOMAIN_XML_MIGRATABLE)))
		fprintf(stderr, "ferry-migrate: %s\n", virGetLastErrorMessage());
	else if (!check_domain(&r))
		rc = migrate(&r);
	if (r.listen_fd >= 0)
		close(r.listen_fd);
	free(r.xml);
	free(r.dest_xml);
	if (r.dom)
		virDomainFree(r.dom);
	virConnectClose(r.src);
	return rc;
}

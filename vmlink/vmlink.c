// SPDX-License-Identifier: LGPL-2.1-or-later
/* The VM link protocol (see vmlink.h): encoding, socket I/O, both ends. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LOG_PREFIX "vmlink"
#include "vmlink/vmlink.h"
#include "util/le.h"
#include "util/util.h"

/* The calling thread's last refusal of something the peer sent, for
 * vml_strerror(): thread-local, as each end serves its link from one
 * thread. */
static __thread char last_why[160];

static int __attribute__((format(printf, 2, 3)))
refuse(int ret, const char *fmt, ...)
{
	char why[sizeof(last_why)];	/* @fmt's args may be last_why */
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	memcpy(last_why, why, sizeof(why));
	return ret;
}

const char *vml_strerror(int ret)
{
	return last_why[0] ? last_why : strerror(ret < 0 ? -ret : ret);
}

const char *vml_msg_name(uint16_t type)
{
	static const char *const names[] = {
		[VML_MSG_HELLO] = "hello",
		[VML_MSG_PAUSE] = "pause",
		[VML_MSG_RESUME] = "resume",
		[VML_MSG_SAVE_STATE] = "save-state",
		[VML_MSG_LOAD_STATE] = "load-state",
		[VML_MSG_QUIT] = "quit",
		[VML_MSG_STATUS] = "status",
		[VML_MSG_DIRTY_LOG] = "dirty-log",
		[VML_MSG_COMMIT] = "commit",
		[VML_MSG_ADVISE] = "advise",
	};
	uint16_t t = type & ~VML_MSG_REPLY;

	if (t < UT_ARRAY_SIZE(names) && names[t])
		return names[t];
	return "?";
}

/* ---- encoding ---- */

void vml_hdr_encode(uint8_t *out, const struct vml_hdr *h)
{
	ut_put_le32(out, VML_MAGIC);
	ut_put_le16(out + 4, h->type);
	ut_put_le16(out + 6, h->flags);
	ut_put_le32(out + 8, h->len);
	ut_put_le32(out + 12, (uint32_t)h->status);
}

int vml_hdr_decode(struct vml_hdr *h, const uint8_t *buf, size_t len)
{
	if (len < VML_HDR_SIZE)
		return refuse(-EINVAL, "a message header of %zu bytes", len);
	if (ut_get_le32(buf) != VML_MAGIC)
		return refuse(-EPROTO, "a message header with a bad magic "
			      "(%#x)", ut_get_le32(buf));
	if (ut_get_le16(buf + 6) != 0)
		return refuse(-EPROTO, "a message header with flags %#x",
			      ut_get_le16(buf + 6));
	h->type = ut_get_le16(buf + 4);
	h->flags = 0;
	h->len = ut_get_le32(buf + 8);
	h->status = (int32_t)ut_get_le32(buf + 12);
	if (h->len > VML_MAX_PAYLOAD)
		return refuse(-EMSGSIZE, "a %s message of %u bytes, over the "
			      "%u-byte limit", vml_msg_name(h->type), h->len,
			      VML_MAX_PAYLOAD);
	return 0;
}

ssize_t vml_hello_encode(const struct vml_hello *h, uint8_t *buf, size_t cap,
			 int *fds, unsigned int *nfds)
{
	size_t need = VML_HELLO_FIXED + (size_t)h->nr_regions * VML_REGION_SIZE;
	unsigned int n = 0;
	uint8_t *p;

	if (h->nr_regions > VML_MAX_REGIONS || cap < need)
		return -EINVAL;
	if (h->uffd >= 0)
		fds[n++] = h->uffd;
	ut_put_le32(buf, h->version);
	ut_put_le32(buf + 4, h->pid);
	ut_put_le32(buf + 8, h->flags);
	ut_put_le32(buf + 12, h->nr_vcpus);
	ut_put_le32(buf + 16, h->nr_regions);
	ut_put_le32(buf + 20, h->uffd >= 0 ? 0 : (uint32_t)-1);
	for (uint32_t i = 0; i < h->nr_regions; i++) {
		const struct vml_region *r = &h->regions[i];

		p = buf + VML_HELLO_FIXED + i * VML_REGION_SIZE;
		ut_put_le64(p, r->gpa);
		ut_put_le64(p + 8, r->size);
		ut_put_le64(p + 16, r->host_addr);
		ut_put_le64(p + 24, r->fd_offset);
		ut_put_le64(p + 32, r->page_size);
		ut_put_le32(p + 40, r->backing);
		ut_put_le32(p + 44, r->fd >= 0 ? n : (uint32_t)-1);
		if (r->fd >= 0)
			fds[n++] = r->fd;
	}
	*nfds = n;
	return (ssize_t)need;
}

/* Takes fd @idx (-1: none) out of @fds into *@out. */
static int take_fd(int32_t idx, int *fds, unsigned int nfds, int *out)
{
	*out = -1;
	if (idx == -1)
		return 0;
	if (idx < 0 || (unsigned int)idx >= nfds)
		return refuse(-EPROTO, "fd index %d, but %u fds came with it",
			      idx, nfds);
	if (fds[idx] < 0)
		return refuse(-EPROTO, "fd %d used twice", idx);
	*out = fds[idx];
	fds[idx] = -1;
	return 0;
}

/* The page size of each backing (enum gm_backing). */
static const uint64_t backing_psz[] = { 4096, 2u << 20, 1u << 30, 4096, 4096 };

static int region_decode(struct vml_region *r, unsigned int i,
			 const uint8_t *p, int *fds, unsigned int nfds)
{
	int ret;

	r->gpa = ut_get_le64(p);
	r->size = ut_get_le64(p + 8);
	r->host_addr = ut_get_le64(p + 16);
	r->fd_offset = ut_get_le64(p + 24);
	r->page_size = ut_get_le64(p + 32);
	r->backing = ut_get_le32(p + 40);
	if (r->page_size != 4096 && r->page_size != 2u << 20 &&
	    r->page_size != 1u << 30)
		return refuse(-EINVAL, "region %u: page size %llu is not "
			      "4 KiB, 2 MiB or 1 GiB", i,
			      (unsigned long long)r->page_size);
	if (r->backing >= UT_ARRAY_SIZE(backing_psz))
		return refuse(-EINVAL, "region %u: unknown backing %u", i,
			      r->backing);
	if (backing_psz[r->backing] != r->page_size)
		return refuse(-EINVAL, "region %u: page size %llu does not "
			      "match its backing (%llu)", i,
			      (unsigned long long)r->page_size,
			      (unsigned long long)backing_psz[r->backing]);
	if (!r->size || r->size % r->page_size || r->gpa % r->page_size ||
	    r->host_addr % r->page_size || r->fd_offset % r->page_size)
		return refuse(-EINVAL, "region %u: address, size or offset "
			      "not a non-zero multiple of its page size", i);
	if (r->gpa + r->size < r->gpa || r->host_addr + r->size < r->host_addr ||
	    r->fd_offset + r->size < r->fd_offset)
		return refuse(-EINVAL, "region %u: %llu bytes from %#llx "
			      "overflow", i, (unsigned long long)r->size,
			      (unsigned long long)(r->gpa + r->size < r->gpa ?
						   r->gpa : r->host_addr));
	ret = take_fd((int32_t)ut_get_le32(p + 44), fds, nfds, &r->fd);
	if (ret)
		refuse(ret, "region %u: %s", i, vml_strerror(ret));
	return ret;
}

static void hello_release(struct vml_hello *h)
{
	if (h->uffd >= 0)
		close(h->uffd);
	h->uffd = -1;
	for (unsigned int i = 0; i < VML_MAX_REGIONS; i++) {
		if (h->regions[i].fd >= 0)
			close(h->regions[i].fd);
		h->regions[i].fd = -1;
	}
}

/* Two regions that share a guest physical page would be two copies of
 * one page: a VMM that says so is broken. */
static int regions_disjoint(const struct vml_hello *h)
{
	for (uint32_t i = 0; i < h->nr_regions; i++)
		for (uint32_t j = i + 1; j < h->nr_regions; j++) {
			const struct vml_region *a = &h->regions[i];
			const struct vml_region *b = &h->regions[j];

			if (a->gpa < b->gpa + b->size && b->gpa < a->gpa + a->size)
				return refuse(-EINVAL, "regions %u and %u "
					      "overlap", i, j);
		}
	return 0;
}

int vml_hello_decode(struct vml_hello *h, const uint8_t *buf, size_t len,
		     int *fds, unsigned int nfds)
{
	unsigned int used = 0;
	int ret;

	last_why[0] = 0;
	memset(h, 0, sizeof(*h));
	h->uffd = -1;
	for (unsigned int i = 0; i < VML_MAX_REGIONS; i++)
		h->regions[i].fd = -1;
	if (len < VML_HELLO_FIXED)
		return refuse(-EPROTO, "a HELLO of %zu bytes", len);
	h->version = ut_get_le32(buf);
	h->pid = ut_get_le32(buf + 4);
	h->flags = ut_get_le32(buf + 8);
	h->nr_vcpus = ut_get_le32(buf + 12);
	h->nr_regions = ut_get_le32(buf + 16);
	if (h->version != VML_VERSION)
		return refuse(-EPROTO, "VM link version %u, not %u",
			      h->version, VML_VERSION);
	if (h->nr_regions > VML_MAX_REGIONS)
		return refuse(-EPROTO, "%u regions, more than %u",
			      h->nr_regions, VML_MAX_REGIONS);
	if (len != VML_HELLO_FIXED + (size_t)h->nr_regions * VML_REGION_SIZE)
		return refuse(-EPROTO, "a HELLO of %zu bytes for %u regions",
			      len, h->nr_regions);
	ret = take_fd((int32_t)ut_get_le32(buf + 20), fds, nfds, &h->uffd);
	if (ret)
		refuse(ret, "the userfaultfd: %s", vml_strerror(ret));
	for (uint32_t i = 0; !ret && i < h->nr_regions; i++)
		ret = region_decode(&h->regions[i], i,
				    buf + VML_HELLO_FIXED + i * VML_REGION_SIZE,
				    fds, nfds);
	if (!ret)
		ret = regions_disjoint(h);
	/* Every fd passed is one the table refers to: an fd more is a VMM
	 * that does not say what it is. */
	for (unsigned int i = 0; !ret && i < nfds; i++)
		used += fds[i] < 0;
	if (!ret && used != nfds)
		ret = refuse(-EPROTO, "%u fds passed, the table refers to %u",
			     nfds, used);
	if (ret)
		hello_release(h);
	return ret;
}

ssize_t vml_advise_encode(const struct vml_advise *a, uint8_t *buf,
			  size_t cap)
{
	size_t need = VML_ADVISE_FIXED + (size_t)a->nr * VML_ADVISE_ENTRY;

	if (a->nr > VML_MAX_ADVISE || cap < need)
		return -EINVAL;
	ut_put_le32(buf, a->region);
	ut_put_le32(buf + 4, a->advice);
	ut_put_le32(buf + 8, a->node);
	ut_put_le32(buf + 12, 0);
	for (uint32_t i = 0; i < a->nr; i++) {
		uint8_t *p = buf + VML_ADVISE_FIXED + i * VML_ADVISE_ENTRY;

		ut_put_le64(p, a->ranges[i].off);
		ut_put_le64(p + 8, a->ranges[i].len);
	}
	return (ssize_t)need;
}

int vml_advise_decode(struct vml_advise *a, const uint8_t *buf, size_t len,
		      const struct vml_hello *h)
{
	uint64_t size;

	last_why[0] = 0;
	if (len < VML_ADVISE_FIXED || (len - VML_ADVISE_FIXED) %
	    VML_ADVISE_ENTRY)
		return refuse(-EPROTO, "an ADVISE of %zu bytes", len);
	a->region = ut_get_le32(buf);
	a->advice = ut_get_le32(buf + 4);
	a->node = ut_get_le32(buf + 8);
	a->nr = (uint32_t)((len - VML_ADVISE_FIXED) / VML_ADVISE_ENTRY);
	if (a->nr > VML_MAX_ADVISE)
		return refuse(-EPROTO, "an ADVISE of %u ranges, more than %u",
			      a->nr, VML_MAX_ADVISE);
	if (a->advice != VML_ADVISE_DONTNEED &&
	    a->advice != VML_ADVISE_MERGEABLE && a->advice != VML_ADVISE_BIND)
		return refuse(-EINVAL, "unknown advice %u", a->advice);
	if (ut_get_le32(buf + 12) ||
	    (a->advice == VML_ADVISE_BIND ? a->node > VML_MAX_NODE : a->node))
		return refuse(-EINVAL, "advice %u with node %u and reserved "
			      "word %#x", a->advice, a->node,
			      ut_get_le32(buf + 12));
	if (a->region >= h->nr_regions)
		return refuse(-EINVAL, "advice for region %u of %u", a->region,
			      h->nr_regions);
	size = h->regions[a->region].size;
	for (uint32_t i = 0; i < a->nr; i++) {
		const uint8_t *p = buf + VML_ADVISE_FIXED + i * VML_ADVISE_ENTRY;
		struct vml_range *r = &a->ranges[i];

		r->off = ut_get_le64(p);
		r->len = ut_get_le64(p + 8);
		if (!r->len || r->off % 4096 || r->len % 4096 ||
		    r->off > size || r->len > size - r->off)
			return refuse(-EINVAL, "advice range %u (%llu bytes "
				      "at %llu) is not 4 KiB pages inside "
				      "region %u", i,
				      (unsigned long long)r->len,
				      (unsigned long long)r->off, a->region);
	}
	return 0;
}

/* ---- socket I/O ---- */

static int send_all(int sock, const void *buf, size_t len, const int *fds,
		    unsigned int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VML_MAX_FDS)];
		struct cmsghdr align;
	} cbuf;
	const uint8_t *p = buf;

	while (len) {
		struct iovec iov = { .iov_base = (void *)p, .iov_len = len };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (nfds) {
			struct cmsghdr *cm;

			memset(&cbuf, 0, sizeof(cbuf));
			mh.msg_control = cbuf.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
		}
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= n;
		nfds = 0;	/* the fds went with the first byte */
	}
	return 0;
}

int vml_send(int sock, uint16_t type, int32_t status, const void *payload,
	     size_t len, const int *fds, unsigned int nfds)
{
	struct vml_hdr h = { .type = type, .len = len, .status = status };
	uint8_t hb[VML_HDR_SIZE];
	int ret;

	if (len > VML_MAX_PAYLOAD || nfds > VML_MAX_FDS)
		return -EMSGSIZE;
	vml_hdr_encode(hb, &h);
	ret = send_all(sock, hb, sizeof(hb), fds, nfds);
	if (!ret && len)
		ret = send_all(sock, payload, len, NULL, 0);
	if (ret && ret != -EPIPE)
		pr_err("sending %s failed: %s", vml_msg_name(type),
		       strerror(-ret));
	return ret;
}

static void collect_fds(struct msghdr *mh, struct vml_msg *m)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm;
	     cm = CMSG_NXTHDR(mh, cm)) {
		size_t n;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (m->nfds < VML_MAX_FDS)
				m->fds[m->nfds++] = fd;
			else
				close(fd);
		}
	}
}

/* Reads exactly @len bytes; the first read also collects fds into @m. */
static int recv_all(int sock, void *buf, size_t len, struct vml_msg *m)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * VML_MAX_FDS)];
		struct cmsghdr align;
	} cbuf;
	uint8_t *p = buf;
	size_t got = 0;

	while (got < len) {
		struct iovec iov = { .iov_base = p + got, .iov_len = len - got };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		ssize_t n;

		if (m) {
			mh.msg_control = cbuf.buf;
			mh.msg_controllen = sizeof(cbuf.buf);
		}
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (m)
			collect_fds(&mh, m);
		if (n == 0)
			return -ECONNRESET;
		got += n;
	}
	return 0;
}

int vml_recv(int sock, struct vml_msg *m)
{
	uint8_t hb[VML_HDR_SIZE];
	int ret;

	last_why[0] = 0;
	memset(m, 0, sizeof(*m));
	for (unsigned int i = 0; i < VML_MAX_FDS; i++)
		m->fds[i] = -1;
	ret = recv_all(sock, hb, sizeof(hb), m);
	if (ret == -ECONNRESET)
		return refuse(ret, "the peer closed the link");
	if (ret)
		return ret;
	ret = vml_hdr_decode(&m->hdr, hb, sizeof(hb));
	if (ret) {
		pr_err("%s", last_why);
		return ret;
	}
	if (!m->hdr.len)
		return 0;
	m->payload = malloc(m->hdr.len);
	if (!m->payload)
		return -ENOMEM;
	ret = recv_all(sock, m->payload, m->hdr.len, NULL);
	if (ret) {
		refuse(ret, "a %s message cut short (%s)",
		       vml_msg_name(m->hdr.type), strerror(-ret));
		pr_err("%s", last_why);
	}
	return ret;
}

void vml_msg_fini(struct vml_msg *m)
{
	if (!m)
		return;
	free(m->payload);
	m->payload = NULL;
	for (unsigned int i = 0; i < m->nfds; i++)
		if (m->fds[i] >= 0)
			close(m->fds[i]);
	m->nfds = 0;
}

/* ---- the VMM side ---- */

static int addr_of(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (!path || !*path || strlen(path) >= sizeof(sa->sun_path)) {
		pr_err("invalid socket path '%s' (empty or longer than %zu)",
		       path ? path : "", sizeof(sa->sun_path) - 1);
		return -EINVAL;
	}
	strcpy(sa->sun_path, path);
	return 0;
}

/* Whether something accepts connections on @sa. */
static bool socket_live(const struct sockaddr_un *sa)
{
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live;

	if (s < 0)
		return false;
	live = !connect(s, (const struct sockaddr *)sa, sizeof(*sa));
	close(s);
	return live;
}

static int clear_path(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;

	if (lstat(path, &st))
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		pr_err("socket path %s exists and is not a socket", path);
		return -EEXIST;
	}
	if (socket_live(sa)) {
		pr_err("socket path %s is in use by another process", path);
		return -EADDRINUSE;
	}
	unlink(path);	/* stale: its owner died */
	return 0;
}

int vml_server_listen(const char *path, int *fd)
{
	struct sockaddr_un sa;
	int s, ret;

	*fd = -1;
	ret = addr_of(path, &sa);
	if (!ret)
		ret = clear_path(path, &sa);
	if (ret)
		return ret;
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		ret = -errno;
		pr_err("socket: %s", strerror(-ret));
		return ret;
	}
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) || listen(s, 4)) {
		ret = -errno;
		pr_err("cannot listen on %s: %s", path, strerror(-ret));
		goto close_socket;
	}
	*fd = s;
	return 0;

close_socket:
	close(s);
	return ret;
}

int vml_server_hello(int sock, const struct vml_hello *h)
{
	uint8_t buf[VML_HELLO_FIXED + VML_MAX_REGIONS * VML_REGION_SIZE];
	int fds[VML_MAX_FDS];
	unsigned int nfds;
	ssize_t n;

	n = vml_hello_encode(h, buf, sizeof(buf), fds, &nfds);
	if (n < 0) {
		pr_err("cannot encode HELLO (%u regions)", h->nr_regions);
		return (int)n;
	}
	return vml_send(sock, VML_MSG_HELLO, 0, buf, (size_t)n, fds, nfds);
}

void vml_status_encode(uint8_t *out, uint32_t state, uint64_t hbs)
{
	ut_put_le32(out, state);
	ut_put_le32(out + 4, 0);
	ut_put_le64(out + 8, hbs);
}

int vml_server_reply(int sock, uint16_t req_type, int32_t status,
		     const void *payload, size_t len)
{
	return vml_send(sock, req_type | VML_MSG_REPLY, status, payload, len,
			NULL, 0);
}

/* ---- the agent side ---- */

static void client_reset(struct vml_client *c)
{
	memset(c, 0, sizeof(*c));
	c->sock = -1;
	c->hello.uffd = -1;
	for (unsigned int i = 0; i < VML_MAX_REGIONS; i++)
		c->hello.regions[i].fd = -1;
}

static int client_hello(struct vml_client *c)
{
	struct vml_msg m;
	int ret;

	ret = vml_recv(c->sock, &m);
	if (!ret && m.hdr.type != VML_MSG_HELLO)
		ret = refuse(-EPROTO, "message type %#x instead of HELLO",
			     m.hdr.type);
	if (!ret)
		ret = vml_hello_decode(&c->hello, m.payload, m.hdr.len, m.fds,
				       m.nfds);
	if (ret)
		refuse(ret, "no valid HELLO: %s", vml_strerror(ret));
	vml_msg_fini(&m);
	return ret;
}

int vml_client_open(struct vml_client *c, const char *path)
{
	struct sockaddr_un sa;
	int ret;

	client_reset(c);
	ret = addr_of(path, &sa);
	if (ret)
		return ret;
	c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->sock < 0) {
		ret = -errno;
		pr_err("socket: %s", strerror(-ret));
		return ret;
	}
	if (connect(c->sock, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		pr_err("cannot connect to the VMM at %s: %s", path,
		       strerror(-ret));
		goto close_socket;
	}
	ret = client_hello(c);
	if (ret)
		goto close_socket;
	return 0;

close_socket:
	close(c->sock);
	c->sock = -1;
	return ret;
}

void vml_client_close(struct vml_client *c)
{
	if (!c)
		return;
	if (c->sock >= 0)
		close(c->sock);
	hello_release(&c->hello);
	c->sock = -1;
}

int vml_client_take_uffd(struct vml_client *c)
{
	int fd = c->hello.uffd;

	c->hello.uffd = -1;
	return fd;
}

/* Sends request @type and waits for its reply into @reply. */
static int request(struct vml_client *c, uint16_t type, const void *payload,
		   size_t len, struct vml_msg *reply)
{
	int ret;

	last_why[0] = 0;
	memset(reply, 0, sizeof(*reply));
	if (c->sock < 0)
		return -ENOTCONN;
	ret = vml_send(c->sock, type, 0, payload, len, NULL, 0);
	if (ret)
		return ret;
	ret = vml_recv(c->sock, reply);
	if (ret)
		return ret;
	if (reply->hdr.type != (type | VML_MSG_REPLY))
		return refuse(-EPROTO, "the VMM answered %s with message "
			      "type %#x", vml_msg_name(type), reply->hdr.type);
	if (reply->hdr.status > 0 || reply->hdr.status < -4095)
		return refuse(-EPROTO, "the VMM answered %s with status %d",
			      vml_msg_name(type), reply->hdr.status);
	return reply->hdr.status;
}

static int simple(struct vml_client *c, uint16_t type)
{
	struct vml_msg m;
	int ret = request(c, type, NULL, 0, &m);

	vml_msg_fini(&m);
	return ret;
}

int vml_client_pause(struct vml_client *c)
{
	return simple(c, VML_MSG_PAUSE);
}

int vml_client_resume(struct vml_client *c)
{
	return simple(c, VML_MSG_RESUME);
}

int vml_client_quit(struct vml_client *c)
{
	return simple(c, VML_MSG_QUIT);
}

int vml_client_commit(struct vml_client *c)
{
	return simple(c, VML_MSG_COMMIT);
}

int vml_client_status(struct vml_client *c, uint32_t *state, uint64_t *hbs)
{
	struct vml_msg m;
	int ret = request(c, VML_MSG_STATUS, NULL, 0, &m);

	if (!ret && m.hdr.len < 16)
		ret = refuse(-EPROTO, "a status reply of %u bytes", m.hdr.len);
	if (!ret) {
		*state = ut_get_le32(m.payload);
		*hbs = ut_get_le64(m.payload + 8);
	}
	vml_msg_fini(&m);
	return ret;
}

int vml_client_save_state(struct vml_client *c, void **blob, size_t *len)
{
	struct vml_msg m;
	int ret = request(c, VML_MSG_SAVE_STATE, NULL, 0, &m);

	*blob = NULL;
	*len = 0;
	if (!ret && !m.hdr.len)
		ret = refuse(-EPROTO, "an empty state blob");
	if (!ret) {
		*blob = m.payload;
		*len = m.hdr.len;
		m.payload = NULL;
	}
	vml_msg_fini(&m);
	return ret;
}

int vml_client_load_state(struct vml_client *c, const void *blob, size_t len)
{
	struct vml_msg m;
	int ret = request(c, VML_MSG_LOAD_STATE, blob, len, &m);

	vml_msg_fini(&m);
	return ret;
}

int vml_client_dirty_log(struct vml_client *c, uint32_t region, uint32_t op,
			 uint64_t **bitmap, size_t *words)
{
	uint8_t req[8];
	struct vml_msg m;
	int ret;

	if (bitmap)
		*bitmap = NULL;
	if (words)
		*words = 0;
	ut_put_le32(req, region);
	ut_put_le32(req + 4, op);
	ret = request(c, VML_MSG_DIRTY_LOG, req, sizeof(req), &m);
	if (!ret && op == VML_DIRTY_FETCH) {
		if (!bitmap || !words || m.hdr.len % 8) {
			ret = -EPROTO;
		} else {
			*words = m.hdr.len / 8;
			*bitmap = malloc(m.hdr.len ? m.hdr.len : 8);
			if (!*bitmap)
				ret = -ENOMEM;
			for (size_t i = 0; !ret && i < *words; i++)
				(*bitmap)[i] = ut_get_le64(m.payload + 8 * i);
		}
	}
	vml_msg_fini(&m);
	return ret;
}

int vml_client_advise(struct vml_client *c, const struct vml_advise *a)
{
	size_t cap = VML_ADVISE_FIXED + (size_t)VML_MAX_ADVISE *
		     VML_ADVISE_ENTRY;
	uint8_t *buf;
	int ret = 0;

	if (!(c->hello.flags & VML_F_ADVISE))
		return -EOPNOTSUPP;
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	for (uint32_t i = 0; !ret && i < a->nr; i += VML_MAX_ADVISE) {
		struct vml_advise part = *a;
		struct vml_msg m;
		ssize_t n;

		part.ranges = a->ranges + i;
		part.nr = a->nr - i < VML_MAX_ADVISE ? a->nr - i :
						       VML_MAX_ADVISE;
		n = vml_advise_encode(&part, buf, cap);
		ret = n < 0 ? (int)n : request(c, VML_MSG_ADVISE, buf, n, &m);
		if (n >= 0)
			vml_msg_fini(&m);
	}
	free(buf);
	return ret;
}

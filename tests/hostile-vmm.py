#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/hostile-vmm.py SOCKET SCENARIO: a VMM that breaks the VM link
# (docs/vmlink.md) in one way, for the agents to refuse. It serves real
# guest RAM (a memfd of 16 MiB, mapped here, filled with a pattern) and a
# real userfaultfd created in this process, so that an agent that accepts
# the HELLO can attach, track and migrate it; the scenario then spoils the
# HELLO or one reply. --list prints the scenarios.
#
# It keeps its own copy of the userfaultfd (a VMM would close it): when
# the agent is gone, whatever the agent registered on this process's RAM
# and did not unregister is still visible in /proc/self/smaps (VmFlags
# um/uw/ui). Its last line is
#   vmm: agent gone after REQUESTS; registered: FLAGS|none; state: STATE
# (REQUESTS: the requests it answered, in order), so that the test can
# check that the agent left nothing registered or half-done.
# Exit status: 0 the scenario was played, 1 it could not be, 2 usage.
import array
import ctypes
import mmap
import os
import re
import socket
import struct
import sys

MAGIC = 0x4C4D5646
REPLY = 0x8000
HELLO, PAUSE, RESUME, SAVE, LOAD, QUIT, STATUS, DIRTY, COMMIT = range(1, 10)
NAMES = {PAUSE: "pause", RESUME: "resume", SAVE: "save-state",
         LOAD: "load-state", QUIT: "quit", STATUS: "status",
         DIRTY: "dirty-log", COMMIT: "commit"}
RAM = 16 << 20
PSZ = 4096
EOPNOTSUPP, EBUSY = 95, 16
F_INCOMING = 1
SYS_USERFAULTFD = 323  # x86_64


def userfaultfd():
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(SYS_USERFAULTFD, os.O_CLOEXEC | os.O_NONBLOCK)
    if fd < 0:
        try:
            fd = os.open("/dev/userfaultfd", os.O_RDWR | os.O_CLOEXEC)
            # USERFAULTFD_IOC_NEW
            fd2 = __import__("fcntl").ioctl(fd, 0xAA00, os.O_CLOEXEC | os.O_NONBLOCK)
            os.close(fd)
            fd = fd2
        except OSError as e:
            raise OSError("cannot create a userfaultfd: %s" % e)
    return fd


class Vmm:
    def __init__(self, scenario):
        self.sc = scenario
        self.memfd = os.memfd_create("hostile-vmm-ram", os.MFD_CLOEXEC)
        os.ftruncate(self.memfd, RAM)
        self.ram = mmap.mmap(self.memfd, RAM, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)
        for off in range(0, RAM, PSZ):
            if (off // PSZ) % 3:
                self.ram[off:off + 8] = struct.pack("<Q", off | 1)
        self.addr = ctypes.addressof(ctypes.c_char.from_buffer(self.ram))
        self.uffd = userfaultfd()
        self.state = 1  # running
        self.requests = []
        self.extra = []  # fds opened for the scenario

    # ---- HELLO ----

    def region(self, gpa=0, size=RAM, host=None, off=0, psz=PSZ, backing=0,
               fdi=1):
        host = self.addr if host is None else host
        return struct.pack("<QQQQQIi", gpa, size, host, off, psz, backing,
                           fdi)

    def hello(self, flags=0, regions=None, uffd_idx=0, version=1,
              nr=None, pid=None):
        regions = [self.region()] if regions is None else regions
        nr = len(regions) if nr is None else nr
        return struct.pack("<IIIIIi", version, os.getpid() if pid is None
                           else pid, flags, 1, nr, uffd_idx) + \
            b"".join(regions)

    def scenario_hello(self):
        """(type, payload, fds) of the first message."""
        sc, r = self.sc, self.region
        fds = [self.uffd, self.memfd]
        half = RAM // 2
        inc = F_INCOMING if sc.startswith("dest_") else 0
        if sc in ("dest_hello_valid", "valid", "out_of_order_pause",
                  "close_mid_save", "bad_status_pause", "pause_oversized",
                  "save_empty", "commit_junk", "quit_mid_reply",
                  "dest_load_refused", "dest_resume_out_of_order"):
            return HELLO, self.hello(flags=inc), fds
        if sc in ("hello_overlap", "dest_hello_overlap"):
            return HELLO, self.hello(inc, [
                r(0, half), r(half - PSZ, half, self.addr + half, half,
                              fdi=2)]), fds + [self.memfd]
        if sc == "hello_unaligned_gpa":
            return HELLO, self.hello(regions=[r(gpa=512)]), fds
        if sc == "hello_unaligned_size":
            return HELLO, self.hello(regions=[r(size=RAM - 512)]), fds
        if sc == "hello_size_overflow":
            return HELLO, self.hello(regions=[r(gpa=1 << 63,
                                                size=1 << 63)]), fds
        if sc == "hello_host_overflow":
            return HELLO, self.hello(regions=[r(host=(1 << 64) - PSZ)]), fds
        if sc == "hello_zero_size":
            return HELLO, self.hello(regions=[r(size=0)]), fds
        if sc == "hello_bad_page_size":
            return HELLO, self.hello(regions=[r(psz=8192)]), fds
        if sc == "hello_psz_backing":
            return HELLO, self.hello(regions=[r(psz=2 << 20)]), fds
        if sc == "hello_bad_backing":
            return HELLO, self.hello(regions=[r(backing=77)]), fds
        if sc == "hello_shmem_no_fd":
            return HELLO, self.hello(regions=[r(fdi=-1)]), fds[:1]
        if sc == "hello_anon_with_fd":
            return HELLO, self.hello(regions=[r(backing=3)]), fds
        if sc == "hello_no_regions":
            return HELLO, self.hello(regions=[]), fds[:1]
        if sc == "hello_too_many_regions":
            return HELLO, self.hello(nr=9, regions=[r()] * 9), fds
        if sc == "hello_count_mismatch":
            return HELLO, self.hello(nr=2), fds
        if sc == "hello_truncated":
            return HELLO, self.hello()[:-5], fds
        if sc == "hello_bad_version":
            return HELLO, self.hello(version=7), fds
        if sc == "hello_not_first":
            return STATUS | REPLY, struct.pack("<IIQ", 1, 0, 0), []
        if sc == "hello_more_fds":
            extra = [os.open("/dev/null", os.O_RDONLY) for _ in range(3)]
            self.extra += extra
            return HELLO, self.hello(), fds + extra
        if sc == "hello_fd_index_out":
            return HELLO, self.hello(regions=[r(fdi=5)]), fds
        if sc == "hello_fd_missing":
            return HELLO, self.hello(), fds[:1]
        if sc in ("hello_fd_pipe", "dest_hello_fd_pipe"):
            p = os.pipe()
            self.extra += p
            return HELLO, self.hello(inc), [self.uffd, p[0]]
        if sc == "hello_fd_short":
            f = os.memfd_create("short", os.MFD_CLOEXEC)
            os.ftruncate(f, RAM // 4)
            self.extra.append(f)
            return HELLO, self.hello(), [self.uffd, f]
        if sc == "hello_fd_offset_past":
            return HELLO, self.hello(regions=[r(off=RAM)]), fds
        if sc in ("hello_uffd_pipe", "dest_hello_uffd_pipe"):
            p = os.pipe()
            self.extra += p
            return HELLO, self.hello(inc), [p[0], self.memfd]
        if sc in ("hello_uffd_memfd", "dest_hello_uffd_memfd"):
            return HELLO, self.hello(inc), [self.memfd, self.memfd]
        raise KeyError(sc)

    # ---- requests ----

    def reply(self, s, typ, status=0, payload=b""):
        s.sendall(struct.pack("<IHHIi", MAGIC, typ | REPLY, 0, len(payload),
                              status) + payload)

    def serve(self, s, typ, payload):
        """Answers one request; False when the link is to be dropped."""
        sc = self.sc
        self.requests.append(NAMES.get(typ, "?%d" % typ))
        if typ == PAUSE and sc == "out_of_order_pause":
            self.state = 2
            self.reply(s, STATUS, 0, struct.pack("<IIQ", 2, 0, 0))
            return True
        if typ == PAUSE and sc == "bad_status_pause":
            self.reply(s, PAUSE, 5)
            return True
        if typ == PAUSE and sc == "pause_oversized":
            s.sendall(struct.pack("<IHHIi", MAGIC, PAUSE | REPLY, 0,
                                  (64 << 20) + 1, 0))
            return True
        if typ == SAVE and sc == "close_mid_save":
            s.sendall(struct.pack("<IHHIi", MAGIC, SAVE | REPLY, 0, 4096, 0)
                      + b"x" * 100)
            return False
        if typ == SAVE and sc == "save_empty":
            self.reply(s, SAVE)
            return True
        if typ == COMMIT and sc == "commit_junk":
            s.sendall(b"\xde\xad\xbe\xef" * 4)
            return True
        if typ == LOAD and sc == "dest_load_refused":
            self.reply(s, LOAD, -22)
            return True
        if typ == RESUME and sc == "dest_resume_out_of_order":
            self.reply(s, LOAD)
            return True
        if typ == QUIT and sc == "quit_mid_reply":
            s.sendall(struct.pack("<IHHI", MAGIC, QUIT | REPLY, 0, 0))
            return False
        if typ == PAUSE:
            self.state = 2
            self.reply(s, PAUSE)
        elif typ == RESUME:
            self.state = 1
            self.reply(s, RESUME)
        elif typ == SAVE:
            self.reply(s, SAVE, 0, b"HOSTILE-VMM-STATE" * 4)
        elif typ == LOAD:
            self.reply(s, LOAD)
        elif typ == STATUS:
            self.reply(s, STATUS, 0, struct.pack("<IIQ", self.state, 0, 1))
        elif typ == COMMIT:
            self.reply(s, COMMIT)
        elif typ == QUIT:
            self.state = 4
            self.reply(s, QUIT)
            return False
        else:
            self.reply(s, typ, -EOPNOTSUPP)
        return True

    def registered(self):
        """The uffd flags on this process's RAM mapping, from smaps."""
        start = "%x-" % self.addr
        flags, inside = set(), False
        with open("/proc/self/smaps") as f:
            for line in f:
                if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                    inside = line.startswith(start)
                elif inside and line.startswith("VmFlags:"):
                    flags |= set(line.split()[1:]) & {"um", "uw", "ui"}
        return " ".join(sorted(flags)) or "none"


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def main():
    scenarios = ["valid", "dest_hello_valid", "hello_overlap",
                 "dest_hello_overlap", "hello_unaligned_gpa",
                 "hello_unaligned_size", "hello_size_overflow",
                 "hello_host_overflow", "hello_zero_size",
                 "hello_bad_page_size", "hello_psz_backing",
                 "hello_bad_backing", "hello_shmem_no_fd",
                 "hello_anon_with_fd", "hello_no_regions",
                 "hello_too_many_regions", "hello_count_mismatch",
                 "hello_truncated", "hello_bad_version", "hello_not_first",
                 "hello_more_fds", "hello_fd_index_out", "hello_fd_missing",
                 "hello_fd_pipe", "dest_hello_fd_pipe", "hello_fd_short",
                 "hello_fd_offset_past", "hello_uffd_pipe",
                 "dest_hello_uffd_pipe", "hello_uffd_memfd",
                 "dest_hello_uffd_memfd", "out_of_order_pause",
                 "bad_status_pause", "pause_oversized", "close_mid_save",
                 "save_empty", "commit_junk", "quit_mid_reply",
                 "dest_load_refused", "dest_resume_out_of_order",
                 "pc_save_empty", "pc_close_mid_save"]
    if sys.argv[1:] == ["--list"]:
        print("\n".join(scenarios))
        return 0
    if len(sys.argv) != 3 or sys.argv[2] not in scenarios:
        print("usage: hostile-vmm.py SOCKET SCENARIO | --list",
              file=sys.stderr)
        return 2
    path, sc = sys.argv[1:]
    try:
        # pc_*: the same VMM, for an agent in postcopy mode.
        vmm = Vmm(sc[3:] if sc.startswith("pc_") else sc)
    except OSError as e:
        print("hostile-vmm: %s" % e, file=sys.stderr)
        return 1
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    os.chmod(path, 0o600)
    ls.listen(1)
    ls.settimeout(60)
    print("vmm: listening", flush=True)
    s, _ = ls.accept()
    s.settimeout(60)
    typ, payload, fds = vmm.scenario_hello()
    hdr = struct.pack("<IHHIi", MAGIC, typ, 0, len(payload), 0)
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
            array.array("i", fds).tobytes())] if fds else []
    s.sendmsg([hdr], anc)
    s.sendall(payload)
    print("vmm: sent %s" % sc, flush=True)
    alive = True
    while alive:
        try:
            h = recv_exact(s, 16)
        except (ConnectionError, socket.timeout):
            h = None
        if h is None:
            break
        magic, typ, _, length, _ = struct.unpack("<IHHIi", h)
        body = recv_exact(s, length) if length else b""
        if magic != MAGIC or body is None:
            print("vmm: the agent sent garbage", flush=True)
            break
        try:
            alive = vmm.serve(s, typ, body)
        except (BrokenPipeError, ConnectionError):
            break
    if not alive:
        # Closed by us (mid-reply, or after QUIT): wait for the agent.
        s.shutdown(socket.SHUT_WR)
        s.settimeout(30)
        try:
            while s.recv(4096):
                pass
        except (ConnectionError, socket.timeout):
            pass
    s.close()
    state = {1: "running", 2: "paused", 4: "stopped"}[vmm.state]
    print("vmm: agent gone after %s; registered: %s; state: %s" %
          (",".join(vmm.requests) or "nothing", vmm.registered(), state),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/vmlink-hold.py LISTEN VMM DIR: a VM-link relay (docs/vmlink.md)
# between one agent, which connects to LISTEN, and the VMM's link at VMM.
# It passes every message on as it is, file descriptors included, except
# that it holds the agent's RESUME: it creates DIR/held, waits for
# DIR/release (60 s at most, then passes it on anyway and says so), and
# only then sends the RESUME to the VMM. tests/qemu.sh uses it to look at
# a destination that has every page and its device state, paused at the
# switchover. Exits 0 when both sides have closed, 1 on a protocol error.
import array
import os
import socket
import struct
import sys
import threading
import time

MAGIC = 0x4C4D5646
RESUME = 3
HDR = struct.Struct("<IHHIi")
MAX_FDS = 9
HOLD_S = 60


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def recv_msg(s):
    """One message: header, payload and the fds on its first byte."""
    fds = array.array("i")
    data, anc, _, _ = s.recvmsg(HDR.size, socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
    if not data:
        raise EOFError
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    hdr = data + recv_exact(s, HDR.size - len(data))
    magic, typ, _flags, length, _status = HDR.unpack(hdr)
    if magic != MAGIC:
        raise ValueError("bad magic %#x" % magic)
    return typ, hdr, recv_exact(s, length) if length else b"", list(fds)


def send_msg(s, hdr, payload, fds):
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    s.sendmsg([hdr[:1]], anc)
    s.sendall(hdr[1:] + payload)
    for fd in fds:
        os.close(fd)


def hold(d):
    open(os.path.join(d, "held"), "w").close()
    release = os.path.join(d, "release")
    t0 = time.monotonic()
    while not os.path.exists(release):
        if time.monotonic() - t0 > HOLD_S:
            print("vmlink-hold: no release in %d s; passing RESUME on" % HOLD_S,
                  file=sys.stderr)
            return
        time.sleep(0.05)


def relay(src, dst, d, errors):
    try:
        while True:
            typ, hdr, payload, fds = recv_msg(src)
            if typ == RESUME and d:
                hold(d)
            send_msg(dst, hdr, payload, fds)
    except EOFError:
        pass
    except (OSError, ValueError) as e:
        errors.append(str(e))
    for s in (dst, src):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    if len(sys.argv) != 4:
        print("usage: vmlink-hold.py LISTEN VMM DIR", file=sys.stderr)
        return 2
    listen, vmm, d = sys.argv[1:]
    if os.path.exists(listen):
        os.unlink(listen)
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(listen)
    ls.listen(1)
    ls.settimeout(120)
    agent, _ = ls.accept()
    ls.close()
    agent.settimeout(None)
    v = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    v.connect(vmm)
    errors = []
    up = threading.Thread(target=relay, args=(v, agent, None, errors))
    up.start()
    relay(agent, v, d, errors)
    up.join()
    for e in errors:
        print("vmlink-hold: %s" % e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/vmlink-client.py SOCKET REQUEST...: a minimal VM-link agent for the
# tests (docs/vmlink.md). Connects, takes the HELLO (closing its fds), sends
# each REQUEST (pause, resume, commit, status) in turn, prints one line per
# reply ("pause 0", "status 0 paused"), then disconnects: what a VMM then
# does with a paused VM is what the tests look at. Exit 1 on an error reply.
import array
import socket
import struct
import sys

MAGIC = 0x4C4D5646
REPLY = 0x8000
TYPES = {"pause": 2, "resume": 3, "status": 7, "commit": 9}
STATES = {1: "running", 2: "paused", 3: "incoming", 4: "stopped"}


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the VMM closed the link")
        buf += chunk
    return buf


def recv_msg(s):
    fds = array.array("i")
    data, anc, _, _ = s.recvmsg(16, socket.CMSG_SPACE(9 * fds.itemsize))
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    for fd in fds:
        socket.close(fd)
    if len(data) < 16:
        data += recv_exact(s, 16 - len(data))
    magic, typ, _flags, length, status = struct.unpack("<IHHIi", data)
    if magic != MAGIC:
        raise ValueError("bad magic %#x" % magic)
    return typ, status, recv_exact(s, length) if length else b""


def main():
    if len(sys.argv) < 2:
        print("usage: vmlink-client.py SOCKET REQUEST...", file=sys.stderr)
        return 2
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(sys.argv[1])
    typ, _, _ = recv_msg(s)
    if typ != 1:
        raise ValueError("expected HELLO, got type %d" % typ)
    rc = 0
    for req in sys.argv[2:]:
        s.sendall(struct.pack("<IHHIi", MAGIC, TYPES[req], 0, 0, 0))
        typ, status, payload = recv_msg(s)
        if typ != TYPES[req] | REPLY:
            raise ValueError("reply of type %#x to %s" % (typ, req))
        line = "%s %d" % (req, status)
        if req == "status" and status == 0 and len(payload) >= 4:
            line += " " + STATES.get(struct.unpack("<I", payload[:4])[0], "?")
        print(line, flush=True)
        rc = rc or (status != 0)
    s.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())

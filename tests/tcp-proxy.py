#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""tcp-proxy.py LISTEN_PORT TARGET_HOST TARGET_PORT

A plain TCP forwarder for tests: every connection to 127.0.0.1:LISTEN_PORT
is relayed to TARGET. Killing it cuts every connection through it at once
(a network failure between two agents); starting it again on the same port
lets them reconnect. Prints "listening" once it accepts.
"""
import socket
import sys
import threading


def pipe(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    port, host, tport = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(64)
    print("listening", flush=True)
    while True:
        c, _ = srv.accept()
        try:
            t = socket.create_connection((host, tport))
        except OSError:
            c.close()
            continue
        for s in (c, t):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=pipe, args=(c, t), daemon=True).start()
        threading.Thread(target=pipe, args=(t, c), daemon=True).start()


if __name__ == "__main__":
    main()

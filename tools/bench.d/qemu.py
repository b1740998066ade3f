# SPDX-License-Identifier: LGPL-2.1-or-later
"""One QEMU migration for tools/bench: two qemu-system-x86_64 booting the
same guest payload with -kernel, driven over QMP (migrate-incoming,
migrate, query-migrate, migrate-start-postcopy)."""

import json
import os
import shlex
import shutil
import socket
import subprocess
import time

from procs import Child, CpuSampler, wait_for, now, hb_figures, \
    dirty_rate_mibs, await_verified, await_filled, huge_share, \
    guest_work

QEMU = "qemu-system-x86_64"


def is_vcpu(comm):
    # -name debug-threads=on names vCPU threads "CPU 0/TCG" or "CPU 0/KVM".
    return comm.startswith("CPU ")


def version():
    try:
        out = subprocess.run([QEMU, "--version"], capture_output=True,
                             text=True, timeout=10).stdout
    except OSError:
        return None
    return out.splitlines()[0] if out else None


class Qmp:
    def __init__(self, path, timeout=30):
        self.sock = None
        self.path = path
        end = now() + timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                self.sock = s
                break
            except OSError:
                s.close()
                if now() > end:
                    raise RuntimeError(f"no QMP socket {path}")
                time.sleep(0.05)
        self.f = self.sock.makefile("rwb", buffering=0)
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("QMP connection closed")
            msg = json.loads(line)
            if "event" in msg:
                continue
            return msg

    def cmd(self, name, **args):
        req = {"execute": name}
        if args:
            req["arguments"] = args
        try:
            self.f.write((json.dumps(req) + "\n").encode())
            r = self._read()
        except OSError as e:
            raise RuntimeError(f"QMP {name} on {self.path}: {e}") from e
        if "error" in r:
            raise RuntimeError(f"QMP {name}: {r['error'].get('desc')}")
        return r.get("return")

    def close(self):
        if self.sock:
            self.sock.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cert_dir(pki, out):
    """QEMU's tls-creds-x509 wants fixed file names in one directory."""
    os.makedirs(out, exist_ok=True)
    for src, dst in (("ca.pem", "ca-cert.pem"),
                     ("server.pem", "server-cert.pem"),
                     ("server-key.pem", "server-key.pem"),
                     ("client.pem", "client-cert.pem"),
                     ("client-key.pem", "client-key.pem")):
        shutil.copy(f"{pki}/{src}", f"{out}/{dst}")
    return out


def guest_append(sc):
    return (f"ws={sc['ws']} rate={sc['rate']} zero={sc['zero']} "
            f"dup={sc['dup']} pattern=random hb_ms={sc['hb_ms']}")


def cmdline(ctx, sc, d, incoming):
    """(argv, env) of one QEMU of this scenario, as `ferry-qemu cmdline
    --dir D` prints it, so that QEMU's own migration and Ferry's migrate
    the very same QEMU: guest RAM on a shared memfd (2M hugetlb for the
    hugetlb scenario), the preload in LD_PRELOAD (idle while no agent
    asks it for a uffd), the private QMP socket D/qmp.sock, a fw_cfg
    resume token of this process (migration does not carry it: the guest
    sees the resume and counts its rpasses from there), on the
    destination -incoming defer -S; then the same guest payload, words
    and console for both engines."""
    os.makedirs(d, exist_ok=True)
    fq = [f"{ctx.build}/tools/ferry-qemu/ferry-qemu", "cmdline", "--dir", d,
          "-m", sc["mem"], "--accel", ctx.qemu_accel, "--preload",
          f"{ctx.build}/tools/ferry-qemu/libferry-preload.so"]
    if incoming:
        fq.append("--incoming")
    if sc["backing"].startswith("hugetlb"):
        fq.append("--hugetlb")
    elif sc.get("thp") and getattr(ctx, "thp_dir", None):
        fq += ["--mem-path", ctx.thp_dir]
    fq += ["--", "-name", "bench,debug-threads=on", "-nodefaults",
           "-display", "none", "-kernel", ctx.payload,
           "-append", guest_append(sc),
           # No isa-debug-exit: a guest that finds a bad page stops
           # working but its QEMU stays, so that a postcopy can finish
           # and the run still yields figures (flagged as not verified).
           "-serial", "stdio", "-no-reboot"]
    r = subprocess.run(fq, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"ferry-qemu cmdline: {r.stderr.strip()}")
    words = shlex.split(r.stdout)
    env = dict(os.environ)
    while words and "=" in words[0] and not words[0].startswith("-"):
        k, v = words.pop(0).split("=", 1)
        env[k] = v
    return words, env


def setup(q, ctx, sc, variant, endpoint):
    if sc["tls"]:
        q.cmd("object-add", **{"qom-type": "tls-creds-x509", "id": "tls0",
                               "dir": ctx.qemu_pki, "endpoint": endpoint,
                               "verify-peer": True})
    caps = []
    mode = variant["mode"]
    if mode in ("postcopy", "postcopy-preempt"):
        caps.append({"capability": "postcopy-ram", "state": True})
        caps.append({"capability": "postcopy-blocktime", "state": True})
    if mode == "postcopy-preempt":
        caps.append({"capability": "postcopy-preempt", "state": True})
    if mode == "multifd":
        caps.append({"capability": "multifd", "state": True})
    if caps:
        q.cmd("migrate-set-capabilities", capabilities=caps)
    params = {"downtime-limit": ctx.downtime_ms,
              # QEMU caps migration bandwidth by default; Ferry has no cap.
              "max-bandwidth": 1 << 40}
    if mode == "multifd":
        params["multifd-channels"] = sc["streams"]
    if sc["tls"]:
        params["tls-creds"] = "tls0"
        params["tls-hostname"] = "localhost"
    q.cmd("migrate-set-parameters", **params)


def run(ctx, sc, variant, rundir):
    kids, qmps = [], []
    try:
        sq, dq = f"{rundir}/src/qmp.sock", f"{rundir}/dst/qmp.sock"
        a, env = cmdline(ctx, sc, f"{rundir}/src", False)
        src = Child("src-qemu", a, f"{rundir}/src-qemu.log", env=env)
        kids.append(src)
        await_filled(src, "QEMU", ctx.fill_timeout)
        a, env = cmdline(ctx, sc, f"{rundir}/dst", True)
        # The one difference from Ferry's destination: no -S, since
        # QEMU's own migration starts the guest there by itself.
        a = [w for w in a if w != "-S"]
        dst = Child("dst-qemu", a, f"{rundir}/dst-qemu.log", env=env)
        kids.append(dst)
        s, d = Qmp(sq), Qmp(dq)
        qmps += [s, d]
        setup(s, ctx, sc, variant, "client")
        setup(d, ctx, sc, variant, "server")
        port = free_port()
        d.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
        rate = dirty_rate_mibs(src.heartbeats())
        sampler = CpuSampler([src.pid, dst.pid], is_vcpu)
        sampler.start()
        t0 = now()
        s.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        postcopy = variant["mode"].startswith("postcopy")
        # Ferry gives up converging after --deadline; QEMU has no such
        # limit, so it gets the same plus time to move the working set at
        # 16 MiB/s (TCG and a busy machine make it slow), then is cancelled.
        limit = ctx.deadline_s + int(sc["ws"][:-1]) * (
            1024 if sc["ws"].endswith("G") else 1) / 16
        started_pc = False
        info = {}
        while True:
            info = s.cmd("query-migrate")
            st = info.get("status")
            if st in ("completed", "failed", "cancelled"):
                break
            if (postcopy and not started_pc and st == "active" and
                    info.get("ram", {}).get("dirty-sync-count", 0) >= 2):
                s.cmd("migrate-start-postcopy")
                started_pc = True
            if now() - t0 > limit:
                s.cmd("migrate_cancel")
                raise RuntimeError("QEMU migration did not finish in "
                                   f"{limit:.0f} s")
            time.sleep(0.02)
        t1 = now()
        if info.get("status") != "completed":
            raise RuntimeError(f"QEMU migration {info.get('status')}: "
                               f"{info.get('error-desc', '')}")
        # The guest must run on at the destination, every page verified.
        wait_for(lambda: d.cmd("query-status").get("status") == "running",
                 60)
        # The guest must say that it has checked every page here: with its
        # fw_cfg token changed, rpasses counts passes since the resume.
        rpasses, bad = await_verified(dst, lambda hbs: 1, ctx.verify_timeout)
        sampler.stop()
        dinfo = d.cmd("query-migrate")
        stall, gap, errors = hb_figures([src.heartbeats(), dst.heartbeats()],
                                        t0, t1, sc["hb_ms"])
        dirty_x, work_x = guest_work(src.heartbeats(), dst.heartbeats(),
                                     t0, t1)
        cpu, _ = sampler.cpu()
        ram = info.get("ram", {})
        # A very small guest can complete before QEMU fills total-time in.
        total_s = (info["total-time"] / 1000.0 if info.get("total-time")
                   else t1 - t0)
        nbytes = ram.get("transferred")
        blocked = dinfo.get("postcopy-blocktime") if postcopy else None
        return {
            "migrated": True,
            "total_s": total_s,
            "downtime_ms": info.get("downtime"),
            "stall_ms": stall,
            "hb_gap_ms": gap,
            "guest_dirty_x": dirty_x,
            "guest_work_x": work_x,
            "bytes": nbytes,
            "cpu_s": cpu,
            "throughput_mibs": (nbytes / 1048576 / total_s
                                if nbytes and total_s else None),
            "fault_p50_us": None,
            "fault_p99_us": None,
            "vcpu_blocked_ms": blocked,
            "huge_share": (huge_share(dst.pid, sc["mem_mib"] << 20)
                           if sc.get("thp") else None),
            "rounds": ram.get("dirty-sync-count"),
            "dirty_rate_mibs": rate,
            "postcopy_started": started_pc,
            "verified": not bad and not errors,
            "verify_error": bad or (f"errors={errors}" if errors else None),
            "dest_rpasses": rpasses,
            "wall_s": t1 - t0,
        }
    except (OSError, RuntimeError) as e:
        states = ", ".join(f"{k.name} {'running' if k.poll() is None else 'exit ' + str(k.status)}"
                           for k in kids)
        # Give the destination a moment to finish exiting: a QMP socket
        # that broke is often that QEMU on its way out.
        dst = next((k for k in kids if k.name == "dst-qemu"), None)
        if dst is not None and dst.wait(2) == 0:
            states += ("; the destination QEMU exited 0: under "
                       "-no-reboot, its guest reset or powered off after "
                       "the migration")
        raise RuntimeError(f"{e} ({states})") from e
    finally:
        for q in qmps:
            q.close()
        for k in reversed(kids):
            k.kill()

# SPDX-License-Identifier: LGPL-2.1-or-later
"""One Ferry migration of a QEMU VM for tools/bench ("Ferry on QEMU"): the
very QEMU command line the QEMU engine runs (qemu.cmdline), each QEMU
with its `ferry-qemu serve` link daemon, and ferry-source => ferry-dest
as for ferry-vm (ferry.agents). QEMU moves only its device state, which
the agents carry as the opaque state blob; Ferry moves the RAM."""

import os

import ferry
import qemu
from procs import Child, CpuSampler, wait_for, dirty_rate_mibs, await_filled


def start(ctx, sc, rundir, name, incoming, kids):
    """QEMU NAME (in rundir/NAME) and its link daemon; returns the QEMU
    child once the link's socket is there."""
    d = f"{rundir}/{name}"
    a, env = qemu.cmdline(ctx, sc, d, incoming)
    q = Child(f"{name}-qemu", a, f"{rundir}/{name}-qemu.log", env=env)
    kids.append(q)
    fq = Child(f"{name}-ferry-qemu",
               [f"{ctx.build}/tools/ferry-qemu/ferry-qemu", "serve", "-v",
                "--dir", d], f"{rundir}/{name}-ferry-qemu.log")
    kids.append(fq)
    if not wait_for(lambda: os.path.exists(f"{d}/vm.sock")
                    or fq.poll() is not None or q.poll() is not None, 60):
        raise RuntimeError(f"no VM link for the {name} QEMU")
    if q.poll() is not None:
        raise RuntimeError(f"{name} QEMU exited: {q.text()[-300:]}")
    if fq.poll() is not None:
        raise RuntimeError(f"ferry-qemu serve ({name}) exited: "
                           f"{fq.text()[-300:]}")
    return q, fq


def run(ctx, sc, variant, rundir):
    """Returns a dict of figures, or raises RuntimeError with a reason."""
    kids = []
    try:
        src, sfq = start(ctx, sc, rundir, "src", False, kids)
        await_filled(src, "QEMU", ctx.fill_timeout)
        dst, dfq = start(ctx, sc, rundir, "dst", True, kids)
        rate = dirty_rate_mibs(src.heartbeats())
        # Both QEMUs (vCPU threads excluded, as for the QEMU engine) and
        # both link daemons; the agents' own CPU comes from their rusage.
        sampler = CpuSampler([src.pid, dst.pid, sfq.pid, dfq.pid],
                             qemu.is_vcpu)
        sj, dj, fs, fd, t0, t1 = ferry.agents(
            ctx, sc, variant, rundir, f"{rundir}/src/vm.sock",
            f"{rundir}/dst/vm.sock", kids, sampler)
        return ferry.figures(ctx, sc, sj, dj, src, dst, fs, fd, sampler,
                             t0, t1, rate)
    finally:
        for k in reversed(kids):
            k.kill()

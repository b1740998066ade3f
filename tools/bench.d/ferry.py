# SPDX-License-Identifier: LGPL-2.1-or-later
"""One Ferry migration for tools/bench: ferry-vm (source) -> ferry-source
=> ferry-dest -> ferry-vm --incoming, on loopback."""

import json
import os
import re
import subprocess

from procs import Child, CpuSampler, wait_for, now, hb_figures, \
    dirty_rate_mibs, await_verified, await_filled, huge_share, \
    guest_work


def is_vcpu(comm):
    return comm.startswith("vcpu")


def source_modes(build):
    """The --mode values ferry-source offers, [] when it has no --mode."""
    try:
        out = subprocess.run([f"{build}/tools/ferry-source", "--help"],
                             capture_output=True, text=True, timeout=10)
    except OSError:
        return []
    text = out.stdout + out.stderr
    if "--mode" not in text:
        return []
    # The modes are described on the lines after --mode, one "name:" each.
    after = text[text.index("--mode"):]
    return [m for m in ("postcopy", "hybrid", "auto", "precopy")
            if f"{m}:" in after or f"{m} (" in after] or ["precopy"]


def guest_words(sc):
    return dict(ws=sc["ws"], rate=sc["rate"], zero=sc["zero"],
                dup=sc["dup"], pattern="random", hb_ms=sc["hb_ms"])


def fault_figures(js):
    """Fault latency p50/p99 (us), vCPU blocked time (ms) and the log2
    latency histogram as [upper bound us, faults] pairs, from the source's
    JSON "postcopy" object; None where the migration had no faults."""
    pc = js.get("s", {}).get("postcopy") or {}
    if not pc.get("faults"):
        return None, None, pc.get("vcpu_blocked_ms") or None, None
    hist = [[2 ** i, n] for i, n in
            enumerate(pc.get("fault_latency_log2_us", [])) if n]
    return (pc.get("fault_p50_us"), pc.get("fault_p99_us"),
            pc.get("vcpu_blocked_ms"), hist)


def agents(ctx, sc, variant, rundir, src_sock, dst_sock, kids, sampler):
    """ferry-dest on DST_SOCK and ferry-source on SRC_SOCK, on loopback,
    with the scenario's streams and security; SAMPLER starts with the
    migration. Returns (source JSON, dest JSON, ferry-source, ferry-dest,
    t0, t1) or raises RuntimeError with a reason. Shared by ferry-vm
    (run) and QEMU (fqemu.run) as the VM under the agents."""
    b = ctx.build
    sec_s, sec_c = ctx.ferry_security(sc["tls"])
    # Ferry's default --io-timeout (10 s of silence on a stream) fires on
    # the control stream when round 0 of a large guest takes longer
    # than that (first touch of memory is slow on this machine); a
    # bug of its own, reported by the suite, not a figure to measure.
    tmo = ["--io-timeout", "120s"]
    sec_s, sec_c = sec_s + tmo, sec_c + tmo
    fd = Child("ferry-dest", [f"{b}/tools/ferry-dest", "--vm", dst_sock,
                              "--listen", "127.0.0.1:0", "--json",
                              f"{rundir}/dest.json"] + sec_s,
               f"{rundir}/ferry-dest.log")
    kids.append(fd)
    port = wait_for(lambda: (re.search(r"listening on port (\d+)",
                                       fd.text()) or [None, None])[1],
                    30)
    if not port:
        raise RuntimeError(f"ferry-dest did not listen: {fd.text()}")
    sargs = [f"{b}/tools/ferry-source", "--vm", src_sock,
             "--dest", f"127.0.0.1:{port}", "-n", str(sc["streams"]),
             "--downtime", str(ctx.downtime_ms), "--deadline",
             str(ctx.deadline_s), "-q", "--json",
             f"{rundir}/source.json"] + sec_c
    # Always named where ferry-source has --mode: its default is auto,
    # so "Ferry precopy" without it would be auto again.
    if ctx.ferry_modes:
        sargs += ["--mode", variant["mode"]]
    sampler.start()
    t0 = now()
    fs = Child("ferry-source", sargs, f"{rundir}/ferry-source.log")
    kids.append(fs)
    st = fs.wait(ctx.deadline_s + 120)
    t1 = now()
    fd.wait(30)
    sampler.stop()
    if st != 0:
        raise RuntimeError(f"ferry-source exit {st}: "
                           f"{fs.text().strip()[-300:]}")
    with open(f"{rundir}/source.json") as f:
        sj = json.load(f)
    dj = {}
    if os.path.exists(f"{rundir}/dest.json"):
        with open(f"{rundir}/dest.json") as f:
            dj = json.load(f)
    return sj, dj, fs, fd, t0, t1


def split_figures(sj, dj):
    """The downtime piece by piece (ms) and the state's size (bytes), from
    the agents' JSON "switchover" objects; None for a piece the JSON lacks.
    final_round_ms: the round the VM is paused for, between harvest and
    state: in precopy the last (the pages left), in postcopy the marker
    round before the push rounds (the source's markers_ms). Postcopy's
    stop also has the DISCARD messages and the state's send."""
    s, d = sj.get("switchover") or {}, dj.get("switchover") or {}
    rounds = sj.get("rounds") or []
    back = 1
    if sj.get("mode") == "postcopy":
        back += 1 + (sj.get("postcopy") or {}).get("recoveries", 0)
    last = rounds[-back].get("duration_s") if len(rounds) >= back else None
    if s.get("markers_ms") is not None:
        last = s["markers_ms"] / 1000.0
    return {
        "pause_ms": s.get("pause_ms"),
        "harvest_ms": s.get("harvest_ms"),
        "final_round_ms": None if last is None else last * 1000.0,
        "discard_ms": s.get("discard_ms"),
        "state_save_ms": s.get("state_save_ms"),
        "state_send_ms": s.get("state_send_ms"),
        "drain_ms": d.get("drain_ms"),
        "state_load_ms": d.get("load_ms"),
        "resume_ms": d.get("resume_ms"),
        "state_bytes": s.get("state_bytes", d.get("state_bytes")),
    }


def figures(ctx, sc, sj, dj, src, dst, fs, fd, sampler, t0, t1, rate):
    """The result of one Ferry migration: waits for the destination guest
    to verify every page, then every figure from the agents' JSON, the
    guests' heartbeats and the CPU sampler."""
    # The guest must run on at the destination and say that it has
    # checked every page there: rpasses counts complete passes since
    # it resumed.
    rpasses, bad = await_verified(dst, lambda hbs: 1, ctx.verify_timeout)
    stall, gap, errors = hb_figures([src.heartbeats(), dst.heartbeats()],
                                    t0, t1, sc["hb_ms"])
    dirty_x, work_x = guest_work(src.heartbeats(), dst.heartbeats(), t0, t1)
    vm_cpu, _ = sampler.cpu()
    cpu = vm_cpu + (fs.cpu_s() or 0) + (fd.cpu_s() or 0)
    total_s = sj.get("total_s")
    nbytes = sj.get("bytes", {}).get("total")
    p50, p99, blocked, hist = fault_figures({"s": sj, "d": dj})
    r = {
        "migrated": sj.get("outcome") == "completed",
        "total_s": total_s,
        "downtime_ms": sj.get("downtime_ms"),
        "stall_ms": stall,
        "hb_gap_ms": gap,
        "guest_dirty_x": dirty_x,
        "guest_work_x": work_x,
        "bytes": nbytes,
        "cpu_s": cpu,
        "throughput_mibs": (nbytes / 1048576 / total_s
                            if nbytes and total_s else None),
        "fault_p50_us": p50,
        "fault_p99_us": p99,
        "vcpu_blocked_ms": blocked,
        "fault_hist": hist,
        "huge_share": (huge_share(dst.pid, sc["mem_mib"] << 20)
                       if sc.get("thp") else None),
        "rounds": len(sj.get("rounds", [])),
        "mode_ended": sj.get("mode"),
        "dirty_rate_mibs": rate,
        "wall_s": t1 - t0,
        "verified": not bad and not errors,
        "verify_error": bad or (f"errors={errors}" if errors else None),
        "dest_rpasses": rpasses,
    }
    r.update(split_figures(sj, dj))
    return r


def run(ctx, sc, variant, rundir):
    """Returns a dict of figures, or raises RuntimeError with a reason."""
    b = ctx.build
    vm = f"{b}/tools/ferry-vm/ferry-vm"
    w = guest_words(sc)
    gargs = ["--accel", ctx.ferry_accel, "-m", sc["mem"], "-b", sc["backing"],
             "--ws", w["ws"], "--rate", str(w["rate"]),
             "--zero", str(w["zero"]), "--dup", str(w["dup"]),
             "--pattern", w["pattern"], "--heartbeat-ms", str(w["hb_ms"])]
    if sc.get("thp"):
        gargs.append("--thp")
    kids = []
    try:
        src = Child("src-vm", [vm, "-s", f"{rundir}/src.sock"] + gargs,
                    f"{rundir}/src-vm.log")
        kids.append(src)
        await_filled(src, "ferry-vm", ctx.fill_timeout, 30)
        dst = Child("dst-vm", [vm, "-s", f"{rundir}/dst.sock", "--incoming"]
                    + gargs, f"{rundir}/dst-vm.log")
        kids.append(dst)
        if not wait_for(lambda: os.path.exists(f"{rundir}/dst.sock"), 60):
            raise RuntimeError("incoming ferry-vm has no socket")
        rate = dirty_rate_mibs(src.heartbeats())
        sampler = CpuSampler([src.pid, dst.pid], is_vcpu)
        sj, dj, fs, fd, t0, t1 = agents(ctx, sc, variant, rundir,
                                        f"{rundir}/src.sock",
                                        f"{rundir}/dst.sock", kids, sampler)
        return figures(ctx, sc, sj, dj, src, dst, fs, fd, sampler, t0, t1,
                       rate)
    finally:
        for k in reversed(kids):
            k.kill()

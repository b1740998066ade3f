# SPDX-License-Identifier: LGPL-2.1-or-later
"""Statistics, the terminal table, the Markdown report and the gnuplot
figures of tools/bench."""

import os
import statistics
import subprocess

import placement

# (key, heading, unit, format, lower is better)
FIGURES = [
    ("total_s", "total", "s", "{:.2f}", True),
    ("downtime_ms", "downtime", "ms", "{:.0f}", True),
    ("stall_ms", "guest stall", "ms", "{:.0f}", True),
    ("hb_gap_ms", "HB gap", "ms", "{:.0f}", True),
    # The guest's work while migrating against its own before (procs.py
    # guest_work): 1.00 is not slowed at all.
    ("guest_dirty_x", "guest dirty", "x", "{:.2f}", False),
    ("guest_work_x", "guest work", "x", "{:.2f}", False),
    ("bytes", "wire", "MiB", "{:.0f}", True),
    ("cpu_s", "CPU", "s", "{:.2f}", True),
    ("throughput_mibs", "thruput", "MiB/s", "{:.0f}", False),
    ("fault_p50_us", "fault p50", "us", "{:.0f}", True),
    ("fault_p99_us", "fault p99", "us", "{:.0f}", True),
    ("vcpu_blocked_ms", "vCPU blocked", "ms", "{:.0f}", True),
    # The destination VM's RAM mapped with huge pages (smaps_rollup's
    # ShmemPmdMapped against the RAM size), after the guest verified.
    ("huge_share", "huge RAM", "x", "{:.2f}", False),
]
POSTCOPY_ONLY = {"fault_p50_us", "fault_p99_us", "vcpu_blocked_ms",
                 "discard_ms", "state_send_ms"}
THP_ONLY = {"huge_share"}
DIRTY_ONLY = {"guest_dirty_x"}
# Ferry's downtime piece by piece (from the agents' JSON "switchover"
# objects and the last round), and the size of the VM's state blob.
SPLIT = [
    ("pause_ms", "pause", "ms", "{:.1f}", True),
    ("harvest_ms", "harvest", "ms", "{:.1f}", True),
    ("final_round_ms", "final round", "ms", "{:.1f}", True),
    ("discard_ms", "DISCARD", "ms", "{:.1f}", True),
    ("state_save_ms", "state save", "ms", "{:.1f}", True),
    ("state_send_ms", "state send", "ms", "{:.1f}", True),
    ("drain_ms", "dest drain", "ms", "{:.1f}", True),
    ("state_load_ms", "state load", "ms", "{:.1f}", True),
    ("resume_ms", "resume", "ms", "{:.1f}", True),
    ("state_bytes", "state", "KiB", "{:.0f}", True),
]
# The two tables: Ferry on the very QEMU VM against QEMU (the headline),
# then ferry-vm against the same QEMU runs.
TABLES = [("fqemu", "Ferry on QEMU against QEMU, the same QEMU VM"),
          ("ferry", "Ferry on ferry-vm (no-KVM, native threads) against "
                    "QEMU (TCG): not like for like")]


def scale(key, v):
    return {"bytes": v / 1048576, "state_bytes": v / 1024}.get(key, v)


def summarize(runs):
    """{key: {median, min, max, n}} over the runs that migrated."""
    ok = [r for r in runs if r.get("migrated")]
    out = {"runs": len(runs), "migrated": len(ok)}
    for key, *_ in FIGURES + SPLIT + [("dirty_rate_mibs",), ("rounds",)]:
        vals = [r[key] for r in ok if r.get(key) is not None]
        if vals:
            out[key] = {"median": statistics.median(vals), "min": min(vals),
                        "max": max(vals), "n": len(vals)}
        else:
            out[key] = None
    return out


def cell(key, s, fmt):
    if not s:
        return "n/a"
    m, lo, hi = (scale(key, s[x]) for x in ("median", "min", "max"))
    if s["n"] > 1:
        return f"{fmt.format(m)} ({fmt.format(lo)}-{fmt.format(hi)})"
    return fmt.format(m)


def ratio(f, q, key):
    if not f or not q or not q["median"]:
        return "n/a"
    return f"{f['median'] / q['median']:.2f}"


def rows(result, ours="ferry"):
    """Table rows: one per (scenario, variant) of engine OURS and of QEMU,
    then one ratio row per pair; scenarios without OURS are left out."""
    out = []
    for sc in result["scenarios"]:
        fer = [v for v in sc["variants"] if v["engine"] == ours]
        qem = [v for v in sc["variants"] if v["engine"] == "qemu"]
        if not fer:
            continue
        for v in fer + qem:
            cells = []
            for key, _, _, fmt, _ in FIGURES:
                cells.append(cell(key, v["summary"][key], fmt))
            cells.append(cell("dirty_rate_mibs",
                              v["summary"].get("dirty_rate_mibs"), "{:.0f}"))
            note = v.get("note", "")
            nbad = sum(1 for r in v["runs"] if r.get("migrated") and
                       not r.get("verified", True))
            if nbad:
                note = (note + " " if note else "") + \
                    f"guest did not verify at the destination after " \
                    f"{nbad}/{len(v['runs'])} run(s)"
            if v["summary"]["migrated"] < v["summary"]["runs"]:
                note = (note + " " if note else "") + \
                    f"{v['summary']['runs'] - v['summary']['migrated']} " \
                    "run(s) failed"
            out.append((sc["name"], v["label"], cells, note))
        for f in fer:
            for q in qem:
                cells = [ratio(f["summary"][k], q["summary"][k], k)
                         for k, *_ in FIGURES] + [""]
                out.append((sc["name"], f"ratio {f['label']} / "
                            f"{q['label']}", cells, ""))
    return out


AUTO_TOTAL_BOUND = 1.2   # issue 18: auto's total within 1.2x the better


def auto_rows(result):
    """Ferry auto (ferry-vm) against the better of its precopy and
    postcopy in each scenario, on medians: auto must match or beat the
    better downtime and stay within AUTO_TOTAL_BOUND of the better total
    time. One row per scenario that ran all three."""
    out = []
    for sc in result["scenarios"]:
        by = {}
        for v in sc["variants"]:
            if v["engine"] == "ferry":
                by.setdefault(v["mode"], v["summary"])
        if not all(by.get(m) for m in ("auto", "precopy", "postcopy")):
            continue
        def med(m, k):
            x = by[m].get(k)
            return x["median"] if x else None
        a_t, a_d = med("auto", "total_s"), med("auto", "downtime_ms")
        ts = [t for t in (med("precopy", "total_s"),
                          med("postcopy", "total_s")) if t is not None]
        ds = [d for d in (med("precopy", "downtime_ms"),
                          med("postcopy", "downtime_ms")) if d is not None]
        if a_t is None or a_d is None or not ts or not ds:
            continue
        bt, bd = min(ts), min(ds)
        rt, rd = a_t / bt, (a_d / bd if bd > 0 else float("inf"))
        ok_t, ok_d = rt <= AUTO_TOTAL_BOUND, a_d <= bd
        out.append((sc["name"], [
            f"{a_t:.2f}", f"{med('precopy', 'total_s') or 0:.2f}",
            f"{med('postcopy', 'total_s') or 0:.2f}", f"{rt:.2f}",
            "yes" if ok_t else "NO",
            f"{a_d:.1f}", f"{med('precopy', 'downtime_ms') or 0:.1f}",
            f"{med('postcopy', 'downtime_ms') or 0:.1f}", f"{rd:.2f}",
            "yes" if ok_d else "NO"]))
    return out


AUTO_HEADINGS = ["auto total (s)", "precopy", "postcopy",
                 "auto / better", f"<= {AUTO_TOTAL_BOUND}",
                 "auto downtime (ms)", "precopy", "postcopy",
                 "auto / better", "<= 1"]


def split_rows(result, ours="fqemu"):
    """Ferry's downtime split, one row per variant of engine OURS: the
    downtime, then its pieces, what is left (the wire, COMMIT, messages)
    and the state blob's size."""
    out = []
    for sc in result["scenarios"]:
        for v in sc["variants"]:
            if v["engine"] != ours:
                continue
            s = v["summary"]
            cells = [cell("downtime_ms", s["downtime_ms"], "{:.1f}")]
            # .get: results.json of older runs lack the newer pieces
            cells += [cell(k, s.get(k), fmt)
                      for k, _, _, fmt, _ in SPLIT[:-1]]
            parts = [s[k]["median"] for k, *_ in SPLIT[:-1] if s.get(k)]
            rest = (s["downtime_ms"]["median"] - sum(parts)
                    if s["downtime_ms"] and parts else None)
            cells.append("n/a" if rest is None else f"{rest:.1f}")
            cells.append(cell("state_bytes", s.get("state_bytes"),
                              "{:.0f}"))
            out.append((sc["name"], v["label"], cells, ""))
    return out


def split_headings():
    return (["downtime (ms)"] +
            [f"{h} ({u})" for _, h, u, _, _ in SPLIT[:-1]] +
            ["rest (ms)", "state (KiB)"])


def headings():
    return [f"{h} ({u})" for _, h, u, _, _ in FIGURES] + \
        ["guest dirty (MiB/s)"]


def _text(hs, body, group=True):
    widths = [max(len(str(r[i])) for r in [hs] + body)
              for i in range(len(hs))]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(hs, widths))]
    lines.append("  ".join("-" * w for w in widths))
    prev = None
    for r in body:
        if group and prev is not None and r[0] != prev:
            lines.append("")
        prev = r[0]
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    return "\n".join(lines)


def placements(result):
    return [sc for sc in result["scenarios"]
            if sc.get("kind") == "placement"]


def table_text(result):
    out = []
    for sc in placements(result):
        out += [f"-- {sc['name']}: {placement.header(sc)}"]
        for hs, body in (placement.policy_rows(sc), placement.ksm_rows(sc)):
            if body:
                out += [_text(hs, body, group=False), ""]
    for ours, title in TABLES:
        body = [[s, e] + c + [n] for s, e, c, n in rows(result, ours)]
        if not body:
            continue
        out += [f"-- {title}",
                _text(["scenario", "engine"] + headings() + ["note"], body),
                ""]
        if ours == "fqemu":
            sb = [[s, e] + c for s, e, c, _ in split_rows(result, ours)]
            out += ["-- Ferry on QEMU: the downtime piece by piece "
                    "(medians)",
                    _text(["scenario", "engine"] + split_headings(), sb),
                    ""]
    ab = [[n] + c for n, c in auto_rows(result)]
    if ab:
        out += ["-- Ferry auto against the better of Ferry precopy and "
                "postcopy (ferry-vm, medians)",
                _text(["scenario"] + AUTO_HEADINGS, ab), ""]
    return "\n".join(out).rstrip()


def limits_text(result):
    lim = result["limits"]
    out = [f"memcpy {lim.get('memcpy_gbs', 'n/a')} GB/s, AES-128-GCM "
           f"(1 core) {lim.get('aes128gcm_gbps', 'n/a')} GB/s, plain TCP "
           f"loopback {lim.get('tcp_loopback_gbps', 'n/a')} GB/s, one "
           f"userfaultfd round trip (MISSING fault + UFFDIO_COPY, same "
           f"CPU) p50 {lim.get('uffd_rtt_us', 'n/a')} us"]
    hs = ["scenario", "Ferry thruput / wire limit",
          "Ferry time / ideal time", "Ferry fault p50 / uffd RTT"]
    body = []
    for sc in result["scenarios"]:
        for v in sc["variants"]:
            if v["engine"] not in ("ferry", "fqemu"):
                continue
            s = v["summary"]
            wire = lim.get("aes128gcm_gbps" if sc["tls"] else
                           "tcp_loopback_gbps")
            r1 = r2 = r3 = "n/a"
            if s["throughput_mibs"] and wire:
                r1 = (f"{s['throughput_mibs']['median'] * 1048576 / 1e9 / wire:.2f}"
                      f" (of {'AES-GCM' if sc['tls'] else 'TCP'} "
                      f"{wire} GB/s)")
            if s["total_s"] and s["bytes"] and wire:
                ideal = s["bytes"]["median"] / (wire * 1e9)
                r2 = f"{s['total_s']['median'] / ideal:.1f}"
            if s["fault_p50_us"] and lim.get("uffd_rtt_us"):
                r3 = f"{s['fault_p50_us']['median'] / lim['uffd_rtt_us']:.1f}"
            body.append([f"{sc['name']} ({v['label']})", r1, r2, r3])
    return out[0], hs, body


def write_markdown(result, path, plots):
    m = result["meta"]
    L = [f"# Ferry vs QEMU migration benchmark", "",
         f"Command: `{m['command']}`  ", f"Date: {m['date']}  ",
         f"Machine: {m['machine']}  ",
         f"QEMU: {m['qemu_version']}, accelerator {m['qemu_accel'].upper()}"
         f": {m['qemu_accel_why']}  ",
         f"ferry-vm: {m['ferry_vm_mode']}  ",
         f"Accelerator probe (one per run, both engines follow its use=): "
         f"`ferry-vm --probe-accel` said `{m.get('accel_probe', 'n/a')}`  ",
         f"Ferry postcopy: {m['ferry_postcopy']}  ",
         f"Repeats: {m['repeats']} (median, min-max in parentheses)  ",
         f"Load average (1, 5, 15 min) at start {m['loadavg_start']}, at "
         f"end {m['loadavg_end']}: other work on this 2-CPU machine during "
         f"the run makes every figure noisier.  ", ""]
    if m.get("shrunk"):
        L += [f"**Warning: {m['shrunk']}.**", ""]
    if m.get("partial"):
        L += ["**Partial: the suite was cut short; these are the scenarios "
              "it had measured.**", ""]
    L += ["## Machine limits (same run)", "", limits_text(result)[0], ""]
    def md(hs, body):
        L.append("| " + " | ".join(hs) + " |")
        L.append("|" + "---|" * len(hs))
        for r in body:
            L.append("| " + " | ".join(r) + " |")
        L.append("")

    for sc in placements(result):
        L += ["## Placement on the nested NUMA host", "",
              placement.header(sc), "", placement.NOTE, ""]
        for hs, body in (placement.policy_rows(sc), placement.ksm_rows(sc)):
            if body:
                md(hs, body)

    for ours, title in TABLES:
        body = [[s, e] + c + [n] for s, e, c, n in rows(result, ours)]
        if not body:
            continue
        L += [f"## {title}", ""]
        md(["scenario", "engine"] + headings() + ["note"], body)
        if ours == "fqemu":
            L += ["### Ferry on QEMU: the downtime piece by piece", "",
                  "Medians (min-max). pause: PAUSE sent until QEMU's "
                  "vCPUs are stopped (`stop`, then `query-status`); "
                  "harvest: the last PAGEMAP_SCAN of the write-protected "
                  "RAM; final round: the pages left (postcopy: the marker "
                  "round); state save: QEMU's device-state stream "
                  "(`migrate fd:` under x-ignore-shared) read to its end; "
                  "dest drain: from the state's arrival at ferry-dest to "
                  "its load (precopy: the last pages placed, the uffd "
                  "released); state load: `migrate-incoming fd:` at the "
                  "destination until completed; resume: `cont`; rest: the "
                  "median downtime minus the medians of those shown (COMMIT, the "
                  "state on the wire, the messages in between); state: "
                  "the blob's size.", ""]
            md(["scenario", "engine"] + split_headings(),
               [[s, e] + c for s, e, c, _ in split_rows(result, ours)])
    ab = [[n] + c for n, c in auto_rows(result)]
    if ab:
        L += ["## Ferry auto against the better of its precopy and "
              "postcopy", "",
              f"Ferry on ferry-vm, medians. auto is to match or beat the "
              f"better downtime and stay within {AUTO_TOTAL_BOUND}x the "
              f"better total time.", ""]
        md(["scenario"] + AUTO_HEADINGS, ab)
    _, lh, lb = limits_text(result)
    if lb:
        L += ["## Ferry against the machine's limits", ""]
        md(lh, lb)
    L += ["## Scenarios", ""]
    for sc in result["scenarios"]:
        L.append(f"- **{sc['name']}**: {sc['desc']}")
    L += ["", "## What the figures mean", "", *m["legend"], ""]
    if plots:
        L += ["## Plots", ""]
        for p in plots:
            L.append(f"![{os.path.basename(p)}]({os.path.basename(p)})")
        L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def _plot_data(result, key, path):
    """Rows: label, then median min max of Ferry on QEMU, of QEMU and of
    Ferry on ferry-vm (0 where absent): one row per (scenario, QEMU
    variant), with the scenario's first variant of each Ferry engine."""
    n = 0
    with open(path, "w") as f:
        for sc in result["scenarios"]:
            def first(engine):
                return next((v for v in sc["variants"]
                             if v["engine"] == engine), None)
            qem = [v for v in sc["variants"] if v["engine"] == "qemu"]
            for q in qem:
                vals = []
                for v in (first("fqemu"), q, first("ferry")):
                    s = v["summary"][key] if v else None
                    if s:
                        vals += [scale(key, s[x]) for x in
                                 ("median", "min", "max")]
                    else:
                        vals += [0, 0, 0]
                label = sc["name"] if len(qem) == 1 else \
                    f"{sc['name']}/{q['mode']}"
                f.write(f"\"{label}\" " + " ".join(f"{x:.4f}" for x in vals)
                        + "\n")
                n += 1
    return n


def plots(result, outdir):
    """PNG figures with gnuplot; returns the paths written."""
    written = []
    accel = result["meta"]["qemu_accel"].upper()
    vm_accel = result["meta"].get("ferry_vm_accel", "none")
    for key, title, unit in (("total_s", "Total migration time", "s"),
                             ("bytes", "Bytes on the wire", "MiB"),
                             ("downtime_ms", "Downtime (as each engine reports it)",
                              "ms"),
                             ("cpu_s", "CPU seconds (all processes, "
                              "guest vCPU threads excluded)", "s")):
        dat = f"{outdir}/{key}.dat"
        if not _plot_data(result, key, dat):
            continue
        png = f"{outdir}/{key}.png"
        gp = f"""
set terminal pngcairo size 1100,520 font ',10'
set output '{png}'
set title '{title}: Ferry and QEMU migrating the same QEMU VM ({accel}); Ferry on ferry-vm --accel {vm_accel}; median, bars min-max'
set ylabel '{unit}'
set style data histograms
set style histogram errorbars gap 2 lw 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics rotate by -25 noenhanced
set grid ytics
set key top right
set yrange [0:*]
plot '{dat}' using 2:3:4:xtic(1) title 'Ferry on QEMU' lc rgb '#1f77b4', \\
     '' using 5:6:7 title 'QEMU' lc rgb '#d62728', \\
     '' using 8:9:10 title 'Ferry on ferry-vm' lc rgb '#9ecae1'
"""
        if _gnuplot(gp):
            written.append(png)
    png = f"{outdir}/fault_latency.png"
    if any(sc["variants"] for sc in result["scenarios"]) and \
            _fault_plot(result, outdir, png):
        written.append(png)
    for sc in placements(result):
        written += placement.plots(sc, outdir, _gnuplot)
    return written


def _fault_plot(result, outdir, png):
    """Ferry's fault-latency distribution where its JSON has one; QEMU
    reports no per-fault latency, only the vCPU blocked time."""
    hist, who = None, "Ferry"
    # The last run that has one; Ferry on QEMU's before ferry-vm's.
    for engine in ("ferry", "fqemu"):
        for sc in result["scenarios"]:
            for v in sc["variants"]:
                for r in v.get("runs", []) if v["engine"] == engine else []:
                    if r.get("fault_hist"):
                        hist = r["fault_hist"]
                        who = f"{v['label']}, {sc['name']}"
    dat = f"{outdir}/fault_latency.dat"
    pts = []
    if isinstance(hist, dict):
        for k, c in hist.items():
            try:
                pts.append((float(k), float(c)))
            except (TypeError, ValueError):
                pass
    elif isinstance(hist, list):
        for e in hist:
            if isinstance(e, dict):
                lo = e.get("us", e.get("le_us", e.get("upper_us")))
                c = e.get("count", e.get("n"))
                if lo is not None and c is not None:
                    pts.append((float(lo), float(c)))
            elif isinstance(e, (list, tuple)) and len(e) == 2:
                pts.append((float(e[0]), float(e[1])))
    pts.sort()
    lim = result["limits"].get("uffd_rtt_us")
    if pts:
        with open(dat, "w") as f:
            for x, c in pts:
                f.write(f"{x} {c}\n")
        body = (f"set logscale x\nset xlabel 'fault latency (us)'\n"
                f"set ylabel 'faults'\n"
                + (f"set arrow from {lim},graph 0 to {lim},graph 1 nohead "
                   f"dt 2\nset label 'uffd round trip' at {lim},graph 0.95\n"
                   if lim else "")
                + f"plot '{dat}' using 1:2 with boxes title '{who}' "
                  "lc rgb '#1f77b4'\n")
    else:
        body = ("unset border\nunset xtics\nunset ytics\nset xrange [0:1]\n"
                "set yrange [0:1]\nset label 1 'Ferry postcopy: not "
                "available in this build, so no fault latencies to plot.' "
                "at 0.5,0.6 center\nset label 2 'QEMU reports no per-fault "
                "latency (only vCPU blocked time, in the table).' at "
                "0.5,0.45 center\nplot 2 notitle\n")
    gp = (f"set terminal pngcairo size 900,450 font ',10'\n"
          f"set output '{png}'\nset title 'Postcopy fault latency "
          f"distribution'\n" + body)
    return _gnuplot(gp)


def _gnuplot(script):
    try:
        r = subprocess.run(["gnuplot"], input=script, text=True,
                           capture_output=True, timeout=60)
    except OSError:
        return False
    if r.returncode != 0:
        print(f"bench: gnuplot failed: {r.stderr.strip()[:300]}")
    return r.returncode == 0

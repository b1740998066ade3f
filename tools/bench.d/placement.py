# SPDX-License-Identifier: LGPL-2.1-or-later
"""The placement set of tools/bench (opt-in: --only placement): guests
migrated from this host into the nested NUMA host (tools/nested/host: a
6.12 kernel under QEMU TCG, node 0 with the CPUs, node 1 CPU-less and
slower by HMAT, the CXL stand-in), booted once for the set.

- A guest that keeps writing a known 10% of its memory (the hot set: the
  first 10% of its working set) moves in once per policy (local, bind:1,
  interleave:0-1, tiered with --fast-share); per policy: MiB planned and
  placed per node (ferry-dest's JSON), the fraction of pages as planned,
  the share of the hot set's pages on node 0 (asked of the kernel inside
  with tools/nested/pages, move_pages on the incoming VMM's pid), the
  migration's time and downtime.
- An anonymous guest of which half the pages are copies of eight
  templates moves in twice, without KSM hints and with, under
  interleave:0-1, KSM running with merge_across_nodes 0 (set inside for
  the set and put back at its end: with 1 ksmd may merge a page into one
  on the other node, undoing the placement): KSM's pages_sharing and the
  VMM's Pss at completion and some seconds later.

The stream is plain TCP (ferry --insecure): AES-GCM runs at about 8 MB/s
under TCG inside (openssl speed there), which would make TLS, not Ferry,
the figure. TCG does not model the latency difference between the
nodes: nothing here says how fast the guest runs afterwards. Every
migration counts only when the guest, inside, completed a verification
pass over its whole working set since it resumed there.
"""

import json
import os
import re
import subprocess
import tempfile
import time

from procs import Child, wait_for, now, await_filled, parse_heartbeats

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
HOST = f"{TOP}/tools/nested/host"
KSM = "/sys/kernel/mm/ksm"
POLICIES = [("local", []), ("bind:1", []), ("interleave:0-1", []),
            ("tiered", ["--fast-share", "25"])]
KSM_POLICY = "interleave:0-1"
KSM_LATER_S = (5, 10, 20)  # footprint samples after completion


def scenario(ws):
    return dict(
        name="placement", kind="placement", opt_in=True, ws=ws, rate=8,
        hot=10, zero=0, dup=0, tls=False, backing="shmem", streams=1,
        variants=[],
        desc="inside the nested NUMA host (QEMU TCG, node 1 CPU-less): "
             f"a {ws} guest writing a known 10% of its memory at 8 MiB/s "
             "under local, bind:1, interleave:0-1 and tiered (fast share "
             "25%); then a 50%-duplicate anonymous guest without and with "
             f"KSM hints ({KSM_POLICY}, KSM run 1, merge_across_nodes 0); "
             "plain TCP; opt-in (--only placement)")


class Nested:
    """The nested host of the set: DIR is its read-write share."""

    def __init__(self, d):
        self.d = d
        self.info = None

    def start(self):
        r = subprocess.run([HOST, "start", self.d], capture_output=True,
                           text=True, timeout=180)
        if r.returncode == 77:
            return r.stderr.strip() or "no kernel"
        if r.returncode != 0:
            raise RuntimeError(f"nested host: {r.stderr.strip()[-300:]}")
        self.info = dict(w.split("=", 1) for w in r.stdout.split()
                         if "=" in w)
        return None

    def port(self):
        return self.info["port"]

    def run(self, cmd, timeout=60):
        r = subprocess.run([HOST, "run", self.d, "-t", str(timeout), cmd],
                           capture_output=True, text=True,
                           timeout=timeout + 30)
        if r.returncode != 0:
            raise RuntimeError(f"inside, '{cmd[:60]}': exit {r.returncode}: "
                               f"{(r.stdout + r.stderr).strip()[-200:]}")
        return r.stdout.strip()

    def spawn(self, name, cmd):
        subprocess.run([HOST, "spawn", self.d, name, cmd], check=True)

    def out(self, name):
        try:
            with open(f"{self.d}/jobs/{name}.out") as f:
                return f.read()
        except OSError:
            return ""

    def rc(self, name):
        try:
            with open(f"{self.d}/jobs/{name}.rc") as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def stop(self):
        subprocess.run([HOST, "stop", self.d], capture_output=True,
                       timeout=60)


def vm_args(g):
    a = ["-m", g["mem"], "-b", g["backing"], "--ws", g["ws"],
         "--rate", str(g["rate"]), "--zero", str(g["zero"]),
         "--dup", str(g["dup"]), "--heartbeat-ms", "1000"]
    if g.get("hot"):
        a += ["-a", f"hot={g['hot']}"]
    return a


def numa_figures(dj):
    p = dj.get("numa") or {}
    out = dict(policy=p.get("policy"), as_planned=p.get("as_planned"),
               pages_present=p.get("pages_present"),
               hot_chunks=p.get("hot_chunks"),
               hot_chunks_top=p.get("hot_chunks_on_top_tier"),
               heat_samples=p.get("heat_samples"),
               planned_mib={}, placed_mib={})
    for n in p.get("nodes", []):
        out["planned_mib"][str(n["node"])] = n["planned_bytes"] / 1048576
        if "placed_bytes" in n:
            out["placed_mib"][str(n["node"])] = n["placed_bytes"] / 1048576
    return out


def where(nh, name, lines, start, length):
    """tools/nested/pages' line for the incoming VM's guest-physical range
    [START, +LENGTH), as {node: pages, "absent": pages}."""
    m = re.search(r" (0x[0-9a-f]+)$", next(
        (ln for ln in lines if " RAM at 0x" in ln), " none"))
    if not m:
        raise RuntimeError("the VM inside printed no 'RAM at' line")
    ram = int(m.group(1), 16)
    line = nh.run(f"{nh.pages} $(cat /run/{name}.pid) {ram + start} "
                  f"{length}")
    return {k: int(v) for k, v in (w.split("=") for w in line.split())}


def footprint(nh, name):
    line = nh.run(f"echo $(cat {KSM}/pages_sharing) $(sed -n "
                  f"'s/^Pss: *\\([0-9]*\\) kB/\\1/p' "
                  f"/proc/$(cat /run/{name}.pid)/smaps_rollup)")
    sharing, pss = line.split()
    return int(sharing), int(pss)


def ksmd_cpu_s(nh):
    """ksmd's CPU seconds so far inside (utime + stime of its
    /proc/PID/stat, in clock ticks of 1/100 s), or None."""
    try:
        line = nh.run("p=$(pgrep -x ksmd) && awk '{print $14 + $15}' "
                      "/proc/$p/stat")
        return int(line.split()[0]) / 100.0
    except (RuntimeError, ValueError, IndexError):
        return None


def migrate(ctx, nh, g, policy, dargs, rundir, ksm_samples=False):
    """One guest G from this host into the nested one under POLICY; its
    figures, or raises RuntimeError with a reason."""
    b = ctx.build
    name = f"p{len(os.listdir(nh.d + '/jobs'))}-{int(time.time())}"
    vm = f"{b}/tools/ferry-vm/ferry-vm"
    kids = []
    try:
        src = Child("src-vm", [vm, "--accel", ctx.ferry_accel, "-s",
                               f"{rundir}/src.sock"] + vm_args(g),
                    f"{rundir}/src-vm.log")
        kids.append(src)
        nh.spawn(f"{name}-vm", f"echo $$ >/run/{name}.pid; exec {vm} -v "
                 f"--accel none -s /run/{name}.sock "
                 f"{' '.join(vm_args(g))} --incoming")
        nh.spawn(f"{name}-dest", f"while ! test -S /run/{name}.sock; do "
                 f"sleep 0.1; done; exec {b}/tools/ferry-dest --vm "
                 f"/run/{name}.sock --listen 0.0.0.0:7000 --insecure "
                 f"--accept-timeout 180 --io-timeout 120s --json "
                 f"{nh.d}/{name}-dest.json --placement {policy} "
                 f"{' '.join(dargs)}")
        await_filled(src, "ferry-vm", ctx.fill_timeout, 30)
        if not wait_for(lambda: "listening on port" in
                        nh.out(f"{name}-dest"), 90, 0.2):
            raise RuntimeError("ferry-dest inside did not listen: "
                               f"{nh.out(name + '-dest')[-300:]}")
        ksmd0 = ksmd_cpu_s(nh) if ksm_samples else None
        t0 = now()
        fs = Child("ferry-source",
                   [f"{b}/tools/ferry-source", "--vm", f"{rundir}/src.sock",
                    "--dest", f"127.0.0.1:{nh.port()}", "--insecure", "-q",
                    "--io-timeout", "120s", "--downtime",
                    str(ctx.downtime_ms), "--json",
                    f"{rundir}/source.json"],
                   f"{rundir}/ferry-source.log")
        kids.append(fs)
        st = fs.wait(300)
        wall = now() - t0
        if st != 0:
            raise RuntimeError(f"ferry-source exit {st}: "
                               f"{fs.text().strip()[-300:]}")
        ksmd1 = ksmd_cpu_s(nh) if ksmd0 is not None else None
        if not wait_for(lambda: nh.rc(f"{name}-dest") is not None, 60,
                        0.2):
            raise RuntimeError("ferry-dest inside did not end")
        if nh.rc(f"{name}-dest") != 0:
            raise RuntimeError("ferry-dest inside failed: "
                               f"{nh.out(name + '-dest').strip()[-300:]}")
        with open(f"{rundir}/source.json") as f:
            sj = json.load(f)
        with open(f"{nh.d}/{name}-dest.json") as f:
            dj = json.load(f)
        r = dict(policy=policy, migrated=sj.get("outcome") == "completed",
                 total_s=sj.get("total_s"), wall_s=wall,
                 downtime_ms=sj.get("downtime_ms"),
                 bytes=(sj.get("bytes") or {}).get("total"),
                 rounds=len(sj.get("rounds", [])))
        r.update(numa_figures(dj))
        k = dj.get("ksm") or {}
        r["ksm"] = dict(hints=k.get("hints"),
                        advised_ranges=k.get("advised_ranges"),
                        hinted_pages=k.get("hinted_pages"),
                        run=k.get("run"),
                        merge_across_nodes=k.get("merge_across_nodes"),
                        samples=[[0, k.get("pages_sharing"),
                                  k.get("vmm_pss_kib")]],
                        # ksmd shares the nested host's one TCG thread
                        # with ferry-dest: its CPU during the migration
                        ksmd_cpu_s=(round(ksmd1 - ksmd0, 2)
                                    if ksmd1 is not None else None))
        t_done = now()
        # The guest inside: a whole verification pass since its resume.
        def passed():
            hbs = parse_heartbeats(nh.out(f"{name}-vm").splitlines())
            bad = re.search(r"^(ERR .*|HB .* errors=[1-9].*)$",
                            nh.out(f"{name}-vm"), re.M)
            return bad.group(1) if bad else (
                hbs and hbs[-1].get("rpasses", 0) >= 1)
        v = wait_for(passed, ctx.verify_timeout, 0.5)
        r["verified"] = v is True
        if v is not True:
            r["verify_error"] = v or (f"no whole pass inside in "
                                      f"{ctx.verify_timeout} s")
        lines = nh.out(f"{name}-vm").splitlines()
        guest = next((ln for ln in src.text().splitlines()
                      if ln.startswith("GUEST ")), "")
        gw = dict(w.split("=", 1) for w in guest.split()[1:] if "=" in w)
        if g.get("hot"):
            n = int(gw["pages"]) * g["hot"] // 100
            h = where(nh, name, lines, int(gw["ws_gpa"], 16), n * 4096)
            r["hot_pages"] = h
            inmem = h.get("node0", 0) + h.get("node1", 0)
            r["hot_share_node0"] = (h.get("node0", 0) / inmem
                                    if inmem else None)
        if ksm_samples:
            for s in KSM_LATER_S:
                time.sleep(max(0.0, t_done + s - now()))
                r["ksm"]["samples"].append(
                    [round(now() - t_done, 1), *footprint(nh, name)])
            r["ram_pages_later"] = where(nh, name, lines, 0,
                                         int(g["mem"][:-1]) << 20)
        return r
    finally:
        try:
            nh.run(f"kill $(cat /run/{name}.pid) 2>/dev/null; true")
        except RuntimeError:
            pass
        for k in reversed(kids):
            k.kill()


def run_set(ctx, sc, keep_logs):
    """The whole set; a result dict for results.json (kind placement)."""
    res = dict(name=sc["name"], kind="placement", desc=sc["desc"],
               ws=sc["ws"], mem=sc["mem"], rate=sc["rate"], hot=sc["hot"],
               tls=False, backing=sc["backing"], variants=[], policies=[],
               ksm=[])
    t_set = now()
    nd = tempfile.mkdtemp(prefix="nested-", dir=ctx.tmp)
    nh = Nested(nd)
    nh.pages = f"{ctx.build}/tools/nested/pages"
    print(f"== {sc['name']}: {sc['desc']}", flush=True)
    why = nh.start()
    if why:
        print(f"== {sc['name']}: skipped, {why}")
        res["skipped"] = True
        res["skip_reason"] = why
        return res
    res["nested"] = dict(nh.info, boot_s=float(nh.info.get("boot_s", 0)))
    print(f"   nested host: {nh.info}", flush=True)
    saved = None
    try:
        g = dict(sc)
        for policy, dargs in POLICIES:
            res["policies"].append(one(ctx, nh, g, policy, dargs,
                                       keep_logs))
        # KSM for the duplicate-heavy anonymous guest, set and put back.
        saved = nh.run(f"echo $(cat {KSM}/run) "
                       f"$(cat {KSM}/merge_across_nodes)").split()
        nh.run(f"echo 2 >{KSM}/run && echo 0 >{KSM}/merge_across_nodes "
               f"&& echo 1 >{KSM}/run")
        gk = dict(sc, backing="anon", rate=0, hot=0, dup=50)
        for hints in (False, True):
            res["ksm"].append(one(ctx, nh, gk, KSM_POLICY,
                                  [] if hints else ["--no-ksm-hints"],
                                  keep_logs, ksm=True, hints=hints))
    finally:
        if saved and len(saved) == 2:
            try:
                nh.run(f"echo 2 >{KSM}/run; echo {saved[1]} "
                       f">{KSM}/merge_across_nodes; echo {saved[0]} "
                       f">{KSM}/run")
            except RuntimeError as e:
                print(f"bench: KSM inside not put back: {e}")
        nh.stop()
    res["wall_s"] = now() - t_set
    res["ksm_settings_inside"] = (f"run {saved[0]}, merge_across_nodes "
                                  f"{saved[1]} before the set" if saved
                                  else None)
    return res


def one(ctx, nh, g, policy, dargs, keep_logs, ksm=False, hints=None):
    rundir = tempfile.mkdtemp(prefix="placement-", dir=ctx.tmp)
    try:
        r = migrate(ctx, nh, g, policy, dargs, rundir, ksm_samples=ksm)
    except Exception as e:  # a failed run is a result, not a crash
        r = dict(policy=policy, migrated=False, error=str(e),
                 logs=keep_logs(ctx, rundir))
    if ksm:
        r["hints_asked"] = hints
    label = f"{policy}{'' if not ksm else ' hints' if hints else ' no hints'}"
    if not r.get("migrated"):
        print(f"   {'placement':<20} {label:<24} FAILED: "
              f"{r.get('error')}", flush=True)
    else:
        pl = " ".join(f"n{k} {v:.0f}/{r['placed_mib'].get(k, 0):.0f}"
                      for k, v in sorted(r["planned_mib"].items()))
        extra = (f", hot set on node 0 {r['hot_share_node0']:.3f}"
                 if r.get("hot_share_node0") is not None else "")
        if ksm:
            extra += ", pages_sharing/Pss " + " ".join(
                f"{t}s:{s}/{p}" for t, s, p in r["ksm"]["samples"])
        print(f"   {'placement':<20} {label:<24} total {r['total_s']:.2f} s, "
              f"MiB planned/placed {pl}, as planned "
              f"{r['as_planned']}{extra}"
              f"{'' if r['verified'] else ', NOT VERIFIED: ' + r['verify_error']}",
              flush=True)
    return r


# ---- the report: tables and plots (called by report.py) ----

def _f(v, fmt):
    return "n/a" if v is None else fmt.format(v)


def policy_rows(res):
    hs = ["policy", "planned MiB node 0 / 1", "placed MiB node 0 / 1",
          "as planned", "hot set pages node 0 / 1", "hot set on node 0",
          "hot chunks on top tier", "total (s)", "downtime (ms)",
          "verified inside"]
    body = []
    for r in res.get("policies", []):
        if not r.get("migrated"):
            body.append([r["policy"]] + ["n/a"] * (len(hs) - 2) +
                        [f"FAILED: {r.get('error', '')[:80]}"])
            continue
        pm, lm, h = r["planned_mib"], r["placed_mib"], r.get("hot_pages", {})
        body.append([
            r["policy"],
            f"{pm.get('0', 0):.1f} / {pm.get('1', 0):.1f}",
            f"{lm.get('0', 0):.1f} / {lm.get('1', 0):.1f}",
            _f(r.get("as_planned"), "{:.4f}"),
            f"{h.get('node0', 0)} / {h.get('node1', 0)}",
            _f(r.get("hot_share_node0"), "{:.3f}"),
            "n/a" if r.get("hot_chunks") is None else
            f"{r['hot_chunks_top']} / {r['hot_chunks']}",
            _f(r.get("total_s"), "{:.2f}"),
            _f(r.get("downtime_ms"), "{:.0f}"),
            "yes" if r.get("verified") else
            f"NO: {r.get('verify_error', '')[:60]}"])
    return hs, body


def ksm_rows(res):
    times = [t for t in (0,) + KSM_LATER_S]
    hs = (["KSM hints", "advised ranges (pages)"] +
          [f"pages_sharing at +{t} s" for t in times] +
          [f"VMM Pss (MiB) at +{t} s" for t in times] +
          ["guest pages node 0 / 1 at completion",
           f"the same at +{KSM_LATER_S[-1]} s", "total (s)",
           "ksmd CPU during it (s)", "verified inside"])
    body = []
    for r in res.get("ksm", []):
        label = "with" if r.get("hints_asked") else "without"
        if not r.get("migrated"):
            body.append([label] + ["n/a"] * (len(hs) - 2) +
                        [f"FAILED: {r.get('error', '')[:80]}"])
            continue
        k = r["ksm"]
        smp = {round(t): (sh, pss) for t, sh, pss in k["samples"]}
        near = [min(smp, key=lambda x: abs(x - t)) if smp else None
                for t in times]
        later = r.get("ram_pages_later", {})
        lm = r["placed_mib"]
        body.append(
            [label, f"{k.get('advised_ranges')} ({k.get('hinted_pages')})"] +
            [str(smp[n][0]) if n is not None else "n/a" for n in near] +
            [f"{smp[n][1] / 1024:.1f}" if n is not None and smp[n][1]
             is not None else "n/a" for n in near] +
            [f"{lm.get('0', 0) * 256:.0f} / {lm.get('1', 0) * 256:.0f}",
             f"{later.get('node0', 0)} / {later.get('node1', 0)}",
             _f(r.get("total_s"), "{:.2f}"),
             _f(k.get("ksmd_cpu_s"), "{:.2f}"),
             "yes" if r.get("verified") else
             f"NO: {r.get('verify_error', '')[:60]}"])
    return hs, body


def header(res):
    n = res.get("nested", {})
    return (f"Nested host: {n.get('kernel', '?')}, {n.get('nodes', '?')} "
            f"nodes, booted in {n.get('boot_s', 0):.1f} s; the whole set "
            f"took {res.get('wall_s', 0):.0f} s; guest {res['ws']} working "
            f"set in {res['mem']} of RAM ({res['backing']} for the "
            f"policies, anon for KSM), hot set the first {res['hot']}% "
            f"of it written at {res['rate']} MiB/s; one run per policy; "
            f"plain TCP. KSM inside: {res.get('ksm_settings_inside')}, "
            f"run 1 and merge_across_nodes 0 for the KSM runs.")


NOTE = ("The hot set's pages on node 0 are asked of the kernel inside "
        "(tools/nested/pages: move_pages on the incoming VMM's pid) once "
        "the guest has verified its whole working set there; planned and "
        "placed MiB are ferry-dest's (placed: pages in memory by node, "
        "after completion). TCG does not model the latency between the "
        "nodes, so nothing here says how fast the guest runs afterwards.")


def plots(res, outdir, gnuplot):
    """Two PNGs: MiB planned and placed per node per policy (the hot
    set's share on node 0 in the labels), and KSM's pages_sharing after
    completion with hints and without."""
    out = []
    pol = [r for r in res.get("policies", []) if r.get("migrated")]
    if pol:
        dat = f"{outdir}/placement_nodes.dat"
        with open(dat, "w") as f:
            for r in pol:
                hs = r.get("hot_share_node0")
                lab = (f"{r['policy']}\\nhot set {hs * 100:.0f}% on node 0"
                       if hs is not None else r["policy"])
                pm, lm = r["planned_mib"], r["placed_mib"]
                f.write(f'"{lab}" {pm.get("0", 0):.2f} {lm.get("0", 0):.2f} '
                        f'{pm.get("1", 0):.2f} {lm.get("1", 0):.2f}\n')
        png = f"{outdir}/placement_nodes.png"
        if gnuplot(f"""
set terminal pngcairo size 1000,520 font ',10' noenhanced
set output '{png}'
set title 'Placement inside the nested NUMA host (node 1: CPU-less, the CXL stand-in): MiB per node'
set ylabel 'MiB'
set bmargin 4
set offsets 0, 0, graph 0.15, 0
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set grid ytics
set key top right
set yrange [0:*]
plot '{dat}' using 2:xtic(1) title 'planned node 0' lc rgb '#1f77b4', \\
     '' using 3 title 'placed node 0' lc rgb '#9ecae1', \\
     '' using 4 title 'planned node 1' lc rgb '#d62728', \\
     '' using 5 title 'placed node 1' lc rgb '#fc9272'
"""):
            out.append(png)
    ks = [r for r in res.get("ksm", []) if r.get("migrated")]
    if ks:
        dat = f"{outdir}/placement_ksm.dat"
        plot = []
        with open(dat, "w") as f:
            for i, r in enumerate(ks):
                for t, sh, pss in r["ksm"]["samples"]:
                    f.write(f"{t} {sh} {(pss or 0) / 1024:.2f}\n")
                f.write("\n\n")
                lab = "hints" if r.get("hints_asked") else "no hints"
                plot.append(f"'{dat}' index {i} using 1:2 with linespoints "
                            f"title 'pages_sharing, {lab}'")
                plot.append(f"'{dat}' index {i} using 1:3 axes x1y2 with "
                            f"linespoints dt 2 title 'VMM Pss MiB, {lab}'")
        png = f"{outdir}/placement_ksm.png"
        if gnuplot(f"""
set terminal pngcairo size 900,450 font ',10' noenhanced
set output '{png}'
set title 'KSM inside the nested host: a 50%-duplicate anonymous guest after completion'
set xlabel 's after completion'
set ylabel 'pages_sharing'
set y2label 'VMM Pss (MiB)'
set ytics nomirror
set y2tics
set grid
set key outside bottom center horizontal
set yrange [0:*]
set y2range [0:*]
plot {', '.join(plot)}
"""):
            out.append(png)
    return out

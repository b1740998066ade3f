# SPDX-License-Identifier: LGPL-2.1-or-later
"""Processes for tools/bench: children whose output lines are stamped with
the host clock as they arrive, per-thread CPU accounting from /proc, and
heartbeat parsing. Only processes started here are ever signalled, by pid."""

import os
import re
import signal
import subprocess
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
HB_RE = re.compile(r"^HB (.*)$")


def now():
    return time.monotonic()


class Child:
    """A child process; stdout+stderr go to LOG and, line by line with the
    monotonic arrival time, to self.lines. Reaped with wait4 so that its
    rusage (CPU seconds of the whole process) is kept."""

    def __init__(self, name, argv, log, env=None):
        self.name = name
        self.argv = argv
        self.log = log
        self.lines = []  # (t, line)
        self.lock = threading.Lock()
        self.rusage = None
        self.status = None
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env,
                                     bufsize=0)
        self.pid = self.proc.pid
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        with open(self.log, "w") as f:
            buf = b""
            while True:
                data = self.proc.stdout.read1(65536) if hasattr(
                    self.proc.stdout, "read1") else os.read(
                        self.proc.stdout.fileno(), 65536)
                if not data:
                    break
                t = now()
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    s = line.decode("utf-8", "replace").rstrip("\r")
                    f.write(s + "\n")
                    with self.lock:
                        self.lines.append((t, s))
                f.flush()

    def snapshot(self):
        with self.lock:
            return list(self.lines)

    def text(self):
        return "\n".join(s for _, s in self.snapshot())

    def heartbeats(self):
        return [(t, kv) for t, kv in ((t, heartbeat(s))
                                      for t, s in self.snapshot()) if kv]

    def poll(self):
        if self.status is not None:
            return self.status
        try:
            pid, st, ru = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            self.status = -1
            return self.status
        if pid == 0:
            return None
        self._reaped(st, ru)
        return self.status

    def _reaped(self, st, ru):
        self.rusage = ru
        self.status = os.waitstatus_to_exitcode(st)
        self.proc.returncode = self.status

    def wait(self, timeout=None):
        end = None if timeout is None else now() + timeout
        while self.poll() is None:
            if end is not None and now() > end:
                return None
            time.sleep(0.02)
        self.reader.join(2)
        return self.status

    def cpu_s(self):
        if self.rusage is None:
            return None
        return self.rusage.ru_utime + self.rusage.ru_stime

    def kill(self):
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait(10)


def heartbeat(line):
    """The words of a guest's heartbeat line as {key: int}, else None."""
    m = HB_RE.match(line)
    if not m:
        return None
    try:
        return {k: int(v) for k, v in (w.split("=", 1) for w in
                                       m.group(1).split() if "=" in w)}
    except ValueError:
        return None


def parse_heartbeats(lines):
    """The heartbeats among LINES, as heartbeat() gives them."""
    return [kv for kv in map(heartbeat, lines) if kv]


def wait_for(pred, timeout, step=0.05):
    end = now() + timeout
    while now() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


def thread_cpu(pid):
    """{tid: (comm, cpu seconds)} of every thread of PID now."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        r = s.rfind(")")
        comm = s[s.find("(") + 1:r]
        fields = s[r + 2:].split()
        out[int(tid)] = (comm, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


class CpuSampler:
    """Samples the threads of some pids every 50 ms between start() and
    stop(); cpu() is the CPU seconds those threads used in that window,
    guest vCPU threads excluded (a thread is a vCPU when is_vcpu(comm)).
    A process that exits keeps its last sample (an underestimate of at most
    one sampling period)."""

    def __init__(self, pids, is_vcpu):
        self.pids = list(pids)
        self.is_vcpu = is_vcpu
        self.first = {}
        self.last = {}
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        for pid in self.pids:
            for tid, (comm, c) in thread_cpu(pid).items():
                key = (pid, tid)
                self.first.setdefault(key, (comm, c))
                self.last[key] = (comm, c)

    def _run(self):
        while not self.stop_ev.is_set():
            self._sample()
            self.stop_ev.wait(0.05)

    def start(self):
        self._sample()
        # Threads born after start() count from zero.
        self.base_keys = set(self.first)
        self.thread.start()

    def stop(self):
        self._sample()
        self.stop_ev.set()
        self.thread.join()

    def cpu(self):
        total = vcpu = 0.0
        for key, (comm, c) in self.last.items():
            c0 = self.first[key][1] if key in self.base_keys else 0.0
            d = max(0.0, c - c0)
            if self.is_vcpu(comm):
                vcpu += d
            else:
                total += d
        return total, vcpu


def hb_figures(series, t0, t1, hb_ms):
    """From heartbeats [(t, kv)] of the source and destination guests:
    the longest guest-observed stall (max maxgap_us, ms) over heartbeats
    printed from t0 on and no later than 3 heartbeats after the migration
    ended at t1, the host-observed longest gap between consecutive
    heartbeats (ms, source and destination merged), and whether any
    heartbeat reported errors."""
    window = []
    for hbs in series:
        after = 0
        for t, kv in hbs:
            if t < t0:
                continue
            if t > t1:
                after += 1
                if after > 3:
                    break
            window.append((t, kv))
    window.sort(key=lambda x: x[0])
    stall = max((kv.get("maxgap_us", 0) for _, kv in window), default=None)
    gaps = [b[0] - a[0] for a, b in zip(window, window[1:])]
    gap = max(gaps, default=None)
    errors = sum(kv.get("errors", 0) for hbs in series for _, kv in hbs[-1:])
    return (None if stall is None else stall / 1000.0,
            None if gap is None else gap * 1000.0, errors)


def huge_share(pid, mem_bytes):
    """The share of a VM's MEM_BYTES of RAM that process PID maps with
    huge pages (ShmemPmdMapped of /proc/PID/smaps_rollup), or None."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("ShmemPmdMapped:"):
                    return int(line.split()[1]) * 1024 / mem_bytes
    except (OSError, ValueError, IndexError):
        pass
    return None


def _work(kv):
    return kv.get("dirtied", 0), kv.get("verified", 0)


def guest_work(src_hbs, dst_hbs, t0, t1):
    """The guest's slowdown from being migrated: its achieved work (pages
    dirtied, and pages dirtied plus verified: the verifier is not paced,
    so it takes whatever CPU the guest gets) per second of host time
    from the source's last heartbeat at or before T0 to the destination's
    first at or after T1 (the counters live in guest memory and travel
    with it; pauses count as time without work), against the same guest
    before the migration in the same run (its last heartbeats before T0,
    untracked and unmigrated). Returns (dirty ratio, work ratio), each
    None when the heartbeats do not say."""
    before = [(t, kv) for t, kv in src_hbs
              if t <= t0 and (kv.get("iter", 0) >= 1
                              or kv.get("verified", 0) > 0)]
    after = [(t, kv) for t, kv in dst_hbs if t >= t1]
    if len(before) < 2 or not after:
        return None, None
    (ta, a), (tb, b) = before[max(0, len(before) - 6)], before[-1]
    tc, c = after[0]
    if tb <= ta or tc <= tb:
        return None, None
    (da, va), (db, vb), (dc, vc) = _work(a), _work(b), _work(c)
    base_d, base_w = (db - da) / (tb - ta), (db + vb - da - va) / (tb - ta)
    mig_d, mig_w = (dc - db) / (tc - tb), (dc + vc - db - vb) / (tc - tb)
    return (mig_d / base_d if base_d > 0 else None,
            mig_w / base_w if base_w > 0 else None)


def dirty_rate_mibs(hbs):
    """The guest's achieved dirty rate (MiB/s) over its last heartbeats
    before migration, from the 'dirtied' page counter."""
    pts = [(kv.get("t_ms", 0), kv.get("dirtied", 0)) for _, kv in hbs
           if kv.get("iter", 0) >= 1 or kv.get("verified", 0) > 0]
    if len(pts) < 2:
        return None
    (t_a, d_a), (t_b, d_b) = pts[max(0, len(pts) - 6)], pts[-1]
    if t_b <= t_a:
        return None
    return (d_b - d_a) * 4096 / 1048576 / ((t_b - t_a) / 1000.0)


def has_line(child, prefix):
    """The first line of CHILD's output that starts with PREFIX, or None."""
    for _, line in child.snapshot():
        if line.startswith(prefix):
            return line
    return None


def await_filled(child, what, timeout, hb_timeout=60):
    """Waits, at most TIMEOUT s, until the source guest of CHILD (WHAT:
    "ferry-vm", "QEMU") has written every page once (its FILLED line), then
    for 3 more heartbeats; raises RuntimeError when it does not or exits."""
    if not wait_for(lambda: has_line(child, "FILLED")
                    or child.poll() is not None, timeout):
        raise RuntimeError("source guest did not finish filling")
    if child.poll() is not None:
        raise RuntimeError(f"source {what} exited: {child.text()[-300:]}")
    n0 = len(child.heartbeats())
    wait_for(lambda: len(child.heartbeats()) >= n0 + 3, hb_timeout)


def await_verified(child, need, timeout, min_hbs=4):
    """Waits, at most TIMEOUT s, until the guest of CHILD (at the
    destination) has printed MIN_HBS heartbeats and one whose rpasses (its
    complete verification passes over the whole working set) is at least
    need(hbs), hbs being its heartbeats so far; or found a bad page; or
    exited. Returns (rpasses, error): error is None only when the guest
    itself showed the passes asked for, else it says what the guest
    printed. Raises RuntimeError when the guest printed no heartbeat."""
    def settled():
        hbs = child.heartbeats()
        if guest_failed(child) or child.poll() is not None:
            return True
        return (len(hbs) >= min_hbs and
                hbs[-1][1].get("rpasses", -1) >= need(hbs))
    wait_for(settled, timeout)
    bad = guest_failed(child)
    hbs = child.heartbeats()
    if bad:
        return None, bad
    if not hbs:
        raise RuntimeError("guest did not run at the destination "
                           f"(no heartbeat in {timeout} s)")
    last = hbs[-1][1]
    if "rpasses" not in last:
        return None, "its heartbeats carry no rpasses= count"
    r, n = last["rpasses"], need(hbs)
    if r < n:
        return r, (f"rpasses={r} after {len(hbs)} heartbeats, {n} needed "
                   f"(waited {timeout} s)")
    return r, None


def guest_failed(child):
    """The guest's first ERR line when it found a bad page, else None."""
    for _, line in child.snapshot():
        if line.startswith("ERR ") or line.startswith("FAIL"):
            return line
    return None

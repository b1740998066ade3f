#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Reads an agent's events file (--events) for tests/ctl.sh.

  events.py check FILE        every line one JSON object with event, seq
                              (0, 1, ... in order), time (not decreasing),
                              role; the last one completed or failed
  events.py has FILE EXPR     exit 0 when EXPR (Python, over e and i) holds
                              for some event; lines after a bad one ignored
  events.py eval FILE EXPR    prints EXPR over ev, the list of events
  events.py status FILE EXPR  exit 0 when EXPR holds over s, one reply
"""
import json
import sys

KNOWN = {"started", "round_begin", "round_end", "paused", "switchover",
         "postcopy_progress", "recovery", "control", "completed", "failed"}


def read(path, strict):
    events = []
    with open(path) as f:
        for i, line in enumerate(f):
            try:
                e = json.loads(line)
            except ValueError as x:
                if strict:
                    raise SystemExit("line %d is not JSON (%s): %r" %
                                     (i + 1, x, line[:200]))
                break
            if not line.endswith("\n"):
                if strict:
                    raise SystemExit("line %d is not ended" % (i + 1))
                break
            events.append(e)
    return events


def check(path):
    ev = read(path, True)
    if not ev:
        raise SystemExit("no events")
    last_t = 0
    for i, e in enumerate(ev):
        if not isinstance(e, dict):
            raise SystemExit("line %d is not an object" % (i + 1))
        for k in ("event", "seq", "time", "role"):
            if k not in e:
                raise SystemExit("line %d has no %s: %s" % (i + 1, k, e))
        if e["seq"] != i:
            raise SystemExit("line %d has seq %s" % (i + 1, e["seq"]))
        if e["event"] not in KNOWN:
            raise SystemExit("line %d: unknown event %s" % (i + 1, e["event"]))
        if e["time"] + 0.001 < last_t:
            raise SystemExit("line %d goes back in time" % (i + 1))
        last_t = e["time"]
        if e["event"] in ("completed", "failed") and i != len(ev) - 1:
            raise SystemExit("line %d: %s before the end" % (i + 1, e["event"]))
    if ev[-1]["event"] not in ("completed", "failed"):
        raise SystemExit("the last event is %s" % ev[-1]["event"])
    rounds = [e["round"] for e in ev if e["event"] == "round_end"]
    if rounds != sorted(rounds):
        raise SystemExit("rounds out of order: %s" % rounds)
    print("%d events, %s" % (len(ev), ev[-1]["event"]))


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "check":
        check(path)
        return 0
    if cmd == "status":
        with open(path) as f:
            s = json.loads(f.readline())
        return 0 if eval(sys.argv[3], {"s": s}) else 1
    ev = read(path, False)
    if cmd == "has":
        for i, e in enumerate(ev):
            try:
                if eval(sys.argv[3], {"e": e, "i": i}):
                    return 0
            except (KeyError, TypeError):
                pass
        return 1
    if cmd == "eval":
        print(eval(sys.argv[3], {"ev": ev}))
        return 0
    raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The manual pages are true: for `ferry` and each of its subcommands,
# every long option `ferry SUB --help` lists is documented in
# docs/man/ferry-SUB.1 (on the tag line of an option paragraph, .TP),
# every option documented there is in --help, and the exit statuses the
# help text lists are the ones the page's EXIT STATUS section lists. The
# subcommands are the ones `ferry --help` names, and ferry.1 names each.
# TAP output; run from the build directory (make check sets FERRY_BUILD).
set -u
B=${FERRY_BUILD:-$(pwd)}
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
FERRY=$B/tools/ferry
MAN=$SRCDIR/docs/man
if [ ! -x "$FERRY" ]; then
	echo "1..1"
	echo "ok 1 - manpages # SKIP missing $FERRY (build first)"
	exit 0
fi
if ! command -v python3 >/dev/null; then
	echo "1..1"
	echo "ok 1 - manpages # SKIP no python3"
	exit 0
fi
exec python3 - "$FERRY" "$MAN" <<'PY'
import re, subprocess, sys

ferry, man = sys.argv[1], sys.argv[2]

def run_help(args):
    p = subprocess.run([ferry] + args + ["--help"], capture_output=True,
                       text=True, timeout=30)
    return p.returncode, p.stdout

def help_options(text):
    """Long options on the lines that list options: a dash after a short
    indent (a deeper one continues a description), up to the blanks
    before the description."""
    opts = set()
    for line in text.splitlines():
        if re.match(r"^ {1,8}-", line):
            head = re.split(r"\s{2,}", line.strip())[0]
            opts.update(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", head))
    return opts

def page_options(text):
    """Long options on the tag line of each .TP paragraph."""
    lines = text.splitlines()
    opts = set()
    for i, line in enumerate(lines[:-1]):
        if line.startswith(".TP"):
            opts.update(re.findall(r"\\-\\-([a-z][a-z0-9\\-]*)",
                                   lines[i + 1]))
    return {o.replace("\\-", "-") for o in opts}

def statuses(text):
    """The numbers that open an item of an exit status list."""
    return set(re.findall(r"(?:^|[:;,.]\s+|\n)\s*(\d+)(?=:?\s+[a-zA-Z(])",
                          text))

def help_statuses(text):
    m = re.search(r"Exit status:(.*?)(?:\n\n|\Z)", text, re.S)
    return statuses(m.group(1)) if m else set()

def page_statuses(text):
    m = re.search(r"^\.SH EXIT STATUS\n(.*?)(?=^\.SH|\Z)", text, re.S | re.M)
    if not m:
        return set()
    body = re.sub(r"^\.(TP|PP|IP|br)\b.*$", "", m.group(1), flags=re.M)
    body = re.sub(r"\\f[BIRP]|^\.[BI]R? ", "", body, flags=re.M)
    return statuses(body)

rc, top = run_help([])
subs = re.findall(r"^  ([a-z]+)\s{2,}\S", top, re.M)
cases = [("ferry", [])] + [("ferry-" + s, [s]) for s in subs]
print("1..%d" % (len(cases) + 1))
n = 0
failed = 0
for page, args in cases:
    n += 1
    why = []
    rc, text = run_help(args)
    if rc != 0 or not text:
        why.append("`ferry %s --help` exited %d" % (" ".join(args), rc))
    try:
        with open("%s/%s.1" % (man, page)) as f:
            roff = f.read()
    except OSError as e:
        why.append("no page: %s" % e)
        roff = ""
    if roff:
        h, p = help_options(text), page_options(roff)
        if h - p:
            why.append("in --help, not in %s.1: %s" %
                       (page, " ".join("--" + o for o in sorted(h - p))))
        if p - h:
            why.append("in %s.1, not in --help: %s" %
                       (page, " ".join("--" + o for o in sorted(p - h))))
        hs, ps = help_statuses(text), page_statuses(roff)
        if not hs:
            why.append("--help lists no exit status")
        if hs != ps:
            why.append("exit statuses: --help %s, %s.1 %s" %
                       (sorted(hs), page, sorted(ps)))
    if why:
        failed += 1
        print("not ok %d - %s: %s" % (n, page, "; ".join(why)))
    else:
        print("ok %d - %s: %d options, exit statuses %s" %
              (n, page, len(help_options(text)),
               ",".join(sorted(help_statuses(text)))))
n += 1
try:
    with open("%s/ferry.1" % man) as f:
        roff = f.read()
    missing = [s for s in subs if not re.search(r"\bferry\\?-%s\b" % s, roff)]
except OSError:
    missing = subs
if missing or not subs:
    failed += 1
    print("not ok %d - ferry.1 names every subcommand: missing %s" %
          (n, " ".join(missing) or "(no subcommands in ferry --help)"))
else:
    print("ok %d - ferry.1 names every subcommand (%s)" % (n, " ".join(subs)))
sys.exit(1 if failed else 0)
PY

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A libvirt domain migrated with Ferry (TAP; docs/libvirt.md). Two libvirt
# "hosts" on this machine: two libvirtd started here, each in its own
# mount namespace with its own /etc/libvirt (its hooks: Ferry's and one
# that logs each call), /run/libvirt, /var/lib/libvirt, /var/log/libvirt,
# /var/cache/libvirt and host UUID; host A's loopback address is 127.0.0.2,
# B's 127.0.0.3. The domain is docs/libvirt-domain.xml: ferry-guest as its
# kernel, 128 MiB of shared memfd RAM, TCG; case linux boots Debian's
# Linux from the same XML (tools/linux-guest), hugetlb puts the RAM on
# 2 MiB pages (a pool reserved for it, given back after), numa gives the
# guest two cells (two RAM regions). ferry-migrate runs on the source
# host (nsenter into its namespace); the destination's hook starts
# ferry-dest. The guest verifies itself (HB lines on its serial file);
# the Linux guest's heartbeats must count on across each hop.
#
# Every wait is bounded; only processes started here are ended, by PID
# (the libvirtds, and the QEMUs they started, from their pid files).
# "1..0 # SKIP" without libvirt or root; "Bail out!" when the build is
# incomplete. FERRY_CASES picks cases (default: all, in order).
set -u
# qemu.sh and libvirt.sh take turns (tests/qemu-common.sh says why).
. "$(dirname "$0")/qemu-common.sh"
take_qemu_turn "$@"
B=${FERRY_BUILD:-$(pwd)}
S=$(cd "$(dirname "$0")/.." && pwd)
MIG=$B/tools/ferry-libvirt/ferry-migrate
HOOK=$B/tools/ferry-libvirt/ferry
PRELOAD=$B/tools/ferry-qemu/libferry-preload.so
GUEST=$B/tools/guest/ferry-guest
for f in "$MIG" "$HOOK" "$PRELOAD" "$GUEST" "$B/tools/ferry-source" \
	"$B/tools/ferry-dest" "$B/tools/ferry-qemu/ferry-qemu" "$B/tools/ferry-cert"; do
	[ -e "$f" ] || { echo "Bail out! missing $f (build first)"; exit 99; }
done
if ! command -v libvirtd >/dev/null || ! command -v virsh >/dev/null ||
	! command -v qemu-system-x86_64 >/dev/null; then
	echo "1..0 # SKIP libvirt not installed (apt-get install libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu)"
	exit 0
fi
if [ "$(id -u)" != 0 ] || ! unshare -m true 2>/dev/null; then
	echo "1..0 # SKIP needs root and mount namespaces for two libvirt instances"
	exit 0
fi

T=$(mktemp -d /tmp/ferry-libvirt.XXXXXX)
DOM=ferry1
LVPIDS=()
cleanup() {
	local h p
	for h in A B; do
		for p in "$T/$h"/run/qemu/*.pid; do
			[ -e "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null
		done
		for p in "$T/$h/lib/ferry-$h"/*/*.pid; do
			[ -e "$p" ] && kill "$(cat "$p")" 2>/dev/null
		done
	done
	for p in "${LVPIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	[ -n "${FERRY_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"
}
trap cleanup EXIT

mkdir -p "$T/bin"
for f in ferry-source ferry-dest ferry-qemu/ferry-qemu; do
	ln -s "$B/tools/$f" "$T/bin/"
done
"$B/tools/ferry-cert" demo "$T/pki" >/dev/null || exit 99
# Both hosts' ferry-dest show the demo server certificate (localhost).
CTLS="--ca $T/pki/ca.pem --cert $T/pki/client.pem --key $T/pki/client-key.pem --peer-name localhost"

# Fixed ports below the ephemeral range (32768-), so that no other test
# running beside this one takes them.
declare -A ADDR=([A]=127.0.0.2 [B]=127.0.0.3) FPORT=([A]=31211 [B]=31212)
uri() { echo "qemu+unix:///system?socket=$T/$1/run/libvirt-sock"; }
V() { local h=$1; shift; virsh -q -c "$(uri "$h")" "$@"; }

# start_lv HOST UUID-DIGIT MIGRATION-PORT-BASE: a libvirtd of its own
start_lv() {
	local h=$1 d=$T/$1
	mkdir -p "$d/etc" "$d/run" "$d/lib" "$d/log" "$d/cache" "$d/ferry"
	cp -a /etc/libvirt/. "$d/etc/"
	rm -rf "$d/etc/hooks"
	mkdir -p "$d/etc/hooks/qemu.d" "$d/lib/qemu" "$d/log/qemu"
	cat >>"$d/etc/qemu.conf" <<-EOF
		user = "root"
		group = "root"
		namespaces = [ ]
		stdio_handler = "file"
		security_driver = "none"
		cgroup_controllers = [ ]
		migration_port_min = $3
		migration_port_max = $(($3 + 15))
	EOF
	echo "host_uuid = \"6a2f6a4e-0000-4000-8000-00000000000$2\"" >>"$d/etc/libvirtd.conf"
	cat >"$d/etc/hooks/ferry.conf" <<-EOF
		FERRY_BINDIR=$T/bin
		FERRY_RUN_DIR=/var/lib/libvirt/ferry-$h
		FERRY_LISTEN=${ADDR[$h]}
		FERRY_CA=$T/pki/ca.pem
		FERRY_CERT=$T/pki/server.pem
		FERRY_KEY=$T/pki/server-key.pem
		FERRY_PRELOAD=$PRELOAD
	EOF
	cp "$HOOK" "$d/etc/hooks/qemu.d/ferry"
	# Runs first (qemu.d is called in name order), logs, prints nothing.
	cat >"$d/etc/hooks/qemu.d/00-order" <<-'EOF'
		#!/bin/sh
		cat >/dev/null
		echo "$1 $2 $3" >>/var/log/libvirt/hook-order.log
	EOF
	chmod +x "$d/etc/hooks/qemu.d/00-order"
	run_lv "$h"
}

# run_lv HOST: (re)starts its libvirtd, in a mount namespace of its own
run_lv() {
	local h=$1 d=$T/$1
	# /run is a tmpfs of this namespace (the machine may have no
	# /run/libvirt to mount over); the rest are bound over libvirt's own.
	# A hugetlbfs of the namespace's own, as systemd mounts
	# /dev/hugepages: libvirt takes the default huge page size of a
	# <hugepages/> from it (none here: case_hugetlb skips).
	mkdir -p "$d/huge"
	unshare -m --propagation private bash -c "
		mount -t tmpfs -o mode=755 ferry-test-run /run &&
		{ mount -t hugetlbfs -o pagesize=2M ferry-test-huge $d/huge || true; } &&
		mkdir /run/libvirt && mount --bind $d/run /run/libvirt &&
		mount --bind $d/etc /etc/libvirt &&
		mount --bind $d/lib /var/lib/libvirt &&
		mount --bind $d/log /var/log/libvirt &&
		mount --bind $d/cache /var/cache/libvirt &&
		exec libvirtd" </dev/null >"$d/libvirtd.out" 2>&1 &
	LVPIDS+=($!)
	eval "${h}_pid=$!"
}

# restart_lv HOST: libvirtd ends (its QEMUs run on, in its namespace) and
# a new one reconnects to them
restart_lv() {
	local p
	eval "p=\$${1}_pid"
	kill "$p"
	wait_for 30 eval "! kill -0 $p 2>/dev/null"
	wait "$p" 2>/dev/null
	run_lv "$1"
	wait_for 30 V "$1" list >/dev/null 2>&1
}

# on HOST CMD...: runs CMD on that host (in its libvirtd's namespace)
on() { local p; eval "p=\$${1}_pid"; shift; nsenter -t "$p" -m -- "$@"; }

N=0 T0=0
skip() { N=$((N + 1)); echo "ok $N - $1 # SKIP $2"; }
. "$S/tests/hugepages.sh"
case_start() { T0=$(date +%s%N); }
took() {
	local ms=$((($(date +%s%N) - T0) / 1000000))
	printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}
ok() { N=$((N + 1)); echo "ok $N - $1 ($(took) s)"; }
fail() {
	N=$((N + 1))
	echo "not ok $N - $1: $2"
	for f in "$T"/*.log "$T"/?/lib/ferry-?/*/*.log "$T"/?/log/qemu/*.log "$T"/?/libvirtd.out; do
		[ -s "$f" ] && { echo "# --- $f"; tail -n 4 "$f" | sed 's/^/# /'; }
	done
}
state() { V "$1" domstate "$DOM" 2>/dev/null | head -n 1; }
console() { echo "$T/$1/log/qemu/$DOM.console"; }
lines() { { wc -l <"$(console "$1")"; } 2>/dev/null || echo 0; }
bytes() { stat -c %s "$(console "$1")" 2>/dev/null || echo 0; }
# since HOST FROM-LINE: HOST's console after line FROM (the console is
# one file per host for every case, appended to: an earlier case's lines
# are not this one's)
since() { tail -n +"$(($2 + 1))" "$(console "$1")" 2>/dev/null; }
hbs_since() { since "$1" "$2" | grep -c '^HB '; }
has_hbs() { [ "$(hbs_since "$1" "$2")" -ge "$3" ]; }
field() { sed -n "s/.*[ ]$2=\([0-9]*\).*/\1/p" <<<"$1"; }

# verified HOST FROM-LINE: after line FROM of its console, the guest
# resumed on HOST (rpasses from 0), then checked every page at least once
# (rpasses >= 1), with no error since
passes_since() { # passes_since HOST FROM-LINE N: the last HB has rpasses >= N
	local p
	p=$(tail -n +"$(($2 + 1))" "$(console "$1")" 2>/dev/null | grep '^HB ' |
		tail -n 1 | sed -n 's/.*rpasses=\([0-9]*\).*/\1/p')
	[ -n "$p" ] && [ "$p" -ge "$3" ]
}
verified() {
	local c first last
	c=$(console "$1")
	wait_for 60 passes_since "$1" "$2" 2
	first=$(tail -n +"$(($2 + 1))" "$c" | grep -m1 '^HB ')
	last=$(tail -n +"$(($2 + 1))" "$c" | grep '^HB ' | tail -n 1)
	if since "$1" "$2" | grep -q 'errors=[1-9]\|^ERR\|^FAIL'; then
		why="errors: $(since "$1" "$2" | grep -m1 'errors=[1-9]\|^ERR\|^FAIL')"
	elif [ -z "$first" ]; then
		why="no heartbeat on $1"
	elif [ "$(field "$first" rpasses)" != 0 ]; then
		why="the first heartbeat on $1 is not after a resume: $first"
	elif [ "$(field "$last" rpasses)" -lt 2 ]; then
		why="no whole verification pass on $1: $last"
	else
		return 0
	fi
	return 1
}

# define_xml FILE [sed expressions...]: docs/libvirt-domain.xml for this
# build, on host A's paths
domain_xml() {
	local out=$1
	shift
	sed -e "s#/usr/local/lib/ferry/libferry-preload.so#$PRELOAD#" \
		-e "s#/usr/local/share/ferry/ferry-guest#$GUEST#" \
		-e "s#/run/ferry/#/var/lib/libvirt/ferry-A/#g" \
		"$@" "$S/docs/libvirt-domain.xml" >"$out"
}

# The Linux guest (tools/linux-guest, fetched once into ~/.cache/ferry):
# Debian's own kernel and a busybox initramfs whose /init fills 16 MiB of
# a tmpfs, rewrites 4 MiB/s of it and prints "HB n=N up=S" every 250 ms.
LINUX_ARGS="console=ttyS0 quiet panic=-1 ws=16 rate=4 hb_ms=250"
linux_guest() { # sets LKERNEL and LINITRD, or why
	local out
	out=$("$S/tools/linux-guest" 2>&1) || { why=$out; return 1; }
	read -r LKERNEL LINITRD <<<"$out"
}
# linux_xml FILE: docs/libvirt-domain.xml with the Linux guest, changed
# only as its notes tell a user to: the kernel, an initrd after it, the
# command line
linux_xml() {
	domain_xml "$1" \
		-e "s#<kernel>[^<]*</kernel>#&\n    <initrd>$LINITRD</initrd>#" \
		-e "s#<kernel>[^<]*</kernel>#<kernel>$LKERNEL</kernel>#" \
		-e "s#<cmdline>[^<]*</cmdline>#<cmdline>$LINUX_ARGS</cmdline>#"
}

# ferry_hop FROM TO [ferry-migrate options]: ferry-migrate on FROM
ferry_hop() {
	local f=$1 t=$2
	shift 2
	on "$f" timeout 150 "$MIG" --ferry "${ADDR[$t]}:${FPORT[$t]}" \
		--ferry-source "$T/bin/ferry-source" --stream-port 31199 \
		--stream-addr "${ADDR[$f]}" --dest-stream-addr "${ADDR[$t]}" \
		$CTLS --json "$T/hop.json" ${FERRY_MIGRATE_ARGS:-} "$@" "$DOM" "$(uri "$t")" \
		>"$T/migrate.log" 2>&1
	local rc=$?
	cp "$T/migrate.log" "$T/migrate-$f$t.log"
	return $rc
}
json() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" "$T/hop.json" | head -n 1; }
stream_bytes() { sed -n 's/.*own stream \([0-9]*\) bytes.*/\1/p' "$T/migrate.log"; }

start_guest() { # start_guest HOST XML: a transient domain, heartbeating
	V "$1" create "$2" >"$T/create.log" 2>&1 || return 1
	wait_for 30 has_hbs "$1" 0 2
}

# Plain `virsh migrate` of a domain not marked for Ferry: the hook stays
# out of the way (no output, nothing started) and libvirt moves it all.
# QEMU before 9.0 under TCG loses guest writes in its own migration: after
# syncing the dirty bitmap 64 pages at a time (RAM blocks of a multiple of
# 256 KiB, every libvirt domain's) it does not make the vCPUs' TLBs trap
# the next write again, so a page the guest keeps writing through one TLB
# entry (the payload's header, its stack) reaches the destination old,
# and the guest's check finds it. There the guest's ERR at B is a TODO
# (QEMU's, not the hook's); everything else the case checks still fails.
qemu_tcg_loses_dirty() { [ "${QEMU_VERSION%%.*}" -lt 9 ] 2>/dev/null; }
QEMU_VERSION=$(qemu-system-x86_64 --version | sed -n '1s/.*version \([0-9.]*\).*/\1/p')
has_hbs_or_err() { has_hbs "$1" "$2" 2 || since "$1" "$2" | grep -q '^ERR'; }
case_plain() {
	local at err
	case_start
	domain_xml "$T/plain.xml" -e '/<qemu:commandline>/,/<\/qemu:commandline>/d'
	if ! start_guest A "$T/plain.xml"; then
		fail plain "the domain did not start: $(cat "$T/create.log")"
		return
	fi
	at=$(lines B)
	if ! V A migrate --live "$DOM" "$(uri B)" --migrateuri "tcp://${ADDR[B]}:31198" \
		--listen-address "${ADDR[B]}" >"$T/migrate.log" 2>&1; then
		fail plain "virsh migrate: $(cat "$T/migrate.log")"
	elif ls "$T"/B/ferry-* >/dev/null 2>&1 || ls "$T"/B/lib/ferry-B/$DOM/*.pid >/dev/null 2>&1; then
		fail plain "the hook started something for an unmarked domain"
	elif [ "$(state B)" != running ] && [ -z "$(state A)" ] && qemu_tcg_loses_dirty &&
		grep -q 'terminating on signal 15 from .*(libvirtd)' "$T/B/log/qemu/$DOM.log" 2>/dev/null; then
		# Seen in 2 of 4 runs: libvirt at B stops the QEMU its own
		# migration just brought in (SIGTERM from libvirtd; nothing
		# of Ferry's runs for this domain, checked above). Taken for
		# that bug's other face, a stale page the guest runs on (in
		# tools/bench QEMU's destination guest reset after its own
		# precopy); not proven.
		N=$((N + 1))
		echo "not ok $N - plain: virsh migrate succeeded, then libvirt at B stopped the migrated domain (B '$(state B)', A '$(state A)'; B's QEMU: $(grep -m1 'terminating on signal' "$T/B/log/qemu/$DOM.log")) # TODO QEMU $QEMU_VERSION's own migration under TCG loses dirty pages (fixed in QEMU 9.0, upstream 03bfc2188f); taken for its symptom, not proven"
	elif [ "$(state B)" != running ] || [ -n "$(state A)" ]; then
		fail plain "after the migration: B '$(state B)', A '$(state A)'"
	elif ! wait_for 30 has_hbs_or_err B "$at" || since B "$at" | grep -q 'errors=[1-9]\|^ERR'; then
		err=$(since B "$at" | grep -m1 '^ERR')
		if [ -n "$err" ] && qemu_tcg_loses_dirty; then
			N=$((N + 1))
			echo "not ok $N - plain: the guest at B: $err # TODO QEMU $QEMU_VERSION's own migration under TCG loses dirty pages (no TLB reset after its 64-page bitmap sync; fixed in QEMU 9.0, upstream 03bfc2188f)"
		else
			fail plain "the guest at B: $(tail -n 1 "$(console B)")"
		fi
	else
		ok "plain virsh migrate of a domain not marked for Ferry (hook transparent): $(tail -n 1 "$(console B)" | cut -d' ' -f1-7)"
	fi
	V B destroy "$DOM" >/dev/null 2>&1
}

# cont_at_once HOST: sends `cont` to the incoming QEMU on HOST as soon as
# it exists, through a monitor of the test's own (libvirt takes no
# command of a domain during its incoming migration job), and prints
# QEMU's status before and its answer
cont_at_once() {
	python3 - "$T/$1/lib/race.qmp" <<-'EOF'
		import json, os, socket, sys, time
		t = time.time() + 60
		while time.time() < t:
		    try:
		        s = socket.socket(socket.AF_UNIX)
		        s.connect(sys.argv[1])
		        break
		    except OSError:
		        time.sleep(0.01)
		else:
		    print("cont: the incoming QEMU never appeared"); sys.exit()
		f = s.makefile("rw")
		def cmd(c):
		    f.write(json.dumps({"execute": c}) + "\n"); f.flush()
		    while True:
		        r = json.loads(f.readline())
		        if "return" in r or "error" in r:
		            return r
		f.readline()
		cmd("qmp_capabilities")
		st = cmd("query-status")["return"]["status"]
		print("cont sent with QEMU %s: %s" % (st, json.dumps(cmd("cont"))))
	EOF
}

# A -> B (the destination resumed at once: the ordering hazard, forced)
# and B -> A, with ferry-migrate; hooks in order, states, the guest.
# GCHECK (a function, default verified) judges the guest at TO: it is
# called as GCHECK TO LINE-BEFORE-THE-HOP FROM, sets why when it fails and
# may set gsay (what the ok line says of the guest).
hop() { # hop FROM TO WHAT [ferry-migrate options]
	local f=$1 t=$2 what=$3 at rc order
	shift 3
	hop_ok= gsay="guest verified"
	at=$(lines "$t") hop_at_bytes=$(bytes "$t")
	: >"$T/$t/log/hook-order.log"
	ferry_hop "$f" "$t" "$@"
	rc=$?
	order=$(grep "^$DOM " "$T/$t/log/hook-order.log" | cut -d' ' -f2-3 | tr '\n' ,)
	if [ $rc -ne 0 ]; then
		fail "$what" "ferry-migrate exit $rc: $(tail -n 3 "$T/migrate.log")"
	elif [ "$(state "$t")" != running ] || [ -n "$(state "$f")" ]; then
		fail "$what" "after the migration: $t '$(state "$t")', $f '$(state "$f")'"
	elif [[ "$order" != "migrate begin,prepare begin,start begin,started begin,"* ]]; then
		fail "$what" "hooks at $t ran as: $order"
	elif ! grep -q "ferry-$t/$DOM/qmp.sock" "$T/$t/log/qemu/$DOM.log"; then
		fail "$what" "migrate begin did not rewrite the paths for $t"
	elif ! ${GCHECK:-verified} "$t" "$at" "$f"; then
		fail "$what" "$why"
	else
		hop_ok=1
		ok "$what: $gsay at $t ($(V "$t" domstate "$DOM" | head -n 1) there, gone at $f; mode $(sed -n 's/.*"mode": "\([a-z]*\)".*/\1/p' "$T/hop.json" | head -n 1), downtime $(json downtime_ms) ms, Ferry $(json total_s) s and $(json total) bytes, all $(sed -n 's/.* (\([0-9.]*\) s; libvirt.*/\1/p' "$T/migrate.log") s, libvirt's stream $(stream_bytes) bytes, $(sed -n 's/.*its job: \(.*\))$/\1/p' "$T/migrate.log"))"
	fi
}

case_ferry() {
	local race
	case_start
	# a third monitor, the test's, for the early cont
	domain_xml "$T/dom.xml" -e "s#<qemu:commandline>#&<qemu:arg value='-qmp'/><qemu:arg value='unix:/var/lib/libvirt/race.qmp,server=on,wait=off'/>#"
	if ! start_guest A "$T/dom.xml"; then
		fail ferry "the domain did not start: $(cat "$T/create.log")"
		return
	fi
	cont_at_once B >"$T/race.log" &
	local cpid=$!
	hop A B "ferry-migrate A->B, destination sent cont at once"
	wait $cpid
	race=$(cat "$T/race.log")
	N=$((N + 1))
	if [ -z "$hop_ok" ]; then
		echo "not ok $N - the early cont ($race): the migration failed"
	elif [[ "$race" == "cont sent with QEMU inmigrate: {\"return\": {}}" ]]; then
		echo "ok $N - the destination QEMU took cont while still incoming, and the guest still verified ($race)"
	else
		echo "not ok $N - the early cont: $race"
	fi
	# libvirtd restarts at B: the reconnect hook runs, the domain stays
	case_start
	: >"$T/B/log/hook-order.log"
	restart_lv B
	N=$((N + 1))
	if ! wait_for 30 grep -q "^$DOM reconnect begin" "$T/B/log/hook-order.log"; then
		echo "not ok $N - reconnect: no reconnect hook at B after a libvirtd restart"
	elif [ "$(state B)" != running ] || ! wait_for 30 has_hbs B "$(lines B)" 2; then
		echo "not ok $N - reconnect: the domain at B is '$(state B)' after the restart"
	else
		echo "ok $N - libvirtd restarted at B: reconnect hook ran, domain running ($(took) s)"
	fi
	case_start
	hop B A "ferry-migrate B->A" --mode postcopy
	V A destroy "$DOM" >/dev/null 2>&1
}

# A failure before the switchover: ferry-dest cannot listen at B (its port
# is taken), B's started hook fails, libvirt gives up; the domain runs on
# at A with x-ignore-shared back off.
case_dest_fails() {
	local at caps
	case_start
	domain_xml "$T/dom.xml"
	if ! start_guest A "$T/dom.xml"; then
		fail dest_fails "the domain did not start: $(cat "$T/create.log")"
		return
	fi
	python3 -c "import socket,time; s=socket.socket(); s.bind(('${ADDR[B]}', ${FPORT[B]})); s.listen(); time.sleep(120)" &
	local busy=$!
	sleep 0.3
	ferry_hop A B
	local rc=$?
	kill $busy
	wait $busy 2>/dev/null
	at=$(lines A)
	caps=$(V A qemu-monitor-command "$DOM" '{"execute":"query-migrate-capabilities"}' 2>&1 |
		grep -o '{[^}]*"x-ignore-shared"[^}]*}' | grep -o 'true\|false')
	if [ $rc -eq 0 ]; then
		fail dest_fails "ferry-migrate succeeded"
	elif [ "$(state A)" != running ] || [ -n "$(state B)" ]; then
		fail dest_fails "after the failure: A '$(state A)', B '$(state B)'"
	elif ! wait_for 30 has_hbs A "$at" 2; then
		fail dest_fails "the guest at A stopped"
	elif [ "$caps" != false ]; then
		fail dest_fails "x-ignore-shared left '$caps' at A"
	else
		ok "destination failed before switchover: domain runs on at A; $(grep -o 'ferry: ferry1: .*' "$T/migrate.log" | head -n 1)"
	fi
	V A destroy "$DOM" >/dev/null 2>&1
}

# The destination's hook refuses a Ferry migration of a definition whose
# memfd RAM is not shared (a marked XML given to plain virsh migrate;
# libvirt's ABI check lets the access mode change, and ferry-migrate would
# refuse such a domain at the source already); the domain runs on at A.
case_dest_refuses() {
	local at
	case_start
	domain_xml "$T/dom.xml"
	if ! start_guest A "$T/dom.xml"; then
		fail dest_refuses "the domain did not start: $(cat "$T/create.log")"
		return
	fi
	V A dumpxml --migratable "$DOM" | sed \
		-e '/<access mode=.shared.\/>/d' \
		-e "s#</domain>#<metadata><ferry:migration xmlns:ferry='https://ferry.invalid/libvirt/1' port='${FPORT[B]}'/></metadata></domain>#" \
		>"$T/refused.xml"
	at=$(lines A)
	if V A migrate --live "$DOM" "$(uri B)" --xml "$T/refused.xml" \
		--migrateuri "tcp://${ADDR[B]}:31197" --listen-address "${ADDR[B]}" \
		>"$T/migrate.log" 2>&1; then
		fail dest_refuses "virsh migrate succeeded"
	elif ! grep -q 'ferry: ferry1: refused: Ferry needs guest RAM on shared memfd' "$T/migrate.log"; then
		fail dest_refuses "not the hook's refusal: $(cat "$T/migrate.log")"
	elif [ "$(state A)" != running ] || [ -n "$(state B)" ] ||
		! wait_for 30 has_hbs A "$at" 2; then
		fail dest_refuses "A '$(state A)', B '$(state B)'"
	else
		ok "the destination's hook refused it: $(grep -o 'ferry: ferry1: refused: .*</memoryBacking>' "$T/migrate.log" | head -n 1)"
	fi
}

# Guest RAM not shared: ferry-migrate refuses with one line naming the
# XML to add, before anything moves.
case_not_shared() {
	case_start
	domain_xml "$T/anon.xml" -e '/<source type=.memfd.\/>/d' -e '/<access mode=.shared.\/>/d'
	if ! start_guest A "$T/anon.xml"; then
		fail not_shared "the domain did not start: $(cat "$T/create.log")"
		return
	fi
	ferry_hop A B
	local rc=$?
	if [ $rc -ne 1 ]; then
		fail not_shared "ferry-migrate exit $rc"
	elif [ "$(wc -l <"$T/migrate.log")" -ne 1 ] || ! grep -q "memoryBacking" "$T/migrate.log"; then
		fail not_shared "not one line naming memoryBacking: $(cat "$T/migrate.log")"
	elif [ "$(state A)" != running ] || [ -n "$(state B)" ]; then
		fail not_shared "A '$(state A)', B '$(state B)'"
	else
		ok "RAM not shared refused: $(cat "$T/migrate.log")"
	fi
	V A destroy "$DOM" >/dev/null 2>&1
}

# hbs_from HOST BYTE: whole heartbeat lines on HOST's console after BYTE
hbs_from() { tail -c +"$(($2 + 1))" "$(console "$1")" 2>/dev/null | grep -c '^HB n=[0-9]* up='; }
has_hbs_from() { [ "$(hbs_from "$1" "$2")" -ge "$3" ]; }
linux_ready() { # linux_ready HOST BYTE: READY, then 4 heartbeats
	has_hbs_from "$1" "$2" 4 && tail -c +"$(($2 + 1))" "$(console "$1")" | grep -aq '^READY'
}

# hb_hop SRC-CONSOLE SRC-BYTE DST-CONSOLE DST-BYTE: what the Linux guest
# said across a hop, on its two consoles: the source's from the byte where
# this run of the guest began there, the destination's from where it
# stood before the hop. Only whole lines count (a line the pause cut is
# whole again where the two parts join). It prints "S0 S1 D0 D1 UP COUNT"
# (the first and last heartbeat's n at the source and at the destination,
# the guest's uptime at its last, heartbeats at the destination), or
# "bad: WHY" when the guest said something bad (a panic, an oops, a
# FAIL) or its heartbeats do not count on by one, uptime forward, through
# the join.
hb_hop() {
	python3 - "$@" <<-'EOF'
		import re, sys
		def part(path, off):
		    with open(path, "rb") as f:
		        f.seek(int(off))
		        return f.read()
		src, dst = part(sys.argv[1], sys.argv[2]), part(sys.argv[3], sys.argv[4])
		hb = re.compile(rb"^HB n=(\d+) up=([\d.]+)\r?\n", re.M)
		def hbs(b):
		    return [(int(m[1]), float(m[2])) for m in hb.finditer(b)]
		bad = re.search(rb"^.*(Kernel panic|BUG:|Oops|general protection|"
		                rb"Call Trace|segfault|FAIL).*$", src + dst, re.M)
		s, d, j = hbs(src), hbs(dst), hbs(src + dst)
		if bad:
		    print("bad: the guest said: " + bad[0].decode(errors="replace").strip())
		    sys.exit()
		if not s or not d:
		    print("bad: %d heartbeats at the source, %d at the destination" % (len(s), len(d)))
		    sys.exit()
		for (a, ua), (b, ub) in zip(j, j[1:]):
		    if b != a + 1 or ub < ua:
		        print("bad: heartbeat n=%d up=%.2f, then n=%d up=%.2f" % (a, ua, b, ub))
		        sys.exit()
		print(s[0][0], s[-1][0], d[0][0], d[-1][0], "%.2f" % d[-1][1], len(d))
	EOF
}

# GCHECK for the Linux guest: at TO it printed 4 heartbeats more, and its
# heartbeats count on from the source's (LFROM: the byte of the source's
# console where this run of the guest began)
linux_on() {
	local r s0 s1 d0 d1 up nd
	wait_for 60 has_hbs_from "$1" "$hop_at_bytes" 4
	r=$(hb_hop "$(console "$3")" "$LFROM" "$(console "$1")" "$hop_at_bytes")
	case "$r" in
	bad:*) why="the Linux guest: ${r#bad: }"; return 1 ;;
	esac
	read -r s0 s1 d0 d1 up nd <<<"$r"
	if [ -z "$nd" ] || [ "$nd" -lt 4 ]; then
		why="the Linux guest at $1: ${nd:-no} heartbeats in 60 s ($r)"
		return 1
	fi
	gsay="the Linux guest's heartbeats count on, n=$s0..$s1 at $3, n=$d0..$d1 (up $up s) at $1, no panic"
	LFROM=$hop_at_bytes
}

not_tried() { N=$((N + 1)); echo "not ok $N - $1: not tried ($2)"; }

# docs/libvirt-domain.xml with the Linux guest (changed only as its notes
# say, linux_xml), A -> B in precopy and B -> A in postcopy: the guest's
# own heartbeats say it ran on across each hop.
case_linux() {
	local a="the Linux guest A->B (precopy)" b="the Linux guest B->A (postcopy)" boot
	case_start
	if ! linux_guest; then
		skip "$a" "$why"
		skip "$b" "$why"
		return
	fi
	linux_xml "$T/linux.xml"
	LFROM=$(bytes A)
	if ! V A create "$T/linux.xml" >"$T/create.log" 2>&1; then
		fail "$a" "the domain did not start: $(cat "$T/create.log")"
		not_tried "$b" "no domain"
		return
	fi
	if ! wait_for 150 linux_ready A "$LFROM"; then
		fail "$a" "no READY and 4 heartbeats in 150 s: $(tail -c +"$((LFROM + 1))" "$(console A)" | tail -n 2 | tr -d '\r')"
		not_tried "$b" "no guest"
		V A destroy "$DOM" >/dev/null 2>&1
		return
	fi
	boot=$(took)
	case_start
	GCHECK=linux_on hop A B "$a, booted in $boot s" --mode precopy
	if [ -n "$hop_ok" ]; then
		case_start
		GCHECK=linux_on hop B A "$b" --mode postcopy
	else
		not_tried "$b" "A->B failed"
	fi
	for h in A B; do V "$h" destroy "$DOM" >/dev/null 2>&1; done
}

# regions HOST: the RAM regions the hook's link served at HOST, as
# NAME@GPA:SIZE:BACKING words (ferry-qemu's log of HELLO)
regions() {
	sed -n 's/.*region [0-9]*: "\([^"]*\)" gpa \(0x[0-9a-f]*\), \([0-9]*\) MiB of \([A-Za-z0-9-]*\) .*/\1@\2:\3M:\4/p' \
		"$T/$1/lib/ferry-$1/$DOM/link.log" 2>/dev/null | paste -sd' '
}
# GCHECK: the guest verified, and the destination's link served REGIONS
served() {
	local got
	verified "$@" || return 1
	got=$(regions "$1")
	if [ "$got" != "$REGIONS" ]; then
		why="the link at $1 served '$got', not '$REGIONS'"
		return 1
	fi
	gsay="guest verified on $REGIONS"
}

# there_and_back WHAT XML REGIONS: the domain from XML started at A, then
# ferry-migrate A -> B (precopy) and B -> A (postcopy), the guest verified
# after each on the regions expected
there_and_back() {
	local what=$1 xml=$2
	case_start
	if ! start_guest A "$xml"; then
		fail "$what A->B" "the domain did not start: $(cat "$T/create.log")"
		not_tried "$what B->A" "no domain"
		return
	fi
	REGIONS=$3 GCHECK=served hop A B "$what A->B (precopy)" --mode precopy
	if [ -n "$hop_ok" ]; then
		case_start
		REGIONS=$3 GCHECK=served hop B A "$what B->A (postcopy)" --mode postcopy
	else
		not_tried "$what B->A" "A->B failed"
	fi
	for h in A B; do V "$h" destroy "$DOM" >/dev/null 2>&1; done
}

# <memoryBacking><hugepages/> on the shared memfd: guest RAM on 2 MiB
# huge pages (32 MiB, so that two QEMUs fit a small pool, reserved for
# the case and given back after; a skip when it cannot be had).
case_hugetlb() {
	if ! on A grep -q " $T/A/huge hugetlbfs " /proc/self/mounts; then
		skip "hugetlb-2M memfd A->B" "no hugetlbfs here"
		skip "hugetlb-2M memfd B->A" "no hugetlbfs here"
		return
	fi
	domain_xml "$T/huge.xml" -e "s#<memoryBacking>#&<hugepages/>#" \
		-e "s#<memory unit='MiB'>[0-9]*<#<memory unit='MiB'>32<#"
	with_hugepages "hugetlb-2M memfd A->B" there_and_back "hugetlb-2M memfd" \
		"$T/huge.xml" "pc.ram@0x0:32M:hugetlb-2M"
	[ $? -eq 77 ] && skip "hugetlb-2M memfd B->A" "$why"
}

# Two guest NUMA cells (<cpu><numa>, <numatune><memnode>): a RAM backend
# each, so two regions for Ferry (this machine has one host node: both
# cells on node 0).
case_numa() {
	domain_xml "$T/numa.xml" \
		-e "s#<feature policy='disable' name='cx16'/>#&<numa><cell id='0' cpus='0' memory='64' unit='MiB'/><cell id='1' memory='64' unit='MiB'/></numa>#" \
		-e "s#<vcpu>1</vcpu>#&<numatune><memnode cellid='0' mode='strict' nodeset='0'/><memnode cellid='1' mode='strict' nodeset='0'/></numatune>#"
	there_and_back "two NUMA cells" "$T/numa.xml" \
		"ram-node0@0x0:64M:shmem ram-node1@0x4000000:64M:shmem"
}

start_lv A a 31300
start_lv B b 31400
for h in A B; do
	if ! wait_for 30 test -S "$T/$h/run/libvirt-sock" || ! V "$h" list >/dev/null 2>&1; then
		echo "1..0 # SKIP libvirtd did not start here: $(tail -n 1 "$T/$h/libvirtd.out")"
		exit 0
	fi
done

CASES=${FERRY_CASES:-plain ferry dest_fails dest_refuses not_shared linux hugetlb numa}
declare -A TAP_LINES=([ferry]=4 [linux]=2 [hugetlb]=2 [numa]=2) # else 1
n=0
for c in $CASES; do n=$((n + ${TAP_LINES[$c]:-1})); done
echo "1..$n"
for c in $CASES; do
	if declare -F "case_$c" >/dev/null; then
		for h in A B; do V "$h" destroy "$DOM" >/dev/null 2>&1; done
		"case_$c"
	else
		N=$((N + 1))
		echo "not ok $N - $c: no such case"
	fi
done
exit 0

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Ferry migrating a stock QEMU (TAP). Shaped "start workload, migrate,
# verify": the self-verifying ferry-guest payload in qemu-system-x86_64
# (TCG, or KVM where ferry-vm --probe-accel finds it native), 64 MiB of
# guest RAM on a shared memfd, one vCPU, a ferry-qemu daemon per QEMU,
# ferry-source and ferry-dest over TLS on loopback. Each QEMU gets its own
# fw_cfg resume token, so the guest's rpasses restarts from 0 where it
# resumes; its DONE line says every page was checked since then.
#
# Every wait is bounded; every process started here is ended by its PID.
# Speaks TAP, like tests/migrate.sh: the plan, then "ok N - ..." or
# "not ok N - why" per case ("# SKIP why" where it cannot run), and exit
# 0; "1..0 # SKIP" where qemu-system-x86_64 is missing; "Bail out!" and 99
# when the build is incomplete.
set -u
B=${FERRY_BUILD:-$(pwd)}
FQ=$B/tools/ferry-qemu/ferry-qemu
PRELOAD=$B/tools/ferry-qemu/libferry-preload.so
GUEST=$B/tools/guest/ferry-guest
SRC=$B/tools/ferry-source
DST=$B/tools/ferry-dest
VM=$B/tools/ferry-vm/ferry-vm
for f in "$FQ" "$PRELOAD" "$GUEST" "$SRC" "$DST" "$VM" "$B/tools/ferry-cert"; do
	[ -e "$f" ] || { echo "Bail out! missing $f (build first)"; exit 99; }
done
if ! command -v qemu-system-x86_64 >/dev/null; then
	echo "1..0 # SKIP qemu-system-x86_64 not installed"
	exit 0
fi
ACCEL=tcg
"$VM" --probe-accel 2>/dev/null | grep -q 'use=kvm' && ACCEL=kvm

T=$(mktemp -d /tmp/ferry-qemu.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	[ -n "${FERRY_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"
}
trap cleanup EXIT
"$B/tools/ferry-cert" demo "$T/pki" >/dev/null || exit 99
STLS="--ca $T/pki/ca.pem --cert $T/pki/server.pem --key $T/pki/server-key.pem"
CTLS="--ca $T/pki/ca.pem --cert $T/pki/client.pem --key $T/pki/client-key.pem"

MEM=64M
WS=16M
WS_PAGES=4096	# 16 MiB of 4 KiB pages: what DONE must have checked
N=0 T0=0
case_start() { T0=$(date +%s%N); }
took() { # seconds since case_start, one decimal
	local ms=$((($(date +%s%N) - T0) / 1000000))
	printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}
ok() { N=$((N + 1)); echo "ok $N - $1 ($(took) s)"; }
fail() {
	N=$((N + 1))
	echo "not ok $N - $1: $2"
	for f in "$T"/*/*.log "$T"/*.log; do
		[ -s "$f" ] && { echo "# --- $f"; tail -n 4 "$f" | sed 's/^/# /'; }
	done
}
alive() { kill -0 "$1" 2>/dev/null; }

# wait_for SECONDS CMD...: polls CMD every 0.1 s, for at most SECONDS
wait_for() {
	local n=$(($1 * 10))
	shift
	while [ $n -gt 0 ]; do
		"$@" && return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}
hbs() { grep -c '^HB ' "$T/$1/console.log" 2>/dev/null || true; }
has_hbs() { [ "$(hbs "$1")" -ge "$2" ]; }
done_line() { grep '^DONE' "$T/$1/console.log" 2>/dev/null | tail -n 1; }
json() { sed -n "s/.*\"$2\": \([0-9.]*\).*/\1/p" "$T/$1" | head -n 1; }
has_done() { grep -q '^DONE' "$T/$1/console.log" 2>/dev/null; }
field() { sed -n "s/.*[ ]$2=\([0-9]*\).*/\1/p" <<<"$1"; }

# start_qemu NAME GUEST-ARGS [CMDLINE OPTIONS]: QEMU (with $QEMU_EXTRA
# among its arguments) and its ferry-qemu daemon in $T/NAME (link at
# $T/NAME/vm.sock); sets NAME_qemu and NAME_fq
start_qemu() {
	local name=$1 args=$2 d=$T/$1
	shift 2
	rm -rf "$d"
	mkdir -p "$d"
	"$FQ" cmdline --exec --dir "$d" -m $MEM --accel $ACCEL \
		--preload "$PRELOAD" "$@" -- ${QEMU_EXTRA:-} -nodefaults -display none \
		-no-reboot -kernel "$GUEST" -append "$args" \
		-serial "file:$d/console.log" \
		-device isa-debug-exit,iobase=0xf4,iosize=4 \
		>"$d/qemu.log" 2>&1 &
	eval "${name}_qemu=$!"
	PIDS+=($!)
	"$FQ" serve -v --dir "$d" >"$d/fq.log" 2>&1 &
	eval "${name}_fq=$!"
	PIDS+=($!)
	wait_for 20 test -S "$d/vm.sock"
}

# stop_all: ends what a case started (by PID) and waits for it
stop_all() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	PIDS=()
}

start_dest() { # extra args; sets PORT once ferry-dest listens
	# Not under timeout(1): the case kills this very PID. Its waits are
	# bounded by --accept-timeout and --io-timeout. The last case's log goes
	# first: the shell truncates it only once the child runs, and its old
	# port must not be read meanwhile.
	rm -f "$T/fdest.log" "$T/dest.json"
	"$DST" --vm "$T/dst/vm.sock" --listen 127.0.0.1:0 $STLS \
		--accept-timeout 60 --io-timeout 10s --json "$T/dest.json" "$@" \
		>"$T/fdest.log" 2>&1 &
	dest_pid=$!
	PIDS+=($!)
	PORT=1 # nothing listens there: the case fails with a clear error
	get_port() {
		PORT=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' \
			"$T/fdest.log")
		[ -n "$PORT" ] || ! alive "$dest_pid"
	}
	wait_for 20 get_port
	[ -n "$PORT" ] || PORT=1
}

# verified NAME: the guest in NAME ran (rpasses counted from 0 there),
# then said DONE with every page checked since, and no error anywhere
verified() {
	local d first
	wait_for 60 has_done "$1" || { why="no DONE line"; return 1; }
	d=$(done_line "$1")
	first=$(grep -m1 '^HB ' "$T/$1/console.log")
	if grep -q 'errors=[1-9]' "$T/$1/console.log"; then
		why="errors: $(grep -m1 'errors=[1-9]' "$T/$1/console.log")"
	elif [ "$(field "$first" rpasses)" != 0 ]; then
		why="the first heartbeat there is not after a resume: $first"
	elif [ "$(field "$d" rpasses)" -lt 1 ]; then
		why="DONE without a whole pass: $d"
	elif [ "$(field "$d" pages)" != $WS_PAGES ]; then
		why="DONE checked $(field "$d" pages) pages, not $WS_PAGES: $d"
	else
		return 0
	fi
	return 1
}

# 1. Device state through the link: ferry-vm snapshot of a running QEMU,
#    restore into a second QEMU started with -incoming defer.
case_snapshot() {
	case_start
	start_qemu src "ws=$WS rate=8 hb_ms=250 hbs=40" ||
		{ fail snapshot "no link for the source QEMU"; return; }
	start_qemu dst "ws=$WS" --incoming ||
		{ fail snapshot "no link for the incoming QEMU"; return; }
	wait_for 30 has_hbs src 2
	if ! timeout 60 "$VM" snapshot -s "$T/src/vm.sock" "$T/snap" \
		--keep-running >"$T/snap.log" 2>&1; then
		fail snapshot "ferry-vm snapshot: $(cat "$T/snap.log")"
	elif ! timeout 60 "$VM" restore -s "$T/dst/vm.sock" "$T/snap" \
		>"$T/restore.log" 2>&1; then
		fail snapshot "ferry-vm restore: $(cat "$T/restore.log")"
	elif ! verified dst; then
		fail snapshot "restored guest: $why"
	else
		STATE_BYTES=$(sed -n 's/.*device state: \([0-9]*\) bytes.*/\1/p' \
			"$T/src/fq.log")
		ok "device state round trip (snapshot, restore; stream $STATE_BYTES bytes)"
	fi
	stop_all
}

# 2. RAM not on a shared backend: one line naming the option, and the
#    guest never paused.
case_not_shared() {
	local d=$T/plain before
	case_start
	rm -rf "$d"
	mkdir -p "$d"
	LD_PRELOAD=$PRELOAD FERRY_UFFD_SOCKET=$d/uffd.sock \
		qemu-system-x86_64 -accel $ACCEL -m 32M -nodefaults \
		-display none -no-reboot -kernel "$GUEST" \
		-append "ws=4M rate=4 hb_ms=250" \
		-qmp "unix:$d/qmp.sock,server=on,wait=off" \
		-serial "file:$d/console.log" \
		-device isa-debug-exit,iobase=0xf4,iosize=4 >"$d/qemu.log" 2>&1 &
	local qpid=$!
	PIDS+=($qpid)
	wait_for 30 test -s "$d/console.log"
	timeout 30 "$FQ" serve --dir "$d" >"$d/out" 2>"$d/err"
	local rc=$?
	before=$(hbs plain)
	if [ $rc -ne 1 ]; then
		fail not_shared "ferry-qemu exit $rc: $(cat "$d/err")"
	elif [ "$(wc -l <"$d/err")" -ne 1 ] ||
		! grep -q 'memory-backend-memfd.*share=on' "$d/err"; then
		fail not_shared "not one line naming the backend: $(cat "$d/err")"
	elif ! wait_for 30 has_hbs plain $((before + 2)) || ! alive $qpid; then
		fail not_shared "the guest stopped"
	else
		ok "RAM not shared refused: $(cat "$d/err")"
	fi
	stop_all
}

# migrate NAME "SOURCE ARGS" ["CMDLINE ARGS" [REGIONS]]: a dirtying guest
# moves from src to dst (QEMUs from `ferry-qemu cmdline CMDLINE ARGS`, with
# REGIONS RAM regions on the link, 1 by default) and is verified there;
# the source QEMU quits once the destination runs.
migrate() {
	local name=$1 srcargs=$2 qemuargs=${3:-} regions=${4:-1} rc
	case_start
	start_qemu src "ws=$WS rate=8 hb_ms=250 hbs=48" $qemuargs ||
		{ fail "$name" "no link for the source QEMU"; return; }
	start_qemu dst "ws=$WS" --incoming $qemuargs ||
		{ fail "$name" "no link for the incoming QEMU"; return; }
	wait_for 30 has_hbs src 2
	start_dest
	timeout 120 "$SRC" --vm "$T/src/vm.sock" --dest "127.0.0.1:$PORT" \
		$CTLS -q $srcargs --json "$T/src.json" >"$T/fsrc.log" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		fail "$name" "ferry-source exit $rc: $(cat "$T/fsrc.log")"
	elif ! wait "$dest_pid"; then
		fail "$name" "ferry-dest failed: $(tail -n 2 "$T/fdest.log")"
	elif ! verified dst; then
		fail "$name" "destination guest: $why"
	elif ! grep -q "($regions RAM region" "$T/src/fq.log"; then
		fail "$name" "the link did not show $regions RAM region(s)"
	elif ! wait_for 20 eval '! alive $src_qemu'; then
		fail "$name" "the source QEMU did not quit"
	else
		ok "$name: guest verified at the destination ($(done_line dst); downtime $(json src.json downtime_ms) ms, state load $(json src.json state_load_ms) ms, faults $(json dest.json faults))"
	fi
	stop_all
}

case_precopy() { migrate precopy "--mode precopy"; }
case_postcopy() { migrate postcopy "--mode postcopy"; }
case_hybrid() { migrate hybrid "--mode hybrid"; }
case_auto() { migrate auto "--mode auto"; }
# QEMU under the seccomp filter libvirt gives it: no spawning (hence fd:,
# not exec:), and the preload's uffds still come after the filter is on.
case_sandbox() {
	QEMU_EXTRA="-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny" \
		migrate "postcopy, QEMU in its seccomp sandbox" "--mode postcopy"
}
# Two NUMA nodes, each on its own memfd: two regions on the link.
case_numa() {
	migrate "postcopy, 2 NUMA nodes" "--mode postcopy" "--nodes 2" 2
}

# 5. The destination dies before the switchover: the source QEMU runs on.
case_dest_killed() {
	local rc before st
	case_start
	start_qemu src "ws=$WS rate=8 hb_ms=250" ||
		{ fail dest_killed "no link for the source QEMU"; return; }
	start_qemu dst "ws=$WS" --incoming ||
		{ fail dest_killed "no link for the incoming QEMU"; return; }
	wait_for 30 has_hbs src 2
	start_dest
	# 16 MiB of data at 4 MiB/s: the first round lasts about 4 s, and a
	# guest dirtying 8 MiB/s never converges; the kill comes in round 0
	# (checked below: no state was saved).
	timeout 120 "$SRC" --vm "$T/src/vm.sock" --dest "127.0.0.1:$PORT" \
		$CTLS -q --mode precopy --bandwidth 4 --io-timeout 3s \
		--deadline 100 >"$T/fsrc.log" 2>&1 &
	local spid=$!
	PIDS+=($spid)
	sleep 2
	kill -9 "$dest_pid" "$dst_qemu"
	wait "$dest_pid" "$dst_qemu" 2>/dev/null # reaped quietly: no "Killed"
	wait "$spid"
	rc=$?
	before=$(hbs src)
	if [ $rc -eq 0 ]; then
		fail dest_killed "ferry-source succeeded without a destination"
	elif grep -q 'link: save-state' "$T/src/fq.log"; then
		fail dest_killed "the kill came after the switchover began"
	elif grep -q 'did not converge' "$T/fsrc.log"; then
		fail dest_killed "ferry-source never noticed the kill: $(cat "$T/fsrc.log")"
	elif ! wait_for 30 has_hbs src $((before + 2)) || ! alive "$src_qemu"; then
		fail dest_killed "the source guest did not keep running"
	else
		ok "destination killed before switchover: source runs on ($(tail -n 1 "$T/fsrc.log"))"
	fi
	stop_all
}

# The source agent dies mid-postcopy: the source QEMU stays paused with
# all the memory, its daemon serves a new agent, and ferry-source --recover
# finishes the migration; the guest is verified at the destination.
case_recover() {
	local rc
	case_start
	start_qemu src "ws=$WS rate=8 hb_ms=250 hbs=48" ||
		{ fail recover "no link for the source QEMU"; return; }
	start_qemu dst "ws=$WS" --incoming ||
		{ fail recover "no link for the incoming QEMU"; return; }
	wait_for 30 has_hbs src 2
	start_dest
	# 16 MiB of data at 4 MiB/s: postcopy lasts about 4 s.
	"$SRC" --vm "$T/src/vm.sock" --dest "127.0.0.1:$PORT" $CTLS -q \
		--mode postcopy --bandwidth 4 --io-timeout 2s >"$T/fsrc.log" 2>&1 &
	local spid=$!
	PIDS+=($spid)
	if ! wait_for 30 has_hbs dst 1; then
		fail recover "no switchover: $(cat "$T/fsrc.log")"
		stop_all
		return
	fi
	kill -9 "$spid"
	wait "$spid" 2>/dev/null
	timeout 120 "$SRC" --vm "$T/src/vm.sock" --dest "127.0.0.1:$PORT" \
		$CTLS -q --recover --json "$T/src.json" >"$T/fsrc.log" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		fail recover "ferry-source --recover exit $rc: $(cat "$T/fsrc.log")"
	elif ! wait "$dest_pid"; then
		fail recover "ferry-dest failed: $(tail -n 2 "$T/fdest.log")"
	elif ! verified dst; then
		fail recover "destination guest: $why"
	elif ! wait_for 20 eval '! alive $src_qemu'; then
		fail recover "the source QEMU did not quit"
	else
		ok "postcopy, source agent killed, ferry-source --recover: guest verified ($(done_line dst))"
	fi
	stop_all
}

# Guest RAM on 2 MiB hugetlb memfds (32 MiB guests): needs 32 free huge
# pages, reserved here if the pool lacks them and given back after, under
# the lock the other hugetlb tests take (the pool is system-wide).
case_hugetlb() {
	local pool=/proc/sys/vm/nr_hugepages need=36 old free lk
	exec {lk}>/tmp/ferry-tests-hugetlb.lock
	flock "$lk"
	old=$(cat $pool)
	free=$(awk '/^HugePages_Free/ {print $2}' /proc/meminfo)
	[ "$free" -lt $need ] && echo $((old + need - free)) >$pool 2>/dev/null
	free=$(awk '/^HugePages_Free/ {print $2}' /proc/meminfo)
	if [ "$free" -lt $need ]; then
		N=$((N + 1))
		echo "ok $N - postcopy, hugetlb-2M # SKIP cannot reserve $need huge pages"
	else
		MEM=32M migrate "postcopy, hugetlb-2M" "--mode postcopy" "--hugetlb"
	fi
	echo "$old" >$pool 2>/dev/null
	exec {lk}>&-
}

# 8. A destination QEMU of another shape (32 MiB against 64): refused
#    before anything moves, with one line, and the source runs on.
case_mismatch() {
	local rc before
	case_start
	start_qemu src "ws=$WS rate=8 hb_ms=250" ||
		{ fail mismatch "no link for the source QEMU"; return; }
	MEM=32M start_qemu dst "ws=$WS" --incoming ||
		{ fail mismatch "no link for the incoming QEMU"; return; }
	wait_for 30 has_hbs src 2
	start_dest
	timeout 60 "$SRC" --vm "$T/src/vm.sock" --dest "127.0.0.1:$PORT" \
		$CTLS -q >"$T/fsrc.log" 2>&1
	rc=$?
	before=$(hbs src)
	if [ $rc -eq 0 ]; then
		fail mismatch "ferry-source migrated into a smaller VM"
	elif [ "$(wc -l <"$T/fsrc.log")" -ne 1 ] ||
		! grep -q 'layout' "$T/fsrc.log"; then
		fail mismatch "not one line on the layout: $(cat "$T/fsrc.log")"
	elif grep -q 'link: pause' "$T/src/fq.log"; then
		fail mismatch "the source VM was paused"
	elif ! wait_for 30 has_hbs src $((before + 2)) || ! alive "$src_qemu"; then
		fail mismatch "the source guest did not keep running"
	else
		ok "layout mismatch refused: $(cat "$T/fsrc.log")"
	fi
	stop_all
}

# The commitment point (docs/vmlink.md): an agent that pauses QEMU and
# leaves without a COMMIT gets it resumed by ferry-qemu; one that
# committed leaves it paused until an agent resumes it.
CLIENT=$(cd "$(dirname "$0")" && pwd)/vmlink-client.py
link_state() { python3 "$CLIENT" "$T/src/vm.sock" status 2>/dev/null | awk '{ print $3 }'; }
is_state() { [ "$(link_state)" = "$1" ]; }
case_agent_gone() {
	local before out
	case_start
	start_qemu src "ws=$WS rate=8 hb_ms=250" ||
		{ fail agent_gone "no link for the QEMU"; return; }
	wait_for 30 has_hbs src 2
	out=$(timeout 30 python3 "$CLIENT" "$T/src/vm.sock" pause 2>&1)
	before=$(hbs src)
	if [ "$out" != "pause 0" ]; then
		fail agent_gone "pause: $out"
	elif ! wait_for 20 is_state running ||
		! wait_for 30 has_hbs src $((before + 2)); then
		fail agent_gone "QEMU was not resumed after an uncommitted agent left"
	elif ! grep -q 'the guest runs here again' "$T/src/fq.log"; then
		fail agent_gone "no line on the resume: $(tail -n 2 "$T/src/fq.log")"
	elif out=$(timeout 30 python3 "$CLIENT" "$T/src/vm.sock" pause commit 2>&1) &&
		[ "$out" != "$(printf 'pause 0\ncommit 0')" ]; then
		fail agent_gone "pause, commit: $out"
	elif ! wait_for 10 grep -q 'QEMU stays paused here' "$T/src/fq.log" ||
		! is_state paused; then
		fail agent_gone "a committed QEMU did not stay paused ($(link_state))"
	elif ! timeout 30 python3 "$CLIENT" "$T/src/vm.sock" resume >/dev/null ||
		! wait_for 20 is_state running; then
		fail agent_gone "a new agent could not resume the committed QEMU"
	else
		ok "agent gone: uncommitted, QEMU resumed; committed, it stayed paused"
	fi
	stop_all
}

CASES=${FERRY_CASES:-snapshot not_shared precopy postcopy hybrid auto sandbox numa hugetlb recover dest_killed mismatch agent_gone}
set -- $CASES
echo "1..$#"
echo "# accelerator: $ACCEL"
for c in $CASES; do
	if declare -F "case_$c" >/dev/null; then
		"case_$c"
	else
		N=$((N + 1))
		echo "not ok $N - $c: no such case"
	fi
done
exit 0

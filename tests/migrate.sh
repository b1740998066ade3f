#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Integration tests of live migration, shaped "start workload, migrate,
# verify": real ferry-vm guests (KVM where /dev/kvm exists, native threads
# otherwise), ferry-source and ferry-dest over TLS on loopback. The guest
# checks every page itself; a destination VM that exits 0 after its last
# heartbeat has verified all of its memory.
#
# Run from the build directory (make check sets FERRY_BUILD). Speaks TAP:
# one "ok N - ..." / "not ok N - ..." line per case, the plan at the end;
# Automake runs it with tap-driver.sh, so that each case counts.
set -u
B=${FERRY_BUILD:-$(pwd)}
VM=$B/tools/ferry-vm/ferry-vm
SRC=$B/tools/ferry-source
DST=$B/tools/ferry-dest
for f in "$VM" "$SRC" "$DST" "$B/tools/ferry-cert"; do
	[ -x "$f" ] || { echo "Bail out! missing $f (build first)"; exit 99; }
done
KVM=--no-kvm
[ -w /dev/kvm ] && KVM=

T=$(mktemp -d /tmp/ferry-migrate.XXXXXX)
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
n=0

ok() { n=$((n + 1)); echo "ok $n - ${1//#/}"; }
skip() { n=$((n + 1)); echo "ok $n - ${1//#/} # SKIP ${2//#/}"; }
fail() {
	n=$((n + 1))
	echo "not ok $n - $1: ${2//#/}" | head -n 1
	echo "$2" | sed 's/^/# /'
	for f in "$T"/*.log; do echo "# --- $f"; tail -n 5 "$f" | sed 's/^/#   /'; done
}

# start_vm NAME ARGS...: a ferry-vm serving $T/NAME.sock, log $T/NAME.log
start_vm() {
	local name=$1
	shift
	rm -f "$T/$name.sock"
	$VM $KVM -s "$T/$name.sock" "$@" >"$T/$name.log" 2>&1 &
	eval "${name}_pid=$!"
	PIDS+=($!)
	for _ in $(seq 100); do [ -S "$T/$name.sock" ] && return 0; sleep 0.05; done
	return 1
}

# wait_filled NAME: waits (up to 60 s) until NAME's guest has written its
# whole working set and dirties at its full rate
wait_filled() {
	for _ in $(seq 600); do
		grep -q '^FILLED' "$T/$1.log" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# heartbeats NAME: how many heartbeat lines NAME has printed
heartbeats() { grep -c '^HB ' "$T/$1.log" 2>/dev/null || true; }

# wait_hb NAME N: waits (up to 30 s) until NAME has printed N heartbeats
wait_hb() {
	for _ in $(seq 300); do
		[ "$(heartbeats "$1")" -ge "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

alive() { kill -0 "$1" 2>/dev/null; }

start_dest() { # extra args; sets PORT once ferry-dest listens
	$DST --vm "$T/dst.sock" --listen 127.0.0.1:0 $STLS \
		--accept-timeout 30 --json "$T/dest.json" "$@" >"$T/fdest.log" 2>&1 &
	dest_pid=$!
	PIDS+=($!)
	PORT=
	for _ in $(seq 200); do
		PORT=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$T/fdest.log")
		[ -n "$PORT" ] && return 0
		alive "$dest_pid" || break
		sleep 0.05
	done
	echo "# ferry-dest did not listen: $(cat "$T/fdest.log")"
	PORT=1 # nothing listens there: the case fails with a clear error
}

# 1. A guest dirtying memory moves; it finishes its heartbeats at the
#    destination with every page verified; the source VM is released.
case_precopy() {
	start_vm src --ws 64M --rate 32 --heartbeats 8 || return 1
	start_vm dst --ws 64M --rate 32 --incoming || return 1
	wait_hb src 2
	start_dest
	if ! $SRC --vm "$T/src.sock" --dest "127.0.0.1:$PORT" $CTLS -q -n 2 \
		--json "$T/src.json" >"$T/fsrc.log" 2>&1; then
		fail precopy "ferry-source failed: $(cat "$T/fsrc.log")"
		return
	fi
	wait "$dest_pid" || { fail precopy "ferry-dest failed"; return; }
	wait "$dst_pid"
	local st=$?
	wait "$src_pid"
	local sst=$?
	grep -q '"outcome": "completed"' "$T/src.json" &&
		grep -q '"downtime_ms"' "$T/src.json" ||
		{ fail precopy "no completed statistics"; return; }
	if [ $st -ne 0 ] || grep -q 'errors=[1-9]' "$T/dst.log"; then
		fail precopy "destination guest exit $st"
	elif [ $sst -ne 0 ]; then
		fail precopy "source VM exit $sst after release"
	elif [ "$(heartbeats dst)" -lt 2 ]; then
		fail precopy "the guest did not run at the destination"
	else
		ok "precopy: guest verified at the destination"
	fi
}

# run_mode NAME "VM ARGS" "SOURCE ARGS": migrates a guest that stops by
# itself after 8 heartbeats; passes when it finishes them at the
# destination with every page verified.
run_mode() {
	local name=$1 vmargs=$2 srcargs=$3 hbs=${4:-8}
	start_vm src $vmargs --heartbeats "$hbs" || return 1
	start_vm dst $vmargs --incoming || return 1
	wait_hb src 2
	wait_filled src
	start_dest
	if ! $SRC --vm "$T/src.sock" --dest "127.0.0.1:$PORT" $CTLS -q \
		$srcargs --json "$T/src.json" >"$T/fsrc.log" 2>&1; then
		fail "$name" "ferry-source failed: $(cat "$T/fsrc.log")"
		kill "$src_pid" "$dst_pid" "$dest_pid" 2>/dev/null
		wait 2>/dev/null
		return
	fi
	wait "$dest_pid" || { fail "$name" "ferry-dest failed"; return; }
	wait "$dst_pid"
	local st=$?
	wait "$src_pid"
	if [ $st -ne 0 ] || grep -q 'errors=[1-9]' "$T/dst.log"; then
		fail "$name" "destination guest exit $st"
	elif [ "$(heartbeats dst)" -lt 2 ]; then
		fail "$name" "the guest did not run at the destination"
	else
		ok "$name: $(grep -o '"mode": "[a-z]*"' "$T/src.json"), guest verified, $(grep -o '"faults": [0-9]*' "$T/src.json")"
	fi
}

case_postcopy_idle() {
	run_mode "postcopy, idle guest" "--ws 64M --rate 0" "--mode postcopy"
}
case_postcopy() {
	# A random-write dirtier at 256 MiB/s.
	run_mode postcopy "--ws 64M --rate 256" "--mode postcopy -n 2"
	grep -q '"mode": "postcopy"' "$T/src.json" ||
		fail postcopy_mode "the migration did not end in postcopy"
}
case_postcopy_sequential() {
	run_mode "postcopy, sequential reader" \
		"--ws 64M --rate 8 --pattern sequential" "--mode postcopy"
}
case_postcopy_vcpus() {
	# Four vCPUs fault on the guest's pages at once.
	run_mode "postcopy, 4 vCPUs" "--ws 64M --rate 64 -c 4" "--mode postcopy"
}
case_hybrid() {
	run_mode hybrid "--ws 64M --rate 64" "--mode hybrid"
	grep -q '"mode": "postcopy"' "$T/src.json" ||
		fail hybrid_mode "hybrid did not end in postcopy"
}
case_auto() {
	# 1 ms of downtime is not met within the one round allowed: auto
	# has to switch to postcopy. (run_mode waits for 2 heartbeats.)
	run_mode "auto, not converging" "--ws 64M --rate 256" \
		"--mode auto --downtime 1 --max-rounds 1"
	grep -q '"mode": "postcopy"' "$T/src.json" ||
		fail auto_mode "auto did not switch to postcopy"
}

case_auto_2g() {
	# The issue's case: auto completing a 256 MiB/s dirtier on 2 GiB.
	run_mode "auto, 2 GiB guest dirtying 256 MiB/s" "--ws 2G --rate 256" \
		"--mode auto" 60
}

# 2M hugetlb: whole huge pages are placed atomically. The pool is
# system-wide: the tests' lock is held while it is changed.
case_postcopy_hugetlb() {
	local pool=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages old
	exec 9>/tmp/ferry-tests-hugetlb.lock
	flock 9
	old=$(cat "$pool")
	echo $((old + 48)) >"$pool"
	if [ "$(cat "$pool")" -lt $((old + 48)) ]; then
		echo "$old" >"$pool"
		flock -u 9
		skip "postcopy, hugetlb-2M" "cannot reserve 48 huge pages"
		return 0
	fi
	run_mode "postcopy, hugetlb-2M" "--ws 32M --rate 32 -b hugetlb-2M" \
		"--mode postcopy"
	echo "$old" >"$pool"
	flock -u 9
}

# The destination agent dies after the postcopy switchover: the source
# says so in one line and keeps the VM paused with all of its memory.
case_postcopy_dest_killed() {
	start_vm src --ws 64M --rate 64 || return 1
	start_vm dst --ws 64M --rate 64 --incoming || return 1
	wait_hb src 2
	start_dest
	$SRC --vm "$T/src.sock" --dest "127.0.0.1:$PORT" $CTLS -q \
		--mode postcopy --bandwidth 8 --timeout 3000 --recover-timeout 2 \
		>"$T/fsrc.log" 2>&1 &
	local spid=$!
	PIDS+=($spid)
	for _ in $(seq 100); do
		[ "$(heartbeats dst)" -ge 1 ] && break
		sleep 0.05
	done
	kill -9 "$dest_pid"
	wait "$spid"
	local rc=$?
	if [ $rc -ne 1 ]; then
		fail postcopy_dest_killed "ferry-source exit $rc"
	elif ! alive "$src_pid"; then
		fail postcopy_dest_killed "the source VM (holding the memory) exited"
	elif ! grep -q 'paused here' "$T/fsrc.log"; then
		fail postcopy_dest_killed "no word on the paused VM: $(cat "$T/fsrc.log")"
	else
		ok "postcopy, destination killed: source VM paused with its memory"
	fi
	kill "$src_pid" "$dst_pid" 2>/dev/null
	wait 2>/dev/null
}

PROXY=$(dirname "$0")/tcp-proxy.py
# start_proxy LPORT: a TCP relay from LPORT to ferry-dest's port
start_proxy() {
	python3 "$PROXY" "$1" 127.0.0.1 "$PORT" >"$T/proxy.log" 2>&1 &
	proxy_pid=$!
	PIDS+=($!)
	for _ in $(seq 100); do
		grep -q listening "$T/proxy.log" && return 0
		sleep 0.05
	done
	return 1
}

# wait_postcopy: until the guest runs at the destination (postcopy began)
wait_postcopy() {
	for _ in $(seq 600); do
		[ "$(heartbeats dst)" -ge 1 ] && return 0
		sleep 0.05
	done
	return 1
}

# The network between the agents fails mid-postcopy: faulting vCPUs wait,
# the source reconnects by itself, and the migration completes with every
# page verified.
case_postcopy_recover() {
	local lport=$((30000 + $$ % 20000))
	start_vm src --ws 64M --rate 32 --heartbeats 10 || return 1
	start_vm dst --ws 64M --rate 32 --incoming || return 1
	wait_hb src 2
	start_dest
	start_proxy $lport || return 1
	$SRC --vm "$T/src.sock" --dest "127.0.0.1:$lport" $CTLS -q \
		--mode postcopy --bandwidth 12 --timeout 2000 --json "$T/src.json" \
		--recover-timeout 30 >"$T/fsrc.log" 2>&1 &
	local spid=$!
	PIDS+=($spid)
	wait_postcopy || { fail postcopy_recover "no switchover"; return; }
	sleep 0.3
	kill -9 "$proxy_pid"
	sleep 1
	start_proxy $lport || return 1
	wait "$spid"
	local rc=$?
	wait "$dest_pid"
	local drc=$?
	wait "$dst_pid"
	local st=$?
	if [ $rc -ne 0 ] || [ $drc -ne 0 ]; then
		fail postcopy_recover "source $rc, dest $drc: $(cat "$T/fsrc.log" "$T/fdest.log")"
	elif [ $st -ne 0 ] || grep -q 'errors=[1-9]' "$T/dst.log"; then
		fail postcopy_recover "destination guest exit $st"
	elif ! grep -q '"recoveries": [1-9]' "$T/src.json"; then
		fail postcopy_recover "the connection was never cut"
	else
		ok "postcopy, connection cut and recovered: guest verified"
	fi
	kill "$proxy_pid" "$src_pid" 2>/dev/null
	wait 2>/dev/null
}

# The source agent is killed mid-postcopy while its VMM lives: a new
# ferry-source --recover finishes the migration.
case_postcopy_manual_recover() {
	start_vm src --ws 64M --rate 32 --heartbeats 10 || return 1
	start_vm dst --ws 64M --rate 32 --incoming || return 1
	wait_hb src 2
	start_dest
	$SRC --vm "$T/src.sock" --dest "127.0.0.1:$PORT" $CTLS -q \
		--mode postcopy --bandwidth 8 --timeout 2000 >"$T/fsrc.log" 2>&1 &
	local spid=$!
	PIDS+=($spid)
	wait_postcopy || { fail postcopy_manual_recover "no switchover"; return; }
	kill -9 "$spid"
	wait "$spid" 2>/dev/null
	if ! $SRC --vm "$T/src.sock" --dest "127.0.0.1:$PORT" $CTLS -q \
		--recover --json "$T/src.json" >"$T/fsrc.log" 2>&1; then
		fail postcopy_manual_recover "ferry-source --recover: $(cat "$T/fsrc.log")"
		return
	fi
	wait "$dest_pid"
	local drc=$?
	wait "$dst_pid"
	local st=$?
	if [ $drc -ne 0 ]; then
		fail postcopy_manual_recover "ferry-dest exit $drc: $(cat "$T/fdest.log")"
	elif [ $st -ne 0 ] || grep -q 'errors=[1-9]' "$T/dst.log"; then
		fail postcopy_manual_recover "destination guest exit $st"
	else
		ok "postcopy, source agent killed, ferry-source --recover: guest verified"
	fi
	kill "$src_pid" 2>/dev/null
	wait 2>/dev/null
}

# 2. Wrong certificate: a one-line error, the source VM keeps running.
case_bad_cert() {
	start_vm src --ws 16M --rate 8 || return 1
	start_vm dst --ws 16M --rate 8 --incoming || return 1
	start_dest
	local before
	$SRC --vm "$T/src.sock" --dest "127.0.0.1:$PORT" -q \
		--ca "$T/pki/ca.pem" --cert "$T/pki/rogue.pem" \
		--key "$T/pki/rogue-key.pem" >"$T/fsrc.log" 2>&1
	local rc=$?
	before=$(heartbeats src)
	wait_hb src $((before + 1))
	if [ $rc -eq 0 ]; then
		fail bad_cert "ferry-source succeeded with a rogue certificate"
	elif [ "$(wc -l <"$T/fsrc.log")" -ne 1 ]; then
		fail bad_cert "expected one line, got: $(cat "$T/fsrc.log")"
	elif ! alive "$src_pid" || [ "$(heartbeats src)" -le "$before" ]; then
		fail bad_cert "the source VM stopped"
	else
		ok "bad certificate: $(cat "$T/fsrc.log")"
	fi
	kill "$src_pid" "$dst_pid" "$dest_pid" 2>/dev/null
	wait 2>/dev/null
}

# 3. The destination dies mid-migration: the source VM keeps running.
case_dest_killed() {
	start_vm src --ws 64M --rate 8 || return 1
	start_vm dst --ws 64M --rate 8 --incoming || return 1
	start_dest
	$SRC --vm "$T/src.sock" --dest "127.0.0.1:$PORT" $CTLS -q \
		--bandwidth 16 --timeout 3000 >"$T/fsrc.log" 2>&1 &
	local spid=$!
	PIDS+=($spid)
	sleep 1
	kill -9 "$dest_pid"
	wait "$spid"
	local rc=$? before
	before=$(heartbeats src)
	if [ $rc -ne 1 ]; then
		fail dest_killed "ferry-source exit $rc: $(cat "$T/fsrc.log")"
	elif ! wait_hb src $((before + 2)) || ! alive "$src_pid"; then
		fail dest_killed "the source VM did not keep running"
	else
		ok "destination killed: $(tail -n 1 "$T/fsrc.log")"
	fi
	kill "$src_pid" "$dst_pid" 2>/dev/null
	wait 2>/dev/null
}

# 4. The source agent dies: the destination discards the incoming VM.
case_source_killed() {
	start_vm src --ws 64M --rate 8 || return 1
	start_vm dst --ws 64M --rate 8 --incoming || return 1
	start_dest --timeout 3000
	$SRC --vm "$T/src.sock" --dest "127.0.0.1:$PORT" $CTLS -q \
		--bandwidth 16 >"$T/fsrc.log" 2>&1 &
	local spid=$!
	PIDS+=($spid)
	sleep 1
	kill -9 "$spid"
	wait "$dest_pid"
	local rc=$?
	for _ in $(seq 50); do alive "$dst_pid" || break; sleep 0.1; done
	if [ $rc -ne 1 ]; then
		fail source_killed "ferry-dest exit $rc: $(cat "$T/fdest.log")"
	elif alive "$dst_pid"; then
		fail source_killed "the incoming VM was not discarded"
	elif ! alive "$src_pid"; then
		fail source_killed "the source VM died"
	else
		ok "source killed: $(tail -n 1 "$T/fdest.log")"
	fi
	kill "$src_pid" 2>/dev/null
	wait 2>/dev/null
}

# 5. A guest that dirties faster than the limit allows: cancelled, the
#    VM keeps running at the source, the destination discards its copy.
case_no_converge() {
	start_vm src --ws 64M --rate 512 || return 1
	start_vm dst --ws 64M --rate 512 --incoming || return 1
	wait_filled src # dirtying at the full rate
	start_dest
	$SRC --vm "$T/src.sock" --dest "127.0.0.1:$PORT" $CTLS -q \
		--mode precopy --downtime 1 --max-rounds 1 --json "$T/src.json" \
		>"$T/fsrc.log" 2>&1
	local rc=$? before
	wait "$dest_pid"
	local drc=$?
	before=$(heartbeats src)
	if [ $rc -eq 0 ] || ! grep -q 'did not converge' "$T/fsrc.log"; then
		fail no_converge "expected a cancel, got: $(cat "$T/fsrc.log")"
	elif [ $drc -eq 0 ]; then
		fail no_converge "ferry-dest reported success"
	elif ! grep -q '"outcome": "cancelled"' "$T/src.json"; then
		fail no_converge "statistics do not say cancelled"
	elif ! wait_hb src $((before + 1)); then
		fail no_converge "the source VM stopped"
	else
		ok "not converging: cancelled, source VM runs"
	fi
	kill "$src_pid" "$dst_pid" 2>/dev/null
	wait 2>/dev/null
}

# 6. Different RAM sizes: refused before anything is sent.
case_layout_mismatch() {
	start_vm src --ws 16M --rate 0 || return 1
	start_vm dst --ws 32M --rate 0 --incoming || return 1
	start_dest
	$SRC --vm "$T/src.sock" --dest "127.0.0.1:$PORT" $CTLS -q \
		>"$T/fsrc.log" 2>&1
	local rc=$?
	wait "$dest_pid"
	if [ $rc -eq 0 ] || ! grep -q 'layout' "$T/fsrc.log"; then
		fail layout "expected a layout error, got: $(cat "$T/fsrc.log")"
	elif ! alive "$src_pid"; then
		fail layout "the source VM stopped"
	else
		ok "layout mismatch: $(cat "$T/fsrc.log")"
	fi
	kill "$src_pid" "$dst_pid" 2>/dev/null
	wait 2>/dev/null
}

# 7. Bad input to the CLIs: one line, exit 2.
case_usage() {
	local out rc
	out=$($SRC --vm x --dest nowhere $CTLS 2>&1)
	rc=$?
	if [ $rc -ne 2 ] || [ "$(echo "$out" | wc -l)" -ne 1 ]; then
		fail usage "ferry-source --dest nowhere: rc $rc: $out"
		return
	fi
	out=$($SRC --vm "$T/none.sock" --dest 127.0.0.1:1 $CTLS 2>&1)
	rc=$?
	if [ $rc -ne 1 ]; then
		fail usage "no destination: rc $rc: $out"
		return
	fi
	out=$($DST --vm x --listen 1 --ca /nonexistent --cert x --key y 2>&1)
	rc=$?
	if [ $rc -eq 0 ] || [ "$(echo "$out" | wc -l)" -ne 1 ]; then
		fail usage "ferry-dest with a missing CA: rc $rc: $out"
		return
	fi
	ok "usage errors: one line, non-zero"
}

for c in ${FERRY_CASES:-precopy postcopy_idle postcopy postcopy_sequential \
	postcopy_vcpus \
	postcopy_hugetlb hybrid auto auto_2g postcopy_recover \
	postcopy_manual_recover \
	postcopy_dest_killed bad_cert dest_killed source_killed no_converge \
	layout_mismatch usage}; do
	case_$c || fail "$c" "setup failed"
	# Whatever a case left running (it failed half-way) ends here, so
	# that no case waits on another's processes.
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	PIDS=()
done
echo "1..$n"

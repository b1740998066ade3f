#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Integration tests of live migration, shaped "start workload, migrate,
# verify": real ferry-vm guests (KVM where /dev/kvm exists, native threads
# otherwise), ferry-source and ferry-dest over TLS on loopback. The guest
# checks every page itself; a destination VM that exits 0 after its last
# heartbeat has verified all of its memory.
#
# Run from the build directory (make check sets FERRY_BUILD). Prints one
# line per case and "CASES: N passed, N failed" at the end.
set -u
B=${FERRY_BUILD:-$(pwd)}
VM=$B/tools/ferry-vm/ferry-vm
SRC=$B/tools/ferry-source
DST=$B/tools/ferry-dest
for f in "$VM" "$SRC" "$DST" "$B/tools/ferry-cert"; do
	[ -x "$f" ] || { echo "missing $f (build first)"; exit 99; }
done
KVM=--no-kvm
[ -w /dev/kvm ] && KVM=

T=$(mktemp -d /tmp/ferry-migrate.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
"$B/tools/ferry-cert" demo "$T/pki" >/dev/null || exit 99
STLS="--ca $T/pki/ca.pem --cert $T/pki/server.pem --key $T/pki/server-key.pem"
CTLS="--ca $T/pki/ca.pem --cert $T/pki/client.pem --key $T/pki/client-key.pem"
PORT=$((20000 + $$ % 20000))
passed=0 failed=0

ok() { echo "ok - $1"; passed=$((passed + 1)); }
fail() {
	echo "FAIL - $1: $2"
	for f in "$T"/*.log; do echo "--- $f"; tail -n 5 "$f"; done
	failed=$((failed + 1))
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

start_dest() { # extra args
	PORT=$((PORT + 1))
	$DST --vm "$T/dst.sock" --listen "127.0.0.1:$PORT" $STLS -q \
		--accept-timeout 30 --json "$T/dest.json" "$@" >"$T/fdest.log" 2>&1 &
	dest_pid=$!
	PIDS+=($!)
	sleep 0.2
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
	wait_hb src 2 # past the initial fill: dirtying at full rate
	start_dest
	$SRC --vm "$T/src.sock" --dest "127.0.0.1:$PORT" $CTLS -q \
		--downtime 1 --max-rounds 3 --json "$T/src.json" \
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

for c in precopy bad_cert dest_killed source_killed no_converge \
	layout_mismatch usage; do
	case_$c || fail "$c" "setup failed"
done
echo "CASES: $passed passed, $failed failed"
[ $failed -eq 0 ]

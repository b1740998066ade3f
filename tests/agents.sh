# SPDX-License-Identifier: LGPL-2.1-or-later
#
# What the agents' TAP scripts (tests/cancel.sh, tests/ctl.sh) share:
# starting ferry-vm guests and the agents over TLS on loopback, bounded
# waits that name what they waited for, the checks of a cancelled
# migration, and the driver that runs the cases of $CASES as TAP. Sourced
# after B, VM, SRC, DST and CASES are set; each case is a function
# case_NAME that returns non-zero or calls fail with the reason.

set -- $CASES
echo "1..$#"
# skip_all REASON: every case is a skip, and the script ends
skip_all() {
	local n=0 c
	for c in $CASES; do
		n=$((n + 1))
		echo "ok $n - $c # SKIP $1"
	done
	exit 0
}
for f in "$VM" "$SRC" "$DST" "$B/tools/ferry-cert"; do
	[ -x "$f" ] || skip_all "missing $f (build first)"
done
ACCEL="--accel none"
$VM --help 2>&1 | grep -q -- '--accel' || ACCEL=--no-kvm

ROOT=$(mktemp -d "/tmp/ferry-${AGENTS_NAME:-agents}.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	[ -n "${FERRY_KEEP:-}" ] && echo "# kept $ROOT" || rm -rf "$ROOT"
}
trap cleanup EXIT
"$B/tools/ferry-cert" demo "$ROOT/pki" >/dev/null || {
	echo "Bail out! ferry-cert demo failed"
	exit 1
}
STLS="--ca $ROOT/pki/ca.pem --cert $ROOT/pki/server.pem --key $ROOT/pki/server-key.pem"
CTLS="--ca $ROOT/pki/ca.pem --cert $ROOT/pki/client.pem --key $ROOT/pki/client-key.pem"
T= # the current case's directory
WHY= # why the current case failed

# fail REASON: records the first reason of the case; returns 1
fail() {
	[ -z "$WHY" ] && WHY=$1
	return 1
}

alive() { kill -0 "$1" 2>/dev/null; }

# wait_for SECONDS WHAT CMD...: polls CMD every 0.1 s until it succeeds,
# or fails naming WHAT after SECONDS
wait_for() {
	local secs=$1 what=$2 i
	shift 2
	for ((i = 0; i < secs * 10; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	fail "timed out after ${secs} s waiting for $what"
}

# wait_exit SECONDS PID NAME VAR: waits until PID (a child) exits, puts
# its status in VAR
wait_exit() {
	local secs=$1 pid=$2 name=$3 var=$4
	wait_for "$secs" "$name (pid $pid) to exit" eval '! alive '"$pid" ||
		return 1
	wait "$pid"
	printf -v "$var" %s $?
}

# start_vm NAME ARGS...: a ferry-vm serving $T/NAME.sock, log $T/NAME.log
start_vm() {
	local name=$1
	shift
	$VM $ACCEL -s "$T/$name.sock" "$@" >"$T/$name.log" 2>&1 &
	printf -v "${name}_pid" %s $!
	PIDS+=($!)
	wait_for 10 "$name's VM link socket" test -S "$T/$name.sock"
}

heartbeats() { grep -c '^HB ' "$T/$1.log" 2>/dev/null || true; }
has_hb() { [ "$(heartbeats "$1")" -ge "$2" ]; }
# wait_hb NAME N: until NAME has printed N heartbeats
wait_hb() { wait_for 60 "$1 to print $2 heartbeats" has_hb "$1" "$2"; }
in_log() { grep -q -- "$2" "$T/$1" 2>/dev/null; }
listening() { sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$T/fdest.log"; }
has_port() { [ -n "$(listening)" ] || ! alive "$dest_pid"; }

# start_dest ARGS...: ferry-dest on a free port; sets PORT
start_dest() {
	$DST --vm "$T/dst.sock" --listen 127.0.0.1:0 $STLS --accept-timeout 60 \
		--json "$T/dest.json" "$@" >"$T/fdest.log" 2>&1 &
	dest_pid=$!
	PIDS+=($!)
	wait_for 10 "ferry-dest to listen" has_port || return 1
	PORT=$(listening)
	[ -n "$PORT" ] || fail "ferry-dest did not listen: $(cat "$T/fdest.log")"
}

# start_source ARGS...: ferry-source -v in the background; sets spid
start_source() {
	$SRC --vm "$T/src.sock" --dest "127.0.0.1:$PORT" $CTLS -v \
		--json "$T/src.json" "$@" >"$T/fsrc.log" 2>&1 &
	spid=$!
	PIDS+=($!)
}

# one_line LOG PATTERN: the agent said PATTERN once, as its last line,
# and nothing else but its start-up lines (listening, the session) and,
# from ferry-source -v, the engine's info lines
one_line() {
	local log=$T/$1 n last extra
	n=$(grep -Fc -- "$2" "$log")
	last=$(grep -E '^ferry-(source|dest): ' "$log" | tail -n 1)
	extra=$(grep -Fv -- "$2" "$log" |
		grep -Ev 'listening on port|TLSv1\.3|^(source|transport): ')
	[ "$n" -eq 1 ] && echo "$last" | grep -Fq -- "$2" && [ -z "$extra" ] ||
		fail "$1: expected one line matching '$2' last, got: $(tr '\n' '|' <"$log")"
}

# cancelled_ok WHO SIG: the checks every cancel case makes, once both
# agents were signalled or told: both exit 1 with their one line, the
# source guest keeps beating with errors=0, the incoming VM is gone.
cancelled_ok() {
	local who=$1 sig=$2 src_rc dest_rc vm_rc before
	wait_exit 30 "$spid" ferry-source src_rc || return 1
	wait_exit 30 "$dest_pid" ferry-dest dest_rc || return 1
	[ "$src_rc" -eq 1 ] || fail "ferry-source exit $src_rc: $(tail -n 3 "$T/fsrc.log")"
	[ "$dest_rc" -eq 1 ] || fail "ferry-dest exit $dest_rc: $(tail -n 3 "$T/fdest.log")"
	if [ "$who" = source ]; then
		one_line fsrc.log "ferry-source: cancelled ($sig) before the switchover: the VM runs here"
		one_line fdest.log "ferry-dest: the source was cancelled by the operator ($sig) before the switchover: the incoming VM was discarded"
	else
		one_line fdest.log "ferry-dest: cancelled ($sig) before the switchover: the incoming VM was discarded"
		one_line fsrc.log "ferry-source: the destination was cancelled by the operator ($sig) before the switchover: the VM runs here"
	fi
	in_log src.json '"outcome": "cancelled"' ||
		fail "the source statistics do not say cancelled"
	in_log dest.json '"outcome": "cancelled"' ||
		fail "the destination statistics do not say cancelled"
	wait_exit 30 "$dst_pid" "the incoming ferry-vm" vm_rc || return 1
	before=$(heartbeats src)
	wait_hb src $((before + 2)) || return 1
	alive "$src_pid" || fail "the source VM exited"
	grep '^HB ' "$T/src.log" | grep -qv 'errors=0' &&
		fail "the source guest reports errors: $(grep '^HB ' "$T/src.log" | grep -v 'errors=0' | head -n 1)"
	[ -z "$WHY" ]
}

# run_cases: each case of $CASES in its own directory, one TAP line
# each; ends the script with 0 when every case passed.
run_cases() {
	n=0 failed=0
	for c in $CASES; do
		n=$((n + 1))
		T=$ROOT/$c
		WHY=
		mkdir -p "$T"
		if ! declare -F "case_$c" >/dev/null; then
			echo "not ok $n - $c: no such case"
			failed=$((failed + 1))
			continue
		fi
		if "case_$c" && [ -z "$WHY" ]; then
			echo "ok $n - $c"
		else
			echo "not ok $n - $c: ${WHY:-setup failed}"
			for f in "$T"/*.log; do
				[ -e "$f" ] || continue
				echo "# --- $(basename "$f")"
				tail -n 4 "$f" | sed 's/^/#   /'
			done
			failed=$((failed + 1))
		fi
		# Whatever the case left running ends here, by PID.
		for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
		wait 2>/dev/null
		PIDS=()
	done
	[ $failed -eq 0 ]
}

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The harness of the integration scripts shaped "start workload, migrate,
# verify" (tests/migrate.sh, tests/faults.sh), sourced by them: the
# binaries, the accelerator, a run directory with its PKI, bounded waits,
# VMs and agents started per case and ended by PID, and the driver that
# runs each case_NAME of the script in a subshell of its own for at most
# case_bound seconds and prints its TAP line. A script sets ALL_CASES
# (and HARNESS, the name of its run directory), sources this file,
# defines its cases (and case_bound, to change the 240 s default) and
# ends with harness_main.
B=${FERRY_BUILD:-$(pwd)}
VM=$B/tools/ferry-vm/ferry-vm
SRC=$B/tools/ferry-source
DST=$B/tools/ferry-dest
PROXY=$(cd "$(dirname "$0")" && pwd)/tcp-proxy.py
for f in "$VM" "$SRC" "$DST" "$B/tools/ferry-cert"; do
	[ -x "$f" ] || { echo "Bail out! missing $f (build first)"; exit 99; }
done

CASES=$(echo ${FERRY_CASES:-$ALL_CASES})

# The accelerator, decided once by ferry-vm's own probe (which honours
# FERRY_ACCEL: then use= is what it says) and passed to every ferry-vm,
# so that none probes again.
PROBE=$("$VM" --probe-accel 2>&1 | head -n 1)
VERDICT=${PROBE%% *}
USE=$(echo "$PROBE" | sed -n 's/.* use=\([a-z]*\).*/\1/p')
case "$USE" in
kvm | none) ;;
*) echo "Bail out! ferry-vm --probe-accel said: $PROBE"; exit 99 ;;
esac
ACCEL="--accel $USE"

T=$(mktemp -d "/tmp/ferry-${HARNESS:-tests}.XXXXXX")
"$B/tools/ferry-cert" demo "$T/pki" >/dev/null ||
	{ echo "Bail out! ferry-cert demo failed"; rm -rf "$T"; exit 99; }
STLS="--ca $T/pki/ca.pem --cert $T/pki/server.pem --key $T/pki/server-key.pem"
CTLS="--ca $T/pki/ca.pem --cert $T/pki/client.pem --key $T/pki/client-key.pem"

# ---- the harness; everything below runs inside one case's subshell ----

CT= # this case's directory
declare -A PID_OF # process name -> PID, for the processes of this case
rc=0 # exit status of the last process waited for

# pass MSG / fail MSG / skip WHY: this case's verdict; the first one given
# stands. fail returns 1, so that "... || fail reason; return".
pass() { [ -e "$CT/verdict" ] || printf 'ok\n%s\n' "$*" >"$CT/verdict"; }
skip() { [ -e "$CT/verdict" ] || printf 'skip\n%s\n' "$*" >"$CT/verdict"; }
fail() {
	[ -e "$CT/verdict" ] || printf 'not ok\n%s\n' "$*" >"$CT/verdict"
	return 1
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# track NAME PID: PID (just started in the background) is this case's
# process NAME; it is ended when the case ends
track() {
	PID_OF[$1]=$2
	echo "$2" >>"$CT/pids"
}

# wait_bounded PID SECONDS WHAT: waits up to SECONDS for PID, a child of
# this shell, and sets rc to its exit status. On expiry kills it (-9) and
# fails the case, naming WHAT it waited for.
wait_bounded() {
	local pid=$1 secs=$2 what=$3 end=$((SECONDS + $2))
	while alive "$pid"; do
		if [ $SECONDS -ge $end ]; then
			kill -9 "$pid" 2>/dev/null
			wait "$pid" 2>/dev/null
			rc=137
			fail "timed out after $secs s waiting for $what"
			return
		fi
		sleep 0.1
	done
	wait "$pid"
	rc=$?
}

# wait_exit NAME SECONDS [WHAT]: wait_bounded on this case's process NAME
wait_exit() {
	wait_bounded "${PID_OF[$1]}" "$2" "${3:-$1 to exit}"
}

# wait_until SECONDS WHAT NAME CMD...: runs CMD every 0.1 s until it
# succeeds; fails the case when SECONDS pass first, or when this case's
# process NAME ("-": none) exits first.
wait_until() {
	local secs=$1 what=$2 name=$3 end=$((SECONDS + $1))
	shift 3
	until "$@"; do
		if [ "$name" != - ] && ! alive "${PID_OF[$name]}"; then
			"$@" && return 0
			fail "$name exited while waiting for $what"
			return
		fi
		if [ $SECONDS -ge $end ]; then
			fail "timed out after $secs s waiting for $what"
			return
		fi
		sleep 0.1
	done
}

has_line() { grep -q -- "$2" "$CT/$1.log" 2>/dev/null; }
# heartbeats NAME: how many heartbeat lines NAME's guest has printed
heartbeats() { grep -c '^HB ' "$CT/$1.log" 2>/dev/null || true; }
hb_at_least() { [ "$(heartbeats "$1")" -ge "$2" ]; }
# wait_hb NAME N [SECONDS]: until NAME's guest printed N heartbeats
wait_hb() {
	wait_until "${3:-30}" "heartbeat $2 from $1" "$1" hb_at_least "$1" "$2"
}
# wait_filled NAME [SECONDS]: until NAME's guest has written its whole
# working set (FILLED): dirtying runs at its full rate from then on
wait_filled() {
	wait_until "${2:-60}" "FILLED from $1" "$1" has_line "$1" '^FILLED'
}

# field KEY LINE: the value of KEY=value in LINE
field() { echo " $2" | sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
# pages SIZE: a working set of SIZE (16M, 2G) in 4 KiB guest pages
pages() {
	local n=${1%[KMG]}
	case "$1" in
	*K) echo $((n * 1024 / 4096)) ;;
	*M) echo $((n * 1024 * 1024 / 4096)) ;;
	*G) echo $((n * 1024 * 1024 * 1024 / 4096)) ;;
	*) echo $((n / 4096)) ;;
	esac
}
# json KEY FILE: a number or word of a statistics file
json() { sed -n "s/.*\"$1\": \"\{0,1\}\([a-z0-9.]*\).*/\1/p" "$2" | head -n 1; }

# start_vm NAME ARGS...: a ferry-vm serving $CT/NAME.sock, console and log
# in $CT/NAME.log; waits (10 s) for its socket
start_vm() {
	local name=$1
	shift
	"$VM" $ACCEL -s "$CT/$name.sock" "$@" >"$CT/$name.log" 2>&1 &
	track "$name" $!
	wait_until 10 "the VM link socket of $name" "$name" test -S "$CT/$name.sock"
}

# start_dest ARGS...: ferry-dest for $CT/dst.sock on a free port; sets PORT
# from this case's own ferry-dest output once it listens
start_dest() {
	"$DST" --vm "$CT/dst.sock" --listen 127.0.0.1:0 $STLS \
		--accept-timeout 30 --json "$CT/dest.json" ${DEST_ARGS:-} "$@" \
		>"$CT/fdest.log" 2>&1 &
	track dest $!
	wait_until 10 "ferry-dest to listen" dest \
		has_line fdest 'listening on port [0-9]' || return
	PORT=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$CT/fdest.log" |
		head -n 1)
}

# start_src NAME ARGS...: ferry-source for $CT/src.sock in the background,
# output in $CT/NAME.log
start_src() {
	local name=$1
	shift
	"$SRC" --vm "$CT/src.sock" -q "$@" >"$CT/$name.log" 2>&1 &
	track "$name" $!
}
# run_src SECONDS ARGS...: ferry-source to its end, for at most SECONDS;
# rc is its exit status, its output in $CT/fsrc.log
run_src() {
	local secs=$1
	shift
	start_src fsrc "$@"
	wait_exit fsrc "$secs" "ferry-source to finish"
}

# start_proxy LPORT: a TCP relay from LPORT to ferry-dest's port
start_proxy() {
	python3 "$PROXY" "$1" 127.0.0.1 "$PORT" >"$CT/proxy.log" 2>&1 &
	track proxy $!
	wait_until 10 "the TCP proxy to listen" proxy has_line proxy listening
}

# verified NAME PAGES: NAME's guest ended with DONE after at least one
# complete verification pass over all PAGES pages since it last resumed,
# no error and no ERR line; sets VERIFIED to "K passes over P pages"
verified() {
	local line k p e
	line=$(grep '^DONE ' "$CT/$1.log" | tail -n 1)
	[ -n "$line" ] || { fail "the $1 guest printed no DONE line"; return; }
	k=$(field rpasses "$line") p=$(field pages "$line")
	e=$(field errors "$line")
	if has_line "$1" '^ERR'; then
		fail "the $1 guest found a bad page: $(grep -m 1 '^ERR' "$CT/$1.log")"
	elif ! [[ "$k" =~ ^[0-9]+$ ]] || [ "$k" -lt 1 ]; then
		fail "the $1 guest completed no verification pass: $line"
	elif [ "$p" != "$2" ]; then
		fail "the $1 guest verified $p pages, its working set is $2: $line"
	elif [ "$e" != 0 ]; then
		fail "the $1 guest counted errors: $line"
	else
		VERIFIED="$k passes over $p pages"
	fi
}

# still_running NAME: NAME's guest goes on where it is: two more
# heartbeats, every one with errors=0, and no ERR line
still_running() {
	local n
	n=$(heartbeats "$1")
	wait_hb "$1" $((n + 2)) 10 || return
	if has_line "$1" '^ERR'; then
		fail "the $1 guest found a bad page: $(grep -m 1 '^ERR' "$CT/$1.log")"
	elif grep -q '^HB .* errors=[1-9]' "$CT/$1.log"; then
		fail "the $1 guest counted errors: $(grep '^HB ' "$CT/$1.log" | tail -n 1)"
	fi
}

# case_end: ends every process this case started that still runs, and
# reaps it (the EXIT trap of each case's subshell)
case_end() {
	local name pid
	for name in "${!PID_OF[@]}"; do
		pid=${PID_OF[$name]}
		alive "$pid" && kill -9 "$pid" 2>/dev/null
	done
	for name in "${!PID_OF[@]}"; do
		wait "${PID_OF[$name]}" 2>/dev/null
	done
}

# case_bound CASE: seconds after which a whole case is stopped (a script
# may redefine it)
case_bound() { echo 240; }

# report N CASE SECONDS: the TAP line of case N, from its verdict file;
# after a failure, the rest of the reason and the tail of each of the
# case's logs as diagnostics
report() {
	local n=$1 c=$2 v msg f
	v=$(sed -n 1p "$T/$c/verdict" 2>/dev/null)
	msg=$(sed -n 2p "$T/$c/verdict" 2>/dev/null)
	msg=${msg//#/}
	case "$v" in
	ok) echo "ok $n - $msg" ;;
	skip) echo "ok $n - $c # SKIP $msg" ;;
	*)
		[ -n "$v" ] || msg="the case ended without a verdict"
		echo "not ok $n - $c: $msg"
		sed -n '3,$s/^/#   /p' "$T/$c/verdict" 2>/dev/null
		for f in "$T/$c"/*.log; do
			[ -s "$f" ] || continue
			echo "# --- ${f#"$T"/} (last lines)"
			tail -n 8 "$f" | sed 's/^/#   /'
		done
		;;
	esac
	echo "# $c: $3 s"
}

# run_case CASE: case_CASE in a subshell of its own, for at most its
# bound; on expiry the subshell is told to end its processes (TERM runs
# its EXIT trap). If it has not within 5 s, it is killed with its own
# children (say a stuck foreground command) and whatever it started that
# still runs (processes whose command line names this run's directory or
# the proxy): an orphan would hold the caller's lock file open, too.
run_case() {
	local bound p kids end
	bound=$(case_bound "$1")
	(
		trap case_end EXIT
		trap 'exit 143' TERM
		"case_$1"
	) >"$CT/harness.log" 2>&1 &
	RUNNING=$!
	end=$((SECONDS + bound))
	while alive "$RUNNING" && [ $SECONDS -lt $end ]; do
		sleep 0.2
	done
	if alive "$RUNNING"; then
		fail "timed out after $bound s waiting for the whole case"
		kill -TERM "$RUNNING" 2>/dev/null
		end=$((SECONDS + 5))
		while alive "$RUNNING" && [ $SECONDS -lt $end ]; do
			sleep 0.2
		done
	fi
	if alive "$RUNNING"; then
		kids=$(ps -o pid= --ppid "$RUNNING")
		kill -9 "$RUNNING" $kids 2>/dev/null
		while read -r p; do
			tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null |
				grep -qF -e "$T" -e "$PROXY" &&
				kill -9 "$p" 2>/dev/null
		done <"$CT/pids"
	fi
	wait "$RUNNING" 2>/dev/null
	RUNNING=
}

RUNNING= # the running case's subshell
cleanup() {
	if alive "$RUNNING"; then
		kill -TERM "$RUNNING" 2>/dev/null
		wait "$RUNNING" 2>/dev/null
	fi
	# A script's own run-wide teardown (migrate.sh: the nested host).
	declare -F harness_cleanup_hook >/dev/null && harness_cleanup_hook
	[ -n "${FERRY_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# harness_main: runs the selected cases, one TAP line each
harness_main() {
	set -- $CASES
	echo "1..$#"
	echo "# accel: $PROBE"
	n=0
	for c in "$@"; do
		n=$((n + 1))
		CT=$T/$c
		mkdir -p "$CT"
		touch "$CT/pids"
		start=$SECONDS
		if declare -F "case_$c" >/dev/null; then
			run_case "$c"
		else
			fail "no such case"
		fi
		report "$n" "$c" $((SECONDS - start))
	done
	exit 0
}

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Integration tests of live migration, shaped "start workload, migrate,
# verify": real ferry-vm guests, ferry-source and ferry-dest over TLS on
# loopback, on the accelerator ferry-vm --probe-accel chooses (KVM where it
# runs guest code at native speed, native threads otherwise; one case
# forces KVM wherever it opens). The guest checks every page itself and
# proves it: a migration passes only when the destination guest's DONE
# line says it completed at least one verification pass over its whole
# working set since it resumed there, with no error.
#
# Run from the build directory (make check sets FERRY_BUILD). Speaks TAP:
# the plan, then one "ok N - ..." / "not ok N - ..." line per case (a case
# that cannot run here is "ok N - ... # SKIP why"), a failure followed by
# the tail of that case's logs as "# " lines. Automake runs it with
# tap-driver.sh. FERRY_CASES="precopy bad_cert" runs only those cases;
# FERRY_KEEP=1 keeps the logs.
#
# Each case runs in its own subshell, in its own directory $T/<case>/
# (logs, sockets, statistics), and every wait in it is bounded: a case
# that hangs or fails ends every process it started and cannot make the
# next one fail.
set -u
B=${FERRY_BUILD:-$(pwd)}
VM=$B/tools/ferry-vm/ferry-vm
SRC=$B/tools/ferry-source
DST=$B/tools/ferry-dest
PROXY=$(cd "$(dirname "$0")" && pwd)/tcp-proxy.py
for f in "$VM" "$SRC" "$DST" "$B/tools/ferry-cert"; do
	[ -x "$f" ] || { echo "Bail out! missing $f (build first)"; exit 99; }
done

ALL_CASES="precopy kvm postcopy_idle postcopy postcopy_copy postcopy_sequential
	postcopy_vcpus postcopy_hugetlb precopy_hugetlb_subpages
	precopy_hugetlb_1g hybrid_hugetlb_subpages hybrid auto auto_2g postcopy_recover
	postcopy_manual_recover postcopy_dest_killed bad_cert revoked dest_killed
	source_killed no_converge layout_mismatch usage soak"
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

T=$(mktemp -d /tmp/ferry-migrate.XXXXXX)
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

# ---- the cases ----

# migrate WS "VM ARGS" "SOURCE ARGS" [HEARTBEATS [SECONDS]]: a guest with a
# working set of WS that stops by itself after HEARTBEATS (8) heartbeats
# moves after it filled its memory; it has to finish at the destination
# with every page verified since its resume, and the source VM, released,
# exits 0. SECONDS bounds ferry-source (120). Sets VERIFIED, MODE, FAULTS.
migrate() {
	local ws=$1 vmargs=$2 srcargs=$3 hbs=${4:-8} secs=${5:-120}
	start_vm src --ws "$ws" $vmargs --heartbeats "$hbs" || return
	start_vm dst --ws "$ws" $vmargs --incoming || return
	wait_filled src || return
	wait_hb src 2 || return
	start_dest || return
	run_src "$secs" --dest "127.0.0.1:$PORT" $CTLS $srcargs \
		--json "$CT/src.json" || return
	[ $rc -eq 0 ] || { fail "ferry-source exit $rc: $(cat "$CT/fsrc.log")"; return; }
	wait_exit dest 30 "ferry-dest to finish" || return
	[ $rc -eq 0 ] || { fail "ferry-dest exit $rc: $(tail -n 1 "$CT/fdest.log")"; return; }
	wait_exit dst $((hbs + 60)) "the destination guest's DONE" || return
	[ $rc -eq 0 ] || { fail "destination VM exit $rc"; return; }
	verified dst "$(pages "$ws")" || return
	wait_exit src 10 "the released source VM to exit" || return
	[ $rc -eq 0 ] || { fail "source VM exit $rc after its release"; return; }
	grep -q '"outcome": "completed"' "$CT/src.json" &&
		grep -q '"downtime_ms"' "$CT/src.json" ||
		{ fail "no completed statistics in src.json"; return; }
	MODE=$(json mode "$CT/src.json") FAULTS=$(json faults "$CT/src.json")
	PLACEMENT=$(json placement "$CT/dest.json")
}

# placed_by WANT: ferry-dest placed postcopy pages the way WANT says;
# "minor" stands for "copy" on kernels before 5.14, which have no MINOR
# mode on shmem (docs/architecture.md, the path of a page).
placed_by() {
	local want=$1 k
	k=$(uname -r | sed 's/^\([0-9]*\)\.\([0-9]*\).*/\1 \2/')
	set -- $k
	[ "$want" = minor ] && [ $(($1 * 100 + $2)) -lt 514 ] && want=copy
	[ "$PLACEMENT" = "$want" ] ||
		{ fail "ferry-dest placed pages by '$PLACEMENT', not '$want'"; return 1; }
}

# 1. A guest dirtying memory moves; it finishes its heartbeats at the
#    destination with every page verified; the source VM is released.
case_precopy() {
	migrate 64M "--rate 32" "-n 2" || return
	pass "precopy: guest verified at the destination, $VERIFIED"
}

# A KVM guest moves: ferry-vm's KVM save/load-state path, on every machine
# that has KVM at all, even one whose KVM emulates guest code (a 1 MiB
# working set is verified in seconds there).
case_kvm() {
	case "$VERDICT" in
	kvm | kvm-emulated) ;;
	*) skip "no KVM here: $PROBE"; return ;;
	esac
	# Forced to none, the suite runs as it would on a machine without KVM.
	[ "${FERRY_ACCEL:-}" != none ] || { skip "FERRY_ACCEL=none"; return; }
	ACCEL="--accel kvm"
	migrate 1M "--rate 1 --heartbeat-ms 500" "--mode precopy" 10 || return
	pass "KVM guest, precopy: verified at the destination, $VERIFIED"
}

case_postcopy_idle() {
	migrate 64M "--rate 0" "--mode postcopy" || return
	pass "postcopy, idle guest: $MODE, $VERIFIED, $FAULTS faults"
}
case_postcopy() {
	# A random-write dirtier at 256 MiB/s.
	migrate 64M "--rate 256" "--mode postcopy -n 2" || return
	[ "$MODE" = postcopy ] || { fail "the migration ended in $MODE"; return; }
	placed_by minor || return
	pass "postcopy, 256 MiB/s random writer: $VERIFIED, $FAULTS faults, placed by $PLACEMENT"
}
# The same with MINOR mode refused: MISSING and UFFDIO_COPY only.
case_postcopy_copy() {
	DEST_ARGS="--uffd-mode missing" migrate 64M "--rate 256" \
		"--mode postcopy -n 2" || return
	[ "$MODE" = postcopy ] || { fail "the migration ended in $MODE"; return; }
	placed_by copy || return
	pass "postcopy by UFFDIO_COPY (--uffd-mode missing): $VERIFIED, $FAULTS faults"
}
case_postcopy_sequential() {
	migrate 64M "--rate 8 --pattern sequential" "--mode postcopy" || return
	pass "postcopy, sequential reader: $VERIFIED, $FAULTS faults"
}
case_postcopy_vcpus() {
	# Four vCPUs fault on the guest's pages at once.
	migrate 64M "--rate 64 -c 4" "--mode postcopy" || return
	pass "postcopy, 4 vCPUs: $VERIFIED, $FAULTS faults"
}
case_hybrid() {
	migrate 64M "--rate 64" "--mode hybrid" || return
	[ "$MODE" = postcopy ] || { fail "hybrid ended in $MODE"; return; }
	pass "hybrid: ended in postcopy, $VERIFIED, $FAULTS faults"
}
case_auto() {
	# 1 ms of downtime is not met within the one round allowed: auto
	# has to switch to postcopy. (migrate waits for 2 heartbeats.)
	migrate 64M "--rate 256" "--mode auto --downtime 1 --max-rounds 1" ||
		return
	[ "$MODE" = postcopy ] || { fail "auto ended in $MODE"; return; }
	pass "auto, not converging: switched to postcopy, $VERIFIED"
}

case_auto_2g() {
	# The issue's case: auto completing a 256 MiB/s dirtier on 2 GiB.
	migrate 2G "--rate 256" "--mode auto" 60 240 || return
	pass "auto, 2 GiB guest dirtying 256 MiB/s: $MODE, $VERIFIED"
}

# hugetlb_pool N [KB]: N more huge pages of KB KiB (2048) for this case,
# given back (and the pool restored) when it ends; 1 with a skip when
# they cannot be had. The pool is system-wide: the tests' lock is held
# while it is changed.
hugetlb_pool() {
	local pool=/sys/kernel/mm/hugepages/hugepages-${2:-2048}kB/nr_hugepages old
	[ -w "$pool" ] || { skip "cannot change $pool"; return 1; }
	exec 9>/tmp/ferry-tests-hugetlb.lock
	flock -w 60 9 || { fail "timed out after 60 s waiting for the hugetlb lock"; return 1; }
	old=$(cat "$pool")
	# Whichever way the case ends, its VMs give their huge pages back
	# before the pool shrinks.
	trap 'case_end; echo "'"$old"'" >'"$pool" EXIT
	echo $((old + $1)) >"$pool"
	[ "$(cat "$pool")" -ge $((old + $1)) ] ||
		{ skip "cannot reserve $1 huge pages"; return 1; }
}

# 2M hugetlb precopy with a scattered 4 KiB writer: after round 0 a dirty
# huge page costs its changed 4 KiB sub-pages, not 2 MiB.
case_precopy_hugetlb_subpages() {
	hugetlb_pool 72 || return
	migrate 64M "--rate 16 -b hugetlb-2M" "--mode precopy -D 50" || return
	python3 - "$CT/src.json" >"$CT/subpages.txt" <<-'PY' ||
	import json, sys
	st = json.load(open(sys.argv[1]))
	later = [r for r in st["rounds"] if r["round"] > 0]
	delta = sum(r["delta_pages"] for r in later)
	whole = sum(r["data_pages"] for r in later)
	subs = sum(r["subpages"] for r in later)
	if not later or delta == 0:
	    sys.exit("no later round sent sub-page deltas: %s" % later)
	# Page data of the later rounds against the same dirty pages sent whole.
	sent = subs * 4096 + whole * (2 << 20)
	full = (delta + whole) * (2 << 20)
	if sent * 2 > full:
	    sys.exit("later rounds sent %d bytes of page data for %d dirty huge "
	             "pages (%d bytes whole)" % (sent, delta + whole, full))
	print("%d huge pages as %d sub-pages (%.1f MiB instead of %.1f MiB)" %
	      (delta, subs, sent / 2**20, full / 2**20))
	PY
		{ fail "$(tail -n 1 "$CT/subpages.txt")"; return; }
	pass "precopy, hugetlb-2M, scattered writer: $VERIFIED; $(cat "$CT/subpages.txt")"
}

# Hybrid on 2M hugetlb with a scattered writer: the destination keeps the
# huge pages the source discards at the switch (MINOR mode), and the push
# sends a re-dirtied one as its changed 4 KiB.
case_hybrid_hugetlb_subpages() {
	hugetlb_pool 72 || return
	migrate 64M "--rate 16 -b hugetlb-2M" "--mode hybrid" || return
	[ "$MODE" = postcopy ] || { fail "hybrid ended in $MODE"; return; }
	placed_by minor || return
	python3 - "$CT/src.json" >"$CT/subpages.txt" <<-'PY' ||
	import json, sys
	st = json.load(open(sys.argv[1]))
	push = st["rounds"][-1]
	if push["round"] == 0 or push["delta_pages"] == 0:
	    sys.exit("the postcopy push sent no sub-page deltas: %s" % push)
	print("the push sent %d kept huge pages as deltas" % push["delta_pages"])
	PY
		{ fail "$(tail -n 1 "$CT/subpages.txt")"; return; }
	pass "hybrid, hugetlb-2M, scattered writer: $VERIFIED, $FAULTS faults; $(cat "$CT/subpages.txt")"
}

# 1 GiB pages, where the kernel finds two contiguous GiB at run time: an
# idle guest (every round would resend whole GiB pages) in precopy.
case_precopy_hugetlb_1g() {
	hugetlb_pool 2 1048576 || return
	migrate 512M "--rate 0 -b hugetlb-1G" "--mode precopy -D 3000" 30 || return
	pass "precopy, hugetlb-1G: $VERIFIED"
}

# 2M hugetlb: whole huge pages are placed atomically. The pool is
# system-wide: the tests' lock is held while it is changed.
case_postcopy_hugetlb() {
	local pool=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages old
	[ -w "$pool" ] || { skip "cannot change $pool"; return; }
	exec 9>/tmp/ferry-tests-hugetlb.lock
	flock -w 60 9 || { fail "timed out after 60 s waiting for the hugetlb lock"; return; }
	old=$(cat "$pool")
	# Whichever way the case ends, its VMs give their huge pages back
	# before the pool shrinks.
	trap 'case_end; echo "$old" >"$pool"' EXIT
	echo $((old + 48)) >"$pool"
	if [ "$(cat "$pool")" -lt $((old + 48)) ]; then
		skip "cannot reserve 48 huge pages"
		return
	fi
	migrate 32M "--rate 32 -b hugetlb-2M" "--mode postcopy" || return
	placed_by minor || return
	pass "postcopy, hugetlb-2M: $VERIFIED, $FAULTS faults, placed by $PLACEMENT"
}

# The destination agent dies after the postcopy switchover: the source
# says so in one line and keeps the VM paused with all of its memory.
case_postcopy_dest_killed() {
	start_vm src --ws 64M --rate 64 || return
	start_vm dst --ws 64M --rate 64 --incoming || return
	wait_filled src || return
	start_dest || return
	start_src fsrc --dest "127.0.0.1:$PORT" $CTLS --mode postcopy \
		--bandwidth 8 --timeout 3000 --recover-timeout 2
	wait_hb dst 1 || return # the guest runs at the destination
	kill -9 "${PID_OF[dest]}"
	wait_exit fsrc 30 "ferry-source to give up" || return
	if [ $rc -ne 1 ]; then
		fail "ferry-source exit $rc: $(cat "$CT/fsrc.log")"
	elif ! alive "${PID_OF[src]}"; then
		fail "the source VM (holding the memory) exited"
	elif ! grep -q 'paused here' "$CT/fsrc.log"; then
		fail "no word on the paused VM: $(cat "$CT/fsrc.log")"
	else
		pass "postcopy, destination killed: source VM paused with its memory"
	fi
}

# The network between the agents fails mid-postcopy: faulting vCPUs wait,
# the source reconnects by itself, and the migration completes with every
# page verified.
case_postcopy_recover() {
	local lport
	lport=$(python3 -c 'import socket; s = socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') ||
		{ fail "no free port for the proxy"; return; }
	start_vm src --ws 64M --rate 32 --heartbeats 10 || return
	start_vm dst --ws 64M --rate 32 --incoming || return
	wait_filled src || return
	wait_hb src 2 || return
	start_dest || return
	start_proxy $lport || return
	start_src fsrc --dest "127.0.0.1:$lport" $CTLS --mode postcopy \
		--bandwidth 12 --timeout 2000 --json "$CT/src.json" \
		--recover-timeout 30
	wait_hb dst 1 || return # the postcopy switchover happened
	sleep 0.3
	kill -9 "${PID_OF[proxy]}"
	wait "${PID_OF[proxy]}" 2>/dev/null
	sleep 1
	start_proxy $lport || return
	wait_exit fsrc 90 "ferry-source to finish after the reconnection" ||
		return
	local src_rc=$rc
	wait_exit dest 30 "ferry-dest to finish" || return
	if [ $src_rc -ne 0 ] || [ $rc -ne 0 ]; then
		fail "source $src_rc, dest $rc: $(cat "$CT/fsrc.log" "$CT/fdest.log")"
		return
	fi
	wait_exit dst 60 "the destination guest's DONE" || return
	[ $rc -eq 0 ] || { fail "destination VM exit $rc"; return; }
	verified dst "$(pages 64M)" || return
	grep -q '"recoveries": [1-9]' "$CT/src.json" ||
		{ fail "the connection was never cut"; return; }
	pass "postcopy, connection cut and recovered: $VERIFIED"
}

# The source agent is killed mid-postcopy while its VMM lives: a new
# ferry-source --recover finishes the migration.
case_postcopy_manual_recover() {
	start_vm src --ws 64M --rate 32 --heartbeats 10 || return
	start_vm dst --ws 64M --rate 32 --incoming || return
	wait_filled src || return
	wait_hb src 2 || return
	start_dest || return
	start_src fsrc1 --dest "127.0.0.1:$PORT" $CTLS --mode postcopy \
		--bandwidth 8 --timeout 2000
	wait_hb dst 1 || return # the postcopy switchover happened
	kill -9 "${PID_OF[fsrc1]}"
	wait "${PID_OF[fsrc1]}" 2>/dev/null
	run_src 90 --dest "127.0.0.1:$PORT" $CTLS --recover \
		--json "$CT/src.json" || return
	[ $rc -eq 0 ] ||
		{ fail "ferry-source --recover exit $rc: $(cat "$CT/fsrc.log")"; return; }
	wait_exit dest 30 "ferry-dest to finish" || return
	[ $rc -eq 0 ] ||
		{ fail "ferry-dest exit $rc: $(cat "$CT/fdest.log")"; return; }
	wait_exit dst 60 "the destination guest's DONE" || return
	[ $rc -eq 0 ] || { fail "destination VM exit $rc"; return; }
	verified dst "$(pages 64M)" || return
	pass "postcopy, source agent killed, ferry-source --recover: $VERIFIED"
}

# 2. Wrong certificate: a one-line error, the source VM keeps running.
case_bad_cert() {
	start_vm src --ws 16M --rate 8 || return
	start_vm dst --ws 16M --rate 8 --incoming || return
	wait_filled src || return
	start_dest || return
	run_src 30 --dest "127.0.0.1:$PORT" --ca "$T/pki/ca.pem" \
		--cert "$T/pki/rogue.pem" --key "$T/pki/rogue-key.pem" || return
	if [ $rc -eq 0 ]; then
		fail "ferry-source succeeded with a rogue certificate"
	elif [ "$(wc -l <"$CT/fsrc.log")" -ne 1 ]; then
		fail "expected one line, got: $(cat "$CT/fsrc.log")"
	else
		still_running src &&
			pass "bad certificate, source guest runs on: $(cat "$CT/fsrc.log")"
	fi
}

# 2b. A revoked client certificate (ferry-dest --crl): refused at the
#     handshake with one line on each side, the source VM keeps running.
case_revoked() {
	"$B/tools/ferry-cert" crl "$CT" "$T/pki/client.pem" --ca "$T/pki/ca" ||
		{ fail "ferry-cert crl failed"; return; }
	start_vm src --ws 16M --rate 8 || return
	start_vm dst --ws 16M --rate 8 --incoming || return
	wait_filled src || return
	start_dest --crl "$CT/crl.pem" || return
	run_src 30 --dest "127.0.0.1:$PORT" $CTLS || return
	local src_rc=$rc
	wait_exit dest 30 "ferry-dest to give up" || return
	if [ $src_rc -eq 0 ] || [ $rc -eq 0 ]; then
		fail "a revoked certificate was accepted: rc $src_rc / $rc"
	elif [ "$(wc -l <"$CT/fsrc.log")" -ne 1 ] ||
		! grep -q 'refused our certificate as revoked' "$CT/fsrc.log"; then
		fail "ferry-source: expected one line naming the revocation, got: $(cat "$CT/fsrc.log")"
	elif ! grep -q 'certificate revoked' "$CT/fdest.log"; then
		fail "ferry-dest does not name the revocation: $(cat "$CT/fdest.log")"
	else
		still_running src &&
			pass "revoked certificate, source guest runs on: $(cat "$CT/fsrc.log")"
	fi
}

# 3. The destination dies mid-migration: the source VM keeps running.
case_dest_killed() {
	start_vm src --ws 64M --rate 8 || return
	start_vm dst --ws 64M --rate 8 --incoming || return
	wait_filled src || return
	start_dest || return
	start_src fsrc --dest "127.0.0.1:$PORT" $CTLS --bandwidth 16 \
		--timeout 3000
	sleep 1
	kill -9 "${PID_OF[dest]}"
	wait_exit fsrc 30 "ferry-source to give up" || return
	if [ $rc -ne 1 ]; then
		fail "ferry-source exit $rc: $(cat "$CT/fsrc.log")"
	else
		still_running src &&
			pass "destination killed, source guest runs on: $(tail -n 1 "$CT/fsrc.log")"
	fi
}

# 4. The source agent dies: the destination discards the incoming VM.
case_source_killed() {
	start_vm src --ws 64M --rate 8 || return
	start_vm dst --ws 64M --rate 8 --incoming || return
	wait_filled src || return
	start_dest --timeout 3000 || return
	start_src fsrc --dest "127.0.0.1:$PORT" $CTLS --bandwidth 16
	sleep 1
	kill -9 "${PID_OF[fsrc]}"
	wait "${PID_OF[fsrc]}" 2>/dev/null
	wait_exit dest 30 "ferry-dest to give up" || return
	if [ $rc -ne 1 ]; then
		fail "ferry-dest exit $rc: $(cat "$CT/fdest.log")"
		return
	fi
	wait_exit dst 5 "the incoming VM to be discarded" || return
	still_running src &&
		pass "source killed, incoming VM discarded: $(tail -n 1 "$CT/fdest.log")"
}

# 5. A guest that dirties faster than the limit allows: cancelled, the
#    VM keeps running at the source, the destination discards its copy.
case_no_converge() {
	start_vm src --ws 64M --rate 512 || return
	start_vm dst --ws 64M --rate 512 --incoming || return
	wait_filled src || return # dirtying at the full rate
	start_dest || return
	run_src 60 --dest "127.0.0.1:$PORT" $CTLS --mode precopy --downtime 1 \
		--max-rounds 1 --json "$CT/src.json" || return
	local src_rc=$rc
	wait_exit dest 30 "ferry-dest to give up" || return
	if [ $src_rc -eq 0 ] || ! grep -q 'did not converge' "$CT/fsrc.log"; then
		fail "expected a cancel, got: $(cat "$CT/fsrc.log")"
	elif [ $rc -eq 0 ]; then
		fail "ferry-dest reported success"
	elif ! grep -q '"outcome": "cancelled"' "$CT/src.json"; then
		fail "statistics do not say cancelled"
	else
		still_running src &&
			pass "not converging: cancelled, source guest runs on"
	fi
}

# 6. Different RAM sizes: refused before anything is sent.
case_layout_mismatch() {
	start_vm src --ws 16M --rate 0 || return
	start_vm dst --ws 32M --rate 0 --incoming || return
	wait_filled src || return
	start_dest || return
	run_src 30 --dest "127.0.0.1:$PORT" $CTLS || return
	wait_exit dest 30 "ferry-dest to give up" || return
	if [ $rc -eq 0 ] || ! grep -q 'layout' "$CT/fsrc.log"; then
		fail "expected a layout error, got: $(cat "$CT/fsrc.log")"
	else
		still_running src &&
			pass "layout mismatch, source guest runs on: $(cat "$CT/fsrc.log")"
	fi
}

# 7. Bad input to the CLIs: one line, exit 2.
case_usage() {
	local out
	out=$(timeout -s KILL 10 "$SRC" --vm x --dest nowhere $CTLS 2>&1)
	rc=$?
	if [ $rc -ne 2 ] || [ "$(echo "$out" | wc -l)" -ne 1 ]; then
		fail "ferry-source --dest nowhere: rc $rc: $out"
		return
	fi
	out=$(timeout -s KILL 10 "$SRC" --vm "$CT/none.sock" \
		--dest 127.0.0.1:1 $CTLS 2>&1)
	rc=$?
	if [ $rc -ne 1 ]; then
		fail "no destination: rc $rc: $out"
		return
	fi
	out=$(timeout -s KILL 10 "$DST" --vm x --listen 1 --ca /nonexistent \
		--cert x --key y 2>&1)
	rc=$?
	if [ $rc -eq 0 ] || [ "$(echo "$out" | wc -l)" -ne 1 ]; then
		fail "ferry-dest with a missing CA: rc $rc: $out"
		return
	fi
	out=$(timeout -s KILL 10 "$DST" --vm x --listen 1 $STLS \
		--crl /nonexistent 2>&1)
	rc=$?
	if [ $rc -eq 0 ] || [ "$(echo "$out" | wc -l)" -ne 1 ]; then
		fail "ferry-dest with a missing CRL: rc $rc: $out"
		return
	fi
	pass "usage errors: one line, non-zero"
}

# ---- the driver: one subshell per case, one TAP line each ----

# A soak: one dirtying guest migrated A -> B -> A ... FERRY_SOAK_HOPS
# (100) times, cycling through precopy, postcopy, hybrid and auto, each
# hop into a fresh incoming ferry-vm. After every hop the guest must show,
# at its new home, a heartbeat with a whole verification pass since its
# resume and no error, before it moves on. Both agents of every hop run
# under /usr/bin/time: their peak RSS must not grow from the first ten
# hops to the last ten; their open fds, sampled mid-hop, are reported.
soak_rpass() { # soak_rpass LOG: a heartbeat with rpasses >= 1 in LOG
	grep '^HB ' "$1" 2>/dev/null | grep -qv ' rpasses=0 '
}
soak_sample() { # soak_sample PID FILE: the fd count of PID, appended
	local n
	n=$(ls "/proc/$1/fd" 2>/dev/null | wc -l)
	[ "$n" -gt 0 ] && echo "$n" >>"$2"
}
# soak_growth FILE FIRST LAST: the mean of the last LAST values of FILE
# over the mean of its first FIRST, in percent
soak_growth() {
	awk -v f="$2" -v l="$3" '{ v[NR] = $1 }
		END { for (i = 1; i <= f; i++) a += v[i]
		      for (i = NR - l + 1; i <= NR; i++) b += v[i]
		      printf "%d", (b / l) * 100 / (a / f) }' "$1"
}
case_soak() {
	local hops=${FERRY_SOAK_HOPS:-100} modes=(precopy postcopy hybrid auto)
	local i cur next mode grow
	command -v /usr/bin/time >/dev/null ||
		{ skip "no /usr/bin/time to sample the agents"; return; }
	start_vm vm0 --ws 4M --rate 16 --heartbeat-ms 100 || return
	wait_filled vm0 || return
	for ((i = 0; i < hops; i++)); do
		cur=vm$i next=vm$((i + 1)) mode=${modes[i % 4]}
		start_vm "$next" --ws 4M --rate 16 --heartbeat-ms 100 \
			--incoming || return
		/usr/bin/time -f '%M' -o "$CT/dest.rss.$i" "$DST" \
			--vm "$CT/$next.sock" --listen 127.0.0.1:0 $STLS \
			--accept-timeout 30 >"$CT/fdest$i.log" 2>&1 &
		track dest $!
		wait_until 10 "ferry-dest to listen (hop $i)" dest \
			has_line "fdest$i" 'listening on port [0-9]' || return
		PORT=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' \
			"$CT/fdest$i.log" | head -n 1)
		/usr/bin/time -f '%M' -o "$CT/src.rss.$i" "$SRC" \
			--vm "$CT/$cur.sock" -q --dest "127.0.0.1:$PORT" $CTLS \
			--mode "$mode" >"$CT/fsrc$i.log" 2>&1 &
		track fsrc $!
		# Both agents mid-migration (the session is up): their fds.
		# A hop that ends first is simply not sampled.
		for _ in $(seq 100); do
			has_line "fdest$i" 'TLSv1.3' || { sleep 0.02; continue; }
			soak_sample "$(pgrep -P "${PID_OF[fsrc]}" | head -n 1)" "$CT/src.fds"
			soak_sample "$(pgrep -P "${PID_OF[dest]}" | head -n 1)" "$CT/dest.fds"
			break
		done
		wait_exit fsrc 60 "ferry-source (hop $i, $mode)" || return
		[ $rc -eq 0 ] || { fail "hop $i ($mode): ferry-source exit $rc: $(cat "$CT/fsrc$i.log")"; return; }
		wait_exit dest 30 "ferry-dest (hop $i)" || return
		[ $rc -eq 0 ] || { fail "hop $i ($mode): ferry-dest exit $rc: $(tail -n 1 "$CT/fdest$i.log")"; return; }
		wait_exit "$cur" 10 "the released VM of hop $i" || return
		[ $rc -eq 0 ] || { fail "hop $i: the released VM exited $rc"; return; }
		wait_until 30 "a whole pass since resume after hop $i" "$next" \
			soak_rpass "$CT/$next.log" || return
		if has_line "$next" '^ERR' ||
			grep -q '^HB .* errors=[1-9]' "$CT/$next.log"; then
			fail "hop $i ($mode): the guest found a bad page: $(grep -m 1 '^ERR\|errors=[1-9]' "$CT/$next.log")"
			return
		fi
		cat "$CT/src.rss.$i" >>"$CT/src.rss" && cat "$CT/dest.rss.$i" >>"$CT/dest.rss"
		rm -f "$CT/$cur.log" "$CT/fdest$i.log" "$CT/fsrc$i.log"
	done
	# fds depend on the phase a hop was sampled in: reported, not judged.
	for f in src.rss dest.rss; do
		[ "$(wc -l <"$CT/$f" 2>/dev/null || echo 0)" -ge 20 ] || continue
		grow=$(soak_growth "$CT/$f" 10 10)
		[ "$grow" -le 120 ] ||
			{ fail "$f grew to $grow % of its first ten hops"; return; }
	done
	pass "soak: $hops hops A->B->A (precopy, postcopy, hybrid, auto), verified after each; agents' peak RSS $(sort -n "$CT/src.rss" | tail -n 1) / $(sort -n "$CT/dest.rss" | tail -n 1) KiB, last ten hops at $(soak_growth "$CT/src.rss" 10 10) / $(soak_growth "$CT/dest.rss" 10 10) % of the first ten; at most $(sort -n "$CT/src.fds" 2>/dev/null | tail -n 1) / $(sort -n "$CT/dest.fds" 2>/dev/null | tail -n 1) fds"
}

# case_bound CASE: seconds after which a whole case is stopped (every wait
# in it is bounded already; this bounds their sum)
case_bound() {
	case "$1" in
	auto_2g) echo 420 ;;
	soak) echo $((60 + 10 * ${FERRY_SOAK_HOPS:-100})) ;;
	*) echo 240 ;;
	esac
}

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
	[ -n "${FERRY_KEEP:-}" ] && echo "# kept $T" || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

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

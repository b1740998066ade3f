#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Cancelling a live migration with a signal, shaped "start workload,
# migrate, signal, verify": real ferry-vm guests (native threads), the
# agents over TLS on loopback. Before the switchover is committed a
# SIGINT/SIGTERM to either agent stops the migration: both agents exit 1
# with one line saying so, the source guest keeps running and verifying
# its memory, the incoming VM is discarded. After a postcopy switchover
# the signal is refused and the migration completes, guest verified.
#
# Every wait is bounded and names what it waited for; no assertion is
# timed. Every process is ended by its PID. TAP output; exit 0 when every
# case passed, 1 otherwise. Run from the build directory (make check sets
# FERRY_BUILD); FERRY_CASES picks cases, FERRY_KEEP=1 keeps the files.
set -u
B=${FERRY_BUILD:-$(pwd)}
VM=$B/tools/ferry-vm/ferry-vm
SRC=$B/tools/ferry-source
DST=$B/tools/ferry-dest
CASES=${FERRY_CASES:-src_sigint_round0 src_sigterm_later src_sigint_paused \
	dest_sigint_round0 dest_sigint_paused postcopy_refused}
AGENTS_NAME=cancel
. "$(dirname "$0")/agents.sh"

# 1. SIGINT to ferry-source in round 0 (8 MiB/s: 64 MiB take 8 s).
case_src_sigint_round0() {
	start_vm src --ws 64M --rate 8 || return 1
	start_vm dst --ws 64M --rate 8 --incoming || return 1
	wait_hb src 2 || return 1
	start_dest || return 1
	start_source --bandwidth 8
	wait_for 30 "round 0 to start" in_log fsrc.log 'round 0:' || return 1
	kill -INT "$spid"
	cancelled_ok source SIGINT
}

# 2. SIGTERM to ferry-source in a later round: a guest that does not
#    converge on a 1 ms downtime limit in precopy mode.
case_src_sigterm_later() {
	start_vm src --ws 32M --rate 64 || return 1
	start_vm dst --ws 32M --rate 64 --incoming || return 1
	wait_hb src 2 || return 1
	start_dest || return 1
	start_source --mode precopy --downtime 1 --bandwidth 32
	wait_for 60 "round 2 to start" in_log fsrc.log 'round 2:' || return 1
	kill -TERM "$spid"
	cancelled_ok source SIGTERM
}

# 3. SIGINT to ferry-source while the VM is paused for the final round:
#    any downtime fits, so round 0 is followed by a paused final round of
#    everything the guest wrote meanwhile, at 8 MiB/s.
case_src_sigint_paused() {
	start_vm src --ws 32M --rate 64 || return 1
	start_vm dst --ws 32M --rate 64 --incoming || return 1
	wait_hb src 2 || return 1
	start_dest || return 1
	start_source --mode precopy --downtime 600000 --bandwidth 8
	wait_for 60 "the final round to start" in_log fsrc.log \
		'(final): the VM is paused' || return 1
	kill -INT "$spid"
	cancelled_ok source SIGINT
}

# 4. SIGINT to ferry-dest in round 0.
case_dest_sigint_round0() {
	start_vm src --ws 64M --rate 8 || return 1
	start_vm dst --ws 64M --rate 8 --incoming || return 1
	wait_hb src 2 || return 1
	start_dest || return 1
	start_source --bandwidth 8
	wait_for 30 "round 0 to start" in_log fsrc.log 'round 0:' || return 1
	kill -INT "$dest_pid"
	cancelled_ok dest SIGINT
}

# 5. SIGINT to ferry-dest while the source VM is paused for the final
#    round: the source resumes it.
case_dest_sigint_paused() {
	start_vm src --ws 32M --rate 64 || return 1
	start_vm dst --ws 32M --rate 64 --incoming || return 1
	wait_hb src 2 || return 1
	start_dest || return 1
	start_source --mode precopy --downtime 600000 --bandwidth 8
	wait_for 60 "the final round to start" in_log fsrc.log \
		'(final): the VM is paused' || return 1
	kill -INT "$dest_pid"
	cancelled_ok dest SIGINT
}

# 6. After a postcopy switchover a signal to either agent (twice to the
#    source) is refused; the migration completes, the guest verified.
#    The guest outlives the push (64 MiB at 8 MiB/s), so that it verifies
#    a whole memory it received.
case_postcopy_refused() {
	local src_rc dest_rc vm_rc
	start_vm src --ws 64M --rate 32 --heartbeats 20 || return 1
	start_vm dst --ws 64M --rate 32 --incoming || return 1
	wait_hb src 2 || return 1
	start_dest || return 1
	start_source --mode postcopy --bandwidth 8
	wait_for 60 "the guest to run at the destination" has_hb dst 1 ||
		return 1
	kill -INT "$spid"
	wait_for 10 "ferry-source to refuse SIGINT" in_log fsrc.log \
		'ferry-source: not cancelling (SIGINT): the switchover is committed, the guest runs at the destination (postcopy in progress); the migration goes on' ||
		return 1
	kill -TERM "$spid"
	wait_for 10 "ferry-source to refuse SIGTERM" in_log fsrc.log \
		'ferry-source: not cancelling (SIGTERM): the switchover is committed, the guest runs at the destination (postcopy in progress); the migration goes on' ||
		return 1
	kill -INT "$dest_pid"
	wait_for 10 "ferry-dest to refuse SIGINT" in_log fdest.log \
		'ferry-dest: not cancelling (SIGINT): the switchover is committed, the guest runs here (postcopy in progress); the migration goes on' ||
		return 1
	wait_exit 120 "$spid" ferry-source src_rc || return 1
	wait_exit 30 "$dest_pid" ferry-dest dest_rc || return 1
	wait_exit 120 "$dst_pid" "the destination ferry-vm" vm_rc || return 1
	[ "$src_rc" -eq 0 ] || fail "ferry-source exit $src_rc: $(tail -n 3 "$T/fsrc.log")"
	[ "$dest_rc" -eq 0 ] || fail "ferry-dest exit $dest_rc: $(tail -n 3 "$T/fdest.log")"
	[ "$vm_rc" -eq 0 ] || fail "the destination guest exited $vm_rc"
	[ "$(grep -c 'not cancelling' "$T/fsrc.log")" -eq 2 ] ||
		fail "ferry-source: expected two refusals: $(grep 'not cancelling' "$T/fsrc.log")"
	grep -Eq '^DONE .*rpasses=[1-9][0-9]* pages=[0-9]+ errors=0' "$T/dst.log" ||
		fail "no verified DONE at the destination: $(grep '^DONE' "$T/dst.log")"
	in_log src.json '"mode": "postcopy"' || fail "the migration did not end in postcopy"
	[ -z "$WHY" ]
}

run_cases

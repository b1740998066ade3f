#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The operator's controls against running migrations, shaped "start
# workload, migrate, steer, verify": real ferry-vm guests (native
# threads), the agents over TLS on loopback, each with --control and
# --events. Every control request is made against a running migration
# and its effect is read back from the events stream: raising the
# downtime limit makes a migration that does not converge switch over
# (and lowering it keeps one in precopy), the bandwidth cap holds and is
# lifted (and the migration completes), `postcopy` switches, a cancel in
# each phase leaves the source guest running and verifying and the
# destination gone, `set streams` is refused. Every events file must parse as JSON line by line, numbered
# in order, ending in completed or failed. A full file system under the
# events file is one line, not a crash; a stranger cannot steer.
#
# Every wait is bounded and names what it waited for; no assertion is
# about speed but the lifted cap's (a round after it must beat the old
# cap, a hundred times below what loopback TLS carries). Every process
# is ended by its PID. TAP; run from the build directory (make check
# sets FERRY_BUILD); FERRY_CASES picks cases, FERRY_KEEP=1 keeps files.
set -u
B=${FERRY_BUILD:-$(pwd)}
VM=$B/tools/ferry-vm/ferry-vm
SRC=$B/tools/ferry-source
DST=$B/tools/ferry-dest
CTL=$B/tools/ferry-ctl
CASES=${FERRY_CASES:-cancel_waiting cancel_round0 cancel_later \
	cancel_paused downtime bandwidth postcopy events_full stranger}
AGENTS_NAME=ctl
. "$(dirname "$0")/agents.sh"
command -v python3 >/dev/null || skip_all "no python3 to read the events"
EV=$(cd "$(dirname "$0")" && pwd)/events.py

# ctl AGENT [--json] REQUEST...: ferry ctl against AGENT's socket (src
# or dest)
ctl() {
	local who=$1 json=
	shift
	[ "$1" = --json ] && { json=--json; shift; }
	$CTL --wait 10s $json "$T/$who.ctl" "$@"
}
# events_ok AGENT: AGENT's events parse, in order, and end as they must
events_ok() {
	python3 "$EV" check "$T/$1.events" >"$T/$1.evcheck" 2>&1 ||
		fail "$1 events: $(cat "$T/$1.evcheck")"
}
# has_event AGENT EXPR: an event of AGENT's satisfies the Python EXPR
# (over e, the event, and i, its line number)
has_event() { python3 "$EV" has "$T/$1.events" "$2" 2>/dev/null; }
# wait_event SECONDS AGENT WHAT EXPR
wait_event() { wait_for "$1" "$3" has_event "$2" "$4"; }
# ev AGENT EXPR: the value of EXPR (over ev, the list of events)
ev() { python3 "$EV" eval "$T/$1.events" "$2"; }

# The agents with their controls and events.
start_dest_ctl() {
	start_dest --control "$T/dest.ctl" --events "$T/dest.events" "$@"
}
start_source_ctl() {
	start_source --control "$T/src.ctl" --events "$T/src.events" "$@"
}

# migrated_ok: both agents exit 0, the destination guest finished a
# verified pass there (the source VM's --heartbeats, which the guest
# carries in its RAM), both event streams end completed
migrated_ok() {
	local src_rc dest_rc vm_rc
	wait_exit 180 "$spid" ferry-source src_rc || return 1
	wait_exit 30 "$dest_pid" ferry-dest dest_rc || return 1
	[ "$src_rc" -eq 0 ] || fail "ferry-source exit $src_rc: $(tail -n 3 "$T/fsrc.log")"
	[ "$dest_rc" -eq 0 ] || fail "ferry-dest exit $dest_rc: $(tail -n 3 "$T/fdest.log")"
	wait_exit 180 "$dst_pid" "the destination ferry-vm" vm_rc || return 1
	[ "$vm_rc" -eq 0 ] || fail "the destination guest exited $vm_rc"
	grep -Eq '^DONE .*rpasses=[1-9][0-9]* pages=[0-9]+ errors=0' "$T/dst.log" ||
		fail "no verified DONE at the destination: $(grep '^DONE' "$T/dst.log")"
	events_ok src
	events_ok dest
	has_event src 'e["event"] == "completed" and e["outcome"] == "completed"' ||
		fail "the source's events do not end completed"
	[ -z "$WHY" ]
}

# ctl_cancelled WHO: cancelled_ok for a control request, and the events
ctl_cancelled() {
	cancelled_ok "$1" "ferry ctl cancel" || return 1
	events_ok src
	events_ok dest
	has_event src 'e["event"] == "failed" and e["outcome"] == "cancelled"' ||
		fail "the source's events do not end cancelled"
	[ -z "$WHY" ]
}

# 1. cancel to a destination that waits for a source: it ends, saying so.
case_cancel_waiting() {
	local rc
	start_dest_ctl || return 1
	ctl dest status | grep -q 'waiting for a source' ||
		fail "status of a waiting ferry-dest: $(ctl dest status 2>&1)"
	ctl dest cancel >"$T/ctl.out" 2>&1 || fail "cancel: $(cat "$T/ctl.out")"
	wait_exit 10 "$dest_pid" ferry-dest rc || return 1
	[ "$rc" -eq 1 ] || fail "ferry-dest exit $rc"
	one_line fdest.log "ferry-dest: cancelled (ferry ctl cancel) before the migration started"
	[ -e "$T/dest.ctl" ] && fail "the control socket was left behind"
	events_ok dest
	[ -z "$WHY" ]
}

# start_pair WS RATE SOURCE-ARGS...: two guests of WS at RATE MiB/s, the
# destination with its controls, then the source with them and the args
start_pair() {
	local ws=$1 rate=$2
	shift 2
	start_vm src --ws "$ws" --rate "$rate" || return 1
	start_vm dst --ws "$ws" --rate "$rate" --incoming || return 1
	wait_hb src 2 || return 1
	start_dest_ctl || return 1
	start_source_ctl "$@"
}

# cancel_by WHO: `ferry ctl cancel` to WHO (src or dest), then the checks
cancel_by() {
	ctl "$1" cancel >"$T/ctl.out" 2>&1 || fail "cancel: $(cat "$T/ctl.out")"
	ctl_cancelled "$([ "$1" = src ] && echo source || echo dest)"
}

# 2. cancel to ferry-source in round 0, after a status that says so.
case_cancel_round0() {
	start_pair 64M 8 --mode precopy --bandwidth 8 || return 1
	wait_event 30 src "round 0 to begin" \
		'e["event"] == "round_begin" and e["round"] == 0' || return 1
	ctl src --json status >"$T/status.json" ||
		fail "status: $(cat "$T/status.json")"
	python3 "$EV" status "$T/status.json" \
		's["phase"] == "precopy" and s["round"] == 0 and s["role"] == "source" and s["bandwidth_limit_mibs"] == 8' ||
		fail "status in round 0: $(cat "$T/status.json")"
	ctl src status | grep -q 'precopy, round 0' ||
		fail "readable status: $(ctl src status 2>&1)"
	cancel_by src
}

# 3. cancel to ferry-dest in a later round of a migration that does not
#    converge on a 1 ms limit.
case_cancel_later() {
	start_pair 32M 64 --mode precopy --downtime 1ms --bandwidth 32 ||
		return 1
	wait_event 60 src "round 2 to begin" \
		'e["event"] == "round_begin" and e["round"] == 2' || return 1
	cancel_by dest
}

# 4. cancel to ferry-source while the VM is paused for the final round.
case_cancel_paused() {
	start_pair 32M 64 --mode precopy --downtime 10m --bandwidth 8 ||
		return 1
	wait_event 60 src "the VM to pause" 'e["event"] == "paused"' || return 1
	ctl src status | grep -q 'switchover' ||
		fail "status while paused: $(ctl src status 2>&1)"
	cancel_by src
}

# 5. The downtime limit: lowered during round 0 of a migration that would
#    have fitted (10 minutes), it keeps it in precopy; raised again after
#    two rounds that did not fit, it switches over, and the guest runs
#    verified at the destination.
case_downtime() {
	local r
	start_vm src --ws 32M --rate 64 --heartbeats 45 || return 1
	start_vm dst --ws 32M --rate 64 --incoming || return 1
	wait_hb src 2 || return 1
	start_dest_ctl || return 1
	start_source_ctl --mode precopy --downtime 10m --bandwidth 8 \
		--max-rounds 60 --deadline 10m
	wait_event 30 src "round 0 to begin" \
		'e["event"] == "round_begin" and e["round"] == 0' || return 1
	ctl src set downtime 1 >"$T/ctl.out" 2>&1 ||
		fail "set downtime 1: $(cat "$T/ctl.out")"
	grep -q 'downtime limit now 1 ms' "$T/ctl.out" || fail "reply: $(cat "$T/ctl.out")"
	wait_event 60 src "round 2 to end in another round" \
		'e["event"] == "round_end" and e["round"] == 2' || return 1
	has_event src 'e["event"] == "round_end" and e["round"] == 0 and e["downtime_limit_ms"] == 1 and e["decision"] == "round"' ||
		fail "round 0 did not end in another round under the 1 ms limit: $(ev src '[e for e in ev if e["event"] == "round_end"][:1]')"
	r=$(ev src 'max(e["round"] for e in ev if e["event"] == "round_end")')
	ctl src set downtime 10m >"$T/ctl.out" 2>&1 ||
		fail "set downtime 10m: $(cat "$T/ctl.out")"
	migrated_ok || return 1
	has_event src 'e["event"] == "round_end" and e["round"] >= '"$r"' and e["downtime_limit_ms"] == 600000 and e["decision"] == "switchover" and e["why"] == "fits"' ||
		fail "no round after the change ended in a switchover that fits: $(ev src '[e for e in ev if e["event"] == "round_end"][-2:]')"
	has_event src 'e["event"] == "control" and e["request"] == "set" and e["downtime_ms"] == 1 and e["ok"]' ||
		fail "no control event for set downtime 1"
	has_event src 'e["event"] == "switchover" and e["mode"] == "precopy" and e["downtime_ms"] > 0' ||
		fail "no precopy switchover event with its downtime"
	[ -z "$WHY" ]
}

# 6. The bandwidth cap: 4 MiB/s holds over round 0 (within the bucket's
#    quarter-second burst) of a migration that cannot fit 1 ms at that
#    rate; `set streams` is refused while it runs; the cap lifted, a later
#    round beats it and the migration completes.
case_bandwidth() {
	local r
	start_vm src --ws 16M --rate 64 --heartbeats 45 || return 1
	start_vm dst --ws 16M --rate 64 --incoming || return 1
	wait_hb src 2 || return 1
	start_dest_ctl || return 1
	start_source_ctl --mode precopy --downtime 1ms --bandwidth 4M \
		--max-rounds 60 --deadline 10m
	wait_event 60 src "round 0 to end" \
		'e["event"] == "round_end" and e["round"] == 0' || return 1
	has_event src 'e["event"] == "round_end" and e["round"] == 0 and e["bytes"] <= (4 * (e["duration_s"] + 0.25) * 1.05 + 0.25) * 1048576 and e["bandwidth_limit_mibs"] == 4 and e["decision"] == "round"' ||
		fail "round 0 broke the 4 MiB/s cap: $(ev src '[e for e in ev if e["event"] == "round_end"][0]')"
	ctl src --json status >"$T/status.json"
	python3 "$EV" status "$T/status.json" 's["bandwidth_limit_mibs"] == 4 and s["phase"] == "precopy"' ||
		fail "status under the cap: $(cat "$T/status.json")"
	if ctl src set streams 4 >"$T/ctl.out" 2>&1; then
		fail "set streams 4 was not refused"
	else
		grep -q 'not supported while running' "$T/ctl.out" ||
			fail "set streams: $(cat "$T/ctl.out")"
	fi
	r=$(ev src 'max([e["round"] for e in ev if e["event"] == "round_begin"])')
	ctl src set bandwidth none >"$T/ctl.out" 2>&1 ||
		fail "set bandwidth none: $(cat "$T/ctl.out")"
	grep -q 'bandwidth cap removed' "$T/ctl.out" || fail "reply: $(cat "$T/ctl.out")"
	# The first round begun after the change, uncapped; then a limit any
	# round fits, so that a slow machine (a sanitizer) ends it too. It
	# may have converged on 1 ms already: the last set may find no one.
	wait_event 60 src "a round begun after the cap was lifted to end" \
		'e["event"] == "round_end" and e["round"] == '"$((r + 1))" ||
		return 1
	ctl src set downtime 10m >/dev/null 2>&1
	migrated_ok || return 1
	has_event src 'e["event"] == "round_end" and e["round"] == '"$((r + 1))"' and e["bandwidth_limit_mibs"] is None and e["bandwidth_mibs"] > 6' ||
		fail "the round after the cap was lifted did not beat 6 MiB/s: $(ev src '[e for e in ev if e["event"] == "round_end"][-2:]')"
	has_event src 'e["event"] == "control" and e["request"] == "set" and e.get("streams") == 4 and not e["ok"]' ||
		fail "no refused control event for set streams"
	[ -z "$WHY" ]
}

# 7. postcopy, asked for in a precopy that does not converge: the guest
#    switches and runs verified at the destination; asked again after the
#    switchover, it is refused.
case_postcopy() {
	start_vm src --ws 32M --rate 64 --heartbeats 45 || return 1
	start_vm dst --ws 32M --rate 64 --incoming || return 1
	wait_hb src 2 || return 1
	start_dest_ctl || return 1
	start_source_ctl --mode precopy --downtime 1ms --bandwidth 16 \
		--max-rounds 60 --deadline 10m
	wait_event 60 src "round 1 to begin" \
		'e["event"] == "round_begin" and e["round"] == 1' || return 1
	ctl src postcopy >"$T/ctl.out" 2>&1 || fail "postcopy: $(cat "$T/ctl.out")"
	wait_event 60 src "the postcopy switchover" \
		'e["event"] == "switchover" and e["mode"] == "postcopy"' || return 1
	if ctl src postcopy >"$T/ctl2.out" 2>&1; then
		fail "a second postcopy was not refused"
	fi
	migrated_ok || return 1
	has_event src 'e["event"] == "paused" and e["mode"] == "postcopy" and e["why"] == "requested"' ||
		fail "no paused event for a requested postcopy"
	has_event src 'e["event"] == "completed" and e["mode"] == "postcopy"' ||
		fail "the migration did not end in postcopy"
	has_event dest 'e["event"] == "switchover"' ||
		fail "the destination's events have no switchover"
	[ -z "$WHY" ]
}

# 8. --events on a full file system (/dev/full): one line says so, the
#    migration completes.
case_events_full() {
	local src_rc dest_rc vm_rc
	start_vm src --ws 16M --rate 8 --heartbeats 30 || return 1
	start_vm dst --ws 16M --rate 8 --incoming || return 1
	wait_hb src 2 || return 1
	start_dest --events "$T/dest.events" || return 1
	start_source --events /dev/full
	wait_exit 120 "$spid" ferry-source src_rc || return 1
	wait_exit 30 "$dest_pid" ferry-dest dest_rc || return 1
	[ "$src_rc" -eq 0 ] || fail "ferry-source exit $src_rc: $(tail -n 3 "$T/fsrc.log")"
	[ "$dest_rc" -eq 0 ] || fail "ferry-dest exit $dest_rc"
	[ "$(grep -c 'events /dev/full: No space left on device after 0 events; no more events are written, the migration goes on' "$T/fsrc.log")" -eq 1 ] ||
		fail "no one line about the full events file: $(tr '\n' '|' <"$T/fsrc.log")"
	grep -q 'ferry-source: --events /dev/full: No space left on device: the stream stops after 0 events' "$T/fsrc.log" ||
		fail "no closing line about the events: $(tr '\n' '|' <"$T/fsrc.log")"
	wait_exit 120 "$dst_pid" "the destination ferry-vm" vm_rc || return 1
	[ "$vm_rc" -eq 0 ] || fail "the destination guest exited $vm_rc"
	events_ok dest
	[ -z "$WHY" ]
}

# 9. Only the agent's user (or root) steers it: the socket is 0600, and a
#    stranger who gets past the mode is refused by SO_PEERCRED.
case_stranger() {
	local mode out
	if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null; then
		echo "# stranger: needs root and setpriv to be another user" >&2
		start_dest_ctl || return 1
		mode=$(stat -c %a "$T/dest.ctl")
		[ "$mode" = 600 ] || fail "the control socket is $mode, not 600"
		return
	fi
	# The stranger may reach the socket's directory (search only), so
	# that what stops it is the socket's mode, then its uid.
	chmod 711 "$ROOT" "$T"
	start_dest_ctl || return 1
	mode=$(stat -c %a "$T/dest.ctl")
	[ "$mode" = 600 ] || fail "the control socket is $mode, not 600"
	out=$(setpriv --reuid=65534 --regid=65534 --clear-groups \
		"$CTL" "$T/dest.ctl" status 2>&1) &&
		fail "a stranger read the status through a 0600 socket: $out"
	echo "$out" | grep -q 'Permission denied' ||
		fail "a stranger at a 0600 socket: $out"
	chmod 666 "$T/dest.ctl"
	out=$(setpriv --reuid=65534 --regid=65534 --clear-groups \
		"$CTL" "$T/dest.ctl" cancel 2>&1) &&
		fail "a stranger cancelled: $out"
	echo "$out" | grep -q 'permission denied: only the agent.s user or root' ||
		fail "a stranger past the mode: $out"
	grep -q 'control: refused a request from uid 65534' "$T/fdest.log" ||
		fail "ferry-dest did not say it refused uid 65534"
	alive "$dest_pid" || fail "ferry-dest died"
	ctl dest status | grep -q 'waiting for a source' ||
		fail "status after the stranger: $(ctl dest status 2>&1)"
	[ -z "$WHY" ]
}

run_cases

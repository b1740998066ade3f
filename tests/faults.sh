#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Faults at every phase of a live migration, shaped "start workload,
# migrate, break something, verify": real ferry-vm guests, the agents over
# TLS. Each case ends as docs/recovery.md says (its fault matrix has a row
# per case here, and the recovery_table case checks that every row names
# a case that exists):
#
#   stop_{src,dest}_{setup,round0,round,switchover,postcopy}
#       SIGSTOP of one agent for 3 s, three times its I/O timeout (1 s),
#       then SIGCONT: a frozen peer, not a dead one.
#   lossy_link  a postcopy over a veth pair between two network
#       namespaces the case creates, with tc netem delay and loss (or,
#       on a kernel without netem, a tbf rate limit and iptables random
#       drops, said so in the result).
#   json_full   both agents' --json file on a full tiny tmpfs.
#   dest_memcg_exceeded  ferry-dest in a memory cgroup whose limit its
#       own buffers exceed.
#   memcg_charge  pages placed at the destination are charged to the
#       VMM's memory cgroup, not the agent's.
#   postcopy_memcg_hog  a postcopy inside a memory cgroup with a tight
#       limit and a memory hog: the hog is killed, the agents (OOM
#       protected for the window) and the guest are not.
#   recovery_table  docs/recovery.md's fault matrix against the tests.
#
# Every setting a case changes (network namespaces, mounts, cgroups) is
# undone when it ends, however it ends. Run from the build directory (make
# check sets FERRY_BUILD); TAP; FERRY_CASES picks cases, FERRY_KEEP=1
# keeps the logs. The harness is tests/harness.sh.
set -u
ALL_CASES="stop_src_setup stop_src_round0 stop_src_round stop_src_switchover
	stop_src_postcopy stop_dest_setup stop_dest_round0 stop_dest_round
	stop_dest_switchover stop_dest_postcopy lossy_link json_full
	dest_memcg_exceeded memcg_charge postcopy_memcg_hog recovery_table"
HARNESS=faults
. "$(cd "$(dirname "$0")" && pwd)/harness.sh"
DOCS=$(cd "$(dirname "$0")/.." && pwd)/docs

IO_MS=1000 # both agents' --timeout
STOP_S=3   # how long an agent stays frozen

# ---- helpers ----

# one_line NAME: NAME's log (an agent's), without the progress lines of
# -v, is one line; prints it
one_line() {
	errors_only "$1" >"$CT/$1.err"
	[ "$(wc -l <"$CT/$1.err")" -eq 1 ] ||
		{ fail "$1 said more than one line: $(tr '\n' '|' <"$CT/$1.err")"; return; }
	cat "$CT/$1.err"
}

# freeze NAME: SIGSTOP of this case's process NAME for STOP_S seconds
freeze() {
	kill -STOP "${PID_OF[$1]}" || { fail "cannot stop $1"; return; }
	sleep $STOP_S
	kill -CONT "${PID_OF[$1]}"
}

# discarded: ferry-dest gave up (exit 1, one line) and its incoming VM
# exited without its guest ever printing a heartbeat
discarded() {
	wait_exit dest 30 "ferry-dest to give up" || return
	[ $rc -eq 1 ] || { fail "ferry-dest exit $rc: $(tail -n 1 "$CT/fdest.log")"; return; }
	wait_exit dst 10 "the incoming VM to be discarded" || return
	! has_line dst '^HB ' || fail "the incoming guest ran: $(grep -m 1 '^HB ' "$CT/dst.log")"
}

# source_gave_up: ferry-source exit 1 with one line, its guest still
# running here
source_gave_up() {
	wait_exit fsrc 30 "ferry-source to give up" || return
	[ $rc -eq 1 ] || { fail "ferry-source exit $rc: $(cat "$CT/fsrc.log")"; return; }
	SLINE=$(one_line fsrc) || return
	still_running src
}

# agents_done: both agents exit 0
agents_done() {
	wait_exit fsrc 90 "ferry-source to finish" || return
	[ $rc -eq 0 ] || { fail "ferry-source exit $rc: $(tr '\n' '|' <"$CT/fsrc.log")"; return; }
	wait_exit dest 30 "ferry-dest to finish" || return
	[ $rc -eq 0 ] || { fail "ferry-dest exit $rc: $(tail -n 1 "$CT/fdest.log")"; return; }
}
# completed WS: both agents exit 0 and the destination guest verified its
# whole working set since its resume; sets VERIFIED
completed() {
	agents_done || return
	guest_done "$1"
}
# guest_done WS: the destination guest ends, having verified its whole
# working set since its resume; sets VERIFIED
guest_done() {
	wait_exit dst 60 "the destination guest's DONE" || return
	[ $rc -eq 0 ] || { fail "destination VM exit $rc"; return; }
	verified dst "$(pages "$1")"
}

# The phase a case breaks in: the ferry-source -v line that starts it,
# and the source arguments that make it last long enough (a second or
# more) for the test to see that line and freeze an agent in it.
phase_args() {
	case "$1" in
	setup) echo "--mode precopy" ;;
	round0) echo "--mode precopy --bandwidth 8" ;;
	round) echo "--mode precopy --downtime 1 --max-rounds 30 --bandwidth 16" ;;
	switchover) echo "--mode precopy --downtime 8000 --bandwidth 8" ;;
	postcopy) echo "--mode postcopy --bandwidth 8 --recover-timeout 30" ;;
	esac
}
phase_marker() {
	case "$1" in
	round0) echo 'source: round 0: ' ;;
	round) echo 'source: round 2: ' ;;
	switchover) echo '(final): the VM is paused' ;;
	esac
}

# start_pair PHASE: both VMs (16 MiB, dirtying), ferry-dest listening
start_pair() {
	local hb=""
	# Where the migration completes, the guest ends by itself there.
	[ "$1" != postcopy ] && [ "$1" != setup ] || hb="--heartbeats 48"
	start_vm src --ws 16M --rate 16 --heartbeat-ms 250 $hb || return
	start_vm dst --ws 16M --rate 16 --heartbeat-ms 250 --incoming || return
	wait_filled src || return
	start_dest --timeout $IO_MS -v
}

# go_source [NAME]: ferry-source for this case's phase, verbose (its
# phase lines are the markers), output in NAME.log (fsrc)
go_source() {
	"$SRC" --vm "$CT/src.sock" --dest "127.0.0.1:$PORT" $CTLS -v \
		--timeout $IO_MS --json "$CT/src.json" $(phase_args "$PHASE") \
		>"$CT/${1:-fsrc}.log" 2>&1 &
	track "${1:-fsrc}" $!
}

# errors_only NAME: NAME's log without the progress lines of -v
errors_only() {
	grep -v -e '^transport: \(connected\|accepted\) session' \
		-e '^source: \(attached\|tracking armed\|round [0-9]\)' \
		-e '^source: postcopy: ' -e '^ferry-dest: listening' \
		-e '^ferry-\(dest\|source\): TLSv1' -e '^migrate: region' \
		-e 'oom_score_adj\|OOM killer' "$CT/$1.log"
}

# A frozen source. Before it connects nothing has started: the
# destination keeps listening and the thawed source migrates. In precopy (rounds,
# the paused final round) the destination gives up and discards its VM;
# the source, thawed, finds it gone and the guest runs on here. In
# postcopy the destination waits for it: thawed, it reconnects and the
# migration completes.
stop_src() {
	PHASE=$1
	start_pair "$PHASE" || return
	go_source
	case "$PHASE" in
	setup)
		# Frozen before its first packet: nothing has started, the
		# destination keeps listening, the thawed source migrates.
		kill -STOP "${PID_OF[fsrc]}"
		sleep $STOP_S
		has_line fdest 'accepted session' &&
			{ fail "the source was frozen too late: the session is up"; kill -CONT "${PID_OF[fsrc]}"; return; }
		kill -CONT "${PID_OF[fsrc]}"
		completed 16M || return
		pass "frozen source in setup (connecting): the destination kept listening; thawed, it migrated, $VERIFIED"
		;;
	postcopy)
		wait_hb dst 1 || return # the guest runs at the destination
		freeze fsrc || return
		completed 16M || return
		pass "frozen source in postcopy: the guest there waited, the migration completed ($(json recoveries "$CT/src.json") reconnections); $VERIFIED"
		;;
	*)
		wait_until 30 "the $PHASE phase" fsrc has_line fsrc "$(phase_marker "$PHASE")" ||
			return
		kill -STOP "${PID_OF[fsrc]}"
		discarded || { kill -CONT "${PID_OF[fsrc]}"; return; }
		kill -CONT "${PID_OF[fsrc]}"
		source_gave_up || return
		pass "frozen source in $PHASE: $(tail -n 1 "$CT/fdest.log"); thawed, $SLINE; the guest runs here"
		;;
	esac
}

# A frozen destination. Before and during precopy the source gives up
# within its I/O timeout and the guest runs on here (resumed, if it was
# paused for the final round); the destination, thawed, finds the source
# gone and discards its VM. In postcopy the source reconnects until the
# destination is back (or, if its buffers held what was sent meanwhile,
# simply goes on), and the migration completes.
stop_dest() {
	PHASE=$1
	start_pair "$PHASE" || return
	case "$PHASE" in
	setup)
		# Frozen while listening: the kernel takes the connection,
		# nobody answers its TLS handshake.
		kill -STOP "${PID_OF[dest]}"
		go_source
		source_gave_up || { kill -CONT "${PID_OF[dest]}"; return; }
		kill -CONT "${PID_OF[dest]}"
		wait_exit dest 30 "the thawed ferry-dest to give up" || return
		[ $rc -eq 1 ] || { fail "ferry-dest exit $rc: $(tail -n 1 "$CT/fdest.log")"; return; }
		DLINE=$(one_line fdest) || return
		alive "${PID_OF[dst]}" && ! has_line dst '^HB ' ||
			{ fail "the incoming VM did not stay waiting"; return; }
		pass "frozen destination in setup: $SLINE; the guest runs here; thawed, $DLINE; the incoming VM waits on"
		;;
	postcopy)
		go_source
		wait_hb dst 1 || return
		freeze dest || return
		completed 16M || return
		pass "frozen destination in postcopy: the guest there waited, the migration completed ($(json recoveries "$CT/src.json") reconnections); $VERIFIED"
		;;
	*)
		go_source
		wait_until 30 "the $PHASE phase" fsrc has_line fsrc "$(phase_marker "$PHASE")" ||
			return
		kill -STOP "${PID_OF[dest]}"
		wait_exit fsrc 30 "ferry-source to give up" ||
			{ kill -CONT "${PID_OF[dest]}"; return; }
		local src_rc=$rc
		kill -CONT "${PID_OF[dest]}"
		[ $src_rc -eq 1 ] || { fail "ferry-source exit $src_rc: $(cat "$CT/fsrc.log")"; return; }
		SLINE=$(one_line fsrc) || return
		still_running src || return
		discarded || return
		pass "frozen destination in $PHASE: $SLINE; the guest runs here; ferry-dest, thawed: $(tail -n 1 "$CT/fdest.log")"
		;;
	esac
}

case_stop_src_setup() { stop_src setup; }
case_stop_src_round0() { stop_src round0; }
case_stop_src_round() { stop_src round; }
case_stop_src_switchover() { stop_src switchover; }
case_stop_src_postcopy() { stop_src postcopy; }
case_stop_dest_setup() { stop_dest setup; }
case_stop_dest_round0() { stop_dest round0; }
case_stop_dest_round() { stop_dest round; }
case_stop_dest_switchover() { stop_dest switchover; }
case_stop_dest_postcopy() { stop_dest postcopy; }

# ---- a slow, lossy link between two network namespaces ----

NSA= NSB= LINK=
netns_cleanup() {
	[ -z "$NSA" ] || ip netns del "$NSA" 2>/dev/null
	[ -z "$NSB" ] || ip netns del "$NSB" 2>/dev/null
}
# shape NS DEV: delay and loss on DEV's egress; sets LINK to what it is
shape() {
	if ip netns exec "$1" tc qdisc add dev "$2" root netem delay 5ms 1ms \
		loss 1% rate 200mbit 2>/dev/null; then
		LINK="tc netem: 5 ms delay, 1 % loss, 200 Mbit/s each way"
		return
	fi
	ip netns exec "$1" tc qdisc add dev "$2" root tbf rate 200mbit \
		burst 64kb latency 20ms 2>/dev/null &&
		ip netns exec "$1" iptables -A OUTPUT -o "$2" -m statistic \
			--mode random --probability 0.01 -j DROP 2>/dev/null ||
		return 1
	LINK="no netem in this kernel: tbf 200 Mbit/s and iptables 1 % random drops each way"
}
case_lossy_link() {
	command -v ip >/dev/null && command -v tc >/dev/null ||
		{ skip "no ip/tc (install iproute2)"; return; }
	NSA=ferry-fa$$ NSB=ferry-fb$$
	trap 'case_end; netns_cleanup' EXIT
	if ! ip netns add "$NSA" 2>/dev/null || ! ip netns add "$NSB" 2>/dev/null; then
		skip "cannot create network namespaces here"
		return
	fi
	ip link add fva$$ type veth peer name fvb$$ &&
		ip link set fva$$ netns "$NSA" && ip link set fvb$$ netns "$NSB" &&
		ip -n "$NSA" addr add 10.77.0.1/24 dev fva$$ &&
		ip -n "$NSB" addr add 10.77.0.2/24 dev fvb$$ &&
		ip -n "$NSA" link set fva$$ up && ip -n "$NSB" link set fvb$$ up ||
		{ fail "cannot build the veth pair"; return; }
	shape "$NSA" fva$$ && shape "$NSB" fvb$$ ||
		{ skip "neither tc netem nor tbf with iptables drops here"; return; }
	start_vm src --ws 16M --rate 16 --heartbeat-ms 250 --heartbeats 40 || return
	start_vm dst --ws 16M --rate 16 --heartbeat-ms 250 --incoming || return
	wait_filled src || return
	ip netns exec "$NSB" "$DST" --vm "$CT/dst.sock" --listen 10.77.0.2:0 \
		$STLS --accept-timeout 30 >"$CT/fdest.log" 2>&1 &
	track dest $!
	wait_until 10 "ferry-dest to listen" dest \
		has_line fdest 'listening on port [0-9]' || return
	PORT=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$CT/fdest.log")
	ip netns exec "$NSA" "$SRC" --vm "$CT/src.sock" -q \
		--dest "10.77.0.2:$PORT" $CTLS --peer-name localhost --mode postcopy \
		--json "$CT/src.json" >"$CT/fsrc.log" 2>&1 &
	track fsrc $!
	completed 16M || return
	pass "postcopy over a lossy link ($LINK): $VERIFIED, $(json faults "$CT/src.json") faults"
}

# ---- the statistics file on a full filesystem ----

case_json_full() {
	local f
	mkdir -p "$CT/full"
	mount -t tmpfs -o size=8k,nr_inodes=16 ferry-full "$CT/full" 2>/dev/null ||
		{ skip "cannot mount a tmpfs here"; return; }
	trap 'case_end; umount "$CT/full"' EXIT
	dd if=/dev/zero of="$CT/full/fill" bs=4k count=16 2>/dev/null
	start_vm src --ws 16M --rate 16 --heartbeat-ms 250 --heartbeats 20 || return
	start_vm dst --ws 16M --rate 16 --heartbeat-ms 250 --incoming || return
	wait_filled src || return
	"$DST" --vm "$CT/dst.sock" --listen 127.0.0.1:0 $STLS \
		--accept-timeout 30 --json "$CT/full/dest.json" \
		>"$CT/fdest.log" 2>&1 &
	track dest $!
	wait_until 10 "ferry-dest to listen" dest \
		has_line fdest 'listening on port [0-9]' || return
	PORT=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$CT/fdest.log")
	start_src fsrc --dest "127.0.0.1:$PORT" $CTLS --json "$CT/full/src.json"
	completed 16M || return
	for f in fsrc fdest; do
		grep -v -e 'listening on port' -e '^ferry-dest: TLSv1' \
			-e 'migration completed in' "$CT/$f.log" >"$CT/$f.rest"
		[ "$(wc -l <"$CT/$f.rest")" -eq 1 ] &&
			grep -q 'statistics were not written to .*No space left' "$CT/$f.rest" ||
			{ fail "$f: want one line saying the statistics were not written: $(tr '\n' '|' <"$CT/$f.rest")"; return; }
	done
	[ "$(ls "$CT/full")" = fill ] ||
		{ fail "left on the full filesystem: $(ls "$CT/full" | tr '\n' ' ')"; return; }
	pass "statistics on a full tmpfs: migrated, $VERIFIED; each agent: $(cat "$CT/fsrc.rest"), no partial file"
}

# ---- memory cgroups ----

# The memory controller: cgroup v2 where it is enabled for children of
# the root, else v1. CGV is 2 or 1, CGROOT the directory children go in.
CGV= CGROOT= CGS=()
cg_init() {
	local p
	if grep -qw memory /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
		CGV=2 CGROOT=/sys/fs/cgroup
	elif p=$(sed -n 's/^[0-9]*:memory:\(.*\)/\1/p' /proc/self/cgroup) &&
		[ -n "$p" ] && [ -w "/sys/fs/cgroup/memory$p" ]; then
		CGV=1 CGROOT=/sys/fs/cgroup/memory$p
	else
		return 1
	fi
}
# cg_make NAME: a child cgroup; prints its directory
cg_make() {
	local d=$CGROOT/ferry-$1-$$
	mkdir "$d" 2>/dev/null || return 1
	echo "$d"
}
cg_cleanup() {
	local d p
	for d in "${CGS[@]}"; do
		for p in $(cat "$d/cgroup.procs" 2>/dev/null); do
			kill -9 "$p" 2>/dev/null
		done
		for _ in $(seq 50); do
			rmdir "$d" 2>/dev/null && break
			sleep 0.1
		done
	done
}
cg_max() { # cg_max DIR BYTES
	if [ "$CGV" = 2 ]; then echo "$2" >"$1/memory.max"
	else echo "$2" >"$1/memory.limit_in_bytes"; fi
}
cg_current() { # cg_current DIR: bytes charged
	if [ "$CGV" = 2 ]; then cat "$1/memory.current"
	else cat "$1/memory.usage_in_bytes"; fi
}
cg_ooms() { # cg_ooms DIR: OOM kills in DIR
	if [ "$CGV" = 2 ]; then sed -n 's/^oom_kill //p' "$1/memory.events"
	else sed -n 's/^oom_kill //p' "$1/memory.oom_control"; fi
}
# cg_start DIR NAME LOG CMD...: CMD in cgroup DIR, as this case's process
# NAME, output to LOG
cg_start() {
	local d=$1 name=$2 log=$3
	shift 3
	(echo $BASHPID >"$d/cgroup.procs" && exec "$@") >"$log" 2>&1 &
	track "$name" $!
}
# cg_setup: the controller and the cleanup trap, or a skip
cg_setup() {
	cg_init || { skip "no writable memory cgroup (v2 or v1) here"; return 1; }
	trap 'case_end; cg_cleanup' EXIT
}
# cg_new NAME: cg_make, remembered for the cleanup; sets CGD
cg_new() {
	CGD=$(cg_make "$1") || { fail "cannot create a memory cgroup in $CGROOT"; return; }
	CGS+=("$CGD")
}

# cg_dest CGDIR ARGS: start_dest, inside memory cgroup CGDIR
cg_dest() {
	local d=$1
	shift
	cg_start "$d" dest "$CT/fdest.log" "$DST" --vm "$CT/dst.sock" \
		--listen 127.0.0.1:0 $STLS --accept-timeout 30 "$@"
	wait_until 10 "ferry-dest to listen" dest \
		has_line fdest 'listening on port [0-9]' || return
	PORT=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$CT/fdest.log")
}

# ferry-dest alone in a cgroup whose limit its own memory exceeds once
# the migration starts: the kernel kills it; ferry-source says so in one
# line and the guest runs on here.
case_dest_memcg_exceeded() {
	local lim used
	cg_setup || return
	cg_new dest || return
	start_vm src --ws 64M --rate 16 --heartbeat-ms 250 || return
	start_vm dst --ws 64M --rate 16 --heartbeat-ms 250 --incoming || return
	wait_filled src || return
	cg_dest "$CGD" --timeout $IO_MS || return
	# The limit: what it holds while listening, and 3 MiB; its stream
	# buffers alone are more.
	used=$(cg_current "$CGD")
	lim=$((used + (3 << 20)))
	cg_max "$CGD" $lim || { fail "cannot set the cgroup limit"; return; }
	start_src fsrc --dest "127.0.0.1:$PORT" $CTLS --timeout $IO_MS
	wait_exit dest 30 "ferry-dest to die or fail" || return
	local dest_rc=$rc
	[ $dest_rc -ne 0 ] || { fail "ferry-dest succeeded within $lim bytes"; return; }
	source_gave_up || return
	pass "ferry-dest over its memory limit ($lim bytes, $(cg_ooms "$CGD") OOM kill(s), exit $dest_rc): $SLINE; the guest runs here"
}

# Where the destination's guest RAM is charged: the VMM in one cgroup,
# ferry-dest in another; after a hybrid migration (precopy pages, then
# postcopy ones) the VMM's cgroup holds the guest's memory and the
# agent's only its own.
case_memcg_charge() {
	local vmm agent ws=64M v0 a0 v1 a1 want
	cg_setup || return
	cg_new vmm || return
	vmm=$CGD
	cg_new agent || return
	agent=$CGD
	start_vm src --ws $ws --rate 16 --heartbeat-ms 250 --heartbeats 40 || return
	cg_start "$vmm" dst "$CT/dst.log" "$VM" $ACCEL -s "$CT/dst.sock" \
		--ws $ws --rate 16 --heartbeat-ms 250 --incoming
	wait_until 10 "the VM link socket of dst" dst test -S "$CT/dst.sock" || return
	wait_filled src || return
	v0=$(cg_current "$vmm") a0=$(cg_current "$agent")
	cg_dest "$agent" || return
	start_src fsrc --dest "127.0.0.1:$PORT" $CTLS --mode hybrid \
		--json "$CT/src.json"
	agents_done || return
	# While the guest runs there (its RAM is freed when it exits).
	v1=$(cg_current "$vmm") a1=$(cg_current "$agent")
	guest_done $ws || return
	want=$(( $(pages $ws) * 4096 * 3 / 4 ))
	echo "vmm $v0 -> $v1, agent $a0 -> $a1" >"$CT/charges"
	[ $((v1 - v0)) -ge $want ] ||
		{ fail "the VMM's cgroup grew by $(( (v1 - v0) >> 20 )) MiB for a $ws guest; the agent's by $(( (a1 - a0) >> 20 )) MiB"; return; }
	[ $((a1 - a0)) -lt $((want / 8)) ] ||
		{ fail "the agent's cgroup holds $(( (a1 - a0) >> 20 )) MiB of the guest"; return; }
	pass "guest RAM charged to the VMM: its cgroup +$(( (v1 - v0) >> 20 )) MiB, ferry-dest's +$(( (a1 - a0) >> 10 )) KiB (cgroup v$CGV, hybrid, $VERIFIED)"
}

# A postcopy inside one cgroup (the incoming VMM, ferry-dest and a memory
# hog) whose limit leaves the hog room to become the largest process:
# when the cgroup runs out, the OOM killer takes the hog, not the agent
# (oom_score_adj -1000 from the switchover to COMPLETE) nor the guest.
case_postcopy_memcg_hog() {
	local hog ws=64M lim adj
	cg_setup || return
	cg_new pc || return
	start_vm src --ws $ws --rate 16 --heartbeat-ms 250 --heartbeats 40 || return
	cg_start "$CGD" dst "$CT/dst.log" "$VM" $ACCEL -s "$CT/dst.sock" \
		--ws $ws --rate 16 --heartbeat-ms 250 --incoming
	wait_until 10 "the VM link socket of dst" dst test -S "$CT/dst.sock" || return
	wait_filled src || return
	# Guest RAM, the agents' memory, and twice the guest for the hog.
	lim=$(( ($(pages $ws) * 4096) * 3 + (64 << 20) ))
	cg_max "$CGD" $lim || { fail "cannot set the cgroup limit"; return; }
	cg_dest "$CGD" || return
	start_src fsrc --dest "127.0.0.1:$PORT" $CTLS --mode postcopy \
		--bandwidth 8 --json "$CT/src.json"
	wait_hb dst 1 || return # postcopy: the guest runs here
	cg_start "$CGD" hog "$CT/hog.log" python3 -c '
import time
b = []
while True:
    b.append(bytearray(1 << 20))
    b[-1][::4096] = b"x" * (1 << 8)
'
	# The agent's exemption while the guest depends on it (-1000, or
	# 0 where the host does not let it lower its score).
	adj=$(cat "/proc/${PID_OF[dest]}/oom_score_adj" 2>/dev/null)
	wait_exit hog 60 "the hog to be killed" || return
	hog=$rc
	[ $hog -eq 137 ] || { fail "the hog ended with $hog, not SIGKILL"; return; }
	completed $ws || return
	# Whether the agents could exempt themselves (CAP_SYS_RESOURCE) is
	# the host's; they say when they cannot.
	local prot="ferry-dest's oom_score_adj was $adj: exempt"
	[ "$adj" = -1000 ] ||
		prot="ferry-dest's oom_score_adj was '$adj': this host does not let it exempt itself, the hog was the largest"
	pass "postcopy in a cgroup of $((lim >> 20)) MiB with a memory hog: the hog was killed ($(cg_ooms "$CGD") OOM kill(s)), the agents and the guest were not ($prot); $VERIFIED"
}

# ---- docs/recovery.md ----

# Every row of recovery.md's fault matrix names a case (script:case) that
# exists, and every case of this script has a row.
case_recovery_table() {
	local rows row script c n=0 missing=
	rows=$(sed -n 's/^| `\(tests\/[a-z]*\.sh\):\([a-z0-9_]*\)` |.*/\1:\2/p' \
		"$DOCS/recovery.md")
	[ -n "$rows" ] || { fail "no fault matrix in $DOCS/recovery.md"; return; }
	for row in $rows; do
		script=${row%%:*} c=${row#*:}
		n=$((n + 1))
		case "$script" in
		tests/faults.sh) declare -F "case_$c" >/dev/null ;;
		tests/migrate.sh) grep -q "^case_$c()" "$DOCS/../tests/migrate.sh" ;;
		tests/hostile.sh) grep -q "^$c|" "$DOCS/../tests/hostile.sh" ;;
		tests/cancel.sh) grep -q "case_$c()\|\b$c\b" "$DOCS/../tests/cancel.sh" ;;
		*) false ;;
		esac || missing="$missing $row"
	done
	[ -z "$missing" ] || { fail "recovery.md names cases that do not exist:$missing"; return; }
	for c in $ALL_CASES; do
		[ $c = recovery_table ] && continue
		echo "$rows" | grep -qx "tests/faults.sh:$c" || missing="$missing $c"
	done
	[ -z "$missing" ] || { fail "cases with no row in recovery.md:$missing"; return; }
	pass "recovery.md's fault matrix: $n rows, each a case that exists; every case here has its row"
}

case_bound() { echo 120; }

harness_main

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A hostile authenticated source against a live ferry-dest attached to a
# real incoming ferry-vm: tests/hostile-peer completes the mutual-TLS
# handshake with a valid client certificate and then sends one scenario
# of what a broken or malicious source would (see the table below). Each
# case passes when
#   - ferry-dest exits 1 (not 0, not a signal) within its I/O timeout plus
#     a margin, its last line naming the violation (the regex of the
#     table) and no other line but the log line of the module that found
#     it,
#   - the incoming VM exits when ferry-dest discards it, its guest never
#     having printed a heartbeat (it was never resumed).
# The scenarios that need a real guest's state and RAM take them from a
# snapshot of a donor VM of the same layout, made once per run; "valid",
# a correct precopy from it, proves the peer: ferry-dest exits 0 and the
# guest runs there without a memory error. "flood" also checks that
# ferry-dest's RSS stays bounded while valid-looking rounds pour in.
# A third column marks a known defect: the case is reported "# TODO".
#
# The d_* cases turn it around: hostile-peer --listen is a hostile
# destination and a live ferry-source migrates a running ferry-vm to it
# (precopy, or postcopy for the pc_* ones). Each passes when
#   - ferry-source exits 1 within its I/O timeout plus a margin, its last
#     line naming the violation and no other line but the log line of
#     the module that found it (and, where the peer falls silent after a
#     postcopy switchover, the line saying it tries to reconnect),
#   - the source VM, asked over its VM link (tests/vmlink-client.py),
#     is still running and goes on printing heartbeats (precopy), or is
#     paused with all of its memory (postcopy: the running copy may be
#     at the destination).
# OK cases must end in exit 0 and a released source VM.
#
# The vmm_* cases break the VM link instead: tests/hostile-vmm.py is a VMM
# serving real RAM (a memfd) and a real userfaultfd that sends a malformed
# HELLO (overlapping, unaligned or overflowing regions, a page size that
# is none, fds more than the table, fds of the wrong kind, a "uffd" that
# is a pipe) or answers one request wrongly (out of order, a bad status,
# oversized, cut off mid-reply); the agent (ferry-source towards
# hostile-peer --listen accept, or ferry-dest from hostile-peer --connect)
# must exit with one line naming it, and leave nothing registered on the
# VMM's RAM (the VMM keeps a copy of its userfaultfd and reads its own
# smaps when the agent is gone) and the VMM in the state of the table.
#
# Run from the build directory (make check sets FERRY_BUILD). Speaks TAP,
# one line per case with its duration as a diagnostic.
# FERRY_CASES="pages_index_out flood" runs only those; FERRY_KEEP=1 keeps
# the logs; FERRY_HOSTILE_BUILD=DIR takes the binaries from DIR instead,
# for example under the sanitizers (a report must not look like exit 1):
#   ASAN_OPTIONS=exitcode=86:detect_leaks=1 \
#   UBSAN_OPTIONS=halt_on_error=1:exitcode=87 \
#   FERRY_HOSTILE_BUILD=$PWD/build-asan build/../tests/hostile.sh
set -u
B=${FERRY_HOSTILE_BUILD:-${FERRY_BUILD:-$(pwd)}}
VM=$B/tools/ferry-vm/ferry-vm
DST=$B/tools/ferry-dest
SRC=$B/tools/ferry-source
PEER=$B/tests/hostile-peer
VMLINK=$(cd "$(dirname "$0")" && pwd)/vmlink-client.py
HVMM=$(cd "$(dirname "$0")" && pwd)/hostile-vmm.py
for f in "$VM" "$DST" "$SRC" "$PEER" "$B/tools/ferry-cert"; do
	[ -x "$f" ] || { echo "Bail out! missing $f (build first)"; exit 99; }
done

IO_MS=2000 # ferry-dest --io-timeout, in ms
PAGES=4096 # ferry-vm -m 16M: one region of 4096 4 KiB pages

# scenario|what ferry-dest's last line must match (grep -E; OK: the
# migration must succeed) [ @@ a known defect: reported as TODO]
CASES_TABLE='
valid|OK
no_hello|no valid HELLO \(message 0x4d30\)
hello_truncated|no valid HELLO.*truncated
hello_bad_magic|no valid HELLO.*bad magic
hello_regions_over|no valid HELLO.*region count out of range
hello_total_mismatch|no valid HELLO.*page total does not match
hello_layout_mismatch|RAM layout .* does not match the incoming
hello_nbulk_mismatch|HELLO announces 2 bulk streams, its session has 1
hello_second|unexpected control message 0x4d01
ksm_unagreed|KSM pages that were not agreed
heat_chunks|malformed HEAT \(heat: chunk count differs from the region\)
pages_truncated|malformed message: pages: message length does not match the count
pages_short_header|malformed message: pages: shorter than its header
pages_count_zero|malformed message: pages: page count out of range
pages_count_over|malformed message: pages: page count out of range
pages_count_max|malformed message: pages: page index outside the region
pages_index_out|malformed message: pages: page index outside the region
pages_index_huge|malformed message: pages: page index outside the region
pages_region_out|malformed message: pages: no such region
zero_truncated|malformed message: zero: message truncated
zero_range_out|malformed message: zero: bitmap outside the region
zero_wrap|malformed message: zero: bitmap outside the region
zero_oversized|malformed message: message 0x4d11: 1048576 bytes, longer than any valid one
dup_truncated|malformed message: dup: message length does not match the count
dup_count_over|malformed message: message 0x4d12: 24608 bytes, longer than any valid one
dup_count_max|malformed message: dup: page index outside the region
dup_index_out|malformed message: dup: page index outside the region
dup_never_sent|malformed message: dup: page 1 of region 0 refers to page 2, never sent
round_truncated|malformed message: round: message truncated
round_bad_flags|malformed message: round: unknown flags
req_on_bulk|malformed message: unexpected message 0x4d40 on a bulk stream
unknown_type|malformed message: unexpected message 0x1234 on a bulk stream
state_empty|a VM state of 0 bytes
state_over_max|a VM state of 67108865 bytes
state_before_round|ended precopy with 4096 pages never sent \(page 0 the first\)
postcopy_in_precopy|receiving guest pages: .*(timed out|timeout)
discard_in_precopy|unexpected control message 0x4d13
done_in_precopy|unexpected control message 0x4d32
pages_after_final|OK
keepalive_body|unexpected control message 0x4d37
error_malformed|the source gave up with a malformed ERROR \(error: 
flood|(went away before switchover|receiving guest pages): .*(closed|reset)
stall_bulk|receiving guest pages: .*(timed out|timeout)
stall_control|(timed out|timeout)
silent|waiting for the .*HELLO.*(timed out|timeout)
silent_after_welcome|receiving guest pages: .*(timed out|timeout)
state_no_pages|ended precopy with 4096 pages never sent \(page 0 the first\)
state_page_missing|ended precopy with 1 pages never sent \(page 2048 the first\)
dup_never_sent_state|malformed message: dup: .* never sent
'
# d_SCENARIO|what ferry-source's last line must match (OK: success). The
# pc_ ones run in postcopy mode.
DEST_TABLE='
d_welcome_junk|the destination sent no valid WELCOME \(message type 0x1234\)
d_welcome_truncated|no valid WELCOME \(welcome: message truncated
d_welcome_features|no valid WELCOME \(welcome: features that were not offered\)
d_welcome_oversized|handshake with the destination: message of 1048576 bytes exceeds
d_welcome_cut|handshake with the destination: peer closed the stream mid-message
d_error_malformed|no valid WELCOME: a malformed ERROR
d_stall_hello|handshake with the destination: .*(timed out|timeout)
d_stall_welcome_frame|handshake with the destination: .*(timed out|timeout)
d_stall_bulk|sending .*(timed out|timeout)
d_resumed_in_precopy|the destination sent control message 0x4d31 mid-round
d_complete_in_precopy|the destination sent control message 0x4d33 mid-round
d_welcome_second|the destination sent control message 0x4d02 mid-round
d_req_on_control|the destination sent control message 0x4d40 mid-round
d_flood|waiting for the guest to resume there: message 0x4d37 instead of 0x4d31
d_stall_switchover|waiting for the guest to resume there: .*(timed out|timeout)
d_resumed_malformed|the destination sent a malformed RESUMED \(resumed: message truncated
d_pc_req_index_out|malformed page request \(page request: no such page\): the VM stays paused here
d_pc_req_index_huge|malformed page request \(page request: no such page\): the VM stays paused here
d_pc_req_region_out|malformed page request \(page request: no such page\): the VM stays paused here
d_pc_req_truncated|malformed page request \(page request: length does not match the count\): the VM stays paused here
d_pc_req_count_over|a page request of 1048 bytes, longer than any valid one: the VM stays paused here
d_pc_junk_urgent|the destination sent message 0x1234 on the urgent stream: the VM stays paused here
d_pc_complete_malformed|malformed COMPLETE \(complete: message truncated at 1 bytes\): the VM stays paused here
d_pc_stall|could not reconnect within 2 s .*: the VM stays paused here
d_pc_req_after_complete|OK
d_ack_never|waiting for the destination to place round 0 of a bulk stream: .*(timed out|timeout)
d_ack_wrong|the destination answered the end of round 0 \([0-9]+ pages\) on a bulk stream with round 7
d_ack_junk|the destination answered the end of round 0 \([0-9]+ pages\) on a bulk stream with message 0x4d10
'
# vmm_SCENARIO|agent (src, srcpc: in postcopy mode, dst)|what its last
# line must match (OK: success)|the VMM's state after (running, paused,
# stopped)
VMM_TABLE='
vmm_valid|src|OK|stopped
vmm_hello_overlap|src|no valid HELLO: regions 0 and 1 overlap|running
vmm_hello_unaligned_gpa|src|no valid HELLO: region 0: address, size or offset not a non-zero multiple of its page size|running
vmm_hello_unaligned_size|src|no valid HELLO: region 0: address, size or offset not a non-zero multiple|running
vmm_hello_size_overflow|src|no valid HELLO: region 0: 9223372036854775808 bytes from 0x8000000000000000 overflow|running
vmm_hello_host_overflow|src|no valid HELLO: region 0: 16777216 bytes from 0xfffffffffffff000 overflow|running
vmm_hello_zero_size|src|no valid HELLO: region 0: address, size or offset not a non-zero multiple|running
vmm_hello_bad_page_size|src|no valid HELLO: region 0: page size 8192 is not 4 KiB, 2 MiB or 1 GiB|running
vmm_hello_psz_backing|src|no valid HELLO: region 0: page size 2097152 does not match its backing \(4096\)|running
vmm_hello_bad_backing|src|no valid HELLO: region 0: unknown backing 77|running
vmm_hello_shmem_no_fd|src|RAM region 0 \(shmem\) came without its fd|running
vmm_hello_anon_with_fd|src|RAM region 0 is anonymous memory \(anon\) but came with an fd|running
vmm_hello_no_regions|src|the VM reports 0 RAM regions|running
vmm_hello_too_many_regions|src|no valid HELLO: 9 regions, more than 8|running
vmm_hello_count_mismatch|src|no valid HELLO: a HELLO of 72 bytes for 2 regions|running
vmm_hello_truncated|src|no valid HELLO: a HELLO of 67 bytes for 1 regions|running
vmm_hello_bad_version|src|no valid HELLO: VM link version 7, not 1|running
vmm_hello_not_first|src|no valid HELLO: message type 0x8007 instead of HELLO|running
vmm_hello_more_fds|src|no valid HELLO: 5 fds passed, the table refers to 2|running
vmm_hello_fd_index_out|src|no valid HELLO: region 0: fd index 5, but 2 fds came with it|running
vmm_hello_fd_missing|src|no valid HELLO: region 0: fd index 1, but 1 fds came with it|running
vmm_hello_fd_pipe|src|RAM region 0: its fd is a pipe, not a memory file|running
vmm_hello_fd_short|src|RAM region 0: its file holds 4194304 bytes, the region needs 16777216 from offset 0|running
vmm_hello_fd_offset_past|src|RAM region 0: its file holds 16777216 bytes, the region needs 16777216 from offset 16777216|running
vmm_hello_uffd_pipe|src|the VM.s userfaultfd is not one: it is a pipe|running
vmm_hello_uffd_memfd|src|the VM.s userfaultfd is not one: it is /memfd:|running
vmm_out_of_order_pause|src|the VM did not pause: the VMM answered pause with message type 0x8007|paused
vmm_bad_status_pause|src|the VM did not pause: the VMM answered pause with status 5|running
vmm_pause_oversized|src|the VM did not pause: a pause message of 67108865 bytes, over the 67108864-byte limit|running
vmm_close_mid_save|src|the VM could not save its state: a save-state message cut short|paused
vmm_save_empty|src|the VM could not save its state: an empty state blob|running
vmm_commit_junk|src|the VM refused to commit the switchover: a message header with a bad magic|running
vmm_quit_mid_reply|src|OK|paused
vmm_pc_save_empty|srcpc|the VM could not save its state: an empty state blob$|running
vmm_pc_close_mid_save|srcpc|the VM could not save its state: a save-state message cut short \(Connection reset by peer\)$|paused
vmm_dest_hello_valid|dst|OK|running
vmm_dest_hello_overlap|dst|no valid HELLO: regions 0 and 1 overlap|running
vmm_dest_hello_fd_pipe|dst|RAM region 0: its fd is a pipe, not a memory file|stopped
vmm_dest_hello_uffd_pipe|dst|the VM.s userfaultfd is not one: it is a pipe|stopped
vmm_dest_hello_uffd_memfd|dst|the VM.s userfaultfd is not one: it is /memfd:|stopped
vmm_dest_load_refused|dst|the incoming VM refused the state: Invalid argument|stopped
vmm_dest_resume_out_of_order|dst|the incoming VM did not resume: the VMM answered resume with message type 0x8005|stopped
'
ALL_CASES=$(echo "$CASES_TABLE$DEST_TABLE$VMM_TABLE" | sed -n 's/^\([a-z_]*\)|.*/\1/p')
CASES=$(echo ${FERRY_CASES:-$ALL_CASES})

T=$(mktemp -d /tmp/ferry-hostile.XXXXXX)
"$B/tools/ferry-cert" demo "$T/pki" >/dev/null ||
	{ echo "Bail out! ferry-cert demo failed"; rm -rf "$T"; exit 99; }
STLS="--ca $T/pki/ca.pem --cert $T/pki/server.pem --key $T/pki/server-key.pem"
CTLS="--ca $T/pki/ca.pem --cert $T/pki/client.pem --key $T/pki/client-key.pem"

# The donor: a guest that filled its memory, snapshotted (and paused).
mkdir -p "$T/donor"
"$VM" --accel none -s "$T/donor/vm.sock" --ws 4M -m 16M >"$T/donor/vm.log" 2>&1 &
DONOR=$!
end=$((SECONDS + 30))
until grep -q '^FILLED' "$T/donor/vm.log" 2>/dev/null || [ $SECONDS -ge $end ]; do
	sleep 0.1
done
timeout 30 "$VM" snapshot -s "$T/donor/vm.sock" "$T/donor/snap" \
	>"$T/donor/snapshot.log" 2>&1 || echo "# the donor snapshot failed: $(tail -n 1 "$T/donor/snapshot.log")"
kill -9 $DONOR 2>/dev/null
wait $DONOR 2>/dev/null

CT=    # this case's directory
PIDS=  # processes this case started
REASON=
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
fail() { [ -n "$REASON" ] || REASON=$*; return 1; }

# wait_pid PID SECONDS WHAT: waits for PID (a child) for at most SECONDS,
# sets rc; on expiry kills it and fails naming WHAT
wait_pid() {
	local end=$((SECONDS + $2))
	while alive "$1"; do
		if [ $SECONDS -ge $end ]; then
			kill -9 "$1" 2>/dev/null
			wait "$1" 2>/dev/null
			rc=137
			fail "timed out after $2 s waiting for $3"
			return
		fi
		sleep 0.1
	done
	wait "$1"
	rc=$?
}

# wait_for SECONDS WHAT CMD...: until CMD succeeds
wait_for() {
	local end=$((SECONDS + $1)) what=$2
	shift 2
	until "$@"; do
		[ $SECONDS -lt $end ] || { fail "timed out waiting for $what"; return; }
		sleep 0.1
	done
}

vm_up() {
	alive "$1" || fail "the incoming VM exited: $(tail -n 1 "$CT/vm.log")" ||
		return 0
	test -S "$CT/dst.sock"
}
# extra_lines LAST [LOG]: the agent's lines besides its setup lines, LAST,
# and the log line of the module that found the violation (its text is in
# LAST); there must be none
extra_lines() {
	local l
	grep -v -e 'listening on port' -e '^ferry-dest: TLSv1' \
		-e '^source: postcopy connection lost .* reconnecting for' \
		-e '^source: resuming the source VM failed: ' \
		"$CT/${2:-fdest.log}" |
		sed '$d' | while read -r l; do
			case "$1" in
			*"${l#*: }"*) ;;
			*) echo "$l" ;;
			esac
		done
}

hbs() { [ "$(grep -c '^HB ' "$CT/vm.log")" -ge "$1" ]; }
rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$1/status" 2>/dev/null; }

# flood_rss PID: ferry-dest's RSS 1 s into the flood and 4 s into it
# differ by less than 16 MiB (it holds nothing per round)
flood_rss() {
	local a b
	sleep 1
	a=$(rss_kb "$1")
	sleep 3
	b=$(rss_kb "$1")
	[ -n "$a" ] && [ -n "$b" ] || { fail "ferry-dest gone during the flood"; return; }
	echo "$a $b" >"$CT/rss"
	[ $((b - a)) -lt 16384 ] ||
		fail "ferry-dest grew from $a to $b KiB during the flood"
}

listening() { grep -q 'listening on port [0-9]' "$CT/fdest.log" 2>/dev/null; }

# one_case SCENARIO REGEX: the case body; sets REASON on failure
one_case() {
	local sc=$1 want=$2 vm dest peer port last extra
	"$VM" --accel none -s "$CT/dst.sock" --ws 4M -m 16M --incoming \
		>"$CT/vm.log" 2>&1 &
	vm=$!
	PIDS="$PIDS $vm"
	wait_for 10 "the incoming VM's socket" vm_up $vm || return
	"$DST" --vm "$CT/dst.sock" --listen 127.0.0.1:0 $STLS \
		--io-timeout ${IO_MS}ms --accept-timeout 20 >"$CT/fdest.log" 2>&1 &
	dest=$!
	PIDS="$PIDS $dest"
	wait_for 10 "ferry-dest to listen" listening || return
	port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$CT/fdest.log")
	"$PEER" --connect "127.0.0.1:$port" $CTLS --pages $PAGES \
		--timeout 30000 --flood-s 6 --snapshot "$T/donor/snap" "$sc" \
		>"$CT/peer.log" 2>&1 &
	peer=$!
	PIDS="$PIDS $peer"
	[ "$sc" != flood ] || flood_rss $dest || return
	# Every wait ferry-dest makes on this peer ends within its I/O
	# timeout; the flood ends by itself after 6 s.
	wait_pid $dest $((IO_MS / 1000 + 12)) "ferry-dest to exit" || return
	last=$(tail -n 1 "$CT/fdest.log")
	if [ $rc -ge 128 ]; then
		fail "ferry-dest died of signal $((rc - 128)): $last"
		return
	fi
	if [ "$want" = OK ]; then
		[ $rc -eq 0 ] || { fail "ferry-dest exit $rc: $last"; return; }
		wait_for 20 "two heartbeats of the migrated guest" hbs 2 || return
		! grep -q '^ERR' "$CT/vm.log" ||
			{ fail "the guest found a bad page: $(grep -m 1 '^ERR' "$CT/vm.log")"; return; }
		LAST="migrated, the guest runs: $(grep '^HB ' "$CT/vm.log" | tail -n 1)"
		return
	fi
	[ $rc -eq 1 ] || { fail "ferry-dest exit $rc (want 1): $last"; return; }
	echo "$last" | grep -Eq -- "$want" ||
		{ fail "ferry-dest's last line does not match /$want/: $last"; return; }
	extra=$(extra_lines "$last")
	[ -z "$extra" ] || { fail "ferry-dest said more than one line: $extra"; return; }
	wait_pid $vm 10 "the discarded incoming VM to exit" || return
	if grep -q '^HB ' "$CT/vm.log"; then
		fail "the incoming guest ran: $(grep -m 1 '^HB ' "$CT/vm.log")"
		return
	fi
	wait_pid $peer 10 "hostile-peer to exit" || return
	[ $rc -eq 0 ] || { fail "hostile-peer exit $rc: $(tail -n 1 "$CT/peer.log")"; return; }
	LAST=$last
}

# verdict WHO LOG WANT: after wait_pid, the agent WHO (its output in LOG)
# ended as WANT says: OK, exit 0; else exit 1, its last line matching the
# regex WANT and no other line but those extra_lines allows; sets last
verdict() {
	local who=$1 log=$2 want=$3 extra
	last=$(tail -n 1 "$CT/$log")
	[ $rc -lt 128 ] || { fail "$who died of signal $((rc - 128)): $last"; return; }
	if [ "$want" = OK ]; then
		[ $rc -eq 0 ] || fail "$who exit $rc: $last"
		return
	fi
	[ $rc -eq 1 ] || { fail "$who exit $rc (want 1): $last"; return; }
	echo "$last" | grep -Eq -- "$want" ||
		{ fail "$who's last line does not match /$want/: $last"; return; }
	extra=$(extra_lines "$last" "$log")
	[ -z "$extra" ] || fail "$who said more than one line: $extra"
}

# peer_listen SCENARIO: hostile-peer --listen SCENARIO, a destination;
# sets peer and port once it listens
peer_listen() {
	"$PEER" --listen 127.0.0.1:0 $STLS --timeout 30000 --flood-s 4 "$1" \
		>"$CT/peer.log" 2>&1 &
	peer=$!
	PIDS="$PIDS $peer"
	wait_for 10 "hostile-peer to listen" \
		grep -qs 'listening on port [0-9]' "$CT/peer.log" || return
	port=$(sed -n 's/^listening on port \([0-9]*\).*/\1/p' "$CT/peer.log")
}

# vm_status: the source VM's run state, asked over its VM link
vm_status() {
	timeout 10 python3 "$VMLINK" "$CT/src.sock" status 2>&1 |
		sed -n 's/^status 0 //p'
}

# one_dest_case SCENARIO REGEX: hostile-peer --listen SCENARIO against a
# live ferry-source; sets REASON on failure
one_dest_case() {
	local sc=${1#d_} want=$2 vm peer src port last mode=precopy n st
	case "$sc" in pc_*) mode=postcopy ;; esac
	"$VM" --accel none -s "$CT/src.sock" --ws 24M -m 32M --rate 8 \
		--heartbeat-ms 200 >"$CT/vm.log" 2>&1 &
	vm=$!
	PIDS="$PIDS $vm"
	wait_for 30 "the source guest to fill its memory" \
		grep -qs '^FILLED' "$CT/vm.log" || return
	peer_listen "$sc" || return
	"$SRC" --vm "$CT/src.sock" --dest "127.0.0.1:$port" $CTLS -q -n 2 \
		--mode $mode --timeout $IO_MS --recover-timeout 2 \
		>"$CT/fsrc.log" 2>&1 &
	src=$!
	PIDS="$PIDS $src"
	# Every wait on this peer ends within the I/O timeout (twice, in a
	# postcopy that tries to reconnect); the flood ends after 4 s.
	wait_pid $src $((2 * IO_MS / 1000 + 12)) "ferry-source to exit" || return
	verdict ferry-source fsrc.log "$want" || return
	if [ "$want" = OK ]; then
		wait_pid $vm 10 "the released source VM to exit" || return
		[ $rc -eq 0 ] || { fail "the released source VM exited $rc"; return; }
		LAST="migrated, the source VM released"
		return
	fi
	st=$(vm_status)
	if [ $mode = postcopy ]; then
		[ "$st" = paused ] ||
			{ fail "the source VM is '$st', not paused with its memory"; return; }
	else
		[ "$st" = running ] || { fail "the source VM is '$st', not running"; return; }
		n=$(grep -c '^HB ' "$CT/vm.log")
		wait_for 10 "two more heartbeats of the source guest" hbs $((n + 2)) ||
			return
		! grep -q '^ERR' "$CT/vm.log" ||
			{ fail "the source guest found a bad page: $(grep -m 1 '^ERR' "$CT/vm.log")"; return; }
	fi
	wait_pid $peer 10 "hostile-peer to exit" || return
	[ $rc -eq 0 ] || { fail "hostile-peer exit $rc: $(tail -n 1 "$CT/peer.log")"; return; }
	LAST="$last (source VM $st)"
}

# one_vmm_case SCENARIO AGENT REGEX STATE: tests/hostile-vmm.py SCENARIO
# serving AGENT; sets REASON on failure
one_vmm_case() {
	local sc=${1#vmm_} agent=$2 want=$3 state=$4 vmm peer a port last gone
	python3 "$HVMM" "$CT/vm.sock" "$sc" >"$CT/vmm.log" 2>&1 &
	vmm=$!
	PIDS="$PIDS $vmm"
	wait_for 10 "hostile-vmm to listen" grep -qs '^vmm: listening' "$CT/vmm.log" ||
		return
	if [ $agent != dst ]; then
		peer_listen accept || return
		"$SRC" --vm "$CT/vm.sock" --dest "127.0.0.1:$port" $CTLS -q \
			--mode $([ $agent = src ] && echo precopy || echo postcopy) \
			--timeout $IO_MS >"$CT/agent.log" 2>&1 &
		a=$!
	else
		"$DST" --vm "$CT/vm.sock" --listen 127.0.0.1:0 $STLS \
			--timeout $IO_MS --accept-timeout 20 >"$CT/agent.log" 2>&1 &
		a=$!
		PIDS="$PIDS $a"
		wait_for 10 "ferry-dest to listen" \
			grep -qs 'listening on port [0-9]' "$CT/agent.log" || return
		port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$CT/agent.log")
		"$PEER" --connect "127.0.0.1:$port" $CTLS --pages $PAGES \
			--timeout 30000 --snapshot "$T/donor/snap" valid \
			>"$CT/peer.log" 2>&1 &
		peer=$!
		PIDS="$PIDS $peer"
	fi
	PIDS="$PIDS $a"
	wait_pid $a $((IO_MS / 1000 + 12)) "the agent to exit" || return
	verdict "the agent" agent.log "$want" || return
	LAST=$last
	[ "$want" != OK ] || LAST="the agent migrated the VM"
	wait_pid $vmm 40 "hostile-vmm to see the agent gone" || return
	[ $rc -eq 0 ] || { fail "hostile-vmm exit $rc: $(tail -n 1 "$CT/vmm.log")"; return; }
	gone=$(grep '^vmm: agent gone' "$CT/vmm.log")
	case "$gone" in
	*"registered: none; state: $state") ;;
	*) fail "the agent left: ${gone#vmm: } (want nothing registered, state $state)"; return ;;
	esac
	LAST="$LAST (VMM: ${gone#vmm: agent gone after })"
}

echo "1..$(echo $CASES | wc -w)"
n=0
failed=0
for c in $CASES; do
	n=$((n + 1))
	row=$(echo "$CASES_TABLE$DEST_TABLE$VMM_TABLE" | sed -n "s/^$c|//p")
	want=${row%% @@ *} todo=
	[ "$row" = "$want" ] || todo=${row#* @@ }
	[ -n "$want" ] || { echo "not ok $n - $c: no such scenario"; failed=1; continue; }
	CT=$T/$c
	mkdir -p "$CT"
	PIDS= REASON= LAST=
	t0=$(date +%s.%N)
	case "$c" in
	d_*) one_dest_case "$c" "$want" ;;
	vmm_*)
		IFS='|' read -r agent want vstate <<<"$row"
		one_vmm_case "$c" "$agent" "$want" "$vstate"
		;;
	*) one_case "$c" "$want" ;;
	esac
	for p in $PIDS; do
		alive "$p" && kill -9 "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	if [ -z "$REASON" ]; then
		LAST=${LAST#ferry-dest: }
		LAST=${LAST#ferry-source: }
		LAST=${LAST#ferry-dest: }
		[ ! -e "$CT/rss" ] || LAST="$LAST (RSS $(sed 's/ / -> /' "$CT/rss") KiB)"
		echo "ok $n - $c: ${LAST//#/}${todo:+ # TODO $todo}"
	else
		[ -n "$todo" ] || failed=1
		echo "not ok $n - $c: ${REASON//#/}${todo:+ # TODO $todo}"
		for f in "$CT"/*.log; do
			echo "# --- ${f#"$T"/} (last lines)"
			tail -n 6 "$f" | sed 's/^/#   /'
		done
	fi
	echo "# $c: $dt s"
done
[ -n "${FERRY_KEEP:-}" ] && echo "# logs in $T" || rm -rf "$T"
exit 0

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
PEER=$B/tests/hostile-peer
for f in "$VM" "$DST" "$PEER" "$B/tools/ferry-cert"; do
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
flood|went away before switchover: .*(closed|reset)
stall_bulk|receiving guest pages: .*(timed out|timeout)
stall_control|(timed out|timeout)
silent|waiting for the .*HELLO.*(timed out|timeout)
silent_after_welcome|receiving guest pages: .*(timed out|timeout)
state_no_pages|ended precopy with 4096 pages never sent \(page 0 the first\)
state_page_missing|ended precopy with 1 pages never sent \(page 2048 the first\)
dup_never_sent_state|malformed message: dup: .* never sent
'
ALL_CASES=$(echo "$CASES_TABLE" | sed -n 's/^\([a-z_]*\)|.*/\1/p')
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
# extra_lines LAST: ferry-dest's lines besides its setup lines, LAST, and
# the log line of the module that found the violation (its text is in
# LAST); there must be none
extra_lines() {
	local l
	grep -v -e 'listening on port' -e '^ferry-dest: TLSv1' "$CT/fdest.log" |
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

echo "1..$(echo $CASES | wc -w)"
n=0
failed=0
for c in $CASES; do
	n=$((n + 1))
	row=$(echo "$CASES_TABLE" | sed -n "s/^$c|//p")
	want=${row%% @@ *} todo=
	[ "$row" = "$want" ] || todo=${row#* @@ }
	[ -n "$want" ] || { echo "not ok $n - $c: no such scenario"; failed=1; continue; }
	CT=$T/$c
	mkdir -p "$CT"
	PIDS= REASON= LAST=
	t0=$(date +%s.%N)
	one_case "$c" "$want"
	for p in $PIDS; do
		alive "$p" && kill -9 "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	if [ -z "$REASON" ]; then
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

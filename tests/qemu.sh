#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Ferry migrating a stock QEMU (TAP). Shaped "start workload, migrate,
# verify": the self-verifying ferry-guest payload in qemu-system-x86_64
# (TCG, or KVM where ferry-vm --probe-accel finds it native), 64 MiB of
# guest RAM on a shared memfd, one vCPU, a ferry-qemu daemon per QEMU,
# ferry-source and ferry-dest over TLS on loopback. Each QEMU gets its own
# fw_cfg resume token, so the guest's rpasses restarts from 0 where it
# resumes; its DONE line says every page was checked since then. A real
# Linux guest too (Debian's kernel, a busybox dirtier; tools/linux-guest
# fetches it once into ~/.cache/ferry, and its cases skip, saying why,
# where that cannot be done): precopy with the RAM of both sides compared
# byte for byte at the switchover, and postcopy. The backings: memfds of
# 4 KiB and 2 MiB pages, files on a tmpfs and a hugetlbfs mounted here.
# FERRY_CASES="name ..." runs some cases (the names of case_* below).
#
# Every wait is bounded; every process started here is ended by its PID.
# Speaks TAP, like tests/migrate.sh: the plan, then "ok N - ..." or
# "not ok N - why" per case ("# SKIP why" where it cannot run), and exit
# 0; "1..0 # SKIP" where qemu-system-x86_64 is missing; "Bail out!" and 99
# when the build is incomplete.
set -u
# qemu.sh and libvirt.sh take turns (tests/qemu-common.sh says why).
. "$(dirname "$0")/qemu-common.sh"
take_qemu_turn "$@"
B=${FERRY_BUILD:-$(pwd)}
FQ=$B/tools/ferry-qemu/ferry-qemu
PRELOAD=$B/tools/ferry-qemu/libferry-preload.so
GUEST=$B/tools/guest/ferry-guest
SRC=$B/tools/ferry-source
DST=$B/tools/ferry-dest
VM=$B/tools/ferry-vm/ferry-vm
for f in "$FQ" "$PRELOAD" "$GUEST" "$SRC" "$DST" "$VM" "$B/tools/ferry-cert"; do
	[ -e "$f" ] || { echo "Bail out! missing $f (build first)"; exit 99; }
done
if ! command -v qemu-system-x86_64 >/dev/null; then
	echo "1..0 # SKIP qemu-system-x86_64 not installed"
	exit 0
fi
ACCEL=tcg
"$VM" --probe-accel 2>/dev/null | grep -q 'use=kvm' && ACCEL=kvm

T=$(mktemp -d /tmp/ferry-qemu.XXXXXX)
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

MEM=64M
WS=16M
WS_PAGES=4096	# 16 MiB of 4 KiB pages: what DONE must have checked
N=0 T0=0
case_start() { T0=$(date +%s%N); }
took() { # seconds since case_start, one decimal
	local ms=$((($(date +%s%N) - T0) / 1000000))
	printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100))
}
ok() { N=$((N + 1)); echo "ok $N - $1 ($(took) s)"; }
fail() {
	N=$((N + 1))
	echo "not ok $N - $1: $2"
	for f in "$T"/*/*.log "$T"/*.log; do
		[ -s "$f" ] && { echo "# --- $f"; tail -n 4 "$f" | sed 's/^/# /'; }
	done
}
alive() { kill -0 "$1" 2>/dev/null; }

hbs() { grep -c '^HB ' "$T/$1/console.log" 2>/dev/null || true; }
has_hbs() { [ "$(hbs "$1")" -ge "$2" ]; }
done_line() { grep '^DONE' "$T/$1/console.log" 2>/dev/null | tail -n 1; }
json() { sed -n "s/.*\"$2\": \([0-9.]*\).*/\1/p" "$T/$1" | head -n 1; }
has_done() { grep -q '^DONE' "$T/$1/console.log" 2>/dev/null; }
field() { sed -n "s/.*[ ]$2=\([0-9]*\).*/\1/p" <<<"$1"; }

# start_vmm NAME [CMDLINE OPTIONS] -- [BOOT ARGS]: QEMU (-m $MEM, --accel
# $QACCEL, $QEMU_EXTRA among its arguments, the console in
# $T/NAME/console.log) and its ferry-qemu daemon in $T/NAME (link at
# $T/NAME/vm.sock); sets NAME_qemu and NAME_fq
start_vmm() {
	local name=$1 d=$T/$1 opts=()
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		opts+=("$1")
		shift
	done
	shift
	rm -rf "$d"
	mkdir -p "$d"
	"$FQ" cmdline --exec --dir "$d" -m $MEM --accel "${QACCEL:-$ACCEL}" \
		--preload "$PRELOAD" "${opts[@]}" -- ${QEMU_EXTRA:-} -nodefaults \
		-display none -no-reboot -serial "file:$d/console.log" "$@" \
		>"$d/qemu.log" 2>&1 &
	eval "${name}_qemu=$!"
	PIDS+=($!)
	"$FQ" serve -v --dir "$d" >"$d/fq.log" 2>&1 &
	eval "${name}_fq=$!"
	PIDS+=($!)
	wait_for 20 test -S "$d/vm.sock"
}

# start_qemu NAME GUEST-ARGS [CMDLINE OPTIONS]: start_vmm with the
# ferry-guest payload, GUEST-ARGS its command line
start_qemu() {
	local name=$1 args=$2
	shift 2
	start_vmm "$name" "$@" -- -kernel "$GUEST" -append "$args" \
		-device isa-debug-exit,iobase=0xf4,iosize=4
}

# stop_all: ends what a case started (by PID) and waits for it
stop_all() {
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	PIDS=()
}

start_dest() { # extra args; sets PORT once ferry-dest listens
	# Not under timeout(1): the case kills this very PID. Its waits are
	# bounded by --accept-timeout and --io-timeout. The last case's log goes
	# first: the shell truncates it only once the child runs, and its old
	# port must not be read meanwhile.
	rm -f "$T/fdest.log" "$T/dest.json"
	"$DST" --vm "${DST_LINK:-$T/dst/vm.sock}" --listen 127.0.0.1:0 $STLS \
		--accept-timeout 60 --io-timeout 10s --json "$T/dest.json" "$@" \
		>"$T/fdest.log" 2>&1 &
	dest_pid=$!
	PIDS+=($!)
	PORT=1 # nothing listens there: the case fails with a clear error
	get_port() {
		PORT=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' \
			"$T/fdest.log")
		[ -n "$PORT" ] || ! alive "$dest_pid"
	}
	wait_for 20 get_port
	[ -n "$PORT" ] || PORT=1
}

# verified NAME: the guest in NAME ran (rpasses counted from 0 there),
# then said DONE with every page checked since, and no error anywhere
verified() {
	local d first
	wait_for 60 has_done "$1" || { why="no DONE line"; return 1; }
	d=$(done_line "$1")
	first=$(grep -m1 '^HB ' "$T/$1/console.log")
	if grep -q 'errors=[1-9]' "$T/$1/console.log"; then
		why="errors: $(grep -m1 'errors=[1-9]' "$T/$1/console.log")"
	elif [ "$(field "$first" rpasses)" != 0 ]; then
		why="the first heartbeat there is not after a resume: $first"
	elif [ "$(field "$d" rpasses)" -lt 1 ]; then
		why="DONE without a whole pass: $d"
	elif [ "$(field "$d" pages)" != $WS_PAGES ]; then
		why="DONE checked $(field "$d" pages) pages, not $WS_PAGES: $d"
	else
		return 0
	fi
	return 1
}

# 1. Device state through the link: ferry-vm snapshot of a running QEMU,
#    restore into a second QEMU started with -incoming defer.
case_snapshot() {
	case_start
	start_qemu src "ws=$WS rate=8 hb_ms=250 hbs=40" ||
		{ fail snapshot "no link for the source QEMU"; return; }
	start_qemu dst "ws=$WS" --incoming ||
		{ fail snapshot "no link for the incoming QEMU"; return; }
	wait_for 30 has_hbs src 2
	if ! timeout 60 "$VM" snapshot -s "$T/src/vm.sock" "$T/snap" \
		--keep-running >"$T/snap.log" 2>&1; then
		fail snapshot "ferry-vm snapshot: $(cat "$T/snap.log")"
	elif ! timeout 60 "$VM" restore -s "$T/dst/vm.sock" "$T/snap" \
		>"$T/restore.log" 2>&1; then
		fail snapshot "ferry-vm restore: $(cat "$T/restore.log")"
	elif ! verified dst; then
		fail snapshot "restored guest: $why"
	else
		STATE_BYTES=$(sed -n 's/.*device state: \([0-9]*\) bytes.*/\1/p' \
			"$T/src/fq.log")
		ok "device state round trip (snapshot, restore; stream $STATE_BYTES bytes)"
	fi
	stop_all
}

# 2. RAM not on a shared backend (NAME, QEMU ARGS that make it): one line
#    naming the option, and the guest never paused.
not_shared() {
	local d=$T/plain before name=$1
	shift
	case_start
	rm -rf "$d"
	mkdir -p "$d"
	LD_PRELOAD=$PRELOAD FERRY_UFFD_SOCKET=$d/uffd.sock \
		qemu-system-x86_64 -accel $ACCEL -m 32M "$@" -nodefaults \
		-display none -no-reboot -kernel "$GUEST" \
		-append "ws=4M rate=4 hb_ms=250" \
		-qmp "unix:$d/qmp.sock,server=on,wait=off" \
		-serial "file:$d/console.log" \
		-device isa-debug-exit,iobase=0xf4,iosize=4 >"$d/qemu.log" 2>&1 &
	local qpid=$!
	PIDS+=($qpid)
	wait_for 30 test -s "$d/console.log"
	timeout 30 "$FQ" serve --dir "$d" >"$d/out" 2>"$d/err"
	local rc=$?
	before=$(hbs plain)
	if [ $rc -ne 1 ]; then
		fail "$name" "ferry-qemu exit $rc: $(cat "$d/err")"
	elif [ "$(wc -l <"$d/err")" -ne 1 ] ||
		! grep -q 'memory-backend-memfd.*share=on' "$d/err"; then
		fail "$name" "not one line naming the backend: $(cat "$d/err")"
	elif ! wait_for 30 has_hbs plain $((before + 2)) || ! alive $qpid; then
		fail "$name" "the guest stopped"
	else
		ok "$name refused: $(cat "$d/err")"
	fi
	stop_all
}
case_not_shared() { not_shared "RAM not shared (-m alone)"; }
case_not_shared_memfd() {
	not_shared "RAM on a memfd without share=on" -object \
		memory-backend-memfd,id=ram0,size=32M,share=off \
		-machine memory-backend=ram0
}

# migrate NAME "SOURCE ARGS" ["CMDLINE ARGS" [REGIONS]]: a dirtying guest
# moves from src to dst (QEMUs from `ferry-qemu cmdline CMDLINE ARGS`, with
# REGIONS RAM regions on the link, 1 by default) and is verified there;
# the source QEMU quits once the destination runs.
migrate() {
	local name=$1 srcargs=$2 qemuargs=${3:-} regions=${4:-1} rc
	case_start
	start_qemu src "ws=$WS rate=8 hb_ms=250 hbs=48" $qemuargs ||
		{ fail "$name" "no link for the source QEMU"; return; }
	start_qemu dst "ws=$WS" --incoming $qemuargs ||
		{ fail "$name" "no link for the incoming QEMU"; return; }
	wait_for 30 has_hbs src 2
	start_dest ${DEST_ARGS:-}
	timeout 120 "$SRC" --vm "$T/src/vm.sock" --dest "127.0.0.1:$PORT" \
		$CTLS -q $srcargs --json "$T/src.json" >"$T/fsrc.log" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		fail "$name" "ferry-source exit $rc: $(cat "$T/fsrc.log")"
	elif ! wait "$dest_pid"; then
		fail "$name" "ferry-dest failed: $(tail -n 2 "$T/fdest.log")"
	elif ! verified dst; then
		fail "$name" "destination guest: $why"
	elif ! grep -q "($regions RAM region" "$T/src/fq.log"; then
		fail "$name" "the link did not show $regions RAM region(s)"
	elif [ -n "${BACKING:-}" ] && ! grep -q "MiB of $BACKING at" "$T/dst/fq.log"; then
		fail "$name" "the RAM is not $BACKING: $(grep -m1 'region 0' "$T/dst/fq.log")"
	elif [ -n "${LOAD_FAULTS:-}" ] &&
		[ "$(json dest.json faults_before_resume)" -lt 1 ] 2>/dev/null; then
		fail "$name" "ferry-dest served no fault during QEMU's state load (faults_before_resume $(json dest.json faults_before_resume), faults $(json dest.json faults))"
	elif [ -n "${HOTNESS:-}" ] && ! hotness_ok; then
		fail "$name" "$why"
	elif [ -n "${THP_EXPECT:-}" ] && ! thp_ok; then
		fail "$name" "$why"
	elif ! wait_for 20 eval '! alive $src_qemu'; then
		fail "$name" "the source QEMU did not quit"
	else
		ok "$name: guest verified at the destination ($(done_line dst); downtime $(json src.json downtime_ms) ms, state load $(json src.json state_load_ms) ms, faults $(json dest.json faults), $(json dest.json faults_before_resume) of them during the state load${THP_EXPECT:+; THP: $thp}${HOTNESS:+; hotness: $hot})"
	fi
	stop_all
}

case_precopy() { migrate precopy "--mode precopy"; }
case_postcopy() { migrate postcopy "--mode postcopy"; }
# Faults during QEMU's device-state load: the load reads guest RAM (the
# kvmvapic post-load reads its option ROM, shadowed into RAM at 0xc0000),
# which in postcopy has not arrived yet unless the push got there first.
# It starts at page 0, so at full speed it often wins; capped at 1 MiB/s
# (the state's own 318 KB using up the cap's credit) its first batch
# comes a good 200 ms after the load began. ferry-dest's statistics must
# show faults served before the resume. 4 MiB of data: postcopy ~5 s.
case_load_faults() {
	MEM=32M WS=4M WS_PAGES=1024 LOAD_FAULTS=1 migrate \
		"postcopy, faults during QEMU's state load" \
		"--mode postcopy --bandwidth 1"
}
case_hybrid() { migrate hybrid "--mode hybrid"; }
case_auto() { migrate auto "--mode auto"; }
# QEMU under the seccomp filter libvirt gives it: no spawning (hence fd:,
# not exec:), and the preload's uffds still come after the filter is on.
case_sandbox() {
	QEMU_EXTRA="-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny" \
		migrate "postcopy, QEMU in its seccomp sandbox" "--mode postcopy"
}
# Two NUMA nodes, each on its own memfd: two regions on the link.
case_numa() {
	migrate "postcopy, 2 NUMA nodes" "--mode postcopy" "--nodes 2" 2
}

# 5. The destination dies before the switchover: the source QEMU runs on.
case_dest_killed() {
	local rc before st
	case_start
	start_qemu src "ws=$WS rate=8 hb_ms=250" ||
		{ fail dest_killed "no link for the source QEMU"; return; }
	start_qemu dst "ws=$WS" --incoming ||
		{ fail dest_killed "no link for the incoming QEMU"; return; }
	wait_for 30 has_hbs src 2
	start_dest
	# 16 MiB of data at 4 MiB/s: the first round lasts about 4 s, and a
	# guest dirtying 8 MiB/s never converges; the kill comes in round 0
	# (checked below: no state was saved).
	timeout 120 "$SRC" --vm "$T/src/vm.sock" --dest "127.0.0.1:$PORT" \
		$CTLS -q --mode precopy --bandwidth 4 --io-timeout 3s \
		--deadline 100 >"$T/fsrc.log" 2>&1 &
	local spid=$!
	PIDS+=($spid)
	sleep 2
	kill -9 "$dest_pid" "$dst_qemu"
	wait "$dest_pid" "$dst_qemu" 2>/dev/null # reaped quietly: no "Killed"
	wait "$spid"
	rc=$?
	before=$(hbs src)
	if [ $rc -eq 0 ]; then
		fail dest_killed "ferry-source succeeded without a destination"
	elif grep -q 'link: save-state' "$T/src/fq.log"; then
		fail dest_killed "the kill came after the switchover began"
	elif grep -q 'did not converge' "$T/fsrc.log"; then
		fail dest_killed "ferry-source never noticed the kill: $(cat "$T/fsrc.log")"
	elif ! wait_for 30 has_hbs src $((before + 2)) || ! alive "$src_qemu"; then
		fail dest_killed "the source guest did not keep running"
	else
		ok "destination killed before switchover: source runs on ($(tail -n 1 "$T/fsrc.log"))"
	fi
	stop_all
}

# The source agent dies mid-postcopy: the source QEMU stays paused with
# all the memory, its daemon serves a new agent, and ferry-source --recover
# finishes the migration; the guest is verified at the destination.
case_recover() {
	local rc
	case_start
	start_qemu src "ws=$WS rate=8 hb_ms=250 hbs=48" ||
		{ fail recover "no link for the source QEMU"; return; }
	start_qemu dst "ws=$WS" --incoming ||
		{ fail recover "no link for the incoming QEMU"; return; }
	wait_for 30 has_hbs src 2
	start_dest
	# 16 MiB of data at 4 MiB/s: postcopy lasts about 4 s.
	"$SRC" --vm "$T/src/vm.sock" --dest "127.0.0.1:$PORT" $CTLS -q \
		--mode postcopy --bandwidth 4 --io-timeout 2s >"$T/fsrc.log" 2>&1 &
	local spid=$!
	PIDS+=($spid)
	if ! wait_for 30 has_hbs dst 1; then
		fail recover "no switchover: $(cat "$T/fsrc.log")"
		stop_all
		return
	fi
	kill -9 "$spid"
	wait "$spid" 2>/dev/null
	timeout 120 "$SRC" --vm "$T/src/vm.sock" --dest "127.0.0.1:$PORT" \
		$CTLS -q --recover --json "$T/src.json" >"$T/fsrc.log" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		fail recover "ferry-source --recover exit $rc: $(cat "$T/fsrc.log")"
	elif ! wait "$dest_pid"; then
		fail recover "ferry-dest failed: $(tail -n 2 "$T/fdest.log")"
	elif ! verified dst; then
		fail recover "destination guest: $why"
	elif [ -n "${HOTNESS:-}" ] && ! hotness_ok; then
		fail "$name" "$why"
	elif [ -n "${THP_EXPECT:-}" ] && ! thp_ok; then
		fail "$name" "$why"
	elif ! wait_for 20 eval '! alive $src_qemu'; then
		fail recover "the source QEMU did not quit"
	else
		ok "postcopy, source agent killed, ferry-source --recover: guest verified ($(done_line dst))"
	fi
	stop_all
}

skip() { N=$((N + 1)); echo "ok $N - $1 # SKIP $2"; }

. "$(dirname "$0")/hugepages.sh"

# Guest RAM on 2 MiB hugetlb memfds (32 MiB guests).
case_hugetlb() {
	MEM=32M BACKING=hugetlb-2M with_hugepages "postcopy, hugetlb-2M" \
		migrate "postcopy, hugetlb-2M memfd" "--mode postcopy" "--hugetlb"
}

# with_mount NAME FSTYPE OPTIONS CMD...: runs CMD with a FSTYPE mounted
# at $T/mnt for it (unmounted after, once CMD has ended its QEMUs); case
# NAME is a skip when it cannot be mounted.
with_mount() {
	local name=$1 fs=$2 o=$3 mnt=$T/mnt
	shift 3
	mkdir -p "$mnt"
	if ! mount -t "$fs" -o "$o" "ferry-$fs" "$mnt" 2>"$T/mount.err"; then
		skip "$name" "cannot mount a $fs: $(head -n 1 "$T/mount.err")"
		return
	fi
	"$@"
	umount "$mnt" || echo "# could not unmount $mnt"
}

# Guest RAM in files on a tmpfs of this case's own, memory-backend-file
# (QEMU makes one unlinked file per backend in the directory).
case_file_tmpfs() {
	MEM=32M BACKING=shmem with_mount "postcopy, memory-backend-file on tmpfs" \
		tmpfs size=80m migrate "postcopy, memory-backend-file on tmpfs" \
		"--mode postcopy" "--mem-path $T/mnt"
}

# THP at a QEMU destination (what ferry-dest does after the switchover,
# migrate/dest-collapse.c): shmem_enabled=advise (set back after), a
# tmpfs of this case's own mounted huge=advise, QEMU's backend on it
# (ferry-qemu cmdline --mem-path: align=2M, so QEMU maps it 2 MiB-aligned;
# QEMU advises its RAM for huge pages). The destination's JSON must say
# that ranges were collapsed in QEMU's address space and that at least
# 40% of its RAM is mapped huge (smaps_rollup ShmemPmdMapped; the guest
# writes 16 MiB of its 32, the rest is left alone as holes).
case_thp_tmpfs() {
	local name="precopy, THP collapsed in the destination QEMU (tmpfs)"
	MEM=32M BACKING=shmem THP_EXPECT=0.4 with_shmem_thp advise "$name" \
		with_mount "$name" tmpfs size=80m,huge=advise migrate "$name" \
		"--mode precopy" "--mem-path $T/mnt"
}

# The same on the default memfd, which QEMU 7.2 maps only 4 KiB-aligned:
# the kernel cannot map it huge, and the JSON must say why instead of the
# kernel's EINVAL for every range.
case_thp_memfd() {
	MEM=32M THP_EXPECT=aligned with_shmem_thp advise "precopy, THP on a memfd" \
		migrate "precopy, THP on a memfd: the reason it cannot be" \
		"--mode precopy"
}

# Tiered placement of a QEMU guest: the source samples the guest's
# hotness from the dirty log and, where DAMON can monitor a process,
# from DAMON on QEMU itself (the pid the link's HELLO names, checked
# against QEMU's maps). On a kernel without DAMON vaddr, or with a DAMON
# in use, the reason is DAMON's, not that the VMM was not found.
case_tiered() {
	HOTNESS=1 DEST_ARGS="--placement tiered" migrate \
		"precopy, tiered placement, hotness sampled on QEMU" "--mode precopy"
}

# hotness_ok: the source's JSON names where its hotness came from, and
# found QEMU's mapping of the RAM; sets hot to it, or why.
hotness_ok() {
	hot=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("numa", {}).get("hotness", ""))' "$T/src.json")
	case $hot in
	"writes and reads (DAMON "*" pid $src_qemu)" | "writes only ("*)
		case $hot in
		*"does not map"* | *"does not say"*) why="the source did not find QEMU's RAM: $hot"; return 1 ;;
		esac ;;
	*) why="no hotness source in the source's JSON: '$hot'"; return 1 ;;
	esac
}

# thp_ok: the destination's THP figures as THP_EXPECT asks (a share of
# RAM mapped huge, or "aligned": no range tried, the misalignment named);
# sets thp to them, or why.
thp_ok() {
	thp=$(python3 - "$T/dest.json" "$THP_EXPECT" <<-'PY'
	import json, sys
	t = json.load(open(sys.argv[1])).get("thp")
	if not t:
	    sys.exit("no thp object in dest.json")
	if sys.argv[2] == "aligned":
	    if t["ranges"] or "not 2 MiB-aligned" not in t.get("why", ""):
	        sys.exit("THP: expected the misalignment named: %s" % t)
	    print(t["why"])
	    sys.exit(0)
	if not t["collapsed"] or t.get("huge_share", 0) < float(sys.argv[2]):
	    sys.exit("THP: %s" % t)
	print("%d of %d ranges collapsed in %.1f ms, %.0f%% of QEMU's RAM "
	      "mapped huge" % (t["collapsed"], t["ranges"], t["collapse_ms"],
	      100 * t["huge_share"]))
	PY
	) || { why=$thp; return 1; }
}

# The same on a hugetlbfs of 2 MiB pages of this case's own.
case_file_hugetlbfs() {
	local name="precopy, memory-backend-file on hugetlbfs"
	MEM=32M BACKING=hugetlb-2M with_hugepages "$name" with_mount "$name" \
		hugetlbfs pagesize=2M migrate "$name" "--mode precopy" \
		"--mem-path $T/mnt"
}

# 8. A destination QEMU of another shape (32 MiB against 64): refused
#    before anything moves, with one line, and the source runs on.
case_mismatch() {
	local rc before
	case_start
	start_qemu src "ws=$WS rate=8 hb_ms=250" ||
		{ fail mismatch "no link for the source QEMU"; return; }
	MEM=32M start_qemu dst "ws=$WS" --incoming ||
		{ fail mismatch "no link for the incoming QEMU"; return; }
	wait_for 30 has_hbs src 2
	start_dest
	timeout 60 "$SRC" --vm "$T/src/vm.sock" --dest "127.0.0.1:$PORT" \
		$CTLS -q >"$T/fsrc.log" 2>&1
	rc=$?
	before=$(hbs src)
	if [ $rc -eq 0 ]; then
		fail mismatch "ferry-source migrated into a smaller VM"
	elif [ "$(wc -l <"$T/fsrc.log")" -ne 1 ] ||
		! grep -q 'layout' "$T/fsrc.log"; then
		fail mismatch "not one line on the layout: $(cat "$T/fsrc.log")"
	elif grep -q 'link: pause' "$T/src/fq.log"; then
		fail mismatch "the source VM was paused"
	elif ! wait_for 30 has_hbs src $((before + 2)) || ! alive "$src_qemu"; then
		fail mismatch "the source guest did not keep running"
	else
		ok "layout mismatch refused: $(cat "$T/fsrc.log")"
	fi
	stop_all
}

# The commitment point (docs/vmlink.md): an agent that pauses QEMU and
# leaves without a COMMIT gets it resumed by ferry-qemu; one that
# committed leaves it paused until an agent resumes it.
CLIENT=$(cd "$(dirname "$0")" && pwd)/vmlink-client.py
link_state() { python3 "$CLIENT" "$T/src/vm.sock" status 2>/dev/null | awk '{ print $3 }'; }
is_state() { [ "$(link_state)" = "$1" ]; }
case_agent_gone() {
	local before out
	case_start
	start_qemu src "ws=$WS rate=8 hb_ms=250" ||
		{ fail agent_gone "no link for the QEMU"; return; }
	wait_for 30 has_hbs src 2
	out=$(timeout 30 python3 "$CLIENT" "$T/src/vm.sock" pause 2>&1)
	before=$(hbs src)
	if [ "$out" != "pause 0" ]; then
		fail agent_gone "pause: $out"
	elif ! wait_for 20 is_state running ||
		! wait_for 30 has_hbs src $((before + 2)); then
		fail agent_gone "QEMU was not resumed after an uncommitted agent left"
	elif ! grep -q 'the guest runs here again' "$T/src/fq.log"; then
		fail agent_gone "no line on the resume: $(tail -n 2 "$T/src/fq.log")"
	elif out=$(timeout 30 python3 "$CLIENT" "$T/src/vm.sock" pause commit 2>&1) &&
		[ "$out" != "$(printf 'pause 0\ncommit 0')" ]; then
		fail agent_gone "pause, commit: $out"
	elif ! wait_for 10 grep -q 'QEMU stays paused here' "$T/src/fq.log" ||
		! is_state paused; then
		fail agent_gone "a committed QEMU did not stay paused ($(link_state))"
	elif ! timeout 30 python3 "$CLIENT" "$T/src/vm.sock" resume >/dev/null ||
		! wait_for 20 is_state running; then
		fail agent_gone "a new agent could not resume the committed QEMU"
	else
		ok "agent gone: uncommitted, QEMU resumed; committed, it stayed paused"
	fi
	stop_all
}

# The Linux guest (tools/linux-guest, fetched once into ~/.cache/ferry):
# Debian's own kernel with a busybox initramfs whose /init fills 16 MiB
# with random data, rewrites 4 MiB/s of it and prints "HB n=N" every
# 250 ms. 128 MiB: Debian's 6.1 does not decompress into 64 MiB and runs
# out of memory booting in 80. Under TCG -cpu max,-cx16 and thread=single,
# as a 6.x guest under QEMU 7.2 wants.
TOP=$(cd "$(dirname "$0")/.." && pwd)
HOLD=$TOP/tests/vmlink-hold.py
LINUX_ARGS="console=ttyS0 quiet panic=-1 ws=16 rate=4 hb_ms=250"
LINUX_WS_PAGES=4096
LACCEL=tcg,thread=single
[ "$ACCEL" = kvm ] && LACCEL=kvm
linux_guest() { # sets LKERNEL and LINITRD, or why
	local out
	out=$("$TOP/tools/linux-guest" 2>&1) || { why=$out; return 1; }
	read -r LKERNEL LINITRD <<<"$out"
}
start_linux() { # NAME [CMDLINE OPTIONS]
	local name=$1
	shift
	MEM=128M QACCEL=$LACCEL start_vmm "$name" "$@" -- -cpu max,-cx16 \
		-kernel "$LKERNEL" -initrd "$LINITRD" -append "$LINUX_ARGS"
}
hb_n() { # NAME first|last: the n of that heartbeat in NAME's console
	grep -a '^HB n=' "$T/$1/console.log" 2>/dev/null |
		if [ "$2" = first ]; then head -n 1; else tail -n 1; fi |
		sed 's/^HB n=\([0-9]*\).*/\1/'
}
ram_fd() { # NAME: QEMU's fd of its RAM region 0, from its daemon's log
	sed -n 's/.*region 0: .* its fd \([0-9]*\)$/\1/p' "$T/$1/fq.log" | head -n 1
}
nonzero_pages() { # FILE: its 4 KiB pages that are not all zero
	python3 -c 'import sys
z = bytes(4096); n = 0
with open(sys.argv[1], "rb") as f:
    while (p := f.read(4096)):
        n += p != z[:len(p)]
print(n)' "$1"
}
# continued NAME: the guest's heartbeats at the destination go on from
# the source's count (the last line may have been cut by the pause)
continued() {
	local last first
	wait_for 60 has_hbs dst 4 || { why="fewer than 4 heartbeats at the destination"; return 1; }
	last=$(hb_n src last) first=$(hb_n dst first)
	if [ -z "$last" ] || [ "$first" -lt "$last" ] || [ "$first" -gt $((last + 1)) ]; then
		why="the destination's first heartbeat n=$first after the source's last n=$last"
		return 1
	fi
}
# went_on: once ferry-source is done, ferry-dest succeeded, the Linux
# guest goes on at the destination and the source QEMU quit; else why
went_on() {
	if ! wait "$dest_pid"; then
		why="ferry-dest failed: $(tail -n 2 "$T/fdest.log")"
	elif ! continued; then
		return 1
	elif [ -n "${HOTNESS:-}" ] && ! hotness_ok; then
		fail "$name" "$why"
	elif [ -n "${THP_EXPECT:-}" ] && ! thp_ok; then
		fail "$name" "$why"
	elif ! wait_for 20 eval '! alive $src_qemu'; then
		why="the source QEMU did not quit"
	else
		return 0
	fi
	return 1
}
linux_booted() { # NAME: READY and 4 heartbeats, bounded
	wait_for 120 has_hbs "$1" 4 && grep -aq '^READY' "$T/$1/console.log"
}
# linux_pair CASE: starts the case, the Linux guest running in src and an
# incoming QEMU in dst; otherwise says why (a skip without the guest) and
# returns 1
linux_pair() {
	case_start
	linux_guest || { skip "$1" "$why"; return 1; }
	if ! start_linux src; then
		why="no link for the source QEMU"
	elif ! start_linux dst --incoming; then
		why="no link for the incoming QEMU"
	elif ! linux_booted src; then
		why="the Linux guest did not boot in 120 s"
	else
		return 0
	fi
	fail "$1" "$why"
	stop_all
	return 1
}

# The Linux guest in precopy, with the destination held at the switchover
# (tests/vmlink-hold.py holds ferry-dest's RESUME): both QEMUs paused, the
# source since the PAUSE, the destination with every page and its device
# state loaded; their RAM fds must be equal byte for byte. Not trivially:
# the destination's RAM before the migration differs, and the source's has
# at least the 16 MiB of random data in it. Then the guest runs on there.
case_linux_precopy() {
	local name="Linux guest, precopy, RAM compared at the switchover"
	local H=$T/hold sfd dfd fresh ssum dsum nz before rc cmpout
	linux_pair "$name" || return
	sfd=$(ram_fd src) dfd=$(ram_fd dst)
	fresh=$(sha256sum <"/proc/$dst_qemu/fd/$dfd" | cut -c1-16)
	rm -rf "$H"
	mkdir -p "$H"
	python3 "$HOLD" "$T/dst/hold.sock" "$T/dst/vm.sock" "$H" 2>"$T/hold.log" &
	PIDS+=($!)
	wait_for 10 test -S "$T/dst/hold.sock"
	DST_LINK=$T/dst/hold.sock start_dest
	timeout 150 "$SRC" --vm "$T/src/vm.sock" --dest "127.0.0.1:$PORT" $CTLS \
		-q --mode precopy --io-timeout 30s --json "$T/src.json" \
		>"$T/fsrc.log" 2>&1 &
	local spid=$!
	PIDS+=($spid)
	if ! wait_for 120 test -e "$H/held"; then
		fail "$name" "no RESUME reached the destination: $(cat "$T/fsrc.log")"
		stop_all
		return
	fi
	before=$(hbs src)
	ssum=$(sha256sum <"/proc/$src_qemu/fd/$sfd" | cut -c1-16)
	dsum=$(sha256sum <"/proc/$dst_qemu/fd/$dfd" | cut -c1-16)
	cmpout=$(cmp "/proc/$src_qemu/fd/$sfd" "/proc/$dst_qemu/fd/$dfd" 2>&1)
	rc=$?
	nz=$(nonzero_pages "/proc/$src_qemu/fd/$sfd")
	sleep 0.5	# a guest that still ran would print a heartbeat in this
	local after=$(hbs src) dhbs=$(hbs dst)
	touch "$H/release"
	if [ $rc -ne 0 ]; then
		fail "$name" "the RAM differs at the switchover: $cmpout"
	elif [ "$after" != "$before" ] || [ "$dhbs" != 0 ]; then
		fail "$name" "not both paused while compared (source heartbeats $before, then $after; destination $dhbs)"
	elif [ "$fresh" = "$ssum" ]; then
		fail "$name" "the destination's RAM was this already before the migration"
	elif [ "$nz" -lt $LINUX_WS_PAGES ]; then
		fail "$name" "only $nz non-zero pages in the source's RAM"
	elif ! wait "$spid"; then
		fail "$name" "ferry-source failed: $(cat "$T/fsrc.log")"
	elif ! went_on; then
		fail "$name" "$why"
	else
		ok "$name: 128 MiB equal (sha256 $ssum, $nz non-zero pages; before the migration $fresh); heartbeats go on at n=$(hb_n dst first); stream $(sed -n 's/.*device state: \([0-9]*\) bytes.*/\1/p' "$T/src/fq.log") bytes, downtime $(json src.json downtime_ms) ms (the hold in it), state load $(json src.json state_load_ms) ms"
	fi
	stop_all
}

# The Linux guest in postcopy: its heartbeats go on at the destination
# (the faults QEMU's state load took are reported, not asserted: at full
# speed the push may have brought those pages first; case_load_faults).
case_linux_postcopy() {
	local name="Linux guest, postcopy" rc lf
	linux_pair "$name" || return
	start_dest
	timeout 150 "$SRC" --vm "$T/src/vm.sock" --dest "127.0.0.1:$PORT" $CTLS \
		-q --mode postcopy --json "$T/src.json" >"$T/fsrc.log" 2>&1
	rc=$?
	lf=$(json dest.json faults_before_resume)
	if [ $rc -ne 0 ]; then
		fail "$name" "ferry-source exit $rc: $(cat "$T/fsrc.log")"
	elif ! went_on; then
		fail "$name" "$why"
	else
		ok "$name: heartbeats go on at n=$(hb_n dst first); faults $(json dest.json faults), $lf during QEMU's state load; downtime $(json src.json downtime_ms) ms, state load $(json src.json state_load_ms) ms, postcopy $(sed -n 's/.*"duration_s": \([0-9.]*\), "pages_pushed.*/\1/p' "$T/dest.json") s"
	fi
	stop_all
}

CASES=${FERRY_CASES:-snapshot not_shared not_shared_memfd precopy postcopy load_faults hybrid auto sandbox numa hugetlb file_tmpfs file_hugetlbfs thp_tmpfs thp_memfd tiered recover dest_killed mismatch agent_gone linux_precopy linux_postcopy}
set -- $CASES
echo "1..$#"
echo "# accelerator: $ACCEL"
for c in $CASES; do
	if declare -F "case_$c" >/dev/null; then
		"case_$c"
	else
		N=$((N + 1))
		echo "not ok $N - $c: no such case"
	fi
done
exit 0

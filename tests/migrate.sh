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
# The nested_* cases run ferry-dest inside the nested NUMA host
# (tools/nested/host: a 6.12 kernel under QEMU TCG with a CPU-less second
# node), booted once by nested_boot and shared by the cases after it;
# the migration stream crosses from this host. They skip, with the
# reason, when the kernel cannot be fetched.
#
# Each case runs in its own subshell, in its own directory $T/<case>/
# (logs, sockets, statistics), and every wait in it is bounded: a case
# that hangs or fails ends every process it started and cannot make the
# next one fail.
set -u
ALL_CASES="precopy kvm postcopy_idle postcopy postcopy_copy postcopy_sequential
	postcopy_vcpus postcopy_hugetlb precopy_hugetlb_subpages
	precopy_hugetlb_1g hybrid_hugetlb_subpages thp_collapse
	thp_collapse_postcopy precopy_4k_to_2m postcopy_4k_to_2m precopy_2m_to_4k
	postcopy_2m_to_4k precopy_4k_to_1g precopy_1g_to_4k postcopy_4k_to_1g
	postcopy_hugetlb_1g
	postcopy_4k_to_2m_missing hugetlb_refused hugetlb_reserved
	hugetlb_refused_node hugetlb_reserved_node hybrid auto
	auto_early auto_slow_writer auto_hugetlb_scattered auto_hugetlb_idle
	auto_2g postcopy_recover postcopy_manual_recover postcopy_recover_2m_to_4k
	postcopy_dest_killed postcopy_dest_vm_killed bad_cert revoked dest_killed
	source_killed no_converge layout_mismatch usage placement_local
	placement_bind0 placement_refused placement_revised damon_access anon_precopy anon_postcopy
	anon_placement_bind0
	anon_map_refused anon_ksm_hints anon_ksm_source nested_boot nested_local
	nested_bind1 nested_interleave nested_tiered nested_tiered_postcopy nested_anon_tiered
	nested_anon_ksm nested_damon nested_damon_source nested_hugetlb nested_hugetlb_postcopy nested_hugetlb_postcopy_copy nested_refused soak"
HARNESS=migrate
. "$(cd "$(dirname "$0")" && pwd)/harness.sh"

# ---- the cases ----

# migrate WS "VM ARGS" "SOURCE ARGS" [HEARTBEATS [SECONDS]]: a guest with a
# working set of WS (SRCVM and DSTVM: more arguments of one end's VM, such
# as its backing) that stops by itself after HEARTBEATS (8) heartbeats
# moves after it filled its memory; it has to finish at the destination
# with every page verified since its resume, and the source VM, released,
# exits 0. SECONDS bounds ferry-source (120). Sets VERIFIED, MODE, FAULTS.
migrate() {
	migrate_moved "$@" && migrate_verified "$1" "${4:-8}"
}
# migrate_moved WS "VM ARGS" "SOURCE ARGS" [HEARTBEATS [SECONDS]]: the
# first half of migrate, to the destination's completion (the guest runs
# there on); migrate_verified WS HEARTBEATS the second.
migrate_moved() {
	local ws=$1 vmargs=$2 srcargs=$3 hbs=${4:-8} secs=${5:-120}
	start_vm src --ws "$ws" $vmargs ${SRCVM:-} --heartbeats "$hbs" || return
	start_vm dst --ws "$ws" $vmargs ${DSTVM:-} --incoming || return
	wait_filled src || return
	wait_hb src 2 || return
	start_dest ${DARGS:-} || return
	run_src "$secs" --dest "127.0.0.1:$PORT" $CTLS $srcargs \
		--json "$CT/src.json" || return
	[ $rc -eq 0 ] || { fail "ferry-source exit $rc: $(cat "$CT/fsrc.log")"; return; }
	wait_exit dest 30 "ferry-dest to finish" || return
	[ $rc -eq 0 ] || { fail "ferry-dest exit $rc: $(tail -n 1 "$CT/fdest.log")"; return; }
}
migrate_verified() {
	local ws=$1 hbs=$2
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

# The fault path's threads ran as --fault-priority asks (rt: SCHED_FIFO 1
# where the agents may, as root; normal: "normal"), at both ends; into
# $PRIO.
fault_priority() {
	local want=${1:-rt} src dst
	src=$(sed -n 's/.*"fault_priority": "\([^"]*\)".*/\1/p' "$CT/src.json")
	dst=$(sed -n 's/.*"fault_priority": "\([^"]*\)".*/\1/p' "$CT/dest.json")
	PRIO="source $src, destination $dst"
	if [ "$want" = normal ]; then
		[ "$src" = normal ] && [ "$dst" = normal ] ||
			{ fail "fault path scheduling with --fault-priority normal: $PRIO"; return 1; }
		return 0
	fi
	[ "$(id -u)" = 0 ] || return 0
	[ "$src" = "SCHED_FIFO 1" ] && [ "$dst" = "SCHED_FIFO 1" ] ||
		{ fail "fault path scheduling: $PRIO"; return 1; }
}

# The postcopy push started as asked: after RESUMED (push_wait_ms >= 0,
# the default) or before it (-1, --push-before-resume); into $PUSH.
push_wait() {
	local want=$1 w
	w=$(sed -n 's/.*"push_wait_ms": \([-0-9.]*\).*/\1/p' "$CT/src.json")
	if [ "$want" = before ]; then
		[ "$w" = "-1.00" ] ||
			{ fail "--push-before-resume: push_wait_ms '$w', not -1"; return 1; }
		PUSH="push before the resume"
		return 0
	fi
	case "$w" in
	[0-9]*) PUSH="push after the resume (waited $w ms)" ;;
	*) fail "postcopy push_wait_ms '$w': the push did not wait for RESUMED"; return 1 ;;
	esac
}

# 1. A guest dirtying memory moves; it finishes its heartbeats at the
#    destination with every page verified; the source VM is released.
# rounds_acked: the rounds the guest ran through (MIG_FEAT_ROUND_ACK)
# ended with the destination's word, each stream's pages placed, and the
# paused ones (the final round, postcopy's) did not wait for one; their
# longest waits into $ACKS
rounds_acked() {
	ACKS=$(python3 - "$CT/src.json" 2>&1 <<-'PY'
	import json, sys
	rs = json.load(open(sys.argv[1]))["rounds"]
	acked = [r["ack_wait_ms"] is not None for r in rs]
	n = acked.index(False) if False in acked else len(acked)
	if n == 0 or any(acked[n:]):
	    sys.exit("rounds acknowledged: %s" % acked)
	print("acknowledged rounds: %d, waits %s ms" % (n, "/".join(
	    "%.1f" % r["ack_wait_ms"] for r in rs[:n])))
	PY
	) || { fail "$ACKS"; return 1; }
}

case_precopy() {
	migrate 64M "--rate 32" "-n 2" || return
	rounds_acked || return
	pass "precopy: guest verified at the destination, $VERIFIED; $ACKS"
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
	fault_priority || return
	push_wait after || return
	pass "postcopy, 256 MiB/s random writer: $VERIFIED, $FAULTS faults, placed by $PLACEMENT; fault path $PRIO; $PUSH"
}
# The same with MINOR mode refused: MISSING and UFFDIO_COPY only; the
# fault path at the default scheduling (--fault-priority normal), the
# push started before the guest resumes (--push-before-resume).
case_postcopy_copy() {
	DEST_ARGS="--uffd-mode missing --fault-priority normal" migrate 64M \
		"--rate 256" "--mode postcopy -n 2 --fault-priority normal --push-before-resume" || return
	[ "$MODE" = postcopy ] || { fail "the migration ended in $MODE"; return; }
	placed_by copy || return
	fault_priority normal || return
	push_wait before || return
	pass "postcopy by UFFDIO_COPY (--uffd-mode missing): $VERIFIED, $FAULTS faults; fault path $PRIO; $PUSH"
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
	rounds_acked || return
	pass "hybrid: ended in postcopy, $VERIFIED, $FAULTS faults; $ACKS"
}
case_auto() {
	# 1 ms of downtime is not met within the one round allowed: auto
	# has to switch to postcopy. (migrate waits for 2 heartbeats.)
	migrate 64M "--rate 256" "--mode auto --downtime 1 --max-rounds 1" ||
		return
	[ "$MODE" = postcopy ] || { fail "auto ended in $MODE"; return; }
	pass "auto, not converging: switched to postcopy, $VERIFIED"
}

# auto's early look into round 0 (policy.c mig_policy_early): a guest
# writing 256 MiB/s writes far more than 15% of what the round sends in
# its first quarter second, so the round is cut and postcopy pushes the
# rest; one writing 2 MiB/s stays in precopy.
# auto_early_case RATE WANT: a 256 MiB guest writing RATE MiB/s; the
# early look decides WANT and the migration ends in it
auto_early_case() {
	migrate 256M "--rate $1" "--mode auto" || return
	[ "$(json decision "$CT/src.json")" = "$2" ] ||
		{ fail "early look: $(grep early_look "$CT/src.json")"; return; }
	[ "$MODE" = "$2" ] || { fail "auto ended in $MODE"; return; }
	pass "auto, $1 MiB/s writer: early look at $(json at_s "$CT/src.json") s ($(json dirty_bytes "$CT/src.json") bytes written, $(json sent_bytes "$CT/src.json") sent), $2, $VERIFIED"
}
case_auto_early() { auto_early_case 256 postcopy; }
case_auto_slow_writer() { auto_early_case 2 precopy; }

# The early look on 2M hugetlb, where a huge page counts whole: 4 KiB
# writes scattered at 16 MiB/s dirty most huge pages within the quarter
# second, so round 0 is cut there (not all of its huge pages sent) and
# postcopy pushes the rest; an idle guest stays in precopy.
auto_hugetlb_case() {
	hugetlb_pool 336 || return
	migrate 320M "--rate $1 -b hugetlb-2M" "--mode auto" || return
	[ "$(json decision "$CT/src.json")" = "$2" ] ||
		{ fail "early look: $(grep early_look "$CT/src.json")"; return; }
	[ "$MODE" = "$2" ] || { fail "auto ended in $MODE"; return; }
	read -r R0 ALL < <(python3 -c 'import json, sys
st = json.load(open(sys.argv[1]))
print(st["rounds"][0]["pages"], st["guest_bytes"] >> 21)' "$CT/src.json")
	if [ "$2" = postcopy ] && [ "$R0" -ge "$ALL" ]; then
		fail "the early look said postcopy, yet round 0 sent all $R0 huge pages"
		return
	fi
	pass "auto, hugetlb-2M, $([ "$1" = 0 ] && echo "idle guest" || echo "$1 MiB/s scattered writer"): early look at $(json at_s "$CT/src.json") s ($(json dirty_bytes "$CT/src.json") bytes of huge pages dirty, $(json sent_bytes "$CT/src.json") sent), $2, round 0 sent $R0 of $ALL huge pages, $VERIFIED"
}
case_auto_hugetlb_scattered() { auto_hugetlb_case 16 postcopy; }
case_auto_hugetlb_idle() { auto_hugetlb_case 0 precopy; }
case_auto_2g() {
	# The issue's case: auto completing a 256 MiB/s dirtier on 2 GiB.
	migrate 2G "--rate 256" "--mode auto" 60 240 || return
	pass "auto, 2 GiB guest dirtying 256 MiB/s: $MODE, $VERIFIED"
}

# hugetlb_hold [KB]: the tests' hugetlb lock for this case, and the pool
# of KB KiB pages (2048) set back to its size now when the case ends,
# whoever changed it; 1 with a skip when it cannot be changed. The pool is
# system-wide: the lock is held while it is changed.
hugetlb_hold() {
	local pool=/sys/kernel/mm/hugepages/hugepages-${1:-2048}kB/nr_hugepages old
	[ -w "$pool" ] || { skip "cannot change $pool"; return 1; }
	exec 9>/tmp/ferry-tests-hugetlb.lock
	flock -w 60 9 || { fail "timed out after 60 s waiting for the hugetlb lock"; return 1; }
	old=$(cat "$pool")
	# Whichever way the case ends, its VMs give their huge pages back
	# before the pool shrinks.
	trap 'case_end; echo "'"$old"'" >'"$pool" EXIT
	POOL=$pool POOL_OLD=$old
}

# hugetlb_pool N [KB]: N more huge pages of KB KiB (2048) for this case,
# given back (and the pool restored) when it ends; 1 with a skip when
# they cannot be had.
hugetlb_pool() {
	hugetlb_hold "${2:-}" || return
	echo $((POOL_OLD + $1)) >"$POOL"
	[ "$(cat "$POOL")" -ge $((POOL_OLD + $1)) ] ||
		{ skip "cannot reserve $1 huge pages"; return 1; }
}

# hugetlb_unreserved: free 2 MiB huge pages nobody has reserved.
hugetlb_unreserved() {
	local d=/sys/kernel/mm/hugepages/hugepages-2048kB
	echo $(($(cat $d/free_hugepages) - $(cat $d/resv_hugepages)))
}

# shmem_thp WORD: /sys/kernel/mm/transparent_hugepage/shmem_enabled set
# to WORD for this case, restored when it ends (the setting is
# system-wide: the tests' hugetlb lock is held); 1 with a skip when it
# cannot be changed.
shmem_thp() {
	local knob=/sys/kernel/mm/transparent_hugepage/shmem_enabled old
	[ -w "$knob" ] || { skip "cannot change $knob"; return 1; }
	exec 9>/tmp/ferry-tests-hugetlb.lock
	flock -w 60 9 || { fail "timed out after 60 s waiting for the hugetlb lock"; return 1; }
	old=$(sed 's/.*\[\(.*\)\].*/\1/' "$knob")
	trap 'case_end; echo "'"$old"'" >'"$knob" EXIT
	echo "$1" >"$knob" 2>/dev/null && grep -q "\[$1\]" "$knob" ||
		{ skip "this kernel refuses shmem_enabled=$1"; return 1; }
}

# thp_figures MIN_SHARE: the destination's JSON says THP collapsed ranges
# and that at least MIN_SHARE of the VMM's shmem RAM is mapped huge
# (smaps_rollup's ShmemPmdMapped); sets THP to the figures.
thp_figures() {
	THP=$(python3 - "$CT/dest.json" "$1" <<-'PY'
	import json, sys
	t = json.load(open(sys.argv[1])).get("thp")
	if not t:
	    sys.exit("no thp object in dest.json")
	if not t["collapsed"] or t.get("huge_share", 0) < float(sys.argv[2]):
	    sys.exit("THP: %s" % t)
	refused = (", the kernel refused %d (%s)" % (t["failed"], t["first_refusal"])
	           if t["failed"] else "")
	print("%d of %d ranges collapsed in %.0f ms (%d mostly holes, left "
	      "alone%s), %.0f%% of the VM's RAM mapped huge" % (t["collapsed"],
	      t["ranges"], t["collapse_ms"], t["sparse"], refused,
	      100 * t["huge_share"]))
	PY
	) || { fail "$THP"; return 1; }
}

# THP at the destination: 4 KiB shmem RAM advised for huge pages
# (ferry vm --thp, as QEMU advises its RAM) under shmem_enabled=advise.
# Pages land at 4 KiB; once they are all in place ferry-dest collapses the
# VMM's RAM into huge pages. A 48 MiB working set (10% zero pages) in a
# 64 MiB VM: the ranges the guest never wrote stay small.
case_thp_collapse() {
	shmem_thp advise || return
	migrate 48M "--rate 16 --thp -m 64M" "--mode precopy" || return
	thp_figures 0.5 || return
	pass "precopy, shmem advised for THP: $VERIFIED; $THP"
}
case_thp_collapse_postcopy() {
	shmem_thp advise || return
	migrate 48M "--rate 64 --thp -m 64M" "--mode postcopy" || return
	[ "$MODE" = postcopy ] || { fail "the migration ended in $MODE"; return; }
	thp_figures 0.5 || return
	pass "postcopy, shmem advised for THP: $VERIFIED, $FAULTS faults; $THP"
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

# Anonymous guest RAM (MAP_PRIVATE): the source reads it with
# process_vm_readv and tracks it with uffd-wp through the VMM's uffd, the
# destination places it with UFFDIO_COPY through the incoming VMM's.
case_anon_precopy() {
	migrate 64M "--rate 32 -b anon" "-n 2 --mode precopy" || return
	pass "precopy, anonymous RAM: $VERIFIED"
}
case_anon_postcopy() {
	migrate 64M "--rate 64 -b anon" "--mode hybrid -n 2" || return
	[ "$MODE" = postcopy ] || { fail "the migration ended in $MODE"; return; }
	placed_by copy || return
	pass "hybrid to postcopy, anonymous RAM: $VERIFIED, $FAULTS faults, placed by $PLACEMENT"
}
# Anonymous memory is the VMM's own: it cannot be mapped by an agent.
case_anon_map_refused() {
	start_vm src --ws 4M --rate 0 -b anon || return
	start_dest || return
	run_src 30 --dest "127.0.0.1:$PORT" $CTLS --mem-access map || return
	if [ $rc -eq 0 ]; then
		fail "ferry-source --mem-access map on anonymous RAM succeeded"
	elif [ "$(wc -l <"$CT/fsrc.log")" -ne 1 ] ||
		! grep -q 'anonymous.*cannot be mapped' "$CT/fsrc.log"; then
		fail "not one line saying why: $(cat "$CT/fsrc.log")"
	else
		pass "--mem-access map on anonymous RAM: refused ($(cat "$CT/fsrc.log"))"
	fi
}

# ksm_words FILE: the ksm block of a statistics file as "ranges pages run
# merge_across_nodes pages_sharing pss_kib"
ksm_words() {
	python3 - "$1" <<-'PY'
	import json, sys
	k = json.load(open(sys.argv[1]))["ksm"]
	print(k["advised_ranges"], k["hinted_pages"], k["run"],
	      k["merge_across_nodes"], k["pages_sharing"], k["vmm_pss_kib"])
	PY
}

# footprint WHEN: KSM's pages_sharing and the destination VMM's Pss now,
# as "WHEN: pages_sharing N, Pss N kB".
footprint() {
	echo "$1: pages_sharing $(cat /sys/kernel/mm/ksm/pages_sharing)," \
		"Pss $(sed -n 's/^Pss: *\([0-9]*\) kB/\1/p' \
			"/proc/${PID_OF[dst]}/smaps_rollup") kB"
}

# KSM hints: a guest of which half the pages are copies of eight
# templates moves twice, without hints and with, KSM running (set by the
# case, restored at its end, whatever happens). The footprint at
# completion and KSM_WAIT (8) s later is reported, not asserted (ksmd's
# pace is the host's); asserted: hints were given with them and not
# without, and the guest verified both times. Then ferry dest --ksm on
# a host where KSM is off starts it and sets it back when it ends.
case_anon_ksm_hints() {
	local run=/sys/kernel/mm/ksm/run old hints n=${KSM_WAIT:-8} report=""
	local vmargs="--rate 0 --dup 50 --zero 0 -b anon" ranges
	[ -w $run ] || { skip "cannot change $run"; return; }
	old=$(cat $run)
	trap 'case_end; echo "'"$old"'" >'"$run" EXIT
	echo 1 >$run
	for hints in no yes; do
		local dargs=--no-ksm-hints
		[ $hints = yes ] && dargs=
		DARGS=$dargs migrate_moved 32M "$vmargs" "--mode precopy" $((n + 12)) ||
			return
		ksm_words "$CT/dest.json" >"$CT/ksm-$hints.txt" ||
			{ fail "no ksm section in dest.json: $(cat "$CT/ksm-$hints.txt")"; return; }
		set -- $(cat "$CT/ksm-$hints.txt")
		ranges=$1
		if [ $hints = yes ] && [ "$ranges" -eq 0 ]; then
			fail "no KSM hints given for a guest of 50% duplicates"; return
		elif [ $hints = no ] && [ "$ranges" -ne 0 ]; then
			fail "KSM hints given with --no-ksm-hints"; return
		fi
		report="$report; hints $hints: $1 ranges ($2 pages) advised, run $3, merge_across_nodes $4, at completion pages_sharing $5, Pss $6 kB"
		sleep "$n"
		report="$report, $(footprint "${n}s later")"
		migrate_verified 32M $((n + 12)) || return
		for f in src.json dest.json dst.log fdest.log; do
			mv "$CT/$f" "$CT/$hints-$f"
		done
	done
	echo "$old" >$run
	[ "$old" = 0 ] || { pass "KSM hints given and guests verified${report} (--ksm not tried: KSM ran already)"; return; }
	DARGS=--ksm migrate_moved 4M "--rate 0 -b anon" "--mode precopy" || return
	grep -q 'KSM started (run 1, was 0' "$CT/fdest.log" ||
		{ fail "ferry dest --ksm did not say it started KSM: $(cat "$CT/fdest.log")"; return; }
	[ "$(cat $run)" = 0 ] ||
		{ fail "ferry dest --ksm left $run at $(cat $run)"; return; }
	migrate_verified 4M 8 || return
	pass "KSM hints given and guests verified${report}; --ksm started KSM and set it back"
}

# KSM hints from the source's KSM: a guest of which half the pages are
# copies of eight templates, its anonymous RAM advised MADV_MERGEABLE
# (ferry vm --mergeable, as QEMU's mem-merge=on), with KSM running fast
# (run, pages_to_scan and sleep_millisecs set by the case, restored at its
# end whatever happens) until KSM merged some of its pages (bounded; a
# skip if it never does). Then it moves, the incoming VM not mergeable:
# the source (root) reads the merged pages from the VMM's pagemap and
# /proc/kpageflags and tells the destination, which must count them
# (ksm.source_ksm_pages > 0) among the pages it advised; the guest
# verified there.
case_anon_ksm_source() {
	local k=/sys/kernel/mm/ksm old_run old_scan old_sleep merging=0 i json
	[ -w $k/run ] && [ -w $k/pages_to_scan ] ||
		{ skip "cannot change $k"; return; }
	[ -r /proc/kpageflags ] && head -c 8 /proc/kpageflags >/dev/null 2>&1 ||
		{ skip "/proc/kpageflags unreadable (not root)"; return; }
	old_run=$(cat $k/run) old_scan=$(cat $k/pages_to_scan)
	old_sleep=$(cat $k/sleep_millisecs)
	trap 'case_end; echo '"$old_scan"' >'"$k"'/pages_to_scan; echo '"$old_sleep"' >'"$k"'/sleep_millisecs; echo '"$old_run"' >'"$k"'/run' EXIT
	echo 4096 >$k/pages_to_scan && echo 10 >$k/sleep_millisecs &&
		echo 1 >$k/run || { fail "cannot start KSM"; return; }
	start_vm src --ws 32M --rate 0 --dup 50 --zero 0 -b anon --mergeable \
		--heartbeats 40 || return
	start_vm dst --ws 32M --rate 0 --dup 50 --zero 0 -b anon --incoming ||
		return
	wait_filled src || return
	# This VMM's own merged pages where the kernel says (5.18+), else
	# the host's.
	for i in $(seq 1 60); do
		if [ -r "/proc/${PID_OF[src]}/ksm_merging_pages" ]; then
			merging=$(cat "/proc/${PID_OF[src]}/ksm_merging_pages")
		else
			merging=$(cat $k/pages_sharing)
		fi
		[ "${merging:-0}" -gt 0 ] && break
		sleep 0.5
	done
	[ "${merging:-0}" -gt 0 ] ||
		{ skip "KSM merged nothing of the source VM in 30 s"; return; }
	start_dest || return
	run_src 120 --dest "127.0.0.1:$PORT" $CTLS --mode precopy \
		--json "$CT/src.json" || return
	[ $rc -eq 0 ] || { fail "ferry-source exit $rc: $(cat "$CT/fsrc.log")"; return; }
	wait_exit dest 30 "ferry-dest to finish" || return
	[ $rc -eq 0 ] || { fail "ferry-dest exit $rc: $(tail -n 1 "$CT/fdest.log")"; return; }
	json=$(python3 - "$CT/src.json" "$CT/dest.json" <<-'PY'
	import json, sys
	s = json.load(open(sys.argv[1]))
	k = json.load(open(sys.argv[2]))["ksm"]
	print(s.get("ksm_source_pages", -1), k["source_ksm_pages"],
	      k["hinted_pages"], k["advised_ranges"])
	PY
	) || { fail "no ksm figures in the JSON"; return; }
	set -- $json
	[ "$1" -gt 0 ] ||
		{ fail "the source told no KSM-merged pages ($1; $merging merging before): $(cat "$CT/fsrc.log")"; return; }
	[ "$2" -gt 0 ] && [ "$2" -le "$3" ] ||
		{ fail "the destination counted $2 source-KSM hints of $3 hinted pages (source said $1)"; return; }
	migrate_verified 32M 40 || return
	pass "KSM had merged $merging pages of the source VM; the source told $1, the destination advised $2 of them once landed, among $3 hinted pages ($4 ranges); guest verified"
}

# units_of: both agents report the guest RAM as having travelled in
# 4 KiB units (MIG_FEAT_PAGESIZES, "unit_bytes" in their statistics);
# sets UNITS to the figure.
units_of() {
	local d
	UNITS=$(json unit_bytes "$CT/src.json") d=$(json unit_bytes "$CT/dest.json")
	[ -n "$UNITS" ] && [ "$UNITS" = "$d" ] && [ "$UNITS" -gt 0 ] ||
		{ fail "no 4 KiB units negotiated: source ${UNITS:-none}, destination ${d:-none}"; return 1; }
}

# mixed "SOURCE VM ARGS" "DEST VM ARGS" "VM ARGS" "SOURCE ARGS"
# [HEARTBEATS]: migrate() of a 32 MiB working set between the two ends'
# backings, whose page sizes differ: both agents must say the RAM went in
# 4 KiB units (UNITS).
mixed() {
	SRCVM=$1 DSTVM=$2 migrate 32M "$3" "$4" ${5:-} || return
	units_of
}

# A 4 KiB (shmem) guest lands on 2 MiB hugetlb: its pages travel as
# 4 KiB units, which the destination writes into its huge pages.
case_precopy_4k_to_2m() {
	hugetlb_pool 24 || return
	mixed "" "-b hugetlb-2M" "--rate 16 -m 40M" "--mode precopy -D 50" ||
		return
	pass "precopy, shmem to hugetlb-2M: $VERIFIED, $UNITS bytes in 4 KiB units"
}

# The same in postcopy: a fault on a 2 MiB page asks for the 4 KiB units
# it lacks, and the page is mapped whole once they are in.
case_postcopy_4k_to_2m() {
	hugetlb_pool 24 || return
	mixed "" "-b hugetlb-2M" "--rate 32 -m 40M" "--mode postcopy" || return
	placed_by minor || return
	[ "${FAULTS:-0}" -gt 0 ] || { fail "no postcopy fault was served"; return; }
	pass "postcopy, shmem to hugetlb-2M: $VERIFIED, $FAULTS faults on 2 MiB pages"
}

# A 2 MiB hugetlb guest lands on 4 KiB shmem: the source reads its huge
# pages 4 KiB at a time, the destination places them as its own pages.
case_precopy_2m_to_4k() {
	hugetlb_pool 24 || return
	mixed "-b hugetlb-2M" "" "--rate 16 -m 40M" "--mode precopy -D 50" ||
		return
	pass "precopy, hugetlb-2M to shmem: $VERIFIED, $UNITS bytes in 4 KiB units"
}

case_postcopy_2m_to_4k() {
	hugetlb_pool 24 || return
	mixed "-b hugetlb-2M" "" "--rate 32 -m 40M" "--mode postcopy" || return
	placed_by minor || return
	pass "postcopy, hugetlb-2M to shmem: $VERIFIED, $FAULTS faults"
}

# 1 GiB pages, where the kernel finds a contiguous GiB at run time: a
# 4 KiB guest onto one and back, in precopy. Write-protect tracks a
# 1 GiB source page whole: every round reads and hashes the GiB, and
# sends the units that changed.
case_precopy_4k_to_1g() {
	hugetlb_pool 1 1048576 || return
	mixed "" "-b hugetlb-1G" "--rate 16 -m 1G" "--mode precopy -D 200" 30 ||
		return
	pass "precopy, shmem to hugetlb-1G: $VERIFIED, $UNITS bytes in 4 KiB units"
}

case_precopy_1g_to_4k() {
	hugetlb_pool 1 1048576 || return
	mixed "-b hugetlb-1G" "" "--rate 16 -m 1G" "--mode precopy -D 3000" 30 ||
		return
	pass "precopy, hugetlb-1G to shmem: $VERIFIED, $UNITS bytes in 4 KiB units"
}

# Postcopy onto a 1 GiB page (minor mode): its 4 KiB units are written
# into the page cache through the agent's mapping, a fault asks for the
# units it lacks, and the page is mapped with one UFFDIO_CONTINUE once
# all of them are in.
case_postcopy_4k_to_1g() {
	hugetlb_pool 1 1048576 || return
	mixed "" "-b hugetlb-1G" "--rate 16 -m 1G" "--mode postcopy" 30 ||
		return
	placed_by minor || return
	[ "${FAULTS:-0}" -gt 0 ] || { fail "no postcopy fault was served"; return; }
	pass "postcopy, shmem to hugetlb-1G: $VERIFIED, $FAULTS faults on the 1 GiB page"
}

# 1 GiB pages at both ends in hybrid (precopy rounds, then postcopy):
# they travel in 4 KiB units (MIG_FEAT_HUGE_UNITS), so that the
# destination assembles its page as above.
case_postcopy_hugetlb_1g() {
	hugetlb_pool 2 1048576 || return
	migrate 512M "--rate 16 -m 1G -b hugetlb-1G" "--mode hybrid" 30 ||
		return
	[ "$MODE" = postcopy ] || { fail "hybrid ended in $MODE"; return; }
	placed_by minor || return
	units_of || return
	pass "hybrid, hugetlb-1G at both ends: $VERIFIED, $FAULTS faults, $UNITS bytes in 4 KiB units"
}

# With --uffd-mode missing (UFFDIO_COPY only): a 2 MiB page fed 4 KiB
# units is assembled in a stage and placed whole once its units are in;
# a hybrid run, so that the pages precopy left in the page cache and the
# source then discarded go through the stage too.
case_postcopy_4k_to_2m_missing() {
	hugetlb_pool 24 || return
	DARGS="--uffd-mode missing" mixed "" "-b hugetlb-2M" \
		"--rate 32 -m 40M" "--mode hybrid" || return
	[ "$MODE" = postcopy ] || { fail "hybrid ended in $MODE"; return; }
	placed_by copy || return
	pass "hybrid, shmem to hugetlb-2M, UFFDIO_COPY of assembled pages: $VERIFIED, $FAULTS faults"
}

# short_vm: the RAM of a VM on 2 MiB pages that the pool cannot hold, with
# the tests' hugetlb lock held: NEED huge pages (at least the 20 of a
# 32 MiB working set, 4 more than are free), MEM its size, FREE the free
# and unreserved ones now.
short_vm() {
	hugetlb_hold || return
	FREE=$(hugetlb_unreserved)
	NEED=$((FREE + 4 > 20 ? FREE + 4 : 20)) MEM=$(((FREE + 4 > 20 ? FREE + 4 : 20) * 2))M
}

# An incoming VM on 2 MiB hugetlb that holds no huge pages (--no-reserve)
# and a pool too small for it: ferry dest refuses before accepting the
# migration, in one line with the numbers and the command that reserves
# them; the pool is untouched and the source guest runs on.
case_hugetlb_refused() {
	short_vm || return
	refused_line || return
	case $LINE in
	*"needs $NEED free 2048 kB huge pages, the pool has $FREE free"*"echo"*"$POOL"*"--reserve-hugepages"*) ;;
	*) fail "not the refusal with the numbers: $LINE"; return ;;
	esac
	grep -q "the destination refused: RAM region 0 needs $NEED" "$CT/fsrc.log" ||
		{ fail "the source was not told why: $(cat "$CT/fsrc.log")"; return; }
	[ "$(cat "$POOL")" = "$POOL_OLD" ] ||
		{ fail "the pool changed to $(cat "$POOL") from $POOL_OLD"; return; }
	still_running src && pass "refused, source guest runs on: $LINE"
}

# refused_line [DEST ARGS]: short_vm's VM (its destination holding no
# huge pages) offered to ferry dest (with DEST ARGS), which has to give
# up in one line: LINE.
refused_line() {
	start_vm src --ws 32M --rate 16 -m $MEM || return
	start_vm dst --ws 32M --rate 16 -m $MEM -b hugetlb-2M --no-reserve \
		--incoming || return
	wait_filled src || return
	start_dest "$@" || return
	run_src 30 --dest "127.0.0.1:$PORT" $CTLS || return
	wait_exit dest 30 "ferry-dest to give up" || return
	[ $rc -ne 0 ] || { fail "ferry-dest exit 0 without the huge pages"; return 1; }
	LINE=$(grep -v 'listening on port\|TLSv1' "$CT/fdest.log")
	[ "$(printf '%s\n' "$LINE" | wc -l)" -eq 1 ] ||
		{ fail "ferry-dest said more than one line: $LINE"; return 1; }
}

# The same VM with ferry dest --reserve-hugepages, in postcopy: the pool
# grows by what the VM lacks, the guest verifies its memory there, and
# the pool is back to its old size once ferry dest has ended.
case_hugetlb_reserved() {
	local added
	short_vm || return
	DARGS=--reserve-hugepages DSTVM="-b hugetlb-2M --no-reserve" \
		migrate 32M "--rate 32 -m $MEM" "--mode postcopy" || return
	units_of || return
	added=$(json hugepages_added "$CT/dest.json")
	[ "$added" = $((NEED - FREE)) ] ||
		{ fail "ferry dest added ${added:-no} huge pages, the VM lacked $((NEED - FREE))"; return; }
	[ "$(cat "$POOL")" = "$POOL_OLD" ] ||
		{ fail "the pool is $(cat "$POOL") after ferry dest, was $POOL_OLD"; return; }
	pass "postcopy, shmem to hugetlb-2M with --reserve-hugepages: $added huge pages added and given back, $VERIFIED"
}

# node0_pool: node 0's pool of 2 MiB pages now.
node0_pool() {
	cat /sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages
}

# The refusal of hugetlb_refused with --placement bind:0: the numbers
# and the command are node 0's.
case_hugetlb_refused_node() {
	local npool node0=/sys/devices/system/node/node0/hugepages/hugepages-2048kB
	short_vm || return
	[ -w $node0/nr_hugepages ] || { skip "no node 0 pool to change"; return; }
	npool=$(node0_pool)
	refused_line --placement bind:0 || return
	case $LINE in
	*"needs $NEED free 2048 kB huge pages on node 0, whose pool has"*"echo $((npool + NEED - FREE)) > $node0/nr_hugepages"*"--reserve-hugepages"*) ;;
	*) fail "not node 0's refusal with the numbers: $LINE"; return ;;
	esac
	[ "$(node0_pool)" = "$npool" ] ||
		{ fail "node 0's pool changed to $(node0_pool) from $npool"; return; }
	still_running src && pass "refused, source guest runs on: $LINE"
}

# --reserve-hugepages with --placement bind:0: node 0's pool grows by what
# the VM lacks (not the system-wide one), the guest verifies its memory
# there, and node 0's pool is back to its size once ferry dest has ended.
case_hugetlb_reserved_node() {
	local added npool
	short_vm || return
	[ -w /sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages ] ||
		{ skip "no node 0 pool to change"; return; }
	npool=$(node0_pool)
	DARGS="-v --reserve-hugepages --placement bind:0" \
	DSTVM="-b hugetlb-2M --no-reserve" \
		migrate 32M "--rate 32 -m $MEM" "--mode postcopy" || return
	added=$(json hugepages_added "$CT/dest.json")
	[ "$added" = $((NEED - FREE)) ] ||
		{ fail "ferry dest added ${added:-no} huge pages, the VM lacked $((NEED - FREE))"; return; }
	grep -q "reserved $added more 2048 kB huge pages of node 0" "$CT/fdest.log" ||
		{ fail "ferry dest did not grow node 0's pool: $(cat "$CT/fdest.log")"; return; }
	[ "$(node0_pool)" = "$npool" ] ||
		{ fail "node 0's pool is $(node0_pool) after ferry dest, was $npool"; return; }
	[ "$(cat "$POOL")" = "$POOL_OLD" ] ||
		{ fail "the pool is $(cat "$POOL") after ferry dest, was $POOL_OLD"; return; }
	pass "postcopy onto hugetlb-2M bound to node 0 with --reserve-hugepages: $added huge pages added to node 0 and given back, $VERIFIED"
}

# 2M hugetlb: whole huge pages are placed atomically. The pool is
# system-wide: the tests' lock is held while it is changed.
case_postcopy_hugetlb() {
	hugetlb_pool 48 || return
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
		--bandwidth 8 --io-timeout 3s --recover-timeout 2
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

# The incoming VM dies mid-postcopy: ferry-dest's userfaultfd calls fail
# on a process that is gone. It says so and gives up (no recovery can
# bring pages to it), and ferry-source stops too, the source VM paused
# with its memory, instead of reconnecting for ever.
case_postcopy_dest_vm_killed() {
	start_vm src --ws 256M --rate 16 || return
	start_vm dst --ws 256M --rate 16 --incoming || return
	wait_filled src || return
	start_dest || return
	start_src fsrc --dest "127.0.0.1:$PORT" $CTLS --mode postcopy \
		--bandwidth 8 --io-timeout 3s --recover-timeout 5
	wait_hb dst 1 || return # the guest runs at the destination
	kill -9 "${PID_OF[dst]}"
	wait_exit dest 30 "ferry-dest to give up" || return
	[ $rc -eq 1 ] || { fail "ferry-dest exit $rc: $(tail -n 3 "$CT/fdest.log")"; return; }
	grep -q "process is gone" "$CT/fdest.log" ||
		{ fail "ferry-dest did not say the VM is gone: $(tail -n 3 "$CT/fdest.log")"; return; }
	wait_exit fsrc 30 "ferry-source to give up" || return
	if [ $rc -ne 1 ]; then
		fail "ferry-source exit $rc: $(tail -n 3 "$CT/fsrc.log")"
	elif ! alive "${PID_OF[src]}"; then
		fail "the source VM (holding the memory) exited"
	elif [ "$(grep -c 'postcopy recovered' "$CT/fsrc.log")" -gt 1 ]; then
		fail "ferry-source recovered $(grep -c 'postcopy recovered' "$CT/fsrc.log") times into a dead VM"
	else
		pass "postcopy, incoming VM killed: ferry-dest: $(grep -o 'the incoming VM.s process is gone' "$CT/fdest.log" | head -n 1); source VM paused with its memory"
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
		--bandwidth 12 --io-timeout 2s --json "$CT/src.json" \
		--recover-timeout 30 --events "$CT/src.events"
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
	# The events say so, in order: lost, then reconnected.
	python3 "$(dirname "$PROXY")/events.py" has "$CT/src.events" \
		'e["event"] == "recovery" and e["state"] == "lost"' &&
		python3 "$(dirname "$PROXY")/events.py" eval "$CT/src.events" \
			'[e["state"] for e in ev if e["event"] == "recovery"][-1]' |
		grep -qx reconnected ||
		{ fail "the events do not say lost, then reconnected: $(grep recovery "$CT/src.events")"; return; }
	pass "postcopy, connection cut and recovered: $VERIFIED"
}

# The source agent is killed mid-postcopy while its VMM lives: a new
# ferry-source --recover finishes the migration.
# manual_recover "VM ARGS" "SOURCE VM ARGS" "DEST VM ARGS": the postcopy
# source agent killed, a new ferry-source --recover finishes the job.
manual_recover() {
	start_vm src --ws 64M --rate 32 --heartbeats 10 $1 $2 || return
	start_vm dst --ws 64M --rate 32 --incoming $1 $3 || return
	wait_filled src || return
	wait_hb src 2 || return
	start_dest || return
	start_src fsrc1 --dest "127.0.0.1:$PORT" $CTLS --mode postcopy \
		--bandwidth 8 --io-timeout 2s
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
	verified dst "$(pages 64M)"
}

case_postcopy_manual_recover() {
	manual_recover "" "" "" || return
	pass "postcopy, source agent killed, ferry-source --recover: $VERIFIED"
}

# The same from 2 MiB hugetlb to shmem: the new agent offers its own page
# sizes, and the destination's WELCOME gives it the 4 KiB units.
case_postcopy_recover_2m_to_4k() {
	hugetlb_pool 40 || return
	manual_recover "-m 72M" "-b hugetlb-2M" "" || return
	units_of || return
	pass "postcopy 2M to 4K, source agent killed, ferry-source --recover: $VERIFIED"
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
	start_src fsrc --dest "127.0.0.1:$PORT" $CTLS --mode precopy --bandwidth 16 \
		--io-timeout 3s
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
	start_dest --io-timeout 3s || return
	start_src fsrc --dest "127.0.0.1:$PORT" $CTLS --mode precopy --bandwidth 16
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
	for a in "$SRC --vm x --dest 127.0.0.1:1" "$DST --vm x --listen 1"; do
		out=$(timeout -s KILL 10 $a --fault-priority high 2>&1)
		rc=$?
		if [ $rc -ne 2 ] || [ "$(echo "$out" | wc -l)" -ne 1 ] ||
		   ! grep -q -- "--fault-priority takes rt or" <<<"$out"; then
			fail "${a%% *} --fault-priority high: rc $rc: $out"
			return
		fi
	done
	pass "usage errors: one line, non-zero"
}

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

# ---- placement ----

# placement FILE: the numa block of a statistics file as words:
# policy= checked= present= absent= as_planned= (a fraction), planned<N>=
# and placed<N>= (MiB by node), pages<N>= (4 KiB pages placed by node),
# samples= hot= hot_top= (tiered)
placement() {
	python3 - "$1" <<'PY'
import json, sys
try:
    p = json.load(open(sys.argv[1]))["numa"]
except (OSError, ValueError, KeyError) as e:
    print("error=%s" % type(e).__name__)
    sys.exit(0)
w = ["policy=%s" % p["policy"].replace(" ", "_"),
     "checked=%s" % str(p["checked"]).lower()]
if p["checked"]:
    w += ["present=%d" % p["pages_present"], "absent=%d" % p["pages_absent"],
          "as_planned=%.6f" % p["as_planned"]]
for n in p["nodes"]:
    w.append("planned%d=%.1f" % (n["node"], n["planned_bytes"] / 2**20))
    if "placed_bytes" in n:
        w.append("placed%d=%.1f" % (n["node"], n["placed_bytes"] / 2**20))
        w.append("pages%d=%d" % (n["node"], n["placed_bytes"] // 4096))
if "heat_samples" in p:
    w += ["samples=%d" % p["heat_samples"], "hot=%d" % p["hot_chunks"],
          "hot_top=%d" % p["hot_chunks_on_top_tier"]]
w += ["revisions=%d" % p.get("plan_revisions", 0),
      "revised_bytes=%d" % p.get("revised_bytes", 0)]
print(" ".join(w))
PY
}

# placed_as_planned WORDS: at least 99.9% of the pages in memory are on
# their planned node, and some are; sets PLACED to a summary
placed_as_planned() {
	local w=$1 f
	f=$(field as_planned "$w")
	[ "$(field checked "$w")" = true ] ||
		{ fail "the placement was not checked: $w"; return; }
	[ "$(field present "$w")" -gt 0 ] 2>/dev/null ||
		{ fail "no page in memory to check: $w"; return; }
	awk -v f="$f" 'BEGIN { exit !(f >= 0.999) }' ||
		{ fail "only $f of the pages as planned: $w"; return; }
	PLACED=$(echo "$w" | tr ' ' '\n' | grep -E '^(planned|placed)[0-9]' |
		tr '\n' ' ')
	PLACED="MiB ${PLACED% }, $(field present "$w") pages in memory, as_planned=$f"
}

# On this one-node host: local and bind:0 put everything on node 0, the
# destination checks it after completion, and the source reports the plan
# it was sent. placement_case POLICY [VM ARGS]
placement_case() {
	local w ws
	DARGS="--placement $1"
	migrate 32M "--rate 8 ${2:-}" "" || return
	w=$(placement "$CT/dest.json")
	[ "$(field policy "$w")" = "$1" ] ||
		{ fail "the destination's statistics say: $w"; return; }
	placed_as_planned "$w" || return
	[ "$(field placed0 "$w")" != 0.0 ] ||
		{ fail "nothing placed on node 0: $w"; return; }
	ws=$(placement "$CT/src.json")
	[ "$(field planned0 "$ws")" = "$(field planned0 "$w")" ] ||
		{ fail "the source was told '$ws', the destination planned '$w'"; return; }
	pass "placement $1${2:+ ($2)}: $PLACED; guest $VERIFIED"
}
# A tiered plan revised in precopy, on this one-node host: a guest that
# writes its memory in order, slowly (4 MiB/s, so its hot 2 MiB chunks
# move on), migrated at 32 MiB/s (round 0 of 64 MiB takes about 2 s,
# in which the writing moves some chunks on): the source's heat map
# changes after round 0 and it sends HEAT again, the destination revises
# its plan. Asserted: at least one revision, as many at both ends, none
# moving a byte between nodes (there is one), every page as planned and
# the guest verified.
case_placement_revised() {
	local w ws r hn
	DARGS="--placement tiered"
	migrate 64M "--rate 4 --pattern sequential" \
		"--mode precopy --bandwidth 32" || return
	w=$(placement "$CT/dest.json")
	ws=$(placement "$CT/src.json")
	r=$(field revisions "$w")
	[ "${r:-0}" -ge 1 ] ||
		{ fail "no plan revision at the destination: $w (source: $ws)"; return; }
	[ "$(field revisions "$ws")" = "$r" ] ||
		{ fail "the source sent $(field revisions "$ws") heat maps again, the destination revised $r times"; return; }
	[ "$(field revised_bytes "$w")" = 0 ] ||
		{ fail "a revision moved bytes between the nodes of a one-node host: $w"; return; }
	placed_as_planned "$w" || return
	hn=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["numa"].get("hotness", ""))' "$CT/src.json")
	[[ "$hn" == "writes and reads (DAMON "* || "$hn" == "writes only ("?*")" ]] ||
		{ fail "the source's JSON does not say where the hotness came from: '$hn'"; return; }
	pass "tiered plan revised $r times in precopy (0 bytes moved: one node), $(field samples "$w") samples at the end; hotness from $hn; $PLACED; guest $VERIFIED"
}
# DAMON's access hotness (guestmem/access.c) on a process reading 4 of
# its 32 chunks (tests/access-probe): on this host, and inside the
# nested one (nested_damon); a kernel whose DAMON cannot monitor a
# process, or a DAMON in use by someone else, is a skip with its reason.
damon_probe_case() {
	local out
	out=$("$@" 2>&1)
	rc=$?
	echo "$out" >"$CT/probe.log"
	case $rc in
	0) pass "DAMON saw the 4 chunks read and no other: $(grep '^ACCESS' <<<"$out")" ;;
	77) skip "$(sed -n 's/^SKIP //p' <<<"$out" | head -n 1)" ;;
	*) fail "access-probe exit $rc: $(tr '\n' ' ' <<<"$out" | cut -c1-300)" ;;
	esac
}
case_damon_access() { damon_probe_case "$B/tests/access-probe"; }
case_placement_local() { placement_case local; }
case_placement_bind0() { placement_case bind:0; }
# Anonymous RAM: the incoming VMM binds its own range (ADVISE BIND), the
# destination asks where the pages are with move_pages on its pid.
case_anon_placement_bind0() { placement_case bind:0 "-b anon"; }

# A plan naming a node this host lacks is refused in one line before a
# page is sent; the source says so and its VM runs on.
case_placement_refused() {
	start_vm src --ws 16M --rate 8 || return
	start_vm dst --ws 16M --incoming || return
	wait_filled src || return
	start_dest --placement bind:1 || return
	run_src 60 --dest "127.0.0.1:$PORT" $CTLS || return
	[ $rc -eq 1 ] || { fail "ferry-source exit $rc: $(cat "$CT/fsrc.log")"; return; }
	grep -q 'this host has no node 1' "$CT/fsrc.log" ||
		{ fail "the source's line: $(tail -n 1 "$CT/fsrc.log")"; return; }
	wait_exit dest 10 "ferry-dest to give up" || return
	[ $rc -eq 1 ] || { fail "ferry-dest exit $rc"; return; }
	still_running src || return
	pass "placement bind:1 on a one-node host refused before any page: $(tail -n 1 "$CT/fsrc.log" | cut -c1-100); the source VM runs on"
}

# ---- the nested NUMA host ----

NESTED=$(cd "$(dirname "$0")/.." && pwd)/tools/nested/host
ND=$T/nested # its read-write share, shared by the nested_* cases
# The stream into the nested host is plain TCP: AES-GCM runs at 7-8 MB/s
# under TCG there (openssl speed inside), which would make every case a
# minute long; TLS itself is what the cases above test.
NTLS=--insecure
# nested CMD...: a command inside, its output on stdout, bounded
nested() { "$NESTED" run "$ND" -t 60 "$@"; }

case_nested_boot() {
	local out
	mkdir -p "$ND"
	out=$("$NESTED" start "$ND" 2>&1)
	rc=$?
	cp "$ND/console.log" "$CT/console.log" 2>/dev/null
	if [ $rc -eq 77 ]; then
		echo "$out" >"$ND/skip"
		skip "$out"
		return
	fi
	[ $rc -eq 0 ] || { echo "$out" >"$ND/skip"; fail "$out"; return; }
	[ "$(field nodes "$out")" = 2 ] || { fail "inside: $out"; return; }
	nested 'grep -H . /sys/devices/virtual/memory_tiering/*/nodelist' \
		>"$CT/tiers.log" 2>&1
	pass "nested NUMA host up: $out; tiers $(sed 's|.*/memory_tier||' "$CT/tiers.log" | tr '\n' ' ')"
}

# nested_ready: the nested host runs (else this case skips, saying why)
nested_ready() {
	if [ -e "$ND/skip" ]; then
		skip "no nested host: $(cat "$ND/skip")"
		return 1
	fi
	[ -e "$ND/qemu.pid" ] || { skip "no nested host (nested_boot did not run)"; return 1; }
	alive "$(cat "$ND/qemu.pid")" || {
		fail "the nested host is gone: $(tail -n 3 "$ND/console.log" | tr -d '\r' | tr '\n' ' ')"
		return 1
	}
	# A host that stopped running jobs fails each case at once, saying
	# so, rather than each waiting out its own timeouts.
	if [ -e "$ND/wedged" ] || ! "$NESTED" run "$ND" -t 30 true >/dev/null 2>&1; then
		touch "$ND/wedged"
		fail "the nested host runs but answers no job (30 s): $(tail -n 2 "$ND/console.log" | tr -d '\r' | tr '\n' ' ')"
		return 1
	fi
}

# NC names this case's jobs, socket and files inside (the case's name; a
# case that migrates twice names each run)
NC=
nc() { echo "${NC:-${CT##*/}}"; }
# nested_job NAME CMD: CMD inside in the background, named after this run
nested_job() { "$NESTED" spawn "$ND" "$(nc)-$1" "$2"; }
# nested_done NAME SECONDS: until that job ended; its output in NAME.log
nested_done() {
	local j=$ND/jobs/$(nc)-$1
	wait_until "$2" "$1 inside to end" - test -e "$j.rc" || return
	cp "$j.out" "$CT/$1.log"
	rc=$(cat "$j.rc")
}

# nested_start POLICY "VM ARGS" [DEST ARGS]: the incoming VM and
# ferry-dest under POLICY inside, listening on the forwarded port (the
# VM with -v, whose first line says where its RAM is mapped)
nested_start() {
	local c
	c=$(nc)
	nested_job ndst "echo \$\$ >/run/$c.pid; exec $VM -v --accel none -s /run/$c.sock $2 --incoming"
	nested_job fdest "echo \$\$ >/run/$c.dpid; while ! test -S /run/$c.sock; do sleep 0.1; done; exec $DST --vm /run/$c.sock --listen 0.0.0.0:7000 $NTLS --accept-timeout 120 --json $ND/$c-dest.json --placement $1 ${3:-}"
	wait_until 60 "ferry-dest to listen inside" - \
		grep -q 'listening on port' "$ND/jobs/$c-fdest.out"
}

PAGES=$B/tools/nested/pages
# nested_pages START [LEN]: where the running guest's RAM [START, +LEN)
# (guest-physical; LEN: to its end) is inside: "node0=N node1=N absent=N"
# (tools/nested/pages); pages_cmd START [LEN]: that command line inside
pages_cmd() {
	local l ram mib
	l=$(grep -m 1 ' RAM at 0x' "$CT/ndst.log")
	ram=$(echo "$l" | sed -n 's/.* RAM at \(0x[0-9a-f]*\).*/\1/p')
	mib=$(echo "$l" | sed -n 's/.* \([0-9]*\) MiB [a-z0-9-]* RAM at.*/\1/p')
	[ -n "$ram" ] && [ -n "$mib" ] ||
		{ echo "no 'RAM at' line from the VM inside"; return 1; }
	echo "$PAGES \$(cat /run/$(nc).pid) $((ram + $1)) ${2:-$((mib * 1048576 - $1))}"
}
nested_pages() {
	local cmd
	cmd=$(pages_cmd "$@") || { echo "$cmd"; return 1; }
	nested "$cmd"
}

# nested_hot: where the guest's hot set (the first hot% of its working
# set, by the source guest's GUEST line; one vCPU) is inside; sets HOT to
# nested_pages' line and HOT0 to the share on node 0 of its pages in
# memory. Nothing when the guest has no hot set.
nested_hot() {
	local g n
	HOT= HOT0=
	g=$(grep -m 1 '^GUEST ' "$CT/src.log")
	[ "$(field hot "$g")" -gt 0 ] 2>/dev/null || return 0
	n=$(($(field pages "$g") * $(field hot "$g") / 100))
	HOT=$(nested_pages "$(field ws_gpa "$g")" $((n * 4096))) ||
		{ fail "where the hot set is inside: $HOT"; return; }
	HOT0=$(awk -v a="$(field node0 "$HOT")" -v b="$(field node1 "$HOT")" \
		'BEGIN { if (a + b) printf "%.4f", a / (a + b) }')
	[ -n "$HOT0" ] || { fail "no page of the hot set in memory: $HOT"; return; }
}

# nested_migrate POLICY "VM ARGS" [DEST ARGS]: a guest on this host
# migrated into the nested host under POLICY; the guest runs on there
# (two heartbeats, no error). Sets W to the destination's placement and,
# for a guest with a hot set, HOT and HOT0 (nested_hot). NESTED_AFTER
# names a function run before the VM inside is stopped.
nested_migrate() {
	local r
	nested_run "$@"
	r=$?
	nested_stop
	return $r
}
# nested_stop: this run's VM and ferry-dest inside ended (waited for,
# bounded), whether the run passed or not
nested_stop() {
	local c
	c=$(nc)
	nested "for f in /run/$c.pid /run/$c.dpid; do test -e \$f && kill -9 \$(cat \$f) 2>/dev/null; rm -f \$f; done; true" >/dev/null 2>&1
}
nested_run() {
	local c i
	c=$(nc)
	start_vm src $2 --heartbeats 600 || return
	nested_start "$1" "$2" "${3:-}" || return
	wait_filled src || return
	run_src 180 --dest "127.0.0.1:$(cat "$ND/port")" $NTLS ${NSRC_ARGS:-} \
		--json "$CT/src.json" || return
	[ $rc -eq 0 ] || { fail "ferry-source exit $rc: $(cat "$CT/fsrc.log")"; return; }
	nested_done fdest 30 || return
	[ "$rc" = 0 ] || { fail "ferry-dest inside exit $rc: $(tail -n 1 "$CT/fdest.log")"; return; }
	for ((i = 0; i < 300; i++)); do
		cp "$ND/jobs/$c-ndst.out" "$CT/ndst.log"
		[ "$(heartbeats ndst)" -ge 2 ] && break
		sleep 0.2
	done
	i=1
	[ "$(heartbeats ndst)" -ge 2 ] && nested_hot && ${NESTED_AFTER:-:} && i=0
	[ "$(heartbeats ndst)" -ge 2 ] || { fail "the guest did not run on inside"; return; }
	[ $i -eq 0 ] || return
	if has_line ndst '^ERR' || grep -q '^HB .* errors=[1-9]' "$CT/ndst.log"; then
		fail "the guest inside found a bad page: $(grep -m 1 -e '^ERR' -e 'errors=[1-9]' "$CT/ndst.log")"
		return
	fi
	W=$(placement "$ND/$c-dest.json")
	placed_as_planned "$W"
}

case_nested_local() {
	nested_ready || return
	nested_migrate local "--ws 32M --rate 2" || return
	[ "$(field placed1 "$W")" = 0.0 ] || { fail "local put pages on node 1: $W"; return; }
	pass "nested local: $PLACED"
}
case_nested_bind1() {
	nested_ready || return
	nested_migrate bind:1 "--ws 32M --rate 2" || return
	[ "$(field placed0 "$W")" = 0.0 ] || { fail "bind:1 put pages on node 0: $W"; return; }
	pass "nested bind:1 (the CPU-less node): $PLACED"
}
case_nested_interleave() {
	nested_ready || return
	nested_migrate interleave:0-1 "--ws 32M --rate 2" || return
	pass "nested interleave:0-1: $PLACED"
}
# A guest writing only the first 10% of its memory: the source's samples
# find those chunks, and the plan puts every one of them on node 0 (the
# top tier), what is beyond the 25% share on node 1; asked of the kernel
# afterwards, at least 99.9% of the hot set's pages are on node 0.
# nested_tiered_case [VM ARGS]
nested_tiered_case() {
	local hot top what=${1:+, ${1#-b }}
	nested_ready || return
	nested_migrate tiered "--ws 32M --rate 2 -a hot=10 ${1:-}" "--fast-share 25" || return
	hot=$(field hot "$W") top=$(field hot_top "$W")
	[ -n "$hot" ] && [ "$hot" -gt 0 ] || { fail "no hot chunk found: $W"; return; }
	[ "$top" = "$hot" ] || { fail "$top of $hot hot chunks on the top tier: $W"; return; }
	[ "$(field planned1 "$W")" != 0.0 ] || { fail "nothing planned below: $W"; return; }
	awk -v f="$HOT0" 'BEGIN { exit !(f >= 0.999) }' ||
		{ fail "only $HOT0 of the hot set on node 0 ($HOT): $W"; return; }
	pass "nested tiered${what}, fast share 25%, 10% hot set: $top of $hot hot chunks on node 0 ($(field samples "$W") samples), hot set pages $HOT; $PLACED"
}
case_nested_tiered() { nested_tiered_case; }
# Tiered in postcopy: what the guest faults on after the switch is hot.
# A fault on a chunk the plan put below, none of whose pages is here yet,
# moves it up in place of a top-tier chunk the guest has not touched and
# that holds no page (the fast share holds). A guest writing random pages
# of its 32 MiB at 4 MiB/s, pushed at 4 MiB/s, fast share 50%: its first
# writes after the switch land in chunks the push has not reached. The
# pages land where the revised plan says (at least 99.9%).
case_nested_tiered_postcopy() {
	local up
	nested_ready || return
	NSRC_ARGS="--mode postcopy --bandwidth 4" nested_migrate tiered \
		"--ws 32M --rate 4 -a pattern=random" "--fast-share 50" || return
	up=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["numa"].get("postcopy_promoted_chunks", 0))' "$ND/$(nc)-dest.json")
	[ "$up" -gt 0 ] 2>/dev/null ||
		{ fail "no chunk moved up in postcopy ($up): $W"; return; }
	pass "nested tiered, postcopy, fast share 50%, random writer: $up chunks the guest faulted on moved up to node 0; $PLACED"
}
# Anonymous RAM: the incoming VMM binds its own range (ADVISE BIND) and
# UFFDIO_COPY allocates there; the check asks move_pages on its pid.
case_nested_anon_tiered() { nested_tiered_case "-b anon"; }
case_nested_damon() {
	nested_ready || return
	damon_probe_case nested "$B/tests/access-probe"
}

# DAMON at the source of a migration: all of it inside the nested host,
# whose 6.12 kernel has DAMON's vaddr operations (this host's has paddr
# only): ferry-vm, ferry-source and ferry-dest (tiered, fast share 25%)
# on loopback inside. The source's JSON must say that its hotness came
# from writes and reads (DAMON on the VMM's pid, its own kdamond gone
# afterwards), and that chunks were read in samples that did not write
# them (the guest's verifier reads its whole working set, its writer
# keeps to the first 10%); the guest runs on, pages placed as planned.
case_nested_damon_source() {
	local c hn rd kd
	nested_ready || return
	c=$(nc)
	nested_job nsrc "echo \$\$ >/run/$c.spid; exec $VM -v --accel none -s /run/$c-src.sock --ws 32M --rate 2 -a hot=10 --heartbeats 600"
	trap 'case_end; nested "test -e /run/'$c'.spid && kill -9 \$(cat /run/'$c'.spid); rm -f /run/'$c'.spid; true" >/dev/null 2>&1; nested_stop' EXIT
	nested_start tiered "--ws 32M --rate 2 -a hot=10" "--fast-share 25" || return
	wait_until 120 "FILLED from the source VM inside" - \
		grep -q '^FILLED' "$ND/jobs/$c-nsrc.out" || return
	nested_job fsrc "exec $SRC --vm /run/$c-src.sock --dest 127.0.0.1:7000 $NTLS --json $ND/$c-src.json"
	nested_done fsrc 240 || return
	[ "$rc" = 0 ] || { fail "ferry-source inside exit $rc: $(tail -n 2 "$CT/fsrc.log")"; return; }
	nested_done fdest 30 || return
	[ "$rc" = 0 ] || { fail "ferry-dest inside exit $rc: $(tail -n 1 "$CT/fdest.log")"; return; }
	wait_until 60 "two heartbeats from the guest inside" - eval \
		'[ "$(grep -c "^HB " "$ND/jobs/$c-ndst.out")" -ge 2 ]' || return
	cp "$ND/jobs/$c-ndst.out" "$CT/ndst.log"
	if has_line ndst '^ERR' || grep -q '^HB .* errors=[1-9]' "$CT/ndst.log"; then
		fail "the guest inside found a bad page: $(grep -m 1 -e '^ERR' -e 'errors=[1-9]' "$CT/ndst.log")"
		return
	fi
	hn=$(python3 -c 'import json, sys; n = json.load(open(sys.argv[1]))["numa"]; print(n.get("read_not_written", -1), n.get("hotness", ""))' "$ND/$c-src.json") ||
		{ fail "no numa object in the source's JSON"; return; }
	rd=${hn%% *} hn=${hn#* }
	case $hn in
	"writes and reads (DAMON "*) ;;
	*) fail "the source inside did not use DAMON: '$hn'"; return ;;
	esac
	[ "$rd" -gt 0 ] 2>/dev/null ||
		{ fail "DAMON saw no chunk read and not written (read_not_written $rd): $hn"; return; }
	kd=$(nested 'cat /sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds') ||
		{ fail "DAMON's sysfs inside: $kd"; return; }
	[ "$kd" = 0 ] || { fail "the source left $kd kdamond(s) behind inside"; return; }
	W=$(placement "$ND/$c-dest.json")
	placed_as_planned "$W" || return
	pass "source on a DAMON-vaddr kernel: hotness from $hn, $rd chunk-samples read but not written; $PLACED"
}

# nested_ksm_later: KSM_WAIT (8) s after completion, KSM's pages_sharing,
# the VMM's Pss and where the guest's RAM is inside (LATER)
nested_ksm_later() {
	sleep "${KSM_WAIT:-8}"
	LATER=$(pages_cmd 0) &&
		LATER=$(nested "echo pages_sharing=\$(cat /sys/kernel/mm/ksm/pages_sharing) pss_kib=\$(sed -n 's/^Pss: *\([0-9]*\) kB/\1/p' /proc/\$(cat /run/$(nc).pid)/smaps_rollup) \$($LATER)") ||
		{ fail "the footprint inside: $LATER"; return; }
}

# KSM hints inside: an anonymous guest of which half the pages are
# copies of eight templates, interleaved over both nodes, moves in
# twice, without hints and with. KSM runs with merge_across_nodes 0,
# which keeps a merged page on its node (with 1 ksmd may merge a node-1
# page into a node-0 one, undoing the placement): both set by the case
# (run 2 first, which the kernel requires) and put back at its end,
# whatever happens. The footprint at completion and KSM_WAIT (8) s
# later is reported, not asserted (ksmd's pace under TCG is the
# machine's); asserted: hints given with them and not without, the
# placement as planned, and by then still as many guest pages on node 1
# (within 0.1%) as ferry-dest placed there.
case_nested_anon_ksm() {
	local k=/sys/kernel/mm/ksm old hints report="" w p1 l1
	nested_ready || return
	old=$(nested "echo \$(cat $k/run) \$(cat $k/merge_across_nodes)") ||
		{ fail "KSM inside: $old"; return; }
	set -- $old
	[ $# -eq 2 ] || { skip "no KSM inside: $old"; return; }
	trap 'case_end; nested "echo 2 >'$k'/run; echo '$2' >'$k'/merge_across_nodes; echo '$1' >'$k'/run" >/dev/null 2>&1' EXIT
	nested "echo 2 >$k/run && echo 0 >$k/merge_across_nodes && echo 1 >$k/run" ||
		{ fail "cannot set KSM inside"; return; }
	for hints in no yes; do
		NC=${CT##*/}-$hints
		local dargs=--no-ksm-hints
		[ $hints = yes ] && dargs=
		NESTED_AFTER=nested_ksm_later nested_migrate interleave:0-1 \
			"--ws 32M --rate 0 --dup 50 --zero 0 -b anon" "$dargs" || return
		w=$(ksm_words "$ND/$NC-dest.json") ||
			{ fail "no ksm section in the dest JSON: $w"; return; }
		set -- $w
		if [ $hints = yes ] && [ "$1" -eq 0 ]; then
			fail "no KSM hints given for a guest of 50% duplicates"; return
		elif [ $hints = no ] && [ "$1" -ne 0 ]; then
			fail "KSM hints given with --no-ksm-hints"; return
		fi
		[ "$3 $4" = "1 0" ] ||
			{ fail "ferry-dest saw KSM run $3, merge_across_nodes $4"; return; }
		p1=$(field pages1 "$W")
		l1=$(field node1 "$LATER")
		awk -v a="$p1" -v b="$l1" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= a / 1000) }' ||
			{ fail "node 1 held $p1 guest pages at completion, $l1 ${KSM_WAIT:-8} s later: $LATER"; return; }
		report="$report; hints $hints: $1 ranges ($2 pages) advised, at completion pages_sharing $5, Pss $6 kB, ${KSM_WAIT:-8} s later $LATER"
		for f in src.json src.log fsrc.log fdest.log ndst.log; do
			mv "$CT/$f" "$CT/$hints-$f"
		done
	done
	pass "nested anon, 50% duplicates, interleave:0-1, KSM run 1, merge_across_nodes 0 (set by the case, restored)${report}; $PLACED"
}

# 2 MiB huge pages come from the chosen node's pool: node 1's and node 0's
# hold 16 each inside (so that a page the plan does not steer could come
# from node 0; both emptied again after the migration), and this host's
# pool grows by 16 for the source VM (hugetlb_pool). nested_hugetlb_case
# [DEST ARGS]
case_nested_hugetlb() { nested_hugetlb_case; }
# The same in postcopy: the pages the destination places after the
# switchover (written through its own mapping, bound to node 1, and
# mapped with UFFDIO_CONTINUE in minor mode) come from node 1's pool too;
# and with UFFDIO_COPY through the VMM's uffd (--uffd-mode missing),
# which allocates by the VMM's own mapping's policy: the VMM binds its
# range itself (ADVISE BIND), and the check asks the VMM where the pages
# it maps are.
case_nested_hugetlb_postcopy() { NSRC_ARGS="--mode postcopy" nested_hugetlb_case; }
case_nested_hugetlb_postcopy_copy() { NSRC_ARGS="--mode postcopy" nested_hugetlb_case "--uffd-mode missing"; }
nested_hugetlb_case() {
	local p=/sys/devices/system/node/node%s/hugepages/hugepages-2048kB/nr_hugepages
	local p0 p1 what=${NSRC_ARGS:+, ${NSRC_ARGS#--mode }}${1:+, ${1#--}}
	printf -v p0 "$p" 0
	printf -v p1 "$p" 1
	nested_ready || return
	hugetlb_pool 16 || return
	if [ "$(nested "echo 16 >$p1; echo 16 >$p0; echo \$(cat $p0) \$(cat $p1)")" != "16 16" ]; then
		nested "echo 0 >$p1; echo 0 >$p0" >/dev/null 2>&1
		skip "cannot reserve 16 huge pages on each node inside"
		return
	fi
	nested_migrate bind:1 "--ws 8M --rate 2 -b hugetlb-2M" "${1:-}"
	rc=$?
	nested "echo 0 >$p1; echo 0 >$p0" >/dev/null 2>&1
	[ $rc -eq 0 ] || return
	[ "$(field placed0 "$W")" = 0.0 ] || { fail "huge pages on node 0: $W"; return; }
	pass "nested bind:1, hugetlb-2M$what, 16 free huge pages on each node: $PLACED"
}

# 1 GiB of guest RAM bound to node 1 (768 MiB): refused before any page,
# one line on both sides; the source VM runs on.
case_nested_refused() {
	nested_ready || return
	start_vm src -m 1G --ws 16M --rate 2 || return
	nested_start bind:1 "-m 1G --ws 16M" || return
	wait_filled src || return
	run_src 60 --dest "127.0.0.1:$(cat "$ND/port")" $NTLS || { nested_stop; return; }
	[ $rc -eq 1 ] || { nested_stop; fail "ferry-source exit $rc: $(cat "$CT/fsrc.log")"; return; }
	grep -q 'cannot fit' "$CT/fsrc.log" ||
		{ nested_stop; fail "the source's line: $(tail -n 1 "$CT/fsrc.log")"; return; }
	nested_done fdest 30
	nested_stop
	[ "$rc" = 1 ] || { fail "ferry-dest inside exit $rc"; return; }
	still_running src || return
	pass "nested bind:1 of 1 GiB refused: $(tail -n 1 "$CT/fdest.log" | cut -c1-150); the source VM runs on"
}

# case_bound CASE: seconds after which a whole case is stopped (every wait
# in it is bounded already; this bounds their sum)
case_bound() {
	case "$1" in
	auto_2g) echo 420 ;;
	nested_boot) echo 120 ;;
	soak) echo $((60 + 10 * ${FERRY_SOAK_HOPS:-100})) ;;
	*) echo 240 ;;
	esac
}

# The nested host, if a case booted it, goes with the run.
harness_cleanup_hook() {
	[ -e "$ND/qemu.pid" ] && "$NESTED" stop "$ND"
	return 0
}
harness_main

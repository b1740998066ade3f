# SPDX-License-Identifier: LGPL-2.1-or-later
#
# with_hugepages, sourced by the TAP scripts whose cases put guest RAM on
# 2 MiB huge pages (tests/qemu.sh, tests/libvirt.sh); the script defines
# skip NAME WHY.
#
# with_hugepages NAME CMD...: runs CMD with 36 free 2 MiB pages in the
# pool (two 32 MiB guests and a margin), reserved here if the pool lacks
# them and given back after (nr_hugepages as it was), under the lock the
# other hugetlb tests take (the pool is system-wide); case NAME is a skip
# when they cannot be had (then it returns 77, the reason in why).
with_hugepages() {
	local pool=/proc/sys/vm/nr_hugepages need=36 name=$1 old free lk r=0
	shift
	exec {lk}>/tmp/ferry-tests-hugetlb.lock
	flock "$lk"
	old=$(cat $pool)
	free=$(awk '/^HugePages_Free/ {print $2}' /proc/meminfo)
	[ "$free" -lt $need ] && echo $((old + need - free)) >$pool 2>/dev/null
	free=$(awk '/^HugePages_Free/ {print $2}' /proc/meminfo)
	if [ "$free" -lt $need ]; then
		why="cannot reserve $need huge pages of 2 MiB ($free free, nr_hugepages $(cat $pool))"
		skip "$name" "$why"
		r=77
	else
		"$@"
	fi
	echo "$old" >$pool 2>/dev/null
	exec {lk}>&-
	return $r
}

# with_shmem_thp WORD NAME CMD...: runs CMD with
# /sys/kernel/mm/transparent_hugepage/shmem_enabled set to WORD, under the
# same lock (the setting is system-wide), and sets it back after; case
# NAME is a skip when it cannot be changed (then it returns 77).
with_shmem_thp() {
	local knob=/sys/kernel/mm/transparent_hugepage/shmem_enabled word=$1
	local name=$2 old lk r=0
	shift 2
	exec {lk}>/tmp/ferry-tests-hugetlb.lock
	flock "$lk"
	old=$(sed 's/.*\[\(.*\)\].*/\1/' "$knob" 2>/dev/null)
	if [ -z "$old" ] || ! echo "$word" >"$knob" 2>/dev/null ||
		! grep -q "\[$word\]" "$knob"; then
		why="cannot set $knob to $word"
		skip "$name" "$why"
		r=77
	else
		"$@"
	fi
	[ -n "$old" ] && echo "$old" >"$knob" 2>/dev/null
	exec {lk}>&-
	return $r
}

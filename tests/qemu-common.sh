# SPDX-License-Identifier: LGPL-2.1-or-later
#
# What tests/qemu.sh and tests/libvirt.sh share, sourced first thing.
#
# The two run their QEMU guests one script at a time: in a parallel
# `make check` a libvirt guest once verified bad memory at its
# destination (one page, the same in five cases, "plain" libvirt
# migration too) while qemu.sh ran, and never when run alone; until that
# is understood the two take turns. take_qemu_turn "$@" re-runs the
# script under the lock (flock -o: no child holds it), at most 30 min.
take_qemu_turn() {
	[ -n "${FERRY_QEMU_TURN:-}" ] && return
	FERRY_QEMU_TURN=1 exec flock -o -w 1800 /tmp/ferry-tests-qemu.lock \
		bash "$0" "$@"
}

# wait_for SECS CMD...: polls CMD every 0.1 s until it succeeds (0) or
# SECS pass (1).
wait_for() {
	local n=$(($1 * 10))
	shift
	while [ $n -gt 0 ]; do
		"$@" && return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}

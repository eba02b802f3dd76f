#!/usr/bin/env bash
# fs_posix.sh — POSIX details of a sandfs mount, checked against tmpfs.
#
# Three nodes on loopback, mounted with allow_other. posix_conform.py runs
# the same operation sequences on a tmpfs directory and on node 1's mount
# (looking through node 2's mount where a case says "other node") and
# compares every errno, stat field and time change; unprivileged parts
# run as numeric users 2001 and 2002. Then appends from two nodes to one
# file must all be there.
#
# Needs root (tmpfs mount, setresuid) and the acl package (getfacl,
# setfacl); without root it says SKIP.
#
#   SANDFS_BIN=build/bin bash tests/e2e/fs_posix.sh [CASE,...]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [[ $(id -u) -ne 0 ]]; then
	echo "SKIP: fs_posix.sh needs root (a tmpfs reference and setresuid)"
	exit 0
fi
# shellcheck source=tests/e2e/fs_lib.sh
. "$here/fs_lib.sh"
for t in getfacl setfacl; do
	command -v "$t" >/dev/null || { echo "FAIL: $t is not installed (package: acl)"; exit 1; }
done

REF=$FS_TMP/ref
fs_extra_cleanup() {
	if awk -v p="$REF" '$2 == p { f = 1 } END { exit !f }' /proc/mounts; then
		umount "$REF" || umount -l "$REF"
	fi
}
mkdir -p "$REF"
if ! mount -t tmpfs -o noatime,mode=755,size=64m sandfs-ref "$REF"; then
	echo "FAIL: cannot mount the tmpfs reference"
	exit 1
fi

# tally CMD...: show CMD's output and count its PASS/FAIL lines.
tally() {
	local line
	while IFS= read -r line; do
		echo "$line"
		case $line in
		PASS:*) FS_PASSED=$((FS_PASSED + 1)) ;;
		FAIL:*) FS_FAILED=$((FS_FAILED + 1)) ;;
		esac
	done < <("$@" 2>&1)
}

fs_log "starting 3 nodes in $FS_TMP"
fs_init 3 -o allow_other
if ! fs_start_all; then
	fs_fail "3 nodes mount and elect a leader (${FS_WHY:-})"
	fs_summary
	exit 1
fi
fs_pass "3 nodes mounted with allow_other, leader is node $FS_LEADER"
M1=$(fs_mnt 1) M2=$(fs_mnt 2)
mkdir "$M1/conform" "$REF/conform"

only=()
[[ $# -gt 0 ]] && only=(--only "$1")
fs_log "conformance cases: tmpfs vs node 1 (other node: node 2)"
tally python3 "$here/posix_conform.py" "${only[@]}" "$REF/conform" "$M1/conform" "$M2/conform"

if [[ $# -eq 0 || $1 == append ]]; then
	fs_log "O_APPEND from two nodes"
	tally python3 "$here/posix_conform.py" append2 "$M1/conform/log" "$M2/conform/log" 50
fi

fs_summary

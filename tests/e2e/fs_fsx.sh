#!/usr/bin/env bash
# fs_fsx.sh — randomized file operations on a 3-node cluster, checked
# against a model (tests/e2e/sfs_fsx.c): writes, truncates, reads,
# fallocate (allocate, keep size, punch hole, zero range), shared mmap
# reads and writes with msync, copy_file_range and fsync on one mount,
# the file's size and touched bytes compared after every operation, and
# after every close the file read back on the two other mounts
# (close-to-open).
#
# Two runs: the primary on the leader's mount and on a follower's, each
# FSX_OPS operations (default 2500) with a seed printed first (FSX_SEED=N
# replays one). SANDFS_SOAK=1 runs FSX_SOAK_RUNS (default 12, about 35 min) runs of
# 20000 operations each, alternating the primary over the nodes.
#
#   SANDFS_BIN=build/bin bash tests/e2e/fs_fsx.sh
set -u
# shellcheck source=tests/e2e/fs_lib.sh
. "$(dirname "$0")/fs_lib.sh"

FSX="$FS_BIN/sfs_fsx"
if [[ ! -x $FSX ]]; then
	echo "FAIL: no sfs_fsx at $FSX (build it, or set SANDFS_BIN)" >&2
	exit 1
fi
if [[ ! -e /dev/fuse ]]; then
	echo "fs_fsx: SKIP: needs /dev/fuse"
	exit 77
fi

ops=${FSX_OPS:-2500}
runs=2
if [[ ${SANDFS_SOAK:-0} == 1 ]]; then
	ops=${FSX_OPS:-20000}
	runs=${FSX_SOAK_RUNS:-12}
fi

fs_log "starting 3 nodes in $FS_TMP"
fs_init 3
if ! fs_start_all; then
	fs_fail "3 nodes mount and elect a leader (${FS_WHY:-})"
	fs_summary
	exit 1
fi
fs_pass "3 nodes mounted, leader is node $FS_LEADER"

for ((r = 0; r < runs; r++)); do
	if ((r == 0)); then p=$FS_LEADER; else p=$(((FS_LEADER + r - 1) % 3 + 1)); fi
	[[ $r == 1 && $p == "$FS_LEADER" ]] && p=$((p % 3 + 1))
	checks=()
	for i in 1 2 3; do
		[[ $i == "$p" ]] || checks+=(--check "$(fs_mnt "$i")/fsx$r")
	done
	seed_args=()
	[[ -n ${FSX_SEED:-} ]] && seed_args=(--seed "$FSX_SEED")
	fs_log "run $((r + 1))/$runs: $ops operations on node $p's mount, read back on the others"
	t0=$(fs_now_ms)
	if nice -n 5 "$FSX" --file "$(fs_mnt "$p")/fsx$r" "${checks[@]}" --ops "$ops" \
		"${seed_args[@]}"; then
		fs_pass "sfs_fsx run $((r + 1)): $ops operations on node $p match the model, close-to-open on the other nodes ($(($(fs_now_ms) - t0)) ms)"
	else
		fs_fail "sfs_fsx run $((r + 1)) on node $p (the seed and the replay command are above)"
	fi
done

# a punched hole frees the space of the blocks it covers (st_blocks), on
# every node, and reads as zeros there
M1=$(fs_mnt 1) M2=$(fs_mnt 2)
head -c $((4 << 20)) /dev/urandom >"$FS_TMP/p.src"
cp "$FS_TMP/p.src" "$M1/punch"
blocks_before=$(stat -c %b "$M2/punch")
fs_check "fallocate --punch-hole of 1..3 MiB on node 1" \
	fallocate --punch-hole --offset $((1 << 20)) --length $((2 << 20)) "$M1/punch"
python3 - "$FS_TMP/p.src" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[1 << 20:3 << 20] = bytes(2 << 20)
open(sys.argv[1], "wb").write(b)
PY
fs_check "node 2 reads zeros in the hole and the rest unchanged" cmp "$FS_TMP/p.src" "$M2/punch"
blocks_after=$(stat -c %b "$M2/punch")
fs_log "st_blocks on node 2: $blocks_before before, $blocks_after after the punch"
fs_check "the hole's space is freed: st_blocks halves ($blocks_before -> $blocks_after)" \
	[ "$blocks_after" -le $((blocks_before / 2 + 8)) -a "$(stat -c %s "$M2/punch")" = $((4 << 20)) ]

fs_check "all 3 nodes converge after the runs" fs_wait_converged 40 1 2 3
for i in 1 2 3; do
	fs_umount "$i"
	fs_check "node $i unmounts with fusermount3 -u and its daemon exits by itself" [ "$FS_UMOUNT_FORCED" = 0 ]
done
fs_summary

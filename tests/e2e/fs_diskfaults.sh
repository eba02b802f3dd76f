#!/usr/bin/env bash
# fs_diskfaults.sh — a 3-node cluster whose node 3 keeps its data on a
# small file system (a tmpfs of DISK_MB, default 96 MiB), under disk
# faults.
#
# 1. Data fills node 3's disk: 4 MiB files are written through node 3's
#    mount until one fails. It must fail with ENOSPC (not EIO, not a hang)
#    once the blocks reach the store's free-space reserve; node 3 stays up
#    and keeps taking metadata changes (mkdir); every file whose close
#    succeeded reads back identical on all three mounts. Deleting files
#    frees node 3's blocks, and writes through node 3 succeed again.
# 2. Something else fills node 3's disk (a filler file takes every byte):
#    the Raft log or the inode table on node 3 cannot be written. The
#    node must not crash: its replicator stops with a message saying to
#    fix the disk and restart, reads on its mount keep working, mutations
#    there fail with EIO after the timeout; the other two nodes go on.
#    Once the filler is gone, node 3 restarted with the same command
#    opens its LevelDBs (nothing was corrupted) and catches up: all
#    mounts equal.
# 3. A LevelDB that cannot be opened fails `sandfs mount` at start with a
#    message naming the directory: the inode table's or the Raft log's
#    CURRENT file damaged, or its LOCK held by another process.
# 4. Blocks damaged on node 3's disk (a byte flipped in each block file
#    of a file) are detected when read (checksum) and fetched again from
#    a peer: the file reads back right and the block files on disk are
#    whole again.
#
# Needs root (tmpfs mount). The trap unmounts the mounts and the tmpfs and
# stops the nodes it started.
#
#   SANDFS_BIN=build/bin bash tests/e2e/fs_diskfaults.sh
set -u
# shellcheck source=tests/e2e/fs_lib.sh
. "$(dirname "$0")/fs_lib.sh"

DISK_MB=${DISK_MB:-96}
TIMEOUT_MS=3000
if [[ $(id -u) -ne 0 ]]; then
	fs_fail "disk fault tests need root (a tmpfs for node 3's data directory)"
	fs_summary
	exit 1
fi

D3=$(fs_data 3)
TMPFS_MOUNTED=0
fs_extra_cleanup() {
	# node 3 first: its data directory is on the tmpfs
	fs_umount 3
	if [[ $TMPFS_MOUNTED == 1 ]]; then
		umount "$D3" 2>/dev/null || umount -l "$D3"
	fi
}

# write_file PATH SRC: copy SRC into PATH with write, fsync, close;
# prints "ok" or the errno name of the first failing call.
PYW='
import errno, os, sys
src = open(sys.argv[2], "rb").read()
try:
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(src)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
'
write_file() { timeout 120 python3 -c "$PYW" "$1" "$2" || echo TIMEOUT; }

converged() {
	fs_wait_converged 60 "$@" || { echo "  nodes $* not converged: $FS_WHY" >&2; return 1; }
}

same_tree() { # the mounts' trees are identical
	diff -r --no-dereference "$(fs_mnt 1)" "$(fs_mnt 2)" &&
		diff -r --no-dereference "$(fs_mnt 1)" "$(fs_mnt 3)"
}

free_mb() { df -Pm "$D3" | awk 'NR == 2 { print $4 }'; }

fs_log "starting 3 nodes in $FS_TMP; node 3's data on a ${DISK_MB} MiB tmpfs"
# block_gc_ms: blocks of files deleted right after they were written are
# freed 20 s after their store (default 2 min), so part 1 can wait for it
fs_init 3 --timeout-ms "$TIMEOUT_MS" -o block_gc_ms=20000
if ! mount -t tmpfs -o "size=${DISK_MB}m,mode=0700" sandfs-diskfaults "$D3"; then
	fs_fail "mount a tmpfs on node 3's data directory"
	fs_summary
	exit 1
fi
TMPFS_MOUNTED=1
if ! fs_start_all; then
	fs_fail "3 nodes mount and elect a leader (${FS_WHY:-})"
	fs_summary
	exit 1
fi
fs_pass "3 nodes mounted, leader is node $FS_LEADER"
M1=$(fs_mnt 1) M3=$(fs_mnt 3)

# ---- 1. data fills node 3's disk --------------------------------------------

mkdir "$M3/fill"
n_ok=0 res=ok
for ((k = 0; k < 100; k++)); do
	head -c $((4 << 20)) /dev/urandom >"$FS_TMP/src$k"
	res=$(write_file "$M3/fill/f$k" "$FS_TMP/src$k")
	[[ $res == ok ]] || break
	n_ok=$((n_ok + 1))
done
fs_log "wrote $n_ok files of 4 MiB through node 3 before: $res (node 3 free: $(free_mb) MiB)"
fs_check "a write through node 3 on a full disk fails with ENOSPC (got $res after $n_ok files)" \
	[ "$res" = ENOSPC -a "$n_ok" -gt 5 ]
fs_check "node 3 is still running after ENOSPC" fs_alive 3
fs_check "node 3 still takes metadata changes (mkdir on its mount)" mkdir "$M3/meta-ok"
committed_equal() {
	local i k
	for i in 1 2 3; do
		for ((k = 0; k < n_ok; k++)); do
			cmp -s "$FS_TMP/src$k" "$(fs_mnt "$i")/fill/f$k" || {
				echo "  f$k differs on node $i" >&2
				return 1
			}
		done
	done
}
fs_check "every file whose close succeeded reads back identical on all 3 mounts" committed_equal
fs_check "the cluster converges with node 3's disk full" converged 1 2 3

# free space: delete most files (through node 1); node 3 drops their blocks
for ((k = 0; k < n_ok - 2; k++)); do rm -f "$M1/fill/f$k"; done
fs_log "deleted $((n_ok - 2)) files through node 1 (node 3 free: $(free_mb) MiB)"
# new content (the deleted files' blocks must not simply be found again)
head -c $((4 << 20)) /dev/urandom >"$FS_TMP/src0"
again=fail
for ((t = 0; t < 120; t++)); do
	again=$(write_file "$M3/fill/again" "$FS_TMP/src0")
	[[ $again == ok ]] && break
	sleep 0.5
done
fs_log "write of new data through node 3 after $t retries: $again (node 3 free: $(free_mb) MiB)"
fs_check "once files are deleted, a write through node 3 succeeds again" [ "$again" = ok ]
fs_check "the new file reads back on node 1" bash -c "
	for t in \$(seq 100); do cmp -s '$FS_TMP/src0' '$M1/fill/again' && exit 0; sleep 0.1; done; exit 1"
fs_check "the two files kept read back identical on node 3" bash -c "
	cmp '$FS_TMP/src$((n_ok - 2))' '$M3/fill/f$((n_ok - 2))' && cmp '$FS_TMP/src$((n_ok - 1))' '$M3/fill/f$((n_ok - 1))'"
rm -f "$FS_TMP"/src*

# ---- 2. the disk fills under the Raft log and the inode table ----------------

converged 1 2 3
mkdir "$M1/before" && echo "old content" >"$M1/before/file"
converged 1 2 3
fill() { # the filler takes whatever is free (node 3 may free blocks meanwhile)
	dd if=/dev/zero of="$D3/filler" bs=64k oflag=append conv=notrunc status=none 2>/dev/null
}
fill
fs_log "filler takes node 3's last bytes: $(free_mb) MiB free"
# metadata changes through node 1 until node 3 can no longer write them
stopped=0
for ((k = 0; k < 40 && !stopped; k++)); do
	fill
	for ((j = 0; j < 50; j++)); do mkdir -p "$M1/meta/d$k/e$j" 2>/dev/null; done
	grep -q "replicator stopped after a storage failure" "$D3/sandfs.log" && stopped=1
done
fs_log "after $((k * 50)) mkdirs on node 1: node 3 $([[ $stopped == 1 ]] && echo stopped its replicator || echo still applies)"
fs_check "node 3's replicator stops on the storage failure, saying what to do" [ "$stopped" = 1 ]
grep -E "ERROR" "$D3/sandfs.log" | tail -n 3 | sed 's/^/    node 3: /'
fs_check "node 3's process did not crash" fs_alive 3
fs_check "the other two nodes go on (mkdir through node 1)" mkdir "$M1/meta/after"
fs_check "reads on node 3's mount keep working" grep -qx "old content" "$M3/before/file"
t0=$(fs_now_ms)
out=$(timeout 60 python3 "$(dirname "$0")/fs_ops.py" mkdir "$M3/meta-down")
ms=$(($(fs_now_ms) - t0))
fs_check "a mutation on node 3 fails with EIO after about the timeout ($out after $ms ms)" \
	[ "$out" = EIO -a "$ms" -le $((TIMEOUT_MS + 10000)) ]

rm -f "$D3/filler"
fs_umount 3
fs_check "with the filler gone, node 3 restarts with the same command (its LevelDBs open)" fs_start 3
fs_check "node 3 catches up: all 3 nodes converge" converged 1 2 3
fs_check "all 3 mounts hold the same tree" same_tree

# ---- 3. a LevelDB that cannot be opened fails the start --------------------

start_fails() { # NAME WANT-IN-MESSAGE: node 3 must refuse to start
	local name=$1 want=$2 out rc
	out=$(timeout 30 "$SANDFS" mount --id 3 --peers "$FS_PEERS" --data "$D3" \
		"${FS_MOUNT_ARGS[@]}" "$M3" 2>&1)
	rc=$?
	if fs_is_mounted 3; then
		fs_fail "$name: node 3 started anyway"
		FS_MOUNTED[3]=1
		fs_umount 3
		return
	fi
	local line
	line=$(grep -v ' INFO ' <<<"$out" | tail -n 1)
	fs_log "$name: rc $rc: $line"
	if [[ $rc != 0 && $line == *"$want"* ]]; then
		fs_pass "$name: sandfs mount fails at start naming $want"
	else
		fs_fail "$name: sandfs mount fails at start naming $want (rc $rc: $line)"
	fi
}
fs_umount 3
for db in meta raft; do
	cp "$D3/$db/CURRENT" "$FS_TMP/CURRENT.$db"
	echo "MANIFEST-999999" >"$D3/$db/CURRENT"
	start_fails "damaged $db/CURRENT" "$D3/$db"
	cp "$FS_TMP/CURRENT.$db" "$D3/$db/CURRENT"
done
for db in meta raft; do
	python3 - "$D3/$db/LOCK" "$SANDFS" "$FS_PEERS" "$D3" "$M3" >"$FS_TMP/lockrun" 2>&1 <<'PY'
import fcntl, os, subprocess, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
r = subprocess.run(["timeout", "30", sys.argv[2], "mount", "--id", "3", "--peers",
                    sys.argv[3], "--data", sys.argv[4], sys.argv[5]],
                   capture_output=True, text=True)
lines = [l for l in (r.stdout + r.stderr).splitlines() if " INFO " not in l]
print(r.returncode, lines[-1] if lines else "")
PY
	read -r rc line <"$FS_TMP/lockrun"
	if fs_is_mounted 3; then
		FS_MOUNTED[3]=1
		fs_umount 3
		rc=started
	fi
	fs_log "$db/LOCK held by another process: rc $rc: $line"
	fs_check "$db/LOCK held by another process: sandfs mount fails at start naming $D3/$db" \
		[ "$rc" != 0 -a "$rc" != started -a "${line/$D3\/$db/}" != "$line" ]
done
fs_check "repaired, node 3 starts again" fs_start 3
fs_check "and converges" converged 1 2 3

# ---- 4. a block damaged on disk is detected and fetched again --------------

list_blocks() { find "$D3/blocks" -path '*/quarantine' -prune -o -type f -name '????????????????????????????????????????????????????????????????' -print | sort; }
list_blocks >"$FS_TMP/blocks.before"
head -c $((1 << 20)) /dev/urandom >"$FS_TMP/victim"
cp "$FS_TMP/victim" "$M1/victim"
converged 1 2 3
for ((t = 0; t < 100; t++)); do # node 3 fetches the new blocks in the background
	list_blocks >"$FS_TMP/blocks.after"
	(($(comm -13 "$FS_TMP/blocks.before" "$FS_TMP/blocks.after" | wc -l) >= 4)) && break
	sleep 0.2
done
mapfile -t victims < <(comm -13 "$FS_TMP/blocks.before" "$FS_TMP/blocks.after")
fs_log "node 3 holds ${#victims[@]} new block file(s) for the 1 MiB file"
fs_umount 3 # so that nothing is cached: the next read comes from the disk
for b in "${victims[@]}"; do
	printf '\xff' | dd of="$b" bs=1 seek=1000 conv=notrunc status=none
	printf '\x00' | dd of="$b" bs=1 seek=1001 conv=notrunc status=none
done
whole() { # every victim block file's content matches its name again
	local b
	for b in "${victims[@]}"; do
		[[ -f $b && $(sha256sum <"$b" | cut -c1-64) == "$(basename "$b")" ]] || return 1
	done
}
not_whole() { ! whole; }
fs_check "node 3 had fetched the file's 4 blocks (${#victims[@]} new block files)" [ "${#victims[@]}" -ge 4 ]
fs_check "the damaged block files no longer match their names" not_whole
fs_check "node 3 restarts" fs_start 3
fs_check "the file reads back right on node 3 although its blocks were damaged there" \
	cmp "$FS_TMP/victim" "$M3/victim"
fs_check "node 3 logged the damage it found" grep -q "does not match\|is corrupt" "$D3/sandfs.log"
fs_check "node 3's block files are whole again (fetched from a peer)" whole
fs_check "all 3 mounts hold the same tree" same_tree

for i in 1 2 3; do
	fs_umount "$i"
	fs_check "node $i unmounts with fusermount3 -u and its daemon exits by itself" [ "$FS_UMOUNT_FORCED" = 0 ]
done
fs_summary

#!/usr/bin/env bash
# fs_recovery.sh — what a node cleans up and catches up on after a crash or
# a long absence. Three real `sandfs mount` nodes on loopback (fs_lib.sh).
#
#   SANDFS_BIN=build/bin tests/e2e/fs_recovery.sh
#
# (a) Orphan of a crashed node: node 2 opens a file, unlinks it while open
#     (an orphan that node 2 keeps alive), and is killed (-9) together with
#     the process holding it. When node 2 comes back it releases the orphan
#     once it has caught up: the used inode count drops back on every node
#     and node 2 deletes the orphan's blocks.
# (b) Snapshot install with data: node 1 writes 6 files (set A) that node
#     3 receives; node 3 is stopped and loses those blocks; node 1 writes 6
#     more (set B) and then enough metadata changes (xattrs) that the log
#     is compacted past node 3. Restarted, node 3 gets a snapshot, and its
#     block store holds every block of both sets within a few seconds
#     WITHOUT anything reading them (set A can only come back through the
#     catch-up walks); then nodes 1 and 2 are stopped and node 3 reads
#     every file correctly on its own (the data is local).
#
# The trap of fs_lib.sh unmounts and stops everything it started (by pid),
# also on failure. Ends with "N passed, M failed"; exit 0 when all passed.
# FS_KEEP=1 keeps the temporary directory.
set -u
# shellcheck source=tests/e2e/fs_lib.sh
. "$(dirname "$0")/fs_lib.sh"

if [[ ! -e /dev/fuse ]]; then
	echo "fs_recovery: SKIP: needs /dev/fuse"
	exit 77
fi

XATTR_OPS=${XATTR_OPS:-12000} # > the replicator's compaction interval (10000)

# Used inodes seen through node I's mount (statfs: files - free files).
used_inodes() {
	local s
	s=$(timeout 5 stat -f -c '%c %d' "$(fs_mnt "$1")" 2>/dev/null) || return 1
	set -- $s
	echo $(($1 - $2))
}

# wait_for SECS CMD...: poll CMD every 0.2 s until it succeeds.
wait_for() {
	local secs=$1 end
	shift
	end=$(($(fs_now_ms) + secs * 1000))
	while (($(fs_now_ms) < end)); do
		"$@" && return 0
		sleep 0.2
	done
	"$@"
}

inodes_are() { # inodes_are COUNT IDS...
	local want=$1 i
	shift
	for i in "$@"; do
		[[ $(used_inodes "$i") == "$want" ]] || return 1
	done
}

# Block files in node I's store (64-hex names), sorted.
blocks_of() {
	find "$(fs_data "$1")/blocks" -type f -regextype posix-extended \
		-regex '.*/[0-9a-f]{64}' -printf '%f\n' 2>/dev/null | sort
}

nblocks() { blocks_of "$1" | wc -l; }

fs_init 3
fs_start_all || { fs_fail "cluster did not start (${FS_WHY:-})"; fs_summary; exit 1; }
fs_log "cluster up, leader $FS_LEADER"

# ---- (a) the orphan of a crashed node ---------------------------------------

M2=$(fs_mnt 2)
base=$(used_inodes 1)
base_blocks2=$(nblocks 2)
head -c $((600 * 1024)) /dev/urandom >"$M2/held" # 3 blocks of 256 KiB
sync
[[ $(nblocks 2) -ge $((base_blocks2 + 3)) ]] && fs_pass "(a) node 2 stored the file's blocks" ||
	fs_fail "(a) node 2 stored the file's blocks ($(nblocks 2) vs $base_blocks2)"
# Hold it open on node 2 and unlink it there: an orphan node 2 keeps alive.
fs_bg bash -c 'exec 3<"$1" && rm -f "$1" && touch "$2" && exec sleep 600' _ \
	"$M2/held" "$FS_TMP/holding"
HOLDER=$FS_LAST_BG
wait_for 10 test -e "$FS_TMP/holding"
fs_check "(a) the unlinked open file is an orphan: counted, no name" \
	wait_for 10 eval '[[ ! -e $M2/held ]] && inodes_are $((base + 1)) 1 2 3'
fs_log "killing node 2 (-9) and the process holding the file"
fs_kill9 2
kill -KILL "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null
sleep 1
fs_check "(a) with node 2 down the orphan stays (nobody else may free it)" \
	inodes_are $((base + 1)) 1 3
t0=$(fs_now_ms)
if fs_start 2; then
	fs_check "(a) node 2 released its orphan after the restart (inodes back on all nodes)" \
		wait_for 20 inodes_are "$base" 1 2 3
	fs_log "orphan gone $(($(fs_now_ms) - t0)) ms after the restart began"
	fs_check "(a) node 2 logged the release" \
		grep -q 'released what a previous run of this node left in the table (it counted 0 locks and 1 open files' \
		"$(fs_data 2)/sandfs.log"
	# The other nodes keep a block they stored within the GC grace period
	# (10 min) — the restarted node 2 has no such memory and deletes them.
	fs_check "(a) node 2 deleted the orphan's blocks" \
		wait_for 10 eval '[[ $(nblocks 2) -eq $base_blocks2 ]]'
else
	fs_fail "(a) node 2 restarted"
fi

# ---- (b) a snapshot install brings the blocks along --------------------------

M1=$(fs_mnt 1)
mkdir "$M1/snap"

# write_files PREFIX: 6 files of assorted sizes into $M1/snap, their
# sha256 appended to $FS_TMP/sums.
write_files() {
	python3 - "$M1/snap" "$1" <<'EOF' >>"$FS_TMP/sums"
import hashlib, os, random, sys
d, prefix = sys.argv[1], sys.argv[2]
rnd = random.Random(prefix)
for i in range(6):
    size = rnd.choice([0, 1, 4096, 200000, 262144, 262145, 1 << 20, 3 << 20])
    data = os.urandom(size)
    with open(os.path.join(d, "%s%02d" % (prefix, i)), "wb") as f:
        f.write(data)
    print("%s%02d %s" % (prefix, i, hashlib.sha256(data).hexdigest()))
EOF
	sync
}

# Set A, written while node 3 is up; node 3 then loses their blocks (as a
# node that crashed between apply and fetch, or had its disk replaced):
# only a catch-up walk can bring them back.
before=$(blocks_of 1)
write_files a
comm -13 <(echo "$before") <(blocks_of 1) >"$FS_TMP/blocks_a"
in_3() { [[ -z $(comm -23 "$1" <(blocks_of 3)) ]]; }
wait_for 10 in_3 "$FS_TMP/blocks_a" || fs_fail "(b) node 3 got set A's blocks by push"
fs_log "stopping node 3 and deleting set A's $(wc -l <"$FS_TMP/blocks_a") blocks from its store"
fs_umount 3
while read -r h; do rm -f "$(fs_data 3)/blocks/${h:0:2}/$h"; done <"$FS_TMP/blocks_a"
# Set B, written while node 3 is down: node 3 sees no WRITE for them, only
# the snapshot. (Node 1's link may still deliver the pushes it queued for
# node 3 once node 3 is back, so these may also arrive that way.)
before=$(blocks_of 1)
write_files b
comm -13 <(echo "$before") <(blocks_of 1) >"$FS_TMP/blocks_b"
sort -u "$FS_TMP/blocks_a" "$FS_TMP/blocks_b" >"$FS_TMP/blocks_all"
n_a=$(wc -l <"$FS_TMP/blocks_a")
n_all=$(wc -l <"$FS_TMP/blocks_all")
fs_log "wrote 12 files on node 1 ($n_all blocks); now $XATTR_OPS xattr changes"
t0=$(fs_now_ms)
python3 - "$M1/snap" "$XATTR_OPS" <<'EOF'
import os, sys, threading
d, total = sys.argv[1], int(sys.argv[2])
paths = []
for i in range(16):
    p = os.path.join(d, "x%02d" % i)
    open(p, "w").close()
    paths.append(p)
def work(k):
    for j in range(k, total, 16):
        os.setxattr(paths[k], "user.n", str(j).encode())
ts = [threading.Thread(target=work, args=(k,)) for k in range(16)]
for t in ts: t.start()
for t in ts: t.join()
EOF
fs_log "$XATTR_OPS xattr changes took $(($(fs_now_ms) - t0)) ms"
fs_log "restarting node 3"
t0=$(fs_now_ms)
if fs_start 3; then
	if wait_for 20 in_3 "$FS_TMP/blocks_all"; then
		fs_pass "(b) node 3 holds all $n_all blocks without reading ($(($(fs_now_ms) - t0)) ms after the restart began)"
	else
		fs_fail "(b) node 3 holds all blocks ($(comm -23 "$FS_TMP/blocks_all" <(blocks_of 3) | wc -l) of $n_all missing)"
	fi
	fs_check "(b) node 3 installed a snapshot (the log was compacted past it)" \
		wait_for 10 grep -q 'installed a snapshot' "$(fs_data 3)/sandfs.log"
	grep -h 'block catch-up' "$(fs_data 3)/sandfs.log" | sed 's/^/    node 3: /'
	fetched=$(grep -ho 'missing here: [0-9]* fetched' "$(fs_data 3)/sandfs.log" |
		awk '{ s += $3 } END { print s + 0 }')
	fs_check "(b) node 3's catch-up walks fetched the blocks it lost ($fetched fetched, $n_a lost)" \
		test "$fetched" -ge "$n_a"
	fs_check "(b) node 3 converged with the others" fs_wait_converged 20 1 2 3
	fs_log "stopping nodes 1 and 2: node 3 reads on its own"
	fs_umount 1
	fs_umount 2
	M3=$(fs_mnt 3)
	bad=0
	while read -r name sum; do
		got=$(timeout 20 sha256sum "$M3/snap/$name" 2>/dev/null | cut -d' ' -f1)
		if [[ $got != "$sum" ]]; then
			echo "    $name: got '${got:-read error}', want $sum"
			bad=$((bad + 1))
		fi
	done <"$FS_TMP/sums"
	[[ $bad -eq 0 ]] && fs_pass "(b) node 3 alone reads all 12 files correctly" ||
		fs_fail "(b) node 3 alone reads all 12 files correctly ($bad wrong)"
else
	fs_fail "(b) node 3 restarted"
fi

fs_summary

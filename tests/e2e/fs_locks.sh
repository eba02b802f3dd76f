#!/usr/bin/env bash
# fs_locks.sh — locks and open files across nodes: three real `sandfs
# mount` nodes on loopback (fs_lib.sh), mounted with a short lock lease
# (-o lock_lease_ms=$LEASE_MS) so that the lease cases run quickly.
#
#   SANDFS_BIN=build/bin tests/e2e/fs_locks.sh
#
# (a) Two nodes race for an exclusive flock at the same instant: exactly
#     one gets it, the other gets EWOULDBLOCK, and gets it once the winner
#     closed.
# (b) `flock -w` from the shell on node 3 waits for a lock node 1 holds and
#     gets it when node 1's holder exits (not before, not at the timeout).
# (c) Byte ranges: node 1 write-locks [100,200); node 2's F_GETLK reports
#     that lock (type, range, the holder's pid), its F_SETLK on an
#     overlapping range gets EAGAIN, on a disjoint one OK; node 1 unlocks
#     the middle [140,160) (a split) and node 2 can lock exactly that;
#     read locks are shared across nodes; F_SETLKW waits, is woken by an
#     unlock on another node, and returns EINTR when a signal interrupts
#     it.
# (d) sqlite3 writes one database from the three nodes in turn, then
#     from two nodes at once (busy timeout), and PRAGMA integrity_check
#     says ok with every row there, on every node.
# (e) Unlink on node 1 while open on node 2: node 2 keeps reading and
#     writing through its descriptor; the inode stays counted on every
#     node until node 2 closes it, then it is freed with its blocks.
#     A file closed on one node and removed on another is freed at once
#     although its open record outlives the close (close_delay_ms).
# (f) A killed holder: node 3 holds a flock and an unlinked open file, and
#     its daemon is killed (-9). The lock stays held (node 1's attempt
#     fails) and is freed once the lease ran out; then node 3 is removed
#     from the cluster and its open file is released (inode freed).
#
# The trap of fs_lib.sh unmounts and stops everything it started (by pid),
# also on failure. Ends with "N passed, M failed"; exit 0 when all passed.
# FS_KEEP=1 keeps the temporary directory.
set -u
# shellcheck source=tests/e2e/fs_lib.sh
. "$(dirname "$0")/fs_lib.sh"

if [[ ! -e /dev/fuse ]]; then
	echo "fs_locks: SKIP: needs /dev/fuse"
	exit 77
fi
for _t in flock sqlite3; do
	command -v "$_t" >/dev/null || { echo "FAIL: $_t is not installed" >&2; exit 1; }
done

here=$(cd "$(dirname "$0")" && pwd)
LK=(python3 "$here/fs_locks.py")
LEASE_MS=${LEASE_MS:-3000}

# Used inodes seen through node I's mount (statfs: files - free files).
used_inodes() {
	local s
	s=$(timeout 5 stat -f -c '%c %d' "$(fs_mnt "$1")" 2>/dev/null) || return 1
	set -- $s
	echo $(($1 - $2))
}

inodes_are() { # inodes_are COUNT IDS...
	local want=$1 i
	shift
	for i in "$@"; do
		[[ $(used_inodes "$i") == "$want" ]] || return 1
	done
}

nblocks() {
	find "$(fs_data "$1")/blocks" -type f -regextype posix-extended \
		-regex '.*/[0-9a-f]{64}' 2>/dev/null | wc -l
}

# wait_for SECS CMD...: poll CMD every 0.1 s until it succeeds.
wait_for() {
	local secs=$1 end
	shift
	end=$(($(fs_now_ms) + secs * 1000))
	while (($(fs_now_ms) < end)); do
		"$@" && return 0
		sleep 0.1
	done
	"$@"
}

# expect NAME WANT CMD...: PASS when CMD prints exactly WANT.
expect() {
	local name=$1 want=$2 got
	shift 2
	got=$("$@" 2>&1)
	if [[ $got == "$want" ]]; then fs_pass "$name"; else fs_fail "$name (got '$got', want '$want')"; fi
}

fs_init 3 -o "lock_lease_ms=$LEASE_MS,block_gc_ms=3000"
fs_start_all || { fs_fail "cluster did not start (${FS_WHY:-})"; fs_summary; exit 1; }
fs_log "cluster up, leader $FS_LEADER, lock lease $LEASE_MS ms"
M1=$(fs_mnt 1) M2=$(fs_mnt 2) M3=$(fs_mnt 3)
R=$FS_TMP/run
mkdir -p "$R"

# ---- (a) two nodes race for one exclusive flock ------------------------------

echo x >"$M1/race"
wait_for 5 test -e "$M2/race"
at=$(python3 -c 'import time; print(time.time() + 1.0)')
fs_bg "${LK[@]}" --at "$at" --hold 2 flock "$M1/race" ex nb >"$R/a1"
P1=$FS_LAST_BG
fs_bg "${LK[@]}" --at "$at" --hold 2 flock "$M2/race" ex nb >"$R/a2"
P2=$FS_LAST_BG
wait_for 10 eval '[[ -s $R/a1 && -s $R/a2 ]]'
res="$(cat "$R/a1") $(cat "$R/a2")"
fs_log "(a) race results: node 1 $(cat "$R/a1"), node 2 $(cat "$R/a2")"
if [[ $res == "OK EAGAIN" || $res == "EAGAIN OK" ]]; then
	fs_pass "(a) exactly one of two racing nodes got the exclusive flock"
else
	fs_fail "(a) exactly one of two racing nodes got the exclusive flock ($res)"
fi
wait "$P1" "$P2" 2>/dev/null
expect "(a) once the winner closed, node 3 gets the lock" OK "${LK[@]}" flock "$M3/race" ex nb

# ---- (b) flock -w from the shell waits for a lock held on another node -------

echo y >"$M1/shell"
fs_bg "${LK[@]}" --ready "$R/b_ready" --hold 2 flock "$M1/shell" ex >/dev/null
wait_for 10 test -e "$R/b_ready"
t0=$(fs_now_ms)
if flock -w 10 "$M3/shell" -c "echo got >$R/b_got"; then
	waited=$(($(fs_now_ms) - t0))
	fs_log "(b) flock -w on node 3 got the lock after $waited ms"
	fs_check "(b) flock -w on node 3 waited for node 1's holder (>= 1 s, < 9 s)" \
		[ "$waited" -ge 1000 -a "$waited" -lt 9000 ]
else
	fs_fail "(b) flock -w on node 3 got the lock"
fi
fs_check "(b) flock -n while node 3 holds it fails on node 1" \
	bash -c "flock $M3/shell -c 'flock -n $M1/shell true' ; [ \$? -ne 0 ]"

# ---- (c) byte-range locks, F_GETLK, F_SETLKW ------------------------------------

head -c 1000 /dev/zero >"$M1/ranges"
wait_for 5 test -s "$M2/ranges"
fs_bg "${LK[@]}" --ready "$R/c_ready" --hold 60 setlk "$M1/ranges" wr 100 100 >"$R/c1"
HOLDER=$FS_LAST_BG
wait_for 10 test -e "$R/c_ready"
expect "(c) F_GETLK on node 2 reports node 1's write lock and its pid" \
	"WRLCK 100 100 $HOLDER" "${LK[@]}" getlk "$M2/ranges" rd 150 10
expect "(c) F_GETLK on node 3 for a range beside it: none" UNLCK \
	"${LK[@]}" getlk "$M3/ranges" wr 200 50
expect "(c) F_SETLK on node 2 over the held range: EAGAIN" EAGAIN \
	"${LK[@]}" setlk "$M2/ranges" rd 199 5
expect "(c) F_SETLK on node 2 on a disjoint range: OK" OK \
	"${LK[@]}" setlk "$M2/ranges" wr 200 100
kill -TERM "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null
expect "(c) the holder's exit released its lock (F_GETLK on node 2)" UNLCK \
	"${LK[@]}" getlk "$M2/ranges" wr 0 0
# a split: lock [100,200), unlock [140,160): node 2 can take exactly that
fs_bg "${LK[@]}" --ready "$R/c_split" --hold 60 locks "$M1/ranges" wr:100:100 un:140:20 >/dev/null
HOLDER=$FS_LAST_BG
wait_for 10 test -e "$R/c_split"
expect "(c) after unlocking the middle, node 2 locks [140,160)" OK \
	"${LK[@]}" setlk "$M2/ranges" wr 140 20
expect "(c) ... but not [139,140)" EAGAIN "${LK[@]}" setlk "$M2/ranges" wr 139 1
expect "(c) ... nor [160,161)" EAGAIN "${LK[@]}" setlk "$M2/ranges" wr 160 1
expect "(c) F_GETLK on node 3 sees the upper piece [160,200)" "WRLCK 160 40 $HOLDER" \
	"${LK[@]}" getlk "$M3/ranges" wr 150 100
kill -TERM "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null
# read locks are shared across nodes, and block writers
fs_bg "${LK[@]}" --ready "$R/c_rd" --hold 60 setlk "$M1/ranges" rd 0 0 >/dev/null
HOLDER=$FS_LAST_BG
wait_for 10 test -e "$R/c_rd"
expect "(c) a read lock on node 2 beside node 1's read lock: OK" OK \
	"${LK[@]}" setlk "$M2/ranges" rd 0 500
expect "(c) a write lock on node 3 against it: EAGAIN" EAGAIN \
	"${LK[@]}" setlk "$M3/ranges" wr 10 1
# F_SETLKW interrupted by a signal
t0=$(fs_now_ms)
expect "(c) F_SETLKW on node 2 interrupted by SIGALRM: EINTR" EINTR \
	"${LK[@]}" setlk "$M2/ranges" wr 0 0 wait alarm 1
took=$(($(fs_now_ms) - t0))
fs_log "(c) the interrupted F_SETLKW returned after $took ms"
fs_check "(c) ... within 5 s (the alarm came after 1 s)" [ "$took" -lt 5000 ]
# F_SETLKW woken by the release on node 1
fs_bg "${LK[@]}" setlk "$M3/ranges" wr 0 0 wait >"$R/c_wait"
WAITER=$FS_LAST_BG
sleep 1
fs_check "(c) F_SETLKW on node 3 still waits while node 1 holds its read lock" \
	test ! -s "$R/c_wait"
t0=$(fs_now_ms)
kill -TERM "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null
wait_for 10 test -s "$R/c_wait"
expect "(c) F_SETLKW on node 3 was granted after node 1's holder exited" OK cat "$R/c_wait"
fs_log "(c) woken $(($(fs_now_ms) - t0)) ms after the release"
wait "$WAITER" 2>/dev/null

# ---- (d) sqlite3 from three nodes --------------------------------------------------

DBN=$FS_TMP/db_ok
sql() { # sql NODE SQL...
	local n=$1
	shift
	timeout 60 sqlite3 -cmd ".timeout 20000" "$(fs_mnt "$n")/test.db" "$@"
}
sql 1 "CREATE TABLE t(id INTEGER PRIMARY KEY, node INT, v TEXT);" && touch "$DBN"
for round in 1 2; do
	for n in 1 2 3; do
		sql "$n" "BEGIN; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 200)
			  INSERT INTO t(node, v) SELECT $n, hex(randomblob(40)) FROM c; COMMIT;" || rm -f "$DBN"
	done
done
# two nodes at once, row by row (each a transaction: the locks interleave)
ins() {
	local n=$1 i
	for ((i = 0; i < 60; i++)); do
		sql "$n" "INSERT INTO t(node, v) VALUES ($n, 'c$i');" || return 1
	done
}
ins 1 & C1=$!
ins 2 & C2=$!
wait "$C1" || rm -f "$DBN"
wait "$C2" || rm -f "$DBN"
fs_check "(d) every sqlite3 statement succeeded" test -e "$DBN"
for n in 1 2 3; do
	expect "(d) PRAGMA integrity_check on node $n" ok sql "$n" "PRAGMA integrity_check;"
	expect "(d) all 1320 rows seen on node $n" 1320 sql "$n" "SELECT count(*) FROM t;"
done

# ---- (e) unlink on node 1 while open on node 2 ---------------------------------------

base=$(used_inodes 1)
head -c $((300 * 1024)) /dev/urandom >"$M2/victim" # 2 blocks
wait_for 5 test -e "$M1/victim"
sync
b_before=$(nblocks 1)
fs_bg "${LK[@]}" --ready "$R/e_ready" --go "$R/e_go" --hold 60 keep "$M2/victim" >"$R/e_out"
KEEPER=$FS_LAST_BG
wait_for 10 test -e "$R/e_ready"
rm "$M1/victim"
fs_check "(e) the name is gone on every node" \
	wait_for 5 eval '[[ ! -e $M1/victim && ! -e $M2/victim && ! -e $M3/victim ]]'
touch "$R/e_go"
wait_for 10 test -s "$R/e_out"
expect "(e) node 2 reads and writes through its descriptor after the unlink" \
	"first|first second" cat "$R/e_out"
fs_check "(e) the orphan is still counted on every node while node 2 holds it" \
	inodes_are $((base + 1)) 1 2 3
kill -TERM "$KEEPER" 2>/dev/null
wait "$KEEPER" 2>/dev/null
fs_check "(e) after node 2 closed it the inode is freed on every node" \
	wait_for 10 inodes_are "$base" 1 2 3
fs_check "(e) ... and its blocks are deleted (node 1, block_gc_ms=3000)" \
	wait_for 20 eval '(( $(nblocks 1) <= b_before - 2 ))'

# A closed file's open record outlives the close (close_delay_ms, 3 s by
# default) so a reopen proposes nothing; removing the file anywhere must
# still free it at once, not when the record would have expired.
base=$(used_inodes 1)
echo idle >"$M1/idle_rec" && cat "$M1/idle_rec" >/dev/null
wait_for 5 test -e "$M2/idle_rec"
rm "$M2/idle_rec"
fs_check "(e) a file closed on node 1 and removed on node 2 is freed within 1 s (its idle open record is dropped)" \
	wait_for 1 inodes_are "$base" 1 2 3
echo idle >"$M1/idle_rec2"
rm "$M1/idle_rec2"
fs_check "(e) ... and so is one created and removed on the same node" \
	wait_for 1 inodes_are "$base" 1 2 3

# ---- (f) a killed holder, then its removal --------------------------------------------

echo z >"$M3/dead"
echo w >"$M3/dead_open"
wait_for 5 test -e "$M1/dead_open"
base=$(used_inodes 1)
fs_bg "${LK[@]}" --ready "$R/f_ready" --hold 600 flock "$M3/dead" ex >/dev/null
wait_for 10 test -e "$R/f_ready"
fs_bg bash -c 'exec 3<"$1" && rm -f "$1" && touch "$2" && exec sleep 600' _ \
	"$M3/dead_open" "$R/f_open"
wait_for 10 test -e "$R/f_open"
sleep 0.3
fs_log "(f) killing node 3 (-9) with a flock and an unlinked open file"
t0=$(fs_now_ms)
fs_kill9 3
expect "(f) right after the kill node 1 cannot take node 3's lock" EAGAIN \
	"${LK[@]}" flock "$M1/dead" ex nb
freed=0
end=$((t0 + LEASE_MS + 10000))
while (($(fs_now_ms) < end)); do
	if [[ $("${LK[@]}" flock "$M1/dead" ex nb) == OK ]]; then
		freed=$(($(fs_now_ms) - t0))
		break
	fi
	sleep 0.2
done
if ((freed)); then
	fs_log "(f) node 3's lock freed $freed ms after the kill (lease $LEASE_MS ms)"
else
	fs_log "(f) node 3's lock was not freed within lease + 10 s"
fi
# The holder renewed at most LEASE/4 before it died; the leader waits a
# whole LEASE after the last renewal it applied.
fs_check "(f) the lock was freed once the lease ran out (>= 3/4 lease, < lease + 10 s)" \
	[ "$freed" -ge $((LEASE_MS * 3 / 4 - 200)) ]
fs_check "(f) while node 3 is down its unlinked open file stays" \
	inodes_are $((base)) 1 2
if timeout 30 "$SANDFS" member remove --data "$(fs_data 1)" 3 >"$R/f_rm" 2>&1; then
	fs_pass "(f) node 3 removed from the cluster ($(cat "$R/f_rm"))"
	fs_check "(f) the removed node's open file was released (inode freed)" \
		wait_for 15 inodes_are $((base - 1)) 1 2
else
	fs_fail "(f) node 3 removed from the cluster ($(cat "$R/f_rm"))"
fi

fs_summary

#!/usr/bin/env bash
# ops_fsck.sh — `sandfs fsck` (online and offline) and the background
# block scrub on a live 3-node cluster of real `sandfs mount` nodes on
# loopback (fs_lib.sh).
#
#   SANDFS_BIN=build/bin tests/e2e/ops_fsck.sh
#
# (a) A fresh, populated cluster checks clean online (through node 1's
#     admin socket, the node running): --json parsed and its figures
#     checked; the text report ends with the summary line.
# (b) Node 3 is stopped and three problems are planted in its data
#     directory through the real storage formats (sandfs-fsck-plant): a
#     corrupted block of /d/big, a broken nlink on /d/small and a dangling
#     entry /d/ghost. Offline fsck finds exactly those three, each with its
#     inode and path, and exits 1; --offline refuses a directory a node
#     runs on.
# (c) Offline --repair with the node's --id/--peers fetches the corrupt
#     block from a peer (the block file hashes to its name again); the two
#     metadata problems are left, with advice, because a change outside the
#     log would make the replica differ from the others.
# (d) Node 3 restarted: online --repair fixes the nlink and the dangling
#     entry through the log; afterwards every node checks clean and node
#     3's mount shows nlink 1 and no ghost (these checks find each node's
#     data directory through a configuration file and --id).
# (e) The scrub (scrub_interval_s=2 here) finds a block corrupted on a
#     running node, refetches it, and `sandfs status` (text and --json)
#     shows it.
# (f) Usage errors exit 2; a directory that is not a data directory exits 1.
#
# The trap of fs_lib.sh unmounts and stops everything it started (by pid),
# also on failure. Ends with "N passed, M failed"; exit 0 when all passed.
set -u
# shellcheck source=tests/e2e/fs_lib.sh
. "$(dirname "$0")/fs_lib.sh"

if [[ ! -e /dev/fuse ]]; then
	echo "ops_fsck: SKIP: needs /dev/fuse"
	exit 77
fi
PLANT="$FS_BIN/sandfs-fsck-plant"
if [[ ! -x $PLANT ]]; then
	echo "FAIL: no $PLANT (build the tree)" >&2
	exit 1
fi

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

# fsck_json OUT ARGS...: run `sandfs fsck --json ARGS`, report to OUT,
# stderr to OUT.err; sets RC.
fsck_json() {
	local out=$1
	shift
	timeout 120 "$SANDFS" fsck --json "$@" >"$out" 2>"$out.err"
	RC=$?
}

# jq-like checks in python: pyq FILE EXPR (EXPR sees the report as r).
pyq() {
	python3 -c 'import json,sys
r = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
sys.exit(0 if v else 1)' "$1" "$2"
}

fs_init 3 --timeout-ms 5000 -o scrub_interval_s=2,scrub_mb_s=64
fs_start_all || { fs_fail "cluster up (${FS_WHY:-})"; fs_summary; exit 1; }
M1=$(fs_mnt 1)
M3=$(fs_mnt 3)
T=$FS_TMP

# ---- (a) clean online -------------------------------------------------------------
mkdir -p "$M1/d/sub" "$M1/e"
head -c $((3 * 262144 + 1000)) /dev/urandom >"$M1/d/big"
head -c 262144 /dev/urandom >"$M1/d/big2"
echo small >"$M1/d/small"
for i in $(seq 1 20); do echo "file $i" >"$M1/e/f$i"; done
ln "$M1/d/small" "$M1/e/hard"
ln -s ../d/big "$M1/e/link"
fs_wait_converged 20 1 2 3 || fs_fail "converged after populating (${FS_WHY:-})"
# the small file had two names; keep one so that nlink 1 is the truth
rm "$M1/e/hard"
fs_wait_converged 20 1 2 3 || fs_fail "converged after the unlink (${FS_WHY:-})"

fsck_json "$T/a.json" --data "$(fs_data 1)"
fs_check "online fsck of a fresh cluster exits 0 (rc $RC)" test "$RC" -eq 0
fs_check "online fsck --json: mode online, nothing found" \
	pyq "$T/a.json" 'r["mode"] == "online" and r["found"] == 0 and r["problems"] == [] and r["node"] == 1'
fs_check "online fsck --json: inodes, entries and every referenced block verified" \
	pyq "$T/a.json" '(lambda c: c["inodes"] == 28 and c["directories"] == 4 and c["files"] == 23 and c["symlinks"] == 1 and c["blocks_referenced"] >= 5 and c["blocks_verified"] == c["blocks_referenced"] and c["bytes_verified"] > 1000000)(r["checked"])'
fs_check "the summary line goes to stderr with --json" grep -q "sandfs fsck: clean" "$T/a.json.err"
timeout 120 "$SANDFS" fsck --data "$(fs_data 2)" >"$T/a2.txt" 2>&1
fs_check "online text report ends with the summary line (rc $?)" \
	bash -c "tail -n 1 '$T/a2.txt' | grep -q '^sandfs fsck: clean: node 2 (online'"

# ---- (a2) online checks while another mount writes --------------------------------------
# creates, overwrites of several blocks, renames, hard links, unlinks and
# files unlinked while open (orphans): a check reads one point in time, so
# none of it is a finding
cat >"$T/writer.py" <<'PY'
import os, random, sys, time
root, secs = sys.argv[1], float(sys.argv[2])
random.seed(7)
os.makedirs(root + "/sub", exist_ok=True)
held, end, n = [], time.time() + secs, 0
while time.time() < end:
    n += 1
    f = "%s/f%d" % (root, n % 40)
    try:
        with open(f, "wb") as fh:
            fh.write(os.urandom(random.randint(0, 700000)))
        op = n % 5
        if op == 0:
            os.rename(f, "%s/sub/g%d" % (root, n % 9))
        elif op == 1:
            os.link(f, "%s/h%d" % (root, n % 7))
        elif op == 2:
            held.append(open(f, "rb"))
            os.unlink(f)
        elif op == 3:
            for x in os.listdir(root + "/sub")[:2]:
                os.unlink(root + "/sub/" + x)
        if len(held) > 5:
            held.pop(0).close()
    except OSError:
        pass
PY
fs_bg python3 "$T/writer.py" "$M1/w" 25
sleep 1
for i in 2 3 1 2 3; do
	fsck_json "$T/a3.json" --data "$(fs_data "$i")"
	fs_check "online fsck of node $i while node 1 writes: nothing found (rc $RC)" \
		pyq "$T/a3.json" 'r["found"] == 0'
	[[ $RC -eq 0 ]] || python3 -c "import json; print(json.load(open('$T/a3.json'))['problems'][:3])"
done
wait "$FS_LAST_BG"
rm -rf "$M1/w"
fs_wait_converged 30 1 2 3 || fs_fail "converged after the writer (${FS_WHY:-})"

# ---- (b) plant three problems in node 3's stopped data directory -----------------------
fs_umount 3
D3=$(fs_data 3)
info=$("$PLANT" "$D3" info /d/big) || fs_fail "plant: info /d/big"
BIG_INO=$(sed -n 's/.*ino=\([0-9]*\).*/\1/p' <<<"$info")
BLOCK=$(sed -n 's/.*block=\([0-9a-f]*\).*/\1/p' <<<"$info")
SMALL_INO=$("$PLANT" "$D3" nlink /d/small 4 | sed -n 's/.*ino=\([0-9]*\).*/\1/p')
GHOST=$("$PLANT" "$D3" dangling /d ghost | sed -n 's/.*ghost=\([0-9]*\).*/\1/p')
"$PLANT" "$D3" corrupt-block "$BLOCK" >/dev/null || fs_fail "plant: corrupt block $BLOCK"
fs_log "planted: block $BLOCK of inode $BIG_INO, nlink of inode $SMALL_INO, ghost inode $GHOST"
bfile="$D3/blocks/${BLOCK:0:2}/$BLOCK"
fs_check "the planted block no longer hashes to its name" \
	test "$(sha256sum "$bfile" | cut -d' ' -f1)" != "$BLOCK"

fsck_json "$T/b.json" --data "$D3"
fs_check "offline fsck finds problems: exit 1 (rc $RC)" test "$RC" -eq 1
fs_check "offline fsck --json: mode offline, exactly three problems" \
	pyq "$T/b.json" 'r["mode"] == "offline" and r["node"] is None and r["found"] == 3 and r["left"] == 3'
fs_check "the corrupt block: kind, inode, path and hash" \
	pyq "$T/b.json" "[p for p in r['problems'] if p['kind'] == 'block-corrupt' and p['ino'] == $BIG_INO and p['path'] == '/d/big' and p['block'] == '$BLOCK' and 'SHA-256' in p['detail']]"
fs_check "the broken nlink: kind, inode, path, what is wrong" \
	pyq "$T/b.json" "[p for p in r['problems'] if p['kind'] == 'nlink' and p['ino'] == $SMALL_INO and p['path'] == '/d/small' and 'nlink is 4, but 1 entry names it' in p['detail']]"
fs_check "the dangling entry: kind, inode, path" \
	pyq "$T/b.json" "[p for p in r['problems'] if p['kind'] == 'dangling-entry' and p['ino'] == $GHOST and p['path'] == '/d/ghost']"
fs_check "a check without --repair changes nothing (the corrupt block is still there)" test -f "$bfile"
timeout 60 "$SANDFS" fsck --offline --data "$(fs_data 1)" >"$T/b2.txt" 2>&1
rc=$?
fs_check "--offline refuses a directory a node runs on (rc $rc)" \
	bash -c "[[ $rc -eq 1 ]] && grep -q 'in use by another sandfs process' '$T/b2.txt'"

# ---- (c) offline repair: the block from a peer, the metadata left alone -----------------
fsck_json "$T/c.json" --data "$D3" --repair --id 3 --peers "$FS_PEERS"
fs_check "offline repair leaves the metadata problems: exit 1 (rc $RC)" test "$RC" -eq 1
fs_check "offline repair fetched the corrupt block from a peer" \
	pyq "$T/c.json" "[p for p in r['problems'] if p['kind'] == 'block-corrupt' and p['state'] == 'repaired' and 'fetched a good copy from node' in p['action']]"
fs_check "offline repair reports the metadata problems with advice, not repaired" \
	pyq "$T/c.json" "r['node'] == 3 and r['repaired'] == 1 and r['left'] == 2 and all(p['state'] == 'found' and 'outside the log' in p['action'] for p in r['problems'] if p['kind'] != 'block-corrupt')"
fs_check "the block file hashes to its name again" \
	test "$(sha256sum "$bfile" | cut -d' ' -f1)" = "$BLOCK"

# ---- (d) online repair through the log ----------------------------------------------------
fs_start 3 || fs_fail "node 3 restarts"
fs_wait_converged 30 1 2 3 || fs_fail "converged with node 3 back (${FS_WHY:-})"
fsck_json "$T/d.json" --data "$D3" --repair
fs_check "online repair fixes the rest: exit 0 (rc $RC)" test "$RC" -eq 0
fs_check "online repair: the nlink and the dangling entry repaired through the log" \
	pyq "$T/d.json" "r['mode'] == 'online' and r['found'] == 2 and r['repaired'] == 2 and {p['kind'] for p in r['problems']} == {'nlink', 'dangling-entry'} and all('through the log' in p['action'] for p in r['problems'])"
fs_wait_converged 20 1 2 3 || fs_fail "converged after the repairs (${FS_WHY:-})"
# the configuration file names the members and the data directories
{
	tr ',' '\n' <<<"$FS_PEERS" | sed 's/^/member = /'
	echo "data = $FS_TMP/d%i"
} >"$T/sandfs.conf"
for i in 1 2 3; do
	fsck_json "$T/d$i.json" --config "$T/sandfs.conf" --id "$i"
	fs_check "node $i checks clean after the repair (rc $RC)" \
		bash -c "[[ $RC -eq 0 ]] && python3 -c 'import json,sys; r = json.load(open(\"$T/d$i.json\")); sys.exit(not (r[\"found\"] == 0 and r[\"node\"] == $i))'"
done
fs_check "node 3's mount: /d/small has nlink 1" test "$(stat -c %h "$M3/d/small")" = 1
fs_check "node 3's mount: no /d/ghost in the listing" bash -c "! ls '$M3/d' | grep -qx ghost"
fs_check "node 3 reads /d/big as node 1 does" cmp -s "$M1/d/big" "$M3/d/big"

# ---- (e) the scrub on a running node --------------------------------------------------------
D2=$(fs_data 2)
B2=$(head -c 262144 "$M1/d/big2" | sha256sum | cut -d' ' -f1)
f2="$D2/blocks/${B2:0:2}/$B2"
fs_check "node 2 stores the block of /d/big2" test -f "$f2"
"$PLANT" "$D2" corrupt-block "$B2" >/dev/null || fs_fail "corrupting a block under node 2"
scrub_repaired() {
	fs_status 2 >"$T/e.json" &&
		pyq "$T/e.json" "(lambda s: s['node'] == 2 and s['enabled'] and s['corrupt'] >= 1 and s['repaired'] >= 1 and '${B2:0:16}' in s['last_finding'])(r['scrub'])"
}
fs_check "the scrub finds the corrupt block and repairs it; status --json shows it" \
	wait_for 30 scrub_repaired
fs_check "the block file under node 2 hashes to its name again" \
	test "$(sha256sum "$f2" | cut -d' ' -f1)" = "$B2"
timeout 10 "$SANDFS" status --data "$D2" >"$T/e.txt" 2>&1
fs_check "status (text) shows the scrub's findings" \
	bash -c "grep -q '^scrub (node 2): .*corrupt (1 repaired' '$T/e.txt' && grep -q 'last finding: block ${B2:0:16}' '$T/e.txt'"
fs_check "node 2 reads /d/big2 intact" cmp -s "$M1/d/big2" "$(fs_mnt 2)/d/big2"

# ---- (f) usage -------------------------------------------------------------------------------
"$SANDFS" fsck >/dev/null 2>&1
fs_check "fsck without --data: exit 2" test $? -eq 2
"$SANDFS" fsck --data "$D3" --online --offline >/dev/null 2>&1
fs_check "fsck --online --offline: exit 2" test $? -eq 2
"$SANDFS" fsck --data "$D3" --bogus >/dev/null 2>&1
fs_check "fsck with an unknown option: exit 2" test $? -eq 2
mkdir -p "$T/empty"
"$SANDFS" fsck --data "$T/empty" >"$T/f.txt" 2>&1
rc=$?
fs_check "fsck of a directory that is no data directory: exit 1, says so (rc $rc)" \
	bash -c "[[ $rc -eq 1 ]] && grep -q 'not a sandfs data directory' '$T/f.txt'"
fs_check "fsck --help: exit 0" "$SANDFS" fsck --help

fs_summary

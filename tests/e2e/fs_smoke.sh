#!/usr/bin/env bash
# fs_smoke.sh — first end-to-end check of sandfs: three real `sandfs mount`
# processes on loopback, three FUSE mounts, ordinary shell tools.
#
#   SANDFS_BIN=build/bin tests/e2e/fs_smoke.sh
#
# Everything lives under one mktemp -d directory; the trap unmounts and
# stops every node it started (by the pid in its data directory's lock
# file, never by name), also when a check fails. Exit status: 0 when all
# checks pass, 1 otherwise. KEEP=1 leaves the temporary directory.
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${SANDFS_BIN:-$ROOT/build/bin}
SANDFS=$BIN/sandfs
if [ ! -x "$SANDFS" ]; then
	echo "fs_smoke: $SANDFS not found; build first or set SANDFS_BIN" >&2
	exit 2
fi
if [ ! -e /dev/fuse ] || ! command -v fusermount3 >/dev/null; then
	echo "fs_smoke: SKIP: needs /dev/fuse and fusermount3" >&2
	exit 77
fi

# Every option on the command line; no machine-wide config file.
export SANDFS_CONFIG=
T=$(mktemp -d /tmp/sandfs-e2e.XXXXXX)
N=3
PIDS=()
FAILS=0
PASSES=0

# ---- cluster -------------------------------------------------------------

# A TCP port nobody listens on (checked in /proc/net/tcp{,6}).
port_free() {
	local hex
	hex=$(printf ':%04X ' "$1")
	! grep -qi "$hex" /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

pick_ports() {
	local base tries=0
	while :; do
		base=$((20000 + RANDOM % 30000))
		if port_free $base && port_free $((base + 1)) && port_free $((base + 2)); then
			echo $base
			return
		fi
		tries=$((tries + 1))
		[ $tries -gt 50 ] && { echo "no free ports" >&2; exit 2; }
	done
}

cleanup() {
	local i pid
	for i in $(seq 1 $N); do
		# /proc/mounts, not mountpoint(1): a dead mount fails stat.
		if grep -q " $T/m$i " /proc/mounts; then
			fusermount3 -u "$T/m$i" 2>/dev/null || fusermount3 -u -z "$T/m$i" 2>/dev/null
		fi
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "fs_smoke: node pid $pid still running after unmount; SIGTERM" >&2
			kill -TERM "$pid" 2>/dev/null
			sleep 1
			kill -KILL "$pid" 2>/dev/null
		fi
	done
	if [ "${KEEP:-0}" = 1 ]; then
		echo "fs_smoke: kept $T"
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BASE=$(pick_ports)
PEERS=""
for i in $(seq 1 $N); do
	PEERS="$PEERS${PEERS:+,}$i=127.0.0.1:$((BASE + i - 1))"
done

echo "fs_smoke: $N nodes on 127.0.0.1:$BASE-$((BASE + N - 1)) under $T"
for i in $(seq 1 $N); do
	mkdir -p "$T/m$i"
	if ! "$SANDFS" mount --id "$i" --peers "$PEERS" --data "$T/d$i" "$T/m$i"; then
		echo "fs_smoke: FAIL: node $i did not mount (log: $T/d$i/sandfs.log)" >&2
		[ -f "$T/d$i/sandfs.log" ] && tail -n 20 "$T/d$i/sandfs.log" >&2
		exit 1
	fi
	pid=$(tr -dc '0-9' <"$T/d$i/LOCK.sandfs" 2>/dev/null)
	[ -n "$pid" ] && PIDS+=("$pid")
done
M1=$T/m1 M2=$T/m2 M3=$T/m3

# ---- checks ------------------------------------------------------------------

# check NAME CMD...: run CMD, print PASS/FAIL.
check() {
	local name=$1
	shift
	if "$@" >"$T/out" 2>&1; then
		PASSES=$((PASSES + 1))
		echo "PASS  $name"
	else
		FAILS=$((FAILS + 1))
		echo "FAIL  $name"
		sed 's/^/      | /' "$T/out" | head -n 20
	fi
}

# eventually CMD...: CMD succeeds within 5 s (stat/ls are served locally
# and may trail the proposing node by a replication round trip).
eventually() {
	for _ in $(seq 1 50); do
		"$@" && return 0
		sleep 0.1
	done
	"$@"
}

# same_content FILE TEXT: FILE holds exactly TEXT.
same_content() { [ "$(cat "$1")" = "$2" ]; }
# stat_is FORMAT FILE VALUE: stat -c FORMAT FILE prints VALUE.
stat_is() { [ "$(stat -c "$1" "$2")" = "$3" ]; }
# link_is LINK TARGET
link_is() { [ "$(readlink "$1")" = "$2" ]; }
# xattr_is FILE NAME VALUE
xattr_is() { [ "$(getfattr --only-values -n "$2" "$1" 2>/dev/null)" = "$3" ]; }

# fails_with MSG CMD...: CMD fails and says MSG.
fails_with() {
	local msg=$1
	shift
	local out
	if out=$("$@" 2>&1); then
		echo "unexpected success: $*"
		return 1
	fi
	echo "$out"
	grep -q "$msg" <<<"$out"
}

t_create_visible() {
	echo hello >"$M1/f1" || return 1
	for m in "$M2" "$M3"; do
		# ls runs on every try (a process substitution would run once)
		eventually sh -c 'ls "$1" | grep -qx f1' _ "$m" || { echo "ls $m lacks f1"; return 1; }
		stat "$m/f1" || return 1
	done
}

t_content() {
	same_content "$M2/f1" hello && same_content "$M3/f1" hello || return 1
	head -c 1500000 /dev/urandom >"$T/big.src" && cp "$T/big.src" "$M2/big" || return 1
	cmp "$T/big.src" "$M1/big" && cmp "$T/big.src" "$M3/big"
}

# Close-to-open, no retries: after echo > f returns on node 1, an open of
# f that starts later on node 3 sees the new content; same for rewrites
# and appends of one file read on node 2.
t_close_to_open() {
	local i v
	for i in $(seq 1 20); do
		echo "v$i" >"$M1/cto$i" || return 1
		v=$(cat "$M3/cto$i") || return 1
		[ "$v" = "v$i" ] || { echo "new file $i: node 3 read '$v'"; return 1; }
	done
	for i in $(seq 1 20); do
		echo "rewrite $i $RANDOM" >"$M1/cto" && echo "tail $i" >>"$M1/cto" || return 1
		v=$(cat "$M2/cto") || return 1
		[ "$v" = "$(cat "$M1/cto")" ] || { echo "rewrite $i: node 2 read '$v'"; return 1; }
	done
	rm -f "$M1"/cto*
}

# The kernel keeps a file's pages across opens only while its content is
# unchanged: a node that read a file (pages cached) and reopens it after
# another node overwrote bytes in place (same size, no truncation) and put
# the old mtime back (as rsync or tar do: size and mtime then tell the
# kernel nothing) must read the new bytes, every time; reading it again
# unchanged must give the same bytes from the cache.
t_cached_pages_follow_changes() {
	local i v src=$T/pc.src when="2020-01-01 00:00:00"
	head -c 300000 /dev/urandom >"$src" && cp "$src" "$M1/pc" || return 1
	touch -m -d "$when" "$M1/pc" || return 1
	cmp "$src" "$M2/pc" && cmp "$src" "$M2/pc" || return 1 # read twice
	for i in $(seq 1 10); do
		printf 'change %04d' "$i" |
			dd of="$src" bs=1 seek=$((i * 20000)) conv=notrunc status=none
		dd if="$src" of="$M1/pc" bs=64k conv=notrunc,fsync status=none || return 1
		touch -m -d "$when" "$M1/pc" || return 1
		cmp "$src" "$M2/pc" || { echo "round $i: node 2 read old bytes"; return 1; }
		cmp "$src" "$M2/pc" || { echo "round $i: second read differs"; return 1; }
		v=$(dd if="$M3/pc" bs=1 skip=$((i * 20000)) count=11 status=none)
		[ "$v" = "$(printf 'change %04d' "$i")" ] || { echo "round $i: node 3 read '$v'"; return 1; }
	done
	: >"$src" && truncate -s 0 "$M1/pc" || return 1
	# an open is a barrier (close-to-open); a stat of cached attributes
	# may lag until the invalidation arrives ("reads are local")
	cmp "$src" "$M2/pc" || { echo "truncate not seen by an open on node 2"; return 1; }
	eventually sh -c '[ "$(stat -c %s "$1")" = 0 ]' _ "$M2/pc" || { echo "truncate not seen by stat on node 2"; return 1; }
	rm -f "$M1/pc"
}

# The kernel keeps a directory's listing across opendirs only while no
# entry of it changed: a node that listed a directory (listing cached) and
# lists it again after another node created, renamed or removed an entry
# sees the change, every time, without retrying (opendir is a barrier).
t_cached_listing_follows_changes() {
	local i d1=$M1/lc d2=$M2/lc d3=$M3/lc
	mkdir "$d1" && touch "$d1/a" || return 1
	ls "$d2" >/dev/null && ls "$d2" >/dev/null || return 1
	for i in $(seq 1 10); do
		touch "$d1/n$i" || return 1
		ls "$d2" | grep -qx "n$i" || { echo "round $i: node 2 listing lacks n$i"; return 1; }
		mv "$d3/n$i" "$d3/m$i" || return 1
		ls "$d2" | grep -qx "m$i" && ! ls "$d2" | grep -qx "n$i" ||
			{ echo "round $i: node 2 listing missed the rename on node 3"; return 1; }
		rm "$d1/m$i" || return 1
		! ls "$d2" | grep -qx "m$i" || { echo "round $i: node 2 still lists m$i"; return 1; }
		[ "$(ls "$d2")" = a ] || { echo "round $i: node 2 lists $(ls "$d2" | tr '\n' ' ')"; return 1; }
	done
	mkdir "$d1/sub" && touch "$d2/sub/x" && ls "$d2/sub" >/dev/null || return 1
	mv "$d1/sub" "$M1/lc_sub" || return 1
	[ "$(stat -c %i "$M2/lc_sub/..")" = "$(stat -c %i "$M2")" ] || { echo "moved dir's .. wrong on node 2"; return 1; }
	ls "$M2/lc_sub" | grep -qx x || return 1
	rm -rf "$d1" "$M1/lc_sub"
}

t_mkdir_deep() {
	mkdir -p "$M1/deep/a/b/c/d/e/f/g" || return 1
	eventually test -d "$M3/deep/a/b/c/d/e/f/g" && eventually test -d "$M2/deep/a/b/c/d/e/f/g"
}

t_mv() {
	mv "$M2/f1" "$M2/deep/a/moved" || return 1
	eventually test ! -e "$M1/f1" && eventually same_content "$M1/deep/a/moved" hello &&
		eventually same_content "$M3/deep/a/moved" hello
}

t_hardlink() {
	ln "$M3/deep/a/moved" "$M3/deep/hard" || return 1
	eventually stat_is %h "$M1/deep/a/moved" 2 &&
		eventually same_content "$M2/deep/hard" hello
}

t_symlink() {
	ln -s a/moved "$M1/deep/sym" || return 1
	eventually link_is "$M2/deep/sym" a/moved && same_content "$M3/deep/sym" hello
}

t_chmod() {
	chmod 640 "$M2/deep/a/moved" || return 1
	eventually stat_is %a "$M1/deep/a/moved" 640 &&
		eventually stat_is %a "$M3/deep/hard" 640
}

t_xattr() {
	if ! command -v setfattr >/dev/null; then
		echo "setfattr missing (apt-get install attr)"
		return 1
	fi
	setfattr -n user.color -v blue "$M1/deep/a/moved" || return 1
	eventually xattr_is "$M2/deep/a/moved" user.color blue || return 1
	setfattr -x user.color "$M3/deep/a/moved" || return 1
	eventually fails_with "No such attribute" getfattr -n user.color "$M1/deep/a/moved"
}

t_enametoolong() {
	local long
	long=$(printf 'n%.0s' $(seq 1 256))
	fails_with "File name too long" touch "$M1/$long" &&
		fails_with "File name too long" mkdir "$M2/$long"
}

t_enotempty() {
	fails_with "Directory not empty" rmdir "$M2/deep" &&
		eventually test -d "$M1/deep/a"
}

t_rm_rf() {
	rm -rf "$M3/deep" || return 1
	eventually test ! -e "$M1/deep" && eventually test ! -e "$M2/deep"
}

# Three nodes race `set -o noclobber; echo > same` (O_CREAT|O_EXCL):
# exactly one wins each round and every node reads the winner's text.
t_excl_race() {
	local round i wins winner st
	for round in $(seq 1 10); do
		for i in 1 2 3; do
			(set -o noclobber; echo "node$i" >"$T/m$i/race$round") 2>/dev/null &
			eval "p$i=\$!"
		done
		wins=0 winner=""
		for i in 1 2 3; do
			eval "wait \$p$i"
			st=$?
			if [ $st -eq 0 ]; then
				wins=$((wins + 1))
				winner=node$i
			fi
		done
		if [ $wins -ne 1 ]; then
			echo "round $round: $wins winners"
			return 1
		fi
		for i in 1 2 3; do
			eventually same_content "$T/m$i/race$round" "$winner" ||
				{ echo "round $round: m$i reads '$(cat "$T/m$i/race$round")', winner $winner"; return 1; }
		done
	done
}

# Two descriptors of one file on one node: what one wrote (not yet
# closed or fsynced) is read through the other, as on a local filesystem.
t_two_fds() {
	python3 - "$M1/twofds" <<'PY'
import os, sys
p = sys.argv[1]
w = os.open(p, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
data = os.urandom(300000)
os.write(w, data)
r = os.open(p, os.O_RDONLY)
got = os.pread(r, len(data), 0)
os.write(w, b"tail")
got2 = os.pread(r, 4, len(data))
os.close(r); os.close(w)
sys.exit(0 if got == data and got2 == b"tail" else 1)
PY
}

echo "fs_smoke: checks"
check "file created on node 1 is listed and stat-able on nodes 2 and 3" t_create_visible
check "echo > file on node 1, cat on 2 and 3; 1.5 MB file copied via 2 equals on 1 and 3" t_content
check "close-to-open: write on node 1, then open+read on 2/3 sees it (no retry)" t_close_to_open
check "cached pages: in-place overwrites on node 1 seen by every reopen on 2 and 3" t_cached_pages_follow_changes
check "cached listings: creates, renames, removes on nodes 1 and 3 seen by every ls on 2 (no retry)" t_cached_listing_follows_changes
check "mkdir -p deep tree on node 1 visible on 2 and 3" t_mkdir_deep
check "mv on node 2 moves the file for nodes 1 and 3" t_mv
check "ln (hard link) on node 3: nlink 2 and content on 1 and 2" t_hardlink
check "ln -s on node 1 resolves on 2 and 3" t_symlink
check "chmod on node 2 seen on 1 and 3 (both links)" t_chmod
check "setfattr/getfattr/remove user xattr across nodes" t_xattr
check "name of 256 bytes fails with ENAMETOOLONG (touch, mkdir)" t_enametoolong
check "rmdir of non-empty dir fails with ENOTEMPTY" t_enotempty
check "exclusive create race (noclobber) on 3 nodes: exactly one winner, 10 rounds" t_excl_race
check "rm -rf tree on node 3 gone on 1 and 2" t_rm_rf
check "bytes written through one descriptor are read through another of the same node before close (git index-pack)" t_two_fds

echo "fs_smoke: $PASSES passed, $FAILS failed"
[ $FAILS -eq 0 ]

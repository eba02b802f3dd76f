#!/usr/bin/env bash
# shellcheck disable=SC2016 # checks in '...' run later, with {} replaced
# fs_shell.sh — ordinary shell tools on a 3-node sandfs cluster.
#
# Three nodes on loopback, each with a real FUSE mount. Everything is done
# through node 1's mount and checked through the mounts of nodes 2 and 3
# (reads there are local, so a check polls until the node has caught up,
# bounded by FS_WAIT seconds). Then two nodes race each other on the same
# names (O_EXCL create, rename, mkdir against rmdir), and the errors a user
# can meet are checked (ENAMETOOLONG, ENOTEMPTY, never EXDEV inside the
# mount).
#
# The copied tree is all of /usr/include (on the Debian 12 dev machine:
# 120 MB, 9200 entries, ~50 s to copy); FS_TREE=small copies only
# /usr/include/linux + /usr/include/x86_64-linux-gnu (6 MB, 1200 entries).
#
#   SANDFS_BIN=build/bin bash tests/e2e/fs_shell.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/fs_lib.sh
. "$here/fs_lib.sh"

OPS="python3 $here/fs_ops.py"
WAIT=${FS_WAIT:-10}
M1=$(fs_mnt 1) M2=$(fs_mnt 2) M3=$(fs_mnt 3)
SRC=$FS_TMP/src # local reference copies

for t in setfattr getfattr git tar sha256sum truncate; do
	command -v "$t" >/dev/null || { echo "FAIL: $t is not installed (package: attr/git/tar/coreutils)"; exit 1; }
done

# eventually CMD...: true once CMD succeeds, polling for up to $WAIT s.
eventually() {
	local end=$(($(fs_now_ms) + WAIT * 1000))
	while :; do
		"$@" >/dev/null 2>&1 && return 0
		(($(fs_now_ms) < end)) || return 1
		sleep 0.1
	done
}

# on_all CMD-WITH-{}...: run CMD with {} replaced by each mount (eventually).
on_all() {
	local m args a ok=0
	for m in "$M1" "$M2" "$M3"; do
		args=()
		for a in "$@"; do args+=("${a//\{\}/$m}"); done
		if ! eventually "${args[@]}"; then
			echo "  on $m: ${args[*]} did not hold within ${WAIT}s" >&2
			ok=1
		fi
	done
	return $ok
}

# do_all ACTION CHECK...: eval ACTION (on node 1), then on_all CHECK.
do_all() {
	local action=$1
	shift
	eval "$action" || { echo "  failed: $action" >&2; return 1; }
	on_all "$@"
}

# The same after every node applied everything (for whole-tree checks).
converged() {
	fs_wait_converged 30 1 2 3 || { echo "  not converged: $FS_WHY" >&2; return 1; }
}

fs_log "starting 3 nodes in $FS_TMP"
fs_init 3
if ! fs_start_all; then
	fs_fail "3 nodes mount and elect a leader (${FS_WHY:-})"
	fs_summary
	exit 1
fi
fs_pass "3 nodes mounted, leader is node $FS_LEADER"
mkdir -p "$SRC"

# ---- namespace -------------------------------------------------------------

deep=a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z/0/1/2/3/4/5/6/7/8/9
fs_check "mkdir -p of a 36-level tree is seen on every node" do_all "mkdir -p '$M1/deep/$deep' && echo bottom >'$M1/deep/$deep/f'" \
	grep -qx bottom "{}/deep/$deep/f"

if [[ ${FS_TREE:-full} == full ]]; then
	tree_desc="/usr/include"
	cp_tree() { cp -r /usr/include "$1/inc"; }
	tree_src=(/usr/include)
else
	tree_desc="/usr/include/{linux,x86_64-linux-gnu}"
	cp_tree() { mkdir "$1/inc" && cp -r /usr/include/linux /usr/include/x86_64-linux-gnu "$1/inc/"; }
	tree_src=(/usr/include/linux /usr/include/x86_64-linux-gnu)
fi
t0=$(fs_now_ms)
if cp_tree "$M1"; then
	t1=$(fs_now_ms)
	n_ent=$(find "$M1/inc" | wc -l)
	fs_log "cp -r $tree_desc ($(du -sh --apparent-size "${tree_src[@]}" | awk '{print $1}' | paste -sd+), $n_ent entries) took $((t1 - t0)) ms"
	fs_pass "cp -r of $tree_desc into node 1"
else
	fs_fail "cp -r of $tree_desc into node 1"
fi
diff_tree() { # mount: the copied tree equals the source
	local m=$1 d
	if [[ ${FS_TREE:-full} == full ]]; then
		diff -r --no-dereference /usr/include "$m/inc"
	else
		for d in linux x86_64-linux-gnu; do
			diff -r --no-dereference "/usr/include/$d" "$m/inc/$d" || return 1
		done
	fi
}
converged
for i in 1 2 3; do
	fs_check "diff -r of the copied tree against the source on node $i" diff_tree "$(fs_mnt "$i")"
done

# mv of files and directories across directories
mkdir -p "$M1/mv/a/sub" "$M1/mv/b"
echo one >"$M1/mv/a/file1"
echo two >"$M1/mv/a/sub/file2"
fs_check "mv of a file across directories, seen on every node" do_all "mv '$M1/mv/a/file1' '$M1/mv/b/file1.moved'" \
	bash -c '[[ ! -e {}/mv/a/file1 ]] && grep -qx one {}/mv/b/file1.moved'
fs_check "mv of a directory across directories, seen on every node" do_all "mv '$M1/mv/a/sub' '$M1/mv/b/'" \
	bash -c '[[ ! -e {}/mv/a/sub ]] && grep -qx two {}/mv/b/sub/file2'
fs_check "mv of the copied tree's linux/ into another directory" do_all "mkdir '$M1/mv/c' && mv '$M1/inc/linux' '$M1/mv/c/linux'" \
	bash -c '[[ ! -e {}/inc/linux && -f {}/mv/c/linux/fs.h ]]'

# rm -rf
fs_check "rm -rf of a large tree, gone on every node" do_all "rm -rf \"$M1/mv/c/linux\" \"$M1/inc\"" \
	bash -c '[[ ! -e {}/inc && ! -e {}/mv/c/linux && -z $(ls -A {}/mv/c) ]]'

# hard links and symlinks
mkdir -p "$M1/links"
echo linked >"$M1/links/orig"
fs_check "ln: two names, one inode, nlink 2 on every node" do_all "ln \"$M1/links/orig\" \"$M1/links/hard\"" \
	bash -c '[[ $(stat -c %i {}/links/orig) == $(stat -c %i {}/links/hard) && $(stat -c %h {}/links/orig) == 2 ]] && grep -qx linked {}/links/hard'
fs_check "writing through one hard link shows through the other on every node" do_all "echo changed >'$M1/links/hard'" \
	grep -qx changed "{}/links/orig"
fs_check "ln -s: readlink and reading through the link on every node" do_all "ln -s orig \"$M1/links/soft\"" \
	bash -c '[[ $(readlink {}/links/soft) == orig ]] && grep -qx changed {}/links/soft'
fs_check "rm of one hard link leaves the other with nlink 1" do_all "rm \"$M1/links/orig\"" \
	bash -c '[[ ! -e {}/links/orig && $(stat -c %h {}/links/hard) == 1 ]] && grep -qx changed {}/links/hard'

# chmod, chown, touch -d
echo attrs >"$M1/attrs"
fs_check "chmod 0640 / chown 1234:5678 / touch -d 2001-02-03 seen on every node" do_all "chmod 0640 '$M1/attrs' && chown 1234:5678 '$M1/attrs' && touch -d '2001-02-03 04:05:06 UTC' '$M1/attrs'" \
	bash -c '[[ "$(stat -c "%a %u %g %Y" {}/attrs)" == "640 1234 5678 981173106" ]]'
fs_check "chmod of a directory (0700) seen on every node" do_all "mkdir '$M1/private' && chmod 0700 '$M1/private'" \
	bash -c '[[ $(stat -c %a {}/private) == 700 ]]'

# truncate (grow and shrink), contents checked against a local reference
head -c 100000 /dev/urandom >"$SRC/trunc"
cp "$SRC/trunc" "$M1/trunc"
truncate -s 300000 "$SRC/trunc"
fs_check "truncate grow to 300000: zeros after the data on every node" do_all "truncate -s 300000 \"$M1/trunc\"" \
	cmp "$SRC/trunc" "{}/trunc"
truncate -s 12345 "$SRC/trunc"
fs_check "truncate shrink to 12345: the prefix stays on every node" do_all "truncate -s 12345 \"$M1/trunc\"" \
	cmp "$SRC/trunc" "{}/trunc"
truncate -s 0 "$SRC/trunc"
printf 'tail' >>"$SRC/trunc"
fs_check "truncate to 0 then append" do_all "truncate -s 0 '$M1/trunc' && printf tail >>'$M1/trunc'" \
	cmp "$SRC/trunc" "{}/trunc"

# tar round trip: archive a tree into the mount, unpack it there, and pack it
# again from node 3 to unpack locally.
fs_check "tar cf into the mount and tar xf inside it (node 1)" bash -c "tar cf '$M1/linux.tar' -C /usr/include linux && mkdir '$M1/untar' && tar xf '$M1/linux.tar' -C '$M1/untar'"
converged
for i in 2 3; do
	fs_check "the tar xf result equals the source on node $i" \
		diff -r /usr/include/linux "$(fs_mnt "$i")/untar/linux"
done
mkdir -p "$SRC/untar"
fs_check "tar cf from node 3's mount, tar xf locally: equal to the source" \
	bash -c "tar cf - -C '$M3/untar' linux | tar xf - -C '$SRC/untar' && diff -r /usr/include/linux '$SRC/untar/linux'"
fs_check "the tar archive reads back identically on node 2" \
	bash -c "tar cf - -C /usr/include linux | cmp - '$M2/linux.tar'"
rm -rf "$M1/untar" "$M1/linux.tar" "$SRC/untar"

# 64 MiB through dd
head -c $((64 << 20)) /dev/urandom >"$SRC/big"
want=$(sha256sum <"$SRC/big" | cut -d' ' -f1)
t0=$(fs_now_ms)
if dd if="$SRC/big" of="$M1/big" bs=1M conv=fsync status=none; then
	t1=$(fs_now_ms)
	fs_log "dd of 64 MiB with conv=fsync took $((t1 - t0)) ms"
	fs_pass "dd of a 64 MiB file into node 1"
else
	fs_fail "dd of a 64 MiB file into node 1"
fi
converged
for i in 1 2 3; do
	got=$(sha256sum <"$(fs_mnt "$i")/big" | cut -d' ' -f1)
	fs_check "sha256sum of the 64 MiB file on node $i" [ "$got" = "$want" ]
done
rm -f "$M1/big" "$SRC/big"

# xattrs
echo x >"$M1/xa"
fs_check "setfattr user.color=blue, user.empty=\"\" seen by getfattr on every node" \
	do_all "setfattr -n user.color -v blue '$M1/xa' && setfattr -n user.empty '$M1/xa'" \
	bash -c '[[ $(getfattr --only-values -n user.color {}/xa) == blue ]] && getfattr -d -m "^user\\." {}/xa | grep -qx "user.empty=\"\""'
fs_check "setfattr -x removes it on every node; getfattr then fails with ENODATA" do_all "setfattr -x user.color \"$M1/xa\"" \
	bash -c 'getfattr -n user.color {}/xa 2>&1 | grep -q "No such attribute"'
fs_check "xattr on a directory" do_all "setfattr -n user.d -v 1 '$M1/private'" \
	bash -c '[[ $(getfattr --only-values -n user.d {}/private) == 1 ]]'

# git
GITC=(-c user.name=sandfs -c user.email=test@sandfs.invalid)
fs_check "git init, add, commit inside the mount (node 1)" bash -c "
	mkdir '$M1/repo' && cd '$M1/repo' && git init -q . &&
	cp /usr/include/linux/fs.h /usr/include/linux/stat.h . && mkdir sub && echo hi >sub/x &&
	git add -A && git ${GITC[*]} commit -q -m first &&
	echo more >>sub/x && git ${GITC[*]} commit -q -a -m second"
converged
for i in 2 3; do
	fs_check "git log shows 2 commits, fsck is clean, status is clean on node $i" bash -c "
		[[ \$(git -c safe.directory='*' -C '$(fs_mnt "$i")/repo' rev-list --count HEAD) == 2 ]] &&
		git -c safe.directory='*' -C '$(fs_mnt "$i")/repo' fsck --strict --no-progress 2>&1 &&
		[[ -z \$(git -c safe.directory='*' -C '$(fs_mnt "$i")/repo' status --porcelain) ]]"
done

# visibility lag: created on node 1, polled on nodes 2 and 3 (ls and stat)
lags=()
lag_ok=1
for k in 1 2 3 4 5; do
	f=lag$k
	: >"$M1/$f"
	t0=$(fs_now_ms)
	for i in 2 3; do
		m=$(fs_mnt "$i")
		# shellcheck disable=SC2010 # readdir through ls is the point
		while ! { ls "$m" | grep -qx "$f" && stat "$m/$f" >/dev/null 2>&1; }; do
			(($(fs_now_ms) - t0 < 5000)) || { lag_ok=0; break; }
			sleep 0.005
		done
	done
	lags+=($(($(fs_now_ms) - t0)))
done
fs_log "visibility lag (create on node 1 -> ls+stat on nodes 2 and 3), ms: ${lags[*]}"
fs_check "a file created on node 1 is seen on nodes 2 and 3 (lags ${lags[*]} ms, bound 5000)" [ $lag_ok = 1 ]

# ---- races across nodes ----------------------------------------------------

at() { python3 -c 'import time; print("%.3f" % (time.time() + 0.6))'; }

# O_EXCL create of one name from nodes 1 and 2 at the same moment
mkdir "$M1/race"
converged
excl_ok=1
for k in 1 2 3 4 5; do
	t=$(at)
	$OPS --at "$t" excl "$M1/race/x$k" >"$FS_TMP/r1" &
	p1=$!
	$OPS --at "$t" excl "$M2/race/x$k" >"$FS_TMP/r2" &
	p2=$!
	wait $p1 $p2
	res="$(cat "$FS_TMP/r1") $(cat "$FS_TMP/r2")"
	if [[ $res != "OK EEXIST" && $res != "EEXIST OK" ]]; then
		echo "  round $k: node1/node2 got: $res"
		excl_ok=0
	fi
done
fs_check "O_CREAT|O_EXCL of one name from nodes 1 and 2 at once: exactly one wins, the other gets EEXIST (5 rounds)" [ $excl_ok = 1 ]
fs_check "after the O_EXCL races each name exists once on every node" \
	on_all bash -c '[[ $(ls {}/race | grep -c "^x") == 5 && $(ls {}/race | sort | uniq -d | wc -l) == 0 ]]'

# rename of one file to two different names from nodes 1 and 2 at once
ren_ok=1
for k in 1 2 3 4 5; do
	echo "payload $k" >"$M1/race/src$k"
	eventually test -f "$M2/race/src$k" || { ren_ok=0; echo "  src$k never reached node 2"; }
	t=$(at)
	$OPS --at "$t" rename "$M1/race/src$k" "$M1/race/dstA$k" >"$FS_TMP/r1" &
	p1=$!
	$OPS --at "$t" rename "$M2/race/src$k" "$M2/race/dstB$k" >"$FS_TMP/r2" &
	p2=$!
	wait $p1 $p2
	res="$(cat "$FS_TMP/r1") $(cat "$FS_TMP/r2")"
	if [[ $res != "OK ENOENT" && $res != "ENOENT OK" ]]; then
		echo "  round $k: node1/node2 got: $res"
		ren_ok=0
	fi
done
fs_check "rename of one file from nodes 1 and 2 at once: exactly one succeeds, the other gets ENOENT (5 rounds)" [ $ren_ok = 1 ]
converged
ren_tree() { # mount: per round exactly one of dstA/dstB, no src, right payload
	local m=$1 k n
	for k in 1 2 3 4 5; do
		[[ ! -e $m/race/src$k ]] || return 1
		n=0
		[[ -e $m/race/dstA$k ]] && n=$((n + 1)) && { grep -qx "payload $k" "$m/race/dstA$k" || return 1; }
		[[ -e $m/race/dstB$k ]] && n=$((n + 1)) && { grep -qx "payload $k" "$m/race/dstB$k" || return 1; }
		[[ $n == 1 ]] || return 1
	done
}
fs_check "after the rename races every file is under exactly one name on every node" \
	on_all ren_tree "{}"

# mkdir inside a directory that another node removes at the same moment
rm_ok=1
declare -A outcome=()
for k in 1 2 3 4 5 6; do
	mkdir "$M1/race/victim$k"
	eventually test -d "$M2/race/victim$k" || { rm_ok=0; echo "  victim$k never reached node 2"; }
	t=$(at)
	$OPS --at "$t" rmdir "$M1/race/victim$k" >"$FS_TMP/r1" &
	p1=$!
	$OPS --at "$t" mkdir "$M2/race/victim$k/sub" >"$FS_TMP/r2" &
	p2=$!
	wait $p1 $p2
	res="$(cat "$FS_TMP/r1") $(cat "$FS_TMP/r2")"
	outcome[$k]=$res
	case $res in
	"OK ENOENT" | "ENOTEMPTY OK") ;;
	*) echo "  round $k: rmdir on node 1 / mkdir on node 2 got: $res"; rm_ok=0 ;;
	esac
done
fs_log "mkdir-vs-rmdir outcomes (rmdir mkdir): $(for k in "${!outcome[@]}"; do printf '[%s] ' "${outcome[$k]}"; done)"
fs_check "rmdir on node 1 against mkdir inside it on node 2: exactly one fails, with ENOENT or ENOTEMPTY (6 rounds)" [ $rm_ok = 1 ]
converged
rm_tree() {
	local m=$1 k
	for k in "${!outcome[@]}"; do
		case ${outcome[$k]} in
		"OK ENOENT") [[ ! -e $m/race/victim$k ]] || return 1 ;;
		"ENOTEMPTY OK") [[ -d $m/race/victim$k/sub ]] || return 1 ;;
		esac
	done
}
fs_check "after the mkdir/rmdir races the tree agrees with the outcomes on every node" \
	on_all rm_tree "{}"

# ---- errors ----------------------------------------------------------------

long=$(printf 'n%.0s' $(seq 256))
fs_check "a 256-byte name fails with ENAMETOOLONG (create, mkdir)" bash -c "
	[[ \$($OPS create '$M1/$long') == ENAMETOOLONG && \$($OPS mkdir '$M1/$long') == ENAMETOOLONG ]]"
fs_check "a 255-byte name works and is seen on every node" \
	do_all "[[ \$($OPS create '$M1/${long:1}') == OK ]]" test -f "{}/${long:1}"
fs_check "rmdir of a non-empty directory fails with ENOTEMPTY (on node 1 and node 3)" bash -c "
	[[ \$($OPS rmdir '$M1/mv/b') == ENOTEMPTY && \$($OPS rmdir '$M3/mv/b') == ENOTEMPTY ]]"
mkdir -p "$M1/xd/one/deeper" "$M1/xd/two"
echo f >"$M1/xd/one/file"
echo g >"$M1/xd/two/over"
fs_check "rename(2) across directories never gives EXDEV (file, dir, over an existing file, up and down the tree)" do_all "
	[[ \$($OPS rename '$M1/xd/one/file' '$M1/xd/two/file') == OK &&
	   \$($OPS rename '$M1/xd/one/deeper' '$M1/xd/two/deeper') == OK &&
	   \$($OPS rename '$M1/xd/two/file' '$M1/xd/two/over') == OK &&
	   \$($OPS rename '$M1/xd/two/deeper' '$M1/deeper-up') == OK &&
	   \$($OPS rename '$M1/deeper-up' '$M1/xd/one/deeper') == OK ]]" \
	bash -c '[[ $(cat {}/xd/two/over) == f && -d {}/xd/one/deeper && ! -e {}/xd/two/file ]]'

# ---- the end: clean unmounts -----------------------------------------------

for i in 1 2 3; do
	fs_umount "$i"
	fs_check "node $i unmounts with fusermount3 -u and its daemon exits by itself" [ "$FS_UMOUNT_FORCED" = 0 ]
done
fs_summary

# shellcheck shell=bash disable=SC2034  # variables are read by tests/bench/run
#
# measure.sh — the measurements of tests/bench/run, one function per group
# of table rows. Each takes the target's name, the directory to work in on
# its first mount (D1) and on its second (D2: another node's or another
# client's mount of the same directory; the same directory for tmpfs and
# bindfs) and the repetition, and appends "target<TAB>metric<TAB>rep<TAB>
# value" lines to $B_RESULTS (b_rec). A group that fails records nothing
# for the figures it could not take, says FAIL, and counts in B_FAILED.
#
#   m_meta    fs_ops_bench from 1 process (D1) and from 8 (D1), and the
#             1-process creates through D2 (sandfs: a follower's mount)
#   m_vis     fs_vis_bench D1 -> D2
#   m_seq     dd write of BENCH_SEQ_MB MiB (1 MiB blocks, conv=fsync) to
#             D1, dd read after dropping caches through D1, then through D2
#   m_work    tar x, ls -lR, cp -r, rm -rf of the tree; git clone
#   m_failover_sandfs / m_failover_gluster
#
# Needs: B_RESULTS, B_OPB, B_VIS, B_SRC (the tmpfs with the sources), the
# sizes (B_FILES1, B_FILES8, B_VIS_N, B_SEQ_MB) and fs_lib.sh.

B_FAILED=${B_FAILED:-0}

b_rec() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$B_RESULTS"; }

b_fail() {
	B_FAILED=$((B_FAILED + 1))
	echo "FAIL: $*"
}

# Microseconds since the epoch, without a fork.
b_now_us() { echo "${EPOCHREALTIME/./}"; }

# Seconds (3 decimals) since T0 (from b_now_us).
b_secs_since() { awk -v d="$(($(b_now_us) - $1))" 'BEGIN { printf "%.3f", d / 1e6 }'; }

b_drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || echo "note: cannot drop caches here" >&2
}

# b_ops_record T REP SUFFIX OUTPUT: every "phase ... ops_per_s= p50_us=
# p99_us=" line of fs_ops_bench as meta_<phase>_<SUFFIX>_{ops,p50,p99}.
b_ops_record() {
	local t=$1 rep=$2 sfx=$3 line ph f v
	while read -r line; do
		[[ -n $line ]] || continue
		ph=${line%% *}
		for f in ops_per_s:ops p50_us:p50 p99_us:p99; do
			v=$(sed -n "s/.* ${f%%:*}=\([0-9.]*\).*/\1/p" <<<"$line")
			[[ -n $v ]] && b_rec "$t" "meta_${ph}_${sfx}_${f#*:}" "$rep" "$v"
		done
	done <<<"$4"
}

# b_ops T REP SUFFIX DIR PROCS FILES [OPTION...]: fs_ops_bench on DIR
# (made and removed here) into meta_*_SUFFIX.
b_ops() {
	local t=$1 rep=$2 sfx=$3 dir=$4 procs=$5 files=$6 out
	shift 6
	if ! out=$("$B_OPB" "$@" "$dir" "$procs" "$files"); then
		b_fail "$t: fs_ops_bench $* $dir $procs $files"
		rm -rf "$dir"
		return 1
	fi
	b_ops_record "$t" "$rep" "$sfx" "$out"
	rm -rf "$dir"
}

m_meta() {
	local t=$1 d1=$2 d2=$3 rep=$4
	b_ops "$t" "$rep" 1p "$d1/ops1" 1 "$B_FILES1" -d
	b_ops "$t" "$rep" 8p "$d1/ops8" 8 "$B_FILES8" -d
	# creates alone through the second mount (sandfs: a follower's, which
	# also forwards to the leader)
	b_ops "$t" "$rep" 2nd "$d2/ops2" 1 "$B_FILES1" -o create
}

m_vis() {
	local t=$1 d1=$2 d2=$3 rep=$4 out f v
	mkdir -p "$d1/vis" || { b_fail "$t: mkdir $d1/vis"; return 1; }
	# the second mount must know the directory before the lag is measured
	tgt_wait 100 test -d "$d2/vis"
	if ! out=$("$B_VIS" "$d1/vis" "$d2/vis" "$B_VIS_N"); then
		b_fail "$t: fs_vis_bench $d1/vis -> $d2/vis"
		rm -rf "$d1/vis"
		return 1
	fi
	for f in p50 p99 max; do
		v=$(sed -n "s/.* ${f}_us=\([0-9.]*\).*/\1/p" <<<"$out")
		[[ -n $v ]] && b_rec "$t" "vis_$f" "$rep" "$v"
	done
	rm -rf "$d1/vis"
}

# dd read of FILE after dropping caches: MiB/s on stdout, nothing (and 1)
# when the byte count is wrong.
b_dd_read() {
	local f=$1 t0 bytes
	b_drop_caches
	t0=$(b_now_us)
	bytes=$(LC_ALL=C dd if="$f" of=/dev/null bs=1M 2>&1 | sed -n 's/^\([0-9]*\) bytes.*/\1/p')
	local us=$(($(b_now_us) - t0))
	[[ $bytes == $((B_SEQ_MB << 20)) ]] || { echo "dd read $f: ${bytes:-no} bytes" >&2; return 1; }
	awk -v m="$B_SEQ_MB" -v u="$us" 'BEGIN { printf "%.0f", m * 1e6 / (u > 0 ? u : 1) }'
}

m_seq() {
	local t=$1 d1=$2 d2=$3 rep=$4 t0 us v
	b_drop_caches
	t0=$(b_now_us)
	if ! dd if="$B_SRC/seq" of="$d1/seq" bs=1M count="$B_SEQ_MB" conv=fsync status=none; then
		b_fail "$t: dd write of $B_SEQ_MB MiB to $d1"
		rm -f "$d1/seq"
		return 1
	fi
	us=$(($(b_now_us) - t0))
	b_rec "$t" seq_write "$rep" "$(awk -v m="$B_SEQ_MB" -v u="$us" 'BEGIN { printf "%.0f", m * 1e6 / u }')"
	[[ $t == sandfs ]] && { fs_wait_converged 60 1 2 3 || echo "note: not converged before the reads: ${FS_WHY:-}" >&2; }
	if v=$(b_dd_read "$d1/seq"); then b_rec "$t" seq_read "$rep" "$v"; else b_fail "$t: dd read through $d1"; fi
	tgt_wait 100 test -e "$d2/seq"
	if v=$(b_dd_read "$d2/seq"); then b_rec "$t" seq_read_2nd "$rep" "$v"; else b_fail "$t: dd read through $d2"; fi
	rm -f "$d1/seq"
}

# Time CMD... (stdout and stderr to $FS_TMP/work.log) as work_KEY seconds.
b_timed() {
	local t=$1 rep=$2 key=$3 t0
	shift 3
	t0=$(b_now_us)
	if ! "$@" >>"$FS_TMP/work.log" 2>&1; then
		b_fail "$t: $key ($*), see the end of work.log:"
		tail -n 5 "$FS_TMP/work.log"
		return 1
	fi
	b_rec "$t" "work_$key" "$rep" "$(b_secs_since "$t0")"
}

m_work() {
	local t=$1 rep=$4 w=$2/work
	mkdir -p "$w" || { b_fail "$t: mkdir $w"; return 1; }
	b_drop_caches
	if b_timed "$t" "$rep" untar tar -xf "$B_SRC/tree.tar" -C "$w"; then
		b_drop_caches
		b_timed "$t" "$rep" ls_lR ls -lR "$w/tree"
		b_drop_caches
		b_timed "$t" "$rep" cp_r cp -r "$w/tree" "$w/copy"
		b_timed "$t" "$rep" rm_rf rm -rf "$w/tree"
	fi
	b_drop_caches
	b_timed "$t" "$rep" git_clone git clone -q "file://$B_GITREPO" "$w/clone"
	rm -rf "$w"
}

# Create files in DIR until one succeeds; the seconds since T0 on stdout
# (nothing, and 1, after 60 s).
b_first_create() {
	local dir=$1 t0=$2 k=0
	while (($(b_now_us) - t0 < 60000000)); do
		if : >"$dir/f$k" 2>/dev/null; then
			b_secs_since "$t0"
			return 0
		fi
		k=$((k + 1))
	done
	return 1
}

# Wait until process PID has exited: gone, or a zombie (it has released
# its sockets and files; reaping it is up to its parent — here init, which
# on some machines reaps orphans only every second or two, which is no
# part of the failover).
b_wait_dead() {
	local st
	while [[ -e /proc/$1 ]]; do
		st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || break
		[[ $st == Z || $st == X ]] && break
	done
}

# kill -9 of the leader; the time until a create succeeds on a surviving
# mount. The node is started again (over its dead mount) and the cluster
# waited for, so the next repetition sees three nodes.
m_failover_sandfs() {
	local rep=$1 l=$FS_LEADER s=1 pid t0 v
	[[ $l == 1 ]] && s=2
	pid=${FS_PID[$l]:-}
	[[ -n $pid ]] || { b_fail "sandfs failover: no pid for leader $l"; return 1; }
	mkdir -p "$(fs_mnt "$s")/failover" || { b_fail "sandfs failover: mkdir"; return 1; }
	t0=$(b_now_us)
	kill -KILL "$pid"
	b_wait_dead "$pid"
	if v=$(b_first_create "$(fs_mnt "$s")/failover" "$t0"); then
		b_rec sandfs failover_ms "$rep" "$(awk -v s="$v" 'BEGIN { printf "%.0f", s * 1000 }')"
		fs_log "sandfs: leader $l killed, create on node $s after $v s"
	else
		b_fail "sandfs: a create on node $s within 60 s of killing leader $l"
	fi
	fs_kill9 "$l"
	if ! fs_start "$l" || ! fs_wait_leader 20 1 2 3 || ! fs_wait_converged 60 1 2 3; then
		b_fail "sandfs: node $l restarts and the cluster converges (${FS_WHY:-})"
		return 1
	fi
	rm -rf "$(fs_mnt "$s")/failover"
}

# GlusterFS has no leader: kill -9 of brick 1's process, the time until a
# create succeeds through the first client. The brick stays down (the
# volume is torn down next): run it after the last repetition only.
m_failover_gluster() {
	local rep=$1 t0 v
	mkdir -p "$TG_GM1/failover" || { b_fail "gluster failover: mkdir"; return 1; }
	t0=$(b_now_us)
	if ! tgt_gluster_kill_brick 1; then
		b_fail "gluster failover: no brick 1 process"
		return 1
	fi
	if v=$(b_first_create "$TG_GM1/failover" "$t0"); then
		b_rec gluster failover_ms "$rep" "$(awk -v s="$v" 'BEGIN { printf "%.0f", s * 1000 }')"
	else
		b_fail "gluster: a create within 60 s of killing brick 1"
	fi
}

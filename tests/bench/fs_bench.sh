#!/usr/bin/env bash
# fs_bench.sh — sandfs (3 nodes on loopback, real FUSE mounts) next to
# bindfs over tmpfs, measured in the same run on the same machine.
#
# bindfs over tmpfs is the reference: a FUSE filesystem with no network, no
# replication and no disk, so the ratio shows what replication costs on top
# of the FUSE round trip both pay.
#
# Measured on both (fs_ops_bench for the small operations):
#   creates/s, stats/s, renames/s, unlinks/s    1 process, and 8 processes
#     (stats twice: with the kernel's attribute cache warm, and after it
#     expired so that every stat reaches the filesystem)
#   4 KiB files written + fsynced per second    1 process, and 8 processes
#   create latency, median and p99 (1 process)
#   sequential write MiB/s: dd of BENCH_SEQ_MB (1024) MiB of random data,
#     bs=1M, conv=fsync
#   sequential read MiB/s: dd bs=1M after dropping the page cache; for
#     sandfs also through another node's mount (node 2, which never had the
#     file open)
# Random data, not zeros: sandfs blocks are content-addressed and zeros
# would all be one block.
#
# Targets (printed, never a failure: benches do not fail on speed):
#   stats/s >= 50% of bindfs; sequential read >= 50% of bindfs;
#   1-process create median < 1 ms, on the leader's mount and on a
#   follower's (node 1 is either; the other role is measured on a second
#   mount with the same program).
# The script fails (non-zero) only when something does not work.
#
#   SANDFS_BIN=build/bin bash tests/bench/fs_bench.sh
#   BENCH_FILES1=2000 BENCH_FILES8=500 BENCH_SEQ_MB=1024 BENCH_READS=3
#                                                         (the defaults)
#   BENCH_ONLY=bindfs   measure bindfs alone (a dry run of the script)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/fs_lib.sh
. "$here/../e2e/fs_lib.sh"

FILES1=${BENCH_FILES1:-2000}
FILES8=${BENCH_FILES8:-500}
SEQ_MB=${BENCH_SEQ_MB:-1024}
READS=${BENCH_READS:-3}
ONLY=${BENCH_ONLY:-}

command -v bindfs >/dev/null || { echo "FAIL: bindfs is not installed (apt-get install bindfs)"; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "FAIL: fs_bench.sh mounts a tmpfs and needs root"; exit 1; }

OPB=$FS_BIN/fs_ops_bench
if [[ ! -x $OPB ]]; then
	OPB=$FS_TMP/fs_ops_bench
	cc -std=c11 -O2 -o "$OPB" "$here/fs_ops_bench.c" ||
		{ echo "FAIL: cannot build fs_ops_bench"; exit 1; }
fi

TMPFS=$FS_TMP/tmpfs BIND=$FS_TMP/bind SRCFS=$FS_TMP/srcfs
fs_extra_cleanup() {
	local d
	if mountpoint -q "$BIND" 2>/dev/null; then
		fusermount3 -u "$BIND" 2>/dev/null || fusermount3 -u -z "$BIND"
	fi
	for d in "$TMPFS" "$SRCFS"; do
		mountpoint -q "$d" 2>/dev/null && { umount "$d" 2>/dev/null || umount -l "$d"; }
	done
	return 0
}

declare -A R=() # "<fs> <metric>" -> number

# ops_run FS DIR PROCS FILES: fs_ops_bench into R[FS <phase>_<procs>p], and
# the latencies of the 1-process create.
ops_run() {
	local fs=$1 dir=$2 procs=$3 files=$4 out line ph rate p50 p99
	mkdir -p "$dir"
	if ! out=$("$OPB" "$dir" "$procs" "$files"); then
		fs_fail "$fs: fs_ops_bench with $procs processes"
		echo "$out"
		return 1
	fi
	while read -r line; do
		ph=${line%% *}
		rate=$(sed -n 's/.*ops_per_s=\([0-9.]*\).*/\1/p' <<<"$line")
		p50=$(sed -n 's/.*p50_us=\([0-9.]*\).*/\1/p' <<<"$line")
		p99=$(sed -n 's/.*p99_us=\([0-9.]*\).*/\1/p' <<<"$line")
		R["$fs ${ph}_${procs}p"]=$rate
		if [[ $procs == 1 && $ph == create ]]; then
			R["$fs create_p50_us"]=$p50
			R["$fs create_p99_us"]=$p99
		fi
		if [[ $procs == 1 && $ph == small4k_fsync ]]; then
			R["$fs small_p50_us"]=$p50
		fi
	done <<<"$out"
	fs_pass "$fs: fs_ops_bench with $procs process(es), $files files each"
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || echo "  note: cannot drop caches here" >&2
}

# seq_write FS FILE: MiB/s into R[FS seq_write]
seq_write() {
	local fs=$1 f=$2 t0 ms
	t0=$(fs_now_ms)
	if ! dd if="$SRCFS/seq" of="$f" bs=1M count="$SEQ_MB" conv=fsync status=none; then
		fs_fail "$fs: dd write of $SEQ_MB MiB"
		return 1
	fi
	ms=$(($(fs_now_ms) - t0))
	R["$fs seq_write"]=$(awk -v m="$SEQ_MB" -v t="$ms" 'BEGIN { printf "%.0f", m * 1000 / t }')
	fs_pass "$fs: dd write of $SEQ_MB MiB, conv=fsync ($ms ms)"
}

# seq_read FS KEY FILE [warm]: MiB/s into R[FS KEY], the median of
# BENCH_READS (3) reads, content checked by size; the page cache is dropped
# before each read unless "warm" (one machine's figures swing by 2x from
# run to run; the median of three steadies them)
seq_read() {
	local fs=$1 key=$2 f=$3 t0 ms bytes i all=()
	for i in $(seq 1 "$READS"); do
		[[ ${4:-} == warm ]] || drop_caches
		t0=$(fs_now_ms)
		# dd's own count of the bytes read (no pipe: a fast read
		# outruns one)
		bytes=$(LC_ALL=C dd if="$f" of=/dev/null bs=1M 2>&1 |
			sed -n 's/^\([0-9]*\) bytes.*/\1/p')
		ms=$(($(fs_now_ms) - t0))
		if [[ $bytes != $((SEQ_MB << 20)) ]]; then
			fs_fail "$fs: dd read of $f ($bytes bytes)"
			return 1
		fi
		all+=("$(awk -v m="$SEQ_MB" -v t="$ms" 'BEGIN { printf "%.0f", m * 1000 / (t > 0 ? t : 1) }')")
	done
	R["$fs $key"]=$(printf '%s\n' "${all[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
	fs_pass "$fs: dd read of $SEQ_MB MiB ($key: ${all[*]} MiB/s, median ${R["$fs $key"]})"
}

# ---- setup -----------------------------------------------------------------

mkdir -p "$TMPFS" "$BIND" "$SRCFS"
mount -t tmpfs -o size=$((SEQ_MB + 256))m sandfs-bench-src "$SRCFS" ||
	{ echo "FAIL: cannot mount a tmpfs"; exit 1; }
fs_log "making $SEQ_MB MiB of random source data (in a tmpfs)"
head -c $((SEQ_MB << 20)) /dev/urandom >"$SRCFS/seq"

mount -t tmpfs -o size=$((SEQ_MB + 1024))m sandfs-bench "$TMPFS" ||
	{ echo "FAIL: cannot mount a tmpfs"; exit 1; }
if bindfs "$TMPFS" "$BIND"; then
	fs_pass "bindfs over tmpfs mounted"
else
	fs_fail "bindfs over tmpfs mounted"
	fs_summary
	exit 1
fi

if [[ $ONLY != bindfs ]]; then
	fs_init 3
	if fs_start_all; then
		fs_pass "sandfs: 3 nodes mounted, leader is node $FS_LEADER"
	else
		fs_fail "sandfs: 3 nodes mount and elect a leader (${FS_WHY:-})"
		fs_summary
		exit 1
	fi
fi

# ---- measure: bindfs first, then sandfs --------------------------------------

fs_log "bindfs over tmpfs"
ops_run bindfs "$BIND/ops1" 1 "$FILES1"
ops_run bindfs "$BIND/ops8" 8 "$FILES8"
seq_write bindfs "$BIND/seq"
seq_read bindfs seq_read "$BIND/seq"
seq_read bindfs seq_read_warm "$BIND/seq" warm
rm -f "$BIND/seq"

FSLIST=(bindfs)
if [[ $ONLY != bindfs ]]; then
	FSLIST+=(sandfs)
	M1=$(fs_mnt 1) M2=$(fs_mnt 2)
	fs_log "sandfs, 3 nodes; operations through node $(
		[[ $FS_LEADER == 1 ]] && echo "1 (the leader)" || echo "1 (a follower; leader is $FS_LEADER)")"
	ops_run sandfs "$M1/ops1" 1 "$FILES1"
	# The create latency through the other role's mount too: a follower's
	# create also pays the forward to the leader and a ReadIndex.
	if [[ $FS_LEADER == 1 ]]; then
		R["sandfs create_p50_us_leader"]=${R["sandfs create_p50_us"]:-}
		other=2 role=follower
	else
		R["sandfs create_p50_us_follower"]=${R["sandfs create_p50_us"]:-}
		other=$FS_LEADER role=leader
	fi
	mkdir -p "$(fs_mnt "$other")/opsx"
	if out=$("$OPB" "$(fs_mnt "$other")/opsx" 1 "$FILES1"); then
		R["sandfs create_p50_us_$role"]=$(sed -n 's/^create .*p50_us=\([0-9.]*\).*/\1/p' <<<"$out")
		fs_pass "sandfs: creates through node $other (the $role)"
	else
		fs_fail "sandfs: creates through node $other (the $role)"
	fi
	ops_run sandfs "$M1/ops8" 8 "$FILES8"
	seq_write sandfs "$M1/seq"
	fs_wait_converged 60 1 2 3 || echo "  note: not converged before the reads: ${FS_WHY:-}" >&2
	seq_read sandfs seq_read "$M1/seq"
	seq_read sandfs seq_read_other "$M2/seq"
	seq_read sandfs seq_read_warm "$M2/seq" warm
	t0=$(fs_now_ms)
	rm -f "$M1/seq"
	fs_log "rm of the $SEQ_MB MiB file took $(($(fs_now_ms) - t0)) ms"
fi

# ---- report ------------------------------------------------------------------

row() { # LABEL KEY [lat]: ratio sandfs/bindfs in %, or "N x" slower for latencies
	local label=$1 key=$2 kind=${3:-} s b ratio
	s=${R["sandfs $key"]:-}
	b=${R["bindfs $key"]:-}
	ratio="-"
	if [[ -n $s && -n $b ]]; then
		ratio=$(awk -v s="$s" -v b="$b" -v k="$kind" 'BEGIN {
			if (b <= 0) print "-"; else if (k == "lat") printf "%.1fx\n", s / b; else printf "%.1f%%\n", 100 * s / b }')
	fi
	printf '%-38s %14s %14s %9s\n' "$label" "${s:--}" "${b:--}" "$ratio"
}
echo
echo "sandfs (3 nodes, loopback) vs bindfs over tmpfs — $(nproc) CPUs, $(date -u +%F)"
printf '%-38s %14s %14s %9s\n' "metric" "sandfs" "bindfs" "ratio"
printf '%-38s %14s %14s %9s\n' "------" "------" "------" "-----"
for p in 1 8; do
	row "creates/s ($p proc)" "create_${p}p"
	row "stats/s, warm attr cache ($p proc)" "stat_${p}p"
	row "stats/s, cold attr cache ($p proc)" "stat_cold_${p}p"
	row "renames/s ($p proc)" "rename_${p}p"
	row "unlinks/s ($p proc)" "unlink_${p}p"
	row "4 KiB write+fsync files/s ($p proc)" "small4k_fsync_${p}p"
done
row "create latency p50 (us, 1 proc)" create_p50_us lat
row "create latency p99 (us, 1 proc)" create_p99_us lat
R["bindfs create_p50_us_leader"]=${R["bindfs create_p50_us"]:-}
R["bindfs create_p50_us_follower"]=${R["bindfs create_p50_us"]:-}
row "  p50 on the leader's mount" create_p50_us_leader lat
row "  p50 on a follower's mount" create_p50_us_follower lat
row "4 KiB+fsync latency p50 (us)" small_p50_us lat
row "seq write MiB/s (1M, fsync)" seq_write
row "seq read MiB/s (cold cache)" seq_read
if [[ -n ${R["sandfs seq_read_other"]:-} ]]; then
	R["bindfs seq_read_other"]=${R["bindfs seq_read"]:-}
	row "seq read MiB/s (other node)" seq_read_other
fi
row "seq read MiB/s (again, page cache warm)" seq_read_warm
echo

# targets (informational)
target() { # NAME OK
	if [[ $2 == 1 ]]; then echo "target met:    $1"; else echo "target MISSED: $1"; fi
}
if [[ $ONLY != bindfs ]]; then
	pct() { awk -v s="${R["sandfs $1"]:-0}" -v b="${R["bindfs $1"]:-0}" 'BEGIN { printf "%.0f", (b > 0 ? 100 * s / b : 0) }'; }
	for p in 1 8; do
		v=$(pct "stat_${p}p")
		target "stats/s, warm ($p proc) >= 50% of bindfs (${v}%)" $((v >= 50))
		v=$(pct "stat_cold_${p}p")
		target "stats/s, cold ($p proc) >= 50% of bindfs (${v}%)" $((v >= 50))
	done
	v=$(pct seq_read)
	target "seq read (cold cache, same node) >= 50% of bindfs (${v}%)" $((v >= 50))
	v=$(pct seq_read_other)
	target "seq read (other node) >= 50% of bindfs (${v}%)" $((v >= 50))
	for role in leader follower; do
		v=${R["sandfs create_p50_us_$role"]:-999999}
		target "1-process create median < 1 ms on the $role's mount (${v} us)" \
			"$(awk -v v="$v" 'BEGIN { print ((v < 1000) ? 1 : 0) }')"
	done
	echo
fi
fs_summary

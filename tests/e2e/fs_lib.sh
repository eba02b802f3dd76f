# shellcheck shell=bash disable=SC2034  # variables are read by the sourcing scripts
#
# fs_lib.sh — helpers for the end-to-end scripts that mount real FUSE
# filesystems (tests/e2e/fs_shell.sh, tests/e2e/fs_failures.sh) and for the
# filesystem benchmark (tests/bench/fs_bench.sh).
#
# Source it; run on its own (tests/run runs every tests/e2e/*.sh) it does
# nothing.
#
#   fs_init N [MOUNT-ARGS...]  plan an N-node cluster: node i listens on
#        127.0.0.i:<free port>, keeps its data in $FS_TMP/d<i> (log in
#        d<i>/sandfs.log) and is mounted on $FS_TMP/m<i>. MOUNT-ARGS are
#        added to every `sandfs mount` (e.g. --timeout-ms 3000).
#   fs_start I        `sandfs mount` node I (returns once mounted); its
#                     daemon pid (from DATA/LOCK.sandfs) goes to FS_PID[I]
#   fs_umount I       fusermount3 -u (then -u -z if busy), wait for the
#                     daemon to exit (SIGTERM, then SIGKILL, if it lingers)
#   fs_kill9 I        kill -9 node I's daemon (its mount is left dead)
#   fs_mnt I / fs_data I / fs_alive I
#   fs_wait_leader SECS IDS...     -> FS_LEADER (0 on timeout)
#   fs_wait_converged SECS IDS...  -> every node in IDS applied the same
#                                    index with the same state digest
#   fs_pass / fs_fail / fs_check NAME CMD... / fs_summary
#   fs_isolate I / fs_heal          cut node I off with nftables
#   fs_bg CMD...                    background command, reaped at exit
#
# Isolation: every node listens on its own address and port, so "packets to
# node I" is `ip daddr 127.0.0.I tcp dport PORT_I`. Packets *from* node I
# cannot be told apart by address (the kernel picks 127.0.0.1 as the source
# of every loopback connection), so, when running as root with a cgroup v2
# hierarchy, each
# node is started in a cgroup of its own and `socket cgroupv2` matches the
# packets its sockets send. The table is `inet sandfs_fs_<pid>`.
#
# The EXIT trap unmounts every mount it made, stops exactly the daemons it
# started (by the pid they wrote, never by name), reaps background jobs,
# deletes the nftables table and the cgroups, and removes $FS_TMP.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
	echo "fs_lib.sh: helpers for the fs e2e scripts; nothing to run on its own"
	exit 0
fi

FS_BIN=${SANDFS_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/bin}
SANDFS="$FS_BIN/sandfs"
if [[ ! -x "$SANDFS" ]]; then
	echo "FAIL: no sandfs binary at $SANDFS (build it, or set SANDFS_BIN)" >&2
	exit 1
fi
for _t in fusermount3 python3; do
	command -v "$_t" >/dev/null || { echo "FAIL: $_t is not installed" >&2; exit 1; }
done

# The nodes of a test get every option on the command line: a machine's
# /etc/sandfs/sandfs.conf must not add to them (empty: no file).
export SANDFS_CONFIG=
FS_TMP=$(mktemp -d /tmp/sfs-fs.XXXXXX)
chmod 755 "$FS_TMP"
FS_PASSED=0
FS_FAILED=0
FS_N=0
FS_PEERS=""
FS_MOUNT_ARGS=()
FS_BG_PIDS=()
FS_NFT_TABLE=""
FS_CG_ROOT=""       # cgroup v2 directory holding one child per node
FS_CG_NFT=""        # the same, as nft names it (relative to /sys/fs/cgroup)
declare -A FS_PID=()     # node id -> daemon pid (as written in LOCK.sandfs)
declare -A FS_MOUNTED=() # node id -> 1 while we believe it is mounted

# ---- reporting -------------------------------------------------------------

fs_log() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*"; }
fs_pass() { FS_PASSED=$((FS_PASSED + 1)); echo "PASS: $*"; }
fs_fail() { FS_FAILED=$((FS_FAILED + 1)); echo "FAIL: $*"; }

# fs_check NAME CMD...: PASS when CMD exits 0.
fs_check() {
	local name=$1
	shift
	if "$@"; then fs_pass "$name"; else fs_fail "$name"; fi
}

fs_summary() {
	echo "$FS_PASSED passed, $FS_FAILED failed"
	[[ $FS_FAILED -eq 0 ]]
}

fs_now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ---- paths -----------------------------------------------------------------

fs_mnt() { echo "$FS_TMP/m$1"; }
fs_data() { echo "$FS_TMP/d$1"; }

fs_is_mounted() {
	local p
	p=$(realpath -s -m "$(fs_mnt "$1")") # -m: no stat (a dead mount fails it)
	awk -v p="$p" '$2 == p { f = 1 } END { exit !f }' /proc/mounts
}

# ---- cleanup ---------------------------------------------------------------

# Wait up to SECS for pid (not our child: a daemon) to go away.
# Has pid exited? A zombie has: the daemons are reparented to init, which
# on some machines reaps orphans only every second or two.
fs_pid_running() {
	local st
	st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $st && $st != Z && $st != X ]]
}

fs_wait_gone() {
	local pid=$1 secs=${2:-10} i
	for ((i = 0; i < secs * 50; i++)); do
		fs_pid_running "$pid" || return 0
		sleep 0.02
	done
	return 1
}

# Unmount node I's mount point, lazily if it stays busy.
fs_unmount_point() {
	local i=$1 m k
	m=$(fs_mnt "$i")
	fs_is_mounted "$i" || return 0
	for ((k = 0; k < 20; k++)); do
		fusermount3 -u "$m" 2>/dev/null && return 0
		fs_is_mounted "$i" || return 0
		sleep 0.25
	done
	echo "note: $m stayed busy; unmounting lazily" >&2
	fusermount3 -u -z "$m" 2>/dev/null
}

# Unmount node I and wait for its daemon to exit; SIGTERM then SIGKILL if it
# lingers. Sets FS_UMOUNT_FORCED=1 when a signal was needed.
fs_umount() {
	local i=$1 pid=${FS_PID[$1]:-}
	FS_UMOUNT_FORCED=0
	fs_unmount_point "$i"
	unset "FS_MOUNTED[$i]"
	[[ -n $pid ]] || return 0
	if ! fs_wait_gone "$pid" 15; then
		echo "note: node $i (pid $pid) still running 15 s after unmount; SIGTERM" >&2
		FS_UMOUNT_FORCED=1
		kill -TERM "$pid" 2>/dev/null
		if ! fs_wait_gone "$pid" 5; then
			kill -KILL "$pid" 2>/dev/null
			fs_wait_gone "$pid" 5
		fi
	fi
	unset "FS_PID[$i]"
	return 0
}

fs_cleanup() {
	local rc=$? i pid
	trap - EXIT INT TERM
	trap '' PIPE # a closed stdout (| head) must not cut the cleanup short
	# a sourcing script may clean up its own extras first (fs_bench.sh)
	if declare -F fs_extra_cleanup >/dev/null; then fs_extra_cleanup; fi
	for pid in "${FS_BG_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	for ((i = 1; i <= FS_N; i++)); do
		if [[ -n ${FS_PID[$i]:-} || -n ${FS_MOUNTED[$i]:-} ]] || fs_is_mounted "$i"; then
			fs_umount "$i"
		fi
	done
	fs_heal
	if [[ -n $FS_CG_ROOT ]]; then
		for ((i = 1; i <= FS_N; i++)); do rmdir "$FS_CG_ROOT/n$i" 2>/dev/null; done
		rmdir "$FS_CG_ROOT" 2>/dev/null
	fi
	if [[ $FS_FAILED -gt 0 || $rc -ne 0 ]] && [[ ${FS_QUIET:-0} != 1 ]]; then
		for ((i = 1; i <= FS_N; i++)); do
			[[ -f $FS_TMP/d$i/sandfs.log ]] || continue
			echo "---- last lines of node $i's sandfs.log"
			tail -n 15 "$FS_TMP/d$i/sandfs.log"
		done
	fi
	if [[ ${FS_KEEP:-0} == 1 ]]; then
		echo "kept $FS_TMP (FS_KEEP=1)"
	else
		rm -rf "$FS_TMP" 2>/dev/null || echo "note: could not remove all of $FS_TMP" >&2
	fi
	exit "$rc"
}
trap fs_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run CMD in the background; its pid is recorded (FS_LAST_BG) and reaped at
# exit. Must not be called inside $(...).
fs_bg() {
	"$@" &
	FS_LAST_BG=$!
	FS_BG_PIDS+=("$FS_LAST_BG")
}

# ---- cluster ---------------------------------------------------------------

fs_free_port() {
	python3 -c 'import socket,sys
s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1]); s.close()' "$1"
}

# Make one cgroup v2 per node so nftables can match a node's own packets.
fs_cgroups_init() {
	local base rel
	[[ $(id -u) -eq 0 ]] || return 0
	for base in /sys/fs/cgroup /sys/fs/cgroup/unified; do
		[[ -f $base/cgroup.procs && -f $base/cgroup.controllers ]] || continue
		rel=${base#/sys/fs/cgroup}
		rel=${rel#/}
		if mkdir "$base/sandfs_fs_$$" 2>/dev/null; then
			FS_CG_ROOT="$base/sandfs_fs_$$"
			FS_CG_NFT="${rel:+$rel/}sandfs_fs_$$"
			return 0
		fi
	done
}

# fs_init N [MOUNT-ARGS...]
fs_init() {
	local n=$1 i port
	shift
	FS_N=$n
	FS_MOUNT_ARGS=("$@")
	FS_PEERS=""
	fs_cgroups_init
	for ((i = 1; i <= n; i++)); do
		port=$(fs_free_port "127.0.0.$i")
		FS_PEERS+="${FS_PEERS:+,}$i=127.0.0.$i:$port"
		mkdir -p "$FS_TMP/d$i" "$FS_TMP/m$i"
		[[ -n $FS_CG_ROOT ]] && mkdir -p "$FS_CG_ROOT/n$i"
	done
}

# Start node I; returns 0 once it is mounted.
fs_start() {
	local i=$1 rc pid
	local cg=""
	[[ -n $FS_CG_ROOT ]] && cg="$FS_CG_ROOT/n$i/cgroup.procs"
	(
		[[ -n $cg ]] && echo "$BASHPID" >"$cg"
		exec "$SANDFS" mount --id "$i" --peers "$FS_PEERS" --data "$FS_TMP/d$i" \
			"${FS_MOUNT_ARGS[@]}" "$FS_TMP/m$i"
	)
	rc=$?
	pid=$(tr -dc '0-9' <"$FS_TMP/d$i/LOCK.sandfs" 2>/dev/null | head -c 12)
	if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
		FS_PID[$i]=$pid
	fi
	if [[ $rc -ne 0 ]]; then
		echo "sandfs mount of node $i failed (rc $rc)" >&2
		return 1
	fi
	FS_MOUNTED[$i]=1
	return 0
}

fs_alive() {
	[[ -n ${FS_PID[$1]:-} ]] && fs_pid_running "${FS_PID[$1]}"
}

# kill -9 node I's daemon and wait until it is gone. The mount stays, dead
# (ENOTCONN), until the node is started again or the trap clears it.
fs_kill9() {
	local i=$1 pid=${FS_PID[$1]:-}
	[[ -n $pid ]] || return 0
	kill -KILL "$pid" 2>/dev/null
	fs_wait_gone "$pid" 10
	unset "FS_PID[$i]"
}

fs_status() {
	timeout 10 "$SANDFS" status --data "$FS_TMP/d$1" --json 2>/dev/null
}

FS_PY='
import json, sys
try:
    s = json.load(sys.stdin)
except Exception as e:
    print("0 bad-json"); sys.exit(0)
op, args = sys.argv[1], sys.argv[2:]
nodes = {n["id"]: n for n in s.get("nodes", [])}
ids = [int(a) for a in args]
for i in ids:
    if not nodes.get(i, {}).get("reachable"):
        print("0 node-%d-unreachable" % i); sys.exit(0)
if op == "leader":
    reach = [n for n in nodes.values() if n.get("reachable")]
    leaders = [n["id"] for n in reach if n.get("role") == "leader"]
    if len(leaders) != 1 or any(nodes[i].get("leader") != leaders[0] for i in ids):
        print("0 leaders=%s" % leaders); sys.exit(0)
    print(leaders[0]); sys.exit(0)
if op == "converged":
    sel = [nodes[i] for i in ids]
    app = {n["applied"] for n in sel}
    st = {n.get("state") for n in sel}
    com = max(n["commit"] for n in sel)
    if len(app) != 1 or len(st) != 1 or min(app) < com:
        print("0 applied=%s commit=%d states=%d" % (sorted(app), com, len(st))); sys.exit(0)
    print(sel[0]["applied"]); sys.exit(0)
'

# fs_wait_leader SECS IDS...: asked through the first of IDS, one leader
# that every node in IDS names. Sets FS_LEADER (0 on timeout), FS_WHY.
fs_wait_leader() {
	local secs=$1 end ans
	shift
	end=$(($(fs_now_ms) + secs * 1000))
	FS_LEADER=0
	while (($(fs_now_ms) < end)); do
		ans=$(fs_status "$1" | python3 -c "$FS_PY" leader "$@")
		if [[ -n $ans && $ans != 0* ]]; then
			FS_LEADER=$ans
			return 0
		fi
		FS_WHY=$ans
		sleep 0.1
	done
	return 1
}

# fs_wait_converged SECS IDS...: every node in IDS reachable with the same
# applied index and state, nothing committed left to apply.
fs_wait_converged() {
	local secs=$1 end ans
	shift
	end=$(($(fs_now_ms) + secs * 1000))
	while (($(fs_now_ms) < end)); do
		ans=$(fs_status "$1" | python3 -c "$FS_PY" converged "$@")
		if [[ -n $ans && $ans != 0* ]]; then
			FS_APPLIED=$ans
			return 0
		fi
		FS_WHY=$ans
		sleep 0.2
	done
	return 1
}

# fs_start_all: start nodes 1..N in parallel and wait for a leader.
fs_start_all() {
	local i p rc=0 pids=()
	for ((i = 1; i <= FS_N; i++)); do
		fs_start "$i" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	# fs_start ran in subshells: pick the daemon pids up here
	for ((i = 1; i <= FS_N; i++)); do
		p=$(tr -dc '0-9' <"$FS_TMP/d$i/LOCK.sandfs" 2>/dev/null | head -c 12)
		[[ -n $p ]] && kill -0 "$p" 2>/dev/null && FS_PID[$i]=$p
		fs_is_mounted "$i" && FS_MOUNTED[$i]=1
	done
	[[ $rc -eq 0 ]] || return 1
	local ids=()
	for ((i = 1; i <= FS_N; i++)); do ids+=("$i"); done
	fs_wait_leader 20 "${ids[@]}"
}

# ---- nftables isolation ----------------------------------------------------

fs_can_isolate() {
	[[ $(id -u) -eq 0 && -n $FS_CG_ROOT ]] && command -v nft >/dev/null
}

# Cut node I off: drop every packet to node I's listening address and port,
# and every packet sent by a socket of node I's cgroup. (Not simply "to
# 127.0.0.I": 127.0.0.1 is also the source address of every loopback
# connection, so dropping it would cut everybody off when I is 1.)
fs_isolate() {
	local i=$1
	fs_can_isolate || return 1
	if [[ -z $FS_NFT_TABLE ]]; then
		FS_NFT_TABLE="sandfs_fs_$$"
		nft add table inet "$FS_NFT_TABLE" || { FS_NFT_TABLE=""; return 1; }
		nft add chain inet "$FS_NFT_TABLE" out \
			'{ type filter hook output priority 0; policy accept; }' || return 1
	fi
	local port
	port=$(tr ',' '\n' <<<"$FS_PEERS" | sed -n "s/^$i=127\.0\.0\.$i://p")
	[[ -n $port ]] || return 1
	nft add rule inet "$FS_NFT_TABLE" out ip daddr "127.0.0.$i" tcp dport "$port" drop &&
		nft add rule inet "$FS_NFT_TABLE" out socket cgroupv2 level 2 \
			"\"$FS_CG_NFT/n$i\"" drop
}

# Delete the table (and so every rule) this shell created.
fs_heal() {
	[[ -n $FS_NFT_TABLE ]] || return 0
	nft delete table inet "$FS_NFT_TABLE" 2>/dev/null
	FS_NFT_TABLE=""
}

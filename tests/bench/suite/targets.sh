# shellcheck shell=bash disable=SC2034  # variables are read by tests/bench/run
#
# targets.sh — set up and tear down the reference filesystems that
# tests/bench/run measures next to sandfs. Sourced by tests/bench/run after
# tests/e2e/fs_lib.sh (which owns $FS_TMP, the EXIT trap and the sandfs
# cluster); everything here is torn down by tgt_down_all, which the trap
# calls through fs_extra_cleanup, so an interrupted run leaves nothing.
#
#   tgt_tmpfs_up     a tmpfs on $TG_TMPFS: the tmpfs target works in
#                    $TG_TMPFS/t, the bindfs target's source is $TG_TMPFS/b
#   tgt_bindfs_up    bindfs -f $TG_TMPFS/b on $TG_BIND (pid kept)
#   tgt_gluster_up   glusterd with a private working and run directory,
#                    a replica-3 volume of three bricks under $TG_GL (on
#                    the disk that holds $FS_TMP), two FUSE client mounts
#                    ($TG_GM1, $TG_GM2). Every gluster process runs in a
#                    cgroup of its own, so the bricks, the self-heal daemon
#                    and the clients (which all daemonize) are known by pid.
#   tgt_gluster_kill_brick I   kill -9 of brick I, for the failover (the
#                    brick is not started again: `volume start force`
#                    did not bring a killed brick back here, so the
#                    failover is measured once, after the last repetition)
#   tgt_down_all     unmount and stop all of the above, idempotent
#
# Nothing is killed by name. /etc/hosts gets one line for the brick host
# name (glusterd refuses 127.0.0.1 and localhost as brick hosts), removed
# at teardown, unless BENCH_GLUSTER_HOST names a host to use instead.

TG_TMPFS=$FS_TMP/tmpfs
TG_BIND=$FS_TMP/bind
TG_GL=$FS_TMP/gluster
TG_GM1=$TG_GL/m1
TG_GM2=$TG_GL/m2
TG_VOL=sandfsbench
TG_BINDFS_PID=""
TG_GLUSTERD_PID=""
TG_GL_HOST=""
TG_HOSTS_LINE=""
TG_CG=""          # the gluster cgroup (v2) directory, when one was made
TG_GL_SNAP=""     # /var/run/gluster and /var/log/glusterfs before we began
TG_MOUNTS=()      # mounts to undo, in order (FUSE ones first)

tgt_log() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*" >&2; }

tgt_mounted() { awk -v p="$1" '$2 == p { f = 1 } END { exit !f }' /proc/mounts; }

# Wait up to SECS (tenths) for CMD to succeed.
tgt_wait() {
	local tenths=$1 i
	shift
	for ((i = 0; i < tenths; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

# Unmount P (FUSE or not), lazily when it stays busy.
tgt_umount() {
	local p=$1 k
	tgt_mounted "$p" || return 0
	for ((k = 0; k < 20; k++)); do
		umount "$p" 2>/dev/null && return 0
		tgt_mounted "$p" || return 0
		sleep 0.25
	done
	echo "note: $p stayed busy; unmounting lazily" >&2
	umount -l "$p"
}

# Stop pid P (not our child: a daemon): SIGTERM, SIGKILL after 5 s.
tgt_stop_pid() {
	local p=$1
	kill -0 "$p" 2>/dev/null || return 0
	kill -TERM "$p" 2>/dev/null
	tgt_wait 50 eval "! kill -0 $p 2>/dev/null" && return 0
	echo "note: pid $p ignored SIGTERM for 5 s; SIGKILL" >&2
	kill -KILL "$p" 2>/dev/null
	tgt_wait 50 eval "! kill -0 $p 2>/dev/null"
}

# ---- tmpfs and bindfs ----------------------------------------------------------

# tgt_tmpfs_up SIZE_MB
tgt_tmpfs_up() {
	mkdir -p "$TG_TMPFS" || return 1
	mount -t tmpfs -o "size=$1m" sandfs-bench-tmpfs "$TG_TMPFS" || return 1
	TG_MOUNTS+=("$TG_TMPFS")
	mkdir -p "$TG_TMPFS/t" "$TG_TMPFS/b"
}

tgt_bindfs_up() {
	command -v bindfs >/dev/null || { echo "bindfs is not installed" >&2; return 1; }
	mkdir -p "$TG_BIND"
	bindfs -f "$TG_TMPFS/b" "$TG_BIND" &
	TG_BINDFS_PID=$!
	TG_MOUNTS=("$TG_BIND" "${TG_MOUNTS[@]}")
	tgt_wait 100 tgt_mounted "$TG_BIND"
}

# ---- GlusterFS ------------------------------------------------------------------

# The cgroup v2 hierarchy (as fs_lib.sh looks for it), or nothing.
tgt_cg_base() {
	local base
	for base in /sys/fs/cgroup /sys/fs/cgroup/unified; do
		[[ -f $base/cgroup.procs && -f $base/cgroup.controllers ]] && { echo "$base"; return 0; }
	done
	return 1
}

# Run CMD... in the gluster cgroup (it may daemonize; the cgroup keeps it).
tgt_gl_exec() {
	(
		[[ -n $TG_CG ]] && echo "$BASHPID" >"$TG_CG/cgroup.procs"
		exec "$@"
	)
}

tgt_gl_cli() { timeout 60 gluster --mode=script "$@"; }

# Every live gluster process we started: the cgroup's members, and (without
# a cgroup) the pid files glusterd and the clients wrote.
tgt_gl_pids() {
	local f p
	{
		[[ -n $TG_CG && -f $TG_CG/cgroup.procs ]] && cat "$TG_CG/cgroup.procs"
		[[ -n $TG_GLUSTERD_PID ]] && echo "$TG_GLUSTERD_PID"
		for f in "$TG_GL"/run/vols/*/*.pid "$TG_GL"/run/shd/*/*.pid "$TG_GL"/m?.pid; do
			[[ -f $f ]] || continue
			p=$(tr -dc '0-9' <"$f")
			[[ -n $p ]] && grep -qa gluster "/proc/$p/cmdline" 2>/dev/null && echo "$p"
		done
	} | sort -u
}

# Add "127.0.0.1 NAME" to /etc/hosts (glusterd takes a name that resolves
# to a 127.x address as this machine, but not the literal 127.0.0.1).
tgt_hosts_add() {
	local name=$1
	TG_HOSTS_LINE="127.0.0.1	$name	# sandfs tests/bench/run $$"
	echo "$TG_HOSTS_LINE" >>/etc/hosts
}

tgt_hosts_remove() {
	[[ -n $TG_HOSTS_LINE ]] || return 0
	local t=$FS_TMP/hosts.new
	grep -vxF -- "$TG_HOSTS_LINE" /etc/hosts >"$t"
	# rewrite in place: /etc/hosts may be a bind mount
	cat "$t" >/etc/hosts && rm -f "$t"
	TG_HOSTS_LINE=""
}

# The entries of the machine-wide gluster directories (sockets, logs), so
# that teardown removes exactly those this run added.
tgt_gl_listing() {
	find /var/run/gluster /var/log/glusterfs -mindepth 1 2>/dev/null | sort
}

tgt_gluster_up() {
	local c i vol
	for c in glusterd gluster glusterfs; do
		command -v "$c" >/dev/null || { echo "$c is not installed (glusterfs-server, glusterfs-client)" >&2; return 1; }
	done
	if ss -Hltn 'sport = :24007' | grep -q .; then
		echo "port 24007 is taken: another glusterd runs on this machine" >&2
		return 1
	fi
	mkdir -p "$TG_GL"/{wd,run,b1,b2,b3,m1,m2} || return 1
	TG_GL_SNAP=$TG_GL/before.lst
	tgt_gl_listing >"$TG_GL_SNAP"
	if c=$(tgt_cg_base) && mkdir "$c/sandfs_bench_gl_$$" 2>/dev/null; then
		TG_CG="$c/sandfs_bench_gl_$$"
	else
		echo "note: no cgroup v2; gluster processes are tracked by their pid files" >&2
	fi
	if [[ -n ${BENCH_GLUSTER_HOST:-} ]]; then
		TG_GL_HOST=$BENCH_GLUSTER_HOST
	else
		TG_GL_HOST="sandfs-bench-gl-$$"
		tgt_hosts_add "$TG_GL_HOST"
	fi
	vol=$TG_GL/glusterd.vol
	sed -e "s#^\( *option working-directory\).*#\1 $TG_GL/wd\n    option run-directory $TG_GL/run#" \
		/etc/glusterfs/glusterd.vol >"$vol"
	grep -q "run-directory $TG_GL/run" "$vol" || { echo "cannot adapt /etc/glusterfs/glusterd.vol" >&2; return 1; }
	tgt_gl_exec glusterd -N -f "$vol" -p "$TG_GL/glusterd.pid" -l "$TG_GL/glusterd.log" &
	TG_GLUSTERD_PID=$!
	tgt_wait 300 eval 'tgt_gl_cli volume info >/dev/null 2>&1' ||
		{ echo "glusterd does not answer (see $TG_GL/glusterd.log)" >&2; return 1; }
	# three bricks of one host: gluster wants 'force' (same server, and
	# bricks on the root filesystem)
	tgt_gl_cli volume create "$TG_VOL" replica 3 \
		"$TG_GL_HOST:$TG_GL/b1" "$TG_GL_HOST:$TG_GL/b2" "$TG_GL_HOST:$TG_GL/b3" force >&2 || return 1
	tgt_gl_cli volume start "$TG_VOL" >&2 || return 1
	for i in 1 2; do
		tgt_gl_exec glusterfs --volfile-server="$TG_GL_HOST" --volfile-id="$TG_VOL" \
			-l "$TG_GL/m$i.log" -p "$TG_GL/m$i.pid" "$TG_GL/m$i" || return 1
		TG_MOUNTS=("$TG_GL/m$i" "${TG_MOUNTS[@]}")
		tgt_wait 100 tgt_mounted "$TG_GL/m$i" || return 1
	done
	# the clients connect to the bricks in the background: wait for a
	# working create through each mount
	# shellcheck disable=SC2016  # expanded by eval
	tgt_wait 200 eval ': >"$TG_GM1/.up" 2>/dev/null && [[ -e $TG_GM2/.up ]]' || return 1
	rm -f "$TG_GM1/.up"
}

# The pid of brick I's glusterfsd, from glusterd's pid file.
tgt_gluster_brick_pid() {
	local f
	for f in "$TG_GL"/run/vols/"$TG_VOL"/*-b"$1".pid; do
		[[ -f $f ]] && tr -dc '0-9' <"$f"
	done
}

# kill -9 brick I's process.
tgt_gluster_kill_brick() {
	local p
	p=$(tgt_gluster_brick_pid "$1")
	[[ -n $p ]] || return 1
	kill -KILL "$p"
}

tgt_gluster_down() {
	local p new
	[[ -n $TG_GLUSTERD_PID || -n $TG_CG || -n $TG_HOSTS_LINE ]] || return 0
	tgt_umount "$TG_GM1"
	tgt_umount "$TG_GM2"
	if [[ -n $TG_GLUSTERD_PID ]] && kill -0 "$TG_GLUSTERD_PID" 2>/dev/null; then
		tgt_gl_cli volume stop "$TG_VOL" force >/dev/null 2>&1
		tgt_gl_cli volume delete "$TG_VOL" >/dev/null 2>&1
		kill -TERM "$TG_GLUSTERD_PID" 2>/dev/null
		wait "$TG_GLUSTERD_PID" 2>/dev/null
	fi
	for p in $(tgt_gl_pids); do tgt_stop_pid "$p"; done
	[[ -n $TG_GLUSTERD_PID ]] && wait "$TG_GLUSTERD_PID" 2>/dev/null
	TG_GLUSTERD_PID=""
	if [[ -n $TG_CG ]]; then
		rmdir "$TG_CG" 2>/dev/null || echo "note: cgroup $TG_CG still has processes: $(cat "$TG_CG/cgroup.procs" 2>/dev/null)" >&2
		[[ -d $TG_CG ]] || TG_CG=""
	fi
	tgt_hosts_remove
	# sockets and logs this run left in the machine-wide directories
	if [[ -n $TG_GL_SNAP && -f $TG_GL_SNAP ]]; then
		tgt_gl_listing | comm -13 "$TG_GL_SNAP" - | sort -r | while read -r new; do
			if [[ -d $new ]]; then rmdir "$new" 2>/dev/null; else rm -f "$new"; fi
		done
	fi
	TG_GL_SNAP=""
	rm -rf "$TG_GL"
}

# ---- all --------------------------------------------------------------------------

tgt_down_all() {
	local m
	tgt_gluster_down
	for m in "${TG_MOUNTS[@]}"; do tgt_umount "$m"; done
	TG_MOUNTS=()
	if [[ -n $TG_BINDFS_PID ]]; then
		tgt_stop_pid "$TG_BINDFS_PID"
		wait "$TG_BINDFS_PID" 2>/dev/null
		TG_BINDFS_PID=""
	fi
	return 0
}

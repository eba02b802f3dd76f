# shellcheck shell=bash disable=SC2034  # variables are read by the sourcing scripts
#
# lib.sh — helpers shared by the end-to-end scripts (tests/e2e/cluster_*.sh)
# and the proposal benchmark (tests/bench/propose_bench.sh).
#
# Source it; it does nothing when run on its own (tests/run runs every
# tests/e2e/*.sh, this file included).
#
# What it gives:
#   e2e_cluster_init N [SERVE-ARGS...]   plan an N-node cluster on loopback:
#        node i listens on 127.0.0.i:<free port>, keeps its data in
#        $E2E_TMP/n<i> and logs to $E2E_TMP/n<i>.log. SERVE-ARGS are added
#        to every `sandfs serve` (e.g. --timeout-ms 2000).
#   e2e_start I / e2e_stop I / e2e_kill9 I / e2e_alive I
#   e2e_status I             `sandfs status --json` through node I (stdout)
#   e2e_wait_leader SECS IDS... -> E2E_LEADER (0 on timeout): exactly one
#        leader, every node in IDS reachable and naming it, asked through
#        every node in IDS.
#   e2e_wait_converged SECS IDS... -> E2E_APPLIED, E2E_STATE, E2E_COUNT:
#        every node in IDS reachable, with the same applied index and the
#        same digest state, and nothing committed left to apply.
#   e2e_pass / e2e_fail / e2e_check NAME CMD... / e2e_summary
#   e2e_nft_isolate I / e2e_nft_heal       cut node I off (nftables)
#   e2e_bg CMD...            run CMD in the background, recorded for cleanup
#
# Every process started here is recorded by PID; the EXIT trap stops exactly
# those (SIGTERM, then SIGKILL after 5 s), deletes the nftables table this
# shell created and removes the temporary directory. Nothing is killed by
# name.
#
# Isolation with nftables: every node listens on its own address (127.0.0.i)
# and, when the tests run as root, runs under its own uid (61000+i, via
# setpriv). Traffic *to* node i is matched by its address; traffic *from*
# node i by the uid of its socket (`meta skuid`), because the kernel picks
# 127.0.0.1 as the source of every outgoing loopback connection, so an
# address match alone cannot tell node i's connections from the others'.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
	echo "lib.sh: helpers for the e2e scripts; nothing to run on its own"
	exit 0
fi

E2E_BIN=${SANDFS_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/bin}
SANDFS="$E2E_BIN/sandfs"
if [[ ! -x "$SANDFS" ]]; then
	echo "FAIL: no sandfs binary at $SANDFS (build it, or set SANDFS_BIN)" >&2
	exit 1
fi

# The nodes of a test get every option on the command line: a machine's
# /etc/sandfs/sandfs.conf must not add to them (empty: no file).
export SANDFS_CONFIG=
E2E_TMP=$(mktemp -d /tmp/sfs-e2e.XXXXXX)
chmod 755 "$E2E_TMP"
# As root, nodes run under their own uids (see below); the tree may live
# where those uids cannot reach (a private home), so they run a copy.
if [[ $(id -u) -eq 0 ]]; then
	cp "$SANDFS" "$E2E_TMP/sandfs" && chmod 755 "$E2E_TMP/sandfs" &&
		SANDFS="$E2E_TMP/sandfs"
fi
E2E_PASSED=0
E2E_FAILED=0
E2E_NFT_TABLE=""
E2E_UID_BASE=61000
E2E_N=0
E2E_PEERS=""
E2E_SERVE_ARGS=()
E2E_BG_PIDS=()
declare -A E2E_PID=()   # node id -> pid of its running `sandfs serve`
declare -A E2E_ADDR=()  # node id -> host:port
E2E_ROOT=0
[[ $(id -u) -eq 0 ]] && E2E_ROOT=1
# Nodes run under their own uids when we are root and that uid can run the
# binary (not the case when the tree lives under a private home directory).
E2E_SETUID=0
if [[ $E2E_ROOT == 1 ]] && command -v setpriv >/dev/null &&
	setpriv --reuid=$((E2E_UID_BASE + 1)) --regid=$((E2E_UID_BASE + 1)) --clear-groups -- \
		test -x "$SANDFS" 2>/dev/null; then
	E2E_SETUID=1
fi

# ---- reporting ------------------------------------------------------------

e2e_log() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*"; }

e2e_pass() {
	E2E_PASSED=$((E2E_PASSED + 1))
	echo "PASS: $*"
}

e2e_fail() {
	E2E_FAILED=$((E2E_FAILED + 1))
	echo "FAIL: $*"
}

# e2e_check NAME CMD...: PASS when CMD exits 0.
e2e_check() {
	local name=$1
	shift
	if "$@"; then e2e_pass "$name"; else e2e_fail "$name"; fi
}

# Print the summary line; exit status for the script.
e2e_summary() {
	echo "$E2E_PASSED passed, $E2E_FAILED failed"
	[[ $E2E_FAILED -eq 0 ]]
}

# Milliseconds on the monotonic-ish wall clock (for durations only).
e2e_now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ---- cleanup -----------------------------------------------------------------

# Stop one recorded PID: SIGTERM, wait up to 5 s, then SIGKILL. Sets
# E2E_REAP_RC to its exit status and E2E_REAP_KILLED=1 when SIGKILL was
# needed.
e2e_reap() {
	local pid=$1 i
	E2E_REAP_KILLED=0
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null
		for ((i = 0; i < 50; i++)); do
			# a child that exited stays a zombie until waited for
			# (ps under a timeout: reading /proc of a process that is
			# exiting can block)
			[[ $(timeout 1 ps -o stat= -p "$pid" 2>/dev/null) == Z* ]] && break
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null &&
			[[ $(timeout 1 ps -o stat= -p "$pid" 2>/dev/null) != Z* ]]; then
			echo "note: pid $pid ignored SIGTERM for 5 s; sending SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null
			E2E_REAP_KILLED=1
		fi
	fi
	wait "$pid" 2>/dev/null
	E2E_REAP_RC=$?
	return 0
}

e2e_cleanup() {
	local rc=$? id pid
	trap - EXIT INT TERM
	for pid in "${E2E_BG_PIDS[@]}"; do e2e_reap "$pid"; done
	for id in "${!E2E_PID[@]}"; do e2e_reap "${E2E_PID[$id]}"; done
	e2e_nft_heal
	if [[ $E2E_FAILED -gt 0 || $rc -ne 0 ]] && [[ ${E2E_KEEP_QUIET:-0} != 1 ]]; then
		for f in "$E2E_TMP"/*.log; do
			[[ -f $f ]] || continue
			echo "---- last lines of $(basename "$f")"
			tail -n 15 "$f"
		done
	fi
	if [[ ${E2E_KEEP:-0} == 1 ]]; then
		echo "kept $E2E_TMP (E2E_KEEP=1)"
	else
		rm -rf "$E2E_TMP"
	fi
	exit "$rc"
}
trap e2e_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run CMD in the background; its PID is recorded (E2E_LAST_BG) and reaped
# at exit. Must not be called inside $(...).
e2e_bg() {
	"$@" &
	E2E_LAST_BG=$!
	E2E_BG_PIDS+=("$E2E_LAST_BG")
}

# ---- cluster ---------------------------------------------------------------------

# A free TCP port on HOST (the kernel picks it; closed again at once).
e2e_free_port() {
	python3 -c 'import socket,sys
s=socket.socket(); s.bind((sys.argv[1],0)); print(s.getsockname()[1]); s.close()' "$1"
}

# e2e_cluster_init N [SERVE-ARGS...]
e2e_cluster_init() {
	local n=$1 i host port
	shift
	E2E_N=$n
	E2E_SERVE_ARGS=("$@")
	E2E_PEERS=""
	for ((i = 1; i <= n; i++)); do
		host=127.0.0.$i
		port=$(e2e_free_port "$host")
		E2E_ADDR[$i]="$host:$port"
		E2E_PEERS+="${E2E_PEERS:+,}$i=$host:$port"
		mkdir -p "$E2E_TMP/n$i"
		if [[ $E2E_SETUID == 1 ]]; then
			chown "$((E2E_UID_BASE + i)):$((E2E_UID_BASE + i))" "$E2E_TMP/n$i"
		fi
	done
}

e2e_data() { echo "$E2E_TMP/n$1"; }

# Start node I in the background (a child of this shell).
e2e_start() {
	local i=$1 pre=()
	if [[ $E2E_SETUID == 1 ]]; then
		pre=(setpriv --reuid="$((E2E_UID_BASE + i))" --regid="$((E2E_UID_BASE + i))" --clear-groups --)
	fi
	echo "==== start $(date +%T.%3N)" >>"$E2E_TMP/n$i.log"
	"${pre[@]}" "$SANDFS" serve --id "$i" --peers "$E2E_PEERS" \
		--data "$E2E_TMP/n$i" "${E2E_SERVE_ARGS[@]}" \
		>>"$E2E_TMP/n$i.log" 2>&1 &
	E2E_PID[$i]=$!
}

e2e_alive() {
	[[ -n ${E2E_PID[$1]:-} ]] && kill -0 "${E2E_PID[$1]}" 2>/dev/null
}

# SIGTERM node I and wait for it.
e2e_stop() {
	local i=$1
	[[ -n ${E2E_PID[$i]:-} ]] || return 0
	e2e_reap "${E2E_PID[$i]}"
	unset "E2E_PID[$i]"
}

# kill -9 node I and reap it.
e2e_kill9() {
	local i=$1
	[[ -n ${E2E_PID[$i]:-} ]] || return 0
	kill -KILL "${E2E_PID[$i]}" 2>/dev/null
	wait "${E2E_PID[$i]}" 2>/dev/null
	unset "E2E_PID[$i]"
}

# Wait until node I answers on its admin socket (up to SECS).
e2e_wait_admin() {
	local i=$1 secs=${2:-10} end
	end=$(($(e2e_now_ms) + secs * 1000))
	while (($(e2e_now_ms) < end)); do
		timeout 5 "$SANDFS" status --data "$(e2e_data "$i")" >/dev/null 2>&1 && return 0
		e2e_alive "$i" || return 1
		sleep 0.1
	done
	return 1
}

e2e_status() {
	timeout 10 "$SANDFS" status --data "$(e2e_data "$1")" --json 2>/dev/null
}

# Reads a status JSON on stdin and answers a question about it.
#   leader IDS...     -> leader id, or "0 reason"
#   converged IDS...  -> "applied count state", or "no reason"
#   get ID KEY        -> that node's field
#   leaderid          -> the top-level leader
E2E_PY='
import json, sys
try:
    s = json.load(sys.stdin)
except Exception as e:
    print("0 bad-json", e); sys.exit(0)
op, args = sys.argv[1], sys.argv[2:]
nodes = {n["id"]: n for n in s.get("nodes", [])}
if op == "get":
    print(nodes.get(int(args[0]), {}).get(args[1], "")); sys.exit(0)
if op == "leaderid":
    print(s.get("leader", 0)); sys.exit(0)
ids = [int(a) for a in args]
for i in ids:
    if not nodes.get(i, {}).get("reachable"):
        print("0 node-%d-unreachable" % i); sys.exit(0)
reach = [n for n in nodes.values() if n.get("reachable")]
if op == "leader":
    leaders = [n["id"] for n in reach if n["role"] == "leader"]
    if len(leaders) != 1:
        print("0 leaders=%s" % leaders); sys.exit(0)
    L = leaders[0]
    bad = [n["id"] for n in reach if n.get("leader") != L]
    if bad:
        print("0 nodes-%s-disagree" % bad); sys.exit(0)
    print(L); sys.exit(0)
if op == "converged":
    sel = [nodes[i] for i in ids]
    app = {n["applied"] for n in sel}
    st = {n["state"] for n in sel}
    com = max(n["commit"] for n in reach)
    if len(app) != 1 or len(st) != 1 or min(app) < com:
        print("no applied=%s commit=%d states=%d" % (sorted(app), com, len(st))); sys.exit(0)
    state = sel[0]["state"]
    count = state.split()[0].split("=")[1]
    print(sel[0]["applied"], count, state.replace(" ", "_")); sys.exit(0)
'
e2e_py() { python3 -c "$E2E_PY" "$@"; }

# e2e_wait_leader SECS IDS... : every node in IDS, asked itself, sees all of
# IDS reachable, exactly one leader and agreement on it. Sets E2E_LEADER
# (0 on timeout) and E2E_WHY (the last reason).
e2e_wait_leader() {
	local secs=$1 end i ans first
	shift
	end=$(($(e2e_now_ms) + secs * 1000))
	E2E_LEADER=0
	while (($(e2e_now_ms) < end)); do
		first=""
		for i in "$@"; do
			ans=$(e2e_status "$i" | e2e_py leader "$@")
			if [[ $ans == 0* ]]; then
				first=0
				E2E_WHY="node $i: ${ans#0 }"
				break
			fi
			[[ -z $first ]] && first=$ans
			if [[ $ans != "$first" ]]; then
				E2E_WHY="nodes disagree ($first vs $ans)"
				first=0
				break
			fi
		done
		if [[ -n $first && $first != 0 ]]; then
			E2E_LEADER=$first
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# e2e_wait_converged SECS IDS... (asked through the first of IDS).
e2e_wait_converged() {
	local secs=$1 end ans
	shift
	end=$(($(e2e_now_ms) + secs * 1000))
	E2E_APPLIED=0 E2E_COUNT=0 E2E_STATE=""
	while (($(e2e_now_ms) < end)); do
		ans=$(e2e_status "$1" | e2e_py converged "$@")
		if [[ $ans != no* && $ans != 0* ]]; then
			read -r E2E_APPLIED E2E_COUNT E2E_STATE <<<"$ans"
			E2E_STATE=${E2E_STATE//_/ }
			return 0
		fi
		E2E_WHY=$ans
		sleep 0.2
	done
	return 1
}

# ---- nftables isolation -------------------------------------------------------------

# Cut node I off from everybody: drop every packet sent to its address and
# every packet sent by a socket of its uid. Needs root.
e2e_nft_isolate() {
	local i=$1
	[[ $E2E_ROOT == 1 && $E2E_SETUID == 1 ]] || return 1
	if [[ -z $E2E_NFT_TABLE ]]; then
		E2E_NFT_TABLE="sandfs_test_$$"
		nft add table inet "$E2E_NFT_TABLE" || { E2E_NFT_TABLE=""; return 1; }
		nft add chain inet "$E2E_NFT_TABLE" out \
			'{ type filter hook output priority 0; policy accept; }' || return 1
	fi
	nft add rule inet "$E2E_NFT_TABLE" out ip daddr "127.0.0.$i" drop &&
		nft add rule inet "$E2E_NFT_TABLE" out meta skuid "$((E2E_UID_BASE + i))" drop
}

# Remove the table (and so every rule) this shell created.
e2e_nft_heal() {
	[[ -n $E2E_NFT_TABLE ]] || return 0
	nft delete table inet "$E2E_NFT_TABLE" 2>/dev/null
	E2E_NFT_TABLE=""
}

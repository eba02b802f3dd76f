#!/usr/bin/env bash
# ops_metrics.sh — the operator's view of a live 3-node cluster of real
# mounts: the Prometheus endpoint (--metrics), `sandfs stats`, `sandfs
# bench`, and the errors a bad --metrics address gets.
#
#   SANDFS_BIN=build/bin bash tests/e2e/ops_metrics.sh
#
# Checks (tests/e2e/ops_metrics.py parses and judges):
#   - every node's /metrics parses strictly (HELP and TYPE for every
#     family, numbers, cumulative histograms ending in +Inf = _count,
#     sandfs_ prefix, units in the names); exactly one node's role gauge
#     says leader, the one `sandfs status` names, and each node's gauge
#     agrees with its status row;
#   - after known file operations on mount 1 its counters grew by at
#     least as much (FUSE creates, writes, mkdirs, unlinks and their
#     latency histograms, proposals, bytes to the peers, block pushes);
#   - `sandfs stats MOUNTPOINT --once --json` during a burst of creates
#     shows them (totals, per second, p50/p99), the peers and the
#     proposals; `--data DIR` and the text view work; a directory that is
#     no mount, or no argument, gets a clear error;
#   - `sandfs bench` on a mount and on a plain directory prints a summary
#     that parses, and leaves nothing behind;
#   - a `sandfs serve` node serves metrics without FUSE families;
#   - a malformed --metrics address exits 2 naming the problem, a port in
#     use exits 1 saying so (serve and mount).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/fs_lib.sh
source "$HERE/fs_lib.sh"
PY="python3 $HERE/ops_metrics.py"

# The scrub on at a rate of our choosing (stats and metrics show it).
fs_init 3 --timeout-ms 5000 -o scrub_mb_s=8
declare -A MPORT=()
for i in 1 2 3; do
	MPORT[$i]=$(fs_free_port 127.0.0.1)
	FS_NODE_ARGS[$i]="--metrics 127.0.0.1:${MPORT[$i]}"
done
url() { echo "http://127.0.0.1:${MPORT[$1]}/metrics"; }

fs_log "starting 3 mounted nodes with --metrics"
if ! fs_start_all; then
	fs_fail "cluster up (${FS_WHY:-})"
	fs_summary
	exit 1
fi
fs_pass "cluster up, leader $FS_LEADER"
M1=$(fs_mnt 1)

# ---- the endpoint parses, roles agree with status ---------------------------

for i in 1 2 3; do
	if n=$($PY scrape "$(url "$i")" "$FS_TMP/s$i.json"); then
		fs_pass "node $i: /metrics parses strictly ($n samples)"
	else
		fs_fail "node $i: /metrics: $n"
	fi
done
# The gauges and `sandfs status` are read at slightly different moments:
# an election in between (this machine is loaded) makes them differ, so
# the comparison is made again, up to 5 times, until one reading agrees.
role_check() { # -> ROLE_WHY; 0 when every gauge agrees with status
	local i role srole lid leaders=0 st slead
	ROLE_WHY=""
	st=$(fs_status 1)
	slead=$(python3 -c 'import json,sys; print(json.load(sys.stdin).get("leader", 0))' <<<"$st" 2>/dev/null)
	for i in 1 2 3; do
		$PY scrape "$(url "$i")" "$FS_TMP/r$i.json" >/dev/null || { ROLE_WHY="node $i scrape failed"; return 1; }
		role=$($PY role "$FS_TMP/r$i.json")
		srole=$(python3 -c 'import json,sys; s=json.load(sys.stdin)
print([n["role"] for n in s["nodes"] if n["id"]==int(sys.argv[1])][0])' "$i" <<<"$st")
		lid=$($PY get "$FS_TMP/r$i.json" sandfs_raft_leader_id)
		[[ $role == leader ]] && leaders=$((leaders + 1))
		ROLE_WHY+="node $i: gauge $role, status $srole, leader id $lid; "
		[[ $role == "$srole" && $lid == "$slead" ]] || return 1
	done
	ROLE_WHY+="status leader $slead"
	[[ $leaders == 1 && $slead != 0 ]] &&
		[[ $($PY role "$FS_TMP/r$slead.json") == leader ]]
}
ok=0
for ((k = 0; k < 5; k++)); do
	if role_check; then
		ok=1
		break
	fi
	sleep 0.5
done
fs_check "role gauges: exactly one leader, each node's gauge and leader id agree with status ($ROLE_WHY)" test $ok = 1
code=$(python3 -c 'import urllib.request,urllib.error,sys
try: print(urllib.request.urlopen(sys.argv[1]).status)
except urllib.error.HTTPError as e: print(e.code)' "http://127.0.0.1:${MPORT[1]}/nope")
fs_check "other paths get 404 ($code)" test "$code" = 404

# ---- counters grow with known operations -----------------------------------------

$PY scrape "$(url 1)" "$FS_TMP/before.json" >/dev/null
NF=30
ok=1
mkdir "$M1/dir" || ok=0
for ((k = 0; k < NF; k++)); do
	head -c 70000 /dev/urandom >"$M1/dir/f$k" || ok=0
done
for ((k = 0; k < NF; k++)); do cat "$M1/dir/f$k" >/dev/null || ok=0; done
for ((k = 0; k < 10; k++)); do rm "$M1/dir/f$k" || ok=0; done
fs_check "file operations on mount 1" test "$ok" = 1
fs_wait_converged 20 1 2 3 || fs_fail "converged after the operations (${FS_WHY:-})"
$PY scrape "$(url 1)" "$FS_TMP/after.json" >/dev/null
# One python run judges every counter (one line each, PASS or FAIL).
checks=(
	'sandfs_fuse_ops_total{op="create"}' $NF
	'sandfs_fuse_op_duration_seconds_count{op="create"}' $NF
	'sandfs_fuse_ops_total{op="write"}' $NF
	'sandfs_fuse_ops_total{op="read"}' 1
	'sandfs_fuse_ops_total{op="mkdir"}' 1
	'sandfs_fuse_ops_total{op="unlink"}' 10
	'sandfs_fuse_op_duration_seconds_count{op="unlink"}' 10
	sandfs_raft_proposals_total $((NF + 11))
	sandfs_raft_proposal_duration_seconds_count $((NF + 11))
	sandfs_raft_applied_index $((NF + 11))
	sandfs_raft_log_syncs_total 1
	'sandfs_transport_requests_sent_total{kind="block_put"}' $NF
)
for p in 2 3; do
	checks+=("sandfs_transport_sent_bytes_total{peer=\"$p\"}" 70000
		"sandfs_transport_received_bytes_total{peer=\"$p\"}" 1)
done
judged=0
while IFS= read -r line; do
	judged=$((judged + 1))
	case $line in
	PASS:*) fs_pass "${line#PASS: }" ;;
	*) fs_fail "${line#FAIL: }" ;;
	esac
done < <($PY grew "$FS_TMP/before.json" "$FS_TMP/after.json" "${checks[@]}")
fs_check "every counter was judged ($judged of $((${#checks[@]} / 2)))" \
	test "$judged" = $((${#checks[@]} / 2))
fs_check "no frame was rejected" \
	test "$($PY get "$FS_TMP/after.json" sandfs_transport_rejected_frames_total)" = 0
fs_check "no block failed its check" \
	test "$($PY get "$FS_TMP/after.json" 'sandfs_block_verification_failures_total{check="crc32c"}')" = 0

# ---- sandfs stats ----------------------------------------------------------------------

# A burst of creates while stats samples its interval.
(for ((k = 0; k < 400; k++)); do : >"$M1/dir/burst$k" || exit 1; done) &
burst=$!
FS_BG_PIDS+=("$burst")
sleep 0.3
timeout 20 "$SANDFS" stats "$M1" --once --json --interval 1 >"$FS_TMP/stats.json" 2>"$FS_TMP/stats.err"
rc=$?
wait "$burst"
fs_check "stats MOUNTPOINT --once --json exits 0 ($(head -c 200 "$FS_TMP/stats.err"))" test $rc = 0
if why=$($PY stats "$FS_TMP/stats.json" 1 $NF); then
	fs_pass "stats JSON: creates, rates, latencies, peers, blocks"
else
	fs_fail "$why"
	head -c 1500 "$FS_TMP/stats.json"
fi
timeout 20 "$SANDFS" stats --data "$(fs_data 2)" --once --json --interval 0.5 >"$FS_TMP/stats2.json"
fs_check "stats --data DIR names node 2" \
	python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); sys.exit(v["node"]!=2 or v["fuse"] is None)' "$FS_TMP/stats2.json"
# The leader's view has each peer's log lag (the leader as status names
# it now: under load an election may have moved it since the start).
fs_wait_leader 20 1 2 3 || fs_fail "a leader before stats (${FS_WHY:-})"
timeout 20 "$SANDFS" stats --data "$(fs_data "$FS_LEADER")" --once --json --interval 0.3 >"$FS_TMP/statsL.json"
if why=$(python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))
bad = v["role"]!="leader" or len(v["peers"])!=2 or any(
    not isinstance(p["log_lag_entries"],(int,float)) or p["log_lag_entries"]<0 for p in v["peers"])
print("role %s, peers %s" % (v["role"], [(p["id"], p["log_lag_entries"]) for p in v["peers"]]))
sys.exit(bad)' "$FS_TMP/statsL.json"); then
	fs_pass "stats on the leader (node $FS_LEADER) shows each peer's log lag ($why)"
else
	fs_fail "stats on the leader (node $FS_LEADER): $why"
fi
out=$(timeout 20 "$SANDFS" stats "$M1" --once --interval 0.3)
fs_check "stats text view has its sections" \
	grep -q "^FUSE request .*p50 .*p99" <<<"$out"
grep -q "^raft .*apply lag" <<<"$out" || fs_fail "stats text lacks the raft line: $out"
out=$(timeout 20 "$SANDFS" stats "$M1" --json --interval 0.2 --count 3)
fs_check "stats --count 3 --json prints three objects" \
	test "$(python3 -c 'import json,sys
print(sum(1 for l in sys.stdin if json.loads(l)))' <<<"$out")" = 3
mkdir -p "$FS_TMP/plain"
err=$("$SANDFS" stats "$FS_TMP/plain" --once 2>&1)
rc=$?
fs_check "stats on a directory that is no mount: exit 1, says so" \
	test $rc = 1 -a -n "$(grep 'nothing is mounted' <<<"$err")"
SANDFS_CONFIG= "$SANDFS" stats >/dev/null 2>&1
fs_check "stats without a target (and no configuration file): usage error" test $? = 2
"$SANDFS" stats "$M1" --interval 0 >/dev/null 2>&1
fs_check "stats --interval 0: usage error" test $? = 2

# ---- sandfs bench --------------------------------------------------------------------------

BENCH=(--big-file-size 8 --small-files 20 --small-file-size 64 --files 50 --no-progress)
for target in "$M1" "$FS_TMP/plain"; do
	if timeout 120 "$SANDFS" bench "$target" "${BENCH[@]}" --json >"$FS_TMP/bench.json" 2>"$FS_TMP/bench.err"; then
		if why=$($PY bench "$FS_TMP/bench.json"); then
			fs_pass "bench $target: JSON summary parses and adds up"
		else
			fs_fail "bench $target: $why"
		fi
	else
		fs_fail "bench $target: $(cat "$FS_TMP/bench.err")"
	fi
	left=$(find "$target" -maxdepth 1 -name '.sandfs-bench-*' | wc -l)
	fs_check "bench $target left nothing behind" test "$left" = 0
done
out=$(timeout 120 "$SANDFS" bench "$M1" --big-file-size 2 --small-files 5 --files 5 --threads 2 --no-progress)
rows=$(grep -cE '^\| (write big file|read big file|write small file|read small file|stat file|create file|delete file) ' <<<"$out")
fs_check "bench table has all 7 rows ($rows)" test "$rows" = 7
"$SANDFS" bench "$M1" --threads 0 >/dev/null 2>&1
fs_check "bench --threads 0: usage error" test $? = 2
"$SANDFS" bench "$FS_TMP/does-not-exist" >/dev/null 2>&1
fs_check "bench on a missing directory: exit 1" test $? = 1

# ---- a serve node, and bad --metrics addresses ------------------------------------------------

SP=$(fs_free_port 127.0.0.1)
SM=$(fs_free_port 127.0.0.1)
mkdir -p "$FS_TMP/serve"
# The address from the configuration file this time (metrics = ...).
printf 'id = 1\nmember = 1=127.0.0.1:%s\ndata = %s\nmetrics = 127.0.0.1:%s\n' \
	"$SP" "$FS_TMP/serve" "$SM" >"$FS_TMP/serve.conf"
"$SANDFS" serve --config "$FS_TMP/serve.conf" >"$FS_TMP/serve.log" 2>&1 &
SPID=$!
FS_BG_PIDS+=("$SPID")
ok=0
for ((k = 0; k < 100; k++)); do
	if $PY scrape "http://127.0.0.1:$SM/metrics" "$FS_TMP/serve.json" serve >/dev/null 2>&1 &&
		[[ $($PY role "$FS_TMP/serve.json") == leader ]]; then
		ok=1
		break
	fi
	sleep 0.1
done
fs_check "serve with metrics = in its configuration file: parses strictly, single node leads" test $ok = 1
fs_check "serve node has no FUSE, block or scrub families" \
	python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["types"]
sys.exit(any(k.startswith(("sandfs_fuse", "sandfs_block", "sandfs_scrub")) for k in t))' "$FS_TMP/serve.json"
timeout 20 "$SANDFS" stats --data "$FS_TMP/serve" --once --json --interval 0.3 >"$FS_TMP/sstats.json"
fs_check "stats on a serve node: fuse and blocks are null" \
	python3 -c 'import json,sys; v=json.load(open(sys.argv[1])); sys.exit(v["fuse"] is not None or v["blocks"] is not None or v["role"]!="leader")' "$FS_TMP/sstats.json"
kill -TERM "$SPID" 2>/dev/null
wait "$SPID" 2>/dev/null

# mount(8)'s helper takes metrics= like the other sandfs options.
HP=$(fs_free_port 127.0.0.1)
HM=$(fs_free_port 127.0.0.1)
mkdir -p "$FS_TMP/hd" "$FS_TMP/hm"
if PATH="$FS_BIN:$PATH" bash "$HERE/../../mount-helpers/mount.sandfs" sandfs "$FS_TMP/hm" \
	-o "id=1,peers=1=127.0.0.1:$HP,data=$FS_TMP/hd,metrics=127.0.0.1:$HM" >"$FS_TMP/helper.log" 2>&1; then
	fs_check "mount.sandfs -o metrics=: the endpoint answers" \
		$PY scrape "http://127.0.0.1:$HM/metrics" "$FS_TMP/helper.json" >/dev/null
	hpid=$(tr -dc '0-9' <"$FS_TMP/hd/LOCK.sandfs" 2>/dev/null | head -c 12)
	fusermount3 -u "$FS_TMP/hm" || fusermount3 -u -z "$FS_TMP/hm"
	[[ -n $hpid ]] && fs_wait_gone "$hpid" 15
else
	fs_fail "mount.sandfs with metrics=: $(cat "$FS_TMP/helper.log")"
fi

mkdir -p "$FS_TMP/bad" "$FS_TMP/badm"
for addr in nonsense 127.0.0.1 127.0.0.1:99999 "[::1]80"; do
	err=$(timeout 10 "$SANDFS" serve --id 1 --peers "1=127.0.0.1:$SP" --data "$FS_TMP/bad" --metrics "$addr" 2>&1)
	rc=$?
	fs_check "serve --metrics '$addr': exit 2, 'bad --metrics address'" \
		test $rc = 2 -a -n "$(grep -F "bad --metrics address '$addr'" <<<"$err")"
done
printf 'id = 1\nmember = 1=127.0.0.1:%s\ndata = %s\nmetrics = 127.0.0.1:http\n' \
	"$SP" "$FS_TMP/bad" >"$FS_TMP/bad.conf"
err=$(timeout 10 "$SANDFS" serve --config "$FS_TMP/bad.conf" 2>&1)
rc=$?
fs_check "metrics = with a bad address in the file: exit 2, names the file and line" \
	test $rc = 2 -a -n "$(grep -F "bad.conf:4" <<<"$err" | grep -F 'bad --metrics address')"
err=$(timeout 10 "$SANDFS" serve --id 1 --peers "1=127.0.0.1:$SP" --data "$FS_TMP/bad" --metrics "127.0.0.1:${MPORT[1]}" 2>&1)
rc=$?
fs_check "serve --metrics on a port in use: exit 1, 'cannot listen'" \
	test $rc = 1 -a -n "$(grep 'cannot listen: Address already in use' <<<"$err")"
mkdir -p "$FS_TMP/mbad"
err=$(timeout 30 "$SANDFS" mount --id 1 --peers "1=127.0.0.1:$SP" --data "$FS_TMP/badm" --metrics "127.0.0.1:${MPORT[1]}" "$FS_TMP/mbad" 2>&1)
rc=$?
fs_check "mount --metrics on a port in use: exit 1, 'cannot listen'" \
	test $rc = 1 -a -n "$(grep 'cannot listen' <<<"$err")"
if awk -v p="$FS_TMP/mbad" '$2 == p { f = 1 } END { exit !f }' /proc/mounts; then
	fs_fail "the failed mount left $FS_TMP/mbad mounted"
	fusermount3 -u "$FS_TMP/mbad"
fi

fs_summary

#!/usr/bin/env bash
# cluster_basic.sh — a real 3-node sandfs cluster (`sandfs serve`, no FUSE)
# on loopback:
#   1. exactly one leader is elected and every node agrees on it;
#   2. 5,000 proposals sent through all three nodes at once are applied
#      exactly once and in the same order everywhere (same digest);
#   3. kill -9 of the leader: a new leader is elected and proposals commit
#      again (failover times are printed);
#   4. the killed node restarts from its data directory and catches up;
#   5. kill -9 of every node, restart: no acknowledged proposal is lost;
#   6. SIGTERM stops every node cleanly and releases its port.
# Prints PASS/FAIL per check and "N passed, M failed"; exits non-zero on
# any failure. Needs SANDFS_BIN (the directory holding `sandfs`).
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

IDS=(1 2 3)
e2e_cluster_init 3 --timeout-ms 3000
# The digest counts every applied entry, the leaders' no-op entries
# included. `expected` is the count every node must reach; `maybe` how many
# entries more it may hold (failed proposals that were committed anyway,
# one no-op per term a leader may have been elected in).
expected=0
maybe=0

# Current term as the status through node $1 reports it.
term_of() {
	e2e_status "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["term"])' 2>/dev/null || echo 0
}

# ---- 1. election -------------------------------------------------------------
e2e_log "starting 3 nodes: $E2E_PEERS (data under $E2E_TMP)"
t0=$(e2e_now_ms)
for i in "${IDS[@]}"; do e2e_start "$i"; done
for i in "${IDS[@]}"; do
	e2e_wait_admin "$i" 10 || e2e_fail "node $i answers on its admin socket"
done
if e2e_wait_leader 15 "${IDS[@]}"; then
	e2e_pass "one leader elected (node $E2E_LEADER after $(($(e2e_now_ms) - t0)) ms), all 3 nodes agree"
else
	e2e_fail "one leader elected within 15 s ($E2E_WHY)"
	e2e_summary
	exit 1
fi
leader=$E2E_LEADER
if e2e_wait_converged 10 "${IDS[@]}"; then
	expected=$E2E_COUNT
else
	e2e_fail "nodes converge after the election ($E2E_WHY)"
fi
term0=$(term_of "$leader")
echo "  start: digest count $expected (no-op/conf entries), term $term0"

# ---- 2. 5,000 proposals through all three nodes ----------------------------------
e2e_log "5000 proposals: bench-propose on every node at once (1667+1667+1666, concurrency 8)"
counts=(1667 1667 1666)
t0=$(e2e_now_ms)
pids=()
for k in 0 1 2; do
	i=${IDS[$k]}
	e2e_bg "$SANDFS" bench-propose --data "$(e2e_data "$i")" "${counts[$k]}" 8 64 \
		>"$E2E_TMP/bench$i.out" 2>&1
	pids+=("$E2E_LAST_BG")
done
ok=1
for k in 0 1 2; do
	wait "${pids[$k]}" || ok=0
	out=$(cat "$E2E_TMP/bench${IDS[$k]}.out")
	echo "  node ${IDS[$k]}: $out"
	[[ $out == "ok count=${counts[$k]} failed=0 "* ]] || ok=0
done
dt=$(($(e2e_now_ms) - t0))
if [[ $ok == 1 ]]; then
	e2e_pass "5000 proposals through 3 nodes acknowledged, none failed ($dt ms, $((5000 * 1000 / (dt ? dt : 1))) ops/s)"
else
	e2e_fail "5000 proposals through 3 nodes acknowledged without failures"
fi
expected=$((expected + 5000))
if e2e_wait_converged 20 "${IDS[@]}"; then
	term1=$(term_of "$leader")
	maybe=$((term1 - term0)) # a leader change adds a no-op
	if ((E2E_COUNT >= expected && E2E_COUNT <= expected + maybe)); then
		e2e_pass "all 3 nodes applied the same log, each proposal exactly once: applied=$E2E_APPLIED, $E2E_STATE (expected count $expected, term $term0 -> $term1)"
	else
		e2e_fail "digest count is $E2E_COUNT, expected $expected (+ up to $maybe no-ops) ($E2E_STATE)"
	fi
	expected=$E2E_COUNT maybe=0
else
	e2e_fail "nodes converge to one applied index and digest after 5000 proposals ($E2E_WHY)"
fi

# ---- 3. kill -9 the leader -------------------------------------------------------
survivors=()
for i in "${IDS[@]}"; do [[ $i == "$leader" ]] || survivors+=("$i"); done
s_prop=${survivors[0]} s_stat=${survivors[1]}

# Proposes through node $1 until one succeeds (or 20 s pass); writes
# "MS_SINCE_T0 ORDINAL" into $2 on success.
propose_until_ok() {
	local i=$1 file=$2 k=0 out end
	end=$(($(e2e_now_ms) + 20000))
	while (($(e2e_now_ms) < end)); do
		k=$((k + 1))
		if out=$(timeout 15 "$SANDFS" propose --data "$(e2e_data "$i")" "failover-$k" 2>&1) &&
			[[ $out == ok* ]]; then
			echo "$(($(e2e_now_ms) - fo_t0)) ${out#ok } $((k - 1))" >"$file"
			return 0
		fi
		sleep 0.02
	done
	return 1
}

term0=$(term_of "$leader")
e2e_log "kill -9 leader node $leader (pid ${E2E_PID[$leader]}, term $term0)"
fo_t0=$(e2e_now_ms)
e2e_kill9 "$leader"
e2e_bg propose_until_ok "$s_prop" "$E2E_TMP/failover.txt"
fo_pid=$E2E_LAST_BG
new_leader=0 t_leader=-1
while (($(e2e_now_ms) - fo_t0 < 20000)); do
	ans=$(e2e_status "$s_stat" | e2e_py leader "${survivors[@]}")
	if [[ $ans != 0* && $ans != "$leader" ]]; then
		new_leader=$ans
		t_leader=$(($(e2e_now_ms) - fo_t0))
		break
	fi
	sleep 0.05
done
wait "$fo_pid"
if [[ $new_leader != 0 ]]; then
	e2e_pass "new leader node $new_leader visible in status $t_leader ms after kill -9 of node $leader"
else
	e2e_fail "a new leader among nodes ${survivors[*]} within 20 s of kill -9 of node $leader"
fi
if [[ -s $E2E_TMP/failover.txt ]]; then
	read -r t_commit ord failed_tries <"$E2E_TMP/failover.txt"
	e2e_pass "proposal through node $s_prop committed $t_commit ms after kill -9 (ordinal $ord, $failed_tries failed tries before)"
	echo "  failover: kill -> new leader in status: $t_leader ms; kill -> first committed proposal: $t_commit ms"
	expected=$((expected + 1))
	maybe=$((maybe + failed_tries))
else
	e2e_fail "a proposal through node $s_prop commits within 20 s of kill -9 of the leader"
fi
# Commits keep flowing through the other survivor too.
out=$(timeout 60 "$SANDFS" bench-propose --data "$(e2e_data "$s_stat")" 300 4 64 2>&1)
if [[ $out == "ok count=300 failed=0 "* ]]; then
	e2e_pass "300 more proposals through node $s_stat with one node down"
	expected=$((expected + 300))
else
	e2e_fail "300 more proposals through node $s_stat with one node down: $out"
	maybe=$((maybe + 300))
fi

# Checks that the digest count C is `expected` (give or take the failed
# proposals that may have been committed anyway).
count_ok() {
	local c=$1
	((c >= expected && c <= expected + maybe))
}

# ---- 4. the killed node restarts and catches up -------------------------------
e2e_log "restarting node $leader from its data directory"
t0=$(e2e_now_ms)
e2e_start "$leader"
if e2e_wait_converged 30 "${IDS[@]}"; then
	maybe=$((maybe + $(term_of "$leader") - term0)) # one no-op per new term
	e2e_pass "restarted node $leader caught up in $(($(e2e_now_ms) - t0)) ms: applied=$E2E_APPLIED, $E2E_STATE on all 3"
	if count_ok "$E2E_COUNT"; then
		e2e_pass "digest count $E2E_COUNT matches the acknowledged proposals ($expected, + up to $maybe failed tries/no-ops)"
	else
		e2e_fail "digest count $E2E_COUNT, expected $expected (+ up to $maybe failed tries/no-ops)"
	fi
	expected=$E2E_COUNT maybe=0
else
	e2e_fail "restarted node $leader catches up within 30 s ($E2E_WHY)"
fi

# ---- 5. kill -9 of every node under load, then restart ---------------------
# Proposes through node $1 in a loop until $E2E_TMP/stop exists; every
# acknowledged ordinal goes to $2.
propose_loop() {
	local i=$1 file=$2 k=0 out
	while [[ ! -e $E2E_TMP/stop ]]; do
		k=$((k + 1))
		out=$(timeout 10 "$SANDFS" propose --data "$(e2e_data "$i")" "crash-$i-$k" 2>/dev/null) &&
			[[ $out == ok* ]] && echo "${out#ok }" >>"$file"
	done
}
e2e_log "load on every node (propose loops on all 3 + bench-propose on node 3), then kill -9 of all"
loops=()
for i in 1 2; do
	: >"$E2E_TMP/acks$i"
	e2e_bg propose_loop "$i" "$E2E_TMP/acks$i"
	loops+=("$E2E_LAST_BG")
done
e2e_bg "$SANDFS" bench-propose --data "$(e2e_data 3)" 1000000 16 64
bench_client=$E2E_LAST_BG
sleep 1.5
kill -KILL "${E2E_PID[1]}" "${E2E_PID[2]}" "${E2E_PID[3]}"
for i in "${IDS[@]}"; do e2e_kill9 "$i"; done
touch "$E2E_TMP/stop"
# The bench client would wait for its dead node's answer (admin timeout).
e2e_reap "$bench_client"
for p in "${loops[@]}"; do wait "$p" 2>/dev/null; done
acked=$(cat "$E2E_TMP"/acks1 "$E2E_TMP"/acks2 | wc -l)
max_ord=$(cat "$E2E_TMP"/acks1 "$E2E_TMP"/acks2 | sort -n | tail -n 1)
max_ord=${max_ord:-0}
echo "  acknowledged before the crash: $acked proposals, highest ordinal $max_ord (count before: $expected)"
if ((acked > 0)); then
	e2e_pass "proposals were acknowledged under load before the crash ($acked)"
else
	e2e_fail "proposals were acknowledged under load before the crash"
fi
e2e_log "restarting all 3 nodes"
t0=$(e2e_now_ms)
for i in "${IDS[@]}"; do e2e_start "$i"; done
if e2e_wait_leader 20 "${IDS[@]}"; then
	e2e_pass "after restart of all nodes node $E2E_LEADER leads ($(($(e2e_now_ms) - t0)) ms)"
else
	e2e_fail "a leader after restart of all nodes within 20 s ($E2E_WHY)"
fi
if e2e_wait_converged 30 "${IDS[@]}"; then
	if ((E2E_COUNT >= max_ord && E2E_COUNT >= expected + acked)); then
		e2e_pass "nothing acknowledged was lost: count $E2E_COUNT >= highest acked ordinal $max_ord and >= $expected+$acked; all nodes: $E2E_STATE"
	else
		e2e_fail "acknowledged entries lost: count $E2E_COUNT, highest acked ordinal $max_ord, expected >= $((expected + acked))"
	fi
	expected=$E2E_COUNT
else
	e2e_fail "all nodes converge after restart ($E2E_WHY)"
fi
out=$(timeout 15 "$SANDFS" propose --data "$(e2e_data 1)" "after-crash" 2>&1)
if [[ $out == ok* ]] && ((${out#ok } > max_ord)); then
	e2e_pass "a new proposal after the restart commits ($out)"
else
	e2e_fail "a new proposal after the restart commits with an ordinal > $max_ord (got: $out)"
fi

# ---- 6. clean stop ------------------------------------------------------------------
clean=1
for i in "${IDS[@]}"; do
	e2e_stop "$i"
	if [[ $E2E_REAP_RC != 0 || $E2E_REAP_KILLED == 1 ]]; then
		clean=0
		echo "  node $i: exit status $E2E_REAP_RC after SIGTERM (killed: $E2E_REAP_KILLED)"
	fi
done
e2e_check "SIGTERM stops every node cleanly (exit 0 within 5 s)" test "$clean" = 1
busy=""
for i in "${IDS[@]}"; do
	port=${E2E_ADDR[$i]##*:}
	ss -Htan "( sport = :$port )" | grep -q LISTEN && busy+=" ${E2E_ADDR[$i]}"
done
e2e_check "no listening port left behind${busy:+ (still bound:$busy)}" test -z "$busy"

e2e_summary

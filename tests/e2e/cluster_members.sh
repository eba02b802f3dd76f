#!/usr/bin/env bash
# cluster_members.sh — membership changes from the command line on a real
# cluster (`sandfs serve`, no FUSE) on loopback:
#   1. a 3-node cluster elects a leader and commits proposals;
#   2. node 4 starts with --join (no configuration of its own), is added
#      as a learner through a follower (`sandfs member add`), shows up as
#      "learner" and catches up (same applied index and digest);
#   3. `sandfs member promote 4` makes it a voter: 4 voters in status;
#   4. bad inputs give one-line errors: unknown id to promote/remove, add
#      of an existing id, a malformed address, promote of a voter, and
#      --join without --cluster-id; promoting a learner that never catches
#      up (node 5, never started) retries until the timeout, then says why;
#      node 4 restarts without --join and catches up;
#   5. `sandfs member remove 1` (through node 4), node 1 stopped: it is gone
#      from status and proposals commit with {2,3,4};
#   6. removing the current leader through the leader itself reports
#      success, another leader is elected and proposals commit;
#   7. --join on a data directory that already has a log is refused.
# Prints PASS/FAIL per check and "N passed, M failed"; exits non-zero on
# any failure. Needs SANDFS_BIN (the directory holding `sandfs`).
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

# Plan 4 addresses; the cluster is bootstrapped with the first 3 only.
e2e_cluster_init 4 --timeout-ms 3000
PEERS_ALL=$E2E_PEERS
PEERS3=${PEERS_ALL%,4=*}
SERVE_ARGS=("${E2E_SERVE_ARGS[@]}")

member() { timeout 20 "$SANDFS" member "$@" 2>&1; }

# Field KEY of node ID in the status JSON read through node $1.
field() { e2e_status "$1" | e2e_py get "$2" "$3"; }

# Roles in the configuration as node $1 sees it: "id:role ..." by id.
roles() {
	e2e_status "$1" | python3 -c 'import json,sys
s=json.load(sys.stdin)
print(" ".join("%d:%s" % (n["id"], n["role"]) for n in sorted(s["nodes"], key=lambda n: n["id"])))' 2>/dev/null
}

# Wait up to $1 s until `roles $2` matches the regex $3.
wait_roles() {
	local secs=$1 via=$2 re=$3 end
	end=$(($(e2e_now_ms) + secs * 1000))
	while (($(e2e_now_ms) < end)); do
		[[ $(roles "$via") =~ $re ]] && return 0
		sleep 0.1
	done
	return 1
}

# e2e_check-like, for a command that must fail with exactly one line
# containing $2.
expect_err() {
	local name=$1 want=$2 out rc
	shift 2
	out=$("$@" 2>&1)
	rc=$?
	if [[ $rc -ne 0 && $(wc -l <<<"$out") -eq 1 && $out == *"$want"* ]]; then
		e2e_pass "$name: $out"
	else
		e2e_fail "$name (exit $rc, want one line with '$want'): $out"
	fi
}

bench() { timeout 30 "$SANDFS" bench-propose --data "$(e2e_data "$1")" "$2" 4 64 2>&1; }

# ---- 1. a 3-node cluster ---------------------------------------------------------
E2E_PEERS=$PEERS3
e2e_log "starting 3 nodes: $E2E_PEERS (data under $E2E_TMP)"
for i in 1 2 3; do e2e_start "$i"; done
for i in 1 2 3; do e2e_wait_admin "$i" 10 || e2e_fail "node $i answers on its admin socket"; done
if ! e2e_wait_leader 15 1 2 3; then
	e2e_fail "one leader among 1 2 3 within 15 s ($E2E_WHY)"
	e2e_summary
	exit 1
fi
leader=$E2E_LEADER
out=$(bench "$leader" 200)
e2e_check "3-node cluster (leader $leader) commits 200 proposals: $out" \
	test "${out#ok count=200 failed=0 }" != "$out"
cid=$(e2e_status 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["cluster_id"])')
follower=1
[[ $leader == 1 ]] && follower=2

# ---- 2. node 4 joins ---------------------------------------------------------------
E2E_PEERS=$PEERS_ALL
E2E_SERVE_ARGS=("${SERVE_ARGS[@]}" --join --cluster-id "$cid")
e2e_log "starting node 4 with --join --cluster-id $cid"
e2e_start 4
E2E_SERVE_ARGS=("${SERVE_ARGS[@]}")
e2e_wait_admin 4 10 || e2e_fail "node 4 answers on its admin socket"
out=$(timeout 10 "$SANDFS" status --data "$(e2e_data 4)" 2>&1)
e2e_check "a joining node has no configuration before it is added" \
	grep -q "no configuration yet" <<<"$out"

t0=$(e2e_now_ms)
out=$(member add --data "$(e2e_data "$follower")" 4 "${E2E_ADDR[4]}")
e2e_check "member add 4 through follower node $follower: $out" \
	test "${out#node 4 added as a learner}" != "$out"
if wait_roles 10 "$leader" '4:learner'; then
	e2e_pass "status shows node 4 as a learner: $(roles "$leader")"
else
	e2e_fail "status shows node 4 as a learner: $(roles "$leader")"
fi
if e2e_wait_converged 20 1 2 3 4; then
	e2e_pass "node 4 caught up in $(($(e2e_now_ms) - t0)) ms: applied=$E2E_APPLIED, $E2E_STATE on all 4"
else
	e2e_fail "node 4 catches up within 20 s ($E2E_WHY)"
fi

# ---- 3. promote -------------------------------------------------------------------
out=$(member promote --data "$(e2e_data "$follower")" 4)
e2e_check "member promote 4: $out" test "${out#node 4 promoted to voter}" != "$out"
if wait_roles 10 "$leader" '^1:(leader|follower) 2:(leader|follower) 3:(leader|follower) 4:(leader|follower)$'; then
	e2e_pass "status shows 4 voters: $(roles "$leader")"
else
	e2e_fail "status shows 4 voters: $(roles "$leader")"
fi
out=$(bench 4 100)
e2e_check "100 proposals through node 4: $out" test "${out#ok count=100 failed=0 }" != "$out"

# ---- 4. bad inputs -------------------------------------------------------------------
d2=$(e2e_data 2)
expect_err "promote of an unknown id" "node 9 is not a member" "$SANDFS" member promote --data "$d2" 9
expect_err "remove of an unknown id" "node 9 is not a member" "$SANDFS" member remove --data "$d2" 9
expect_err "add of an existing id" "node 3 is already a member" "$SANDFS" member add --data "$d2" 3 127.0.0.9:7009
expect_err "add with a malformed address" "bad address" "$SANDFS" member add --data "$d2" 5 not-an-address
expect_err "add with a port out of range" "bad address" "$SANDFS" member add --data "$d2" 5 127.0.0.5:70000
expect_err "promote of a voter" "node 4 is already a voter" "$SANDFS" member promote --data "$d2" 4
expect_err "a bad id" "bad node id" "$SANDFS" member remove --data "$d2" x1
expect_err "--join without --cluster-id" "--join needs --cluster-id" \
	"$SANDFS" serve --id 5 --join --peers "$PEERS_ALL,5=127.0.0.5:1" --data "$E2E_TMP/n5"
port5=$(e2e_free_port 127.0.0.5)
out=$(member add --data "$d2" 5 "127.0.0.5:$port5")
e2e_check "member add 5 (a node that is never started): $out" \
	test "${out#node 5 added as a learner}" != "$out"
t0=$(e2e_now_ms)
expect_err "promote of a learner that never catches up" "node 5 is still catching up" \
	"$SANDFS" member promote --data "$d2" 5
dt=$(($(e2e_now_ms) - t0))
e2e_check "the promotion was retried until the 3 s timeout ($dt ms)" test "$dt" -ge 2900
out=$(member remove --data "$d2" 5)
e2e_check "member remove 5 (a learner): $out" test "${out#node 5 removed}" != "$out"

e2e_log "restarting node 4 without --join"
e2e_stop 4
E2E_PEERS=$PEERS_ALL
e2e_start 4
if e2e_wait_converged 20 1 2 3 4; then
	e2e_pass "node 4 restarted without --join and caught up: applied=$E2E_APPLIED, $E2E_STATE on all 4"
else
	e2e_fail "node 4 restarted without --join catches up within 20 s ($E2E_WHY)"
fi

# ---- 5. remove node 1 ---------------------------------------------------------------------
out=$(member remove --data "$(e2e_data 4)" 1)
e2e_check "member remove 1 through node 4: $out" test "${out#node 1 removed}" != "$out"
e2e_stop 1
if wait_roles 10 2 '^2:[a-z]+ 3:[a-z]+ 4:[a-z]+$'; then
	e2e_pass "node 1 is gone from status: $(roles 2)"
else
	e2e_fail "node 1 is gone from status: $(roles 2)"
fi
if e2e_wait_leader 15 2 3 4; then
	leader=$E2E_LEADER
	out=$(bench 3 100)
	e2e_check "with {2,3,4} (leader $leader) 100 proposals commit: $out" \
		test "${out#ok count=100 failed=0 }" != "$out"
else
	e2e_fail "a leader among 2 3 4 after removing node 1 ($E2E_WHY)"
fi

# ---- 6. remove the leader ---------------------------------------------------------------
rest=()
for i in 2 3 4; do [[ $i == "$leader" ]] || rest+=("$i"); done
t0=$(e2e_now_ms)
out=$(member remove --data "$(e2e_data "$leader")" "$leader")
e2e_check "member remove $leader (the leader, through itself) reports success: $out" \
	test "${out#node "$leader" removed}" != "$out"
if e2e_wait_leader 15 "${rest[@]}"; then
	e2e_pass "node $E2E_LEADER leads {${rest[*]}} $(($(e2e_now_ms) - t0)) ms after the removal of leader $leader"
	out=$(bench "${rest[0]}" 100)
	e2e_check "with {${rest[*]}} 100 proposals commit: $out" \
		test "${out#ok count=100 failed=0 }" != "$out"
	if wait_roles 5 "${rest[0]}" "^${rest[0]}:[a-z]+ ${rest[1]}:[a-z]+$"; then
		e2e_pass "status lists only ${rest[*]}: $(roles "${rest[0]}")"
	else
		e2e_fail "status lists only ${rest[*]}: $(roles "${rest[0]}")"
	fi
else
	e2e_fail "a new leader among ${rest[*]} within 15 s ($E2E_WHY)"
fi
e2e_stop "$leader"

# ---- 7. --join on a used data directory -----------------------------------------------------
expect_err "--join on a data directory with a log is refused" "already holds a raft log" \
	timeout 10 "$SANDFS" serve --id 1 --join --cluster-id "$cid" --peers "$PEERS_ALL" --data "$(e2e_data 1)"

e2e_summary

#!/usr/bin/env bash
# propose_bench.sh — proposal throughput and latency of a 3-node sandfs
# cluster on loopback, next to a 3-member etcd cluster measured in the same
# run on the same disk (the reference).
#
#   sandfs: `sandfs bench-propose` on the leader: closed loop inside the
#           node, latency from propose to the local apply.
#   etcd:   closed-loop puts to the leader, one connection per client:
#           etcd_put (C, HTTP/1.1 keep-alive to the JSON gateway, always)
#           and etcd_put_go (Go clientv3 over gRPC, when it can be built:
#           needs golang-go and golang-etcd-server-dev).
# Both with 1 and 64 concurrent proposers/clients and 128-byte payloads.
#
# Env: BENCH_N1 (3000), BENCH_N64 (30000), BENCH_SIZE (128), BENCH_REPS
# (1: runs of each system, taking turns; the table shows the last),
# BENCH_RESULTS (a file to append every run's figures to, for
# tests/bench/run).
# Prints a table and the targets (1-proposer p50 < 1 ms; 64-proposer ops/s
# >= etcd's). Timing is reported, not asserted: the script fails only when
# a cluster does not come up or a run has failed proposals.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$here/../e2e/lib.sh"

N1=${BENCH_N1:-3000}
N64=${BENCH_N64:-30000}
SIZE=${BENCH_SIZE:-128}
REPS=${BENCH_REPS:-1}
RESULTS=${BENCH_RESULTS:-}
WARM=1000
declare -A R=() # "system,conc" -> bench line

field() { # field NAME LINE
	local re="(^| )$1=([^ ]+)"
	[[ $2 =~ $re ]] && echo "${BASH_REMATCH[2]}"
}

# With BENCH_RESULTS: appends the figures of the last run of SYSTEM with
# CONC proposers, repetition REP, as "SYSTEM<TAB>raft_<CONC>_<field><TAB>
# REP<TAB>value" lines (fields ops, p50, p99; the format of tests/bench/run).
results() {
	local sys=$1 conc=$2 rep=$3 line f v
	[[ -n $RESULTS ]] || return 0
	line=${R[$sys,$conc]}
	[[ $line == ok* && $(field failed "$line") == 0 ]] || return 0
	for f in ops_per_s:ops p50_us:p50 p99_us:p99; do
		v=$(field "${f%%:*}" "$line")
		[[ -n $v ]] && printf '%s\traft_%s_%s\t%s\t%s\n' "$sys" "$conc" "${f#*:}" "$rep" "$v" >>"$RESULTS"
	done
}

# Records a bench line under KEY; fails the run if it has failures.
record() {
	local key=$1 line=$2
	echo "  $key: $line"
	if [[ $line != ok* || $(field failed "$line") != 0 ]]; then
		e2e_fail "$key run without failed proposals"
	else
		E2E_PASSED=$((E2E_PASSED + 1))
	fi
	R[$key]=$line
}

# ---- sandfs cluster -------------------------------------------------------------
e2e_cluster_init 3
for i in 1 2 3; do e2e_start "$i"; done
if ! e2e_wait_leader 20 1 2 3; then
	e2e_fail "sandfs cluster elects a leader ($E2E_WHY)"
	e2e_summary
	exit 1
fi
L=$E2E_LEADER
d=$(e2e_data "$L")
e2e_log "sandfs: 3 nodes ($E2E_PEERS), leader node $L"

# ---- etcd cluster ------------------------------------------------------------------
ETCD=${ETCD:-$(command -v etcd || true)}
put_c="" put_go="" leader_ep="" etcd_pids=()
if [[ -z $ETCD ]]; then
	echo "etcd not installed (apt-get install etcd-server): no reference run"
else
	put_c="$E2E_BIN/etcd_put"
	if [[ ! -x $put_c ]]; then
		put_c="$E2E_TMP/etcd_put"
		cc -O2 -std=c11 -D_GNU_SOURCE -o "$put_c" "$here/etcd_put.c" -lpthread || put_c=""
	fi
	if command -v go >/dev/null && [[ -d /usr/share/gocode/src/go.etcd.io/etcd/clientv3 ]]; then
		if GOPATH=/usr/share/gocode GO111MODULE=off GOCACHE=${GOCACHE:-$HOME/.cache/go-build} \
			go build -o "$E2E_TMP/etcd_put_go" "$here/etcd_put_go/main.go" 2>"$E2E_TMP/gobuild.log"; then
			put_go="$E2E_TMP/etcd_put_go"
		else
			echo "note: Go etcd client did not build (see below); gRPC rows skipped"
			head -n 5 "$E2E_TMP/gobuild.log"
		fi
	fi

	cluster="" eps=()
	declare -A CPORT=() PPORT=()
	for i in 1 2 3; do
		PPORT[$i]=$(e2e_free_port 127.0.0.1)
		CPORT[$i]=$(e2e_free_port 127.0.0.1)
		cluster+="${cluster:+,}e$i=http://127.0.0.1:${PPORT[$i]}"
		eps+=("127.0.0.1:${CPORT[$i]}")
	done
	for i in 1 2 3; do
		e2e_bg "$ETCD" --name "e$i" --data-dir "$E2E_TMP/etcd$i" \
			--listen-client-urls "http://127.0.0.1:${CPORT[$i]}" \
			--advertise-client-urls "http://127.0.0.1:${CPORT[$i]}" \
			--listen-peer-urls "http://127.0.0.1:${PPORT[$i]}" \
			--initial-advertise-peer-urls "http://127.0.0.1:${PPORT[$i]}" \
			--initial-cluster "$cluster" --initial-cluster-token "sandfs-bench-$$" \
			--initial-cluster-state new --logger=zap --log-level=warn \
			>"$E2E_TMP/etcd$i.log" 2>&1
		etcd_pids+=("$E2E_LAST_BG")
	done
	# The leader's client endpoint, once all three agree on one.
	for _ in $(seq 100); do
		leader_ep=$(ETCDCTL_API=3 timeout 5 etcdctl --endpoints="$(
			IFS=,
			echo "${eps[*]}"
		)" endpoint status -w json 2>/dev/null | python3 -c '
import json, sys
try:
    st = json.load(sys.stdin)
except Exception:
    sys.exit(0)
if len(st) == 3 and len({s["Status"]["leader"] for s in st}) == 1:
    for s in st:
        if s["Status"]["header"]["member_id"] == s["Status"]["leader"] != 0:
            print(s["Endpoint"])')
		[[ -n $leader_ep ]] && break
		sleep 0.2
	done
	if [[ -z $leader_ep ]]; then
		e2e_fail "etcd cluster elects a leader"
	else
		e2e_log "etcd $("$ETCD" --version | head -n 1 | awk '{print $3}'): 3 members, leader at $leader_ep"
	fi
fi
host=${leader_ep%:*} port=${leader_ep##*:}

# One run of SYSTEM with COUNT operations and CONC proposers/clients.
run() {
	local sys=$1 count=$2 conc=$3
	case $sys in
	sandfs) "$SANDFS" bench-propose --data "$d" "$count" "$conc" "$SIZE" 2>&1 ;;
	etcd-grpc) "$put_go" "$leader_ep" "$count" "$conc" "$SIZE" 2>&1 ;;
	etcd-http) "$put_c" "$host" "$port" "$count" "$conc" "$SIZE" 2>&1 ;;
	esac
}

# ---- runs: both clusters are up; the systems take turns, so background
# load on the machine hits them alike ------------------------------------------------
systems=(sandfs)
if [[ -n $leader_ep ]]; then
	[[ -n $put_go ]] && systems+=(etcd-grpc)
	[[ -n $put_c ]] && systems+=(etcd-http)
fi
e2e_log "warm-up ($WARM operations, 8 concurrent, each system)"
for sys in "${systems[@]}"; do run "$sys" "$WARM" 8 >/dev/null; done
for ((rep = 1; rep <= REPS; rep++)); do
	((REPS > 1)) && e2e_log "repetition $rep of $REPS"
	for conc in 1 64; do
		n=$N1
		[[ $conc == 64 ]] && n=$N64
		for sys in "${systems[@]}"; do
			record "$sys,$conc" "$(run "$sys" "$n" "$conc")"
			results "$sys" "$conc" "$rep"
		done
	done
done

# ---- stop everything (etcd members together: a leader alone waits) -------------
for i in 1 2 3; do kill -TERM "${E2E_PID[$i]}" 2>/dev/null; done
for p in "${etcd_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
for i in 1 2 3; do e2e_stop "$i"; done
for p in "${etcd_pids[@]}"; do e2e_reap "$p"; done

# ---- table ---------------------------------------------------------------------------------
echo
printf '%-28s %6s %10s %10s %10s\n' system clients ops/s p50_us p99_us
for key in sandfs,1 sandfs,64 etcd-grpc,1 etcd-grpc,64 etcd-http,1 etcd-http,64; do
	[[ -n ${R[$key]:-} ]] || continue
	line=${R[$key]}
	case ${key%,*} in
	sandfs) name="sandfs (in-node proposals)" ;;
	etcd-grpc) name="etcd put (Go client, gRPC)" ;;
	etcd-http) name="etcd put (C, JSON gateway)" ;;
	esac
	printf '%-28s %6s %10s %10s %10s\n' "$name" "${key#*,}" "$(field ops_per_s "$line")" \
		"$(field p50_us "$line")" "$(field p99_us "$line")"
done
echo
# Targets: 1-proposer p50 < 1 ms; 64-proposer ops/s >= etcd's (the best
# etcd client measured).
if [[ -n ${R[sandfs,1]:-} ]]; then
	p50=$(field p50_us "${R[sandfs,1]}")
	if python3 -c "import sys; sys.exit(0 if float('$p50') < 1000 else 1)"; then
		echo "target met:    sandfs 1-proposer p50 ${p50} us < 1000 us"
	else
		echo "target MISSED: sandfs 1-proposer p50 ${p50} us >= 1000 us"
	fi
fi
ref="" refname=""
for key in etcd-grpc,64 etcd-http,64; do
	[[ -n ${R[$key]:-} ]] || continue
	v=$(field ops_per_s "${R[$key]}")
	if [[ -z $ref ]] || ((v > ref)); then ref=$v refname=${key%,*}; fi
done
if [[ -n ${R[sandfs,64]:-} && -n $ref ]]; then
	ops=$(field ops_per_s "${R[sandfs,64]}")
	if ((ops >= ref)); then
		echo "target met:    sandfs 64-proposer $ops ops/s >= etcd ($refname) $ref ops/s"
	else
		echo "target MISSED: sandfs 64-proposer $ops ops/s < etcd ($refname) $ref ops/s"
	fi
fi
echo "runs: $E2E_PASSED complete, $E2E_FAILED with failures or missing"
[[ $E2E_FAILED -eq 0 ]]

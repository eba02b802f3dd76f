#!/usr/bin/env bash
# cluster_tls.sh — a 3-node cluster whose links run over TLS (tls+tcp):
#   - with certificates from the cluster CA the nodes elect a leader and
#     proposals through a follower commit on all three;
#   - a fourth process with a certificate from another CA, started as one of
#     the nodes (same id and port as a stopped member), gets nowhere: its
#     proposal fails while the real members carry on;
#   - half a TLS configuration is refused with a one-line reason.
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

pki=$E2E_TMP/pki
mkdir -p "$pki"
mkcert() { # DIR NAME: a CA in DIR and a certificate NAME signed by it
	local d=$1 n=$2
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$n-ca" \
		-keyout "$d/ca.key" -out "$d/ca.pem" >/dev/null 2>&1 &&
		openssl req -newkey rsa:2048 -nodes -subj "/CN=$n" \
			-keyout "$d/node.key" -out "$d/node.csr" >/dev/null 2>&1 &&
		openssl x509 -req -in "$d/node.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
			-CAcreateserial -days 2 -out "$d/node.pem" >/dev/null 2>&1
}
mkdir -p "$pki/good" "$pki/evil"
if ! mkcert "$pki/good" sandfs-node || ! mkcert "$pki/evil" intruder; then
	e2e_fail "openssl made the test certificates"
	e2e_summary
	exit 1
fi
chmod -R a+rX "$pki" # nodes may run under their own uids
good=(--tls-cert "$pki/good/node.pem" --tls-key "$pki/good/node.key" --tls-ca "$pki/good/ca.pem")

err=$("$SANDFS" serve --id 1 --peers 1=127.0.0.1:1 --data "$E2E_TMP/half" --tls-cert "$pki/good/node.pem" 2>&1)
rc=$?
lines=$(printf '%s\n' "$err" | grep -c .)
if [[ $rc -ne 0 && $lines -eq 1 && $err == *tls* ]]; then
	e2e_pass "half a TLS configuration is refused: \"$err\""
else
	e2e_fail "half a TLS configuration is refused (rc=$rc, $lines lines: $err)"
fi

IDS=(1 2 3)
e2e_cluster_init 3 --timeout-ms 3000 "${good[@]}"
for i in "${IDS[@]}"; do e2e_start "$i"; done
if ! e2e_wait_leader 20 "${IDS[@]}"; then
	e2e_fail "a leader is elected over TLS within 20 s ($E2E_WHY)"
	e2e_summary
	exit 1
fi
leader=$E2E_LEADER
e2e_pass "leader node $leader elected over TLS"
follower=1
[[ $leader == 1 ]] && follower=2
out=$("$SANDFS" bench-propose --data "$(e2e_data "$follower")" 300 4 64 2>&1)
if [[ $out == "ok count=300 failed=0 "* ]] && e2e_wait_converged 15 "${IDS[@]}"; then
	e2e_pass "300 proposals through follower $follower commit and all nodes agree ($E2E_STATE)"
else
	e2e_fail "300 proposals over TLS ($out; ${E2E_WHY:-})"
fi

# An intruder: stop a follower and start a process with the other CA's
# certificate in its place (same id, address and a copy of its data).
victim=3
[[ $leader == 3 ]] && victim=2
e2e_stop "$victim"
evil_data=$E2E_TMP/evil
cp -a "$(e2e_data "$victim")" "$evil_data"
rm -f "$evil_data"/LOCK.sandfs "$evil_data"/admin.sock
e2e_bg "$SANDFS" serve --id "$victim" --peers "$E2E_PEERS" --data "$evil_data" --timeout-ms 2000 \
	--tls-cert "$pki/evil/node.pem" --tls-key "$pki/evil/node.key" --tls-ca "$pki/evil/ca.pem"
evil_pid=$E2E_LAST_BG
sleep 1.5
out=$(timeout 20 "$SANDFS" propose --data "$evil_data" intruder 2>&1)
if [[ $out == err* ]] && kill -0 "$evil_pid" 2>/dev/null; then
	e2e_pass "a node with a certificate from another CA cannot commit (\"$out\")"
else
	e2e_fail "a node with a certificate from another CA committed: $out"
fi
out=$(timeout 15 "$SANDFS" propose --data "$(e2e_data "$leader")" members-go-on 2>&1)
if [[ $out == ok* ]]; then
	e2e_pass "the real members still commit beside the intruder ($out)"
else
	e2e_fail "the real members still commit beside the intruder ($out)"
fi
kill -TERM "$evil_pid" 2>/dev/null
wait "$evil_pid" 2>/dev/null
e2e_summary

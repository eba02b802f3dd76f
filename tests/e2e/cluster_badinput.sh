#!/usr/bin/env bash
# cluster_badinput.sh — `sandfs serve` refuses bad input: a bad flag, a
# missing --peers, an id that is not in --peers, an unusable data
# directory, a listen address already in use and a second process on the
# same data directory each make it exit non-zero at once with a one-line
# reason on stderr.
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_cluster_init 3
peers=$E2E_PEERS

# expect_refusal NAME REGEX [run-as-uid|-] ARGS... : `sandfs ARGS...` exits
# non-zero within 10 s with exactly one non-empty stderr line matching
# REGEX (case-insensitive).
expect_refusal() {
	local name=$1 re=$2 uid=$3 pre=() rc lines first
	shift 3
	[[ $uid == - ]] || pre=(setpriv --reuid="$uid" --regid="$uid" --clear-groups --)
	timeout 10 "${pre[@]}" "$SANDFS" "$@" >"$E2E_TMP/out" 2>"$E2E_TMP/err"
	rc=$?
	lines=$(grep -c . "$E2E_TMP/err")
	first=$(grep -m1 . "$E2E_TMP/err")
	if [[ $rc == 124 ]]; then
		e2e_fail "$name: still running after 10 s"
	elif [[ $rc == 0 ]]; then
		e2e_fail "$name: exit status 0"
	elif [[ $lines != 1 ]]; then
		e2e_fail "$name: exit $rc but $lines stderr lines, want one:"
		sed 's/^/    | /' "$E2E_TMP/err" | head -n 12
	elif ! grep -Eqi -- "$re" <<<"$first"; then
		e2e_fail "$name: exit $rc, reason does not match /$re/: $first"
	else
		e2e_pass "$name: exit $rc, \"$first\""
	fi
}

d=$(e2e_data 1)
expect_refusal "unknown flag" "unrecognized|unknown|invalid" - \
	serve --id 1 --peers "$peers" --data "$d" --no-such-flag
expect_refusal "missing --peers" "peers" - \
	serve --id 1 --data "$d"
expect_refusal "malformed --peers" "peer" - \
	serve --id 1 --peers "1=127.0.0.1:1,bogus" --data "$d"
expect_refusal "--id not in --peers" "not in|--id" - \
	serve --id 7 --peers "$peers" --data "$d"

# A data directory we may not use: a path below a regular file, and (as a
# non-root uid, since root ignores modes) a directory without permissions.
touch "$E2E_TMP/plainfile"
expect_refusal "data directory below a regular file" "not a directory|cannot|data" - \
	serve --id 1 --peers "$peers" --data "$E2E_TMP/plainfile/sub"
mkdir -m 000 "$E2E_TMP/locked"
if [[ $E2E_SETUID == 1 ]]; then
	expect_refusal "unreadable data directory" "permission|denied|cannot" "$((E2E_UID_BASE + 9))" \
		serve --id 1 --peers "$peers" --data "$E2E_TMP/locked"
elif [[ $E2E_ROOT != 1 ]]; then
	expect_refusal "unreadable data directory" "permission|denied|cannot" - \
		serve --id 1 --peers "$peers" --data "$E2E_TMP/locked"
else
	echo "SKIP: unreadable data directory (root ignores modes; no other uid can run $SANDFS)"
fi

# Listen address in use: something else listens on node 1's port.
host=${E2E_ADDR[1]%:*} port=${E2E_ADDR[1]##*:}
e2e_bg python3 -c 'import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(); print("ready", flush=True); time.sleep(60)' \
	"$host" "$port" >"$E2E_TMP/holder.out"
holder=$E2E_LAST_BG
for _ in $(seq 50); do grep -q ready "$E2E_TMP/holder.out" && break; sleep 0.1; done
expect_refusal "listen address in use" "in use|listen|address" - \
	serve --id 1 --peers "$peers" --data "$E2E_TMP/fresh"
e2e_reap "$holder"

# A second process on the data directory of a running node.
e2e_start 1
if e2e_wait_admin 1 10; then
	uid=-
	[[ $E2E_SETUID == 1 ]] && uid=$((E2E_UID_BASE + 1))
	expect_refusal "second process on the same data directory" "in use|lock|busy" "$uid" \
		serve --id 1 --peers "$peers" --data "$(e2e_data 1)"
	e2e_check "the first node still runs and answers after the refused second start" \
		e2e_wait_admin 1 5
else
	e2e_fail "node 1 starts (for the second-process check)"
fi
e2e_stop 1
e2e_check "node 1 exits 0 on SIGTERM" test "$E2E_REAP_RC:$E2E_REAP_KILLED" = 0:0

e2e_summary

#!/usr/bin/env bash
# ops_cli.sh — the operator's command line on a live local cluster:
#   1. every subcommand `sandfs --help` lists answers --help (exit 0, its
#      usage on stdout, the same text as `sandfs help CMD`) and refuses an
#      unknown flag with exit 2; usage errors exit 2, a node that does not
#      answer exits 1; `sandfs version` and --version;
#   2. a 3-node cluster started from a configuration file (`sandfs serve
#      --config F`, node 1 without --id: it finds itself by its address,
#      data and log paths from the file with %i); log lines carry an ISO
#      time, the node and the level; status through the file alone;
#   3. `sandfs member list` (text and --json, parsed and checked against
#      status), a learner shown as such, its lag;
#   4. `sandfs leader transfer ID` through a follower, without ID, to the
#      leader itself, to a non-voter, to a stopped node; without ID while
#      a follower is down it picks the live one; status shows each new
#      leader on every node;
#   5. SIGHUP: the log file moved away, SIGHUP, a new file with the new
#      lines; without a log file SIGHUP stops the node (exit 0);
#   6. bad configuration files: exit 2 with FILE:LINE and what is wrong;
#      a named file that does not exist; the example file parses; the
#      manual page is installed, renders cleanly and names every command;
#   7. mount.sandfs with only config= (a one-node cluster): mounted, files
#      work, the log from the file reopens on SIGHUP; `sandfs mount` with
#      the mount point from the file (SANDFS_CONFIG).
# Prints PASS/FAIL per check and "N passed, M failed"; exits non-zero on
# any failure. Needs SANDFS_BIN (the directory holding `sandfs`), FUSE.
set -uo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)

# run ARGS...: `sandfs ARGS...` -> RC, OUT, ERR.
run() {
	timeout 60 "$SANDFS" "$@" >"$E2E_TMP/run.out" 2>"$E2E_TMP/run.err"
	RC=$?
	OUT=$(cat "$E2E_TMP/run.out")
	ERR=$(cat "$E2E_TMP/run.err")
}

# expect NAME RC REGEX ARGS...: exit status RC and REGEX found in stdout
# (RC 0) or stderr (otherwise).
expect() {
	local name=$1 want=$2 re=$3 text
	shift 3
	run "$@"
	text=$OUT
	[[ $want != 0 ]] && text=$ERR
	if [[ $RC == "$want" ]] && grep -Eq -- "$re" <<<"$text"; then
		e2e_pass "$name (exit $RC)"
	else
		e2e_fail "$name: exit $RC (want $want), /$re/ not found"
		echo "    stdout: ${OUT:0:400}"
		echo "    stderr: ${ERR:0:400}"
	fi
}

# ---- 1. help, version, exit codes -----------------------------------------

run --help
cmds=$(awk '/^Commands:/ { f = 1; next } f && /^  [a-z]/ { print $1 } f && /^$/ { exit }' <<<"$OUT")
e2e_check "sandfs --help exits 0 and lists the commands" \
	test "$RC" = 0 -a -n "$cmds"
for c in serve mount status member leader propose bench-propose version help; do
	grep -qx "$c" <<<"$cmds" || e2e_fail "sandfs --help does not list '$c'"
done
for c in $cmds; do
	run "$c" --help
	first=$(head -n 1 <<<"$OUT")
	if [[ $RC == 0 && -z $ERR && $first =~ ^usage:\ sandfs\ ($c|COMMAND) ]]; then
		e2e_pass "sandfs $c --help: exit 0, \"$first\""
	else
		e2e_fail "sandfs $c --help: exit $RC, first line '$first', stderr '$ERR'"
	fi
	if [[ $c != help ]]; then
		help_out=$OUT
		run help "$c"
		e2e_check "sandfs help $c prints the same text" \
			test "$RC:$OUT" = "0:$help_out"
	fi
	run "$c" --no-such-flag
	if [[ $RC == 2 && -n $ERR && -z $OUT ]]; then
		e2e_pass "sandfs $c --no-such-flag: exit 2, \"$(head -n 1 <<<"$ERR")\""
	else
		e2e_fail "sandfs $c --no-such-flag: exit $RC (want 2), stdout '$OUT', stderr '$ERR'"
	fi
done
expect "sandfs version" 0 '^sandfs [0-9]+\.[0-9]+\.[0-9]+$' version
expect "sandfs --version" 0 '^sandfs [0-9]+\.[0-9]+\.[0-9]+$' --version
expect "sandfs alone is a usage error" 2 'usage: sandfs' 
expect "an unknown command is a usage error" 2 "unknown command 'frobnicate'" frobnicate
expect "status without --data (and no file) is a usage error" 2 -- '--data is required' status
expect "member with an unknown verb" 2 'unknown verb' member frob --data /x
expect "member add without an address" 2 'wrong number' member add --data /x 4
expect "leader without a verb" 2 'what to do' leader --data /x
expect "leader transfer with a bad id" 2 "bad node id 'x'" leader transfer --data /x x
expect "propose without text" 2 'want 1 argument' propose --data /x
expect "bench-propose with a non-number" 2 "'many' is not a number" bench-propose --data /x 1 many 3
expect "serve without --peers" 2 'missing.*--peers' serve --id 1 --data /x
expect "mount without a mount point" 2 'MOUNTPOINT' mount --id 1 --peers 1=127.0.0.1:1 --data /x
expect "status through a directory no node serves" 1 'no node answers' status --data "$E2E_TMP/nobody"
expect "member list through a directory no node serves" 1 'no node answers' member list --data "$E2E_TMP/nobody"
expect "leader transfer through a directory no node serves" 1 'no node answers' leader transfer --data "$E2E_TMP/nobody"

# The manual page: installed by `cmake --install`, renders without a
# warning, and describes every command `sandfs --help` lists.
BUILD=$(cd "$E2E_BIN/.." && pwd)
if [[ -f $BUILD/CMakeCache.txt ]]; then
	DESTDIR=$E2E_TMP/inst cmake --install "$BUILD" >"$E2E_TMP/install.log" 2>&1
	man1=$(find "$E2E_TMP/inst" -path '*/share/man/man1/sandfs.1' | head -n 1)
	e2e_check "cmake --install puts the manual page in share/man/man1" test -n "$man1"
	e2e_check "and the example configuration in share/doc/sandfs" \
		test -n "$(find "$E2E_TMP/inst" -path '*/share/doc/sandfs/sandfs.conf.example')"
else
	man1=$REPO/mount-helpers/sandfs.1
	echo "note: $BUILD is not a CMake build directory; checking $man1 in the tree"
fi
warn=$(groff -man -Tutf8 -ww -z "${man1:-/nonexistent}" 2>&1)
e2e_check "the manual page renders without warnings${warn:+: $warn}" test -z "$warn" -a -n "$man1"
page=$(groff -man -Tascii -P-cbou -rLL=100n "${man1:-/nonexistent}" 2>/dev/null)
missing=""
for c in $cmds; do grep -Eq "^ +$c( |$)" <<<"$page" || missing+=" $c"; done
e2e_check "the manual page describes every command${missing:+ (missing:$missing)}" test -z "$missing"
expect "the example configuration parses (no node there: exit 1, not 2)" 1 'no node answers on /var/lib/sandfs/admin.sock' \
	status --config "$REPO/mount-helpers/sandfs.conf.example"

# ---- 2. a cluster from a configuration file -------------------------------

e2e_cluster_init 3
CONF=$E2E_TMP/cluster.conf
cat >"$CONF" <<EOF
# the e2e cluster: every node reads this file
member = 1=${E2E_ADDR[1]}
member = 2=${E2E_ADDR[2]}
member = 3=${E2E_ADDR[3]}   # three voters
data = n%i
log = n%i/serve.log
timeout-ms = 3000
EOF
chmod 644 "$CONF"

# start_cfg I [FLAGS...]: `sandfs serve --config $CONF FLAGS...` as node I.
start_cfg() {
	local i=$1 pre=()
	shift
	if [[ $E2E_SETUID == 1 ]]; then
		pre=(setpriv --reuid="$((E2E_UID_BASE + i))" --regid="$((E2E_UID_BASE + i))" --clear-groups --)
	fi
	"${pre[@]}" "$SANDFS" serve --config "$CONF" "$@" >>"$E2E_TMP/n$i.log" 2>&1 &
	E2E_PID[$i]=$!
}
start_cfg 1 # no --id: 127.0.0.1 is the only member address of this machine
start_cfg 2 --id 2
start_cfg 3 --id 3
if e2e_wait_leader 20 1 2 3; then
	e2e_pass "3 nodes started from $CONF elect leader $E2E_LEADER"
else
	e2e_fail "3 nodes started from $CONF elect a leader: $E2E_WHY"
	e2e_summary
	exit 1
fi
e2e_check "node 1 found its id by its address and logs to the file's n1/serve.log" \
	grep -q ' node 1 INFO .*serving; data in .*/n1, configuration from ' "$E2E_TMP/n1/serve.log"
bad=$(cat "$E2E_TMP"/n[123]/serve.log | grep -Evc '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}[+-][0-9]{2}:[0-9]{2} node [123] (ERROR|WARN|INFO|DEBUG) [a-z_]+\.c:[0-9]+: ')
e2e_check "every log line: ISO time with offset, node, level, source ($bad lines do not)" test "$bad" = 0
e2e_check "Raft events in the log name the term" \
	grep -Eq 'raft (leader|role|election): term [0-9]+' "$E2E_TMP/n2/serve.log"
expect "status through the file alone (no --data, no --id)" 0 "leader $E2E_LEADER " status --config "$CONF"
expect "status --id 3 through the file's data = n%i" 0 '"leader":' status --config "$CONF" --id 3 --json

# ---- 3. member list ---------------------------------------------------------

for k in 1 2 3 4 5; do timeout 10 "$SANDFS" propose --data "$(e2e_data 1)" "e$k" >/dev/null; done

# check_list VIA: member list --json through node VIA against status.
LIST_PY='
import json, sys
s = json.load(open(sys.argv[1]))
via, leader = int(sys.argv[2]), int(sys.argv[3])
m = {x["id"]: x for x in s["members"]}
assert sorted(m) == [1, 2, 3], "ids %s" % sorted(m)
assert all(x["role"] == "voter" for x in m.values()), "roles"
leaders = [i for i, x in m.items() if x["leader"]]
assert leaders == [leader] and s["leader"] == leader, "leader %s/%s, want %d" % (leaders, s["leader"], leader)
assert [i for i, x in m.items() if x["self"]] == [via] and s["node"] == via, "self"
last = s["leader_last_index"]
for x in m.values():
    assert isinstance(x["match"], int) and isinstance(x["lag"], int), "match/lag not numbers"
    assert x["lag"] == last - x["match"] and x["lag"] >= 0, "lag %d vs %d-%d" % (x["lag"], last, x["match"])
lag = max(x["lag"] for x in m.values())
print("caught-up" if lag == 0 else "lag=%d" % lag)
'
for via in 1 2; do
	ans=""
	for _ in $(seq 50); do
		run member list --json --data "$(e2e_data "$via")"
		echo "$OUT" >"$E2E_TMP/list.json"
		ans=$(python3 -c "$LIST_PY" "$E2E_TMP/list.json" "$via" "$E2E_LEADER" 2>&1 | tail -n 1)
		[[ $ans == caught-up ]] && break
		sleep 0.1
	done
	e2e_check "member list --json through node $via: 3 voters, leader $E2E_LEADER, match and lag (${ans})" \
		test "$ans" = caught-up
done
run member list --data "$(e2e_data 3)"
rows=$(grep -Ec '^[123] +127\.0\.0\.[123]:[0-9]+ +voter +[0-9]+ +0' <<<"$OUT")
lrow=$(grep -E "^$E2E_LEADER " <<<"$OUT")
e2e_check "member list (text): 3 voter rows, the leader's marked" \
	test "$RC:$rows" = "0:3" -a "${lrow%leader*}" != "$lrow"
p4=$(e2e_free_port 127.0.0.4)
expect "member add 4 (never started)" 0 'added as a learner' member add --data "$(e2e_data 2)" 4 "127.0.0.4:$p4"
run member list --json --data "$(e2e_data 2)"
ans=$(python3 -c '
import json, sys
s = json.loads(sys.argv[1]); m = {x["id"]: x for x in s["members"]}
x = m.get(4, {})
print("ok" if x.get("role") == "learner" and x.get("match") == 0 and x.get("lag") == s["leader_last_index"] > 0 else "bad %s" % x)' "$OUT" 2>&1)
e2e_check "member list shows node 4 as a learner, match 0, lagging ($ans)" test "$ans" = ok
expect "leader transfer to a learner is refused" 1 'node 4 is not a voter' leader transfer --data "$(e2e_data 1)" 4
expect "member remove 4" 0 'node 4 removed' member remove --data "$(e2e_data 1)" 4

# ---- 4. leader transfer -----------------------------------------------------

others() { local i; for i in 1 2 3; do [[ $i == "$1" || $i == "${2:-}" ]] || echo "$i"; done; }
L=$E2E_LEADER
read -r T V < <(others "$L" | tr '\n' ' ')
expect "leader transfer $T through node $V (a follower)" 0 "^node $T is the leader \(term [0-9]+\)$" \
	leader transfer --config "$CONF" --id "$V" "$T"
e2e_wait_leader 10 1 2 3
e2e_check "status on every node shows node $T as the leader" test "$E2E_LEADER" = "$T"
expect "leader transfer without ID through the leader" 0 '^node [0-9] is the leader' \
	leader transfer --data "$(e2e_data "$T")"
new=$(grep -Eo '^node [0-9]' <<<"$OUT" | cut -c6)
e2e_wait_leader 10 1 2 3
e2e_check "another voter took over ($new), as status on every node shows" \
	test "$E2E_LEADER" = "$new" -a "$new" != "$T"
L=$E2E_LEADER
expect "leader transfer to the leader itself" 0 "node $L is the leader already" \
	leader transfer --data "$(e2e_data 1)" "$L"
expect "leader transfer to an unknown node" 1 'node 9 is not a voter' leader transfer --data "$(e2e_data 1)" 9
expect "proposals commit after the transfers" 0 '^ok ' propose --data "$(e2e_data 2)" after-transfer

# A follower down: without ID the transfer goes to the live one (the
# stopped one has the lower id, which a tie on the match index favours).
read -r F R < <(others "$L" | tr '\n' ' ')
e2e_stop "$F"
sleep 1
expect "leader transfer without ID while node $F is down" 0 "^node $R is the leader" \
	leader transfer --data "$(e2e_data "$L")"
expect "leader transfer to the stopped node $F fails after the timeout" 1 'no new leader' \
	leader transfer --data "$(e2e_data "$R")" "$F"
e2e_check "nodes $L and $R still have a leader" e2e_wait_leader 10 "$L" "$R"
start_cfg "$F" --id "$F"
e2e_check "node $F back: one leader for all three" e2e_wait_leader 20 1 2 3

# ---- 5. SIGHUP ----------------------------------------------------------------

log2=$E2E_TMP/n2/serve.log
mv "$log2" "$log2.1"
kill -HUP "${E2E_PID[2]}"
for _ in $(seq 50); do grep -qs 'SIGHUP: log file reopened' "$log2" && break; sleep 0.1; done
e2e_check "SIGHUP: node 2 opened a new $log2 and says so" grep -q 'SIGHUP: log file reopened' "$log2"
e2e_wait_leader 10 1 2 3
X=$(others "$E2E_LEADER" | head -n 1)
run leader transfer --data "$(e2e_data 1)" "$X"
term=$(grep -Eo 'term [0-9]+' <<<"$OUT" | cut -d' ' -f2)
for _ in $(seq 50); do grep -qs "leader is now $X (term $term)" "$log2" && break; sleep 0.1; done
e2e_check "after SIGHUP new lines go to the new file (leader $X, term $term)" \
	grep -q "leader is now $X (term $term)" "$log2"
e2e_check "and not to the moved one" \
	test "$(grep -c "leader is now $X (term $term)\|SIGHUP" "$log2.1")" = 0
e2e_check "node 2 still runs and answers after SIGHUP" e2e_wait_admin 2 5

solo=$E2E_TMP/solo
mkdir -p "$solo"
ps=$(e2e_free_port 127.0.0.9)
"$SANDFS" serve --id 1 --peers "1=127.0.0.9:$ps" --data "$solo" >"$E2E_TMP/solo.log" 2>&1 &
solo_pid=$!
E2E_BG_PIDS+=("$solo_pid")
for _ in $(seq 50); do timeout 5 "$SANDFS" status --data "$solo" >/dev/null 2>&1 && break; sleep 0.1; done
kill -HUP "$solo_pid"
for _ in $(seq 50); do kill -0 "$solo_pid" 2>/dev/null || break; sleep 0.1; done
wait "$solo_pid"
solo_rc=$?
e2e_check "SIGHUP stops a node that logs to stderr, exit $solo_rc" test "$solo_rc" = 0

# ---- 6. bad configuration files ----------------------------------------------

printf 'member = 1=127.0.0.1:7000\n\nsecret_flie = /etc/sandfs/secret\n' >"$E2E_TMP/typo.conf"
expect "serve with a misspelt key: FILE:LINE" 2 "typo\.conf:3: unknown key 'secret-flie'" \
	serve --config "$E2E_TMP/typo.conf" --id 1
[[ $(wc -l <"$E2E_TMP/run.err") == 1 ]] || e2e_fail "the error is not one line: $ERR"
printf '# members\nmember = 1=127.0.0.1:7000\nmember = 2=127.0.0.2\n' >"$E2E_TMP/addr.conf"
expect "status with a bad member address: FILE:LINE" 2 'addr\.conf:3: member 2: bad address' \
	status --config "$E2E_TMP/addr.conf"
printf 'data = /a\ndata = /b\n' >"$E2E_TMP/twice.conf"
expect "a key given twice names both lines" 2 'twice\.conf:2: data given twice \(first on line 1\)' \
	member list --config "$E2E_TMP/twice.conf"
expect "--config naming a missing file" 2 "cannot read $E2E_TMP/absent.conf: No such file" \
	status --config "$E2E_TMP/absent.conf"
SANDFS_CONFIG=$E2E_TMP/absent.conf run status
e2e_check "SANDFS_CONFIG naming a missing file: exit $RC, says so" \
	grep -q 'absent.conf: No such file.*SANDFS_CONFIG' <<<"$ERR"
printf 'member = 1=10.255.0.1:7000\nmember = 2=10.255.0.2:7000\n' >"$E2E_TMP/foreign.conf"
expect "no member has an address of this machine" 2 'no member.s address is one of this machine' \
	serve --config "$E2E_TMP/foreign.conf"

# ---- 7. mount.sandfs with a configuration file --------------------------------

MNT=$E2E_TMP/mnt
MDATA=$E2E_TMP/mdata
mkdir -p "$MNT" "$MDATA"
pm=$(e2e_free_port 127.0.0.1)
MCONF=$E2E_TMP/mount.conf
cat >"$MCONF" <<EOF
member = 1=127.0.0.1:$pm
data = mdata
log = mdata/node.log
mountpoint = mnt
mount-options = entry_timeout=0
EOF
mount_pid=""
ops_umount() {
	if grep -q " $MNT " /proc/mounts; then
		fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -u -z "$MNT" 2>/dev/null
	fi
	if [[ -n $mount_pid ]]; then
		for _ in $(seq 100); do kill -0 "$mount_pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$mount_pid" 2>/dev/null; then
			echo "note: mount daemon $mount_pid still runs after the unmount; SIGKILL" >&2
			kill -KILL "$mount_pid"
			sleep 0.2
		fi
		mount_pid=""
	fi
}
trap 'rc=$?; ops_umount; (exit $rc); e2e_cleanup' EXIT
daemon_pid() { tr -dc '0-9' <"$MDATA/LOCK.sandfs" 2>/dev/null | head -c 12; }

if [[ -e /dev/fuse ]] && command -v fusermount3 >/dev/null; then
	PATH="$(dirname "$SANDFS"):$PATH" timeout 60 bash "$REPO/mount-helpers/mount.sandfs" \
		sandfs "$MNT" -o "config=$MCONF,_netdev" >"$E2E_TMP/m.out" 2>&1
	mrc=$?
	mount_pid=$(daemon_pid)
	e2e_check "mount.sandfs sandfs MNT -o config=FILE: exit $mrc, mounted" \
		grep -q " $MNT fuse.sandfs " /proc/mounts
	echo hello >"$MNT/greeting" 2>/dev/null
	e2e_check "a file written and read back through it" test "$(cat "$MNT/greeting" 2>/dev/null)" = hello
	e2e_check "the node logs to the file's log = mdata/node.log, as node 1" \
		grep -q ' node 1 INFO .*mounted at ' "$MDATA/node.log"
	mv "$MDATA/node.log" "$MDATA/node.log.1"
	[[ -n $mount_pid ]] && kill -HUP "$mount_pid"
	for _ in $(seq 50); do grep -qs 'SIGHUP: log file reopened' "$MDATA/node.log" && break; sleep 0.1; done
	e2e_check "SIGHUP on the mount daemon: a new log file" grep -q 'SIGHUP: log file reopened' "$MDATA/node.log"
	e2e_check "the mount still works after SIGHUP" test "$(cat "$MNT/greeting" 2>/dev/null)" = hello
	was=$mount_pid
	ops_umount
	e2e_check "unmounted, the daemon ($was) exited" \
		test -z "$(grep " $MNT " /proc/mounts)" -a -n "$was" -a ! -d "/proc/$was"

	SANDFS_CONFIG=$MCONF run mount --id 1
	mount_pid=$(daemon_pid)
	e2e_check "sandfs mount with SANDFS_CONFIG: mount point from the file (exit $RC)" \
		grep -q " $MNT fuse.sandfs " /proc/mounts
	e2e_check "the file is still there" test "$(cat "$MNT/greeting" 2>/dev/null)" = hello
	ops_umount

	PATH="$(dirname "$SANDFS"):$PATH" timeout 60 bash "$REPO/mount-helpers/mount.sandfs" \
		sandfs "$MNT" -o "config=$E2E_TMP/typo.conf" >/dev/null 2>"$E2E_TMP/m.err"
	mrc=$?
	e2e_check "mount.sandfs with a bad file: exit $mrc (2), FILE:LINE" \
		grep -q 'typo.conf:3: unknown key' "$E2E_TMP/m.err"
	[[ $mrc == 2 ]] || e2e_fail "mount.sandfs with a bad file exits $mrc, not 2"
	PATH="$(dirname "$SANDFS"):$PATH" bash "$REPO/mount-helpers/mount.sandfs" >/dev/null 2>&1
	mrc=$?
	e2e_check "mount.sandfs without arguments: exit 2" test "$mrc" = 2
else
	echo "SKIP: mount.sandfs checks (no /dev/fuse or fusermount3)"
fi

e2e_summary

#!/usr/bin/env python3
"""history_check.py - checks a history recorded by fault_workload.py against
the guarantees in README's "Consistency guarantees".

    history_check.py --history H --snapshots DIR [--logs 1=LOG,2=LOG,...]
                     [--faults F]

DIR holds snap0.json .. snapN.json: the state every mount showed before the
first round and after each round (taken with the clients paused, the faults
healed and the nodes converged). Round k's operations are those between
snap<k-1> and snap<k>.

What is checked, per round:

1. Metadata changes are linearizable (per group: the groups share nothing,
   so P-compositionality holds). A linearization must exist of the round's
   successful mutations (create, mkdir, rmdir, unlink, rename), any subset
   of its ambiguous ones (each at most once, after it started), and its
   observations, from the state of the previous snapshot to exactly the
   state of this one (so every acknowledged change is there and none is
   applied twice). The model is the group's tree: path -> (type, inode).
   A mutation that fails with a definite errno (EEXIST, ENOTEMPTY, ...)
   is an observation: the error must fit the state.
   Observations follow README's read rules:
   - "reads are local": a stat, readdir (positive) or a failure that needs
     a positive lookup may show any state not older than the changes made
     through the same mount (same life) before it started, and not newer
     than the changes that started after it ended;
   - "a lookup that does not find a name first asks the leader": an
     ENOENT for a name in the group's directory is linearizable (within
     its own start and end), except while the node's log says its read
     barrier was unavailable (no leader); deeper names are local reads
     (the kernel may resolve their parent from its cache);
   - a readdir of the group's directory (opendir asks the leader): each
     name, listed or not, is linearizable in the same way on its own (a
     listing is not a snapshot: POSIX leaves open whether a name added or
     removed during it is listed).
2. File contents (per inode, P-compositional): write+fsync is a write of
   the register, read after open is a read of it. Close-to-open: a read
   must be linearizable (it sees every write closed before it opened),
   except while its node had no leader; then it must show a value some
   write started before the read ended (or the initial one). The final
   snapshot reads every file.
3. Locks (per inode, all rounds): two OFD write locks are never both held
   at once (lock returned before the other's unlock started, both ways);
   a refusal (EAGAIN) needs a holder that may have held it meanwhile.
4. All mounts showed the same snapshot (the same tree, inodes and
   contents).

The search is Wing & Gong's, with Lowe's memoization (a set of
(linearized-ops, state) already explored): depth-first, each step
linearizes one operation whose predecessors (in the order the rules give)
are linearized and whose result fits the state. Observations do not
change the state, so one that fits the current state is linearized at
once (never worse than later). Prints the number of operations, the
faults and the violations; exit status 1 if there is any violation.
"""
import argparse
import bisect
import errno
import json
import os
import re
import sys
import time

E = errno.errorcode
INF = float("inf")
SEARCH_BUDGET = 3_000_000


# ---- the namespace model ----------------------------------------------------

def parent(p):
    return p.rsplit("/", 1)[0] if "/" in p else ""


def under(p, q):
    """True when p is q or inside q."""
    return p == q or p.startswith(q + "/")


class NS:
    """A state: frozenset of (path, type, ino); ino None = unknown."""

    @staticmethod
    def make(d):
        return frozenset((p, t, i) for p, (t, i) in d.items())

    @staticmethod
    def todict(s):
        return {p: (t, i) for p, t, i in s}


def resolve_errs(d, p):
    """Errnos a lookup of p's parent chain gives (set), or empty when the
    parent directory exists."""
    par = parent(p)
    while par:
        if par not in d:
            # the first missing component, or a file above it
            q = parent(par)
            while q:
                if q in d and d[q][0] == "f":
                    return {"ENOTDIR"}
                q = parent(q)
            return {"ENOENT"}
        if d[par][0] == "f":
            return {"ENOTDIR"}
        par = parent(par)
    return set()


def has_children(d, p):
    return any(k != p and k.startswith(p + "/") for k in d)


def ns_errs(d, op, p, q=None):
    """The errnos op could fail with in state d (empty set: it succeeds).
    Where several checks fail, every one's errno is accepted (the kernel
    and the node check in an order this model does not pin down)."""
    r = set(resolve_errs(d, p))
    if op == "rename":
        r |= resolve_errs(d, q)
    if r:
        return r
    if op in ("create", "mkdir"):
        return {"EEXIST"} if p in d else set()
    if op == "rmdir":
        if p not in d:
            return {"ENOENT"}
        if d[p][0] != "d":
            return {"ENOTDIR"}
        return {"ENOTEMPTY", "EEXIST"} if has_children(d, p) else set()
    if op == "unlink":
        if p not in d:
            return {"ENOENT"}
        return {"EISDIR"} if d[p][0] == "d" else set()
    if op == "rename":
        if p not in d:
            return {"ENOENT"}
        if under(q, p):
            r.add("EINVAL")
        if under(p, q):  # the target is an ancestor of the source
            r |= {"ENOTEMPTY", "EISDIR", "EEXIST"}
        if q in d:
            ts, tq = d[p][0], d[q][0]
            if ts == "f" and tq == "d":
                r.add("EISDIR")
            if ts == "d" and tq == "f":
                r.add("ENOTDIR")
            if tq == "d" and has_children(d, q):
                r |= {"ENOTEMPTY", "EEXIST"}
        return r
    raise ValueError(op)


def ns_apply(s, op, p, q=None, ino=None):
    """State after op succeeds in state s, or None when it cannot."""
    d = NS.todict(s)
    if ns_errs(d, op, p, q):
        return None
    if op == "create":
        d[p] = ("f", ino)
    elif op == "mkdir":
        d[p] = ("d", None)
    elif op in ("rmdir", "unlink"):
        del d[p]
    elif op == "rename":
        if q in d:
            del d[q]
        moved = {}
        for k in list(d):
            if under(k, p):
                moved[q + k[len(p):]] = d.pop(k)
        d.update(moved)
    return NS.make(d)


def rename_noop(s, p, q):
    """The kernel answers rename(p, q) with success, doing nothing, when
    both names lead to the same inode (POSIX: a no-op). It resolves names
    from its cache (a local read): p may still lead to the file another
    node moved to q, until this node's invalidation of p ran. So a
    successful rename may also be that no-op: p gone, q a file, the state
    unchanged (and never when p is still there)."""
    d = NS.todict(s)
    return s if p not in d and q in d and d[q][0] == "f" else None


def ino_fits(model, seen):
    return model is None or model == seen


def ns_observe(s, rec):
    """Does the observation rec fit state s?"""
    d = NS.todict(s)
    op, res, p = rec["op"], rec["res"], rec.get("p", "")
    if op == "readdir":
        # one name of a listing (see ns_ops_for): there with its type, or
        # not there
        n, t = rec["_name"], rec["val"].get(rec["_name"])
        if t is None:
            return n not in d
        return n in d and d[n][0] == t
    opened = op in ("read", "write", "lock") and rec.get("phase", "call") != "call"
    if res == "fail" and not opened:
        err = rec["err"]
        if op in ("stat", "read", "write", "lock"):
            r = resolve_errs(d, p)
            if r:
                return err in r
            if err == "ENOENT":
                return p not in d
            if err == "EISDIR":
                return p in d and d[p][0] == "d"
            return False
        return err in ns_errs(d, op, p, rec.get("q"))
    # a successful lookup: stat's value, or the file a read/write/lock opened
    if op == "stat":
        t, ino = rec["val"]
    else:
        t, ino = "f", rec.get("ino", rec.get("val", [None])[0] if op == "read" else None)
    if p not in d or d[p][0] != t:
        return False
    return ino is None or ino_fits(d[p][1], ino)


def snap_state(group):
    """A snapshot group (path -> [type, ino, content]) as a model state."""
    return NS.make({p: (v[0], v[1]) for p, v in group.items()})


def ns_equal(model, real):
    """The model state equals the snapshot's (unknown inodes match any)."""
    dm, dr = NS.todict(model), NS.todict(real)
    if set(dm) != set(dr):
        return False
    return all(dm[p][0] == dr[p][0] and ino_fits(dm[p][1], dr[p][1]) for p in dm)


# ---- the search ---------------------------------------------------------------

class Op:
    __slots__ = ("i", "kind", "s", "e", "rec", "pred", "step", "fits")

    def __init__(self, kind, s, e, rec, step=None, fits=None):
        self.kind = kind  # "must" | "opt" (a change) or "obs" | "final"
        self.s, self.e, self.rec = s, e, rec
        self.step, self.fits = step, fits
        self.pred = 0


class Inconclusive(Exception):
    pass


def build_preds(ops):
    """Sets each op's pred mask: the ops that must be linearized before it.
    - a change (must/opt) comes after every required op that ended before
      it started (real time; an observation cannot see a later change);
    - a linearizable observation after every successful change that ended
      before it started;
    - a local observation after the successful changes made through its
      own mount (same life) that ended before it started;
    - the final snapshot after everything required.
    Ambiguous changes are nobody's predecessor (they may never happen)."""
    def prefixes(idx):
        idx = sorted(idx, key=lambda i: ops[i].e)
        ends, masks, m = [], [0], 0
        for i in idx:
            m |= 1 << i
            ends.append(ops[i].e)
            masks.append(m)
        return ends, masks

    def before(pre, t):
        ends, masks = pre
        return masks[bisect.bisect_left(ends, t)]  # ops with e < t

    req = [o.i for o in ops if o.kind in ("must", "obs")]
    must = [o.i for o in ops if o.kind == "must"]
    p_req, p_must = prefixes(req), prefixes(must)
    p_local = {}
    for o in ops:
        if o.kind == "must":
            p_local.setdefault((o.rec["m"], o.rec["gen"]), []).append(o.i)
    p_local = {k: prefixes(v) for k, v in p_local.items()}
    allreq = 0
    for i in req:
        allreq |= 1 << i
    for o in ops:
        if o.kind in ("must", "opt"):
            o.pred = before(p_req, o.s)
        elif o.kind == "final":
            o.pred = allreq
        elif o.rec.get("_strict"):
            o.pred = before(p_must, o.s)
        else:
            pre = p_local.get((o.rec["m"], o.rec["gen"]))
            o.pred = before(pre, o.s) if pre else 0
        o.pred &= ~(1 << o.i)


def linearize(ops, init):
    """Wing-Gong search with memoization over ops (list of Op), in the
    order build_preds gives. Returns (True, None) or (False, info) with
    the state where the longest prefix found got stuck."""
    n = len(ops)
    for i, o in enumerate(ops):
        o.i = i
    byS = sorted(range(n), key=lambda i: ops[i].s)
    build_preds(ops)
    required = 0
    for o in ops:
        if o.kind != "opt":
            required |= 1 << o.i
    obs = [i for i in byS if ops[i].kind == "obs"]
    changes = [i for i in byS if ops[i].kind in ("must", "opt", "final")]
    order = [i for i in changes if ops[i].kind != "opt"] + \
        [i for i in changes if ops[i].kind == "opt"]
    visited = set()
    best = (-1, None, None)
    stack = [(0, init)]
    steps = 0
    while stack:
        lin, st = stack.pop()
        # observations that fit now
        for i in obs:
            if not (lin >> i) & 1 and not (ops[i].pred & ~lin) and ops[i].fits(st):
                lin |= 1 << i
        if lin & required == required:
            return True, None
        key = (lin, st)
        if key in visited:
            continue
        visited.add(key)
        steps += 1
        if steps > SEARCH_BUDGET:
            raise Inconclusive("search budget of %d states exceeded" % SEARCH_BUDGET)
        cnt = bin(lin & required).count("1")
        if cnt > best[0]:
            best = (cnt, lin, st)
        # tried in start order, ambiguous changes after the others (an
        # ambiguous change is linearized only where something needs it)
        for i in reversed(order):
            if (lin >> i) & 1 or ops[i].pred & ~lin:
                continue
            o = ops[i]
            if o.kind == "final":
                if o.fits(st):
                    stack.append((lin | (1 << i), st))
                continue
            nst = o.step(st)
            for x in (nst if isinstance(nst, list) else [nst]):
                if x is not None:
                    stack.append((lin | (1 << i), x))
    cnt, lin, st = best
    missing = [ops[i] for i in range(n) if (required >> i) & 1 and not (lin >> i) & 1]
    return False, {"state": st, "stuck": missing}


# ---- history reading --------------------------------------------------------------

def read_history(path):
    clock = None
    ops = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a torn last line (the workload was killed)
            if r.get("op") == "clock":
                clock = r
                continue
            ops.append(r)
    return clock, ops


LOG_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) .*read barrier (unavailable|works again)")


def degraded_windows(logpath, clock):
    """Monotonic-ns windows in which node's read barrier failed (README:
    opens then serve the node's own state). Widened by the barrier's own
    wait (2 s) plus slack before the line that reports it."""
    if not clock or not logpath or not os.path.exists(logpath):
        return []
    off = clock["mono"] - clock["wall"]  # mono = wall + off
    wins, start = [], None
    with open(logpath, errors="replace") as f:
        for line in f:
            m = LOG_RE.match(line)
            if not m:
                continue
            t = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
            ns = int(t * 1e9) + int(m.group(2)) * 1000000 + off
            if m.group(3) == "unavailable":
                if start is None:
                    start = ns - 3_000_000_000
            elif start is not None:
                wins.append((start, ns + 500_000_000))
                start = None
    if start is not None:
        wins.append((start, INF))
    return wins


def overlaps(wins, s, e):
    return any(a <= e and s <= b for a, b in wins)


# ---- the checks ----------------------------------------------------------------

NS_MUT = ("create", "mkdir", "rmdir", "unlink", "rename")
TOP_NAMES = ("a", "b", "d", "e")  # fault_workload.py's names in a group's directory


def drop_dead_mount_ops(recs):
    """A mount whose node died answers ENOTCONN from then on, without the
    node: an operation that started after another one on the same mount
    (same life) had already come back with ENOTCONN never reached a node,
    so it had no effect and is dropped. (Only when that mount life indeed
    answered nothing else afterwards.)"""
    dead = {}
    for r in recs:
        if r.get("err") == "ENOTCONN":
            k = (r["m"], r["gen"])
            dead[k] = min(dead.get(k, INF), r["e"])
    for r in recs:
        k = (r["m"], r["gen"])
        if k in dead and r["s"] > dead[k] and r.get("err") != "ENOTCONN":
            del dead[k]  # it answered after all: not a dead connection
    return [r for r in recs
            if not ((r["m"], r["gen"]) in dead and r["s"] > dead[(r["m"], r["gen"])])]


def is_strict_obs(r, degraded):
    """Linearizable observations (README: a lookup that finds nothing and
    opendir ask the leader first)."""
    if degraded:
        return False
    if r["op"] == "readdir":
        return r["res"] == "ok"
    # Only a name directly in the group's directory: for a/x the kernel
    # may resolve a from its cache (a local read: an old a), and then
    # not finding x in it is right for that old a.
    top = "/" not in r.get("p", "") and "/" not in r.get("q", "")
    return top and r["res"] == "fail" and r.get("err") == "ENOENT"


def ns_ops_for(recs, degr):
    """Turn one group's records into search ops."""
    out = []
    for r in recs:
        op, res = r["op"], r["res"]
        e = r["e"] if res != "info" else INF
        if op in NS_MUT:
            if res in ("ok", "info"):
                ino = r.get("val") if op == "create" else None
                step = (lambda st, op=op, p=r["p"], q=r.get("q"), ino=ino:
                        ns_apply(st, op, p, q, ino))
                if op == "rename" and res == "ok":
                    step = (lambda st, p=r["p"], q=r["q"], f=step:
                            [x for x in (f(st), rename_noop(st, p, q)) if x is not None])
                out.append(Op("must" if res == "ok" else "opt", r["s"], e, r, step=step))
                continue
        if res == "info" and not (op in ("write", "lock", "read") and r.get("phase") != "call"):
            continue  # an ambiguous read: no observation
        if res == "info" and op in ("write", "lock", "read"):
            e = r["e"]  # it opened the file: a positive lookup
        strict = is_strict_obs(r, overlaps(degr.get(r["m"], []), r["s"], r["e"]))
        if op == "readdir":
            # A listing is not a snapshot (POSIX: a name added or removed
            # meanwhile may or may not be listed): each name is observed
            # on its own, listed or not, somewhere within the listing.
            for n in sorted(set(r["val"]) | set(TOP_NAMES)):
                rn = dict(r, _name=n, _strict=strict)
                out.append(Op("obs", r["s"], e, rn, fits=lambda st, rn=rn: ns_observe(st, rn)))
            continue
        o = Op("obs", r["s"], e, r, fits=lambda st, r=r: ns_observe(st, r))
        o.rec["_strict"] = strict
        out.append(o)
    return out


def reg_ops_for(recs, init, final_val, degr, t_end):
    out = []
    for r in recs:
        if r["op"] == "write":
            if r["res"] == "ok":
                out.append(Op("must", r["s"], r["e"], r, step=lambda st, v=r["v"]: v))
            else:
                out.append(Op("opt", r["s"], INF, r, step=lambda st, v=r["v"]: v))
        elif r["op"] == "read" and r["res"] == "ok":
            o = Op("obs", r["s"], r["e"], r, fits=lambda st, v=r["val"][1]: st == v)
            r["_strict"] = not overlaps(degr.get(r["m"], []), r["s"], r["e"])
            out.append(o)
    if final_val is not None:
        out.append(Op("final", t_end, t_end, {"op": "snapshot"},
                      fits=lambda st, v=final_val: st == v))
    return out


def degraded_read_ok(r, vals_before, init):
    return r["val"][1] == init or r["val"][1] in vals_before


def fmt_op(r):
    keys = ("id", "op", "m", "gen", "p", "q", "v", "ino", "res", "err", "val")
    return " ".join("%s=%s" % (k, r[k]) for k in keys if k in r)


class Checker:
    def __init__(self):
        self.violations = []
        self.inconclusive = []
        self.counts = {}

    def bad(self, what):
        self.violations.append(what)

    def check_round(self, k, recs, snap_before, snap_after, degr, t_end):
        # 4. all mounts the same
        mounts = snap_after["mounts"]
        names = sorted(mounts)
        for m in names[1:]:
            if mounts[m] != mounts[names[0]]:
                diff = []
                for g in mounts[names[0]]:
                    a, b = mounts[names[0]][g], mounts[m].get(g)
                    if a != b:
                        diff.append("group %s: mount %s %s, mount %s %s" % (g, names[0], a, m, b))
                self.bad("round %d: mounts %s and %s differ after healing: %s"
                         % (k, names[0], m, "; ".join(diff)[:2000]))
        before = snap_before["mounts"][sorted(snap_before["mounts"])[0]]
        after = mounts[names[0]]
        # 1. namespace, per group
        bygroup = {}
        for r in recs:
            bygroup.setdefault(str(r["g"]), []).append(r)
        for g in sorted(after):
            grecs = bygroup.get(g, [])
            init = snap_state(before.get(g, {}))
            final = snap_state(after[g])
            ops = ns_ops_for(grecs, degr)
            ops.append(Op("final", t_end, t_end, {"op": "snapshot"},
                          fits=lambda st, f=final: ns_equal(st, f)))
            try:
                ok, info = linearize(ops, init)
            except Inconclusive as e:
                self.inconclusive.append("round %d group %s: %s" % (k, g, e))
                continue
            if not ok:
                stuck = sorted(info["stuck"], key=lambda o: o.s)[:6]
                self.bad("round %d group %s: metadata not linearizable; stuck in state %s "
                         "before: %s" % (k, g, sorted(NS.todict(info["state"]).items()),
                                         " | ".join(fmt_op(o.rec) for o in stuck)))
        # 2. contents, per inode
        init_val = {}
        for g, st in before.items():
            for p, (t, ino, c) in st.items():
                if t == "f":
                    init_val[ino] = c
        final_val = {}
        for g, st in after.items():
            for p, (t, ino, c) in st.items():
                if t == "f":
                    final_val[ino] = c
        byino = {}
        for r in recs:
            ino = r.get("ino") if r["op"] == "write" else (
                r["val"][0] if r["op"] == "read" and r["res"] == "ok" else None)
            if ino is not None and not (r["op"] == "write" and r["res"] == "fail"):
                byino.setdefault(ino, []).append(r)
        inos = set(byino) | set(final_val)
        for ino in sorted(inos):
            rs = byino.get(ino, [])
            init = init_val.get(ino, "")
            ops = reg_ops_for(rs, init, final_val.get(ino), degr, t_end)
            if not ops:
                continue
            # degraded reads: only "a value that was written"
            wstarts = sorted((r["s"], r["v"]) for r in rs if r["op"] == "write")
            for o in ops:
                r = o.rec
                if o.kind == "obs" and not r["_strict"]:
                    before_vals = {v for s, v in wstarts if s <= r["e"]}
                    if not degraded_read_ok(r, before_vals, init):
                        self.bad("round %d inode %d: read returned %r, which no write wrote: %s"
                                 % (k, ino, r["val"][1], fmt_op(r)))
            try:
                ok, info = linearize(ops, init)
            except Inconclusive as e:
                self.inconclusive.append("round %d inode %d: %s" % (k, ino, e))
                continue
            if not ok:
                stuck = sorted(info["stuck"], key=lambda o: o.s)[:4]
                self.bad("round %d inode %d: contents not linearizable (close-to-open/durability); "
                         "content %r when stuck before: %s" % (
                             k, ino, info["state"], " | ".join(fmt_op(o.rec) for o in stuck)))

    def check_locks(self, recs):
        byino = {}
        for r in recs:
            if r["op"] == "lock" and "ino" in r:
                byino.setdefault(r["ino"], []).append(r)
        for ino, rs in byino.items():
            held = [r for r in rs if "acq_e" in r]
            held.sort(key=lambda r: r["acq_e"])
            # two certain holds overlap?
            for i, a in enumerate(held):
                for b in held[i + 1:]:
                    if b["acq_e"] >= a["rel_s"]:
                        break
                    self.bad("inode %d: two OFD locks held at once: %s AND %s"
                             % (ino, fmt_op(a), fmt_op(b)))
            # a refusal needs a possible holder
            possible = []
            for r in rs:
                if "acq_e" in r or (r["res"] == "info" and r.get("phase") == "opened"):
                    end = r["rel_e"] if r.get("phase") == "unlocked" else INF
                    possible.append((r["s"], end, r["id"]))
            for r in rs:
                if r["res"] == "fail" and r.get("err") == "EAGAIN":
                    if not any(s <= r["e"] and r["s"] <= e and i != r["id"]
                               for s, e, i in possible):
                        self.bad("inode %d: lock refused (EAGAIN) while nobody could hold it: %s"
                                 % (ino, fmt_op(r)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--history", required=True)
    ap.add_argument("--snapshots", required=True)
    ap.add_argument("--logs", default="")
    ap.add_argument("--faults", default="")
    a = ap.parse_args()
    clock, recs = read_history(a.history)
    snaps = []
    k = 0
    while os.path.exists(os.path.join(a.snapshots, "snap%d.json" % k)):
        with open(os.path.join(a.snapshots, "snap%d.json" % k)) as f:
            snaps.append(json.load(f))
        k += 1
    if len(snaps) < 2:
        print("history_check: need at least snap0.json and snap1.json in %s" % a.snapshots)
        return 2
    degr = {}
    for item in filter(None, a.logs.split(",")):
        i, path = item.split("=", 1)
        degr.setdefault(int(i), []).extend(degraded_windows(path, clock))
    n_all = len(recs)
    recs = drop_dead_mount_ops(recs)
    c = Checker()
    t0 = time.time()
    counts = {}
    for r in recs:
        key = "%s %s" % (r["op"], r["res"])
        counts[key] = counts.get(key, 0) + 1
    used = 0
    for k in range(1, len(snaps)):
        lo, hi = snaps[k - 1]["mono"], snaps[k]["mono"]
        rr = [r for r in recs if lo <= r["s"] < hi]
        used += len(rr)
        c.check_round(k, rr, snaps[k - 1], snaps[k], degr, hi)
    c.check_locks(recs)
    print("history: %d operations in %d rounds (%d after the last snapshot, not checked; "
          "%d on mounts already known dead, dropped)"
          % (n_all, len(snaps) - 1, len(recs) - used, n_all - len(recs)))
    print("  " + ", ".join("%s %d" % (k, v) for k, v in sorted(counts.items())))
    nd = sum(len(w) for w in degr.values())
    print("read-barrier outages in node logs (reads then checked as local): %d" % nd)
    if a.faults and os.path.exists(a.faults):
        fk = {}
        with open(a.faults) as f:
            for line in f:
                try:
                    kind = json.loads(line)["fault"]
                except (ValueError, KeyError):
                    continue
                fk[kind] = fk.get(kind, 0) + 1
        print("faults injected: %d (%s)" % (sum(fk.values()),
                                            ", ".join("%s %d" % kv for kv in sorted(fk.items()))))
    for v in c.violations:
        print("VIOLATION: " + v)
    for v in c.inconclusive:
        print("INCONCLUSIVE: " + v)
    print("violations: %d (checked in %.1f s)" % (len(c.violations), time.time() - t0))
    return 1 if c.violations or c.inconclusive else 0


if __name__ == "__main__":
    sys.exit(main())

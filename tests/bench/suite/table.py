#!/usr/bin/env python3
"""table.py — the report of tests/bench/run.

    table.py RESULTS META OUT_MD

RESULTS holds "target<TAB>metric<TAB>rep<TAB>value" lines (every figure of
every repetition); META holds "key=value" lines (header, sizes). Prints one
aligned table of medians (rows = metrics; columns = tmpfs, bindfs,
gluster, sandfs, then sandfs/gluster and sandfs/bindfs), the issue's targets
as a checklist computed from the same medians, and writes the same as
markdown to OUT_MD. A figure nobody measured is "n/a". Raft rows compare
with etcd, shown in the gluster column (the replicated reference there).
"""
import statistics
import sys
from collections import defaultdict

TARGETS = ["tmpfs", "bindfs", "gluster", "sandfs"]
HI, LO = "higher", "lower"

# metric key, label, which way is better
META_OPS = [
    ("create", "create"),
    ("stat", "stat (attr cache warm)"),
    ("stat_cold", "lookup (stat, cache expired)"),
    ("readdir", "readdir (listings of the dir)"),
    ("rename", "rename"),
    ("unlink", "unlink"),
    ("mkdir", "mkdir"),
    ("rmdir", "rmdir"),
]


def rows(meta):
    """The table rows: (section, key, label, better) or (section,)."""
    out = []
    for procs in ("1p", "8p"):
        n = "1 process" if procs == "1p" else "8 processes"
        out.append((f"metadata, {n} (ops/s, and latency of one process in us)",))
        for ph, label in META_OPS:
            out.append(("", f"meta_{ph}_{procs}_ops", f"{label} ops/s", HI))
            out.append(("", f"meta_{ph}_{procs}_p50", f"{label} p50 us", LO))
            out.append(("", f"meta_{ph}_{procs}_p99", f"{label} p99 us", LO))
        if procs == "1p":
            out.append(("", "meta_create_2nd_ops", "create ops/s, 2nd mount (sandfs: follower)", HI))
            out.append(("", "meta_create_2nd_p50", "create p50 us, 2nd mount (sandfs: follower)", LO))
            out.append(("", "meta_create_2nd_p99", "create p99 us, 2nd mount (sandfs: follower)", LO))
    out.append(("visibility: create on mount 1, seen on mount 2 (us)",))
    for f in ("p50", "p99", "max"):
        out.append(("", f"vis_{f}", f"visibility lag {f} us", LO))
    out.append((f"data ({meta.get('seq_mb', '?')} MiB sequential, 1 MiB blocks; 4 KiB files)",))
    out.append(("", "seq_write", "seq write MiB/s (conv=fsync)", HI))
    out.append(("", "seq_read", "seq read MiB/s, cold, mount 1", HI))
    out.append(("", "seq_read_2nd", "seq read MiB/s, cold, mount 2", HI))
    for procs in ("1p", "8p"):
        n = procs[0] + " proc"
        out.append(("", f"meta_small4k_fsync_{procs}_ops", f"4 KiB write+fsync files/s ({n})", HI))
        out.append(("", f"meta_small4k_fsync_{procs}_p50", f"4 KiB write+fsync p50 us ({n})", LO))
        out.append(("", f"meta_small4k_read_{procs}_ops", f"4 KiB read back files/s, cold ({n})", HI))
    out.append((f"real work (seconds; tree of {meta.get('tree_files', '?')} files, "
                f"git repo of {meta.get('git_files', '?')})",))
    for key, label in (("untar", "tar x"), ("ls_lR", "ls -lR (cold)"), ("cp_r", "cp -r (cold)"),
                       ("rm_rf", "rm -rf"), ("git_clone", "git clone")):
        out.append(("", f"work_{key}", f"{label} s", LO))
    out.append(("failover: kill -9 until a create succeeds (gluster: of a brick)",))
    out.append(("", "failover_ms", "failover ms", LO))
    out.append(("Raft alone: proposals (gluster column: etcd, best client)",))
    for c in ("1", "64"):
        out.append(("", f"raft_{c}_ops", f"proposals/s, {c} in flight", HI))
        out.append(("", f"raft_{c}_p50", f"proposal p50 us, {c} in flight", LO))
        out.append(("", f"raft_{c}_p99", f"proposal p99 us, {c} in flight", LO))
    return out


def load(path):
    vals = defaultdict(list)
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            try:
                vals[(parts[0], parts[1])].append(float(parts[3]))
            except ValueError:
                continue
    med = {k: statistics.median(v) for k, v in vals.items()}
    # etcd: the client (gRPC or JSON gateway) with the better 64-in-flight
    # rate stands in the gluster column of the Raft rows
    best = None
    for cl in ("etcd-grpc", "etcd-http"):
        r = med.get((cl, "raft_64_ops"))
        if r is not None and (best is None or r > med[(best, "raft_64_ops")]):
            best = cl
    if best:
        for (t, m), v in list(med.items()):
            if t == best:
                med[("gluster", m)] = v
    counts = {k: len(v) for k, v in vals.items()}
    return med, counts, best


def fmt(v):
    if v is None:
        return "n/a"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    r = a / b
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


def checklist(med):
    """(met: True/False/None, text) for each target of the issue."""
    def g(t, k):
        return med.get((t, k))

    out = []

    def cmp(name, a, b, factor, unit=""):
        if a is None or b is None:
            out.append((None, f"{name} (a figure is missing)"))
            return
        ok = a >= factor * b
        out.append((ok, f"{name}: {fmt(a)}{unit} vs {fmt(b)}{unit} = {a / b:.2f}x (need {factor:g}x)"))

    def below(name, a, limit, unit):
        if a is None:
            out.append((None, f"{name} (not measured)"))
            return
        out.append((a < limit, f"{name}: {fmt(a)} {unit} (need < {fmt(limit)} {unit})"))

    for op in ("create", "rename", "unlink"):
        cmp(f"{op}/s from 1 process >= 8x gluster", g("sandfs", f"meta_{op}_1p_ops"),
            g("gluster", f"meta_{op}_1p_ops"), 8)
    below("median create on the leader's mount < 0.5 ms", g("sandfs", "meta_create_1p_p50"), 500, "us")
    below("median create on a follower's mount < 0.7 ms", g("sandfs", "meta_create_2nd_p50"), 700, "us")
    v = g("sandfs", "meta_create_8p_ops")
    out.append((None if v is None else v >= 10000,
                f"8-process creates >= 10,000/s: {fmt(v)}/s"))
    for procs in ("1p", "8p"):
        for ph, label in (("stat", "stat"), ("stat_cold", "lookup"), ("readdir", "readdir")):
            cmp(f"{label}/s ({procs[0]} proc) >= 70% of bindfs", g("sandfs", f"meta_{ph}_{procs}_ops"),
                g("bindfs", f"meta_{ph}_{procs}_ops"), 0.7)
    cmp("cold seq read (mount 1) >= 70% of bindfs", g("sandfs", "seq_read"), g("bindfs", "seq_read"), 0.7, " MiB/s")
    cmp("cold seq read (mount 2) >= 70% of bindfs", g("sandfs", "seq_read_2nd"), g("bindfs", "seq_read_2nd"), 0.7, " MiB/s")
    cmp("seq write >= 2x gluster", g("sandfs", "seq_write"), g("gluster", "seq_write"), 2, " MiB/s")
    for procs in ("1p", "8p"):
        cmp(f"4 KiB write+fsync files/s ({procs[0]} proc) >= 10x gluster",
            g("sandfs", f"meta_small4k_fsync_{procs}_ops"), g("gluster", f"meta_small4k_fsync_{procs}_ops"), 10)
    a, b = g("sandfs", "vis_p99"), g("gluster", "vis_p99")
    if a is None or b is None:
        out.append((None, "visibility p99 below gluster's (a figure is missing)"))
    else:
        out.append((a < b, f"visibility p99 below gluster's: {fmt(a)} us vs {fmt(b)} us (aim 1000 us)"))
    below("failover < 1 s", g("sandfs", "failover_ms"), 1000, "ms")
    cmp("Raft proposals/s, 64 in flight >= 4x etcd", g("sandfs", "raft_64_ops"), g("gluster", "raft_64_ops"), 4)
    return out


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    meta = {}
    with open(sys.argv[2]) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    med, counts, etcd = load(sys.argv[1])
    head = ["metric", "better"] + TARGETS + ["sandfs/gluster", "sandfs/bindfs"]
    body = []  # (section,) or cells
    for r in rows(meta):
        if len(r) == 1:
            body.append((r[0],))
            continue
        _, key, label, better = r
        v = {t: med.get((t, key)) for t in TARGETS}
        if all(x is None for x in v.values()):
            continue
        body.append([label, better] + [fmt(v[t]) for t in TARGETS] +
                    [ratio(v["sandfs"], v["gluster"]), ratio(v["sandfs"], v["bindfs"])])
    # drop sections left without rows
    body = [b for i, b in enumerate(body)
            if len(b) != 1 or (i + 1 < len(body) and len(body[i + 1]) != 1)]
    reps = max(counts.values()) if counts else 0
    title = (f"sandfs benchmark, {meta.get('date', '?')}: {meta.get('cpu', '?')}, "
             f"{meta.get('cores', '?')} cores, {meta.get('ram', '?')} RAM, "
             f"Linux {meta.get('kernel', '?')}; sandfs {meta.get('commit', '?')}")
    sub = (f"median of {reps} repetition(s), targets interleaved; "
           f"{meta.get('versions', '')}; etcd client: {etcd or 'n/a'}. "
           f"Ratios are sandfs divided by the reference: above 1 is better "
           f"for 'higher' rows, below 1 for 'lower' rows.")
    widths = [len(h) for h in head]
    for b in body:
        if len(b) != 1:
            widths = [max(w, len(c)) for w, c in zip(widths, b)]

    def line(cells):
        return "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                         for i, c in enumerate(cells))

    checks = checklist(med)
    mark = {True: "met", False: "MISSED", None: "n/a"}
    txt = [title, sub, "", line(head), line(["-" * w for w in widths])]
    for b in body:
        txt.append(f"-- {b[0]}" if len(b) == 1 else line(b))
    txt += ["", "targets (issue 8), from the medians above:"]
    txt += [f"  [{mark[ok]:>6}] {t}" for ok, t in checks]
    print("\n".join(txt))

    md = [f"**{title}**", "", sub, "", "| " + " | ".join(head) + " |",
          "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for b in body:
        if len(b) == 1:
            md.append(f"| **{b[0]}** |" + " |" * (len(head) - 1))
        else:
            md.append("| " + " | ".join(b) + " |")
    md += ["", "Targets (issue 8), from the medians above:", ""]
    md += [f"- [{'x' if ok else ' '}] {mark[ok]}: {t}" for ok, t in checks]
    with open(sys.argv[3], "w") as f:
        f.write("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

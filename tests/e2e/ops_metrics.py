#!/usr/bin/env python3
"""ops_metrics.py - checks for tests/e2e/ops_metrics.sh.

  scrape URL OUT [serve]     GET URL, parse the Prometheus text strictly,
                             check sandfs' naming rules, write the samples
                             to OUT (JSON: {"name{labels}": value}); prints
                             the number of samples. A mount's families must
                             be there, a serve node's (serve) must not
  get FILE KEY               print one sample's value (0 when absent)
  grew BEFORE AFTER KEY MIN [KEY MIN...]
                             one line per KEY: "PASS: KEY grew by >= MIN"
                             or "FAIL: ..." (exit 1 if any failed)
  role FILE                  the role whose sandfs_raft_role gauge is 1
  stats FILE NODE CREATES    check a `sandfs stats --once --json` output
  bench FILE                 check a `sandfs bench --json` output

Every failed check prints one line saying what is wrong and exits 1.
"""
import json
import math
import re
import sys
import urllib.request

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*$")
SAMPLE = re.compile(
    r"([a-zA-Z_:][a-zA-Z0-9_:]*)"  # name
    r"(?:\{(.*)\})?"  # labels
    r" ([^ ]+)"  # value
    r"(?: (-?[0-9]+))?$"  # timestamp
)
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\[\\"n])*)"\s*(,|$)')


def die(msg):
    print("CHECK FAILED: " + msg)
    sys.exit(1)


def parse_labels(text, where):
    out = []
    pos = 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m:
            die("%s: bad label text {%s}" % (where, text))
        out.append((m.group(1), m.group(2)))
        pos = m.end()
        if m.group(3) == "" and pos < len(text):
            die("%s: junk after labels {%s}" % (where, text))
    names = [k for k, _ in out]
    if len(set(names)) != len(names):
        die("%s: a label given twice {%s}" % (where, text))
    return out


def parse_value(text, where):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.match(r"^[-+]?[0-9.]+([eE][-+]?[0-9]+)?$", text):
        die("%s: value %r is not a number" % (where, text))
    return float(text)


def check_exposition(body):
    """Parse strictly; return {key: value} and {family: type}."""
    if not body.endswith("\n"):
        die("the text does not end with a newline")
    types, helps, samples = {}, {}, {}
    fam_of = {}  # sample name -> family
    seen_fams = []  # order in which families' samples appear
    for n, line in enumerate(body.split("\n")[:-1], 1):
        where = "line %d" % n
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.match(name):
                    die("%s: bad family name %r" % (where, name))
                rest = parts[3] if len(parts) > 3 else ""
                if parts[1] == "TYPE":
                    if name in types:
                        die("%s: TYPE %s twice" % (where, name))
                    if rest not in ("counter", "gauge", "histogram"):
                        die("%s: TYPE %s %r" % (where, name, rest))
                    if name not in helps:
                        die("%s: TYPE %s before (or without) HELP" % (where, name))
                    types[name] = rest
                else:
                    if name in helps:
                        die("%s: HELP %s twice" % (where, name))
                    if not rest.strip():
                        die("%s: HELP %s is empty" % (where, name))
                    helps[name] = rest
            continue
        if not line:
            die("%s: empty line" % where)
        m = SAMPLE.match(line)
        if not m:
            die("%s: not a sample: %r" % (where, line))
        name, ltext, vtext = m.group(1), m.group(2) or "", m.group(3)
        fam = None
        if name in types and types[name] != "histogram":
            fam = name
        else:
            for sfx in ("_bucket", "_sum", "_count"):
                base = name[: -len(sfx)]
                if name.endswith(sfx) and types.get(base) == "histogram":
                    fam = base
        if fam is None:
            die("%s: sample %s has no TYPE line before it" % (where, name))
        if seen_fams and seen_fams[-1] != fam and fam in seen_fams:
            die("%s: samples of %s are not together" % (where, fam))
        if not seen_fams or seen_fams[-1] != fam:
            seen_fams.append(fam)
        labels = parse_labels(ltext, where)
        value = parse_value(vtext, where)
        key = name + ("{" + ltext + "}" if ltext else "")
        if key in samples:
            die("%s: sample %s given twice" % (where, key))
        samples[key] = value
        fam_of[key] = (fam, name, labels)
        if types[fam] == "counter" and not (value >= 0 and math.isfinite(value)):
            die("%s: counter %s = %r" % (where, key, value))
    for fam, t in types.items():
        if not fam.startswith("sandfs_"):
            die("family %s lacks the sandfs_ prefix" % fam)
        if t == "counter" and not fam.endswith("_total"):
            die("counter %s does not end in _total" % fam)
        if t == "histogram" and not fam.endswith("_seconds"):
            die("histogram %s does not end in _seconds" % fam)
        if "bytes" in fam and not re.search(r"_bytes(_total|_per_second)?$", fam):
            die("%s talks of bytes but does not end in _bytes" % fam)
        if fam not in seen_fams and t != "histogram":
            pass  # an empty family (no peers yet, say) is fine
    for fam in [f for f, t in types.items() if t == "histogram"]:
        check_histogram(fam, samples, fam_of)
    for fam in helps:
        if fam not in types:
            die("HELP %s without TYPE" % fam)
    return samples, types


def check_histogram(fam, samples, fam_of):
    series = {}
    for key, (f, name, labels) in fam_of.items():
        if f != fam:
            continue
        base = tuple((k, v) for k, v in labels if k != "le")
        s = series.setdefault(base, {"buckets": [], "sum": None, "count": None})
        if name == fam + "_bucket":
            le = [v for k, v in labels if k == "le"]
            if len(le) != 1:
                die("%s: bucket without le" % key)
            s["buckets"].append((parse_value(le[0], key), samples[key]))
        elif name == fam + "_sum":
            s["sum"] = samples[key]
        else:
            s["count"] = samples[key]
    for base, s in series.items():
        b = s["buckets"]
        if not b or b[-1][0] != math.inf:
            die("%s%s: no le=\"+Inf\" bucket last" % (fam, dict(base)))
        if any(b[i][0] >= b[i + 1][0] for i in range(len(b) - 1)):
            die("%s%s: le bounds not increasing" % (fam, dict(base)))
        if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            die("%s%s: buckets not cumulative" % (fam, dict(base)))
        if s["count"] is None or s["sum"] is None:
            die("%s%s: no _count or _sum" % (fam, dict(base)))
        if s["count"] != b[-1][1]:
            die("%s%s: _count %r != +Inf bucket %r" % (fam, dict(base), s["count"], b[-1][1]))
        if s["sum"] < 0:
            die("%s%s: negative _sum" % (fam, dict(base)))


def cmd_scrape(url, out, kind="mount"):
    if kind not in ("mount", "serve"):
        die("scrape: kind is mount or serve, not %r" % kind)
    with urllib.request.urlopen(url, timeout=10) as r:
        if r.status != 200:
            die("%s answered %d" % (url, r.status))
        ctype = r.headers.get("Content-Type", "")
        if not ctype.startswith("text/plain; version=0.0.4"):
            die("%s: Content-Type %r" % (url, ctype))
        body = r.read().decode("utf-8")
    samples, types = check_exposition(body)
    for must in ("sandfs_node_info", "sandfs_raft_term", "sandfs_raft_role",
                 "sandfs_raft_commit_index", "sandfs_raft_applied_index",
                 "sandfs_raft_proposals_total",
                 "sandfs_raft_proposal_duration_seconds",
                 "sandfs_raft_elections_total",
                 "sandfs_raft_snapshots_sent_total",
                 "sandfs_raft_snapshots_installed_total",
                 "sandfs_transport_sent_bytes_total",
                 "sandfs_transport_received_bytes_total",
                 "sandfs_transport_reconnects_total",
                 "sandfs_transport_rejected_frames_total"):
        if must not in types:
            die("%s: no family %s" % (url, must))
    # What a mount adds (FUSE requests, the block store, the scrub).
    for fam in ("sandfs_fuse_ops_total", "sandfs_fuse_op_duration_seconds",
                "sandfs_blocks_stored", "sandfs_block_fetches_total",
                "sandfs_block_verification_failures_total",
                "sandfs_scrub_enabled", "sandfs_scrub_pass_blocks",
                "sandfs_scrub_corrupt_blocks_total"):
        if (fam in types) != (kind == "mount"):
            die("%s: family %s %s on a %s node" % (url, fam,
                "missing" if kind == "mount" else "present", kind))
    roles = [k for k in samples if k.startswith("sandfs_raft_role{")]
    if len(roles) != 4 or sum(samples[k] for k in roles) != 1:
        die("%s: the role gauges %s are not one-hot" % (url, {k: samples[k] for k in roles}))
    with open(out, "w") as f:
        json.dump({"samples": samples, "types": types}, f)
    print(len(samples))


def load(path):
    with open(path) as f:
        return json.load(f)


def cmd_get(path, key):
    v = load(path)["samples"].get(key, 0)
    print(int(v) if float(v).is_integer() else v)


def cmd_grew(before, after, *pairs):
    if not pairs or len(pairs) % 2:
        die("grew wants KEY MIN pairs")
    sa, sb = load(before)["samples"], load(after)["samples"]
    bad = 0
    for key, least in zip(pairs[0::2], pairs[1::2]):
        a, b = sa.get(key, 0), sb.get(key, None)
        if b is None:
            print("FAIL: %s is missing after the operations" % key)
            bad += 1
        elif b - a < float(least):
            print("FAIL: %s grew by %s (from %s to %s), expected at least %s"
                  % (key, b - a, a, b, least))
            bad += 1
        else:
            print("PASS: %s grew by >= %s (%s)" % (key, least, b - a))
    sys.exit(1 if bad else 0)


def cmd_role(path):
    s = load(path)["samples"]
    for k, v in s.items():
        if k.startswith("sandfs_raft_role{") and v == 1:
            print(re.search(r'role="([^"]*)"', k).group(1))
            return
    die("no role gauge is 1")


def cmd_stats(path, node, creates):
    with open(path) as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    if len(lines) != 1:
        die("stats --once --json printed %d lines, not one object" % len(lines))
    v = json.loads(lines[0])
    if v.get("node") != int(node):
        die("stats names node %r, not %s" % (v.get("node"), node))
    for k in ("cluster_id", "role", "term", "leader", "interval_s", "raft",
              "peers", "fuse", "blocks", "transport"):
        if k not in v:
            die("stats JSON lacks %s" % k)
    if v["role"] not in ("leader", "follower", "candidate", "pre-candidate"):
        die("stats role %r" % v["role"])
    if not 0.3 <= v["interval_s"] <= 5:
        die("stats interval_s %r" % v["interval_s"])
    r = v["raft"]
    if r["applied"] > r["commit"] or r["apply_lag"] != r["commit"] - r["applied"]:
        die("stats raft figures inconsistent: %r" % r)
    if r["proposals_total"] < int(creates):
        die("proposals_total %r < %s" % (r["proposals_total"], creates))
    if r["proposals_per_s"] is None or r["proposals_per_s"] <= 0:
        die("no proposals per second during a busy interval: %r" % r)
    if r["proposal_p50_ms"] is None or not 0 < r["proposal_p50_ms"] <= r["proposal_p99_ms"]:
        die("proposal p50/p99 %r/%r" % (r["proposal_p50_ms"], r["proposal_p99_ms"]))
    fu = v["fuse"]
    if not fu or "create" not in fu:
        die("stats shows no FUSE creates: %r" % fu)
    c = fu["create"]
    if c["total"] < int(creates):
        die("stats counts %r creates, at least %s were made" % (c["total"], creates))
    if not c["per_s"] or c["per_s"] <= 0:
        die("creates per second %r during a busy interval" % c["per_s"])
    if c["p50_ms"] is None or c["p99_ms"] is None or c["p50_ms"] > c["p99_ms"]:
        die("create p50/p99 %r/%r" % (c["p50_ms"], c["p99_ms"]))
    ids = sorted(p["id"] for p in v["peers"])
    if ids != sorted(i for i in (1, 2, 3) if i != int(node)):
        die("stats peers %r" % ids)
    for p in v["peers"]:
        if not p["connected"] or p["bytes_out_total"] <= 0 or p["bytes_in_total"] <= 0:
            die("peer %r looks idle or down" % p)
        lag = p.get("log_lag_entries", "absent")
        if v["role"] == "leader" and not (isinstance(lag, (int, float)) and lag >= 0):
            die("the leader shows no log lag for peer %r" % p)
        if v["role"] != "leader" and lag is not None:
            die("a %s shows a log lag for peer %r" % (v["role"], p))
    b = v["blocks"]
    if not b or b["stored"] is None or b["crc_failures_total"] != 0 or b["sha256_failures_total"] != 0:
        die("stats blocks %r" % b)
    sc = v.get("scrub")
    if (not sc or sc["enabled"] is not True or sc["corrupt_total"] != 0 or
            sc["pass_blocks"] is None or sc["rate_limit_bytes_per_s"] != 8 << 20):
        die("stats scrub %r (mounted with -o scrub_mb_s=8)" % sc)
    if v["transport"]["rejected_frames_total"] != 0:
        die("frames were rejected: %r" % v["transport"])


def cmd_bench(path):
    with open(path) as f:
        v = json.load(f)
    res = v.get("results", {})
    want = {"write_big": "bytes", "read_big": "bytes", "write_small": "count",
            "read_small": "count", "stat": "count", "create": "count",
            "delete": "count"}
    for k, unit in want.items():
        if k not in res:
            die("bench JSON lacks %s" % k)
        r = res[k]
        rate = r.get("mib_per_s" if unit == "bytes" else "files_per_s")
        if rate is None or not rate > 0 or not r["seconds"] > 0:
            die("bench %s: %r" % (k, r))
    if res["write_big"]["bytes"] != v["big_file_bytes"] * v["threads"]:
        die("bench wrote %r bytes" % res["write_big"]["bytes"])
    if res["write_small"]["count"] != v["small_files"] or res["create"]["count"] != v["files"]:
        die("bench counts %r" % res)
    mib = res["write_big"]["bytes"] / 1048576.0
    if abs(mib / res["write_big"]["seconds"] - res["write_big"]["mib_per_s"]) > 0.01 * res["write_big"]["mib_per_s"] + 0.01:
        die("bench write_big rate does not match bytes/seconds")


def main():
    cmds = {"scrape": (cmd_scrape, -1), "get": (cmd_get, 2), "grew": (cmd_grew, -1),
            "role": (cmd_role, 1), "stats": (cmd_stats, 3), "bench": (cmd_bench, 1)}
    if (len(sys.argv) < 2 or sys.argv[1] not in cmds or
            cmds[sys.argv[1]][1] not in (-1, len(sys.argv) - 2)):
        print(__doc__)
        sys.exit(2)
    cmds[sys.argv[1]][0](*sys.argv[2:])


if __name__ == "__main__":
    main()

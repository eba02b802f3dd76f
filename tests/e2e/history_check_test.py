#!/usr/bin/env python3
"""Unit tests of history_check.py on hand-made histories: each history that
breaks a guarantee (a stale read, a lost write, a double apply, ...) must
be reported, and the correct variants must pass.

    python3 tests/e2e/history_check_test.py
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import history_check as hc  # noqa: E402

W = "w1.1.aaaa---------------"[:24]
W2 = "w2.1.bbbb---------------"[:24]


class H:
    """Builds records: times in ms, converted to ns."""

    def __init__(self):
        self.recs = []

    def add(self, op, s, e, m=1, res="ok", gen="1", g=0, **kw):
        r = {"id": len(self.recs), "op": op, "s": s * 10**6, "e": e * 10**6,
             "m": m, "gen": gen, "res": res, "g": g, "c": m}
        r.update(kw)
        if res == "fail" and "phase" not in r:
            r["phase"] = "call"
        self.recs.append(r)
        return r


def snap(t, group, mounts=(1, 2)):
    """group: path -> [type, ino, content]"""
    return {"mono": t * 10**6, "mounts": {str(m): {"0": dict(group)} for m in mounts}}


def run(h, before, after, degr=None):
    c = hc.Checker()
    c.check_round(1, h.recs, before, after, degr or {}, after["mono"])
    c.check_locks(h.recs)
    return c


class NamespaceTests(unittest.TestCase):
    def test_sequential_history_passes(self):
        h = H()
        h.add("create", 0, 10, p="a", val=5)
        h.add("stat", 11, 12, m=2, p="a", val=["f", 5])
        h.add("mkdir", 13, 20, p="d")
        h.add("rename", 21, 30, m=2, p="a", q="d/x")
        h.add("stat", 31, 32, p="a", res="fail", err="ENOENT")
        h.add("readdir", 33, 34, m=2, p="", val={"d": "d"})
        h.add("rmdir", 35, 40, p="d", res="fail", err="ENOTEMPTY")
        c = run(h, snap(-1, {}), snap(100, {"d": ["d", 7, None], "d/x": ["f", 5, ""]}))
        self.assertEqual(c.violations, [])

    def test_concurrent_creates_one_wins(self):
        h = H()
        h.add("create", 0, 10, m=1, p="a", val=5)
        h.add("create", 1, 9, m=2, p="a", res="fail", err="EEXIST")
        c = run(h, snap(-1, {}), snap(100, {"a": ["f", 5, ""]}))
        self.assertEqual(c.violations, [])

    def test_two_successful_creates_of_one_name_fail(self):
        h = H()
        h.add("create", 0, 10, m=1, p="a", val=5)
        h.add("create", 20, 30, m=2, p="a", val=6)
        c = run(h, snap(-1, {}), snap(100, {"a": ["f", 6, ""]}))
        self.assertEqual(len(c.violations), 1)
        self.assertIn("metadata not linearizable", c.violations[0])

    def test_lost_create_fails(self):
        h = H()
        h.add("create", 0, 10, p="a", val=5)
        c = run(h, snap(-1, {}), snap(100, {}))
        self.assertEqual(len(c.violations), 1)

    def test_double_apply_fails(self):
        # mkdir applied once more after the rmdir that followed it
        h = H()
        h.add("mkdir", 0, 10, p="d")
        h.add("rmdir", 20, 30, m=2, p="d")
        c = run(h, snap(-1, {}), snap(100, {"d": ["d", 9, None]}))
        self.assertEqual(len(c.violations), 1)

    def test_ambiguous_change_may_or_may_not_happen(self):
        for final in ({}, {"a": ["f", 8, ""]}):
            h = H()
            h.add("create", 0, 10, p="a", res="info", err="EIO")
            c = run(h, snap(-1, {}), snap(100, final))
            self.assertEqual(c.violations, [], final)

    def test_ambiguous_change_applies_at_most_once(self):
        # one ambiguous mkdir cannot explain two appearances of d
        h = H()
        h.add("mkdir", 0, 10, p="d", res="info", err="EIO")
        h.add("stat", 20, 21, p="d", val=["d", 9])
        h.add("rmdir", 30, 40, p="d")
        c = run(h, snap(-1, {}), snap(100, {"d": ["d", 9, None]}))
        self.assertEqual(len(c.violations), 1)

    def test_local_stat_may_be_stale_on_another_mount(self):
        h = H()
        h.add("unlink", 0, 10, m=1, p="a")
        h.add("stat", 20, 21, m=2, p="a", val=["f", 5])  # mount 2 lags
        c = run(h, snap(-1, {"a": ["f", 5, ""]}), snap(100, {}))
        self.assertEqual(c.violations, [])

    def test_stat_must_see_own_mounts_change(self):
        h = H()
        h.add("unlink", 0, 10, m=1, p="a")
        h.add("stat", 20, 21, m=1, p="a", val=["f", 5])
        c = run(h, snap(-1, {"a": ["f", 5, ""]}), snap(100, {}))
        self.assertEqual(len(c.violations), 1)

    def test_stat_cannot_see_the_future(self):
        h = H()
        h.add("stat", 0, 1, m=2, p="a", val=["f", 5])
        h.add("create", 10, 20, m=1, p="a", val=5)
        c = run(h, snap(-1, {}), snap(100, {"a": ["f", 5, ""]}))
        self.assertEqual(len(c.violations), 1)

    def test_stale_enoent_fails_unless_the_node_had_no_leader(self):
        h = H()
        h.add("create", 0, 10, m=1, p="a", val=5)
        h.add("stat", 20, 21, m=2, p="a", res="fail", err="ENOENT")
        before, after = snap(-1, {}), snap(100, {"a": ["f", 5, ""]})
        self.assertEqual(len(run(h, before, after).violations), 1)
        degr = {2: [(15 * 10**6, 25 * 10**6)]}
        self.assertEqual(run(h, before, after, degr).violations, [])

    def test_rename_errors_follow_the_model(self):
        h = H()
        h.add("rename", 0, 1, p="a", q="a/x", res="fail", err="EINVAL")
        h.add("rename", 2, 3, p="d", q="a", res="fail", err="EISDIR")
        h.add("rename", 4, 5, p="a", q="d", res="fail", err="ENOTDIR")
        h.add("rename", 6, 7, p="b", q="a", res="fail", err="ENOENT")
        c = run(h, snap(-1, {"a": ["d", 3, None], "d": ["f", 4, ""]}),
                snap(100, {"a": ["d", 3, None], "d": ["f", 4, ""]}))
        self.assertEqual(c.violations, [])
        h.add("rename", 8, 9, p="a", q="b", res="fail", err="ENOENT")
        c = run(h, snap(-1, {"a": ["d", 3, None], "d": ["f", 4, ""]}),
                snap(100, {"a": ["d", 3, None], "d": ["f", 4, ""]}))
        self.assertEqual(len(c.violations), 1)

    def test_listing_during_a_rename_may_show_both_names(self):
        h = H()
        h.add("readdir", 0, 20, m=2, p="", val={"a": "f", "b": "f"})
        h.add("rename", 5, 10, m=1, p="a", q="b")
        c = run(h, snap(-1, {"a": ["f", 5, ""]}), snap(100, {"b": ["f", 5, ""]}))
        self.assertEqual(c.violations, [])

    def test_listing_without_a_name_there_throughout_fails(self):
        h = H()
        h.add("readdir", 0, 20, m=2, p="", val={"b": "f"})
        h.add("rename", 5, 10, m=1, p="b", q="d")
        c = run(h, snap(-1, {"a": ["f", 5, ""], "b": ["f", 6, ""]}),
                snap(100, {"a": ["f", 5, ""], "d": ["f", 6, ""]}))
        self.assertEqual(len(c.violations), 1)

    def test_concurrent_renames_of_one_name_may_both_succeed(self):
        # the second is the kernel's no-op: its cached a led to the file
        # the first one had moved to b
        h = H()
        h.add("rename", 0, 20, m=1, p="a", q="b")
        h.add("rename", 10, 12, m=2, p="a", q="b")
        c = run(h, snap(-1, {"a": ["f", 5, ""]}), snap(100, {"b": ["f", 5, ""]}))
        self.assertEqual(c.violations, [])

    def test_rename_of_a_missing_name_to_a_missing_name_fails(self):
        h = H()
        h.add("rename", 10, 12, m=2, p="a", q="b")
        c = run(h, snap(-1, {}), snap(100, {}))
        self.assertEqual(len(c.violations), 1)

    def test_mounts_that_differ_fail(self):
        h = H()
        after = snap(100, {"a": ["f", 5, ""]})
        after["mounts"]["2"]["0"] = {}
        c = run(h, snap(-1, {"a": ["f", 5, ""]}), after)
        self.assertTrue(any("differ" in v for v in c.violations))


class ContentTests(unittest.TestCase):
    def test_close_to_open_passes(self):
        h = H()
        h.add("write", 0, 10, m=1, p="a", ino=5, v=W, phase="opened")
        h.add("read", 20, 21, m=2, p="a", val=[5, W])
        h.add("write", 30, 40, m=2, p="a", ino=5, v=W2, phase="opened")
        h.add("read", 35, 45, m=1, p="a", val=[5, W])  # concurrent: old is fine
        c = run(h, snap(-1, {"a": ["f", 5, ""]}), snap(100, {"a": ["f", 5, W2]}))
        self.assertEqual(c.violations, [])

    def test_stale_read_fails(self):
        h = H()
        h.add("write", 0, 10, m=1, p="a", ino=5, v=W, phase="opened")
        h.add("write", 20, 30, m=1, p="a", ino=5, v=W2, phase="opened")
        h.add("read", 40, 41, m=2, p="a", val=[5, W])
        c = run(h, snap(-1, {"a": ["f", 5, ""]}), snap(100, {"a": ["f", 5, W2]}))
        self.assertEqual(len(c.violations), 1)
        self.assertIn("contents not linearizable", c.violations[0])

    def test_stale_read_passes_while_the_node_had_no_leader(self):
        h = H()
        h.add("write", 0, 10, m=1, p="a", ino=5, v=W, phase="opened")
        h.add("write", 20, 30, m=1, p="a", ino=5, v=W2, phase="opened")
        h.add("read", 40, 41, m=2, p="a", val=[5, W])
        c = run(h, snap(-1, {"a": ["f", 5, ""]}), snap(100, {"a": ["f", 5, W2]}),
                {2: [(35 * 10**6, 50 * 10**6)]})
        self.assertEqual(c.violations, [])

    def test_read_of_a_value_never_written_fails_even_without_leader(self):
        h = H()
        h.add("read", 40, 41, m=2, p="a", val=[5, "garbage"])
        c = run(h, snap(-1, {"a": ["f", 5, ""]}), snap(100, {"a": ["f", 5, ""]}),
                {2: [(35 * 10**6, 50 * 10**6)]})
        self.assertTrue(any("no write wrote" in v for v in c.violations))

    def test_lost_write_fails(self):
        h = H()
        h.add("write", 0, 10, m=1, p="a", ino=5, v=W, phase="opened")
        c = run(h, snap(-1, {"a": ["f", 5, ""]}), snap(100, {"a": ["f", 5, ""]}))
        self.assertEqual(len(c.violations), 1)

    def test_write_applied_twice_fails(self):
        # W comes back after W2 overwrote it
        h = H()
        h.add("write", 0, 10, m=1, p="a", ino=5, v=W, phase="opened")
        h.add("write", 20, 30, m=2, p="a", ino=5, v=W2, phase="opened")
        c = run(h, snap(-1, {"a": ["f", 5, ""]}), snap(100, {"a": ["f", 5, W]}))
        self.assertEqual(len(c.violations), 1)

    def test_ambiguous_write_may_land(self):
        h = H()
        h.add("write", 0, 10, m=1, p="a", ino=5, v=W, res="info", err="EIO",
              phase="opened")
        for final in ("", W):
            c = run(h, snap(-1, {"a": ["f", 5, ""]}), snap(100, {"a": ["f", 5, final]}))
            self.assertEqual(c.violations, [], final)


class LockTests(unittest.TestCase):
    def lock(self, h, s, acq, rel_s, e, m, **kw):
        return h.add("lock", s, e, m=m, p="a", ino=5, acq_e=acq * 10**6,
                     rel_s=rel_s * 10**6, rel_e=e * 10**6, phase="unlocked", **kw)

    def test_exclusive_holds_pass(self):
        h = H()
        self.lock(h, 0, 5, 10, 15, 1)
        self.lock(h, 12, 16, 20, 25, 2)
        h.add("lock", 6, 9, m=2, p="a", ino=5, res="fail", err="EAGAIN", phase="opened")
        c = run(h, snap(-1, {"a": ["f", 5, ""]}), snap(100, {"a": ["f", 5, ""]}))
        self.assertEqual(c.violations, [])

    def test_two_holders_at_once_fail(self):
        h = H()
        self.lock(h, 0, 5, 10, 15, 1)
        self.lock(h, 1, 6, 12, 16, 2)
        c = run(h, snap(-1, {"a": ["f", 5, ""]}), snap(100, {"a": ["f", 5, ""]}))
        self.assertTrue(any("held at once" in v for v in c.violations))

    def test_refusal_without_holder_fails(self):
        h = H()
        self.lock(h, 0, 5, 10, 15, 1)
        h.add("lock", 20, 22, m=2, p="a", ino=5, res="fail", err="EAGAIN", phase="opened")
        c = run(h, snap(-1, {"a": ["f", 5, ""]}), snap(100, {"a": ["f", 5, ""]}))
        self.assertTrue(any("nobody could hold" in v for v in c.violations))


if __name__ == "__main__":
    unittest.main(verbosity=1)

#!/usr/bin/env python3
"""fault_workload.py - the client side of tests/e2e/fault_history.sh.

    fault_workload.py run --mounts M1,M2,... --ctl DIR --out HISTORY [--seed S]
    fault_workload.py snapshot --mounts M1,... --ctl DIR --out SNAP.json
    fault_workload.py setup --mount M --groups G

run:  drives every mount at once (CLIENTS threads per mount) with create,
      write+fsync, rename, unlink, mkdir, rmdir, stat, readdir, read and
      OFD-lock operations on a small key space, and appends one JSON line
      per operation to HISTORY: its start and end (CLOCK_MONOTONIC ns, one
      machine), the mount and the mount's life ("gen") it ran on, and its
      result: "ok" (with a value), "fail" (a definite errno) or "info"
      (EIO, ENOTCONN, ETIMEDOUT, EINTR and any errno the operation cannot
      definitely produce: it may or may not have happened).
      The harness steers it with files in DIR:
        gen<i>   the life number of mount i (its content), or "down": a
                 client skips operations on a mount that is down.
        pause    clients finish the operation they are in and wait; when
                 all wait the workload writes DIR/paused (and removes it
                 when they go on).
        stop     clients end; the workload exits.
      The key space: G groups (directories g0..g<G-1>, made by setup and
      never touched by the workload), each with the file names a, b, d/f,
      e/f and the directory names d, e. Files are created, renamed (onto
      file names only), unlinked, written, read and locked; directories
      are only made and removed, never renamed: a node resolves a path
      from its kernel's cache (a local read), and a directory moved away
      meanwhile would take a create or rename somewhere the path no
      longer names, which the path-level model cannot tell from a bug.
      A directory removed meanwhile is answered with ESTALE, and the
      kernel resolves the path again. Operations never cross groups, so
      the checker checks each group on its own.
snapshot: walks every given mount (all must be up) and writes what each
      holds: per group, path -> [type, ino, content]. The checker compares
      the mounts and uses the first as the state between two rounds.
"""
import argparse
import errno
import fcntl
import json
import os
import random
import stat
import struct
import sys
import threading
import time

FILES = ["a", "b", "d/f", "e/f"]
DIRS = ["d", "e"]
PATHS = FILES + DIRS
TOKEN_LEN = 24
CLIENTS = 2
# errnos an operation can produce from a definite outcome; any other is
# "info" (ambiguous)
DEFINITE = {
    "create": {errno.EEXIST, errno.ENOENT, errno.ENOTDIR, errno.EISDIR},
    "mkdir": {errno.EEXIST, errno.ENOENT, errno.ENOTDIR},
    "rmdir": {errno.ENOENT, errno.ENOTDIR, errno.ENOTEMPTY, errno.EEXIST},
    "unlink": {errno.ENOENT, errno.ENOTDIR, errno.EISDIR},
    "rename": {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY,
               errno.EEXIST, errno.EINVAL},
    "stat": {errno.ENOENT, errno.ENOTDIR},
    "readdir": {errno.ENOENT, errno.ENOTDIR},
    "write": {errno.ENOENT, errno.ENOTDIR, errno.EISDIR},
    "read": {errno.ENOENT, errno.ENOTDIR, errno.EISDIR},
    "lock": {errno.ENOENT, errno.ENOTDIR, errno.EISDIR},
}
# mutations: weights of the op mix
MIX = [("create", 14), ("write", 16), ("rename", 10), ("unlink", 8),
       ("mkdir", 8), ("rmdir", 6), ("stat", 14), ("readdir", 8),
       ("read", 12), ("lock", 6)]


def mono():
    return time.monotonic_ns()


def ename(e):
    return errno.errorcode.get(e, str(e))


def flock_struct(ltype):
    # struct flock on Linux x86-64/aarch64: short l_type, short l_whence,
    # off_t l_start, off_t l_len, pid_t l_pid (native alignment, 32 bytes)
    b = struct.pack("@hhqqi", ltype, os.SEEK_SET, 0, 0, 0)
    return b + b"\0" * (32 - len(b))


F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)


class Stop(Exception):
    pass


class Workload:
    def __init__(self, mounts, ctl, out, groups, seed, think_ms):
        self.mounts = mounts
        self.ctl = ctl
        self.out = open(out, "a", buffering=1)
        self.groups = groups
        self.seed = seed
        self.think_ms = think_ms
        self.lock = threading.Lock()
        self.next_id = 0
        self.waiting = 0
        self.nclients = 0
        self.cond = threading.Condition(self.lock)

    def emit(self, rec):
        with self.lock:
            rec["id"] = self.next_id
            self.next_id += 1
            self.out.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def gen(self, i):
        try:
            with open(os.path.join(self.ctl, "gen%d" % i)) as f:
                return f.read().strip()
        except OSError:
            return "down"

    def gate(self):
        """Wait while paused; raise Stop when told to stop."""
        if os.path.exists(os.path.join(self.ctl, "stop")):
            raise Stop()
        if not os.path.exists(os.path.join(self.ctl, "pause")):
            return
        with self.lock:
            self.waiting += 1
            if self.waiting == self.nclients:
                open(os.path.join(self.ctl, "paused"), "w").close()
        try:
            while os.path.exists(os.path.join(self.ctl, "pause")):
                if os.path.exists(os.path.join(self.ctl, "stop")):
                    raise Stop()
                time.sleep(0.05)
        finally:
            with self.lock:
                self.waiting -= 1
                try:
                    os.unlink(os.path.join(self.ctl, "paused"))
                except OSError:
                    pass

    # ---- one operation ---------------------------------------------------

    def do_op(self, rng, cid, root, op, g, args):
        """Runs one operation; fills args as it goes (so a failed one keeps
        what was chosen) and args["phase"]: "call" until a file is open,
        then how far it got. Returns the value of a successful one."""
        p = rng.choice(DIRS if op in ("mkdir", "rmdir") else
                       PATHS if op == "stat" else FILES)
        args.update(g=g, p=p, phase="call")
        full = os.path.join(root, "g%d" % g, p)
        val = None
        if op == "create":
            fd = os.open(full, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            try:
                val = os.fstat(fd).st_ino
            finally:
                os.close(fd)
        elif op == "mkdir":
            os.mkdir(full, 0o755)
        elif op == "rmdir":
            os.rmdir(full)
        elif op == "unlink":
            os.unlink(full)
        elif op == "rename":
            q = rng.choice([x for x in FILES if x != p])
            args["q"] = q
            os.rename(full, os.path.join(root, "g%d" % g, q))
        elif op == "stat":
            st = os.lstat(full)
            val = ["d" if stat.S_ISDIR(st.st_mode) else "f", st.st_ino]
        elif op == "readdir":
            args["p"] = ""
            d = os.path.join(root, "g%d" % g)
            ents = {}
            with os.scandir(d) as it:
                for e in it:
                    ents[e.name] = "d" if e.is_dir(follow_symlinks=False) else "f"
            val = ents
        elif op == "write":
            tok = ("w%d.%d.%x" % (cid, self.seed, rng.getrandbits(40)))
            tok = tok.ljust(TOKEN_LEN, "-")[:TOKEN_LEN]
            args["v"] = tok
            fd = os.open(full, os.O_WRONLY)
            args["phase"] = "opened"
            try:
                args["ino"] = os.fstat(fd).st_ino
                os.pwrite(fd, tok.encode(), 0)
                os.fsync(fd)
            finally:
                os.close(fd)
        elif op == "read":
            fd = os.open(full, os.O_RDONLY)
            try:
                ino = os.fstat(fd).st_ino
                data = os.pread(fd, 4096, 0)
            finally:
                os.close(fd)
            val = [ino, data.decode("latin-1")]
        elif op == "lock":
            fd = os.open(full, os.O_RDWR)
            args["phase"] = "opened"
            try:
                args["ino"] = os.fstat(fd).st_ino
                fcntl.fcntl(fd, F_OFD_SETLK, flock_struct(fcntl.F_WRLCK))
                args["acq_e"] = mono()
                args["phase"] = "locked"
                time.sleep(rng.random() * 0.02)
                args["rel_s"] = mono()
                fcntl.fcntl(fd, F_OFD_SETLK, flock_struct(fcntl.F_UNLCK))
                args["rel_e"] = mono()
                args["phase"] = "unlocked"
            finally:
                os.close(fd)
        return val

    def client(self, cid, mi, root):
        rng = random.Random(self.seed * 1000 + cid)
        ops = [o for o, w in MIX for _ in range(w)]
        try:
            while True:
                self.gate()
                gen = self.gen(mi)
                if gen == "down":
                    time.sleep(0.1)
                    continue
                op = rng.choice(ops)
                g = rng.randrange(self.groups)
                rec = {"c": cid, "m": mi, "gen": gen, "op": op}
                args = {}
                s = mono()
                try:
                    val = self.do_op(rng, cid, root, op, g, args)
                    rec["res"] = "ok"
                    if val is not None:
                        rec["val"] = val
                except OSError as e:
                    en = e.errno or 0
                    rec["err"] = ename(en)
                    ph = args.get("phase")
                    definite = (en in DEFINITE[op] and ph == "call") or (
                        op == "lock" and ph == "opened" and
                        en in (errno.EAGAIN, errno.EACCES, errno.ENOLCK))
                    rec["res"] = "fail" if definite else "info"
                    if en == errno.ENOTCONN:
                        time.sleep(0.05)
                rec["s"] = s
                rec["e"] = mono()
                rec.update(args)
                self.emit(rec)
                if self.think_ms:
                    time.sleep(rng.random() * self.think_ms / 1000.0)
        except Stop:
            return

    def run(self):
        self.emit({"op": "clock", "mono": mono(), "wall": time.time_ns(),
                   "res": "meta", "s": 0, "e": 0})
        threads = []
        cid = 0
        for mi, root in self.mounts:
            for _ in range(CLIENTS):
                cid += 1
                t = threading.Thread(target=self.client, args=(cid, mi, root),
                                     daemon=True)
                threads.append(t)
        self.nclients = len(threads)
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def _raise(e):
    raise e


def snapshot(mounts, groups):
    """path -> [type, ino, content] per group, for each mount."""
    res = {}
    for mi, root in mounts:
        gs = {}
        for g in range(groups):
            base = os.path.join(root, "g%d" % g)
            st = {}
            # everything in the group (renames can carry a directory's
            # child to a path outside PATHS, e.g. a/x -> d/x/x)
            for dp, dns, fns in os.walk(base, onerror=_raise):
                for n in sorted(dns + fns):
                    full = os.path.join(dp, n)
                    rel = os.path.relpath(full, base)
                    s = os.lstat(full)
                    if stat.S_ISDIR(s.st_mode):
                        st[rel] = ["d", s.st_ino, None]
                    else:
                        with open(full, "rb") as f:
                            st[rel] = ["f", s.st_ino, f.read().decode("latin-1")]
            gs[str(g)] = st
        res[str(mi)] = gs
    return res


def parse_mounts(s):
    out = []
    for item in s.split(","):
        i, path = item.split("=", 1)
        out.append((int(i), path))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["run", "snapshot", "setup"])
    ap.add_argument("--mounts", help="I=PATH,... (PATH: the test root in mount I)")
    ap.add_argument("--mount", help="setup: the test root")
    ap.add_argument("--ctl")
    ap.add_argument("--out")
    ap.add_argument("--groups", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--think-ms", type=int, default=30)
    a = ap.parse_args()
    if a.cmd == "setup":
        for g in range(a.groups):
            os.makedirs(os.path.join(a.mount, "g%d" % g), exist_ok=True)
        return 0
    mounts = parse_mounts(a.mounts)
    if a.cmd == "snapshot":
        snap = snapshot(mounts, a.groups)
        with open(a.out, "w") as f:
            json.dump({"mono": mono(), "mounts": snap}, f)
        return 0
    Workload(mounts, a.ctl, a.out, a.groups, a.seed, a.think_ms).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

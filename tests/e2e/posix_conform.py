#!/usr/bin/env python3
"""posix_conform.py — the same operation sequences on a reference
filesystem (tmpfs) and on sandfs, compared observation by observation.

    posix_conform.py [--only NAME,...] [--list] REF FS FS2
    posix_conform.py append2 PATH PATH2 N

REF is a directory on the reference filesystem, FS a directory on a sandfs
mount and FS2 the same directory seen through another node's mount. Every
case runs twice: once with REF as both "this node" and "the other node",
once with FS and FS2. Each step records an observation: the errno of a
call (or "ok"), a stat summary (type and mode, nlink, uid, gid, size;
directory sizes are left out, every filesystem counts them its own way),
which of atime/mtime/ctime a call changed on the object and on its parent
directory, raw ACL xattrs, getfacl output. A case passes when both runs
give the same observations. Observations made through the other node
(FS2) may be retried for a few seconds until they match, since that node
applies changes a moment later. After each case every path it touched is
compared between FS and FS2 (stat, times to the nanosecond, ACLs).

Parts run as unprivileged users (fork + setresuid; numeric ids, no
accounts needed): A (uid 2001, groups 2001 and 2100), B (uid 2002, group
2002). Run as root, with the sandfs mounts made with allow_other. The
reference must be mounted noatime: sandfs, like every FUSE filesystem,
changes atime only when told to (utimensat, create), never on read.

append2: O_APPEND writes to one file through two nodes' paths (PATH,
PATH2), in turns and at the same time; no line may be lost or torn.

Prints PASS/FAIL lines, one per case; exits 1 when a case failed.
"""
import errno
import os
import pickle
import stat
import subprocess
import sys
import time

UA, GA, GSHARED = 2001, 2001, 2100
UB, GB = 2002, 2002
TICK = 0.03  # between a snapshot and the call: above any clock granularity
SETTLE = 5.0  # the other node's view may lag this long


def ename(e):
    return errno.errorcode.get(e, str(e))


def call(fn, *args):
    """Result of fn: "ok", its return value (if not None), or an errno."""
    try:
        r = fn(*args)
        return "ok" if r is None else r
    except OSError as e:
        return ename(e.errno)


def as_user(uid, gid, groups, fn, umask=0o022):
    """Run fn in a child with those credentials; its result (or the
    exception's repr) comes back through a pipe."""
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rd)
        try:
            os.setgroups(groups)
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.umask(umask)
            res = ("ok", fn())
        except BaseException as e:  # noqa: B902 — reported to the parent
            res = ("exc", repr(e))
        with os.fdopen(wr, "wb") as f:
            f.write(pickle.dumps(res))
        os._exit(0)
    os.close(wr)
    with os.fdopen(rd, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    kind, val = pickle.loads(data) if data else ("exc", "no result")
    if kind == "exc":
        return "EXC " + val
    return val


def user_a(fn, umask=0o022):
    return as_user(UA, GA, [GA, GSHARED], fn, umask)


def user_b(fn, umask=0o022):
    return as_user(UB, GB, [GB], fn, umask)


def summary(path, follow=False):
    """Type+mode, nlink, uid, gid, size (not for directories) or errno."""
    try:
        s = os.stat(path) if follow else os.lstat(path)
    except OSError as e:
        return ename(e.errno)
    d = {"mode": oct(s.st_mode), "nlink": s.st_nlink, "uid": s.st_uid, "gid": s.st_gid}
    if not stat.S_ISDIR(s.st_mode):
        d["size"] = s.st_size
    return d


def times(path):
    try:
        s = os.lstat(path)
        return (s.st_atime_ns, s.st_mtime_ns, s.st_ctime_ns)
    except OSError:
        return None


def ident_times(path):
    """(inode, times) of path, or None."""
    try:
        s = os.lstat(path)
        return s.st_ino, (s.st_atime_ns, s.st_mtime_ns, s.st_ctime_ns)
    except OSError:
        return None


def changed(before, after):
    """Which of a/m/c differ ("" for none, "gone", "new")."""
    if before is None and after is None:
        return "absent"
    if after is None:
        return "gone"
    if before is None:
        return "new" + ("=" if after[0] == after[1] == after[2] else "!")
    return "".join(x for x, b, a in zip("amc", before, after) if a != b) or "-"


def getxattr(path, name):
    try:
        return os.getxattr(path, name, follow_symlinks=False).hex()
    except OSError as e:
        return ename(e.errno)


def listxattr(path):
    try:
        return sorted(os.listxattr(path, follow_symlinks=False))
    except OSError as e:
        return ename(e.errno)


def getfacl(path):
    d, b = os.path.split(path)
    r = subprocess.run(["getfacl", "-n", b], cwd=d, capture_output=True, text=True)
    return (r.stdout + r.stderr.replace(d, "DIR")).strip()


def setfacl(path, *args):
    d, b = os.path.split(path)
    r = subprocess.run(["setfacl", *args, b], cwd=d, capture_output=True, text=True)
    return "ok" if r.returncode == 0 else "fail: " + r.stderr.strip().split(": ")[-1]


def write_file(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode=0o644):
    fd = os.open(path, flags, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def acl_bytes(*ents):
    """A posix_acl_xattr value: entries (tag, perm, id)."""
    b = (2).to_bytes(4, "little")
    for tag, perm, ident in ents:
        b += tag.to_bytes(2, "little") + perm.to_bytes(2, "little") + ident.to_bytes(4, "little")
    return b


UOBJ, USER, GOBJ, GROUP, MASK, OTHER = 1, 2, 4, 8, 0x10, 0x20
NOID = 0xFFFFFFFF


class Ctx:
    """One run of a case: observations, the two views, and (for the sandfs
    run) the reference's observations to retry the other node's against."""

    def __init__(self, root, root2, expect):
        self.root, self.root2, self.expect = root, root2, expect
        self.obs = []
        self.paths = set()

    def p(self, name=""):
        self.paths.add(name)
        return os.path.join(self.root, name) if name else self.root

    def q(self, name=""):
        return os.path.join(self.root2, name) if name else self.root2

    def rec(self, label, value):
        self.obs.append((label, value))
        return value

    def rec_eventually(self, label, fn):
        """Record fn(); on the sandfs run retry it until it equals the
        reference's observation or SETTLE runs out (other node's view)."""
        v = fn()
        i = len(self.obs)
        if self.expect is not None and i < len(self.expect):
            want = self.expect[i][1]
            end = time.monotonic() + SETTLE
            while v != want and time.monotonic() < end:
                time.sleep(0.05)
                v = fn()
        return self.rec(label, v)

    def do(self, label, fn, *args):
        return self.rec(label, call(fn, *args))

    def st(self, label, name, follow=False):
        return self.rec(label, summary(self.p(name), follow))

    def st2(self, label, name):
        return self.rec_eventually(label + " (other node)", lambda: summary(self.q(name)))

    def watch(self, label, names, fn, *args, **kw):
        """Call fn and record its result and what changed in the times of
        each of names (paths relative to the root). A name that names
        another inode afterwards (a rename moved one there) is compared
        with that inode's own times before the call, when it was one of
        names, else recorded as "new"."""
        before = [ident_times(self.p(n)) for n in names]
        by_ino = {b[0]: b[1] for b in before if b}
        time.sleep(TICK)
        r = call(lambda: fn(*args, **kw))
        self.rec(label, r)
        for n, b in zip(names, before):
            a = ident_times(self.p(n))
            if a is None:
                v = changed(b and b[1], None)
            elif b is not None and a[0] == b[0]:
                v = changed(b[1], a[1])
            elif a[0] in by_ino:
                v = "moved here, " + changed(by_ino[a[0]], a[1])
            else:
                v = changed(None, a[1])
            self.rec(label + " times " + (n or "."), v)
        return r


CASES = []


def case(fn):
    CASES.append(fn)
    return fn


# ---- times of each operation, on the object and its parent -------------

@case
def times_create_mkdir_symlink_mknod(c):
    os.mkdir(c.p("d"))
    c.watch("create", ["d", "d/f"], write_file, c.p("d/f"), b"")
    c.st("create", "d/f")
    c.watch("mkdir", ["d", "d/s"], os.mkdir, c.p("d/s"), 0o750)
    c.st("mkdir parent", "d")
    c.st("mkdir", "d/s")
    c.watch("symlink", ["d", "d/l"], os.symlink, "f", c.p("d/l"))
    c.st("symlink", "d/l")
    c.watch("mkfifo", ["d", "d/p"], os.mkfifo, c.p("d/p"), 0o640)
    c.st("mkfifo", "d/p")
    c.watch("create existing O_EXCL", ["d", "d/f"], os.open, c.p("d/f"),
            os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    c.watch("mkdir existing", ["d"], os.mkdir, c.p("d/s"))
    c.st2("create", "d/f")


@case
def times_unlink_rmdir_link(c):
    os.mkdir(c.p("d"))
    os.mkdir(c.p("d/s"))
    write_file(c.p("d/f"), b"x")
    c.watch("link", ["d", "d/f"], os.link, c.p("d/f"), c.p("d/g"))
    c.st("link", "d/f")
    c.watch("link to a directory", ["d"], os.link, c.p("d/s"), c.p("d/t"))
    c.watch("link existing", ["d", "d/f"], os.link, c.p("d/f"), c.p("d/g"))
    c.watch("unlink one of two", ["d", "d/g"], os.unlink, c.p("d/f"))
    c.st("unlink one of two", "d/g")
    c.watch("unlink a directory", ["d"], os.unlink, c.p("d/s"))
    c.watch("rmdir a file", ["d"], os.rmdir, c.p("d/g"))
    write_file(c.p("d/s/x"), b"")
    c.watch("rmdir non-empty", ["d", "d/s"], os.rmdir, c.p("d/s"))
    os.unlink(c.p("d/s/x"))
    c.watch("rmdir", ["d", "d/s"], os.rmdir, c.p("d/s"))
    c.st("rmdir parent", "d")
    c.st2("rmdir parent", "d")
    c.do("unlink missing", os.unlink, c.p("d/nothing"))


@case
def times_rename(c):
    for d in ("a", "b", "a/sd", "b/full"):
        os.mkdir(c.p(d))
    write_file(c.p("a/f"), b"1")
    write_file(c.p("b/v"), b"22")
    os.link(c.p("b/v"), c.p("b/v2"))
    write_file(c.p("b/full/x"), b"")
    os.mkdir(c.p("b/empty"))
    c.watch("rename in dir", ["a", "a/f", "a/g"], os.rename, c.p("a/f"), c.p("a/g"))
    c.watch("rename across dirs over a file", ["a", "b", "a/g", "b/v2"], os.rename,
            c.p("a/g"), c.p("b/v"))
    c.st("victim with another link", "b/v2")
    c.watch("rename dir across", ["a", "b", "a/sd"], os.rename, c.p("a/sd"), c.p("b/sd"))
    c.st("nlink a", "a")
    c.st("nlink b", "b")
    c.watch("rename dir over empty dir", ["b", "b/sd", "b/empty"], os.rename,
            c.p("b/sd"), c.p("b/empty"))
    c.st("nlink b after", "b")
    os.mkdir(c.p("b/sd"))
    c.watch("rename dir over non-empty dir", ["b", "b/sd", "b/full"], os.rename,
            c.p("b/sd"), c.p("b/full"))
    c.watch("rename file over dir", ["b"], os.rename, c.p("b/v"), c.p("b/sd"))
    c.watch("rename dir over file", ["b"], os.rename, c.p("b/sd"), c.p("b/v"))
    c.watch("rename dir into itself", ["b"], os.rename, c.p("b/full"), c.p("b/full/x2"))
    c.watch("rename onto itself", ["b", "b/v"], os.rename, c.p("b/v"), c.p("b/v"))
    os.link(c.p("b/v"), c.p("b/twin"))
    c.watch("rename hard link onto its twin", ["b", "b/v", "b/twin"], os.rename,
            c.p("b/v"), c.p("b/twin"))
    c.st("twin", "b/twin")
    c.watch("rename missing", ["b"], os.rename, c.p("b/nope"), c.p("b/x"))
    c.do("rename to dot", os.rename, c.p("b/v"), c.p("b/."))
    c.st2("after renames", "b")
    c.st2("after renames", "b/empty")


@case
def times_attrs_and_xattrs(c):
    write_file(c.p("f"), b"hello")
    c.watch("chmod", ["", "f"], os.chmod, c.p("f"), 0o600)
    c.st("chmod", "f")
    c.watch("chown", ["", "f"], os.chown, c.p("f"), UA, GA)
    c.st("chown", "f")
    c.watch("chown -1 -1", ["f"], os.chown, c.p("f"), -1, -1)
    c.watch("setxattr", ["", "f"], os.setxattr, c.p("f"), "user.k", b"v")
    c.watch("setxattr create existing", ["f"], os.setxattr, c.p("f"), "user.k", b"w",
            os.XATTR_CREATE)
    c.watch("removexattr", ["f"], os.removexattr, c.p("f"), "user.k")
    c.watch("removexattr missing", ["f"], os.removexattr, c.p("f"), "user.k")
    c.watch("truncate shorter", ["", "f"], os.truncate, c.p("f"), 2)
    c.watch("truncate longer", ["f"], os.truncate, c.p("f"), 10)
    c.watch("truncate same size", ["f"], os.truncate, c.p("f"), 10)
    c.st("truncate", "f")
    c.watch("open O_TRUNC", ["f"], lambda: os.close(os.open(c.p("f"), os.O_WRONLY | os.O_TRUNC)))
    c.watch("open O_TRUNC empty", ["f"], lambda: os.close(os.open(c.p("f"), os.O_WRONLY | os.O_TRUNC)))
    c.watch("open O_RDONLY|O_TRUNC", ["f"], lambda: os.close(os.open(c.p("f"), os.O_RDONLY)))
    c.st2("after attrs", "f")


@case
def times_write(c):
    write_file(c.p("f"), b"")

    def wr(data, close_first=False):
        fd = os.open(c.p("f"), os.O_WRONLY)
        os.write(fd, data)
        os.close(fd)

    c.watch("write", ["", "f"], wr, b"abc")
    c.st("write", "f")
    c.watch("write nothing", ["f"], wr, b"")
    fd = os.open(c.p("f"), os.O_RDWR)
    c.watch("write, still open", ["f"], os.write, fd, b"0123456789")
    c.rec("fstat size, still open", os.fstat(fd).st_size)
    c.watch("close", ["f"], os.close, fd)
    c.watch("read", ["f"], read_file, c.p("f"))
    fd = os.open(c.p("f"), os.O_WRONLY)
    os.write(fd, b"more")
    c.watch("futimens before close", ["f"], os.utime, fd, ns=(3_000_000_000, 4_000_000_000))
    c.watch("close after futimens", ["f"], os.close, fd)
    c.rec("times kept", times(c.p("f"))[:2])
    c.st2("after write", "f")
    c.rec_eventually("content (other node)", lambda: call(read_file, c.q("f")))


@case
def times_utimensat(c):
    write_file(c.p("f"), b"")
    os.mkdir(c.p("d"))
    c.watch("utime NOW NOW", ["f"], os.utime, c.p("f"))
    c.watch("utime explicit", ["f"], os.utime, c.p("f"), ns=(1_000_000_123, 2_000_000_456))
    c.rec("explicit values", times(c.p("f"))[:2])
    # UTIME_OMIT / UTIME_NOW through utimensat(2) via ctypes
    c.watch("utimensat OMIT atime, mtime given", ["f"], utimensat, c.p("f"),
            ("omit", (5, 6)))
    c.rec("after OMIT atime", times(c.p("f"))[1])
    c.watch("utimensat NOW atime, OMIT mtime", ["f"], utimensat, c.p("f"), ("now", "omit"))
    c.watch("utimensat OMIT OMIT", ["f"], utimensat, c.p("f"), ("omit", "omit"))
    c.watch("utime on dir", ["d", ""], os.utime, c.p("d"), ns=(7, 8))
    os.symlink("f", c.p("l"))
    c.watch("utime on symlink itself", ["l", "f"], utimensat, c.p("l"), ((9, 10), (11, 12)),
            True)
    c.rec("symlink times", times(c.p("l"))[:2])
    os.chmod(c.p("f"), 0o666)
    c.rec("user B: utime NOW on a file it may write",
          user_b(lambda: call(os.utime, c.p("f"))))
    c.rec("user B: utime explicit on a file it does not own",
          user_b(lambda: call(os.utime, c.p("f"), None, (1, 2))))
    os.chmod(c.p("f"), 0o644)
    c.rec("user B: utime NOW without write permission",
          user_b(lambda: call(os.utime, c.p("f"))))
    c.rec_eventually("times (other node)", lambda: times(c.q("l"))[:2])


def utimensat(path, spec, nofollow=False):
    """utimensat(AT_FDCWD, path, times) with ("now"|"omit"|(sec, nsec)) x2."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    class TS(ctypes.Structure):
        _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]

    UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
    ts = (TS * 2)()
    for i, s in enumerate(spec):
        if s == "now":
            ts[i].sec, ts[i].nsec = 0, UTIME_NOW
        elif s == "omit":
            ts[i].sec, ts[i].nsec = 0, UTIME_OMIT
        else:
            ts[i].sec, ts[i].nsec = s
    AT_FDCWD, AT_SYMLINK_NOFOLLOW = -100, 0x100
    r = libc.utimensat(AT_FDCWD, os.fsencode(path), ts, AT_SYMLINK_NOFOLLOW if nofollow else 0)
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


# ---- directories: nlink, sticky, setgid ---------------------------------

@case
def dir_nlink(c):
    os.mkdir(c.p("d"))
    for i in range(3):
        os.mkdir(c.p("d/s%d" % i))
    write_file(c.p("d/f"), b"")
    c.st("3 subdirs + 1 file", "d")
    os.rmdir(c.p("d/s0"))
    c.st("after rmdir", "d")
    os.rename(c.p("d/s1"), c.p("s1"))
    c.st("after moving one out", "d")
    c.st("root gains it", "")
    c.st2("other node", "d")


@case
def sticky_dir(c):
    os.mkdir(c.p("t"))
    os.chmod(c.p("t"), 0o1777)
    c.st("sticky dir", "t")
    c.rec("A creates", user_a(lambda: call(write_file, c.p("t/a"), b"a")))
    c.rec("B creates", user_b(lambda: call(write_file, c.p("t/b"), b"b")))
    c.rec("B unlinks A's file", user_b(lambda: call(os.unlink, c.p("t/a"))))
    c.rec("B renames A's file", user_b(lambda: call(os.rename, c.p("t/a"), c.p("t/x"))))
    c.rec("B renames over A's file", user_b(lambda: call(os.rename, c.p("t/b"), c.p("t/a"))))
    c.rec("A unlinks its own file", user_a(lambda: call(os.unlink, c.p("t/a"))))
    c.rec("root unlinks B's file", call(os.unlink, c.p("t/b")))
    os.chmod(c.p("t"), 0o777)
    c.rec("B creates again", user_b(lambda: call(write_file, c.p("t/b"), b"b")))
    c.rec("A unlinks B's file without sticky", user_a(lambda: call(os.unlink, c.p("t/b"))))
    # the sticky bit set on one node binds users of the other
    os.chmod(c.p("t"), 0o1777)
    c.rec("B creates on this node", user_b(lambda: call(write_file, c.p("t/b2"), b"b")))
    c.rec_eventually("A unlinks B's file on the other node",
                     lambda: user_a(lambda: call(os.stat, c.q("t/b2")) and
                                    call(os.unlink, c.q("t/b2"))))


@case
def setgid_dirs(c):
    os.mkdir(c.p("g"))
    os.chown(c.p("g"), 0, GSHARED)
    os.chmod(c.p("g"), 0o2775)
    write_file(c.p("g/f"), b"")
    c.st("root's file in setgid dir", "g/f")
    os.mkdir(c.p("g/sub"))
    c.st("subdir in setgid dir", "g/sub")
    os.mkdir(c.p("g/sub/deeper"))
    c.st("subdir of subdir", "g/sub/deeper")
    c.rec("B chmods a dir it does not own", user_b(lambda: call(os.chmod, c.p("g"), 0o2777)))
    os.chmod(c.p("g"), 0o2777)
    c.rec("B creates file S_ISGID", user_b(
        lambda: call(lambda: os.close(os.open(c.p("g/bf"), os.O_CREAT | os.O_WRONLY, 0o2755)))))
    c.st("B's file", "g/bf")
    c.rec("B mkdir", user_b(lambda: call(os.mkdir, c.p("g/bd"), 0o755)))
    c.st("B's dir", "g/bd")
    c.rec("A (in group) creates file S_ISGID", user_a(
        lambda: call(lambda: os.close(os.open(c.p("g/af"), os.O_CREAT | os.O_WRONLY, 0o2755)))))
    c.st("A's file", "g/af")
    # chmod g+s by an owner outside the group drops the bit silently
    c.rec("B chmods its file g+s", user_b(lambda: call(os.chmod, c.p("g/bf"), 0o2755)))
    c.st("B's file after chmod", "g/bf")
    c.st2("other node", "g/sub/deeper")


# ---- ownership and setuid/setgid clearing -------------------------------

@case
def chown_rules(c):
    write_file(c.p("f"), b"x")
    os.chmod(c.p("f"), 0o6755)
    c.st("setuid+setgid", "f")
    c.watch("root chown clears suid/sgid", ["f"], os.chown, c.p("f"), UA, GA)
    c.st("after chown", "f")
    os.chmod(c.p("f"), 0o6755)
    c.watch("root chown -1 -1", ["f"], os.chown, c.p("f"), -1, -1)
    c.st("after chown -1 -1", "f")
    os.chmod(c.p("f"), 0o6745)  # setgid without group exec: not cleared
    os.chown(c.p("f"), UA, GA)
    c.st("setgid without g+x after chown", "f")
    os.chown(c.p("f"), UA, GA)
    os.chmod(c.p("f"), 0o4755)
    c.rec("A chgrp to its other group", user_a(lambda: call(os.chown, c.p("f"), -1, GSHARED)))
    c.st("after A chgrp", "f")
    c.rec("A chgrp to a group it is not in", user_a(lambda: call(os.chown, c.p("f"), -1, GB)))
    c.rec("A chown to B", user_a(lambda: call(os.chown, c.p("f"), UB, -1)))
    c.rec("B chown A's file", user_b(lambda: call(os.chown, c.p("f"), UB, GB)))
    c.rec("B chmod A's file", user_b(lambda: call(os.chmod, c.p("f"), 0o777)))
    os.mkdir(c.p("d"))
    os.chmod(c.p("d"), 0o2755)
    os.chown(c.p("d"), UA, GA)
    c.st("dir keeps setgid on chown", "d")
    c.st2("other node", "f")


@case
def write_clears_setuid(c):
    write_file(c.p("f"), b"x")
    os.chown(c.p("f"), UA, GA)
    os.chmod(c.p("f"), 0o6777)
    c.rec("B writes A's setuid file", user_b(lambda: call(write_file, c.p("f"), b"y",
                                                          os.O_WRONLY)))
    c.st("after B's write", "f")
    os.chmod(c.p("f"), 0o6777)
    c.rec("owner A writes", user_a(lambda: call(write_file, c.p("f"), b"z", os.O_WRONLY)))
    c.st("after A's write", "f")
    os.chmod(c.p("f"), 0o6777)
    c.rec("root writes", call(write_file, c.p("f"), b"w", os.O_WRONLY))
    c.st("after root's write", "f")
    os.chmod(c.p("f"), 0o6777)
    c.rec("B truncates", user_b(lambda: call(os.truncate, c.p("f"), 0)))
    c.st("after B's truncate", "f")
    os.chmod(c.p("f"), 0o2767)  # setgid without group exec stays
    c.rec("B writes again", user_b(lambda: call(write_file, c.p("f"), b"v", os.O_WRONLY)))
    c.st("setgid without g+x after B's write", "f")
    os.chmod(c.p("f"), 0o2767)
    c.rec("B truncates again", user_b(lambda: call(os.truncate, c.p("f"), 0)))
    c.st("setgid without g+x after B's truncate", "f")
    os.chmod(c.p("f"), 0o2767)
    c.rec("A (in the group) truncates", user_a(lambda: call(os.truncate, c.p("f"), 1)))
    c.st("setgid without g+x after A's truncate", "f")
    for m in (0o6777, 0o2767):
        os.chmod(c.p("f"), m)
        c.rec("B opens O_TRUNC %o" % m, user_b(lambda: call(
            lambda: os.close(os.open(c.p("f"), os.O_WRONLY | os.O_TRUNC)))))
        c.st("after B's O_TRUNC %o" % m, "f")
        os.chmod(c.p("f"), m)
        c.rec("B ftruncates %o" % m, user_b(lambda: call(
            lambda: (lambda fd: (os.ftruncate(fd, 3), os.close(fd)))(
                os.open(c.p("f"), os.O_WRONLY)) and None)))
        c.st("after B's ftruncate %o" % m, "f")
    os.chmod(c.p("f"), 0o6777)
    c.rec_eventually("B writes on the other node", lambda: user_b(
        lambda: call(write_file, c.q("f"), b"u", os.O_WRONLY)))
    c.st2("after the other node's write", "f")


# ---- permission checks for unprivileged users ---------------------------

@case
def permissions(c):
    os.mkdir(c.p("priv"), 0o700)
    write_file(c.p("priv/f"), b"secret")
    write_file(c.p("ro"), b"r")
    os.chmod(c.p("ro"), 0o644)
    os.mkdir(c.p("pub"), 0o755)
    os.mkdir(c.p("grp"), 0o770)
    os.chown(c.p("grp"), 0, GSHARED)
    os.mkdir(c.p("xonly"), 0o711)
    write_file(c.p("xonly/f"), b"x")
    os.chmod(c.p("xonly/f"), 0o644)
    for who, run in (("A", user_a), ("B", user_b)):
        c.rec(who + " stat in 0700 dir", run(lambda: call(os.stat, c.p("priv/f")) and
                                             call(lambda: os.stat(c.p("priv/f")).st_size)))
        c.rec(who + " list 0700 dir", run(lambda: call(os.listdir, c.p("priv"))))
        c.rec(who + " read 0644", run(lambda: call(read_file, c.p("ro"))))
        c.rec(who + " write 0644", run(lambda: call(write_file, c.p("ro"), b"w", os.O_WRONLY)))
        c.rec(who + " create in 0755 dir", run(lambda: call(write_file, c.p("pub/n"), b"")))
        c.rec(who + " create in group dir", run(lambda: call(write_file, c.p("grp/" + who), b"")))
        c.rec(who + " unlink in 0755 dir", run(lambda: call(os.unlink, c.p("ro"))))
        c.rec(who + " list x-only dir", run(lambda: call(os.listdir, c.p("xonly"))))
        c.rec(who + " read through x-only dir", run(lambda: call(read_file, c.p("xonly/f"))))
        c.rec(who + " access R_OK|W_OK", run(lambda: os.access(c.p("ro"), os.R_OK | os.W_OK)))
        c.rec(who + " access X_OK", run(lambda: os.access(c.p("ro"), os.X_OK)))
        c.rec(who + " mkdir in 0700", run(lambda: call(os.mkdir, c.p("priv/d"))))
        c.rec(who + " rename out of group dir", run(
            lambda: call(os.rename, c.p("grp/" + who), c.p("pub/x"))))
    c.rec("root access X_OK on 0644", os.access(c.p("ro"), os.X_OK))
    # a change on this node decides what a user may do on the other one
    os.chmod(c.p("ro"), 0o600)
    c.rec_eventually("B reads 0600 on the other node",
                     lambda: user_b(lambda: call(read_file, c.q("ro"))))
    os.chmod(c.p("ro"), 0o604)
    c.rec_eventually("B reads 0604 on the other node",
                     lambda: user_b(lambda: call(read_file, c.q("ro"))))


# ---- names, links, open flags -------------------------------------------

@case
def names_and_loops(c):
    os.mkdir(c.p("d"))
    long = "n" * 256
    c.do("create 256-byte name", write_file, c.p("d/" + long), b"")
    c.do("stat 256-byte name", os.stat, c.p("d/" + long))
    c.do("mkdir 256-byte name", os.mkdir, c.p("d/" + long))
    c.do("create 255-byte name", write_file, c.p("d/" + "n" * 255), b"")
    c.do("rename to 256-byte name", os.rename, c.p("d/" + "n" * 255), c.p("d/" + long))
    c.do("symlink 256-byte name", os.symlink, "x", c.p("d/" + long))
    c.do("symlink target 4096 bytes", os.symlink, "t" * 4096, c.p("d/l4096"))
    c.do("symlink target 4095 bytes", os.symlink, "t" * 4095, c.p("d/l4095"))
    c.do("readlink 4095", lambda: len(os.readlink(c.p("d/l4095"))))
    c.do("path longer than PATH_MAX", os.stat, c.p("d/" + "/".join(["a" * 200] * 25)))
    os.symlink("b", c.p("d/a"))
    os.symlink("a", c.p("d/b"))
    c.do("open symlink loop", os.open, c.p("d/a"), os.O_RDONLY)
    c.do("stat symlink loop", os.stat, c.p("d/a"))
    write_file(c.p("d/t"), b"t")
    prev = "t"
    for i in range(45):
        os.symlink(prev, c.p("d/c%d" % i))
        prev = "c%d" % i
    c.do("40 links ok", lambda: len(read_file(c.p("d/c38"))))
    c.do("41+ links", read_file, c.p("d/c44"))
    c.do("O_NOFOLLOW on symlink", os.open, c.p("d/c0"), os.O_RDONLY | os.O_NOFOLLOW)
    c.do("O_EXCL on existing", os.open, c.p("d/t"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.symlink("dangling-target", c.p("d/dang"))
    c.do("O_EXCL on dangling symlink", os.open, c.p("d/dang"),
         os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    c.do("O_CREAT through dangling symlink", lambda: os.close(
        os.open(c.p("d/dang"), os.O_CREAT | os.O_WRONLY, 0o640)))
    c.st("created through symlink", "d/dangling-target")
    c.do("O_DIRECTORY on file", os.open, c.p("d/t"), os.O_RDONLY | os.O_DIRECTORY)
    c.do("O_WRONLY on dir", os.open, c.p("d"), os.O_WRONLY)
    c.do("file as a directory", os.stat, c.p("d/t/x"))
    c.do("O_EXCL race loser on other node", os.open, c.q("d/t"),
         os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    # no EXDEV inside one filesystem
    os.mkdir(c.p("d/x1"))
    os.mkdir(c.p("d/x1/x2"))
    c.do("rename across nested dirs", os.rename, c.p("d/t"), c.p("d/x1/x2/t"))
    c.do("link across nested dirs", os.link, c.p("d/x1/x2/t"), c.p("t2"))
    c.do("rename dir up two levels", os.rename, c.p("d/x1/x2"), c.p("x2"))


@case
def truncate_open_files(c):
    write_file(c.p("f"), b"hello world")
    fd = os.open(c.p("f"), os.O_RDWR)
    c.do("truncate by path while open", os.truncate, c.p("f"), 5)
    c.rec("fstat of the open fd", os.fstat(fd).st_size)
    c.rec("read through the open fd", os.pread(fd, 100, 0))
    c.rec("write past the end at old offset", os.pwrite(fd, b"XY", 8))
    c.rec("size", os.fstat(fd).st_size)
    os.close(fd)
    c.rec("content", read_file(c.p("f")))
    fd = os.open(c.p("f"), os.O_RDWR)
    os.write(fd, b"abcdefghijkl")
    c.do("ftruncate with unflushed data", os.ftruncate, fd, 3)
    c.rec("read after ftruncate", os.pread(fd, 100, 0))
    os.write(fd, b"Z")  # the offset stayed at 12
    os.close(fd)
    c.rec("content after write at old offset", read_file(c.p("f")))
    fd = os.open(c.p("f"), os.O_RDONLY)
    c.rec("read fd opened before O_TRUNC (1)", os.pread(fd, 3, 0))
    os.close(os.open(c.p("f"), os.O_WRONLY | os.O_TRUNC))
    c.rec("read fd opened before O_TRUNC (2)", os.pread(fd, 100, 0))
    os.close(fd)
    write_file(c.p("g"), b"0123456789")
    fd = os.open(c.p("g"), os.O_RDONLY)
    c.do("truncate on the other node while open here", os.truncate, c.q("g"), 4)
    c.rec_eventually("fstat here", lambda: os.fstat(fd).st_size)
    c.rec_eventually("read here", lambda: os.pread(fd, 100, 0))
    os.close(fd)


@case
def append_mode(c):
    write_file(c.p("f"), b"start\n")
    fd1 = os.open(c.p("f"), os.O_WRONLY | os.O_APPEND)
    fd2 = os.open(c.p("f"), os.O_WRONLY | os.O_APPEND)
    os.write(fd1, b"one\n")
    os.write(fd2, b"two\n")
    os.lseek(fd1, 0, os.SEEK_SET)
    os.write(fd1, b"three\n")
    c.rec("offset after append", os.lseek(fd1, 0, os.SEEK_CUR))
    os.close(fd1)
    os.close(fd2)
    c.rec("two descriptors, one node", read_file(c.p("f")))
    c.do("pwrite on O_APPEND", lambda: (lambda fd: (os.pwrite(fd, b"P", 0), os.close(fd)))(
        os.open(c.p("f"), os.O_WRONLY | os.O_APPEND)) and None)
    c.rec("after pwrite", read_file(c.p("f")))


# ---- POSIX ACLs -----------------------------------------------------------

@case
def acl_access(c):
    write_file(c.p("f"), b"data")
    os.chmod(c.p("f"), 0o600)
    c.rec("B reads 0600", user_b(lambda: call(read_file, c.p("f"))))
    c.watch("setfacl u:B:r", ["f"], setfacl, c.p("f"), "-m", "u:%d:r" % UB)
    c.st("mode after setfacl", "f")
    c.rec("getfacl", getfacl(c.p("f")))
    c.rec("xattr", getxattr(c.p("f"), "system.posix_acl_access"))
    c.rec("listxattr", listxattr(c.p("f")))
    c.rec("B reads via ACL", user_b(lambda: call(read_file, c.p("f"))))
    c.rec("B writes via ACL", user_b(lambda: call(write_file, c.p("f"), b"x", os.O_WRONLY)))
    c.rec("A reads (other)", user_a(lambda: call(read_file, c.p("f"))))
    c.rec_eventually("B reads via ACL on the other node",
                     lambda: user_b(lambda: call(read_file, c.q("f"))))
    c.watch("chmod 600 masks the ACL", ["f"], os.chmod, c.p("f"), 0o600)
    c.rec("getfacl after chmod", getfacl(c.p("f")))
    c.rec("B reads with mask ---", user_b(lambda: call(read_file, c.p("f"))))
    c.rec_eventually("B reads with mask --- on the other node",
                     lambda: user_b(lambda: call(read_file, c.q("f"))))
    os.chmod(c.p("f"), 0o640)
    c.rec("getfacl after chmod 640", getfacl(c.p("f")))
    c.rec("B reads with mask r--", user_b(lambda: call(read_file, c.p("f"))))
    c.rec("group entry", setfacl(c.p("f"), "-m", "g:%d:rw,m::rw" % GSHARED))
    c.st("mode follows the mask", "f")
    c.rec("A writes via its group", user_a(lambda: call(write_file, c.p("f"), b"a", os.O_WRONLY)))
    c.rec("B may not set ACLs", user_b(lambda: setfacl(c.p("f"), "-m", "u:%d:rwx" % UB)))
    c.rec("remove named user", setfacl(c.p("f"), "-x", "u:%d" % UB))
    c.rec("getfacl after -x", getfacl(c.p("f")))
    c.watch("setfacl -b", ["f"], setfacl, c.p("f"), "-b")
    c.rec("xattr after -b", getxattr(c.p("f"), "system.posix_acl_access"))
    c.st("mode after -b", "f")
    # an ACL the mode says all about is not stored
    c.watch("minimal ACL", ["f"], os.setxattr, c.p("f"), "system.posix_acl_access",
            acl_bytes((UOBJ, 7, NOID), (GOBJ, 5, NOID), (OTHER, 1, NOID)))
    c.st("mode from minimal ACL", "f")
    c.rec("xattr of minimal ACL", getxattr(c.p("f"), "system.posix_acl_access"))
    c.rec("listxattr", listxattr(c.p("f")))
    c.watch("remove missing ACL", ["f"], os.removexattr, c.p("f"), "system.posix_acl_access")
    c.rec_eventually("getfacl on the other node", lambda: getfacl(c.q("f")))


@case
def acl_invalid(c):
    write_file(c.p("f"), b"")
    os.mkdir(c.p("d"))
    good = acl_bytes((UOBJ, 6, NOID), (USER, 4, UB), (GOBJ, 4, NOID), (MASK, 4, NOID),
                     (OTHER, 0, NOID))
    bad = {
        "bad version": b"\x01\x00\x00\x00" + good[4:],
        "truncated": good[:-3],
        "header only": good[:4],
        "no mask with named user": acl_bytes((UOBJ, 6, 0), (USER, 4, UB), (GOBJ, 4, 0),
                                             (OTHER, 0, 0)),
        "bad perm": acl_bytes((UOBJ, 8, 0), (GOBJ, 4, 0), (OTHER, 0, 0)),
        "bad tag": acl_bytes((UOBJ, 6, 0), (0x40, 4, 0), (GOBJ, 4, 0), (OTHER, 0, 0)),
        "wrong order": acl_bytes((GOBJ, 4, 0), (UOBJ, 6, 0), (OTHER, 0, 0)),
        "two owners": acl_bytes((UOBJ, 6, 0), (UOBJ, 6, 0), (GOBJ, 4, 0), (OTHER, 0, 0)),
        "no other": acl_bytes((UOBJ, 6, 0), (GOBJ, 4, 0)),
        "entry after other": acl_bytes((UOBJ, 6, 0), (GOBJ, 4, 0), (OTHER, 0, 0),
                                       (MASK, 0, 0)),
    }
    for name, val in bad.items():
        c.do("access ACL, " + name, os.setxattr, c.p("f"), "system.posix_acl_access", val)
        c.do("default ACL, " + name, os.setxattr, c.p("d"), "system.posix_acl_default", val)
    c.st("mode unchanged", "f")
    c.do("default ACL on a file", os.setxattr, c.p("f"), "system.posix_acl_default", good)
    c.do("remove default ACL of a file", os.removexattr, c.p("f"), "system.posix_acl_default")
    c.do("good ACL", os.setxattr, c.p("f"), "system.posix_acl_access", good)
    c.rec("stored", getxattr(c.p("f"), "system.posix_acl_access"))
    c.st("mode", "f")
    c.do("other system.* xattr", os.setxattr, c.p("f"), "system.other", b"x")


@case
def acl_default_inheritance(c):
    os.mkdir(c.p("d"))
    c.rec("default ACL", setfacl(c.p("d"), "-d", "-m",
                                 "u::rwx,u:%d:rwx,g::r-x,g:%d:rw,m::rwx,o::r-x" % (UB, GSHARED)))
    c.rec("getfacl dir", getfacl(c.p("d")))
    c.st("dir mode unchanged", "d")
    for mode in (0o666, 0o644, 0o600, 0o751):
        for um in (0o022, 0o077):
            n = "f%o_%o" % (mode, um)
            c.rec("create %s" % n, as_user(0, 0, [0], lambda: call(
                lambda: os.close(os.open(c.p("d/" + n), os.O_CREAT | os.O_WRONLY, mode))),
                um))
            c.st("mode " + n, "d/" + n)
            c.rec("getfacl " + n, getfacl(c.p("d/" + n)))
    c.rec("mkdir 0750 with umask 077",
          as_user(0, 0, [0], lambda: call(os.mkdir, c.p("d/sub"), 0o750), 0o077))
    c.st("subdir mode", "d/sub")
    c.rec("getfacl subdir", getfacl(c.p("d/sub")))
    c.rec("subdir default", getxattr(c.p("d/sub"), "system.posix_acl_default"))
    c.rec("mkdir below", call(os.mkdir, c.p("d/sub/deeper"), 0o777))
    c.rec("getfacl deeper", getfacl(c.p("d/sub/deeper")))
    c.rec("mknod fifo", call(os.mkfifo, c.p("d/fifo"), 0o666))
    c.rec("getfacl fifo", getfacl(c.p("d/fifo")))
    c.rec("symlink", call(os.symlink, "f666_22", c.p("d/ln")))
    c.st("symlink", "d/ln")
    c.rec("symlink xattr", getxattr(c.p("d/ln"), "system.posix_acl_access"))
    c.rec("B writes inherited file", user_b(
        lambda: call(write_file, c.p("d/f666_22"), b"b", os.O_WRONLY)))
    c.rec("A (group) writes inherited file", user_a(
        lambda: call(write_file, c.p("d/f666_22"), b"a", os.O_WRONLY)))
    c.rec("B creates in d (named entry rwx)", user_b(lambda: call(write_file, c.p("d/bf"), b"")))
    c.rec("getfacl B's file", getfacl(c.p("d/bf")))
    # a minimal default ACL: inherited, but the mode says it all
    os.mkdir(c.p("m"))
    c.rec("minimal default", setfacl(c.p("m"), "-d", "-m", "u::rwx,g::rx,o::-"))
    c.rec("create in minimal", as_user(0, 0, [0], lambda: call(write_file, c.p("m/f"), b""),
                                       0o077))
    c.st("minimal-inherited mode", "m/f")
    c.rec("minimal-inherited xattr", getxattr(c.p("m/f"), "system.posix_acl_access"))
    c.rec("remove default", setfacl(c.p("m"), "-k"))
    c.rec("create after removal", as_user(0, 0, [0], lambda: call(write_file, c.p("m/g"), b""),
                                          0o077))
    c.st("umask applies again", "m/g")
    # created through the other node: the same inheritance
    c.rec_eventually("create on the other node",
                     lambda: call(write_file, c.q("d/other"), b"") if
                     not os.path.exists(c.q("d/other")) else "ok")
    c.rec_eventually("getfacl of it", lambda: getfacl(c.q("d/other")))


@case
def acl_setgid_and_dirs(c):
    write_file(c.p("f"), b"")
    os.chown(c.p("f"), UB, GSHARED)
    os.chmod(c.p("f"), 0o2770)
    c.rec("B (not in the group) sets an ACL", user_b(
        lambda: setfacl(c.p("f"), "-m", "u:%d:r" % UA)))
    c.st("setgid dropped", "f")
    os.chown(c.p("f"), UA, GSHARED)
    os.chmod(c.p("f"), 0o2770)
    c.rec("A (in the group) sets an ACL", user_a(
        lambda: setfacl(c.p("f"), "-m", "u:%d:r" % UB)))
    c.st("setgid kept", "f")
    os.mkdir(c.p("d"), 0o700)
    c.rec("B searches 0700 dir", user_b(lambda: call(os.listdir, c.p("d"))))
    c.rec("ACL lets B in", setfacl(c.p("d"), "-m", "u:%d:rx" % UB))
    c.rec("B lists it now", user_b(lambda: call(os.listdir, c.p("d"))))
    c.rec("B creates in it (no w)", user_b(lambda: call(write_file, c.p("d/x"), b"")))
    c.rec("chmod 700 masks it", call(os.chmod, c.p("d"), 0o700))
    c.rec("B lists with mask ---", user_b(lambda: call(os.listdir, c.p("d"))))
    c.rec("getfacl", getfacl(c.p("d")))
    c.rec("rename keeps the ACL", call(os.rename, c.p("f"), c.p("d/f")))
    c.rec("getfacl renamed", getfacl(c.p("d/f")))
    c.rec("copy with cp -a keeps it", subprocess.run(
        ["cp", "-a", c.p("d/f"), c.p("copy")]).returncode)
    c.paths.add("copy")
    c.rec("getfacl copy", getfacl(c.p("copy")))


# ---- driver ---------------------------------------------------------------

def fresh(root, name):
    d = os.path.join(root, name)
    os.mkdir(d)
    os.chmod(d, 0o755)
    return d


def cross_check(fs1, fs2, paths):
    """Every path touched: same stat (times to the ns) and ACLs on both
    nodes, eventually. Returns the differences."""
    def view(root, p):
        full = os.path.join(root, p) if p else root
        try:
            s = os.lstat(full)
        except OSError as e:
            return ename(e.errno)
        v = (s.st_mode, s.st_nlink, s.st_uid, s.st_gid, s.st_size, s.st_atime_ns,
             s.st_mtime_ns, s.st_ctime_ns)
        if stat.S_ISLNK(s.st_mode):
            return v
        return v + (getxattr(full, "system.posix_acl_access"),
                    getxattr(full, "system.posix_acl_default"))

    diffs = []
    for p in sorted(paths):
        end = time.monotonic() + SETTLE
        while True:
            a, b = view(fs1, p), view(fs2, p)
            if a == b or time.monotonic() > end:
                break
            time.sleep(0.05)
        if a != b:
            diffs.append("%s: this node %s, other node %s" % (p or ".", a, b))
    return diffs


def run_case(fn, ref, fs, fs2):
    name = fn.__name__
    r = Ctx(fresh(ref, name), os.path.join(ref, name), None)
    fn(r)
    s = Ctx(fresh(fs, name), os.path.join(fs2, name), r.obs)
    fn(s)
    diffs = []
    for i in range(max(len(r.obs), len(s.obs))):
        a = r.obs[i] if i < len(r.obs) else ("<none>", None)
        b = s.obs[i] if i < len(s.obs) else ("<none>", None)
        if a != b:
            diffs.append("%s: reference %r, sandfs %r" % (a[0], a[1], b[1]))
    diffs += ["across nodes: " + d for d in cross_check(s.root, s.root2, s.paths)]
    return name, diffs


def append_two(path1, path2, n):
    """O_APPEND from two nodes: first in turns (open, append one line,
    close, as `echo line >> log` does), then both at once, each with its
    file open and n writes. Every line must be there, whole. Returns the
    problems found."""
    problems = []
    write_file(path1, b"")
    want = []
    for i in range(n):
        for who, p in (("one", path1), ("two", path2)):
            line = ("%s turn %d\n" % (who, i)).encode()
            want.append(line)
            fd = os.open(p, os.O_WRONLY | os.O_APPEND)
            os.write(fd, line)
            os.close(fd)
    got = read_file(path1)
    if got != b"".join(want):
        problems.append("in turns: %d of %d bytes, %d lines missing" % (
            len(got), len(b"".join(want)), sum(1 for w in want if w not in got.splitlines(True))))
    write_file(path1, b"")
    pids = []
    for who, p in (("one", path1), ("two", path2)):
        pid = os.fork()
        if pid == 0:
            fd = os.open(p, os.O_WRONLY | os.O_APPEND)
            for i in range(n):
                os.write(fd, ("%s at once %d\n" % (who, i)).encode())
            os.close(fd)
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    end = time.monotonic() + SETTLE
    while True:
        lines = read_file(path1).splitlines(True)
        want = [("%s at once %d\n" % (who, i)).encode() for who in ("one", "two")
                for i in range(n)]
        missing = [w for w in want if w not in lines]
        if not missing or time.monotonic() > end:
            break
        time.sleep(0.1)
    if missing or len(lines) != 2 * n:
        problems.append("at once: %d lines, %d missing (e.g. %r)" % (
            len(lines), len(missing), missing[:2]))
    return problems


def main(argv):
    only = None
    if argv[:1] == ["append2"]:
        problems = append_two(argv[1], argv[2], int(argv[3]))
        for p in problems:
            print("    " + p)
        print(("FAIL: " if problems else "PASS: ") + "O_APPEND from two nodes")
        return 1 if problems else 0
    if argv[:1] == ["--list"]:
        for fn in CASES:
            print(fn.__name__)
        return 0
    if argv[:1] == ["--only"]:
        only = set(argv[1].split(","))
        argv = argv[2:]
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    ref, fs, fs2 = argv
    failed = 0
    for fn in CASES:
        if only and fn.__name__ not in only:
            continue
        name, diffs = run_case(fn, ref, fs, fs2)
        if diffs:
            failed += 1
            print("FAIL: %s (%d differences)" % (name, len(diffs)))
            for d in diffs[:12]:
                print("    " + d)
        else:
            print("PASS: " + name)
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""fs_locks.py — lock and open-file system calls for tests/e2e/fs_locks.sh.

    fs_locks.py [--at EPOCH_SECONDS] [--ready FILE] [--go FILE] [--hold SECS]
                OP ARGS...
      flock PATH ex|sh [nb]      flock(2); with nb: LOCK_NB
      setlk PATH rd|wr|un START LEN [wait] [alarm SECS]
                                 fcntl F_SETLK (wait: F_SETLKW; alarm: a
                                 SIGALRM after SECS interrupts the wait)
      getlk PATH rd|wr START LEN fcntl F_GETLK: prints "UNLCK" or
                                 "WRLCK|RDLCK START LEN PID"
      locks PATH SPEC...         take each SPEC (rd|wr|un:START:LEN) with
                                 F_SETLK in order on one descriptor
      keep PATH                  open PATH read-write, write "first",
                                 at offset 0, create the --ready file,
                                 wait for the --go file, then read 5
                                 bytes back, write " second" after them
                                 (fsync), read 12 and print "FIVE|TWELVE"
                                 (unlink while open)

Prints OK or the errno name (EAGAIN, which is also EWOULDBLOCK, EINTR, ...) of the call, then (with
--ready) creates FILE and (with --hold) keeps the descriptor and its lock
for SECS before exiting; exits 0 either way, 2 on bad usage. --at sleeps
until that wall-clock time first.
"""
import errno
import fcntl
import os
import signal
import struct
import sys
import time

TYPES = {"rd": fcntl.F_RDLCK, "wr": fcntl.F_WRLCK, "un": fcntl.F_UNLCK}


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def setlk(fd, typ, start, length, wait=False):
    # struct flock: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
    fl = struct.pack("hhqqi4x", TYPES[typ], os.SEEK_SET, start, length, 0)
    fcntl.fcntl(fd, fcntl.F_SETLKW if wait else fcntl.F_SETLK, fl)


def getlk(fd, typ, start, length):
    fl = struct.pack("hhqqi4x", TYPES[typ], os.SEEK_SET, start, length, 0)
    res = fcntl.fcntl(fd, fcntl.F_GETLK, fl)
    t, _, s, n, pid = struct.unpack("hhqqi4x", res)
    if t == fcntl.F_UNLCK:
        return "UNLCK"
    return "%s %d %d %d" % ("WRLCK" if t == fcntl.F_WRLCK else "RDLCK", s, n, pid)


def main(argv):
    at = ready = go = None
    hold = 0.0
    while argv and argv[0].startswith("--"):
        if argv[0] == "--at":
            at = float(argv[1])
        elif argv[0] == "--ready":
            ready = argv[1]
        elif argv[0] == "--hold":
            hold = float(argv[1])
        elif argv[0] == "--go":
            go = argv[1]
        else:
            break
        argv = argv[2:]
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    op, path, args = argv[0], argv[1], argv[2:]
    if at is not None:
        time.sleep(max(0.0, at - time.time()))
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    out = "OK"
    try:
        if op == "flock":
            how = fcntl.LOCK_EX if args[0] == "ex" else fcntl.LOCK_SH
            if "nb" in args[1:]:
                how |= fcntl.LOCK_NB
            fcntl.flock(fd, how)
        elif op == "setlk":
            wait = "wait" in args[3:]
            if "alarm" in args[3:]:
                secs = float(args[args.index("alarm") + 1])
                # Raise: Python retries a call interrupted by a signal whose
                # handler returns (PEP 475), and so would the kernel.
                def on_alarm(sig, frame):
                    raise InterruptedError(errno.EINTR, "interrupted")
                signal.signal(signal.SIGALRM, on_alarm)
                signal.setitimer(signal.ITIMER_REAL, secs)
            setlk(fd, args[0], int(args[1]), int(args[2]), wait)
        elif op == "getlk":
            out = getlk(fd, args[0], int(args[1]), int(args[2]))
        elif op == "locks":
            for spec in args:
                t, s, n = spec.split(":")
                setlk(fd, t, int(s), int(n))
        elif op == "keep":
            os.pwrite(fd, b"first", 0)
            if ready:
                open(ready, "w").close()
                ready = None
            while go and not os.path.exists(go):
                time.sleep(0.05)
            got = os.pread(fd, 5, 0)
            os.pwrite(fd, b" second", 5)
            os.fsync(fd)
            got2 = os.pread(fd, 12, 0)
            out = "%s|%s" % (got.decode(errors="replace"), got2.decode(errors="replace"))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except OSError as e:
        out = errname(e)
    print(out, flush=True)
    if ready:
        open(ready, "w").close()
    if hold > 0:
        time.sleep(hold)
    os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

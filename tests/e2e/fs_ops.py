#!/usr/bin/env python3
"""fs_ops.py — one system call, timed to start at an agreed moment.

Used by the fs e2e scripts to race two nodes' mounts against each other and
to see the exact errno a call returns (shell tools hide it or, like mv,
work around it).

    fs_ops.py [--at EPOCH_SECONDS] OP ARGS...
      excl PATH         open(PATH, O_CREAT|O_EXCL|O_WRONLY)
      rename SRC DST    rename(2)
      mkdir PATH        mkdir(2)
      rmdir PATH        rmdir(2)
      create PATH       open(PATH, O_CREAT|O_WRONLY)

Prints OK or the errno name (EEXIST, ENOENT, ...); exits 0 either way, 2 on
bad usage. --at sleeps until that wall-clock time first (the barrier).
"""
import errno
import os
import sys
import time


def main(argv):
    at = None
    if len(argv) >= 2 and argv[0] == "--at":
        at = float(argv[1])
        argv = argv[2:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    op, args = argv[0], argv[1:]
    if at is not None:
        delay = at - time.time()
        if delay > 0:
            time.sleep(delay)
    try:
        if op == "excl":
            os.close(os.open(args[0], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        elif op == "create":
            os.close(os.open(args[0], os.O_CREAT | os.O_WRONLY, 0o644))
        elif op == "rename":
            os.rename(args[0], args[1])
        elif op == "mkdir":
            os.mkdir(args[0])
        elif op == "rmdir":
            os.rmdir(args[0])
        else:
            print("unknown op " + op, file=sys.stderr)
            return 2
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)))
        return 0
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

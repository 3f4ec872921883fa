# py_memory.py METHOD [MIB] - PSS of a multiprocessing Pool of 8 idle
# workers started by a caller holding MIB (1024) of memory; METHOD fork or
# forkserver.  Prints pss_workers_kb and, for forkserver, pss_server_kb.
import multiprocessing as mp
import os
import sys
import time


def tiny(x):
    return x


def pss_kb(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(x) for x in f.read().split()]


if __name__ == "__main__":
    method = sys.argv[1]
    mib = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
    big = bytearray(b"\1" * (mib << 20))
    ctx = mp.get_context(method)
    with ctx.Pool(8) as pool:
        pool.map(tiny, range(64))
        time.sleep(1)
        workers = [p.pid for p in pool._pool]
        print("pss_workers_kb", sum(pss_kb(p) for p in workers))
        if method == "forkserver":
            kids = [k for k in children(os.getpid()) if k not in workers]
            print("pss_server_kb", sum(pss_kb(k) for k in kids))
    del big

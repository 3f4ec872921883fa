#!/usr/bin/env python3
"""py_pool.py FILE [RUNS] - Python's multiprocessing.Pool (forkserver, 2
workers) on bench_pool's workloads; prints "name median unit" lines."""
import multiprocessing as mp
import os
import statistics
import sys
import time

APPLY_N = 20000
MAP_N = 1000000
BIG_N = 1000
BIG_LEN = 1 << 20
RANGE = 16 << 20


def tiny(v):
    return v + 1


def arg_len(b):
    return len(b)


def count_range(args):
    path, off, length = args
    with open(path, "rb") as f:
        f.seek(off)
        n = 0
        while length > 0:
            buf = f.read(min(length, 1 << 20))
            if not buf:
                break
            n += buf.count(b"\n")
            length -= len(buf)
        return n


def main():
    path = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    size = os.path.getsize(path)
    ranges = [(path, o, min(RANGE, size - o)) for o in range(0, size, RANGE)]
    # distinct objects: pickle would send one shared object only once
    big = [b"x" * BIG_LEN for _ in range(BIG_N)]
    ctx = mp.get_context("forkserver")
    res = {"apply_async_us": [], "map_us": [], "map_1mib_gbs": [],
           "linecount_s": []}
    with ctx.Pool(2) as pool:
        pool.map(tiny, range(100))
        for _ in range(runs):
            t0 = time.perf_counter()
            rs = [pool.apply_async(tiny, (1,)) for _ in range(APPLY_N)]
            for r in rs:
                r.get()
            res["apply_async_us"].append(
                (time.perf_counter() - t0) / APPLY_N * 1e6)
            t0 = time.perf_counter()
            pool.map(tiny, range(MAP_N))
            res["map_us"].append((time.perf_counter() - t0) / MAP_N * 1e6)
            t0 = time.perf_counter()
            pool.map(arg_len, big)
            res["map_1mib_gbs"].append(
                BIG_N * BIG_LEN / (time.perf_counter() - t0) / 1e9)
            t0 = time.perf_counter()
            lines = sum(pool.map(count_range, ranges, 1))
            res["linecount_s"].append(time.perf_counter() - t0)
    for k, v in res.items():
        print("%s %.4f" % (k, statistics.median(v)))
    print("linecount_lines %d" % lines)


if __name__ == "__main__":
    main()

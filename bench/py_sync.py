#!/usr/bin/env python3
"""py_sync.py - Python's side of bench/run-sync.sh: multiprocessing Lock
acquire+release uncontended, a Lock contended by two processes, a hand-off
between two processes (two Semaphores, ping-pong), and filling a shared
Array('d') and RawArray('d') element by element (making the array
included, as in bench_sync).  Plain stdlib; prints
"key value" lines.

    python3 py_sync.py [N]
"""
import multiprocessing as mp
import sys
import time

ARRAY_N = 1000000


def incr(lock, ctr, n):
    for _ in range(n):
        with lock:
            ctr.value += 1


def pong(ping, pong_, n):
    for _ in range(n):
        ping.acquire()
        pong_.release()


def fill(make, n):
    """Seconds to make the array and fill it (as bench_sync does)."""
    t0 = time.perf_counter()
    a = make("d", n)
    for i in range(n):
        a[i] = i * 0.5
    return time.perf_counter() - t0


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500000
    print("py_version %d.%d" % sys.version_info[:2])

    lock = mp.Lock()
    t0 = time.perf_counter()
    for _ in range(n):
        lock.acquire()
        lock.release()
    print("py_lock_ns %.2f" % ((time.perf_counter() - t0) / n * 1e9))

    m = n // 5
    ctr = mp.RawValue("q", 0)
    ps = [mp.Process(target=incr, args=(lock, ctr, m)) for _ in range(2)]
    t0 = time.perf_counter()
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    t = time.perf_counter() - t0
    print("py_contended_ops_s %.0f" % (2 * m / t))

    m = n // 50
    ping, pong_ = mp.Semaphore(0), mp.Semaphore(0)
    p = mp.Process(target=pong, args=(ping, pong_, m))
    p.start()
    t0 = time.perf_counter()
    for _ in range(m):
        ping.release()
        pong_.acquire()
    t = time.perf_counter() - t0
    p.join()
    print("py_handoff_us %.3f" % (t / (2 * m) * 1e6))

    t = fill(mp.Array, ARRAY_N)
    print("py_array_ns %.3f" % (t / ARRAY_N * 1e9))
    t = fill(mp.RawArray, ARRAY_N)
    print("py_rawarray_ns %.3f" % (t / ARRAY_N * 1e9))


if __name__ == "__main__":
    main()

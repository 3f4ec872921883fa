#!/usr/bin/env python3
"""py_queue.py - Python's side of bench/run-queue.sh: multiprocessing
Manager().Queue() put+get one at a time, and 4 producer x 4 consumer
processes through one bounded manager queue.  Plain stdlib; prints
"key value" lines.

    python3 py_queue.py [N]
"""
import multiprocessing as mp
import sys
import time

ITEM = b"i" * 16
PROCS = 4
STOP = None


def producer(q, count):
    for i in range(count):
        q.put(ITEM)


def consumer(q):
    while q.get() is not STOP:
        pass


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with mp.Manager() as m:
        q = m.Queue()
        for _ in range(200):
            q.put(ITEM)
            q.get()
        t0 = time.perf_counter()
        for _ in range(n):
            q.put(ITEM)
            q.get()
        t = time.perf_counter() - t0
        print("py_single_op_us %.3f" % (t / (2 * n) * 1e6))
        print("py_single_ops_s %.0f" % (2 * n / t))

        total = 2 * n
        q = m.Queue(10000)
        t0 = time.perf_counter()
        cons = [mp.Process(target=consumer, args=(q,)) for _ in range(PROCS)]
        prods = [mp.Process(target=producer, args=(q, total // PROCS))
                 for _ in range(PROCS)]
        for p in cons + prods:
            p.start()
        for p in prods:
            p.join()
        for _ in range(PROCS):
            q.put(STOP)
        for p in cons:
            p.join()
        t = time.perf_counter() - t0
        print("py_mpmc_items_s %.0f" % (total / t))
    print("py_version %d.%d" % sys.version_info[:2])


if __name__ == "__main__":
    main()

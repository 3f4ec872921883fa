#!/usr/bin/env python3
"""py_pipe.py - Python's side of bench/run-pipe.sh: a multiprocessing
Pipe() round trip of 64 bytes to a child process, 1 MiB messages to a
child (GB/s), and Manager().dict() set, get and d[k] += 1.  Plain
stdlib; prints "key value" lines.

    python3 py_pipe.py [N]
"""
import multiprocessing as mp
import sys
import time

MSG = b"p" * 64
BIG = 1 << 20
BIG_N = 200


def echo(conn):
    while True:
        m = conn.recv_bytes()
        if not m:
            return
        conn.send_bytes(m)


def sink(conn):
    while True:
        if len(conn.recv_bytes()) == 0:
            conn.send_bytes(b"ok")
            return


def pipe_rt(n):
    a, b = mp.Pipe()
    p = mp.Process(target=echo, args=(b,))
    p.start()
    b.close()
    for _ in range(200):
        a.send_bytes(MSG)
        a.recv_bytes()
    t0 = time.perf_counter()
    for _ in range(n):
        a.send_bytes(MSG)
        a.recv_bytes()
    t = time.perf_counter() - t0
    a.send_bytes(b"")
    p.join()
    print("py_pipe_rt_us %.3f" % (t / n * 1e6))


def pipe_big():
    a, b = mp.Pipe()
    p = mp.Process(target=sink, args=(b,))
    p.start()
    b.close()
    buf = b"b" * BIG
    t0 = time.perf_counter()
    for _ in range(BIG_N):
        a.send_bytes(buf)
    a.send_bytes(b"")
    a.recv_bytes()
    t = time.perf_counter() - t0
    a.close()
    p.join()
    print("py_pipe_big_gb_s %.3f" % (BIG * BIG_N / t / 1e9))


def dict_ops(n):
    with mp.Manager() as m:
        d = m.dict()
        for i in range(200):
            d["k%d" % i] = MSG
        t0 = time.perf_counter()
        for i in range(n // 2):
            k = "k%d" % (i % 1000)
            d[k] = MSG
            d[k]
        t = time.perf_counter() - t0
        print("py_dict_op_us %.3f" % (t / (2 * (n // 2)) * 1e6))
        d["counter"] = 0
        t0 = time.perf_counter()
        for _ in range(n // 2):
            d["counter"] += 1
        t = time.perf_counter() - t0
        print("py_dict_incr_us %.3f" % (t / (n // 2) * 1e6))


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    pipe_rt(n)
    pipe_big()
    dict_ops(n)
    print("py_version %d.%d" % sys.version_info[:2])


if __name__ == "__main__":
    main()

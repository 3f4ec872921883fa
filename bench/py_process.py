#!/usr/bin/env python3
"""py_process.py - Python's multiprocessing side of bench/run.sh.

Times Process start+join of a no-op target with the forkserver, fork and
spawn start methods (spawn: fewer runs, SPAWN_RUNS, it is slow), and reads
the PSS of an idle forkserver and fork worker.  Plain stdlib; prints
"key value" lines.

    python3 py_process.py [RUNS [SPAWN_RUNS]]
"""
import multiprocessing as mp
import statistics
import sys
import time

WARMUP = 20
IDLE_SECONDS = 0.2


def noop():
    pass


def idle():
    time.sleep(3600)


def now_us():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) / 1000.0


def rollup_kb(pid, *fields):
    """The sum of these smaps_rollup fields of pid in kB, or -1."""
    kb, seen = 0, 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in fields:
                    kb += int(rest.split()[0])
                    seen += 1
    except OSError:
        pass
    return kb if seen == len(fields) else -1


def time_start_join(ctx, runs):
    for _ in range(WARMUP):
        p = ctx.Process(target=noop)
        p.start()
        p.join()
    samples = []
    for _ in range(runs):
        t0 = now_us()
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        samples.append(now_us() - t0)
        if p.exitcode != 0:
            raise SystemExit(f"py_process: no-op exit code {p.exitcode}")
    return sorted(samples)


def idle_pss(ctx, n=1):
    """Mean PSS and mean USS (Private_Clean + Private_Dirty) of n idle
    workers started at once."""
    ps = [ctx.Process(target=idle, daemon=True) for _ in range(n)]
    for p in ps:
        p.start()
    time.sleep(IDLE_SECONDS)
    pss = [rollup_kb(p.pid, "Pss") for p in ps]
    uss = [rollup_kb(p.pid, "Private_Clean", "Private_Dirty") for p in ps]
    for p in ps:
        p.terminate()
        p.join()
    if min(pss + uss) < 0:
        return -1, -1
    return sum(pss) // n, sum(uss) // n


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    spawn_runs = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    print(f"py_version {sys.version.split()[0]}")
    for method in ("forkserver", "fork", "spawn"):
        ctx = mp.get_context(method)
        s = time_start_join(ctx, spawn_runs if method == "spawn" else runs)
        print(f"py_{method}_median_us {statistics.median(s):.1f}")
        print(f"py_{method}_p90_us {s[int(0.9 * (len(s) - 1))]:.1f}")
        print(f"py_{method}_min_us {s[0]:.1f}")
        print(f"py_{method}_runs {len(s)}")
        if method != "spawn":
            for key, n in (("idle", 1), ("idle4", 4)):
                pss, uss = idle_pss(ctx, n)
                print(f"py_{method}_{key}_pss_kb {pss}")
                print(f"py_{method}_{key}_uss_kb {uss}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

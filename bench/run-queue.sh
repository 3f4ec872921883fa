#!/bin/sh
# run-queue.sh BUILD_DIR - pmd's queues and Python's multiprocessing
# Manager().Queue() side by side, in one run on one machine, next to a bare
# Unix-socket round trip between two processes.  Prints numbers, ratios and
# the budgets; it asserts nothing.
#
# One at a time alternates blocks of queue put/get and bare round trips;
# its ratio is the median of the per-block ratios (medians are printed).
#
# Uses $PMD_SOCKET when set; otherwise a private pmd (BUILD_DIR/pmd) in a
# fresh runtime directory.  RUNS / PY_RUNS override the iteration counts.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
bench_setup run-queue.sh $# "${1:-}" bench/bench_queue
runs=${RUNS:-20000}
py_runs=${PY_RUNS:-5000}

bench_banner
echo "== pmd queues: $runs one-at-a-time put+get, pipelined, batched, 4x4 processes; bare socketpair round trips"
"$build/bench/bench_queue" "$runs" > "$out/c.txt"
if command -v python3 > /dev/null; then
	echo "== python: Manager().Queue(), $py_runs put+get, 4x4 processes"
	if ! python3 "$here/py_queue.py" "$py_runs" > "$out/py.txt"; then
		echo "== python: py_queue.py failed; Python columns may be empty" >&2
	fi
else
	echo "== python: python3 not found; Python columns left empty"
	: > "$out/py.txt"
fi

cat "$out/c.txt" "$out/py.txt" | awk '
function has(k) { return (k in v) && v[k] != "" && v[k] >= 0 }
function num(k, u) { return has(k) ? sprintf("%12.1f %s", v[k], u) : sprintf("%12s %s", "n/a", u) }
function ratio(a, b) { return (has(a) && has(b) && v[b] > 0) ? sprintf("%.2fx", v[a] / v[b]) : "n/a" }
function verdict(ok) { return ok ? "within budget" : "OVER budget" }
{ v[$1] = $2 }
END {
	printf "\n%-46s %s\n", "one at a time (latency per op)", ""
	printf "%-46s %s\n", "bare Unix-socket round trip (C, 2 processes)", num("bare_rt_us", "us")
	printf "%-46s %s  (%s ops/s)\n", "pmd queue put or get", num("q_single_op_us", "us"), v["q_single_ops_s"]
	printf "%-46s %s  (%s ops/s)\n", "python " v["py_version"] " Manager().Queue() put or get", num("py_single_op_us", "us"), v["py_single_ops_s"]

	printf "\n%-46s %s\n", "throughput (items put and got)", ""
	printf "%-46s %s\n", "pmd pipelined, 128 requests in flight", num("q_pipelined_items_s", "items/s")
	printf "%-46s %s\n", "pmd batched, put_many/get_many of 1000", num("q_batched_items_s", "items/s")
	printf "%-46s %s\n", "pmd 4x4 processes, one at a time", num("q_mpmc_single_items_s", "items/s")
	printf "%-46s %s\n", "pmd 4x4 processes, batches of 64", num("q_mpmc_batched_items_s", "items/s")
	printf "%-46s %s\n", "python 4x4 processes, one at a time", num("py_mpmc_items_s", "items/s")

	printf "\nratios\n"
	printf "  pmd op / bare round trip            %s\n", has("q_single_ratio") ? sprintf("%.2fx", v["q_single_ratio"]) : ratio("q_single_op_us", "bare_rt_us")
	printf "  python op / pmd op                  %s\n", ratio("py_single_op_us", "q_single_op_us")
	printf "  pmd batched / python one at a time  %s\n", ratio("q_batched_items_s", "py_single_ops_s")
	printf "  pmd 4x4 / python 4x4 (one at a time) %s\n", ratio("q_mpmc_single_items_s", "py_mpmc_items_s")
	printf "  pmd 4x4 batched / python 4x4        %s\n", ratio("q_mpmc_batched_items_s", "py_mpmc_items_s")

	printf "\nbudgets\n"
	if (has("q_single_ratio"))
		printf "  one at a time <= 1.25x round trip   %.2fx: %s\n", v["q_single_ratio"], verdict(v["q_single_ratio"] <= 1.25)
	else if (has("q_single_op_us") && has("bare_rt_us") && v["bare_rt_us"] > 0)
		printf "  one at a time <= 1.25x round trip   %.2fx: %s\n", v["q_single_op_us"] / v["bare_rt_us"], verdict(v["q_single_op_us"] <= 1.25 * v["bare_rt_us"])
	if (has("q_batched_items_s"))
		printf "  batched >= 2,000,000 items/s        %.0f: %s\n", v["q_batched_items_s"], verdict(v["q_batched_items_s"] >= 2000000)
	if (has("q_batched_items_s") && has("py_single_ops_s") && v["py_single_ops_s"] > 0)
		printf "  batched >= 50x python               %.0fx: %s\n", v["q_batched_items_s"] / v["py_single_ops_s"], verdict(v["q_batched_items_s"] >= 50 * v["py_single_ops_s"])
}'

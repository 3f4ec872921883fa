#!/bin/sh
# run-sync.sh BUILD_DIR - pmd's shared memory and locks and Python's
# multiprocessing Lock, Semaphore, Array and RawArray side by side, in one
# run on one machine, next to a bare robust process-shared pthread mutex.
# Prints numbers, ratios and the budgets; it asserts nothing.
#
# Uncontended alternates blocks of pm_lock and bare mutex acquire+release;
# its ratio is the median of the per-block ratios (medians are printed).
# RUNS / PY_RUNS override the iteration counts.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
bench_setup run-sync.sh $# "${1:-}" bench/bench_sync
runs=${RUNS:-5000000}
py_runs=${PY_RUNS:-500000}

bench_banner
echo "== pmd locks: $runs uncontended acquire+release, 2 processes contending, a 2-process hand-off, a 10 M double array"
"$build/bench/bench_sync" "$runs" > "$out/c.txt"
if command -v python3 > /dev/null; then
	echo "== python: multiprocessing Lock, $py_runs acquire+release, 2 processes, hand-off, Array/RawArray of 1 M"
	if ! python3 "$here/py_sync.py" "$py_runs" > "$out/py.txt"; then
		echo "== python: py_sync.py failed; Python columns may be empty" >&2
	fi
else
	echo "== python: python3 not found; Python columns left empty"
	: > "$out/py.txt"
fi

cat "$out/c.txt" "$out/py.txt" | awk '
function has(k) { return (k in v) && v[k] != "" && v[k] >= 0 }
function num(k, u) { return has(k) ? sprintf("%12.2f %s", v[k], u) : sprintf("%12s %s", "n/a", u) }
function ratio(a, b) { return (has(a) && has(b) && v[b] > 0) ? sprintf("%.2fx", v[a] / v[b]) : "n/a" }
function verdict(ok) { return ok ? "within budget" : "OVER budget" }
{ v[$1] = $2 }
END {
	py = "python " v["py_version"]
	printf "\n%-52s %s\n", "uncontended acquire+release", ""
	printf "%-52s %s\n", "bare robust pshared pthread mutex", num("bare_mutex_ns", "ns")
	printf "%-52s %s\n", "pm_lock", num("lock_ns", "ns")
	printf "%-52s %s\n", py " multiprocessing.Lock", num("py_lock_ns", "ns")

	printf "\n%-52s %s\n", "two processes", ""
	printf "%-52s %s\n", "pm_lock contended, locked increments", num("contended_ops_s", "ops/s")
	printf "%-52s %s\n", py " Lock contended, locked increments", num("py_contended_ops_s", "ops/s")
	printf "%-52s %s\n", "pm_sem hand-off (one way)", num("handoff_us", "us")
	printf "%-52s %s\n", py " Semaphore hand-off (one way)", num("py_handoff_us", "us")

	printf "\n%-52s %s\n", "filling a shared array of doubles, per element", ""
	printf "%-52s %s\n", "pm_shm (anonymous), a C loop", num("array_ns", "ns")
	printf "%-52s %s\n", py " RawArray(\"d\")", num("py_rawarray_ns", "ns")
	printf "%-52s %s\n", py " Array(\"d\") (a lock per access)", num("py_array_ns", "ns")

	printf "\nratios\n"
	printf "  pm_lock / bare mutex                 %s\n", has("lock_ratio") ? sprintf("%.2fx", v["lock_ratio"]) : ratio("lock_ns", "bare_mutex_ns")
	printf "  python Lock / pm_lock                %s\n", ratio("py_lock_ns", "lock_ns")
	printf "  pm contended / python contended      %s\n", ratio("contended_ops_s", "py_contended_ops_s")
	printf "  python hand-off / pm hand-off        %s\n", ratio("py_handoff_us", "handoff_us")
	printf "  python RawArray / pm_shm fill        %s\n", ratio("py_rawarray_ns", "array_ns")
	printf "  python Array / pm_shm fill           %s\n", ratio("py_array_ns", "array_ns")

	printf "\nbudgets\n"
	if (has("lock_ratio"))
		printf "  uncontended <= 2x bare mutex         %.2fx: %s\n", v["lock_ratio"], verdict(v["lock_ratio"] <= 2)
	if (has("py_lock_ns") && has("lock_ns") && v["lock_ns"] > 0)
		printf "  uncontended >= 10x python Lock       %.0fx: %s\n", v["py_lock_ns"] / v["lock_ns"], verdict(v["py_lock_ns"] >= 10 * v["lock_ns"])
}'

#!/bin/sh
# run-pool.sh BUILD_DIR - the Pool side by side with Python's
# multiprocessing.Pool (forkserver, 2 workers), in one run: apply_async of a
# tiny task, map of 1,000,000 tiny tasks, map of 1,000 x 1 MiB items, and a
# line count (pmd Pool, wc -l, Python Pool).  Prints medians, ratios and
# the budgets; asserts nothing.  RUNS, SIZE_MB override.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
bench_setup run-pool.sh $# "${1:-}" bench/bench_pool bench/pool_tasks.so
runs=${RUNS:-5}
size_mb=${SIZE_MB:-300}

file=$out/lines.txt
yes 'the quick brown fox jumps over the lazy dog; pmd counts lines' |
    head -c "$((size_mb * 1024 * 1024))" > "$file"
echo "== pool bench: $(uname -srm), $(nproc) CPUs, 2 workers, ${size_mb} MB file, $runs runs"
"$build/bench/bench_pool" "$build/bench/pool_tasks.so" "$file" "$runs" \
    > "$out/c.txt"
if command -v python3 > /dev/null && python3 "$here/py_pool.py" "$file" \
    "${PY_RUNS:-3}" > "$out/py.txt"; then :; else
	echo "== python: py_pool.py failed; Python columns empty" >&2
	: > "$out/py.txt"
fi
t0=$(date +%s.%N)
wcl=$(wc -l < "$file")
t1=$(date +%s.%N)
echo "wc_s $(echo "$t1 - $t0" | bc -l)" >> "$out/c.txt"

get() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
row() {	# name unit pmd python budget better(lower|higher)
	awk -v n="$1" -v u="$2" -v a="$3" -v b="$4" -v bud="$5" -v dir="$6" \
	    'BEGIN {
		r = "";
		if (a != "" && b != "" && a > 0 && b > 0)
			r = sprintf("%.1fx", dir == "lower" ? b / a : a / b);
		printf "%-26s %10s %10s %-6s %9s   %s\n", n, a, b, u, r, bud }'
}
printf "%-26s %10s %10s %-6s %9s   %s\n" "" "pmd" "python" "unit" \
    "pmd gain" "budget"
row "apply_async, tiny task" "us" "$(get "$out/c.txt" apply_async_us)" \
    "$(get "$out/py.txt" apply_async_us)" "<= 2 us/task, >= 10x" lower
row "map, 1,000,000 tiny" "us" "$(get "$out/c.txt" map_us)" \
    "$(get "$out/py.txt" map_us)" "<= 0.05 us/task" lower
row "map, 1,000 x 1 MiB" "GB/s" "$(get "$out/c.txt" map_1mib_gbs)" \
    "$(get "$out/py.txt" map_1mib_gbs)" "" higher
row "linecount" "s" "$(get "$out/c.txt" linecount_s)" \
    "$(get "$out/py.txt" linecount_s)" "" lower
row "wc -l (same file)" "s" "$(get "$out/c.txt" wc_s)" "" "" lower
c_lines=$(get "$out/c.txt" linecount_lines)
if [ "$c_lines" != "$wcl" ]; then
	echo "== linecount MISMATCH: pool $c_lines, wc -l $wcl" >&2
	exit 1
fi
echo "== linecount: pool and wc -l agree ($wcl lines)"

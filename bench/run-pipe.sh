#!/bin/sh
# run-pipe.sh BUILD_DIR - pmd's pipes and dicts next to Python's Pipe()
# and Manager().dict(), in one run on one machine, and next to their bare
# counterparts: a socketpair round trip to a forked child for the pipe, a
# ping round trip to pmd for the dict.  Prints numbers, ratios and the
# budgets; it asserts nothing.
#
# Uses $PMD_SOCKET when set; otherwise a private pmd (BUILD_DIR/pmd) in a
# fresh runtime directory.  RUNS / PY_RUNS override the iteration counts.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
bench_setup run-pipe.sh $# "${1:-}" bench/bench_pipe bench/pipe_tasks.so
runs=${RUNS:-20000}
py_runs=${PY_RUNS:-5000}

bench_banner
echo "== pmd pipes and dicts: $runs round trips of each kind, $((200)) x 1 MiB"
"$build/bench/bench_pipe" "$runs" > "$out/c.txt"
if command -v python3 > /dev/null; then
	echo "== python: Pipe() and Manager().dict(), $py_runs of each"
	if ! python3 "$here/py_pipe.py" "$py_runs" > "$out/py.txt"; then
		echo "== python: py_pipe.py failed; Python columns may be empty" >&2
	fi
else
	echo "== python: python3 not found; Python columns left empty"
	: > "$out/py.txt"
fi

cat "$out/c.txt" "$out/py.txt" | awk '
function has(k) { return (k in v) && v[k] != "" && v[k] >= 0 }
function num(k, u) { return has(k) ? sprintf("%12.3f %s", v[k], u) : sprintf("%12s %s", "n/a", u) }
function ratio(a, b) { return (has(a) && has(b) && v[b] > 0) ? sprintf("%.2fx", v[a] / v[b]) : "n/a" }
function verdict(ok) { return ok ? "within budget" : "OVER budget" }
{ v[$1] = $2 }
END {
	printf "\n%-48s\n", "pipes"
	printf "%-48s %s\n", "bare socketpair round trip, 64 B (C)", num("bare_rt_us", "us")
	printf "%-48s %s\n", "pmd pipe round trip to a worker, 64 B", num("pipe_rt_us", "us")
	printf "%-48s %s\n", "python " v["py_version"] " Pipe() round trip, 64 B", num("py_pipe_rt_us", "us")
	printf "%-48s %s\n", "pmd pipe, 200 x 1 MiB to a worker", num("pipe_big_gb_s", "GB/s")
	printf "%-48s %s\n", "python Pipe(), 200 x 1 MiB to a child", num("py_pipe_big_gb_s", "GB/s")

	printf "\n%-48s\n", "dicts (per operation)"
	printf "%-48s %s\n", "bare round trip to pmd (ping)", num("ping_rt_us", "us")
	printf "%-48s %s\n", "pmd dict set or get", num("dict_op_us", "us")
	printf "%-48s %s\n", "pmd dict incr (atomic)", num("dict_incr_us", "us")
	printf "%-48s %s\n", "python Manager().dict() set or get", num("py_dict_op_us", "us")
	printf "%-48s %s\n", "python d[k] += 1 (not atomic)", num("py_dict_incr_us", "us")

	printf "\nratios\n"
	printf "  pmd pipe / bare round trip          %s\n", has("pipe_ratio") ? sprintf("%.2fx", v["pipe_ratio"]) : ratio("pipe_rt_us", "bare_rt_us")
	printf "  python pipe / pmd pipe              %s\n", ratio("py_pipe_rt_us", "pipe_rt_us")
	printf "  pmd 1 MiB / python 1 MiB            %s\n", ratio("pipe_big_gb_s", "py_pipe_big_gb_s")
	printf "  pmd dict op / ping                  %s\n", has("dict_op_ratio") ? sprintf("%.2fx", v["dict_op_ratio"]) : ratio("dict_op_us", "ping_rt_us")
	printf "  pmd incr / ping                     %s\n", has("dict_incr_ratio") ? sprintf("%.2fx", v["dict_incr_ratio"]) : ratio("dict_incr_us", "ping_rt_us")
	printf "  python dict op / pmd dict op        %s\n", ratio("py_dict_op_us", "dict_op_us")
	printf "  python += 1 / pmd incr              %s\n", ratio("py_dict_incr_us", "dict_incr_us")

	printf "\nbudgets\n"
	if (has("pipe_ratio"))
		printf "  pipe <= 1.25x bare round trip       %.2fx: %s\n", v["pipe_ratio"], verdict(v["pipe_ratio"] <= 1.25)
	if (has("py_pipe_rt_us") && has("pipe_rt_us"))
		printf "  pipe >= 3x faster than python       %.1fx: %s\n", v["py_pipe_rt_us"] / v["pipe_rt_us"], verdict(v["py_pipe_rt_us"] >= 3 * v["pipe_rt_us"])
	if (has("dict_op_ratio"))
		printf "  dict op <= 1.5x ping                %.2fx: %s\n", v["dict_op_ratio"], verdict(v["dict_op_ratio"] <= 1.5)
	if (has("py_dict_op_us") && has("dict_op_us"))
		printf "  dict op >= 10x faster than python   %.1fx: %s\n", v["py_dict_op_us"] / v["dict_op_us"], verdict(v["py_dict_op_us"] >= 10 * v["dict_op_us"])
}'

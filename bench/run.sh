#!/bin/sh
# run.sh BUILD_DIR - pmd and Python's multiprocessing side by side, in one
# run on one machine: Process start+join of a no-op target, a bare fork in
# C, each start method (pmd's and Python's forkserver, spawn and fork), and
# the memory of an idle worker, alone and as the mean of 4 idle at once:
# PSS (workers sharing pages each pay less of them) and USS, the pages the
# worker alone maps, which do not move with what else runs.  Prints numbers and
# ratios next to the budgets; it asserts nothing.
#
# Uses $PMD_SOCKET when set; otherwise a private pmd (BUILD_DIR/pmd) in a
# fresh runtime directory.  RUNS / PY_RUNS override the iteration counts.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
bench_setup run.sh $# "${1:-}" bench/bench_process bench/bench_tasks.so
runs=${RUNS:-2000}
py_runs=${PY_RUNS:-300}
py_spawn_runs=${PY_SPAWN_RUNS:-60}

bench_banner
echo "== pmd: $runs Process start+join of bench_tasks.so:noop, interleaved with bare forks"
"$build/bench/bench_process" "$build/bench/bench_tasks.so" "$runs" > "$out/c.txt"
if command -v python3 > /dev/null; then
	echo "== python: $py_runs multiprocessing Process start+join each, forkserver and fork; $py_spawn_runs spawn"
	if ! python3 "$here/py_process.py" "$py_runs" "$py_spawn_runs" > "$out/py.txt"; then
		echo "== python: py_process.py failed; Python columns may be empty" >&2
	fi
else
	echo "== python: python3 not found; Python columns left empty"
	: > "$out/py.txt"
fi

cat "$out/c.txt" "$out/py.txt" | awk '
function has(k) { return (k in v) && v[k] != "" && v[k] >= 0 }
function us(k) { return has(k) ? sprintf("%10.1f us", v[k]) : sprintf("%13s", "n/a") }
function kb(k) { return has(k) ? sprintf("%7d KB", v[k]) : sprintf("%10s", "n/a") }
function ratio(a, b) { return (has(a) && has(b) && v[b] > 0) ? sprintf("%.2fx", v[a] / v[b]) : "n/a" }
function verdict(ok) { return ok ? "within budget" : "OVER budget" }
{ v[$1] = $2 }
END {
	printf "\n%-40s %13s %13s\n", "Process start+join, no-op target", "median", "p90"
	printf "%-40s %s %s\n", "pmd (libpmclient -> pmd)", us("pmd_process_median_us"), us("pmd_process_p90_us")
	printf "%-40s %s %s\n", "bare fork+_exit+waitpid (C)", us("bare_fork_median_us"), us("bare_fork_p90_us")
	printf "%-40s %s %s\n", "python " v["py_version"] " multiprocessing forkserver", us("py_forkserver_median_us"), us("py_forkserver_p90_us")
	printf "%-40s %s %s\n", "python " v["py_version"] " multiprocessing fork", us("py_fork_median_us"), us("py_fork_p90_us")

	printf "%-40s %s %s\n", "pm_pool_new, 8 workers ready", us("pmd_pool8_new_median_us"), us("pmd_pool8_new_p90_us")

	printf "\n%-40s %13s %13s\n", "start methods, start+join (one loop)", "median", "p90"
	printf "%-40s %s %s\n", "pmd forkserver (default)", us("m_forkserver_median_us"), us("m_forkserver_p90_us")
	printf "%-40s %s %s\n", "pmd spawn (exec of a runner)", us("m_spawn_median_us"), us("m_spawn_p90_us")
	printf "%-40s %s %s\n", "pmd fork, pmd told (Adopt)", us("m_fork_median_us"), us("m_fork_p90_us")
	printf "%-40s %s %s\n", "pmd fork, no pmd (c NULL)", us("m_fork_nopmd_median_us"), us("m_fork_nopmd_p90_us")
	printf "%-40s %s %s\n", "bare fork+_exit+waitpid (C)", us("m_bare_fork_median_us"), us("m_bare_fork_p90_us")
	printf "%-40s %s %s\n", "python forkserver", us("py_forkserver_median_us"), us("py_forkserver_p90_us")
	printf "%-40s %s %s\n", "python spawn", us("py_spawn_median_us"), us("py_spawn_p90_us")
	printf "%-40s %s %s\n", "python fork", us("py_fork_median_us"), us("py_fork_p90_us")

	printf "\n%-40s %13s %13s\n", "from a caller holding " v["big_caller_mb"] " MiB (touched)", "median", "p90"
	printf "%-40s %s %s\n", "pmd start+join", us("pmd_big_process_median_us"), us("pmd_big_process_p90_us")
	printf "%-40s %s %s\n", "bare fork+_exit+waitpid (C)", us("bare_big_fork_median_us"), us("bare_big_fork_p90_us")

	printf "\n%-40s %13s\n", "4 callers at once, aggregate", "per second"
	printf "%-40s %13s\n", "pmd start+join", has("pmd_4callers_per_s") ? v["pmd_4callers_per_s"] : "n/a"
	printf "%-40s %13s\n", "bare fork+_exit+waitpid (C)", has("bare_4callers_per_s") ? v["bare_4callers_per_s"] : "n/a"

	printf "\n%-40s %10s %10s\n", "idle worker memory (PSS)", "alone", "4 at once"
	printf "%-40s %s %s\n", "pmd worker", kb("pmd_idle_pss_kb"), kb("pmd_idle4_pss_kb")
	printf "%-40s %s %s\n", "python forkserver worker", kb("py_forkserver_idle_pss_kb"), kb("py_forkserver_idle4_pss_kb")
	printf "%-40s %s %s\n", "python fork worker", kb("py_fork_idle_pss_kb"), kb("py_fork_idle4_pss_kb")
	printf "%-40s %s\n", "(pmd broker, for reference)", kb("pmd_broker_pss_kb")
	printf "\n%-40s %10s %10s\n", "idle worker own pages (USS)", "alone", "4 at once"
	printf "%-40s %s %s\n", "pmd worker", kb("pmd_idle_uss_kb"), kb("pmd_idle4_uss_kb")
	printf "%-40s %s %s\n", "python forkserver worker", kb("py_forkserver_idle_uss_kb"), kb("py_forkserver_idle4_uss_kb")
	printf "%-40s %s %s\n", "python fork worker", kb("py_fork_idle_uss_kb"), kb("py_fork_idle4_uss_kb")

	printf "\nratios (medians)\n"
	printf "  pmd / bare fork                 %s\n", ratio("pmd_process_median_us", "bare_fork_median_us")
	printf "  python forkserver / pmd         %s\n", ratio("py_forkserver_median_us", "pmd_process_median_us")
	printf "  python fork / pmd               %s\n", ratio("py_fork_median_us", "pmd_process_median_us")
	printf "  python forkserver PSS / pmd PSS %s\n", ratio("py_forkserver_idle_pss_kb", "pmd_idle_pss_kb")
	printf "  python forkserver USS / pmd USS %s\n", ratio("py_forkserver_idle_uss_kb", "pmd_idle_uss_kb")
	printf "  big caller: pmd / bare fork     %s\n", ratio("pmd_big_process_median_us", "bare_big_fork_median_us")
	printf "  big caller / small, pmd         %s\n", ratio("pmd_big_process_median_us", "pmd_process_median_us")
	printf "  4 callers: pmd / bare (rate)    %s\n", ratio("pmd_4callers_per_s", "bare_4callers_per_s")
	printf "  pool of 8 / one start           %s\n", ratio("pmd_pool8_new_median_us", "pmd_process_median_us")
	printf "  spawn / forkserver, pmd         %s\n", ratio("m_spawn_median_us", "m_forkserver_median_us")
	printf "  fork (told) / bare fork         %s\n", ratio("m_fork_median_us", "m_bare_fork_median_us")
	printf "  fork (no pmd) / bare fork       %s\n", ratio("m_fork_nopmd_median_us", "m_bare_fork_median_us")
	printf "  python spawn / pmd spawn        %s\n", ratio("py_spawn_median_us", "m_spawn_median_us")
	printf "  python fork / pmd fork (no pmd) %s\n", ratio("py_fork_median_us", "m_fork_nopmd_median_us")

	printf "\nbudgets\n"
	if (has("pmd_process_median_us"))
		printf "  start+join median <= 250 us      %.1f us: %s\n", v["pmd_process_median_us"], verdict(v["pmd_process_median_us"] <= 250)
	if (has("pmd_process_median_us") && has("bare_fork_median_us") && v["bare_fork_median_us"] > 0)
		printf "  start+join <= 1.0x bare fork     %.2fx: %s\n", v["pmd_process_median_us"] / v["bare_fork_median_us"], verdict(v["pmd_process_median_us"] <= v["bare_fork_median_us"])
	if (has("pmd_big_process_median_us") && has("bare_big_fork_median_us") && v["bare_big_fork_median_us"] > 0)
		printf "  big caller <= 0.1x bare fork     %.2fx: %s\n", v["pmd_big_process_median_us"] / v["bare_big_fork_median_us"], verdict(v["pmd_big_process_median_us"] <= 0.1 * v["bare_big_fork_median_us"])
	if (has("py_forkserver_median_us") && has("pmd_process_median_us") && v["pmd_process_median_us"] > 0)
		printf "  python forkserver >= 30x pmd     %.1fx: %s\n", v["py_forkserver_median_us"] / v["pmd_process_median_us"], verdict(v["py_forkserver_median_us"] >= 30 * v["pmd_process_median_us"])
	if (has("pmd_4callers_per_s") && has("bare_4callers_per_s") && v["bare_4callers_per_s"] > 0)
		printf "  4 callers >= 0.8x bare rate      %.2fx: %s\n", v["pmd_4callers_per_s"] / v["bare_4callers_per_s"], verdict(v["pmd_4callers_per_s"] >= 0.8 * v["bare_4callers_per_s"])
	if (has("pmd_pool8_new_median_us") && has("pmd_process_median_us") && v["pmd_process_median_us"] > 0)
		printf "  pool of 8 <= 2x one start        %.2fx: %s\n", v["pmd_pool8_new_median_us"] / v["pmd_process_median_us"], verdict(v["pmd_pool8_new_median_us"] <= 2 * v["pmd_process_median_us"])
	if (has("pmd_idle_pss_kb"))
		printf "  idle worker PSS <= 300 KB        %d KB: %s\n", v["pmd_idle_pss_kb"], verdict(v["pmd_idle_pss_kb"] <= 300)
	if (has("pmd_idle4_pss_kb"))
		printf "  (4 idle at once, mean <= 300 KB  %d KB: %s)\n", v["pmd_idle4_pss_kb"], verdict(v["pmd_idle4_pss_kb"] <= 300)
}'

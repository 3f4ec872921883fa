#!/bin/sh
# run-memory.sh BUILD_DIR - total PSS of a Pool of 8 idle workers started
# by a caller holding 1 GiB (MIB overrides): pmd's Pool against Python's
# multiprocessing.Pool with fork and with forkserver, in one run.  Prints
# the figures; asserts nothing.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
bench_setup run-memory.sh $# "${1:-}" bench/bench_memory bench/pool_tasks.so
mib=${MIB:-1024}

echo "== memory bench: Pool of 8 idle workers, caller holding $mib MiB"
"$build/bench/bench_memory" "$build/bench/pool_tasks.so" "$mib" > "$out/c.txt"
get() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
printf "%-44s %10s\n" "" "PSS kB"
printf "%-44s %10s\n" "pmd: 8 workers and the forker" \
    "$(get "$out/c.txt" pss_children_kb)"
printf "%-44s %10s\n" "pmd: all of it (broker too)" \
    "$(get "$out/c.txt" pss_pmd_kb)"
if command -v python3 > /dev/null; then
	python3 "$here/py_memory.py" fork "$mib" > "$out/fork.txt"
	python3 "$here/py_memory.py" forkserver "$mib" > "$out/fs.txt"
	printf "%-44s %10s\n" "python fork: 8 workers" \
	    "$(get "$out/fork.txt" pss_workers_kb)"
	printf "%-44s %10s\n" "python forkserver: 8 workers" \
	    "$(get "$out/fs.txt" pss_workers_kb)"
	printf "%-44s %10s\n" "python forkserver: server (+ resource tracker)" \
	    "$(get "$out/fs.txt" pss_server_kb)"
fi

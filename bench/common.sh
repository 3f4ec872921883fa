# common.sh - sourced by bench/run*.sh.  bench_setup NAME NARGS BUILD_DIR
# FILE... checks that the script got one argument (NARGS is its $#), a
# directory, and that each FILE (relative to BUILD_DIR) is built,
# then sets build, here and out (a private 0700 directory removed on exit)
# and, unless $PMD_SOCKET is set, points XDG_RUNTIME_DIR at out so that a
# private pmd (BUILD_DIR/pmd, exported as PMD_BIN) serves the run.

bench_setup() {
	if [ "$2" -ne 1 ] || [ ! -d "$3" ]; then
		echo "usage: $1 BUILD_DIR" >&2
		exit 2
	fi
	build=$(cd "$3" && pwd)
	shift 3
	for f in "$@"; do
		if [ ! -e "$build/$f" ]; then
			echo "bench: $build/$f is missing; run make bench" >&2
			exit 1
		fi
	done
	out=$(mktemp -d "${TMPDIR:-/tmp}/pmd-bench.XXXXXX")
	trap 'rm -rf "$out"' EXIT
	chmod 700 "$out"
	if [ -z "${PMD_SOCKET:-}" ]; then
		unset PMD_SOCKET
		XDG_RUNTIME_DIR=$out
		export XDG_RUNTIME_DIR
	fi
	PMD_BIN=$build/pmd
	export PMD_BIN
}

# The machine, for the head of a report.
bench_banner() {
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
	echo "== bench: $(uname -srm), $(nproc) CPUs${cpu:+, $cpu}"
}

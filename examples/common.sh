# common.sh - sourced by examples/demo*.sh.  demo_setup NAME NARGS BUILD_DIR
# FILE... checks that the script got one argument (NARGS is its $#), a
# directory, and that pmd and each FILE (relative to BUILD_DIR) are built,
# then sets build and rundir (a fresh 0700 directory removed on exit).
# No system or user pmd is used: PMD_SOCKET is unset and XDG_RUNTIME_DIR is
# rundir, so pm_connect(NULL) starts BUILD_DIR/pmd (PMD_BIN) for the run.

demo_setup() {
	if [ "$2" -ne 1 ] || [ ! -d "$3" ]; then
		echo "usage: $1 BUILD_DIR" >&2
		exit 2
	fi
	build=$(cd "$3" && pwd)
	shift 3
	for f in pmd "$@"; do
		if [ ! -e "$build/$f" ]; then
			echo "demo: $build/$f is missing; run make first" >&2
			exit 1
		fi
	done
	rundir=$(mktemp -d "${TMPDIR:-/tmp}/pmd-demo.XXXXXX")
	trap 'rm -rf "$rundir"' EXIT
	chmod 700 "$rundir"
	unset PMD_SOCKET
	PMD_BIN=$build/pmd
	XDG_RUNTIME_DIR=$rundir
	export PMD_BIN XDG_RUNTIME_DIR
}

#!/bin/sh
# demo.sh BUILD_DIR - run examples/hello against a private pmd.
# No system or user pmd is used (see common.sh).
set -eu

. "$(cd "$(dirname "$0")" && pwd)/common.sh"
demo_setup demo.sh $# "${1:-}" examples/hello examples/hello_tasks.so

echo "== demo: private pmd ($PMD_BIN), runtime dir $rundir"
if "$build/examples/hello" "$build/examples/hello_tasks.so"; then
	echo "== demo: ok"
else
	rc=$?
	echo "== demo: examples/hello FAILED (exit $rc)" >&2
	exit 1
fi

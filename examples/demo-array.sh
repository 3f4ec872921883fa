#!/bin/sh
# demo-array.sh BUILD_DIR - run examples/array (an anonymous shared array
# filled in parallel by processes given its fd) against a private pmd, and
# fail unless every element is right.
# No system or user pmd is used (see common.sh).  TIMEOUT (120 s) bounds
# the run.
set -eu

. "$(cd "$(dirname "$0")" && pwd)/common.sh"
demo_setup demo-array.sh $# "${1:-}" examples/array examples/array_tasks.so

limit=
if command -v timeout >/dev/null 2>&1; then
	limit="timeout ${TIMEOUT:-120}"
fi

echo "== demo: array on a private pmd ($PMD_BIN)"
if $limit "$build/examples/array"; then
	echo "== demo: array ok"
else
	rc=$?
	echo "== demo: examples/array FAILED (exit $rc)" >&2
	exit 1
fi

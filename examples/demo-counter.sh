#!/bin/sh
# demo-counter.sh BUILD_DIR - run examples/counter (4 processes adding under a
# named lock, then a holder killed and a survivor getting PM_EOWNERDEAD)
# against a private pmd, and fail unless every count is right.
# No system or user pmd is used (see common.sh).  TIMEOUT (120 s) bounds
# the run.
set -eu

. "$(cd "$(dirname "$0")" && pwd)/common.sh"
demo_setup demo-counter.sh $# "${1:-}" examples/counter examples/counter_tasks.so

limit=
if command -v timeout >/dev/null 2>&1; then
	limit="timeout ${TIMEOUT:-120}"
fi

echo "== demo: counter on a private pmd ($PMD_BIN)"
if $limit "$build/examples/counter"; then
	echo "== demo: counter ok"
else
	rc=$?
	echo "== demo: examples/counter FAILED (exit $rc)" >&2
	exit 1
fi

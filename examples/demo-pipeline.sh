#!/bin/sh
# demo-pipeline.sh BUILD_DIR - run examples/pipeline (a producer Process, a
# Pool of consumers, a joinable work queue and a result queue) against a
# private pmd, and fail unless every result is right.
# No system or user pmd is used (see common.sh).
# ITEMS (2000) sets the number of work items; TIMEOUT (120 s) bounds the run.
set -eu

. "$(cd "$(dirname "$0")" && pwd)/common.sh"
demo_setup demo-pipeline.sh $# "${1:-}" examples/pipeline \
    examples/pipeline_tasks.so

items=${ITEMS:-2000}
limit=
if command -v timeout >/dev/null 2>&1; then
	limit="timeout ${TIMEOUT:-120}"
fi

echo "== demo: pipeline on a private pmd ($PMD_BIN)"
if $limit "$build/examples/pipeline" "$items" \
    "$build/examples/pipeline_tasks.so"; then
	echo "== demo: pipeline ok"
else
	rc=$?
	echo "== demo: examples/pipeline FAILED (exit $rc)" >&2
	exit 1
fi

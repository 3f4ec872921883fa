#!/bin/sh
# demo-pipeline.sh BUILD_DIR - run examples/pipeline (a producer Process, a
# Pool of consumers, a joinable work queue and a result queue) against a
# private pmd, and fail unless every result is right.
# No system or user pmd is used: PMD_SOCKET is unset and XDG_RUNTIME_DIR is
# a fresh directory, so pm_connect(NULL) starts BUILD_DIR/pmd for the run.
# ITEMS (2000) sets the number of work items; TIMEOUT (120 s) bounds the run.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: demo-pipeline.sh BUILD_DIR" >&2
	exit 2
fi
build=$(cd "$1" && pwd)
for f in "$build/pmd" "$build/examples/pipeline" \
    "$build/examples/pipeline_tasks.so"; do
	if [ ! -e "$f" ]; then
		echo "demo: $f is missing; run make first" >&2
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

#!/bin/sh
# demo-pingpong.sh BUILD_DIR - run examples/pingpong on a private pmd:
# Python's sender/receiver over a Pipe, a ping-pong and an fd handover.
set -eu

. "$(cd "$(dirname "$0")" && pwd)/common.sh"
demo_setup demo-pingpong.sh $# "${1:-}" examples/pingpong \
    examples/pingpong_tasks.so
out=$rundir/out.txt
if ! "$build/examples/pingpong" > "$out"; then
	cat "$out"
	echo "== pingpong: FAILED" >&2
	exit 1
fi
cat "$out"
# every message the sender sent was printed, in order
if [ "$(grep '^receiver got:' "$out" | cut -d' ' -f3-)" != "hello
hey
hru?" ]; then
	echo "== pingpong: the receiver did not print what was sent" >&2
	exit 1
fi

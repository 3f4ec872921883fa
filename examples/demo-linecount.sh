#!/bin/sh
# demo-linecount.sh BUILD_DIR - make a few hundred MB test file, count its
# lines with examples/linecount (a Pool over a private pmd) and sequentially,
# print both times, and fail on a mismatch.  SIZE_MB overrides the size.
set -eu

. "$(cd "$(dirname "$0")" && pwd)/common.sh"
demo_setup demo-linecount.sh $# "${1:-}" examples/linecount \
    examples/linecount_tasks.so
size_mb=${SIZE_MB:-300}

file=$rundir/lines.txt
echo "== linecount: making a ${size_mb} MB file"
# lines of varied length, fast: yes | head does the work
yes 'the quick brown fox jumps over the lazy dog; pmd counts lines
short
a somewhat longer line that is here to vary the line lengths a little bit' |
    head -c "$((size_mb * 1024 * 1024))" > "$file"
if "$build/examples/linecount" "$file"; then
	echo "== linecount: wc -l says $(wc -l < "$file")"
	echo "== linecount: ok"
else
	echo "== linecount: FAILED" >&2
	exit 1
fi

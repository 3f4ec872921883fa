#!/bin/sh
# demo-linecount.sh BUILD_DIR - make a few hundred MB test file, count its
# lines with examples/linecount (a Pool over a private pmd) and sequentially,
# print both times, and fail on a mismatch.  SIZE_MB overrides the size.
set -eu

if [ $# -ne 1 ]; then
	echo "usage: demo-linecount.sh BUILD_DIR" >&2
	exit 2
fi
build=$(cd "$1" && pwd)
size_mb=${SIZE_MB:-300}
for f in "$build/pmd" "$build/examples/linecount" \
    "$build/examples/linecount_tasks.so"; do
	if [ ! -e "$f" ]; then
		echo "demo-linecount: $f is missing; run make first" >&2
		exit 1
	fi
done

rundir=$(mktemp -d "${TMPDIR:-/tmp}/pmd-linecount.XXXXXX")
trap 'rm -rf "$rundir"' EXIT
chmod 700 "$rundir"
unset PMD_SOCKET
PMD_BIN=$build/pmd
XDG_RUNTIME_DIR=$rundir
export PMD_BIN XDG_RUNTIME_DIR

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

#!/bin/sh
# demo-wordfreq.sh BUILD_DIR - count the words of a few MB of text with
# examples/wordfreq (a Pool adding to a shared dict on a private pmd) and
# fail unless the dict's counts sum to what LC_ALL=C wc -w says.
set -eu

. "$(cd "$(dirname "$0")" && pwd)/common.sh"
demo_setup demo-wordfreq.sh $# "${1:-}" examples/wordfreq \
    examples/wordfreq_tasks.so
src=$(cd "$(dirname "$0")/.." && pwd)
file=$rundir/words.txt
for i in 1 2 3 4 5 6 7 8; do
	cat "$src/README.md" "$src"/client/*.c
done > "$file"
echo "== wordfreq: $(wc -c < "$file") bytes"
out=$rundir/out.txt
if ! "$build/examples/wordfreq" "$file" > "$out"; then
	cat "$out"
	echo "== wordfreq: FAILED" >&2
	exit 1
fi
cat "$out"
got=$(sed -n 's/^\([0-9]*\) words.*/\1/p' "$out")
want=$(LC_ALL=C wc -w < "$file")
if [ "$got" != "$want" ]; then
	echo "== wordfreq: the dict says $got words, wc -w $want" >&2
	exit 1
fi
echo "== wordfreq: wc -w says $want too: ok"

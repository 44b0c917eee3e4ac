#!/bin/sh
# Fuzzes every harness for real for SECONDS each, growing its corpus under fuzz/corpus/.
set -eu
seconds=${1:-60}
cd "$(dirname "$0")/.."
mkdir -p fuzz/artifacts
for bin in build/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin" | sed 's/^fuzz_//')
    mkdir -p "fuzz/corpus/$name"
    dict=""
    [ -f "fuzz/$name.dict" ] && dict="-dict=fuzz/$name.dict"
    echo "fuzzing $name for ${seconds}s"
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$seconds" -artifact_prefix=fuzz/artifacts/ $dict "fuzz/corpus/$name"
done

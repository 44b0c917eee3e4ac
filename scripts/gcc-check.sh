#!/bin/sh
# The release build (`make`) compiles with the system's cc, gcc on Debian, while `make test` uses clang:
# this builds moat with gcc, optimised as released, warnings as errors, so a warning only gcc sees (an
# ignored result, a truncated format) fails the tests instead of greeting users of `make`.
set -eu
cd "$(dirname "$0")/.."
if ! command -v gcc >/dev/null 2>&1; then
    echo "gcc-check: gcc is not installed; skipped"
    exit 77
fi
dir=build/gcc-check
CC=gcc cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DMOAT_WERROR=ON -DMOAT_TESTS=OFF >/dev/null
cmake --build "$dir" --target moat -j 2 -- --no-print-directory >"$dir/build.log" 2>&1 || {
    grep -E "error|warning" "$dir/build.log" | head -40
    echo "gcc-check: the gcc release build fails (full log: $dir/build.log)" >&2
    exit 1
}
echo "gcc-check: the gcc release build is clean"

#!/bin/sh
# The release build (`make`) compiles with the system's cc, gcc on Debian, while `make test` uses clang:
# this builds moat with gcc, optimised as released, warnings as errors, so a warning only gcc sees (an
# ignored result, a truncated format) fails the tests instead of greeting users of `make`. Then the `dev`
# preset's configuration (gcc, debug, -Werror, the unit tests and corpus replayers too): unoptimised, gcc
# warns of other truncations than at -O2.
set -eu
cd "$(dirname "$0")/.."
if ! command -v gcc >/dev/null 2>&1; then
    echo "gcc-check: gcc is not installed; skipped"
    exit 77
fi
build() { # build DIR TARGET what cmake-options...
    dir=$1 target=$2 what=$3
    shift 3
    CC=gcc cmake -S . -B "$dir" -DMOAT_WERROR=ON "$@" >/dev/null
    cmake --build "$dir" --target "$target" -j 2 -- --no-print-directory >"$dir/build.log" 2>&1 || {
        grep -E "error|warning" "$dir/build.log" | head -40
        echo "gcc-check: the gcc $what build fails (full log: $dir/build.log)" >&2
        exit 1
    }
}
build build/gcc-check moat release -DCMAKE_BUILD_TYPE=Release -DMOAT_TESTS=OFF
build build/gcc-check-dev all dev -DCMAKE_BUILD_TYPE=Debug -DMOAT_TESTS=ON
echo "gcc-check: the gcc release and dev builds are clean"

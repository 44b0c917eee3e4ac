#!/bin/sh
# Instructions per operation, moat and nginx, under valgrind callgrind: a count that does not move with the
# machine's load, for comparing small changes. Usage: bench/instructions.sh [moat] [nginx] [--loads a,b]
set -eu
cd "$(dirname "$0")/.."
exec /usr/bin/python3 bench/bench.py --instructions "$@"

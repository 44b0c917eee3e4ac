#!/bin/sh
# Profiles one server worker under the bench loads with perf (cpu-clock sampling, DWARF call graphs).
# Usage: bench/profile.sh [moat] [nginx] [--loads keepalive,hs-ecdsa,hs-rsa,resume]
# Reports go to build/release/bench-profiles/; bench/profiles.md keeps the written summary.
set -eu
cd "$(dirname "$0")/.."
exec /usr/bin/python3 bench/bench.py --profile "$@"

#!/bin/sh
# make bench: moat against nginx on loopback (see bench/README.md). Knobs: BENCH_QUICK=1 (short smoke
# run, RESULTS.md untouched), BENCH_ROUNDS=N, BENCH_SERVERS=nginx,nginx (calibration) or moat,moat-b with
# MOAT_BIN_B (A/B of two builds), BENCH_MEASURES=name,... (a subset), BENCH_WRITE=0|1.
set -eu
cd "$(dirname "$0")/.."
rc=0
/usr/bin/python3 bench/bench.py "$@" || rc=$?
# the reverse-proxy measure (bench/proxy.py): not for --profile/--instructions, nor when BENCH_MEASURES
# names others only
case ",${BENCH_MEASURES:-proxy}," in
*,proxy,*) [ $# -eq 0 ] && { /usr/bin/python3 bench/proxy.py || rc=$?; } ;;
esac
exit $rc

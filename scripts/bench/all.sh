#!/usr/bin/env bash
# Runs every peerglance benchmark in order (docs/benchmarks.md): markdown tables on stdout,
# progress on stderr. Sizes and reps come from BENCH_* variables (see the head of each script).
#   npm run bench > bench.md
#   BENCH_REPS=1 BENCH_SIZE_MIB=256 bash scripts/bench/all.sh
set -u
cd "$(dirname "$0")/../.."
# The project's Node 24 (npm scripts put node_modules/.bin first on PATH anyway).
NODE=node_modules/.bin/node
[ -x "$NODE" ] || NODE=node
echo "# peerglance benchmarks, $(date -u +%FT%TZ), $(nproc) vCPU, Node $("$NODE" --version)" 
echo
df -h /tmp >&2
status=0
for bench in download upload metadata-latency memory convergence p2p-transfer seeding; do
  "$NODE" "scripts/bench/$bench.ts" || { echo "scripts/bench/$bench.ts failed" >&2; status=1; }
done
exit $status

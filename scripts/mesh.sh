#!/usr/bin/env bash
# Starts N agents (default 3) on this machine, wired into one mesh: API ports 9292.., data in
# ./data/mesh-<i>. Ctrl-C stops them all.
set -euo pipefail
n=${1:-3}
cd "$(dirname "$0")/.."
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
npx peerglance agent --data-dir ./data/mesh-1 --api-listen 127.0.0.1:9292 --p2p-listen /ip4/127.0.0.1/tcp/4001 &
pids+=($!)
for _ in $(seq 50); do
  first=$(curl -sf http://127.0.0.1:9292/peerglance/v1/status 2>/dev/null | python3 -c 'import sys,json; print(json.load(sys.stdin)["multiaddrs"][0])' 2>/dev/null) && break
  sleep 0.2
done
echo "agent 1: http://127.0.0.1:9292  $first"
for i in $(seq 2 "$n"); do
  npx peerglance agent --data-dir "./data/mesh-$i" --api-listen "127.0.0.1:$((9291 + i))" --bootstrap "$first" &
  pids+=($!)
  echo "agent $i: http://127.0.0.1:$((9291 + i))"
done
wait

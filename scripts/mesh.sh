#!/usr/bin/env bash
# Starts N agents (default 3) on this machine, wired into one mesh: API ports PORT.. (default 9292),
# data in DIR/mesh-<i> (default ./data). Ctrl-C or SIGTERM stops them all.
set -euo pipefail
n=${1:-3}
port=${2:-9292}
cd "$(dirname "$0")/.."
data=$(realpath -m "${3:-./data}")
# The agents themselves, not npx: npx runs its command under `sh -c`, which would swallow our SIGTERM.
# node_modules/.bin first on PATH puts the project's Node 24 under the command's `env node`.
export PATH="$PWD/node_modules/.bin:$PATH"
pids=()
stop () { trap - INT TERM EXIT; kill "${pids[@]}" 2>/dev/null || true; wait; }
trap stop INT TERM EXIT
peerglance agent --data-dir "$data/mesh-1" --api-listen "127.0.0.1:$port" --p2p-listen /ip4/127.0.0.1/tcp/0 &
pids+=($!)
first=
for _ in $(seq 100); do
  first=$(curl -sf "http://127.0.0.1:$port/peerglance/v1/status" 2>/dev/null | python3 -c 'import sys,json; print(json.load(sys.stdin)["multiaddrs"][0])' 2>/dev/null) && break
  sleep 0.2
done
[ -n "$first" ] || { echo "agent 1 did not start" >&2; exit 1; }
echo "agent 1: http://127.0.0.1:$port  $first"
for i in $(seq 2 "$n"); do
  peerglance agent --data-dir "$data/mesh-$i" --api-listen "127.0.0.1:$((port + i - 1))" --bootstrap "$first" &
  pids+=($!)
  echo "agent $i: http://127.0.0.1:$((port + i - 1))"
done
wait

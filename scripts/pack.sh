#!/usr/bin/env bash
# Packs a release of the agent: OUT_DIR/peerglance-VERSION.tgz (default OUT_DIR: the project root),
# unpacking to peerglance-VERSION/. On a hypervisor it installs as a checkout does:
#   tar xzf peerglance-VERSION.tgz && cd peerglance-VERSION && npm ci --omit=dev && npm start
#   (or: sudo peerglance-VERSION/scripts/install-agent.sh)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
out=$(cd "${1:-$src}" && pwd)
. "$src/scripts/lib/release-files.sh"
version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$src/package.json")
name=peerglance-$version
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/$name"
release_tar "$src" | tar -C "$stage/$name" -xf -
tar -C "$stage" -czf "$out/$name.tgz" "$name"
echo "$out/$name.tgz"

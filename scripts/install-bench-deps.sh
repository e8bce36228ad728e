#!/usr/bin/env bash
# Installs what scripts/bench/swarm.ts runs besides Node: iproute2 (network namespaces, veth,
# HTB), curl, and the BitTorrent baseline: aria2c, opentracker and mktorrent. Idempotent and
# quick: it does nothing when every command is already there.
set -euo pipefail
source "$(dirname "$0")/lib/install-commands.sh"

# opentracker's own service is not wanted: the benchmark starts its tracker inside a namespace.
install_commands install-bench-deps \
  ip=iproute2 tc=iproute2 curl=curl aria2c=aria2 opentracker=opentracker mktorrent=mktorrent

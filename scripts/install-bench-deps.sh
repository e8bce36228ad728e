#!/usr/bin/env bash
# Installs what scripts/bench/swarm.ts runs besides Node: iproute2 (network namespaces, veth,
# HTB), curl, and the BitTorrent baseline: aria2c, opentracker and mktorrent. Idempotent and
# quick: it does nothing when every command is already there.
set -euo pipefail

# command name -> Debian package that provides it
declare -A PACKAGE_OF=(
  [ip]=iproute2
  [tc]=iproute2
  [curl]=curl
  [aria2c]=aria2
  [opentracker]=opentracker
  [mktorrent]=mktorrent
)

missing_commands=()
missing_packages=()
for cmd in "${!PACKAGE_OF[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [[ -x "/usr/sbin/$cmd" ]]; then
    missing_commands+=("$cmd")
    missing_packages+=("${PACKAGE_OF[$cmd]}")
  fi
done

if [[ ${#missing_commands[@]} -eq 0 ]]; then
  exit 0
fi

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-bench-deps: missing commands: ${missing_commands[*]}" >&2
  echo "install-bench-deps: install them as root with:" >&2
  echo "  apt-get update && apt-get install -y --no-install-recommends ${missing_packages[*]}" >&2
  exit 1
fi

echo "install-bench-deps: installing ${missing_packages[*]}" >&2
apt-get update
# The package's own service is not wanted: the benchmark starts its tracker inside a namespace.
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(printf '%s\n' "${missing_packages[@]}" | sort -u)

for cmd in "${missing_commands[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [[ -x "/usr/sbin/$cmd" ]]; then
    echo "install-bench-deps: $cmd is still missing after the install" >&2
    exit 1
  fi
done

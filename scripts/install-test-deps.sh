#!/usr/bin/env bash
# Installs what the client and benchmark tests run besides Node: the Debian OpenStack clients
# (openstack, glance), qemu-img (to make qcow2 test images), nginx (the benchmarks' baseline) and
# iproute2 (the partition test's network namespaces) and chromium (the dashboard's browser test,
# driven by playwright-core).
# Idempotent and quick: it does nothing when every command is already there.
set -euo pipefail

# Keystone, MariaDB, memcached and uwsgi for test/keystone (started there, by a vitest globalSetup).
bash "$(dirname "$0")/keystone.sh" install

# command name -> Debian package that provides it
declare -A PACKAGE_OF=(
  [openstack]=python3-openstackclient
  [glance]=python3-glanceclient
  [qemu-img]=qemu-utils
  [nginx]=nginx-light
  [ip]=iproute2
  [chromium]=chromium
)

missing_commands=()
missing_packages=()
for cmd in openstack glance qemu-img nginx ip chromium; do
  # nginx lives in /usr/sbin, which is not on every user's PATH.
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [[ -x "/usr/sbin/$cmd" ]]; then
    missing_commands+=("$cmd")
    missing_packages+=("${PACKAGE_OF[$cmd]}")
  fi
done

if [[ ${#missing_commands[@]} -eq 0 ]]; then
  exit 0
fi

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-deps: missing commands: ${missing_commands[*]}" >&2
  echo "install-test-deps: install them as root with:" >&2
  echo "  apt-get update && apt-get install -y --no-install-recommends ${missing_packages[*]}" >&2
  exit 1
fi

echo "install-test-deps: installing ${missing_packages[*]}" >&2
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
  "${missing_packages[@]}"

for cmd in "${missing_commands[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [[ -x "/usr/sbin/$cmd" ]]; then
    echo "install-test-deps: $cmd is still missing after the install" >&2
    exit 1
  fi
done

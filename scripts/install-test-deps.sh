#!/usr/bin/env bash
# Installs what the client and benchmark tests run besides Node: the Debian OpenStack clients
# (openstack, glance), qemu-img (to make qcow2 test images), nginx (the benchmarks' baseline),
# iproute2 (the partition test's network namespaces), chromium (the dashboard's browser test,
# driven by playwright-core), Keystone with what it needs (test/keystone), glance-api (test/upstream)
# and glance-common (which glance-api needs too), whose metadata definition files test/metadefs loads.
# Idempotent and quick: it does nothing when everything is already there.
set -euo pipefail
here=$(dirname "$0")
source "$here/lib/install-commands.sh"

# Keystone, MariaDB, memcached and uwsgi for test/keystone (started there, by a vitest globalSetup).
bash "$here/keystone.sh" install
# Debian's glance-api (Glance 25) for test/upstream, the cloud's existing Glance the agents read through.
bash "$here/glance.sh" install

install_commands install-test-deps \
  openstack=python3-openstackclient glance=python3-glanceclient qemu-img=qemu-utils \
  nginx=nginx-light ip=iproute2 chromium=chromium glance-manage=glance-common

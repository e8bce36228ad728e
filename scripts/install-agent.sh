#!/usr/bin/env bash
# Installs the agent on this hypervisor, as root: the project into /opt/peerglance (production
# dependencies only, with its own Node 24), a `peerglance` system user, the config in
# /etc/peerglance (kept if present), and the systemd unit, enabled and started.
#   sudo scripts/install-agent.sh            # from a checkout or an unpacked release (scripts/pack.sh)
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "install-agent.sh: run as root" >&2; exit 1; }
src=$(cd "$(dirname "$0")/.." && pwd)
dest=${PEERGLANCE_PREFIX:-/opt/peerglance}
. "$src/scripts/lib/release-files.sh"

mkdir -p "$dest"
release_tar "$src" | tar -C "$dest" -xf -
(cd "$dest" && npm ci --omit=dev --no-audit --no-fund)

getent passwd peerglance >/dev/null || useradd --system --home-dir /var/lib/peerglance --shell /usr/sbin/nologin peerglance
install -d -o peerglance -g peerglance /var/lib/peerglance /var/log/peerglance
install -d /etc/peerglance
[ -f /etc/peerglance/peerglance.yaml ] || install -m 0640 -g peerglance "$dest/config/peerglance.yaml" /etc/peerglance/peerglance.yaml

install -m 0644 "$dest/config/peerglance.service" /etc/systemd/system/peerglance.service
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --now peerglance.service
  echo "peerglance is running: systemctl status peerglance; logs: journalctl -u peerglance"
else
  echo "systemd is not running here; start the agent with: runuser -u peerglance -- $dest/node_modules/.bin/node $dest/node_modules/.bin/peerglance agent --config /etc/peerglance/peerglance.yaml --data-dir /var/lib/peerglance"
fi

#!/usr/bin/env bash
# The upstream tempest image API tests (Debian's tempest 33) against one agent, through a real
# Keystone: tempest authenticates with passwords, creates its own projects and users (dynamic
# credentials, as admin) and finds the agent in the catalog. Not part of `npm test`: it takes
# minutes and its result is recorded in docs/conformance.md.
#
#   scripts/tempest.sh [REGEX]      default: ^tempest\.api\.image\.
#
# Environment: CONCURRENCY (tempest workers, default 2), KEEP=1 keeps the work directory (agent
# log, tempest.conf, tempest.log, stestr results). Needs root with apt-get for missing packages.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REGEX=${1:-'^tempest\.api\.image\.'}
CONCURRENCY=${CONCURRENCY:-2}
# Its own catalog service type, so that other users of this Keystone keep their `image` endpoint.
SERVICE_TYPE=image-peerglance-tempest

log () { echo "tempest.sh: $*" >&2; }

if ! command -v tempest >/dev/null; then
  [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null || { log 'tempest is missing: apt-get install -y tempest'; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tempest >&2
fi
bash scripts/keystone.sh start
KS_ENV=$(bash scripts/keystone.sh env)
field () { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, {"d": d}))' "$KS_ENV" "$1"; }
KS_URL=$(field 'd["url"]')
REGION=$(field 'd["region"]')

WORK=$(mktemp -d /tmp/peerglance-tempest-XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
AGENT_PID=

catalog () { # catalog register URL | catalog remove
  KS_ENV=$KS_ENV SERVICE_TYPE=$SERVICE_TYPE /usr/bin/python3 - "$@" <<'EOF'
import json, os, sys
from keystoneauth1 import session
from keystoneauth1.identity import v3
from keystoneclient.v3 import client
env = json.loads(os.environ['KS_ENV']); admin = env['accounts']['admin']; kind = os.environ['SERVICE_TYPE']
ks = client.Client(session=session.Session(auth=v3.Password(
    auth_url=env['url'], username='admin', password=admin['password'], project_name='admin',
    user_domain_name='Default', project_domain_name='Default')))
for service in ks.services.list(type=kind):
    for endpoint in ks.endpoints.list(service=service):
        ks.endpoints.delete(endpoint)
    if sys.argv[1] == 'remove':
        ks.services.delete(service)
if sys.argv[1] == 'register':
    service = (ks.services.list(type=kind) or [ks.services.create(name='peerglance-tempest', type=kind)])[0]
    ks.endpoints.create(service=service, url=sys.argv[2], interface='public', region=env['region'])
EOF
}

cleanup () {
  [[ -n $AGENT_PID ]] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  catalog remove || log 'could not remove the catalog entry'
  if [[ ${KEEP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

cat >"$WORK/agent.yaml" <<EOF
dataDir: $WORK/data
api:
  listen: 127.0.0.1:$PORT
log:
  level: info
auth:
  mode: keystone
  keystone:
    url: $KS_URL
    username: peerglance
    password: $(field 'd["accounts"]["peerglance"]["password"]')
    projectName: service
glance:
  enabledImportMethods: [glance-direct]
EOF
"$ROOT/node_modules/.bin/node" packages/agent/bin/peerglance.js agent --config "$WORK/agent.yaml" >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/versions" 2>/dev/null && break
  kill -0 "$AGENT_PID" 2>/dev/null || { log "the agent exited; see $WORK/agent.log"; tail -5 "$WORK/agent.log" >&2; exit 1; }
  sleep 0.2
done
catalog register "http://127.0.0.1:$PORT"
log "agent (pid $AGENT_PID) on http://127.0.0.1:$PORT, catalog type $SERVICE_TYPE"

tempest init --workspace-path "$WORK/workspaces.yaml" "$WORK/ws" >/dev/null
cat >"$WORK/ws/etc/tempest.conf" <<EOF
[DEFAULT]
log_file = $WORK/ws/tempest.log
[auth]
use_dynamic_credentials = true
create_isolated_networks = false
admin_username = admin
admin_password = $(field 'd["accounts"]["admin"]["password"]')
admin_project_name = admin
admin_domain_name = Default
[identity]
uri_v3 = $KS_URL
auth_version = v3
region = $REGION
[identity-feature-enabled]
api_v2 = false
[image]
catalog_type = $SERVICE_TYPE
endpoint_type = public
build_timeout = 60
[image-feature-enabled]
api_v2 = true
api_v1 = false
import_image = true
os_glance_reserved = true
[service_available]
glance = true
nova = false
cinder = false
neutron = false
swift = false
EOF
cd "$WORK/ws"
set +e
tempest run --regex "$REGEX" --concurrency "$CONCURRENCY" 2>&1 | tee "$WORK/run.log"
status=${PIPESTATUS[0]}
set -e
grep -E '^(Totals|=+$| - (Passed|Skipped|Failed|Expected Fail|Unexpected Success): |Sum of execute time)' "$WORK/run.log" | tail -10 >&2 || true
stestr last --subunit | subunit2csv 2>/dev/null >"$WORK/results.csv" || true
exit "$status"

#!/usr/bin/env bash
# The upstream tempest image API tests (Debian's tempest 33) against two agents in two sites (two
# stores), through a real Keystone: tempest authenticates with passwords, creates its own projects
# and users (dynamic credentials, as admin) and finds agent A in the catalog (agent B, in the other
# site, is its `alternate_image_endpoint`). Not part of `npm test`: it takes minutes and its result
# is recorded in docs/conformance.md.
#
#   scripts/tempest.sh [REGEX]      default: ^tempest\.api\.image\.
#
# Environment: CONCURRENCY (tempest workers, default 2), KEEP=1 keeps the work directory (agent
# log, tempest.conf, tempest.log, stestr results), EXTRA_CONF: lines appended to tempest.conf.
# Needs root with apt-get for missing packages.
#   ENFORCE_SCOPE=true   the agents refuse tokens that are not project-scoped (`policy.enforceScope`)
#                        and tempest.conf says so (`[enforce_scope] glance = true`), as secure RBAC
#                        with Glance's `[oslo_policy] enforce_scope`
#   GLANCE_URL=URL       run against that Glance (e.g. scripts/glance.sh's) instead of the agents:
#                        it is registered under both catalog types, no agent is started
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REGEX=${1:-'^tempest\.api\.image\.'}
CONCURRENCY=${CONCURRENCY:-2}
ENFORCE_SCOPE=${ENFORCE_SCOPE:-false}
[[ $ENFORCE_SCOPE == true || $ENFORCE_SCOPE == false ]] || { echo 'tempest.sh: ENFORCE_SCOPE must be true or false' >&2; exit 2; }
# Its own catalog service type, so that other users of this Keystone keep their `image` endpoint;
# one per run, so that two runs at once (or a run and the tests) do not replace each other's.
SERVICE_TYPE=image-peerglance-tempest-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')

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
free_port () { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
PORT=$(free_port); PORT_B=$(free_port); P2P_A=$(free_port); WEB_PORT=$(free_port)
AGENT_PID=; AGENT_B_PID=; WEB_PID=

catalog () { # catalog register TYPE URL | catalog remove TYPE
  KS_ENV=$KS_ENV SERVICE_TYPE=$2 /usr/bin/python3 - "$1" "${3:-}" <<'EOF'
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
  # `|| true`: a killed child's status would end the trap (set -e) before the catalog is cleaned.
  for pid in $AGENT_PID $AGENT_B_PID $WEB_PID; do { kill "$pid" && wait "$pid"; } 2>/dev/null || true; done
  catalog remove "$SERVICE_TYPE" || log 'could not remove the catalog entry'
  catalog remove "$SERVICE_TYPE-b" || log 'could not remove the catalog entry of agent B'
  if [[ ${KEEP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# What web-download fetches (tempest's default http_image is on the internet): a local web server.
mkdir -p "$WORK/www"
head -c 1048576 /dev/urandom >"$WORK/www/image.img"
python3 -m http.server --bind 127.0.0.1 --directory "$WORK/www" "$WEB_PORT" >"$WORK/web.log" 2>&1 &
WEB_PID=$!

agent_config () { # agent_config SITE PORT P2P BOOTSTRAP
  cat <<EOF
dataDir: $WORK/data-$1
agent:
  site: $1
api:
  listen: 127.0.0.1:$2
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
  enabledImportMethods: [glance-direct, web-download, copy-image, glance-download]
import:
  # tempest waits for an import without stores to reach every store it lists.
  defaultStores: all
  siteTimeoutMs: 50000
  webDownload:
    allowedPorts: [80, 443, $WEB_PORT]
    allowedNetworks: [127.0.0.1/32]
  glanceDownload:
    serviceType: $SERVICE_TYPE
policy:
  enforceScope: $ENFORCE_SCOPE
cache:
  # As devstack shortens Glance's cache_prefetcher_interval for the cache API test.
  prefetchIntervalMs: 5000
mesh:
  listen: [/ip4/127.0.0.1/tcp/$3]
  bootstrap: [$4]
EOF
}

start_agent () { # start_agent SITE PORT P2P BOOTSTRAP; sets STARTED_PID
  agent_config "$@" >"$WORK/agent-$1.yaml"
  "$ROOT/node_modules/.bin/node" packages/agent/bin/peerglance.js agent --config "$WORK/agent-$1.yaml" >"$WORK/agent-$1.log" 2>&1 &
  STARTED_PID=$!
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$2/versions" 2>/dev/null && return 0
    kill -0 "$STARTED_PID" 2>/dev/null || { log "agent $1 exited; see $WORK/agent-$1.log"; tail -5 "$WORK/agent-$1.log" >&2; exit 1; }
    sleep 0.2
  done
  log "agent $1 did not answer"; exit 1
}

if [[ -n ${GLANCE_URL:-} ]]; then
  catalog register "$SERVICE_TYPE" "$GLANCE_URL"
  catalog register "$SERVICE_TYPE-b" "$GLANCE_URL"
  log "Glance at $GLANCE_URL, catalog types $SERVICE_TYPE, $SERVICE_TYPE-b"
else
  start_agent site-a "$PORT" "$P2P_A" ''
  AGENT_PID=$STARTED_PID
  SEED=$(python3 -c 'import json, sys
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("msg") == "mesh started":
        print(e["multiaddrs"][0])
        break' "$WORK/agent-site-a.log")
  start_agent site-b "$PORT_B" 0 "$SEED"
  AGENT_B_PID=$STARTED_PID
  catalog register "$SERVICE_TYPE" "http://127.0.0.1:$PORT"
  catalog register "$SERVICE_TYPE-b" "http://127.0.0.1:$PORT_B"
  # Agent A knows site-b once B's signed announcement reached it: a few seconds after they connect.
  for _ in $(seq 1 150); do grep -q '"peer connected"' "$WORK/agent-site-a.log" && break; sleep 0.2; done
  sleep 6
  log "agents (pids $AGENT_PID, $AGENT_B_PID) on http://127.0.0.1:$PORT (site-a) and :$PORT_B (site-b), catalog types $SERVICE_TYPE, $SERVICE_TYPE-b"
fi

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
alternate_image_endpoint = $SERVICE_TYPE-b
alternate_image_endpoint_type = public
http_image = http://127.0.0.1:$WEB_PORT/image.img
image_caching_enabled = ${IMAGE_CACHING:-false}
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
[[ $ENFORCE_SCOPE == true ]] && printf '[enforce_scope]\nglance = true\n' >>"$WORK/ws/etc/tempest.conf"
[[ -n ${EXTRA_CONF:-} ]] && printf '%s\n' "$EXTRA_CONF" >>"$WORK/ws/etc/tempest.conf"
cd "$WORK/ws"
set +e
tempest run --regex "$REGEX" --concurrency "$CONCURRENCY" 2>&1 | tee "$WORK/run.log"
status=${PIPESTATUS[0]}
set -e
grep -E '^(Totals|=+$| - (Passed|Skipped|Failed|Expected Fail|Unexpected Success): |Sum of execute time)' "$WORK/run.log" | tail -10 >&2 || true
stestr last --subunit | subunit2csv 2>/dev/null >"$WORK/results.csv" || true
exit "$status"

#!/usr/bin/env bash
# A real central Glance for tests and labs: Debian's glance-api (Glance 25) with a file store,
# behind the Keystone of scripts/keystone.sh and in its MariaDB, on 127.0.0.1; started here (no init
# system needed). It plays the cloud's existing Glance that agents read through (`upstream`).
#
#   scripts/glance.sh install    install the Debian packages that are missing (as root, apt-get)
#   scripts/glance.sh start      start Keystone (scripts/keystone.sh start), install what is missing,
#                                create the database and the `glance` account once, start glance-api
#                                unless it answers; write $GL_HOME/env.json; quick when already up
#   scripts/glance.sh stop       stop the glance-api that `start` started (by pid file)
#   scripts/glance.sh env        print env.json (the URL, the store directory, the access log and
#                                the `glance` account)
#
# glance-api answers on http://127.0.0.1:$GL_PORT (default 9393) with Glance 25's secure-RBAC
# defaults (`enforce_secure_rbac`, `enforce_new_defaults`) and, as Glance 25 ships, without scope
# checks: GL_ENFORCE_SCOPE=true sets `[oslo_policy] enforce_scope` (system-scoped tokens refused on
# every image, task and metadef rule), as glance_tempest_plugin's `[enforce_scope] glance = true`
# expects. GL_DB (default glance) names its database, so a second Glance (another GL_HOME, GL_PORT,
# GL_REGION) keeps images of its own; copy the first one's secrets/ to share its account. It logs every request with the bytes sent to $GL_HOME/log/glance-api.log. State
# (image files, staging, logs, the generated password) lives in $GL_HOME (default
# /var/tmp/peerglance-glance). Its catalog entry: service type image, region $GL_REGION (default
# RegionCentral), public and internal. Account, in domain Default: `glance`, roles service and admin in
# project service (Glance's own service user, as most deployments give it; it sees every image,
# so agents use it as their upstream credentials). The `glance` database user and Keystone account
# are one per Keystone: starting with another GL_HOME over the same Keystone takes them over.
set -euo pipefail

here=$(dirname "$0")
GL_HOME=${GL_HOME:-/var/tmp/peerglance-glance}
GL_PORT=${GL_PORT:-9393}
KS_HOME=${KS_HOME:-/var/tmp/peerglance-keystone}
KS_PORT=${KS_PORT:-5000}
MEMCACHED_PORT=${MEMCACHED_PORT:-11211}
# The catalog region of this Glance's image endpoint (public and internal).
REGION=${GL_REGION:-RegionCentral}
ENFORCE_SCOPE=${GL_ENFORCE_SCOPE:-false}
DB=${GL_DB:-glance}
SOCKET=$KS_HOME/run/mysqld.sock
CONF=$GL_HOME/glance-api.conf
WAIT_SECONDS=90
SERVICE_NAME=glance.sh SERVICE_HOME=$GL_HOME
source "$here/lib/services.sh"
[[ $ENFORCE_SCOPE == true || $ENFORCE_SCOPE == false ]] || die "GL_ENFORCE_SCOPE must be true or false"
[[ $DB =~ ^[a-z_][a-z0-9_]{0,31}$ ]] || die "GL_DB must be a plain database name"

install_packages () {
  command -v glance-api >/dev/null && return 0
  apt_install glance-api
}

write_conf () {
  local new
  new=$(cat <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = $GL_PORT
workers = 2
use_stderr = false
log_file = $GL_HOME/log/glance-api.log
enabled_backends = file:file
enforce_secure_rbac = true
image_cache_dir = $GL_HOME/cache
[glance_store]
default_backend = file
[file]
filesystem_store_datadir = $GL_HOME/images/
[os_glance_staging_store]
filesystem_store_datadir = $GL_HOME/staging/
[os_glance_tasks_store]
filesystem_store_datadir = $GL_HOME/tasks/
[database]
connection = mysql+pymysql://glance:$(secret db)@localhost/$DB?unix_socket=$SOCKET&charset=utf8mb4
[keystone_authtoken]
www_authenticate_uri = http://127.0.0.1:$KS_PORT/v3
auth_url = http://127.0.0.1:$KS_PORT/v3
memcached_servers = 127.0.0.1:$MEMCACHED_PORT
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = glance
password = $(secret glance)
[oslo_policy]
enforce_new_defaults = true
enforce_scope = $ENFORCE_SCOPE
[oslo_concurrency]
lock_path = $GL_HOME/lock
[paste_deploy]
flavor = keystone
config_file = /etc/glance/glance-api-paste.ini
EOF
)
  [[ -f $CONF && $(cat "$CONF") == "$new" ]] || printf '%s\n' "$new" >"$CONF"
}

# The database and the `glance` account, once (find or create, so a rerun is harmless).
bootstrap () {
  local marker=$GL_HOME/.bootstrapped
  # The database lives in Keystone's MariaDB ($KS_HOME), which may have been made anew.
  [[ -f $marker ]] && mariadb --socket="$SOCKET" -e "USE $DB" 2>/dev/null && return 0
  mariadb --socket="$SOCKET" -e "CREATE DATABASE IF NOT EXISTS $DB;
    CREATE USER IF NOT EXISTS 'glance'@'localhost' IDENTIFIED BY '$(secret db)';
    ALTER USER 'glance'@'localhost' IDENTIFIED BY '$(secret db)';
    GRANT ALL PRIVILEGES ON $DB.* TO 'glance'@'localhost';"
  glance-manage --config-file "$CONF" db_sync >"$GL_HOME/log/db-sync.log" 2>&1 \
    || die "glance-manage db_sync failed (log: $GL_HOME/log/db-sync.log)"
  keystone_admin <<'EOF'
users = ks.users.list(name='glance', domain='default')
user = users[0] if users else ks.users.create(name='glance', domain='default', password=os.environ['GL_PASSWORD'])
ks.users.update(user, password=os.environ['GL_PASSWORD'])
project = ks.projects.list(name='service', domain='default')[0]
for role in ('service', 'admin'):
    ks.roles.grant(ks.roles.list(name=role)[0], user=user, project=project)
EOF
  touch "$marker"
}

# The catalog entry a cloud has for its Glance, in a region of its own (the Keystone tests point
# RegionOne's image endpoint at agents); checked on every start, since other tests edit the catalog.
register_endpoint () {
  keystone_admin <<'EOF'
region, url = os.environ['GL_REGION'], os.environ['GL_URL']
services = ks.services.list(type='image')
service = services[0] if services else ks.services.create(name='glance', type='image')
current = ks.endpoints.list(service=service, region=region)
if sorted((e.interface, e.url) for e in current) != [('internal', url), ('public', url)]:
    if not any(r.id == region for r in ks.regions.list()):
        ks.regions.create(id=region)
    for endpoint in current:
        ks.endpoints.delete(endpoint)
    for interface in ('public', 'internal'):
        ks.endpoints.create(service=service, url=url, interface=interface, region=region)
EOF
}

# Runs the Python on stdin with `ks`, a keystoneclient logged in as Keystone's admin.
keystone_admin () {
  local admin_password
  admin_password=$(bash "$here/keystone.sh" env | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["accounts"]["admin"]["password"])')
  KS_URL="http://127.0.0.1:$KS_PORT/v3" KS_ADMIN_PASSWORD=$admin_password GL_PASSWORD=$(secret glance) GL_REGION=$REGION \
    GL_URL="http://127.0.0.1:$GL_PORT" /usr/bin/python3 -c '
import os, sys
from keystoneauth1 import session
from keystoneauth1.identity import v3
from keystoneclient.v3 import client
auth = v3.Password(auth_url=os.environ["KS_URL"], username="admin", password=os.environ["KS_ADMIN_PASSWORD"],
                   project_name="admin", user_domain_name="Default", project_domain_name="Default")
ks = client.Client(session=session.Session(auth=auth))
exec(sys.stdin.read())
'
}

glance_up () { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$GL_PORT/healthcheck" 2>/dev/null; }

start_glance () {
  glance_up && return 0
  # Not holding the start/stop lock (fd 9) for its lifetime.
  setsid glance-api --config-file "$CONF" </dev/null >>"$GL_HOME/log/glance-api.stderr" 2>&1 9>&- &
  echo $! >"$GL_HOME/run/glance-api.pid"
  wait_for "$WAIT_SECONDS" glance-api glance_up
}

write_env () {
  local new
  new=$(cat <<EOF
{
  "url": "http://127.0.0.1:$GL_PORT",
  "keystoneUrl": "http://127.0.0.1:$KS_PORT/v3",
  "region": "$REGION",
  "storeDir": "$GL_HOME/images",
  "accessLog": "$GL_HOME/log/glance-api.log",
  "pidFile": "$GL_HOME/run/glance-api.pid",
  "account": { "username": "glance", "password": "$(secret glance)", "projectName": "service",
               "userDomainName": "Default", "projectDomainName": "Default" }
}
EOF
)
  [[ -f $GL_HOME/env.json && $(cat "$GL_HOME/env.json") == "$new" ]] || printf '%s\n' "$new" >"$GL_HOME/env.json"
}

start () {
  bash "$here/keystone.sh" start 9>&-
  install_packages
  mkdir -p "$GL_HOME"/{run,log,secrets,images,staging,tasks,cache,lock}
  chmod 700 "$GL_HOME/secrets"
  write_conf
  bootstrap
  register_endpoint
  start_glance
  write_env
  log "Glance is up at http://127.0.0.1:$GL_PORT (account in $GL_HOME/env.json)"
}

stop () {
  # glance-api's parent stops its workers on SIGTERM.
  stop_pid "$GL_HOME/run/glance-api.pid" glance-api
  rm -f "$GL_HOME/run/glance-api.pid"
}

# One start or stop at a time (test runs of several checkouts share this Glance): two starts at
# once both spawned glance-api, the second failed to bind and left its own dead pid in the pid
# file, so the live one could no longer be stopped.
serialized () {
  mkdir -p "$GL_HOME/run"
  exec 9>"$GL_HOME/run/.lock"
  flock 9
  "$@"
}

case ${1:-start} in
  install) install_packages ;;
  start) serialized start ;;
  stop) serialized stop ;;
  env) cat "$GL_HOME/env.json" ;;
  *) die "usage: $0 install|start|stop|env" ;;
esac

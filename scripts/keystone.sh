#!/usr/bin/env bash
# A real Keystone for tests and labs: Debian's keystone (python3-keystone) under uwsgi, MariaDB
# over a unix socket and memcached, all on this machine, all started here (no init system needed).
#
#   scripts/keystone.sh install      install the Debian packages that are missing (as root, apt-get)
#   scripts/keystone.sh start        install what is missing, start what is down, bootstrap once,
#                                    write $KS_HOME/env.json; quick when everything is already up
#   scripts/keystone.sh stop         stop what `start` started (by pid file)
#   scripts/keystone.sh env          print env.json (the URL, region and every test account)
#   scripts/keystone.sh serve PORT [CONF...]
#                                    run one more Keystone in the foreground on 127.0.0.1:PORT over the
#                                    same database and keys, with extra config files layered on top
#                                    (tests use it for short token lifetimes and for stopping Keystone)
#
# Keystone answers on http://127.0.0.1:$KS_PORT/v3 (default 5000). State (database, fernet keys,
# generated passwords, logs) lives in $KS_HOME (default /var/tmp/peerglance-keystone).
# Accounts (all in domain Default), written to env.json with their passwords:
#   admin            admin of project admin (keystone-manage bootstrap)
#   peerglance       the agent's service user: role service in project service
#   nova             a second service user, to send X-Service-Token as Nova does
#   alpha-member, alpha-reader, beta-member, beta-reader: role member/reader in project alpha/beta
set -euo pipefail

KS_HOME=${KS_HOME:-/var/tmp/peerglance-keystone}
KS_PORT=${KS_PORT:-5000}
MEMCACHED_PORT=${MEMCACHED_PORT:-11211}
REGION=RegionOne
SOCKET=$KS_HOME/run/mysqld.sock
CONF=$KS_HOME/keystone.conf
WAIT_SECONDS=60
SERVICE_NAME=keystone.sh SERVICE_HOME=$KS_HOME
source "$(dirname "$0")/lib/services.sh"

install_packages () {
  local missing=()
  command -v keystone-manage >/dev/null || missing+=(python3-keystone)
  command -v uwsgi >/dev/null || missing+=(uwsgi-core)
  [[ -e /usr/lib/uwsgi/plugins/python3_plugin.so ]] || missing+=(uwsgi-plugin-python3)
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
  command -v memcached >/dev/null || missing+=(memcached)
  ((${#missing[@]} == 0)) && return 0
  apt_install "${missing[@]}"
}

start_mariadb () {
  mariadb-admin --socket="$SOCKET" ping >/dev/null 2>&1 && return 0
  if [[ ! -d $KS_HOME/mysql/mysql ]]; then
    mariadb-install-db --no-defaults --datadir="$KS_HOME/mysql" --user=root \
      --auth-root-authentication-method=socket --skip-test-db >"$KS_HOME/log/mariadb-install.log" 2>&1
  fi
  # --no-defaults: ignore /etc/mysql; no TCP at all, only the socket in $KS_HOME.
  setsid mariadbd --no-defaults --user=root --datadir="$KS_HOME/mysql" --socket="$SOCKET" \
    --pid-file="$KS_HOME/run/mariadb.pid" --skip-networking --innodb-buffer-pool-size=64M \
    --log-error="$KS_HOME/log/mariadb.log" </dev/null >/dev/null 2>&1 &
  wait_for "$WAIT_SECONDS" MariaDB mariadb-admin --socket="$SOCKET" ping
}

memcached_up () { (exec 3<>"/dev/tcp/127.0.0.1/$MEMCACHED_PORT") 2>/dev/null; }

start_memcached () {
  memcached_up && return 0
  memcached -d -u root -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 64 -P "$KS_HOME/run/memcached.pid"
  wait_for "$WAIT_SECONDS" memcached memcached_up
}

write_conf () {
  local db_password new
  db_password=$(secret db)
  new=$(cat <<EOF
[DEFAULT]
use_stderr = true
[database]
connection = mysql+pymysql://keystone:$db_password@localhost/keystone?unix_socket=$SOCKET&charset=utf8mb4
[cache]
enabled = true
backend = dogpile.cache.memcached
memcache_servers = 127.0.0.1:$MEMCACHED_PORT
[token]
provider = fernet
[fernet_tokens]
key_repository = $KS_HOME/fernet-keys
[credential]
key_repository = $KS_HOME/credential-keys
EOF
)
  [[ -f $CONF && $(cat "$CONF") == "$new" ]] || printf '%s\n' "$new" >"$CONF"
}

keystone_up () { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$1/v3" 2>/dev/null; }

# uwsgi arguments shared by `start` (daemonized) and `serve` (foreground).
uwsgi_args () {
  local port=$1; shift
  local files=$CONF
  for extra in "$@"; do files+=";$extra"; done
  printf '%s\n' --plugins python3 --http11-socket "127.0.0.1:$port" --wsgi-file /usr/bin/keystone-wsgi-public \
    --master --processes 2 --threads 4 --lazy-apps --die-on-term --no-orphans --buffer-size 65535 \
    --need-app --env "OS_KEYSTONE_CONFIG_FILES=$files"
}

bootstrap () {
  local marker=$KS_HOME/.bootstrapped
  [[ -f $marker ]] && return 0
  mariadb --socket="$SOCKET" -e "CREATE DATABASE IF NOT EXISTS keystone;
    CREATE USER IF NOT EXISTS 'keystone'@'localhost' IDENTIFIED BY '$(secret db)';
    GRANT ALL PRIVILEGES ON keystone.* TO 'keystone'@'localhost';"
  keystone-manage --config-file "$CONF" db_sync
  [[ -n $(ls -A "$KS_HOME/fernet-keys") ]] || keystone-manage --config-file "$CONF" fernet_setup --keystone-user root --keystone-group root
  [[ -n $(ls -A "$KS_HOME/credential-keys") ]] || keystone-manage --config-file "$CONF" credential_setup --keystone-user root --keystone-group root
  keystone-manage --config-file "$CONF" bootstrap --bootstrap-password "$(secret admin)" \
    --bootstrap-admin-url "http://127.0.0.1:$KS_PORT/v3" --bootstrap-internal-url "http://127.0.0.1:$KS_PORT/v3" \
    --bootstrap-public-url "http://127.0.0.1:$KS_PORT/v3" --bootstrap-region-id "$REGION"
  touch "$marker"
}

start_keystone () {
  keystone_up "$KS_PORT" && return 0
  mapfile -t args < <(uwsgi_args "$KS_PORT")
  uwsgi "${args[@]}" --pidfile "$KS_HOME/run/keystone.pid" --daemonize "$KS_HOME/log/keystone.log"
  wait_for "$WAIT_SECONDS" Keystone keystone_up "$KS_PORT"
}

# Users, projects and role assignments, created once (find or create, so a rerun is harmless).
create_accounts () {
  local marker=$KS_HOME/.accounts
  [[ -f $marker && -f $KS_HOME/env.json ]] && return 0
  KS_URL="http://127.0.0.1:$KS_PORT/v3" KS_ADMIN_PASSWORD=$(secret admin) \
    KS_PEERGLANCE_PASSWORD=$(secret peerglance) KS_NOVA_PASSWORD=$(secret nova) \
    KS_USER_PASSWORD=$(secret users) KS_REGION=$REGION KS_HOME=$KS_HOME /usr/bin/python3 - <<'EOF'
import json, os
from keystoneauth1 import session
from keystoneauth1.identity import v3
from keystoneclient.v3 import client

url = os.environ['KS_URL']
auth = v3.Password(auth_url=url, username='admin', password=os.environ['KS_ADMIN_PASSWORD'],
                   project_name='admin', user_domain_name='Default', project_domain_name='Default')
ks = client.Client(session=session.Session(auth=auth))

def find_or_create(manager, name, **kw):
    found = manager.list(name=name, **({'domain': 'default'} if 'domain' in kw else {}))
    return found[0] if found else manager.create(name=name, **kw)

roles = {name: find_or_create(ks.roles, name) for name in ('admin', 'member', 'reader', 'service')}
env = {'url': url, 'region': os.environ['KS_REGION'], 'userDomainName': 'Default', 'projectDomainName': 'Default',
       'accounts': {}, 'projects': {}}

def account(user_name, password, project_name, role):
    project = find_or_create(ks.projects, project_name, domain='default')
    user = find_or_create(ks.users, user_name, domain='default', password=password)
    ks.roles.grant(roles[role], user=user, project=project)
    env['projects'][project_name] = project.id
    env['accounts'][user_name] = {'username': user_name, 'password': password, 'projectName': project_name,
                                  'projectId': project.id, 'userId': user.id, 'role': role}

account('admin', os.environ['KS_ADMIN_PASSWORD'], 'admin', 'admin')
account('peerglance', os.environ['KS_PEERGLANCE_PASSWORD'], 'service', 'service')
account('nova', os.environ['KS_NOVA_PASSWORD'], 'service', 'service')
for project in ('alpha', 'beta'):
    for role in ('member', 'reader'):
        account(f'{project}-{role}', os.environ['KS_USER_PASSWORD'], project, role)
path = os.path.join(os.environ['KS_HOME'], 'env.json')
with open(path + '.tmp', 'w') as f:
    json.dump(env, f, indent=2)
os.replace(path + '.tmp', path)
EOF
  touch "$marker"
}

start () {
  install_packages
  mkdir -p "$KS_HOME"/{run,log,secrets,fernet-keys,credential-keys}
  chmod 700 "$KS_HOME/secrets" "$KS_HOME/fernet-keys" "$KS_HOME/credential-keys"
  start_mariadb
  start_memcached
  write_conf
  bootstrap
  start_keystone
  create_accounts
  log "Keystone is up at http://127.0.0.1:$KS_PORT/v3 (accounts in $KS_HOME/env.json)"
}

stop () {
  stop_pid "$KS_HOME/run/keystone.pid" Keystone
  stop_pid "$KS_HOME/run/memcached.pid" memcached
  stop_pid "$KS_HOME/run/mariadb.pid" MariaDB
}

case ${1:-start} in
  install) install_packages ;;
  start) start ;;
  stop) stop ;;
  env) cat "$KS_HOME/env.json" ;;
  serve)
    [[ $# -ge 2 ]] || die "usage: $0 serve PORT [CONF...]"
    port=$2; shift 2
    mapfile -t args < <(uwsgi_args "$port" "$@")
    exec uwsgi "${args[@]}" ;;
  *) die "usage: $0 install|start|stop|env|serve PORT [CONF...]" ;;
esac

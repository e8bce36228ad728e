# Helpers shared by the scripts that run test services on this machine (keystone.sh, glance.sh).
# The sourcing script sets SERVICE_NAME (its log prefix) and SERVICE_HOME (its state directory).

log () { echo "$SERVICE_NAME: $*" >&2; }
die () { log "$*"; exit 1; }

# Bounded wait: wait_for SECONDS WHAT COMMAND...
wait_for () {
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not come up within ${seconds}s (logs in $SERVICE_HOME/log)"
    sleep 0.2
  done
}

# apt_install PACKAGE...: installs as root, without letting package scripts start the
# distribution's own services (these scripts run their own); otherwise says what to install.
apt_install () {
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    die "missing packages: $*; install them as root: apt-get install -y --no-install-recommends $*"
  fi
  log "installing $*"
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
  ((added_policy)) && rm -f "$policy"
  return 0
}

# A generated secret, kept in $SERVICE_HOME/secrets/NAME.
secret () {
  local file=$SERVICE_HOME/secrets/$1
  [[ -s $file ]] || (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$file")
  cat "$file"
}

pid_alive () { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid PIDFILE NAME: SIGTERM, then SIGKILL after 30 s.
stop_pid () {
  local file=$1 name=$2
  pid_alive "$file" || return 0
  local pid; pid=$(cat "$file")
  kill "$pid"
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || { log "$name (pid $pid) ignored SIGTERM; killing it"; kill -9 "$pid"; break; }
    sleep 0.2
  done
}

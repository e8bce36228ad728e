# install_commands NAME CMD=PACKAGE...: installs, as root with apt-get, the Debian package of each
# command not on the PATH (or in /usr/sbin, which not every user's PATH has); otherwise says what
# to install and fails. Does nothing when every command is there, so scripts can call it each run.
install_commands () {
  local name=$1; shift
  local missing_commands=() missing_packages=() pair cmd
  for pair in "$@"; do
    cmd=${pair%%=*}
    if ! command -v "$cmd" >/dev/null 2>&1 && ! [[ -x "/usr/sbin/$cmd" ]]; then
      missing_commands+=("$cmd")
      missing_packages+=("${pair#*=}")
    fi
  done
  [[ ${#missing_commands[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "$name: missing commands: ${missing_commands[*]}" >&2
    echo "$name: install them as root with:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing_packages[*]}" >&2
    return 1
  fi
  echo "$name: installing ${missing_packages[*]}" >&2
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(printf '%s\n' "${missing_packages[@]}" | sort -u)
  for cmd in "${missing_commands[@]}"; do
    if ! command -v "$cmd" >/dev/null 2>&1 && ! [[ -x "/usr/sbin/$cmd" ]]; then
      echo "$name: $cmd is still missing after the install" >&2
      return 1
    fi
  done
}

# Sourced by scripts/quickstart and scripts/test: install Mosquitto and the project.
# Sets PY to the Python that has the project installed.
# Usage: install_project EXTRAS   (e.g. "" or "[test]")
#        install_node_peer        (the npm package ocpp-rpc in tests/ocpp_rpc, for the peer test)
#        install_deploy_tools     (a compose client and systemd-analyze: tests/test_deploy.py)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

install_mosquitto() {
  if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    echo "installing Mosquitto (Debian packages mosquitto, mosquitto-clients)" >&2
    apt_install mosquitto mosquitto-clients
  fi
}

install_project() {
  # Installs the project (editable) with its dependencies pinned by constraints.txt, unless the
  # last install by this function is still good: same Python, same extras, pyproject.toml and
  # constraints.txt unchanged since, and this checkout's version installed (editable) there. The
  # stamp is .quickstart/install[-<extras>].stamp; delete it to force a reinstall.
  local extras=$1
  PY=python3
  if [ -z "${VIRTUAL_ENV:-}" ] && python3 - <<'PYEOF'
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)
PYEOF
  then
    # Debian's own Python refuses pip installs (PEP 668): use a virtual environment.
    if [ ! -x .venv/bin/python ]; then
      python3 -m venv .venv 2>/dev/null || { apt_install python3-venv && python3 -m venv .venv; }
    fi
    PY=.venv/bin/python
  fi
  local name=${extras//[^a-z0-9]/}
  local stamp=".quickstart/install${name:+-$name}.stamp"
  if "$PY" scripts/_install_stamp.py check "$stamp" "$extras"; then
    echo "ocpp-bridge${extras} is installed and up to date for $PY (stamp: $stamp)" >&2
    return 0
  fi
  echo "installing ocpp-bridge${extras} for $PY (pinned by constraints.txt)" >&2
  "$PY" -m pip install -q --disable-pip-version-check -c constraints.txt -e ".${extras}"
  mkdir -p .quickstart
  "$PY" scripts/_install_stamp.py write "$stamp" "$extras"
}

install_node_peer() {
  # tests/test_ocpp_rpc_peer.py runs a strict-mode CSMS on the npm package ocpp-rpc.
  local dir=tests/ocpp_rpc
  [ -f "$dir/node_modules/ocpp-rpc/package.json" ] && return 0
  if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
      echo "installing Node.js (Debian packages nodejs, npm) for the ocpp-rpc peer test" >&2
      apt_install nodejs npm
    else
      echo "note: npm is not installed; the ocpp-rpc peer test is skipped (and fails under CI)." \
        "Install Debian's nodejs and npm to run it." >&2
      return 0
    fi
  fi
  echo "installing the ocpp-rpc peer (npm, in $dir)" >&2
  if [ -f "$dir/package-lock.json" ]; then
    (cd "$dir" && npm ci --silent --no-audit --no-fund)
  else
    (cd "$dir" && npm install --silent --no-audit --no-fund)
  fi || echo "warning: npm could not install $dir; the ocpp-rpc peer test cannot run" >&2
}

install_deploy_tools() {
  # tests/test_deploy.py: `docker compose config` (or docker-compose) parses deploy/compose.yaml
  # without a Docker engine, systemd-analyze verifies the unit (PyYAML is in the test extras).
  local packages=()
  if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
    packages+=(docker-compose)
  fi
  command -v systemd-analyze >/dev/null 2>&1 || packages+=(systemd)
  if [ "${#packages[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null 2>&1; then
      echo "installing ${packages[*]} (Debian) for tests/test_deploy.py" >&2
      apt_install "${packages[@]}"
    else
      echo "note: ${packages[*]} not installed; parts of tests/test_deploy.py are skipped" >&2
    fi
  fi
}

#!/bin/sh
# The image's entry point (deploy/Dockerfile): `ocpp-bridge run ...` under a restart policy that
# does not loop on a configuration error. Any other command (validate, health, --version) is
# exec'd as it is.
#
# `ocpp-bridge run` exits 2 on a configuration or store error, which a restart cannot fix (the
# systemd unit has RestartPreventExitStatus=2). Docker has no per-exit-code restart policy, and
# `on-failure`, which restarts only on a non-zero status, does not start a container again after a
# clean reboot of the board (its last status was 0), so compose keeps `restart: unless-stopped`
# and this script keeps the container up instead of exiting 2: the error stays the last lines of
# the log, the health check reports the container unhealthy, and nothing restarts until the
# operator fixes the file and runs `docker compose restart bridge`. SIGTERM (`docker stop`) then
# ends it with status 2.
#
# Every other exit status is passed on (SIGTERM: the bridge's clean shutdown, 0; a crash or a
# kill: non-zero, and Docker restarts the container). SIGTERM and SIGINT are forwarded to the
# bridge, which runs as this script's child.
set -u

if [ "${1:-}" != run ]; then
  exec ocpp-bridge "$@"
fi

child=
stop=
forward() {
  stop=$1
  if [ -n "$child" ]; then
    kill "-$1" "$child" 2>/dev/null || true
  fi
}
trap 'forward TERM' TERM
trap 'forward INT' INT

ocpp-bridge "$@" &
child=$!
if [ -n "$stop" ]; then  # a signal that came before the bridge had a pid
  kill "-$stop" "$child" 2>/dev/null || true
fi
while :; do
  status=0
  wait "$child" || status=$?
  # A trapped signal interrupts `wait` (status > 128) while the bridge may still be running or not
  # yet reaped: wait again until its own status is known.
  if [ "$status" -gt 128 ] && kill -0 "$child" 2>/dev/null; then
    continue
  fi
  break
done

if [ "$status" -ne 2 ]; then
  exit "$status"
fi

# Parked until stopped. The trap comes first, so a stop at any moment from here on ends it; `$!`
# is the sleep once it runs (before, the reaped bridge: nothing to kill).
trap 'kill $! 2>/dev/null; exit 2' TERM INT
echo "ocpp-bridge-entrypoint: the bridge exited with status 2 (the error above: configuration or" \
  "store); not restarting it. Fix it, then: docker compose restart bridge" >&2
sleep infinity &
wait $!
exit 2

#!/usr/bin/env bash
# Starts MariaDB and Redis on this machine if they are not answering, and installs Debian's Chromium for the browser
# test when it is missing (a no-op when all is there). `npm test` runs it first (pretest), and so does .ci/run.
set -euo pipefail

wait_for() { # name, check command
  for _ in $(seq 1 60); do
    if eval "$2" >/dev/null 2>&1; then echo "$1: up"; return 0; fi
    sleep 0.5
  done
  echo "$1: did not come up" >&2
  return 1
}

if ! mysqladmin -h127.0.0.1 -uroot ping >/dev/null 2>&1; then
  echo "MariaDB: starting"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi
wait_for MariaDB "mysqladmin -h127.0.0.1 -uroot ping"

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "Redis: starting"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
wait_for Redis "redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG"

# Headless Chromium for the dashboard's browser test (Debian package; playwright-core never downloads a browser).
if [ ! -x /usr/bin/chromium ]; then
  echo "Chromium: installing"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "Chromium: $(/usr/bin/chromium --version 2>/dev/null)"

# promtool for the ops assets' test (test/ops-assets.test.ts checks and unit-tests ops/alerts.yml; Debian package
# `prometheus`, without its recommended node exporter). Containers whose policy-rc.d forbids services (like this
# image) get promtool only; elsewhere the package also enables a Prometheus server: disable it if unwanted.
if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool: installing"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  log=$(mktemp)
  if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; exit 1
  fi
  rm -f "$log"
fi
echo "promtool: $(promtool --version 2>&1 | head -n 1)"

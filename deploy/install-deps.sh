#!/usr/bin/env bash
# Installs what Gatehouse needs on Debian/Ubuntu when it is missing, with apt-get as root or
# through sudo; otherwise prints exactly what to install and fails.
#
#   install-deps.sh         what building and running need (make dev): a C compiler (the SQL
#                           parser, pg_query, is C), PostgreSQL (server and psql), ClickHouse
#                           (Debian's clickhouse-server) and curl
#   install-deps.sh test    that, plus what only the tests use (make test, make fuzz-policy):
#                           pgbench, Node.js with npm (node-postgres), psycopg 3, rsyslog with
#                           its TLS driver, sqlsmith, OpenSSH's server with sudo and rsync,
#                           nginx (an upstream and a reverse proxy in the HTTP proxy's tests),
#                           Chromium (the web console's browser tests), ZooKeeper (the
#                           ClickHouse cluster tests) and iproute2 (network namespaces)
#   install-deps.sh bench   that of running, plus what the bench commands compare against and
#                           drive (make bench, make bench-http): pgbench, PgBouncer, nginx and wrk
set -euo pipefail

variant="${1:-run}"
case "$variant" in
  run | test | bench) ;;
  *)
    echo "usage: $0 [test|bench]" >&2
    exit 2
    ;;
esac

have() { command -v "$1" >/dev/null 2>&1; }
have_pg_server() {
  have initdb && have postgres && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
have_clickhouse() { have clickhouse-server || [ -x /usr/sbin/clickhouse-server ] || have clickhouse; }

missing=()
# Building: pg_query_go is cgo.
have gcc || have cc || missing+=(gcc)
[ -e /usr/include/stdlib.h ] || missing+=(libc6-dev)
# Running `gatehouse dev`: it starts PostgreSQL and ClickHouse as child processes; psql is
# the tour's client.
have_pg_server || missing+=(postgresql)
have psql || missing+=(postgresql-client)
have_clickhouse || missing+=(clickhouse-server)
have curl || missing+=(curl)

if [ "$variant" = test ] || [ "$variant" = bench ]; then
  # pgbench comes with Debian's postgresql package.
  have pgbench || missing+=(postgresql)
fi
if [ "$variant" = test ]; then
  # curl drives the HTTP API in the tests (already required above).
  # node-postgres runs through the proxy in its tests (TestNodePostgres).
  have node || missing+=(nodejs)
  have npm || missing+=(npm)
  # psycopg 3 (over libpq) runs through the proxy in its tests (TestPsycopg), with Debian's python3.
  /usr/bin/python3 -c 'import psycopg' >/dev/null 2>&1 || missing+=(python3-psycopg)
  # The canary leak fuzzer generates statements with sqlsmith.
  have sqlsmith || missing+=(sqlsmith)
  # The syslog sink's tests deliver to a real rsyslogd over TLS.
  have rsyslogd || [ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
  [ -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so ] || compgen -G '/usr/lib/*/rsyslog/lmnsd_gtls.so' >/dev/null || missing+=(rsyslog-gnutls)
  # The SSH proxy's tests run a real sshd per test (services/dev/localssh) and, through it,
  # sudo at a password prompt and rsync; the client side (ssh, scp, sftp) is openssh-client.
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  have sudo || [ -x /usr/bin/sudo ] || missing+=(sudo)
  have rsync || missing+=(rsync)
  have ssh || missing+=(openssh-client)
  # The web console's end-to-end tests drive Debian's Chromium headless (chromedp).
  have chromium || [ -x /usr/bin/chromium ] || missing+=(chromium)
  # The ClickHouse cluster tests (two or more servers, replicated tables, ON CLUSTER) run
  # Debian's ZooKeeper (it brings a Java runtime).
  [ -e /usr/share/java/zookeeper.jar ] || missing+=(zookeeper)
  # A NATS node is partitioned by the kernel in its tests: network namespaces, veth pairs
  # and a bridge, with iproute2's ip.
  have ip || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
fi
if [ "$variant" = test ] || [ "$variant" = bench ]; then
  # nginx serves files and reverse-proxies in the HTTP proxy's tests (services/dev/localnginx)
  # and is the reverse proxy gatehouse bench http compares with; nginx-light is enough.
  [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
fi
if [ "$variant" = bench ]; then
  have pgbouncer || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
  # wrk drives gatehouse bench http.
  have wrk || missing+=(wrk)
fi

if ! have go; then
  echo "Go is not installed: install Go 1.26 or newer from https://go.dev/dl/ and put it on PATH." >&2
  exit 1
fi

# The same package may be missing for two reasons (postgresql: server and pgbench).
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk 'NF && !seen[$0]++')
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing missing packages: ${missing[*]}" >&2
if [ "$(id -u)" = 0 ]; then
  sudo=""
elif have sudo && sudo -n true 2>/dev/null; then
  sudo="sudo"
else
  echo "Missing: ${missing[*]}. Install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if printf '%s\n' "${missing[@]}" | grep -qx openssh-server; then
  # A system sshd on port 22 would only widen the machine's attack surface: the tests start
  # their own on loopback. Debian's unit and init script both honour this file, so the
  # packaged server is neither started now nor at boot (delete the file to enable it).
  $sudo mkdir -p /etc/ssh
  $sudo touch /etc/ssh/sshd_not_to_be_run
fi
nginx_new=""
printf '%s\n' "${missing[@]}" | grep -q '^nginx' && nginx_new=1
policy_rc=""
if [ -n "$nginx_new" ] && [ ! -e /usr/sbin/policy-rc.d ]; then
  # A system nginx on port 80 is not needed either (the tests and the bench start their own
  # on loopback), and nginx has no not-to-be-run file: policy-rc.d answering 101 keeps the
  # package's scripts from starting it during the install, and it is disabled at boot below.
  printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
  $sudo chmod 755 /usr/sbin/policy-rc.d
  policy_rc=1
fi
$sudo apt-get update -qq
status=0
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null || status=$?
[ -n "$policy_rc" ] && $sudo rm -f /usr/sbin/policy-rc.d
if [ -n "$nginx_new" ]; then
  if have systemctl && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now nginx >/dev/null 2>&1 || true
  elif have update-rc.d; then
    $sudo update-rc.d nginx disable >/dev/null 2>&1 || true
  fi
fi
# Debian starts the packaged servers as services where it can; Gatehouse runs its own
# copies as child processes, so the packaged ones are not needed.
exit $status

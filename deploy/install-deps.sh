#!/usr/bin/env bash
# Installs what Gatehouse needs on Debian/Ubuntu when it is missing: PostgreSQL (server and
# psql), ClickHouse (Debian's clickhouse-server) and, for tests, pgbench, Node.js with npm
# (node-postgres), psycopg 3, rsyslog (with its TLS driver) and sqlsmith. Uses apt-get as
# root or through sudo; otherwise prints exactly what to install and fails.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
have_pg_server() {
  have initdb && have postgres && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
have_clickhouse() { have clickhouse-server || [ -x /usr/sbin/clickhouse-server ] || have clickhouse; }

missing=()
have_pg_server || missing+=(postgresql)
have psql || missing+=(postgresql-client)
have curl || missing+=(curl)
have pgbench || missing+=(postgresql)
have_clickhouse || missing+=(clickhouse-server)
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
# `install-deps.sh bench` adds what the bench command compares against.
if [ "${1:-}" = bench ]; then
  have pgbouncer || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
fi

if ! have go; then
  echo "Go is not installed: install Go 1.26 or newer from https://go.dev/dl/ and put it on PATH." >&2
  exit 1
fi

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
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
# Debian starts the packaged servers as services where it can; Gatehouse runs its own
# copies as child processes, so the packaged ones are not needed.

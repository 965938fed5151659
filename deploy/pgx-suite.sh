#!/usr/bin/env bash
# Runs pgx's own test suites through a running `gatehouse dev` (the proxy on 127.0.0.1:6432)
# and directly against its demo PostgreSQL, so that the two can be compared side by side.
# Usage: [TARGETS="direct proxy"] deploy/pgx-suite.sh [data-dir]   (default ./.gatehouse; pgx from
# the module cache)
set -euo pipefail
data=${1:-.gatehouse}
ver=$(go list -m -f '{{.Version}}' github.com/jackc/pgx/v5)
src=$(go mod download -json "github.com/jackc/pgx/v5@$ver" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src/." "$work/" && chmod -R u+w "$work"
pgport=$(ps -eo args | sed -n "s|.*postgres -D $(cd "$data" && pwd)/postgres -p \([0-9]*\).*|\1|p" | head -1)
[ -n "$pgport" ] || { echo "no demo PostgreSQL of 'gatehouse dev' found for $data" >&2; exit 1; }
direct="host=127.0.0.1 port=$pgport dbname=demo user=gatehouse_demo password=$(cat "$data/demo-pg-password") sslmode=disable"
proxy="host=127.0.0.1 port=6432 dbname=demo user=dba-oncall password=$(bin/gatehouse token --dev --sub dba-oncall --groups dba) sslmode=disable"
cd "$work"
for target in ${TARGETS:-direct proxy}; do
  echo "== pgx $ver suites, $target"
  conn=$direct; [ "$target" = proxy ] && conn=$proxy
  for pkg in ./pgconn/ . ./pgtype/ ./stdlib/ ./pgxpool/; do
    PGX_TEST_DATABASE="$conn" go test -count=1 "$pkg" 2>&1 | grep -E '^(--- FAIL|ok|FAIL)' || true
  done
done

#!/bin/sh
# First start: a cluster owned by POSTGRES_USER with its password, the database POSTGRES_DB,
# password logins from the network. Every start: postgres in the foreground (signals reach it).
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "pg-entrypoint: POSTGRES_PASSWORD is empty: set PAX_PG_PASSWORD in .env" >&2
    exit 1
  fi
  user="${POSTGRES_USER:-postgres}"
  pw=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pw"
  # UTF-8, as the official image: under SQL_ASCII, drivers get bytes where they expect text
  initdb -D "$PGDATA" -U "$user" --pwfile="$pw" -A scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pw"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
  if [ "${POSTGRES_DB:-$user}" != postgres ]; then  # initdb made `postgres` alone
    PGPASSWORD="$POSTGRES_PASSWORD" createdb -U "$user" -h /var/run/postgresql "$POSTGRES_DB"
  fi
  pg_ctl -D "$PGDATA" -w stop >/dev/null
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'

#!/bin/sh
# PostgreSQL for docker/compose.cluster.yaml. On the first start (an empty volume) it creates the
# cluster, the role POSTGRES_USER with the password POSTGRES_PASSWORD (or the file named by
# POSTGRES_PASSWORD_FILE) and the database POSTGRES_DB that role owns; every start then runs postgres
# as PID 1. After the first start the password lives in the database: change it there (ALTER ROLE),
# not here. Arguments are passed on to postgres (e.g. -c max_connections=200).
set -eu

POSTGRES_USER=${POSTGRES_USER:-hellwall}
POSTGRES_DB=${POSTGRES_DB:-hellwall}
# Plain names only: they go into pg_hba.conf and SQL as they are.
for name in "$POSTGRES_USER" "$POSTGRES_DB"; do
  case "$name" in
    '' | [!a-z_]* | *[!a-z0-9_]*)
      echo "postgres: POSTGRES_USER and POSTGRES_DB must be plain lowercase names, not '$name'" >&2
      exit 2
      ;;
  esac
done

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE"); fi
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres: set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) for the first start" >&2
    exit 2
  fi
  # Byte order for text (the store compares its keys in "C" order anyway), UTF-8 for what it stores.
  initdb -D "$PGDATA" -U postgres -E UTF8 --locale=C --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  # From other containers: only this database, only as this role, only with its password.
  printf 'host %s %s all scram-sha-256\n' "$POSTGRES_DB" "$POSTGRES_USER" >>"$PGDATA/pg_hba.conf"
  # Set up over the unix socket alone: nothing reaches the server over the network meanwhile. The
  # password goes through the environment, not the command line (\getenv, psql 15).
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c unix_socket_directories=/tmp" start >/dev/null
  export POSTGRES_PASSWORD
  psql -q -v ON_ERROR_STOP=1 -h /tmp -U postgres -d postgres -v user="$POSTGRES_USER" -v db="$POSTGRES_DB" <<'SQL'
\getenv password POSTGRES_PASSWORD
CREATE ROLE :"user" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"user";
SQL
  pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
  echo "postgres: created the cluster, the role $POSTGRES_USER and the database $POSTGRES_DB"
fi
unset POSTGRES_PASSWORD POSTGRES_PASSWORD_FILE
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp "$@"

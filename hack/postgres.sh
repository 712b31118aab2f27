#!/usr/bin/env bash
# A throwaway PostgreSQL for tests and the demo.
#
#   hack/postgres.sh start [DIR]   start a server in DIR (default: a new temp
#                                  folder) on a free loopback port; prints its
#                                  DSN and writes it to DIR/dsn
#   hack/postgres.sh stop DIR      stop it and remove DIR
#
# initdb and pg_ctl come from the system's PostgreSQL; Debian's packages are
# installed when they are missing. initdb refuses to run as root, so as root
# the server runs as the unprivileged "postgres" user in a folder it owns.
# Only loopback TCP is opened, with a random password (scram-sha-256), unless
# PG_EXTRA_OPTS adds server settings to the command line, for example
# "-c shared_buffers=2GB" for benchmarks of large inventories.
# PG_EXTRA_LISTEN names more addresses to listen on (comma-separated) and
# PG_EXTRA_HBA the client networks (CIDRs, comma-separated) allowed there, as
# the cluster test does for pods inside the node's network namespace.
#
# Opt-in TLS: with PG_TLS_CERT and PG_TLS_KEY naming a PEM server
# certificate (with its chain) and key, the server also accepts TLS
# (ssl=on; plain connections still work) and the printed DSN asks for
# sslmode=require instead of disable.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

ensure_binaries() {
  if ! find_bindir >/dev/null; then
    log "PostgreSQL server binaries not found; installing Debian's postgresql package"
    local sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
  fi
  find_bindir
}

# as_owner runs a command as the user owning the data folder.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u "$PGUSER_OS" -- "$@"
  else
    "$@"
  fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  local dir="${1:-}"
  local bindir; bindir="$(ensure_binaries)"
  [[ -n "$dir" ]] || dir="$(mktemp -d /tmp/sync-pg.XXXXXX)"
  mkdir -p "$dir"
  PGUSER_OS="$(id -un)"
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    PGUSER_OS=postgres
    chown "$PGUSER_OS" "$dir"; chmod 0755 "$dir"
  fi
  local password; password="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  printf '%s\n' "$password" > "$dir/pwfile"
  chmod 0600 "$dir/pwfile"; [[ $(id -u) -eq 0 ]] && chown "$PGUSER_OS" "$dir/pwfile"
  as_owner "$bindir/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  rm -f "$dir/pwfile"
  local ssl_opts="" sslmode="disable"
  if [[ -n "${PG_TLS_CERT:-}" || -n "${PG_TLS_KEY:-}" ]]; then
    [[ -r "${PG_TLS_CERT:-}" && -r "${PG_TLS_KEY:-}" ]] || { log "PG_TLS_CERT and PG_TLS_KEY must both name readable files"; exit 1; }
    # The server refuses a key others can read: its own copies, owned by it.
    install -m 0644 "$PG_TLS_CERT" "$dir/server.crt"
    install -m 0600 "$PG_TLS_KEY" "$dir/server.key"
    [[ $(id -u) -eq 0 ]] && chown "$PGUSER_OS" "$dir/server.crt" "$dir/server.key"
    ssl_opts=" -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key"
    sslmode="require"
  fi
  local listen="127.0.0.1" cidr
  if [[ -n "${PG_EXTRA_LISTEN:-}" ]]; then
    listen+=",$PG_EXTRA_LISTEN"
    for cidr in ${PG_EXTRA_HBA//,/ }; do
      printf 'host all all %s scram-sha-256\n' "$cidr" >>"$dir/data/pg_hba.conf"
    done
  fi

  local port tries=0
  while :; do
    port=$(( 20000 + RANDOM % 30000 ))
    if port_free "$port" && as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -c listen_addresses=$listen -k $dir -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off$ssl_opts${PG_EXTRA_OPTS:+ $PG_EXTRA_OPTS}" \
        start >/dev/null; then
      break
    fi
    tries=$((tries + 1))
    if (( tries >= 5 )); then cat "$dir/server.log" >&2; log "could not start PostgreSQL"; exit 1; fi
  done
  local dsn="postgres://postgres:${password}@127.0.0.1:${port}/postgres?sslmode=${sslmode}"
  umask 077; printf '%s\n' "$dsn" > "$dir/dsn"
  printf '%s\n' "$bindir" > "$dir/bindir"
  log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') listening on 127.0.0.1:$port (data in $dir)"
  echo "$dsn"
}

stop() {
  local dir="${1:?usage: $0 stop DIR}"
  [[ -d "$dir/data" ]] || { rm -rf "$dir"; return 0; }
  PGUSER_OS="$(stat -c %U "$dir/data")"
  local bindir; bindir="$(cat "$dir/bindir" 2>/dev/null || find_bindir)"
  as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 start [DIR] | stop DIR" >&2; exit 2 ;;
esac

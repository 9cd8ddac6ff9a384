#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432) and NATS with JetStream (127.0.0.1:4222)
# are running and ffmpeg is installed, installing the Debian packages when they are missing. Safe to run
# again and again; it changes nothing when both are already up.
set -euo pipefail

log() { printf '[services] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_updated=0
need_pkg() {
  local cmd="$1" pkg="$2"
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "$cmd" ]; then
    if [ "$apt_updated" -eq 0 ]; then
      log "apt-get update"
      $SUDO apt-get update -qq
      apt_updated=1
    fi
    log "installing $pkg"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$pkg" >/dev/null
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1; }

wait_port() {
  local port="$1" name="$2"
  for _ in $(seq 1 60); do
    if port_open "$port"; then return 0; fi
    sleep 0.5
  done
  log "$name did not come up on port $port"
  return 1
}

# --- PostgreSQL -------------------------------------------------------------
if ! port_open 5432; then
  need_pkg pg_ctlcluster postgresql
  ver="$(ls /etc/postgresql | sort -V | tail -n1)"
  hba="/etc/postgresql/$ver/main/pg_hba.conf"
  # Development and CI only: trust loopback connections for user postgres.
  if ! grep -q "lokiz: trust loopback" "$hba"; then
    log "allowing trust auth on loopback in $hba"
    $SUDO sed -i '1i # lokiz: trust loopback\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$hba"
  fi
  log "starting PostgreSQL $ver"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || $SUDO pg_ctlcluster "$ver" main start
  wait_port 5432 PostgreSQL
fi

# The test suite runs 4 tests at once, some with four `lokiz` processes and
# their pools each: Postgres' default of 100 connections is not enough
# ("too many clients" made tests flaky). Raised once, with a restart.
want_conns=300
conns="$(psql -h 127.0.0.1 -U postgres -Atc 'SHOW max_connections' 2>/dev/null || echo 0)"
if [ "${conns:-0}" -lt "$want_conns" ] && command -v pg_ctlcluster >/dev/null 2>&1; then
  ver="$(ls /etc/postgresql | sort -V | tail -n1)"
  log "raising max_connections from $conns to $want_conns (restarting PostgreSQL $ver)"
  psql -h 127.0.0.1 -U postgres -qAtc "ALTER SYSTEM SET max_connections = $want_conns"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main restart || $SUDO pg_ctlcluster "$ver" main restart
  wait_port 5432 PostgreSQL
  for _ in $(seq 1 60); do
    if psql -h 127.0.0.1 -U postgres -Atc 'SELECT 1' >/dev/null 2>&1; then break; fi
    sleep 0.5
  done
fi

# --- NATS with JetStream ----------------------------------------------------
if ! port_open 4222; then
  need_pkg nats-server nats-server
  bin="$(command -v nats-server || echo /usr/sbin/nats-server)"
  store="${LOKIZ_NATS_STORE:-/var/lib/nats-server}"
  $SUDO mkdir -p "$store"
  log "starting nats-server with JetStream (store $store)"
  if command -v start-stop-daemon >/dev/null 2>&1; then
    $SUDO start-stop-daemon --start --oknodo --background --exec "$bin" -- \
      -a 127.0.0.1 -p 4222 -js -sd "$store" -l /tmp/nats-server.log
  else
    nohup "$bin" -a 127.0.0.1 -p 4222 -js -sd "$store" -l /tmp/nats-server.log >/dev/null 2>&1 &
  fi
  wait_port 4222 NATS
fi

# --- ffmpeg (the local AI provider and media probing) -------------------------
need_pkg ffmpeg ffmpeg
need_pkg ffprobe ffmpeg

log "PostgreSQL and NATS are up; ffmpeg is installed"

#!/usr/bin/env bash
# Sourced by scripts/test.sh: installs what the contract tests
# (tests/tests/blackbox/contract.rs) run, when missing, and exports where:
#   LOKIZ_SCHEMATHESIS  schemathesis, from PyPI, in a virtualenv under target/
#   LOKIZ_CHROMIUM      headless Chromium (Debian package `chromium`)
#   LOKIZ_MOTO_SERVER   moto's S3-compatible server, from PyPI, in its own
#                       virtualenv under target/ (tests/tests/blackbox/s3.rs)
SCHEMATHESIS_VERSION="4.32.5"
MOTO_VERSION="5.1.18"

_ct_log() { printf '[contract-tools] %s\n' "$*" >&2; }
_ct_sudo=""
if [ "$(id -u)" -ne 0 ]; then _ct_sudo="sudo"; fi

_ct_venv="$(pwd)/target/schemathesis-venv"
if [ ! -x "$_ct_venv/bin/schemathesis" ] || ! "$_ct_venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  if ! python3 -m venv --help >/dev/null 2>&1; then
    _ct_log "installing python3-venv"
    $_ct_sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $_ct_sudo apt-get install -y -qq python3-venv >/dev/null
  fi
  _ct_log "installing schemathesis $SCHEMATHESIS_VERSION into $_ct_venv"
  rm -rf "$_ct_venv"
  python3 -m venv "$_ct_venv" && "$_ct_venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION" || return 1
fi
export LOKIZ_SCHEMATHESIS="$_ct_venv/bin/schemathesis"

_ct_moto="$(pwd)/target/moto-venv"
if [ ! -x "$_ct_moto/bin/moto_server" ] || ! "$_ct_moto/bin/pip" show moto 2>/dev/null | grep -q "^Version: $MOTO_VERSION$"; then
  _ct_log "installing moto $MOTO_VERSION into $_ct_moto"
  rm -rf "$_ct_moto"
  python3 -m venv "$_ct_moto" && "$_ct_moto/bin/pip" install -q "moto[server]==$MOTO_VERSION" || return 1
fi
export LOKIZ_MOTO_SERVER="$_ct_moto/bin/moto_server"

_ct_chromium="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$_ct_chromium" ]; then
  _ct_log "installing chromium"
  $_ct_sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $_ct_sudo apt-get install -y -qq chromium >/dev/null || return 1
  _ct_chromium="$(command -v chromium)"
fi
export LOKIZ_CHROMIUM="$_ct_chromium"

#!/usr/bin/env bash
# Run the whole test suite; installs what the tests need (PostgreSQL server, espeak-ng, sox) when missing.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh

have_postgres() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; }
if ! have_postgres; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing PostgreSQL for the tests (apt-get)…"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null \
      || echo "warning: PostgreSQL could not be installed; its tests will be skipped with that reason"
  else
    echo "warning: no PostgreSQL and no way to install it; PostgreSQL tests will be skipped"
  fi
fi

# the prompt build tests run the real synthesiser and converter
if ! command -v espeak-ng >/dev/null 2>&1 || ! command -v sox >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else SUDO=none; fi
  if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing espeak-ng and sox for the prompt tests (apt-get)…"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng sox >/dev/null \
      || echo "warning: espeak-ng/sox could not be installed; the prompt tests will say so"
  else
    echo "warning: no espeak-ng/sox and no way to install them; the prompt tests will say so"
  fi
fi

ensure_venv "[test]"
exec .venv/bin/python -m pytest "$@"

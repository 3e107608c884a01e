# Shared by run.sh and test.sh: a Python 3.11 virtual environment with the project installed.
# Re-installs only when pyproject.toml changed.
set -euo pipefail

find_python() {
  for py in python3.11 python3.12 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 13))'; then
      echo "$py"; return 0
    fi
  done
  echo "error: Python 3.11 or 3.12 is needed (apt-get install python3.11 python3.11-venv)" >&2
  return 1
}

ensure_venv() {  # $1: extras, e.g. "" or "[test]"
  local extras="$1" py stamp want
  py=$(find_python)
  if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
  fi
  stamp=.venv/.installed
  want="$(sha256sum pyproject.toml | cut -c1-16)$extras"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install -q -e ".$extras"
    echo "$want" > "$stamp"
  fi
}

# ensure_apt "command:package" …: installs (apt-get, one call) the packages whose command is missing.
# A machine without apt-get or root gets a warning; the tests that need the tool say so themselves.
ensure_apt() {
  local want=() pair cmd pkg sudo
  for pair in "$@"; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    if ! command -v "$cmd" >/dev/null 2>&1 && ! ls $cmd >/dev/null 2>&1; then want+=("$pkg"); fi
  done
  [ ${#want[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else sudo=none; fi
  if [ "$sudo" != none ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${want[*]} (apt-get)…"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${want[@]}" >/dev/null \
      || echo "warning: ${want[*]} could not be installed; the tests that need them will say so"
  else
    echo "warning: ${want[*]} missing and no way to install them; the tests that need them will say so"
  fi
}

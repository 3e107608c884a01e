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

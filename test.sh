#!/usr/bin/env bash
# Run the whole test suite; installs what the tests need (PostgreSQL server, espeak-ng, sox, faketime,
# Chromium and the Noto CJK fonts for the browser tests)
# when missing.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh

# PostgreSQL's server binaries live off PATH on Debian: the glob stands for "initdb is there"
ensure_apt "/usr/lib/postgresql/*/bin/initdb:postgresql" "espeak-ng:espeak-ng" "sox:sox" "faketime:faketime" \
  "chromium:chromium" "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc:fonts-noto-cjk"
ensure_venv "[test]"
# the house's import rules (.importlinter) first: a part reaching into another's modules fails fast
.venv/bin/lint-imports --no-cache
exec .venv/bin/python -m pytest "$@"

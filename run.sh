#!/usr/bin/env bash
# Build everything and start the hotline (embedded default: web app + Celery worker + beat).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
ensure_venv ""
.venv/bin/hotline seed          # migrates, loads reference data, prints demo passwords once
exec .venv/bin/hotline run

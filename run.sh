#!/usr/bin/env bash
# Build everything and start the hotline (embedded default: web app + Celery worker + beat).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
# the IVR's prompts are synthesised here (espeak-ng) and converted to 8 kHz WAV (sox)
ensure_apt "espeak-ng:espeak-ng" "sox:sox"
ensure_venv ""
.venv/bin/hotline seed          # migrates, loads reference data, prints demo passwords once
.venv/bin/hotline prompts build || echo "warning: prompts not built; callers' keys are still read, but they hear no prompts"
exec .venv/bin/hotline run

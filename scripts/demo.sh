#!/usr/bin/env bash
# The main job end to end on a small embedded default: generate → pretrain → evaluate → qat → synth → emulate.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/env.sh"
exec "$root/.venv/bin/jbot-edge" demo --out "${1:-$root/runs/demo}"

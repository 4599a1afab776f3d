#!/usr/bin/env bash
# Create or reuse the project's virtual environment (.venv) and install jbot-edge into it.
# torch: an already-importable torch is kept (GPU users keep their CUDA build); otherwise the CPU build 2.13.0.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${JBOT_EDGE_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
fi
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  "$venv/bin/python" -m pip install -q "torch==2.13.0" || "$venv/bin/python" -m pip install -q torch
fi
stamp="$venv/.jbot-edge-installed"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/python" -m pip install -q -e "$root[test,rtl]"
  touch "$stamp"
fi

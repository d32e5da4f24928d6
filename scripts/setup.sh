#!/usr/bin/env bash
# Create .venv and install moonlet with its development extras (CPU PyTorch).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Pin the CPU build first: a bare "torch" requirement could pull a multi-GB CUDA build.
.venv/bin/pip install --quiet "torch==${MOONLET_TORCH_VERSION:-2.13.0}" 2>&1 | grep -v "is ignored" || true
.venv/bin/pip install --quiet -e ".[dev]" 2>&1 | grep -v "is ignored" || true
# The official Moondream client, for the server's compatibility tests. Its 2.x releases pull a
# GPU inference engine they only need for local inference, so install it without dependencies.
.venv/bin/pip install --quiet --no-deps "moondream==2.6.1" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import moonlet, torch; print('moonlet', moonlet.__version__, 'torch', torch.__version__)"

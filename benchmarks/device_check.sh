#!/usr/bin/env bash
# The GPU check in one prepared call (benchmarks/bench_gpu.py): the device agrees with the CPU on the
# same inputs, and what the scorer, LoRA training, generation and greedy_map achieve on it.
#
#   bash benchmarks/device_check.sh prepare   here: write the payload the device machine reads
#   bash benchmarks/device_check.sh           on the device machine (needs only torch, transformers,
#                                             peft, accelerate, pandas, pyarrow, tqdm: its python3
#                                             has them; no Kedro, no hub)
#   bash benchmarks/device_check.sh --cpu     here and in CI: prepare, then the whole script with
#                                             tiny sizes on the CPU (tests/test_device_check.py)
# Extra arguments go to bench_gpu.py. Environment: PYTHON (default .venv/bin/python if present, else
# python3), P3_DEVICE_PAYLOAD (default benchmarks/device_payload, git-ignored), OUT (results folder;
# the run tool sets it on the device; default a new temporary folder).
#
# The call a session makes once it has a device (after `prepare` here, in the same checkout):
#
#   run(command="bash benchmarks/device_check.sh", carry=["benchmarks/device_payload"],
#       timeout_s=360)
#
# It writes $OUT/bench_gpu.md (the table), $OUT/bench_gpu.log (stdout: the same table, row by row,
# so a run cut short still leaves every finished row), $OUT/bench_gpu.err (progress, stage times,
# warnings, tracebacks) and $OUT/env.txt (nvidia-smi, package versions).
#
# Why it fits, payload: what travels is the working tree (tracked and untracked, not ignored files:
# 1.35 MB at this commit) plus the carried payload (SmolLM2 tokenizer.json folder 3.53 MB + 512
# samples in parquet 0.03 MB = 3.56 MB): 4.91 MB = 4.7 MiB of the 64 MiB allowed (7 %).
# `prepare` measures both again and fails above 64 MiB. The 93 MB GGUF the tokenizer comes from
# stays here.
#
# Why it fits, time (H100, bf16 dense peak about 990 TFLOP/s; the bound assumes only 10 % of it,
# 99 TFLOP/s). The model has P = 1.54e9 matmul weights (Qwen2.5-1.5B shape, tied head): a forward
# costs 2P = 3.1 GFLOP a token, LoRA training 4P + 6P_lora = 6.3 GFLOP. A sample is 87 tokens.
#   scorer, 4 budgets x 4096 samples = 1.43 M tokens x 3.1 GFLOP = 4.4 PFLOP        ->  45 s
#   bare forward, 4096 samples = 0.36 M tokens = 1.1 PFLOP                          ->  11 s
#   authors' procedure, 48 samples: ~100 forwards of <= 5 x 87 tokens, ~20 ms each  ->   2 s
#   LoRA training, 1024 samples = 89 k tokens x 6.3 GFLOP = 0.56 PFLOP -> 6 s, + 64 Trainer steps
#     at ~0.2 s of overhead                                                         ->  19 s
#   generation, 2 batches x 128 steps, each a launch-bound 28-layer step of <= 40 ms ->  10 s
#   greedy_map exact, n = 1M, d = 1536, k = 10k: 157 block updates, each one pass over the 6.1 GB
#     of features (2 ms at 3 TB/s) and a 0.2 TFLOP fp32 product (4 ms at 50 TFLOP/s) = 1 s, plus
#     10k picks of ~10 small kernels and 3 host syncs (<= 2 ms)                     ->  21 s
#   greedy_map stochastic: 461 candidates a pick, the same per-pick overhead        ->  20 s
#   device = CPU rows (16 CPU cores for the CPU side: greedy_map 100k x 128 x 1000
#     = 1.3e10 multiply-adds, tiny-model scoring, training and decoding)            ->  20 s
#   imports, model initialisation on the device, warm-ups                           ->  30 s
# about 3 min in all at 10 % MFU. The script is stopped at 330 s (5.5 min, `timeout -s INT`: it
# then still prints the rows it has and a failed "interrupted" row), inside the run's 360 s limit;
# with the machine's start (counted as device time too, a minute or two) the check stays within
# 8 of the session's 15 minutes of device time, leaving room for one rerun of a part (--skip).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PAYLOAD=${P3_DEVICE_PAYLOAD:-benchmarks/device_payload}
LIMIT_BYTES=$((64 * 1024 * 1024))
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"  # the device has no installed project
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false KEDRO_DISABLE_TELEMETRY=1 PYTHONUNBUFFERED=1

prepare() {
  "$PYTHON" benchmarks/bench_gpu.py --prepare --payload "$PAYLOAD"
  local tree=0 payload
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    tree=$( { git ls-files -z --cached --others --exclude-standard |
      du -cb --files0-from=- 2>/dev/null || true; } | tail -1 | cut -f1)
  fi
  payload=$(du -sb "$PAYLOAD" | cut -f1)
  echo "travels: working tree ${tree:-0} B + payload $payload B = $(( ${tree:-0} + payload )) B" \
    "of $LIMIT_BYTES B allowed"
  if (( ${tree:-0} + payload > LIMIT_BYTES )); then
    echo "FAIL: more than 64 MiB would travel to the device machine" >&2
    exit 1
  fi
}

measure() {  # measure [bench_gpu.py arguments...]
  OUT=${OUT:-$(mktemp -d)}
  mkdir -p "$OUT"
  {
    nvidia-smi 2>/dev/null || echo "no nvidia-smi"
    "$PYTHON" -c 'import platform, torch, transformers, peft, accelerate, pandas, pyarrow
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "transformers", transformers.__version__, "peft", peft.__version__,
      "accelerate", accelerate.__version__, "pandas", pandas.__version__, "pyarrow", pyarrow.__version__)'
  } >"$OUT/env.txt" 2>&1 || true
  echo "results in $OUT" >&2
  timeout -s INT -k 15 330 "$PYTHON" benchmarks/bench_gpu.py --payload "$PAYLOAD" \
    --out "$OUT/bench_gpu.md" "$@" 2> >(tee "$OUT/bench_gpu.err" >&2) | tee "$OUT/bench_gpu.log"
}

case "${1:-}" in
  prepare)
    prepare
    ;;
  --cpu)
    shift
    prepare
    measure --cpu "$@"
    ;;
  *)
    measure "$@"
    ;;
esac

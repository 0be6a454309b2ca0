#!/usr/bin/env bash
# A short study on one large GPU (conf/gpu: Qwen2.5-1.5B-Instruct, GSM8K from the hub, bf16):
# p3, random and full x 3 seeds, then the study table (means, 95 % intervals, paired differences,
# compute). Needs network access to the Hugging Face hub the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
# conf/gpu cuts seeded subsets (data.split.max_train / max_eval) so three methods x three seeds fit
export KEDRO_DISABLE_TELEMETRY=1
start=$(date +%s)
.venv/bin/kedro run --pipeline study --env gpu "$@"
echo "wall: $(( $(date +%s) - start )) s"
report=$(ls -d data/08_reporting/study/report.csv/*/ | sort | tail -1)report.csv
.venv/bin/python - "$report" <<'PY'
import sys
import pandas as pd

table = pd.read_csv(sys.argv[1])
cols = ["method", "n_seeds", "mean", "ci_low", "ci_high", "diff_vs_random", "diff_vs_random_ci_low",
        "diff_vs_random_ci_high", "samples_trained", "total_flops", "total_seconds"]
print(table[[c for c in cols if c in table]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
PY

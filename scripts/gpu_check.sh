#!/usr/bin/env bash
# GPU proof for issue #18, in one go (about 5-8 minutes on an H100/H200-class GPU):
#   1. the `gpu`-marked tests (CUDA pre-training with bf16 autocast, no host syncs in a training step, DDP over
#      one GPU with NCCL, teacher embeddings on GPU == CPU, fast integer emulator on GPU == CPU);
#   2. benchmarks/pretrain.py on CUDA for small and base at batch 1024, 4096 and 8192 (eager and torch.compile),
#      and benchmarks/knn_scale.py (bank 10^6, 10^7 queries), with nvidia-smi utilisation/memory sampled.
# Writes benchmarks/results/gpu_check-<date>.json (+ the raw pieces) and copies them to $OUT when set.
# Usage: scripts/gpu_check.sh            (PYTHON=... to choose the interpreter; carry .cache/test-data to skip
#                                          generating the test jets)
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES=benchmarks/results
mkdir -p "$RES"
RAW=$RES/gpu_check-$STAMP
mkdir -p "$RAW"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$RAW/device.csv" 2>&1
echo "device: $(cat "$RAW/device.csv")"

# 1. tests
timeout 900 "$PYTHON" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider --durations=10 \
    > "$RAW/pytest.txt" 2>&1
TESTS_RC=$?
tail -n 15 "$RAW/pytest.txt"

# 2. benchmarks, with utilisation sampled every 0.5 s
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 \
    > "$RAW/nvidia-smi.csv" 2>/dev/null &
SMI=$!
for BATCH in 1024 4096 8192; do
    timeout 600 "$PYTHON" benchmarks/pretrain.py --devices cuda --presets small,base --batch "$BATCH" \
        --steps 50 --compile > "$RAW/pretrain-b$BATCH.json" 2> "$RAW/pretrain-b$BATCH.err"
    echo "pretrain batch $BATCH: rc=$?"
done
timeout 400 "$PYTHON" benchmarks/knn_scale.py --bank 1000000 --queries 10000000 --devices cuda \
    > "$RAW/knn_scale.json" 2> "$RAW/knn_scale.err"
echo "knn_scale (bank 1e6, queries 1e7): rc=$?"
kill "$SMI" 2>/dev/null

"$PYTHON" - "$RAW" "$TESTS_RC" > "$RES/gpu_check-$STAMP.json" <<'PY'
import json, sys
from pathlib import Path
raw, tests_rc = Path(sys.argv[1]), int(sys.argv[2])
results = []
for path in sorted(raw.glob("pretrain-b*.json")):
    try:
        report = json.loads(path.read_text())
    except ValueError:
        continue
    results += [{k: r.get(k) for k in ("preset", "batch", "compiled", "precision", "jets_per_s", "ms_per_step",
                                       "peak_memory_mb", "fraction_of_bf16_matmul", "fraction_of_fp32_matmul")}
                for r in report["results"]]
util = [line.split(", ") for line in (raw / "nvidia-smi.csv").read_text().splitlines() if line.count(",") == 2]
busy = [float(u[1]) for u in util if u[1].strip().replace(".", "").isdigit()]
mem = [float(u[2]) for u in util if u[2].strip().replace(".", "").isdigit()]
best_small = max((r["jets_per_s"] for r in results if r["preset"] == "small" and r["jets_per_s"]), default=None)
print(json.dumps({
    "benchmark": "gpu_check",
    "device": (raw / "device.csv").read_text().strip(),
    "gpu_tests_exit_code": tests_rc,
    "gpu_tests_summary": (raw / "pytest.txt").read_text().strip().splitlines()[-1:],
    "pretrain": results,
    "best_small_jets_per_s": best_small,
    "goal_small_jets_per_s": 200000,
    "gpu_utilisation_percent": {"mean": sum(busy) / len(busy) if busy else None, "max": max(busy, default=None)},
    "gpu_memory_used_mib_max": max(mem, default=None),
    "knn_scale": json.loads((raw / "knn_scale.json").read_text() or "null") if (raw / "knn_scale.json").is_file()
    and (raw / "knn_scale.json").stat().st_size else None,
}, indent=2))
PY
cat "$RES/gpu_check-$STAMP.json"
if [ -n "${OUT:-}" ]; then cp -r "$RAW" "$RES/gpu_check-$STAMP.json" "$OUT/"; fi
exit $TESTS_RC

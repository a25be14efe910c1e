#!/usr/bin/env bash
# The GPU checks of this project in one script, for a one-GPU machine without network:
# GPU benchmark, training throughput, the low-label experiment, the bundled-model recipe.
# Results go to $OUT (default: ./device-out). Python packages missing there (rasterio)
# travel as wheels in .whl/.
set -uo pipefail
OUT=${OUT:-device-out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
nvidia-smi -L | tee "$OUT/gpu.txt"
python3 -c "import torch, rasterio; print('torch', torch.__version__, 'rasterio', rasterio.__version__)" | tee -a "$OUT/gpu.txt"
timeout 120 python3 benchmarks/gpu_benchmark.py --seconds 6 2>&1 | tee "$OUT/gpu_benchmark.txt"
timeout 90 python3 benchmarks/train_throughput.py --device cuda --steps 20 2>&1 | tee "$OUT/train_throughput_gpu.txt"
timeout 150 make -s bundled-model PYTHON=python3 BUNDLED_OUT=/tmp/bundled 2>&1 | tail -20 | tee "$OUT/bundled.log"
cp /tmp/bundled/model.safetensors "$OUT/bundled.safetensors" 2>/dev/null
cp /tmp/bundled/model.json "$OUT/bundled.json" 2>/dev/null
timeout 330 python3 benchmarks/low_label.py --device cuda --jobs 8 --threads 2 --epochs 100 --out /tmp/results 2>&1 \
    | tee "$OUT/low_label.log"
tar czf "$OUT/results.tgz" --exclude=runs -C /tmp results

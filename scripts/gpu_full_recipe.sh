#!/usr/bin/env bash
# The full 300-epoch recipe (smalldiffusion's FashionMNIST example: batch 1024, lr 7e-4,
# dropout 0.1, EMA 0.999) on a lent GPU, as far as the lent time allows, in resumable calls.
#
# Prepare here, once (copies FashionMNIST's four .gz files and the smalldiffusion 0.5.0
# wheel into .gpu/, which .git/info/exclude keeps out of git):
#     bash scripts/gpu_full_recipe.sh --prepare
# Then, with the device tool (one call = at most 9 minutes; call again at once, within the
# machine's 30 s of warmth, and the run resumes from the checkpoint it left on the machine):
#     run(command="bash scripts/gpu_full_recipe.sh", carry=[".gpu"], timeout_s=560)
# Rehearse here on the CPU, tiny (what tests/test_scripts.py runs):
#     GPU_RECIPE_TINY=1 OUT=/tmp/gpu_out bash scripts/gpu_full_recipe.sh
#
# Each call: (first call only) our trainer against smalldiffusion's training_loop at batch
# 1024, 20 steps per repeat (bench/train_throughput.py: images/s, ratio, achieved TFLOP/s
# against the card's matmul rate) -> $OUT/throughput.{json,md}; then training resumes
# runs/gpu/full.safetensors (bf16 autocast, channels_last, torch.compile, the data on the
# GPU) for the minutes left; then the EMA and raw weights (fp16, two 8.9 MB files), the
# segment's manifest (wall time, threads, precision, machine and command from the trainer's
# own record) and the protocol's score (n = 1000, fp32) go to $OUT. Bring those back
# into candidates/ and ship them only where they beat the shipped checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=.gpu
if [ "${1:-}" = "--prepare" ]; then
    mkdir -p "$GPU_DIR/fashion" "$GPU_DIR/whl"
    grep -qx "/$GPU_DIR/" .git/info/exclude 2>/dev/null || echo "/$GPU_DIR/" >> .git/info/exclude
    cp /usr/share/datasets/fashion-mnist/*.gz "$GPU_DIR/fashion/"
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$GPU_DIR/whl" smalldiffusion==0.5.0
    du -sh "$GPU_DIR"; exit 0
fi

OUT=${OUT:-runs/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 SMALLUNET_DATA="$PWD/$GPU_DIR/fashion"
[ -d "$GPU_DIR/fashion" ] || export SMALLUNET_DATA=/usr/share/datasets/fashion-mnist
if ls "$GPU_DIR"/whl/*.whl >/dev/null 2>&1 && ! python3 -c "import smalldiffusion" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site "$GPU_DIR"/whl/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" | tee "$OUT/machine.txt"

CKPT=${CKPT:-runs/gpu/full.safetensors}      # on the machine between calls (runs/ is ignored, so it stays while warm)
mkdir -p "$(dirname "$CKPT")"
START=$(date +%s)
LIMIT_S=${LIMIT_S:-520}          # the whole call, within the tool's 560 s
if [ -n "${GPU_RECIPE_TINY:-}" ]; then     # a rehearsal on the CPU: seconds, not minutes
    BENCH=(--device cpu --batch-size 8 --steps 1 --warmup 1 --repeats 1 --no-sampling --threads 1)
    TRAIN=(--batch-size 8 --ch 32 --max-steps 4 --precision fp32 --compile false --threads 1)
    EVAL=(--n 16 --floor-draws 1 --threads 1)
    TITLE="CPU rehearsal, batch 8"
else
    BENCH=(--device cuda --batch-size 1024 --steps 20 --warmup 3 --repeats 3 --no-sampling --compile)
    TRAIN=(--batch-size 1024 --epochs 300 --precision bf16 --channels-last true --compile true)
    EVAL=()
    TITLE="GPU, batch 1024"
fi

if [ ! -f "$CKPT" ]; then              # the first call measures before it trains
    timeout 200 python3 bench/train_throughput.py "${BENCH[@]}" --data "$SMALLUNET_DATA" \
        --json "$OUT/throughput.json" --md "$OUT/throughput.md" --title "$TITLE" \
        || echo "the benchmark did not finish (exit $?); training goes on"
fi

# train for what is left of the call, keeping ~100 s for export and scoring
LEFT=$(( LIMIT_S - ($(date +%s) - START) - 100 ))
[ "$LEFT" -gt 30 ] || { echo "no time left to train"; exit 0; }
python3 -m smallunet "${TRAIN[@]}" --checkpoint "$CKPT" --minutes "$(python3 -c "print($LEFT / 60)")" \
    --save-every-minutes 2 --no-progress | tee "$OUT/train.log"
python3 scripts/export_pretrained.py "$CKPT" --name unet_fashion_gpu --weights-dir "$OUT"
python3 scripts/evaluate_pretrained.py --name unet_fashion --weights "$OUT/unet_fashion_gpu.safetensors" \
    "${EVAL[@]}" | tee "$OUT/evaluate.txt"
echo "call took $(( $(date +%s) - START )) s"

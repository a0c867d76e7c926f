#!/usr/bin/env bash
# CryoSPIRE at CryoBench size on a GPU: simulate igg-1d (D=128, 100 000 images, 20 states,
# SNR 0.01) on the GPU, time training batches (benchmarks/spire_speed.py), then one real
# stage-A and one stage-B epoch through `cryohet train spire`, and print what each took.
#
#   benchmarks/cryobench_scale.sh [N_IMAGES] [BOX] [DEVICE] [WORK] [LOGS]
#
# Peak RSS and GPU memory come from the run's own train_log.jsonl; the dataset is
# memory-mapped, so RSS does not scale with N. Latent initialisation and the end-of-stage-A
# latent search are switched off in the timed run (each is one more pass over the data,
# ~1 and ~latent_search/4 epochs' worth); the consensus is seeded from the first
# ground-truth map so the numbers are training time alone.
set -u
N=${1:-100000}; D=${2:-128}; DEV=${3:-cuda}; WORK=${4:-/tmp/cryobench_scale}; LOGS=${5:-$WORK/logs}
PY=${PYTHON:-python3}
mkdir -p "$WORK" "$LOGS"
DATA=$WORK/igg1d_${D}_${N}
t0=$(date +%s)
[ -f "$DATA/particles.star" ] || timeout "${SIM_TIMEOUT:-600}" $PY -m cryohet simulate igg-1d --out "$DATA" -n "$N" -D "$D" --n-states 20 \
    --snr 0.01 --device "$DEV" > "$LOGS/simulate.log" 2>&1 || { tail -3 "$LOGS/simulate.log"; exit 1; }
t1=$(date +%s)
echo "simulate: $N images at D=$D on $DEV in $((t1 - t0)) s; stack $(du -h "$DATA/particles.mrcs" | cut -f1)"
timeout "${SPEED_TIMEOUT:-150}" $PY benchmarks/spire_speed.py --dataset "$DATA" --device "$DEV" --threads 8 \
    --batch-size "${BATCH:-128}" --batches "${BATCHES:-30}" --json "$LOGS/speed.json" 2>&1 | tee "$LOGS/speed.log" | tail -8
rm -rf "$WORK/run"
timeout "${TRAIN_TIMEOUT:-200}" $PY -m cryohet train spire "$DATA/particles.star" --out "$WORK/run" --device "$DEV" \
    --init-map "$DATA/gt/state_000.mrc" --epochs-a 1 --epochs-b 1 --batch-size "${BATCH:-128}" --num-workers 6 \
    --init-regions 0 --latent-search 0 > "$LOGS/train.log" 2>&1
echo "train spire exit status $?"
cp "$WORK/run/train_log.jsonl" "$LOGS/" 2>/dev/null
grep -E "stage B:|parts:|epoch [0-9]+/" "$LOGS/train.log" | grep -v "batch (" | cut -c1-240

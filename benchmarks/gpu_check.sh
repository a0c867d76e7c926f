#!/usr/bin/env bash
# The GPU checks, as one prepared script for a lent GPU machine (the device tool): the
# CUDA tests, DRGN-AI throughput at D=128 with and without bf16 autocast, a timed D=128
# run, HetACUMN's inference images/s at D=128, and the D=64 accuracy runs of issue 15 (homogeneous and igg-1d ab initio, igg-1d
# with fixed poses, the true-pose consensus), each evaluated after alignment.
#
# Usage (repository root, Python with torch+CUDA; missing packages as wheels in .whl/):
#   bash benchmarks/gpu_check.sh OUTDIR [DEADLINE_S]
# Stages run in priority order; the accuracy runs and the tests run side by side at the
# end, and whatever is still running at DEADLINE_S (default 540 s) is stopped and
# reported as such. Everything is logged to OUTDIR/log.txt; results to OUTDIR/*.json and
# OUTDIR/results.tgz (metrics, train logs, poses, latents; no checkpoints, no stacks).
# A dry run of the script itself on a CPU, tiny (the CUDA tests then skip):
#   NOWHEELS=1 WINDOWS=1,2 DEV=cpu N128=256 D128=32 NH=200 NI=200 D64=32 \
#     EXTRA="--pretrain-images 100 --search-images 200 --epochs-sgd 1 --hidden 32" \
#     bash benchmarks/gpu_check.sh /tmp/gc_dry 400
set -u
DEV=${DEV:-cuda} N128=${N128:-4096} D128=${D128:-128} NH=${NH:-2000} NI=${NI:-4000} D64=${D64:-64}
EXTRA=${EXTRA:-} WINDOWS=${WINDOWS:-4,16,64}
OUT=${1:?usage: gpu_check.sh OUTDIR [DEADLINE_S]}
DEADLINE=${2:-540}
START=$(date +%s)
W=${W:-/tmp/gpu_check}
mkdir -p "$OUT" "$W"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
if [ -z "${NOWHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
CH="python3 -m cryohet"
left() { echo $(( DEADLINE - ($(date +%s) - START) )); }
stamp() { echo "== [$(( $(date +%s) - START )) s] $*"; }

stamp "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
python3 -c "import torch, cryohet; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1
nproc; uptime

# D=64 data for the accuracy runs, simulated on the CPU while the GPU is timed alone
stamp "simulating D=64 sets in the background (CPU)"
( OMP_NUM_THREADS=4 $CH simulate igg-1d -o $W/homo64 -n $NH -D $D64 --snr 0.1 --n-states 1 --seed 3 --device cpu \
    > $W/sim_homo.log 2>&1; echo "homo64 rc=$?" ) &
SIMS=$!
( OMP_NUM_THREADS=4 $CH simulate igg-1d -o $W/igg64 -n $NI -D $D64 --snr 0.05 --n-states 20 --seed 4 --device cpu \
    > $W/sim_igg.log 2>&1; echo "igg64 rc=$?" ) &
SIMS="$SIMS $!"

stamp "throughput at D=128 (pieces of an epoch, autocast on/off)"
timeout $(( $(left) > 150 ? 150 : $(left) )) python3 benchmarks/drgnai_gpu.py --simulate $N128 --box $D128 \
  --data $W/igg128 --device $DEV --zdim 8 --windows $WINDOWS --repeats 3 --json "$OUT/bench128.json"
echo "bench rc=$?"

stamp "a timed D=128 run: 4096 images, 1 pretrain + 2 search + 2 joint epochs, zdim 8"
timeout $(( $(left) > 120 ? 120 : $(left) )) $CH train drgnai $W/igg128/particles.star -o $W/run128 --zdim 8 \
  --pretrain-images $N128 --search-images $((2 * N128)) --epochs-sgd 2 --device $DEV --num-workers 4
echo "run128 rc=$?"
stamp "HetACUMN amortised inference at D=128 (issue 17; untrained weights, the cost does not depend on them)"
timeout $(( $(left) > 60 ? 60 : $(left) )) python3 benchmarks/hetacumn_infer.py --particles $W/igg128/particles.star \
  --device $DEV -n $N128 --batch-size 1024
echo "infer128 rc=$?"
wait $SIMS  # (a bare wait would also wait for the tee above)
stamp "D=64 sets ready"; ls $W

stamp "side by side: CUDA tests, homogeneous abinit, igg-1d abinit, igg-1d fixed poses, consensus"
( timeout $(( $(left) - 5 )) python3 -m pytest -q -p no:cacheprovider tests/test_drgnai_cuda.py \
    tests/test_simulate.py tests/test_imaging_projection.py tests/test_spire_train.py -k cuda > $W/tests.log 2>&1
  echo "tests rc=$?" >> $W/tests.log ) &
run_eval() {  # name, data, then train args
  local name=$1 data=$2; shift 2
  timeout $(( $(left) - 5 )) $CH train "$@" -o $W/$name --device $DEV > $W/$name.log 2>&1
  echo "train rc=$?" >> $W/$name.log
  timeout $(( $(left) - 2 )) $CH evaluate $W/$name --gt $W/$data --align -o $W/${name}_eval --device $DEV \
    >> $W/$name.log 2>&1
  echo "evaluate rc=$?" >> $W/$name.log
}
run_eval homo_abinit homo64 drgnai $W/homo64/particles.star --zdim 0 --num-workers 2 $EXTRA &
run_eval igg_abinit igg64 drgnai $W/igg64/particles.star --zdim 8 --num-workers 2 $EXTRA &
run_eval igg_fixed igg64 drgnai $W/igg64/particles.star --zdim 8 --poses-mode fixed --num-workers 2 $EXTRA &
run_eval igg_consensus igg64 homogeneous $W/igg64/particles.star &
run_eval homo_consensus homo64 homogeneous $W/homo64/particles.star &
while [ -n "$(jobs -r)" ] && [ "$(left)" -gt 0 ]; do sleep 5; done
stamp "collecting (still running: $(jobs -r | wc -l))"
kill $(jobs -p) 2>/dev/null

for f in tests homo_abinit igg_abinit igg_fixed igg_consensus homo_consensus; do
  echo "---- $f"; grep -v "^INFO\|it/s\]\|━" $W/$f.log 2>/dev/null | tail -25
done
python3 - "$W" <<'EOF'
import json, sys, pathlib
w = pathlib.Path(sys.argv[1])
for ev in sorted(w.glob("*_eval/metrics.json")):
    m = json.loads(ev.read_text())
    per = m.get("per_conformation", {}).get("masked", {})
    print(ev.parent.name, "AUC mean", per.get("auc_mean"), "aligned", m.get("alignment"), "poses", {k: v for k, v in (m.get("poses") or {}).items()
          if "median" in k}, "ari", (m.get("clustering") or {}).get("ari"))
for log in sorted(w.glob("*/train_log.jsonl")):
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    by = {}
    for r in rows:
        by.setdefault(r.get("phase", "-"), []).append(r)
    print(log.parent.name, {p: (len(v), round(sum(r["seconds"] for r in v), 1),
          round(sum(r["n_images"] for r in v) / sum(r["seconds"] for r in v), 1),
          max(r.get("gpu_peak_mb") or 0 for r in v)) for p, v in by.items()})
EOF
cd $W && tar czf "$OUT/results.tgz" --exclude='checkpoints' --exclude='*.mrcs' --exclude='igg128' \
  --exclude='*/gt/*.mrc' --exclude='volumes' --exclude='atoms.npz' --exclude='half*.mrc' . 2>/dev/null
ls -la "$OUT"
stamp "done"

#!/usr/bin/env bash
# The GPU path in one device call (fits 10 minutes on one H200): install, fetch the weights,
# the main job for 20 steps on trainer=gpu, the Langevin step cost against the GPU's measured
# bf16 peak, and DDP on 2 GPUs where there are two. Everything it prints goes to $OUT/gpu_check.log.
#
#   bash bench/gpu_check.sh            # from the repository root, on the GPU machine
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu_check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 WANDB_MODE=offline
step() { echo; echo "== $* ($(date +%T), load $(cut -d' ' -f1 /proc/loadavg))"; }

step "install"
python3 -m pip install -q -e ".[dev]" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count())"

step "weights"
frame-fetch-weights || exit 1

step "main job, 20 steps on trainer=gpu"
start=$(date +%s)
python3 train.py model=nonstationary data=objects trainer=gpu trainer.max_steps=20 logger=csv \
  callbacks.sample_grid.every_n_steps=10 paths.output_dir="$OUT/main_gpu" || echo "FAILED: main job on GPU"
echo "main job 20 steps: $(( $(date +%s) - start )) s wall"
tail -n 3 "$OUT/main_gpu/csv/metrics.csv" 2>/dev/null | cut -c1-200

step "Langevin step cost on cuda"
timeout 240 python3 bench/langevin.py --device cuda --repeats 5 --steps 5 || echo "FAILED: bench/langevin.py --device cuda"

if [ "$(python3 -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  step "DDP on 2 GPUs, 10 steps"
  python3 train.py model=nonstationary data=objects trainer=ddp trainer.devices=2 trainer.max_steps=10 logger=csv \
    paths.output_dir="$OUT/ddp_gpu" || echo "FAILED: DDP on 2 GPUs"
else
  step "DDP skipped: one GPU on this machine"
fi
step "done"

#!/usr/bin/env bash
# The CUDA checks in one go, for a GPU machine: tests/test_gpu.py (CUDA vs CPU numbers, bf16, training, torchrun/NCCL),
# the training-step and attack benchmarks on the GPU, then the whole rehearsal of the paper plan on CUDA (stand-in
# models, the plan's fp16 / amp precisions on the GPU). Logs go to ${OUT:-gpu-logs}/.
#     bash benchmarks/gpu.sh
set -uo pipefail
out=${OUT:-gpu-logs}; mkdir -p "$out"
export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} ROBUSTCLIP_PROGRESS=0 PYTHONUNBUFFERED=1
export ROBUSTCLIP_HOME=${ROBUSTCLIP_HOME:-$PWD/.cache/robustclip}
py=${PYTHON:-python3}
nvidia-smi -L; $py -c "import torch, open_clip; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'open_clip', open_clip.__version__)"
$py -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py -rA 2>&1 | tee "$out/test_gpu.log"
for prec in bf16 fp32; do
  $py benchmarks/train_step.py --device cuda --precision $prec --repeats 5 2>&1 | tee "$out/train_step_$prec.log"
done
for m in "ViT-B-32 128" "ViT-L-14 128"; do   # the papers' batch (128), random weights: speed and memory only
  set -- $m
  for meth in fare tecoa; do
    $py benchmarks/train_step.py --worker $1 $meth $2 --device cuda --precision bf16 --repeats 3 2>&1 | tail -1 | tee -a "$out/train_step_large.log"
  done
done
$py benchmarks/attacks.py --device cuda 2>&1 | tee "$out/attacks.log"
# the paper plan rehearsed on CUDA: every step with stand-in models and fixtures, in fp16 / amp where the plan says
# (LLaVA and SD in fp16, LEAF's amp); `REHEARSE=0 bash benchmarks/gpu.sh` skips it
if [ "${REHEARSE:-1}" = 1 ]; then
  d=$(mktemp -d)
  $py -c "import torch; assert torch.cuda.is_available(), 'no CUDA: the rehearsal would run on CPU'"
  { time $py -m robustclip fixtures --scale paper "$d/D"; } 2>&1 | tail -3 | tee "$out/rehearsal.log"
  { time $py -m robustclip reproduce --scale paper --rehearse --data-root "$d/D" --runs "$d/runs"; } 2>&1 \
    | grep -v "it/s\]\|step/s\]" | tail -80 | tee -a "$out/rehearsal.log"
  $py -m robustclip doctor --scale paper --data-root "$d/D" 2>&1 | tail -5 | tee -a "$out/rehearsal.log"
  cp -r "$d/runs/figures" "$out/rehearsal-figures"
fi

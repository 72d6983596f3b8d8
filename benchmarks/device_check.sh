#!/usr/bin/env bash
# One GPU session's checks, in one script (a few minutes on one H200):
#   1. the chunked head and the fused Triton kernel against their references, compiled for CUDA;
#   2. the H200 benchmark at 7B shapes: torch-chunked and Triton GIFT heads vs Liger's fused linear CE, with the
#      default fp32 dW accumulator and with Liger's bf16 one at chunks 1024 and 2048;
#   3. the cluster paths that need CUDA (benchmarks/device_cluster_check.sh): GIFT SFT through `accelerate launch`
#      with the shipped FSDP2 config in bf16, GRPO with colocated vLLM, vLLM generation of a bf16 export.
# Liger is optional: put its wheel in wheels/ (pip download liger-kernel --no-deps -d wheels) when the GPU
# machine cannot reach a package index; without it the ratio line is not printed.
#   bash benchmarks/device_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-device-check}}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
python - <<'EOF' | tee "$out/env.txt"
import torch, triton
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0), "triton", triton.__version__)
EOF
ls wheels/liger_kernel-*.whl >/dev/null 2>&1 && pip install -q --no-deps wheels/liger_kernel-*.whl
python -m pytest -q -p no:cacheprovider tests/objectives/test_triton_head.py tests/objectives/test_chunked_head.py 2>&1 | tail -5 \
  | tee "$out/tests.txt"
# 2a. the defaults (fp32 dW accumulator: accurate, but V x H x 4 B = 2 GiB on its own)
bench="python benchmarks/loss_heads.py --device cuda --n 16384 --hidden 3584 --vocab 152064 --skip-plain \
  --objectives sft gift-exact --repeats 5 --warmup 2"
$bench 2>&1 | tee "$out/loss_heads_h200.txt"
# 2b. Liger's own memory setting (dW accumulated in bf16), at two chunk sizes: the <= 2 GiB target needs it
for c in 1024 2048; do
  $bench --accum-in-weight-dtype --chunk-size $c 2>&1 | tee "$out/loss_heads_h200_bf16acc_c$c.txt"
done

# 3. the cluster paths on CUDA
bash benchmarks/device_cluster_check.sh "$out"

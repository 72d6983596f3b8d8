#!/usr/bin/env bash
# The paper run's CUDA-only paths on one GPU, on the rehearsal's Qwen2 checkpoint (scripts/make_rehearsal.py):
#   3a. GIFT SFT through `accelerate launch` with the shipped FSDP2 config (workflow/accelerate/fsdp.yaml) in bf16:
#       accelerate's FSDP plugin (which refuses a CPU-only machine), the chunked head inside the root unit's forward,
#       the full-state-dict export in bf16 checked against the model class, gradients reduced in fp32 (as verl);
#   3b. GRPO from that export under the same launch with colocated vLLM (sleep mode, max_model_len);
#   3c. vLLM generation of the bf16 export;
#   3d. the cached reference (sft.reference: cached) computed with the base on the GPU (runs after 3a; no vLLM).
# 3b/3c need vLLM (requirements-gpu.txt). Each step writes its log to OUT_DIR; a failed step does not stop the next.
#   bash benchmarks/device_cluster_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-device-check}}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
reh="$out/rehearsal"
rm -rf "$reh"
# one head of 64: vLLM's FlashAttention/FlashInfer kernels take head sizes from 32 (64, 128, ...), the rehearsal's
# default 4 heads of 16 may have none on a GPU, a failure the paper's models (head size 128) never meet
python scripts/make_rehearsal.py --out "$reh" --problems 64 --heads 1 > "$out/rehearsal.txt" 2>&1
python benchmarks/rehearsal_split.py "$reh" 48

sft_job='{"seed": 0, "backbone": "qwen", "run": "gift-b10", "method": "gift", "beta": 10,
  "solution_key": "r1_solution_1", "objective_params": {"variant": "exact"},
  "settings": {"epochs": 1, "batch_size": 4, "grad_accum": 2, "lr": 1e-5, "max_length": 512,
               "loss_head": "chunked", "bf16": true, "export_dtype": "bfloat16"}}'
accelerate launch --config_file workflow/accelerate/fsdp.yaml --num_processes 1 scripts/sft.py --config "$sft_job" \
  --base "$reh/models/Qwen2.5-rehearsal" --train "$reh/train.jsonl" --val "$reh/val.jsonl" --out "$reh/sft" \
  --work "$reh/work-sft" --metrics "$reh/sft.json" > "$out/fsdp_sft.txt" 2>&1
echo "3a. FSDP2 bf16 GIFT SFT + export: rc=$?" | tee -a "$out/summary.txt"
grep -q "FSDP mixed precision: .*reduce_dtype=torch.float32" "$out/fsdp_sft.txt"
echo "3a. ... gradients reduced in fp32 (verl's policy on accelerate's plugin): rc=$?" | tee -a "$out/summary.txt"

cache_job='{"seed": 0, "backbone": "qwen", "split": "sft", "solution_key": "r1_solution_1", "max_length": 512,
  "top_k": 64, "batch_size": 4}'
python scripts/reference_cache.py --config "$cache_job" --base "$reh/models/Qwen2.5-rehearsal" \
  --split "$reh/train.jsonl" --work "$reh/work-reference" --out "$reh/reference.safetensors" \
  --summary "$reh/reference.json" \
  > "$out/reference_cache.txt" 2>&1 \
  && python -c "import json, sys; d = json.load(open(sys.argv[1]))['device']; print(d); sys.exit(d != 'cuda')" \
       "$reh/reference.json" >> "$out/reference_cache.txt" 2>&1
echo "3d. the cached reference's base forward on the GPU: rc=$?" | tee -a "$out/summary.txt"

if ! python -c "import vllm" 2>/dev/null; then
  echo "3b/3c. skipped: vllm is not installed (pip install -r requirements-gpu.txt)" | tee -a "$out/summary.txt"
  exit 0
fi
grpo_job='{"seed": 0, "backbone": "qwen", "run": "gift-b10", "sft_epoch": 1,
  "grpo": {"max_steps": 2, "lr": 1e-6, "num_generations": 4, "prompts_per_generation": 4, "prompts_per_update": 4,
           "max_completion_length": 64, "bf16": true, "use_vllm": true, "export_dtype": "bfloat16",
           "vllm": {"max_model_len": 1024, "gpu_memory_utilization": 0.3, "sleep_mode": true,
                    "tensor_parallel_size": 1}}}'
accelerate launch --config_file workflow/accelerate/fsdp.yaml --num_processes 1 scripts/grpo.py --config "$grpo_job" \
  --init "$reh/sft/epoch_1" --rl "$reh/train.jsonl" --out "$reh/rl" --work "$reh/work-rl" --metrics "$reh/rl.json" \
  > "$out/fsdp_grpo_vllm.txt" 2>&1
echo "3b. FSDP2 GRPO with colocated vLLM: rc=$?" | tee -a "$out/summary.txt"
grep -q "FSDP mixed precision: .*reduce_dtype=torch.float32" "$out/fsdp_grpo_vllm.txt"
echo "3b. ... gradients reduced in fp32: rc=$?" | tee -a "$out/summary.txt"
python benchmarks/vllm_generate.py "$reh/sft/epoch_1" > "$out/vllm_generate.txt" 2>&1
echo "3c. vLLM generation of the bf16 export: rc=$?" | tee -a "$out/summary.txt"

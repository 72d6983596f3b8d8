#!/usr/bin/env bash
# The library's tests under requirements-gpu.txt's transformers (vLLM caps it below the CPU set's: 5.17 against
# 5.24), on CPU: the API the GPU run calls, without a GPU. One run of it found `cache=`, a keyword 5.24 takes and
# 5.17's generate refuses (every GRPO job would have stopped at step 0).
#
#   bash scripts/dev/test_gpu_transformers.sh        (in the CPU venv; .ci/run's third stage)
#
# The GPU set's transformers and huggingface-hub go into a folder put first on PYTHONPATH (the venv is untouched;
# subprocesses, torchrun's included, inherit it). The tests that run Snakemake or DVC stay with the CPU set.
set -euo pipefail
cd "$(dirname "$0")/../.."
pin() { sed -n "s/^$1==//p" requirements-gpu.txt; }
target=$(mktemp -d)
trap 'rm -rf "$target"' EXIT
pip install -q --no-deps --target "$target" "transformers==$(pin transformers)" "huggingface-hub==$(pin huggingface-hub)"
# huggingface-hub 1.x's HTTP client (2.x, the CPU set's, has another); its other needs are the venv's own
pip install -q --no-deps --target "$target" httpx==0.29.0 httpcore==1.0.9
PYTHONPATH="$target" python - <<'PY'
import transformers
print(f"test_gpu_transformers: transformers {transformers.__version__} from {transformers.__file__}")
PY
PYTHONPATH="$target" python -m pytest -n 2 --dist loadfile -p no:cacheprovider tests/training tests/evaluation tests/objectives \
  tests/rl_methods tests/analysis tests/test_models.py

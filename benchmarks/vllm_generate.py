"""vLLM generation of a saved checkpoint through the evaluation's generator (device_cluster_check.sh, step 3c).

    python benchmarks/vllm_generate.py CHECKPOINT_DIR
"""

import sys

from giftlab.evaluation.generation import make_generator


def main(path: str) -> None:
    generator = make_generator(path, backend="vllm", max_model_len=1024, gpu_memory_utilization=0.3)
    samples = generator.generate(["What is 2 + 3?"], n=2, temperature=0.6, top_p=1.0, max_new_tokens=16, seed=0)
    print("tokens per sample:", [s.num_tokens for s in samples[0]], "finish:", samples[0][0].finish_reason)


if __name__ == "__main__":
    main(sys.argv[1])

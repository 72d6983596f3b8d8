"""Run under ``torchrun --nproc_per_node 2`` (CPU, gloo): the paper launch's own FSDP2 layout, made by accelerate
1.15's ``fsdp2_apply_ac`` + ``fsdp2_prepare_model`` (what ``accelerate launch --config_file
workflow/accelerate/fsdp.yaml`` applies; its Accelerator refuses FSDP without GPUs, so a stand-in carries the plugin):
activation checkpointing per decoder layer, a unit for the embedding, one per decoder layer, norm + lm_head grouped
into one unit that stays gathered after forward, and a root without parameters. Writes ``<out>/rank<k>.json``.

1. The layout is that one.
2. The chunked GIFT head through :func:`call_with_head`: loss and every gradient equal the unsharded model's.
3. ``generate`` through :func:`gathered_for_generation` gives the unsharded model's tokens.
4. :func:`full_state_dict` gathers every weight on rank 0, equal to the unsharded model's; PSFT's snapshot
   (:func:`load_gathered`) gets them whole on every process.
5. With bf16 mixed precision and :func:`fp32_reduction` set on the plugin before the prepare (as
   :class:`ReduceInFp32` does), every unit reduces in fp32 and casts no output.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
from accelerate.utils import FullyShardedDataParallelPlugin
from accelerate.utils.fsdp_utils import fsdp2_apply_ac, fsdp2_prepare_model
from torch.distributed.fsdp import FSDPModule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fsdp2_paths import batch, head_against_unsharded  # noqa: E402
from giftlab.models import build_tiny_model  # noqa: E402
from giftlab.objectives import get_objective  # noqa: E402
from giftlab.training.gradient_precision import fp32_reduction  # noqa: E402
from giftlab.training.sharded import full_state_dict, gathered_for_generation, load_gathered  # noqa: E402


def paper_launch(model, mixed_precision: str = "no"):
    """``model`` as accelerate shards it under workflow/accelerate/fsdp.yaml (transformer-based wrap of the decoder
    layers, reshard after forward, FSDP activation checkpointing)."""
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap",
                                            transformer_cls_names_to_wrap=["Qwen2DecoderLayer"],
                                            reshard_after_forward=True, cpu_ram_efficient_loading=False,
                                            activation_checkpointing=True)
    if mixed_precision != "no":
        plugin.set_mixed_precision(mixed_precision)
        plugin.mixed_precision_policy = fp32_reduction(plugin.mixed_precision_policy)
    accelerator = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin), device=torch.device("cpu"),
                                  is_main_process=dist.get_rank() == 0, mixed_precision=mixed_precision,
                                  parallelism_config=None, torch_device_mesh=None)
    return fsdp2_prepare_model(accelerator, fsdp2_apply_ac(accelerator, model))


def main(out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = build_tiny_model("qwen2", vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, tie_word_embeddings=False, seed=0)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    plain = copy.deepcopy(model)
    model = paper_launch(model)
    result: dict = {"rank": rank}

    # 1. the layout
    result["units"] = {name or "<root>": sum(len(g.fsdp_params) for g in m._get_fsdp_state()._fsdp_param_groups)
                       for name, m in model.named_modules() if isinstance(m, FSDPModule)}

    # 2. the chunked head: the whole batch unsharded vs this rank's half sharded
    ids, mask, labels = batch(seed=1)
    result.update(head_against_unsharded(model, plain, ref, get_objective("gift", beta=3.0), ids, mask, labels)[1])

    # 3. generate
    prompt = ids[:2, :6]
    with torch.no_grad(), gathered_for_generation(model) as gen_model:
        got = gen_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=5, do_sample=False,
                                 pad_token_id=0)
    want = plain.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=5, do_sample=False,
                          pad_token_id=0)
    result["generate_equal"] = torch.equal(got, want)

    # 4. export
    state = full_state_dict(model)
    if rank == 0:
        expected = plain.state_dict()
        result["export_equal"] = sorted(state) == sorted(expected) and all(
            torch.equal(state[k].float(), expected[k].float()) for k in expected)

    # 4b. PSFT's snapshot: the whole weights on every process
    snapshot = copy.deepcopy(ref)
    load_gathered(snapshot, model)
    result["snapshot_max_diff"] = max((a - b).abs().max().item() for a, b in
                                      zip(snapshot.state_dict().values(), plain.state_dict().values()))

    # 5. bf16 compute with verl's reduction
    mixed = paper_launch(copy.deepcopy(plain), "bf16")
    policies = {m._get_fsdp_state()._mp_policy for m in mixed.modules() if isinstance(m, FSDPModule)}
    result["mixed_policies"] = sorted(f"{p.param_dtype}/{p.reduce_dtype}/{p.output_dtype}" for p in policies)

    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])

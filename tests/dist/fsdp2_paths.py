"""Run under ``torchrun --nproc_per_node 2`` (CPU, gloo): the FSDP-specific paths of the SFT/GRPO jobs on a tiny
Qwen2 model sharded with torch's FSDP2 (``fully_shard`` per decoder layer, then the root: what accelerate's
``fsdp_version: 2`` does), checked against the same model unsharded. Writes ``<out>/rank<k>.json``.

1. The chunked GIFT loss head through :func:`call_with_head`: loss and every gradient equal the unsharded
   model's (each rank holds half the batch; the loss is scaled as the SFT trainer scales it).
2. The pre-fix path (``get_decoder()`` + ``get_output_embeddings().weight`` outside the forward) fails or differs.
3. The export: :func:`full_state_dict` gathers every weight on rank 0, equal to the unsharded model's, and the
   written checkpoint passes :func:`verify_export`; the sharded ``state_dict()`` alone does not. PSFT's snapshot
   (:func:`load_gathered`) gets the whole weights on every process; of a policy sharded with bf16 mixed precision
   (accelerate's ``mixed_precision: bf16``: fp32 master shards, bf16 compute) it computes what the policy computes
   (:func:`match_forward_dtype`), where an fp32 copy does not.
4. ``generate`` on the sharded model (greedy) gives the unsharded model's tokens; its units stay gathered for the
   whole ``generate`` (not gathered at every decode step) and are resharded after, their settings restored.
5. Figure 3's RL-dynamics evaluation (:class:`DynamicsCallback`) on the sharded model: each rank samples and grades
   only its share of the problems (5 problems: 3 and 2, the second padded to 3), and the row equals the evaluation
   of the unsharded model over all of them; so does a greedy one-sample evaluation, where only the padded rank's
   batch repeats a prompt.
6. SFT's validation cross-entropy on the sharded model, through the chunked head: each rank reads its share of the
   examples (5 examples in batches of 2: rank 0 two batches, rank 1 one and its first again, uncounted) and the
   all-reduced value is the unsharded model's over all of them.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from giftlab.data import render_prompt
from giftlab.evaluation.generation import HFGenerator
from giftlab.evaluation.runner import evaluate
from giftlab.models import build_tiny_model
from giftlab.objectives import chunked_loss, get_objective
from giftlab.tinyworld.tokenizer import build_tokenizer
from giftlab.training import sft
from giftlab.training.batches import PadCollator, response_positions
from giftlab.training.dynamics import DynamicsCallback, dynamics_settings
from giftlab.training.sft import SFTDataset
from giftlab.training.checkpoints import verify_export
from giftlab.training.sharded import (_reshard_setting, call_with_head, forward_param_dtype, full_state_dict,
                                      gathered_for_generation, load_gathered, match_forward_dtype)


def reshard_settings(model) -> list:
    """Each FSDP2 unit's reshard-after-forward setting (per param group: reshards or not), the root first."""
    return [(tuple(mesh is not None for mesh in meshes), auto)
            for meshes, auto in (_reshard_setting(m) for m in model.modules() if isinstance(m, FSDPModule))]


def batch(seed: int, rows: int = 4, width: int = 12, vocab: int = 64):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (rows, width), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # one padded row
    labels = ids.clone()
    labels[:, :4] = -100  # prompt tokens
    labels[mask == 0] = -100
    return ids, mask, labels


def loss_sum(model, ref, objective, ids, mask, labels):
    keep = labels[:, 1:] != -100
    targets = labels[:, 1:][keep]
    inputs = {"input_ids": ids, "attention_mask": mask}
    captured = {}

    def keep_ref(hidden, weight):
        captured["hidden"], captured["weight"] = hidden[:, :-1][keep], weight
        return hidden.new_zeros(())

    with torch.no_grad():
        call_with_head(ref, keep_ref, **inputs)

    def head(hidden, weight):
        return chunked_loss(objective, hidden[:, :-1][keep], weight, targets, captured["hidden"],
                            captured["weight"], None, 5)[0]

    return call_with_head(model, head, **inputs), int(keep.sum())


def head_against_unsharded(model, plain, ref, objective, ids, mask, labels) -> tuple[torch.Tensor, dict]:
    """The chunked head on the whole batch through ``plain`` vs this rank's half through the sharded ``model``
    (token mean over all ranks, x world as DDP/FSDP average gradients over processes), both backpropagated: this
    rank's loss and ``{"loss_diff", "grad_diff", "without_grad"}`` (activation-checkpoint wrappers' names mapped)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    full_loss, n_total = loss_sum(plain, ref, objective, ids, mask, labels)
    (full_loss / n_total).backward()
    half = slice(rank * 2, rank * 2 + 2)
    part_loss, _ = loss_sum(model, ref, objective, ids[half], mask[half], labels[half])
    (part_loss / n_total * world).backward()
    summed = part_loss.detach().clone()
    dist.all_reduce(summed)
    unsharded = dict(plain.named_parameters())
    grad_diff, without_grad = 0.0, []
    for name, p in model.named_parameters():
        q = unsharded[name.replace("_checkpoint_wrapped_module.", "")]
        if p.grad is None:
            without_grad.append(name)
            continue
        g = p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad
        grad_diff = max(grad_diff, (g - q.grad).abs().max().item())
    return part_loss, {"loss_diff": abs(summed.item() - full_loss.item()), "grad_diff": grad_diff,
                       "without_grad": without_grad}


def main(out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = build_tiny_model("qwen2", vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, tie_word_embeddings=False, seed=0)
    ref = copy.deepcopy(model).eval().requires_grad_(False)  # GIFT's frozen base: not sharded
    plain = copy.deepcopy(model)
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    objective = get_objective("gift", beta=3.0)
    ids, mask, labels = batch(seed=1)
    result: dict = {"rank": rank}

    # 1. the whole batch unsharded vs. this rank's half sharded
    half = slice(rank * 2, rank * 2 + 2)
    part_loss, compared = head_against_unsharded(model, plain, ref, objective, ids, mask, labels)
    result.update(compared)
    result["lm_head_is_sharded"] = isinstance(model.lm_head.weight, DTensor)

    # 2. the pre-fix path: hidden states from the decoder, the lm_head weight read outside any forward
    try:
        keep = labels[half][:, 1:] != -100
        hidden = model.get_decoder()(input_ids=ids[half], attention_mask=mask[half]).last_hidden_state
        old = chunked_loss(objective, hidden[:, :-1][keep], model.get_output_embeddings().weight,
                           labels[half][:, 1:][keep], None, None, None, 5)[0]
        result["old_path"] = f"ran: loss differs by {abs(old.item() - part_loss.item()):.3g}"
    except Exception as exc:  # noqa: BLE001 - the failure is what is recorded
        result["old_path"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"

    # 3. export
    state = full_state_dict(model)
    out = Path(out_dir)
    if rank == 0:
        expected = plain.state_dict()
        result["export_keys_equal"] = sorted(state) == sorted(expected)
        result["export_max_diff"] = max((state[k].float() - expected[k].float()).abs().max().item() for k in expected)
        plain.save_pretrained(out / "export", state_dict=state, safe_serialization=True)
        verify_export(out / "export")
        result["export_verified"] = True
        (out / "sharded").mkdir()
        (out / "sharded" / "config.json").write_text((out / "export" / "config.json").read_text())
        try:
            verify_export(out / "sharded")
            result["empty_export_error"] = None
        except RuntimeError as exc:
            result["empty_export_error"] = str(exc)
    else:
        result["nonzero_rank_state_is_empty"] = state == {}
    dist.barrier()

    # 3b. PSFT's lagged snapshot: the whole policy copied into a plain model on every process
    snapshot = copy.deepcopy(ref)
    load_gathered(snapshot, model)
    result["snapshot_max_diff"] = max((a - b).abs().max().item() for a, b in
                                      zip(snapshot.state_dict().values(), plain.state_dict().values()))

    # 3b'. the same with each decoder layer under activation checkpointing (accelerate's fsdp_activation_checkpointing;
    # its modules are named `..._checkpoint_wrapped_module...`, its state_dict is not), gathered one weight at a time
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

    wrapped = copy.deepcopy(plain)
    apply_activation_checkpointing(wrapped, check_fn=lambda m: type(m).__name__.endswith("DecoderLayer"))
    for layer in wrapped.model.layers:
        fully_shard(layer)
    fully_shard(wrapped)
    snapshot = copy.deepcopy(ref)
    load_gathered(snapshot, wrapped)
    result["checkpointed_snapshot_max_diff"] = max((a - b).abs().max().item() for a, b in
                                                   zip(snapshot.state_dict().values(), plain.state_dict().values()))

    # 3c. the snapshot of a policy sharded with bf16 mixed precision computes in bf16 as the policy does
    mixed = copy.deepcopy(plain)
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16)
    for layer in mixed.model.layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(mixed, mp_policy=policy)
    result["mixed_forward_dtype"] = str(forward_param_dtype(mixed))
    fp32_snapshot, snapshot = copy.deepcopy(ref), copy.deepcopy(ref)
    match_forward_dtype(snapshot, mixed)
    load_gathered(snapshot, mixed)
    load_gathered(fp32_snapshot, mixed)
    with torch.no_grad():
        want = mixed(input_ids=ids, attention_mask=mask).logits.float()
        result["mixed_snapshot_logit_diff"] = (snapshot(input_ids=ids, attention_mask=mask).logits.float()
                                               - want).abs().max().item()
        result["mixed_fp32_snapshot_logit_diff"] = (fp32_snapshot(input_ids=ids, attention_mask=mask).logits.float()
                                                    - want).abs().max().item()

    # 4. generate (greedy) on the sharded model
    prompt = ids[:2, :6]
    layer_weight = lambda: model.model.layers[0].mlp.up_proj.weight  # noqa: E731  (FSDP2 swaps it in and out)
    before = reshard_settings(model)
    with torch.no_grad(), gathered_for_generation(model) as gen_model:
        got = gen_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=5, do_sample=False,
                                 pad_token_id=0)
        want = plain.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=5, do_sample=False,
                              pad_token_id=0)
        result["kept_unsharded_during_generate"] = not isinstance(layer_weight(), DTensor)
    result["generate_equal"] = torch.equal(got, want)
    result["resharded_after_generate"] = isinstance(layer_weight(), DTensor)
    result["reshard_settings_restored"] = before == reshard_settings(model) and any(all(g) for g, _ in before)
    # 4b. the first forward inside generate (Figure 3's step-0 evaluation, before any training forward): the settings
    # after are those of a twin whose first forward was training's, under torch's rule for the root
    # (reshard_after_forward unset) and accelerate's explicit True
    for explicit in (None, True):
        fresh, twin = copy.deepcopy(plain), copy.deepcopy(plain)
        for m in (fresh, twin):
            for layer in m.model.layers:
                fully_shard(layer, reshard_after_forward=explicit)
            fully_shard(m, reshard_after_forward=explicit)
        with torch.no_grad(), gathered_for_generation(fresh) as gen_model:
            gen_model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=2, do_sample=False,
                               pad_token_id=0)
        with torch.no_grad():
            twin(input_ids=prompt, attention_mask=torch.ones_like(prompt))
        result[f"first_forward_settings_{explicit}"] = reshard_settings(fresh) == reshard_settings(twin)
    # 4c. a generate that raises inside a layer's forward leaves no layer gathered
    failing = copy.deepcopy(plain)
    for layer in failing.model.layers:
        fully_shard(layer, reshard_after_forward=True)
    fully_shard(failing)

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    failing.model.layers[1].mlp.forward = boom
    try:
        with torch.no_grad(), gathered_for_generation(failing) as gen_model:
            gen_model(input_ids=prompt)
    except RuntimeError:
        pass
    result["resharded_after_a_failed_generate"] = all(isinstance(layer.mlp.up_proj.weight, DTensor)
                                                      for layer in failing.model.layers)

    # 5. the RL dynamics, sharded: each rank its share of the problems, the row over all of them
    tok = build_tokenizer()
    policy = build_tiny_model("qwen2", vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=64, tokenizer=tok, seed=1)
    whole = copy.deepcopy(policy).eval()
    for layer in policy.model.layers:
        fully_shard(layer)
    fully_shard(policy)
    records = [{"id": f"p{i}", "prompt": f"Start with {i}. Add 2.", "gold": str(i + 2), "kind": "math"}
               for i in range(5)]
    graded: list[int] = []

    def grade_fn(responses, golds):  # deterministic in the text: "correct" when it has an even number of chars
        graded.append(len(responses))
        return [SimpleNamespace(correct=len(r) % 2 == 0, extracted=str(len(r)), timed_out=False) for r in responses]

    settings = dynamics_settings({"eval_every": 1, "eval_problems": 5, "eval_samples": 3, "eval_temperature": 1.0,
                                  "eval_max_new_tokens": 8, "eval_batch_size": 4})
    callback = DynamicsCallback(out / f"dynamics{rank}.jsonl", records, tok, grade_fn, settings, seed=7)
    row = callback.evaluate_model(policy, step=1, max_steps=2, write=False)
    result["dynamics_graded"] = list(graded)
    result["dynamics_row"] = {k: row[k] for k in ("pass@1", "pass@1_ci95", "n_problems", "mean_response_tokens",
                                                  "truncated", "grading")}
    # one sample per problem (greedy): rank 1's share p1, p3 + p1 again repeats a prompt in its batch, rank 0's
    # p0, p2, p4 does not; the shared-prefix forward must still run on both (it ran on rank 1 only: a hang)
    greedy = dynamics_settings({"eval_every": 1, "eval_problems": 5, "eval_samples": 1, "eval_temperature": 0.0,
                                "eval_max_new_tokens": 8, "eval_batch_size": 4})
    greedy_row = DynamicsCallback(out / f"greedy{rank}.jsonl", records, tok, grade_fn, greedy,
                                  seed=7).evaluate_model(policy, step=1, max_steps=2, write=False)
    result["greedy_row"] = {k: greedy_row[k] for k in ("pass@1", "n_problems", "mean_response_tokens")}
    graded.clear()
    policy.train()  # the next training step, as GRPO's after an RL-dynamics evaluation
    try:
        ids = torch.tensor([tok("Start with 3. Add 2.").input_ids])
        policy(input_ids=ids, labels=ids).loss.backward()
        result["trains_after_dynamics"] = "ok"
    except RuntimeError as exc:
        result["trains_after_dynamics"] = str(exc).splitlines()[0][:200]
    graded.clear()
    _, want = evaluate(HFGenerator.from_model(whole, tok, batch_size=4), records, n_samples=3, temperature=1.0,
                       max_new_tokens=8, seed=7, grade_fn=grade_fn, ks=(1,),
                       prompt_fn=lambda r: render_prompt(tok, r["prompt"]), progress=False)
    result["dynamics_unsharded"] = {k: want[k] for k in ("pass@1", "pass@1_ci95", "n_problems",
                                                        "mean_response_tokens", "truncated")}
    _, want = evaluate(HFGenerator.from_model(whole, tok, batch_size=4), records, n_samples=1, temperature=0.0,
                       max_new_tokens=8, seed=7, grade_fn=grade_fn, ks=(1,),
                       prompt_fn=lambda r: render_prompt(tok, r["prompt"]), progress=False)
    result["greedy_unsharded"] = {k: want[k] for k in ("pass@1", "n_problems", "mean_response_tokens")}

    # 6. validation cross-entropy, sharded and chunked: each rank its share of the examples
    examples = SFTDataset([{"question": f"Start with {i}.", "r1_solution_1": f"x={i}+2 " * (i + 1)}
                           for i in range(5)], tok, "r1_solution_1", 48)
    pad = PadCollator(tok.pad_token_id)
    seen: list[list[int]] = []

    def collate(items):
        seen.append([item["row"] for item in items])
        return pad(items)

    sft.head_chunk_size = lambda mode, n, vocab, has_bias=False: 7  # the chunked path at these tiny shapes
    result["val_ce"] = sft.validation_cross_entropy(policy, examples, collate, batch_size=2)
    result["val_rows"] = seen
    every = pad([examples[i] for i in range(len(examples))])
    keep, targets = response_positions(every["labels"])
    logits = whole(input_ids=every["input_ids"], attention_mask=every["attention_mask"]).logits[:, :-1][keep]
    result["val_ce_unsharded"] = torch.nn.functional.cross_entropy(logits.float(), targets).item()

    (out / f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])

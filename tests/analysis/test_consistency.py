"""Consistency metrics (paper §4.4): constructed cases with known answers, on tiny random models."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from giftlab.analysis import consistency as C
from giftlab.models import build_tiny_model
from giftlab.tinyworld import build_tokenizer

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]
KS = (1, 5, 10, 20, 50)
ROWS = [
    {"question": "Start with 3. Add 4. What is the result?", "sol": "3 + 4 = 7. \\boxed{7}"},
    {"question": "Start with 9. Multiply by 2.", "sol": "9 * 2 = 18\nAnswer: \\boxed{18}"},
    {"question": "Start with 5.", "sol": "\\boxed{5}"},
    {"question": "Start with 12. Subtract 3. Add 1. What is it?", "sol": "12 - 3 = 9, 9 + 1 = 10. \\boxed{10}"},
]


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def tiny(tok, arch="qwen2", seed=0, layers=2):
    model = build_tiny_model(arch, vocab_size=len(tok), hidden_size=32, num_hidden_layers=layers,
                             num_attention_heads=4, intermediate_size=64, tokenizer=tok, seed=seed)
    return model.eval()


@pytest.fixture(scope="module")
def batches(tok):
    examples = C.tokenize_examples(tok, ROWS, "sol", max_length=96)
    return C.make_batches(examples, tok.pad_token_id, batch_size=3)


def _assert_identity(out):
    assert out["cos"] == pytest.approx(1.0, abs=1e-5) and out["param_cos"] == pytest.approx(1.0, abs=1e-12)
    assert out["l2"] == 0.0 and out["param_l2"] == 0.0 and out["hidden_l2"] == 0.0
    assert out["kl"] == pytest.approx(0.0, abs=1e-6)
    assert out["kl_reverse"] == pytest.approx(0.0, abs=1e-6)
    assert out["hidden_cos"] == pytest.approx(1.0, abs=1e-5)
    assert set(out["topk_overlap"]) == {str(k) for k in KS}
    assert all(v == pytest.approx(1.0) for v in out["topk_overlap"].values())


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_identical_models(tok, batches, arch):
    a = tiny(tok, arch)
    out = C.consistency_metrics(a, copy.deepcopy(a), batches, ks=KS, ci_resamples=50)
    _assert_identity(out)
    assert out["n_examples"] == len(ROWS)
    assert out["n_tokens"] == sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
    assert out["layer_index"] == 1
    assert out["n_layer_params"] == sum(p.numel() for p in a.model.layers[-1].parameters())
    json.dumps(out)  # plain types only


def test_scaled_last_layer(tok):
    a = tiny(tok)
    b = copy.deepcopy(a)
    with torch.no_grad():
        for p in b.model.layers[-1].parameters():
            p.mul_(2.0)
    out = C.parameter_consistency(a, b)
    theta = torch.cat([p.detach().reshape(-1).double() for p in a.model.layers[-1].parameters()])
    assert out["cos"] == pytest.approx(1.0, abs=1e-12)
    assert out["l2"] == pytest.approx(float(theta.norm()), rel=1e-12)
    assert out["norm_a"] == pytest.approx(float(theta.norm()), rel=1e-12)
    assert out["norm_b"] == pytest.approx(2 * float(theta.norm()), rel=1e-12)
    assert out["relative_l2"] == pytest.approx(1.0, rel=1e-12)


def test_known_perturbation_and_only_last_layer(tok, batches):
    a = tiny(tok)
    b = copy.deepcopy(a)
    with torch.no_grad():  # change an earlier layer only: the last-layer metrics do not see it
        b.model.layers[0].mlp.up_proj.weight.add_(0.5)
    out = C.parameter_consistency(a, b)
    assert (out["cos"], out["l2"]) == (pytest.approx(1.0, abs=1e-12), 0.0)
    assert C.response_consistency(a, b, batches, ks=(1,), ci_resamples=0)["kl"] > 1e-4

    c = copy.deepcopy(a)  # add a known delta to one last-layer tensor: L2 = ‖delta‖
    delta = torch.randn(c.model.layers[-1].self_attn.q_proj.weight.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        c.model.layers[-1].self_attn.q_proj.weight.add_(delta)
    out = C.parameter_consistency(a, c)
    assert out["l2"] == pytest.approx(float(delta.double().norm()), rel=1e-6)  # fp32 storage
    theta_a = torch.cat([p.detach().reshape(-1).double() for p in a.model.layers[-1].parameters()])
    theta_c = torch.cat([p.detach().reshape(-1).double() for p in c.model.layers[-1].parameters()])
    assert out["cos"] == pytest.approx(float(theta_a @ theta_c / (theta_a.norm() * theta_c.norm())), rel=1e-12)


def test_parameter_consistency_rejects_other_architecture(tok):
    with pytest.raises(ValueError):
        C.parameter_consistency(tiny(tok, layers=2), tiny(tok, layers=3))


def test_kl_constructed():
    p, q = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.9, 0.1]])
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # = 0.5 ln(25/9)
    assert float(C.kl_per_position(p.log(), q.log())[0]) == pytest.approx(expected, rel=1e-6)
    reverse = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert float(C.kl_per_position(q.log(), p.log())[0]) == pytest.approx(reverse, rel=1e-6)
    # a zero-probability entry of A contributes nothing: KL([1,0] || [.25,.75]) = ln 4
    a = torch.tensor([[0.0, -math.inf]])
    b = torch.tensor([[0.25, 0.75]]).log()
    assert float(C.kl_per_position(a, b)[0]) == pytest.approx(math.log(4), rel=1e-6)


def test_kl_invariant_to_constant_shift():
    logits = torch.randn(7, 50, generator=torch.Generator().manual_seed(0))
    shifted = logits + torch.randn(7, 1, generator=torch.Generator().manual_seed(1)) * 10
    assert torch.allclose(C.kl_per_position(logits, shifted), torch.zeros(7), atol=1e-5)
    assert torch.equal(C.kl_per_position(logits, logits), torch.zeros(7))


def test_topk_overlap_constructed():
    a = torch.tensor([[5.0, 4, 3, 2, 1, 0], [5.0, 4, 3, 2, 1, 0]])
    b = torch.tensor([[0.0, 1, 2, 3, 4, 5], [4.0, 5, 0, 1, 2, 3]])
    out = C.topk_overlap_per_position(a, b, ks=(1, 2, 3, 4, 6))
    # row 0: reversed order -> top4 {0,1,2,3} ∩ {5,4,3,2} = {2,3}; row 1: top2 swapped, rest reordered
    assert out[1].tolist() == [0.0, 0.0]
    assert out[2].tolist() == [0.0, 1.0]
    assert out[3].tolist() == pytest.approx([0.0, 2 / 3])
    assert out[4].tolist() == [0.5, 0.5]  # row 1: {0,1,2,3} ∩ {1,0,5,4}
    assert out[6].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError):
        C.topk_overlap_per_position(a, b, ks=(7,))


def test_matches_brute_force_and_is_batching_invariant(tok, batches):
    a, b = tiny(tok, seed=0), tiny(tok, seed=1)
    out = C.response_consistency(a, b, batches, ks=(1, 5), chunk_size=4, ci_resamples=200)
    kl, kl_rev, top5, hcos, hl2, n = 0.0, 0.0, 0.0, 0.0, 0.0, 0
    with torch.no_grad():
        for batch in batches:
            mask, _ = C.response_positions(batch["labels"])
            oa = a(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
            ob = b(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
            la, lb = oa.logits[:, :-1][mask], ob.logits[:, :-1][mask]
            pa, pb = la.softmax(-1), lb.softmax(-1)
            kl += float((pa * (pa.log() - pb.log())).sum())
            kl_rev += float((pb * (pb.log() - pa.log())).sum())
            ta, tb = la.topk(5).indices, lb.topk(5).indices
            top5 += sum(len(set(x.tolist()) & set(y.tolist())) / 5 for x, y in zip(ta, tb))
            ha, hb = oa.hidden_states[-1][:, :-1][mask], ob.hidden_states[-1][:, :-1][mask]
            hcos += float(torch.nn.functional.cosine_similarity(ha, hb, dim=-1).sum())
            hl2 += sum(math.sqrt(sum((y - x) ** 2 for x, y in zip(u.tolist(), v.tolist()))) for u, v in zip(ha, hb))
            n += int(mask.sum())
    assert out["n_tokens"] == n
    assert out["kl"] == pytest.approx(kl / n, rel=1e-4)
    per = out["per_example"]  # every example's sums and token count (claim 3's paired test reads them)
    assert len(per["n_tokens"]) == len(ROWS) and sum(per["n_tokens"]) == n
    for key, mean in (("kl", out["kl"]), ("top5", out["topk_overlap"]["5"]), ("hidden_l2", out["hidden_l2"])):
        assert sum(per[key]) / n == pytest.approx(mean, rel=1e-12)
    assert out["kl_reverse"] == pytest.approx(kl_rev / n, rel=1e-4)
    assert out["kl"] != pytest.approx(out["kl_reverse"], rel=1e-3)  # the direction matters
    assert out["topk_overlap"]["5"] == pytest.approx(top5 / n, abs=1e-6)
    assert out["hidden_cos"] == pytest.approx(hcos / n, rel=1e-4)
    assert out["hidden_l2"] == pytest.approx(hl2 / n, rel=1e-4)
    assert out["hidden_l2_ci95"][0] <= out["hidden_l2"] <= out["hidden_l2_ci95"][1]
    lo, hi = out["kl_ci95"]
    assert lo <= out["kl"] <= hi
    assert "A||B" in out["kl_direction"]

    one_by_one = C.make_batches(C.tokenize_examples(tok, ROWS, "sol", max_length=96), tok.pad_token_id, 1)
    again = C.response_consistency(a, b, one_by_one, ks=(1, 5), chunk_size=1024, ci_resamples=0)
    # which examples were scored: their tokens, not how they were batched or padded
    from giftlab.data import example_digest, tokens_sha256
    examples = C.tokenize_examples(tok, ROWS, "sol", max_length=96)
    assert per["examples_sha256"] == again["per_example"]["examples_sha256"] == tokens_sha256(
        example_digest(e) for e in examples)
    assert again["kl"] == pytest.approx(out["kl"], rel=1e-4)
    assert again["topk_overlap"] == pytest.approx(out["topk_overlap"], abs=1e-6)
    # the full-forward fallback (for soft-capped heads) gives the same numbers
    orig = C._needs_full_forward
    try:
        C._needs_full_forward = lambda model: True
        full = C.response_consistency(a, b, batches, ks=(1, 5), ci_resamples=0)
    finally:
        C._needs_full_forward = orig
    assert full["kl"] == pytest.approx(out["kl"], rel=1e-4)
    assert full["hidden_cos"] == pytest.approx(out["hidden_cos"], rel=1e-4)
    hidden_only = C.hidden_state_consistency(a, b, batches, ci_resamples=0)
    assert hidden_only["hidden_cos"] == pytest.approx(out["hidden_cos"], rel=1e-6)
    assert hidden_only["hidden_l2"] == pytest.approx(out["hidden_l2"], rel=1e-6)


def test_table4_geometry_is_the_last_layers_output_unless_parameters_are_asked_for(tok, batches):
    """``cos`` / ``l2`` (Table 4, claim 3) are the hidden-state metrics, with intervals, by default; with
    ``geometry="parameters"`` the last layer's weights, without. Both sets are always written."""
    a, b = tiny(tok, seed=0), tiny(tok, seed=1)
    hidden = C.consistency_metrics(a, b, batches, ks=(1,), ci_resamples=50)
    params = C.consistency_metrics(a, b, batches, ks=(1,), ci_resamples=50, geometry="parameters")
    assert hidden["geometry"] == "hidden" and params["geometry"] == "parameters"
    assert (hidden["cos"], hidden["l2"]) == (hidden["hidden_cos"], hidden["hidden_l2"])
    assert hidden["cos_ci95"] == hidden["hidden_cos_ci95"] and hidden["l2_ci95"] == hidden["hidden_l2_ci95"]
    assert (params["cos"], params["l2"]) == (params["param_cos"], params["param_l2"])
    assert "cos_ci95" not in params and "l2_ci95" not in params
    assert params["param_l2"] == hidden["param_l2"] and params["hidden_l2"] == hidden["hidden_l2"]
    assert hidden["param_l2"] != pytest.approx(hidden["hidden_l2"])
    with pytest.raises(ValueError, match="geometry"):
        C.consistency_metrics(a, b, batches, geometry="weights")


def test_tokenize_examples(tok):
    ex = C.tokenize_examples(tok, ROWS, "sol", max_length=96, max_examples=2)
    assert len(ex) == 2
    assert all(len(e["input_ids"]) == len(e["labels"]) for e in ex)
    # a max_length that leaves no response token drops the example; none left is an error
    with pytest.raises(ValueError, match="no validation example"):
        C.tokenize_examples(tok, ROWS[:1], "sol", max_length=5)
    with pytest.raises(ValueError, match="sol"):
        C.tokenize_examples(tok, [{"question": "q"}], "sol", max_length=64)


def test_script_end_to_end(tok, tmp_path):
    from giftlab.tinyworld import save_tokenizer

    dirs = {}
    for name, seed in (("a", 0), ("b", 1)):
        d = tmp_path / name
        tiny(tok, seed=seed).save_pretrained(d)
        save_tokenizer(tok, d)
        dirs[name] = d
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps({"question": r["question"], "final_answer": "0", "r1_solution_1": r["sol"]})
                           + "\n" for r in ROWS))
    out = tmp_path / "results" / "consistency" / "qwen" / "gift-b3" / "base_sft.json"
    spec = importlib.util.spec_from_file_location("consistency_script", REPO / "scripts" / "consistency.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    job = {"seed": 1, "backbone": "qwen", "run": "gift-b3", "stage_pair": "base_sft", "topk": [1, 5],
           "max_examples": 3, "solution_key": "r1_solution_1", "max_length": 96, "batch_size": 2,
           "ci_resamples": 20, "device": "cpu"}
    script.main(["--config", json.dumps(job), "--model-a", str(dirs["a"]), "--model-b", str(dirs["b"]),
                 "--val", str(val), "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["n_examples"] == 3 and set(res["topk_overlap"]) == {"1", "5"}
    assert 0 < res["cos"] < 1 and res["l2"] > 0 and res["kl"] > 0
    assert res["provenance"]["config"]["stage_pair"] == "base_sft"
    assert res["provenance"]["config"]["run"] == "gift-b3"
    assert not [p for p in out.parent.iterdir() if p.name != out.name]  # no temp files left
    assert res["geometry"] == "hidden" and res["l2"] == res["hidden_l2"]
    with pytest.raises(Exception, match="geometry"):
        script.main(["--config", json.dumps({**job, "geometry": "weights"}), "--model-a", str(dirs["a"]),
                     "--model-b", str(dirs["b"]), "--val", str(val), "--out", str(out)])
    with pytest.raises(Exception, match="stage_pair"):
        script.main(["--config", json.dumps({**job, "stage_pair": "rl_rl"}), "--model-a", str(dirs["a"]),
                     "--model-b", str(dirs["b"]), "--val", str(val), "--out", str(out)])


def test_bf16_checkpoints_get_float32_logits(tok, batches):
    """Checkpoints loaded in bf16 (the paper profile's eval.consistency_dtype): the head runs in float32 on their
    bf16 hidden states. bf16 logits would round in steps of 1/16 to 1/8 at the magnitudes of a trained model's,
    independently in A and B, and move the KL by far more than the tolerance here."""
    a = tiny(tok, seed=0)
    b = copy.deepcopy(a)
    with torch.no_grad():  # logits of a trained model's magnitude (|z| up to ~20), not a random init's < 1
        a.model.norm.weight.mul_(30.0)  # the final norm: the head is tied to the input embeddings
        b.model.norm.weight.mul_(33.0)  # B close to A, as an update leaves it: a small KL
    a, b = a.to(torch.bfloat16), b.to(torch.bfloat16)
    out = C.response_consistency(a, b, batches, ks=(5,), ci_resamples=0)
    assert out["logits_dtype"] == "float32"

    kl = {"exact": 0.0, "bf16 head": 0.0}
    n = 0
    with torch.no_grad():
        for batch in batches:
            mask, _ = C.response_positions(batch["labels"])
            ha, hb = (m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        output_hidden_states=True).hidden_states[-1][:, :-1][mask] for m in (a, b))
            wa, wb = a.get_output_embeddings().weight, b.get_output_embeddings().weight
            logits = {"exact": (ha.double() @ wa.double().T, hb.double() @ wb.double().T),  # bf16 -> f64 is exact
                      "bf16 head": ((ha @ wa.T).double(), (hb @ wb.T).double())}
            for name, (la, lb) in logits.items():
                kl[name] += float((la.softmax(-1) * (la.log_softmax(-1) - lb.log_softmax(-1))).sum())
            n += int(mask.sum())
    assert out["kl"] == pytest.approx(kl["exact"] / n, rel=1e-5)
    assert kl["bf16 head"] != pytest.approx(kl["exact"], rel=5e-3)  # 1% apart here: the test tells the two apart

"""Acceptance tests of giftlab.objectives against independent, straightforward references.

References below are written per token with explicit formulas (value and hand-derived gradient w.r.t. the
logits); they do not call the library. Float64 throughout, random logits, ragged masks.
"""

from __future__ import annotations

import math
import zlib

import pytest
import torch

from giftlab.objectives import (
    OBJECTIVES,
    TokenBatch,
    diagnostics,
    get_objective,
    gift_target,
)

torch.set_num_threads(1)
F64 = torch.float64
TOL = 1e-6


# ------------------------------------------------------------------------------------------- reference helpers


def _softmax(z):
    e = torch.exp(z - z.max())
    return e / e.sum()


def _onehot(y, v):
    e = torch.zeros(v, dtype=F64)
    e[y] = 1.0
    return e


def ref_token(name, hp, z, y, r=None, old=None):
    """(value, d value / d z) of one token, straightforward formulas. z, r: [V] float64; y: int; old: float."""
    v = z.shape[0]
    q = _softmax(z)
    logq = torch.log(q)
    ey = _onehot(y, v)
    if name == "sft":
        return -logq[y], q - ey
    if name == "sft_entropy":
        lam = hp.get("lambda", 0.01)
        h = -(q * logq).sum()
        return -logq[y] - lam * h, q - ey + lam * q * (logq + h)
    if name == "sft_ls":
        lam = hp.get("lambda", 0.01)
        t = (1 - lam) * ey + lam / v
        return -(t * logq).sum(), q - t
    p = _softmax(r) if r is not None else None
    if name == "sft_kd":
        a = hp.get("alpha", 0.1)
        return -logq[y] + a * (p * (torch.log(p) - logq)).sum(), q - ey + a * (q - p)
    if name == "dft":
        return -q[y] * logq[y], q[y] * (q - ey)
    if name == "asft":
        lam = hp.get("lambda", 0.05)
        if hp.get("kl_direction", "forward") == "forward":
            kl = (p * (torch.log(p) - logq)).sum()
            gkl = q - p
        else:
            d = logq - torch.log(p)
            kl = (q * d).sum()
            gkl = q * (d - kl)
        return -q[y] * logq[y] + lam * kl, q[y] * (q - ey) + lam * gkl
    if name == "psft":
        lo, hi = hp.get("eps_low", 0.2), hp.get("eps_high", 0.28)
        log_r = float(logq[y]) - old
        ratio = math.exp(min(20.0, max(-20.0, log_r)))
        clipped = min(max(ratio, 1 - lo), 1 + hi)
        val = -min(ratio, clipped)
        if ratio > 1 + hi or abs(log_r) > 20:
            return torch.tensor(val, dtype=F64), torch.zeros(v, dtype=F64)
        return torch.tensor(val, dtype=F64), ratio * (q - ey)
    if name == "gift":
        beta = hp.get("beta", 20.0)
        lam = hp.get("smooth_lambda", 0.0)
        pt = (1 - lam) * p + lam / v
        if hp.get("variant", "exact") == "released":
            t = torch.log(pt + 1e-10)
        else:
            t = torch.log(pt)
        t = t.clone()
        t[y] = t[y] + beta
        target = _softmax(t)
        return -(target * logq).sum(), q - target
    raise KeyError(name)


def ragged_batch(seed, b=4, t=9, v=13, needs_old=False, ratio_spread=0.6, ref_scale=2.0):
    """Padded [B, T, V] logits with ragged prompt/response lengths; returns the gathered TokenBatch + mask."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g, dtype=F64) * 2.0
    ref = torch.randn(b, t, v, generator=g, dtype=F64) * ref_scale
    labels = torch.randint(0, v, (b, t), generator=g)
    mask = torch.zeros(b, t, dtype=torch.bool)
    for i in range(b):
        prompt = int(torch.randint(0, 4, (1,), generator=g))
        length = int(torch.randint(1, t - prompt + 1, (1,), generator=g))
        mask[i, prompt : prompt + length] = True
    logq = torch.log_softmax(logits, -1).gather(-1, labels[..., None]).squeeze(-1)
    # old log-probs around the current ones: ratios on both sides of 1-eps_lo and 1+eps_hi
    old = logq + (torch.rand(b, t, generator=g, dtype=F64) - 0.5) * 2 * ratio_spread
    return logits, ref, labels, mask, old


CONFIGS = [
    ("sft", {}),
    ("sft_entropy", {}),
    ("sft_entropy", {"lambda": 0.3}),
    ("sft_ls", {}),
    ("sft_ls", {"lambda": 0.2}),
    ("sft_kd", {}),
    ("sft_kd", {"alpha": 0.7}),
    ("dft", {}),
    ("asft", {}),
    ("asft", {"lambda": 0.5, "kl_direction": "reverse"}),
    ("psft", {}),
    ("psft", {"eps_low": 0.1, "eps_high": 0.05}),
    ("gift", {"beta": 20.0}),
    ("gift", {"beta": 0.0}),
    ("gift", {"beta": 0.5}),
    ("gift", {"beta": 3.0}),
    ("gift", {"beta": 3.0, "smooth_lambda": 0.1}),
    ("gift", {"beta": 3.0, "variant": "released"}),
    ("gift", {"beta": 20.0, "variant": "released", "smooth_lambda": 0.1}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in hp.items()) or 'default'}" for n, hp in CONFIGS]


def test_every_registered_objective_is_tested():
    untested = sorted(set(OBJECTIVES) - {n for n, _ in CONFIGS})
    assert not untested, f"objectives with no case in CONFIGS (and ref_token) here: {untested}"
    assert {n for n, _ in CONFIGS} <= set(OBJECTIVES)


@pytest.mark.parametrize("name,hp", CONFIGS, ids=IDS)
def test_value_and_gradient_match_reference(name, hp):
    logits, ref, labels, mask, old = ragged_batch(seed=zlib.crc32(f"{name}{sorted(hp.items())}".encode()))
    obj = get_objective(name, **hp)
    # --- library: gather masked positions, token-sum / num_items like the trainer
    z_full = logits.clone().requires_grad_(True)
    batch = TokenBatch(
        logits=z_full[mask],
        labels=labels[mask],
        ref_logits=ref[mask] if obj.needs_ref else None,
        old_logprobs=old[mask] if obj.needs_old else None,
    )
    per_token = obj(batch)
    n_items = int(mask.sum())
    loss = per_token.sum() / n_items
    loss.backward()
    # --- reference: loop over (b, t)
    ref_loss = torch.zeros((), dtype=F64)
    ref_grad = torch.zeros_like(logits)
    ref_per_token = []
    for i in range(logits.shape[0]):
        for t in range(logits.shape[1]):
            if not mask[i, t]:
                continue
            val, g = ref_token(name, hp, logits[i, t], int(labels[i, t]), ref[i, t], float(old[i, t]))
            ref_per_token.append(float(val))
            ref_loss += val / n_items
            ref_grad[i, t] = g / n_items
    assert per_token.shape == (n_items,)
    torch.testing.assert_close(per_token.detach(), torch.tensor(ref_per_token, dtype=F64), atol=TOL, rtol=0)
    assert abs(float(loss.detach()) - float(ref_loss)) < TOL
    torch.testing.assert_close(z_full.grad, ref_grad, atol=TOL, rtol=0)
    # closed-form logit gradient (used by the chunked head) agrees with the same reference
    vals, g = obj.value_and_grad(TokenBatch(logits[mask], labels[mask], batch.ref_logits, batch.old_logprobs))
    torch.testing.assert_close(vals, torch.tensor(ref_per_token, dtype=F64), atol=TOL, rtol=0)
    torch.testing.assert_close(g / n_items, ref_grad[mask], atol=TOL, rtol=0)


def test_psft_batch_exercises_clipped_and_unclipped_tokens():
    logits, _, labels, mask, old = ragged_batch(seed=3)
    obj = get_objective("psft")
    d = diagnostics(TokenBatch(logits[mask], labels[mask], None, old[mask]), obj)
    assert 0.0 < d["clip_frac"] < 1.0


def test_fp32_compute_for_low_precision_logits():
    logits, _, labels, mask, _ = ragged_batch(seed=5)
    z = logits[mask].to(torch.bfloat16)
    out = get_objective("sft")(TokenBatch(z, labels[mask]))
    assert out.dtype == torch.float32


# ---------------------------------------------------------------------------------------------------- limits


def _grad(obj, z, y, r=None, old=None):
    z = z.clone().requires_grad_(True)
    obj(TokenBatch(z, y, r, old)).sum().backward()
    return z.grad


def test_gift_gradient_tends_to_sft_as_beta_grows():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(32, 50, generator=g, dtype=F64)
    r = torch.randn(32, 50, generator=g, dtype=F64)
    y = torch.randint(0, 50, (32,), generator=g)
    g_sft = _grad(get_objective("sft"), z, y)
    errs = [float((_grad(get_objective("gift", beta=b), z, y, r) - g_sft).abs().max()) for b in (1, 5, 10, 20, 40)]
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 1e-12
    # beta = inf is accepted and is exactly plain SFT (value and gradient)
    obj_inf = get_objective("gift", beta=float("inf"))
    torch.testing.assert_close(_grad(obj_inf, z, y, r), g_sft, atol=1e-14, rtol=0)
    torch.testing.assert_close(obj_inf(TokenBatch(z, y, r)), get_objective("sft")(TokenBatch(z, y)))


def test_gift_beta_zero_target_is_base_distribution():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(16, 40, generator=g, dtype=F64)
    r = torch.randn(16, 40, generator=g, dtype=F64) * 3
    y = torch.randint(0, 40, (16,), generator=g)
    p = torch.softmax(r, -1)
    torch.testing.assert_close(gift_target(r, y, beta=0.0), p, atol=1e-15, rtol=0)
    torch.testing.assert_close(_grad(get_objective("gift", beta=0.0), z, y, r), torch.softmax(z, -1) - p)


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0, 20.0])
def test_gift_target_closed_form(beta):
    g = torch.Generator().manual_seed(2)
    r = torch.randn(64, 30, generator=g, dtype=F64) * 4
    y = torch.randint(0, 30, (64,), generator=g)
    p = torch.softmax(r, -1)
    py = p.gather(-1, y[:, None])
    e = math.exp(beta) - 1
    b = e * py / (1 + e * py)
    onehot = torch.nn.functional.one_hot(y, 30).to(F64)
    expected = (1 - b) * p + b * onehot
    torch.testing.assert_close(gift_target(r, y, beta=beta), expected, atol=1e-14, rtol=0)
    literal = torch.softmax(torch.log(p) + beta * onehot, -1)
    torch.testing.assert_close(gift_target(r, y, beta=beta), literal, atol=1e-14, rtol=0)


def test_psft_at_ratio_one_equals_sft_gradient():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(20, 30, generator=g, dtype=F64)
    y = torch.randint(0, 30, (20,), generator=g)
    old = torch.log_softmax(z, -1).gather(-1, y[:, None]).squeeze(-1)
    obj = get_objective("psft")
    torch.testing.assert_close(obj(TokenBatch(z, y, None, old)), -torch.ones(20, dtype=F64))
    torch.testing.assert_close(_grad(obj, z, y, None, old), _grad(get_objective("sft"), z, y), atol=1e-14, rtol=0)


@pytest.mark.parametrize("lam", [0.01, 0.1])
def test_entropy_bonus_raises_entropy(lam):
    g = torch.Generator().manual_seed(4)
    z0 = torch.randn(16, 30, generator=g, dtype=F64) * 3
    y = torch.randint(0, 30, (16,), generator=g)

    def run(obj, steps=5, lr=1.0):
        z = z0.clone()
        for _ in range(steps):
            z = z - lr * _grad(obj, z, y)
        q = torch.softmax(z, -1)
        return float(-(q * torch.log(q)).sum(-1).mean())

    h_sft, h_ent = run(get_objective("sft")), run(get_objective("sft_entropy", **{"lambda": lam}))
    assert h_ent > h_sft + 1e-4 * lam, (h_sft, h_ent)


def test_released_differs_from_exact_only_for_tiny_ref_prob():
    v = 1000
    y = torch.zeros(8, dtype=torch.long)
    targets_py = [0.5, 1e-2, 1e-4, 1e-6, 1e-8, 1e-9, 1e-10, 1e-12]
    # ref logits with p_ref(y*) = p exactly, rest uniform
    ref = torch.zeros(8, v, dtype=F64)
    for i, p in enumerate(targets_py):
        ref[i, 0] = math.log(p / (1 - p) * (v - 1))
    p_y = torch.softmax(ref, -1)[:, 0]
    torch.testing.assert_close(p_y, torch.tensor(targets_py, dtype=F64), rtol=1e-9, atol=0)
    exact = gift_target(ref, y, beta=20.0, variant="exact")
    released = gift_target(ref, y, beta=20.0, variant="released")
    diff = (exact - released).abs().max(-1).values
    for p, d in zip(targets_py, diff.tolist()):
        if p >= 1e-6:
            assert d < 1e-6, (p, d)
        elif p <= 1e-10:
            assert d > 1e-2, (p, d)
    a_exact, a_rel = exact[:, 0].tolist(), released[:, 0].tolist()
    # spec section 9.3 table
    assert abs(a_exact[4] - 0.829) < 2e-3 and abs(a_exact[6] - 0.046) < 2e-3 and abs(a_exact[7] - 4.8e-4) < 5e-5
    assert abs(a_rel[6] - 0.088) < 2e-3 and abs(a_rel[7] - 0.047) < 2e-3
    # the objective (not just gift_target) sees the same difference
    z = torch.zeros(8, v, dtype=F64)
    g_ex = _grad(get_objective("gift", beta=20.0), z, y, ref)
    g_rel = _grad(get_objective("gift", beta=20.0, variant="released"), z, y, ref)
    assert float((g_ex - g_rel)[:4].abs().max()) < 1e-6 and float((g_ex - g_rel)[6:].abs().max()) > 1e-2


def test_gift_diagnostics():
    g = torch.Generator().manual_seed(6)
    z = torch.randn(40, 25, generator=g, dtype=F64)
    r = torch.randn(40, 25, generator=g, dtype=F64) * 6
    y = torch.randint(0, 25, (40,), generator=g)
    r[torch.arange(20), y[:20]] += 30.0  # half the tokens: the base is sure of y*, so the target is ~one-hot
    obj = get_objective("gift", beta=3.0)
    d = diagnostics(TokenBatch(z, y, r), obj)
    a = gift_target(r, y, beta=3.0).gather(-1, y[:, None]).squeeze(-1)
    assert abs(d["target_mass_y"] - float(a.mean())) < 1e-12
    assert abs(d["frac_target_mass_below_0.99"] - float((a < 0.99).double().mean())) < 1e-12
    assert 0 < d["frac_target_mass_below_0.99"] < 1
    assert abs(d["ref_prob_y"] - float(torch.softmax(r, -1).gather(-1, y[:, None]).mean())) < 1e-12


# ------------------------------------------------------------------------------------------------ TRL parity


def test_dft_matches_trl_loss_type_dft(tmp_path):
    """Same batch through TRL 1.x's SFTTrainer.compute_loss(loss_type="dft") and through our `dft`."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(0)
    v = 40
    cfg = LlamaConfig(vocab_size=v, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(cfg).to(F64)
    with torch.no_grad():  # spread the logits so DFT weights differ from 1/V
        model.lm_head.weight.mul_(40)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({f"t{i}": i for i in range(v)}, unk_token="t0")),
        pad_token="t0", eos_token="t1",
    )
    args = SFTConfig(output_dir=str(tmp_path), loss_type="dft", report_to=[], use_cpu=True,
                     dataset_kwargs={"skip_prepare_dataset": True})
    trainer = SFTTrainer(model=model, args=args, processing_class=tok,
                         train_dataset=Dataset.from_dict({"input_ids": [[2, 3, 4]]}))
    model = trainer.model
    model.train()
    ids = torch.randint(2, v, (3, 10))
    labels = ids.clone()
    labels[0, :3] = -100
    labels[1, :6] = -100
    labels[2, 8:] = -100
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    n_items = int((labels[:, 1:] != -100).sum())

    model.zero_grad()
    loss_trl = trainer.compute_loss(model, dict(inputs), num_items_in_batch=n_items)
    loss_trl.backward()
    g_trl = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    logits = model(input_ids=ids, attention_mask=inputs["attention_mask"]).logits[:, :-1]
    shift = labels[:, 1:]
    m = shift != -100
    ours = get_objective("dft")(TokenBatch(logits[m], shift[m])).sum() / n_items
    ours.backward()
    # TRL's fused log-prob head computes in fp32 even for an fp64 model, hence 1e-6 rather than fp64 precision
    assert abs(float(loss_trl.detach()) - float(ours.detach())) < 1e-6 * abs(float(ours.detach()))
    assert float(ours.detach()) < 0.5 * float(get_objective("sft")(TokenBatch(logits[m].detach(), shift[m])).mean())
    for k, p in model.named_parameters():
        scale = float(p.grad.abs().max())
        assert float((p.grad - g_trl[k]).abs().max()) <= 1e-6 * scale, k


# ----------------------------------------------------------------------------------------- registry / errors


def test_defaults_and_flags():
    assert get_objective("gift").hparams == {"beta": 20.0, "variant": "exact", "smooth_lambda": 0.0}
    assert get_objective("asft").hparams == {"lambda": 0.05, "kl_direction": "forward"}
    assert get_objective("psft").hparams == {"eps_low": 0.2, "eps_high": 0.28, "snapshot_every": 8}
    assert get_objective("sft_entropy").hparams == {"lambda": 0.01}
    assert get_objective("sft_ls").hparams == {"lambda": 0.01}
    assert get_objective("sft_kd").hparams == {"alpha": 0.1}
    assert get_objective("sft").hparams == {} and get_objective("dft").hparams == {}
    paper = ("sft", "sft_entropy", "sft_ls", "sft_kd", "dft", "asft", "psft", "gift")  # an objective of one's own
    assert {n for n in paper if OBJECTIVES[n].needs_ref} == {"sft_kd", "asft", "gift"}  # does not change these
    assert {n for n in paper if OBJECTIVES[n].needs_old} == {"psft"}
    o = get_objective("gift", beta=3, variant="released", smooth_lambda=None)
    assert o.hparams == {"beta": 3.0, "variant": "released", "smooth_lambda": 0.0} and o.needs_ref
    assert get_objective("sft_ls", lam=0.2).hparams == {"lambda": 0.2}
    assert get_objective("psft", snapshot_every=4).hparams["snapshot_every"] == 4


@pytest.mark.parametrize(
    "name,hp,needle",
    [
        ("nope", {}, "unknown objective"),
        ("sft", {"beta": 1.0}, "unknown hyperparameter"),
        ("gift", {"beta": -1.0}, "beta"),
        ("gift", {"beta": float("nan")}, "beta"),
        ("gift", {"beta": "big"}, "beta"),
        ("gift", {"variant": "fast"}, "variant"),
        ("gift", {"smooth_lambda": 1.5}, "smooth_lambda"),
        ("asft", {"kl_direction": "sideways"}, "kl_direction"),
        ("sft_ls", {"lambda": 1.5}, "lambda"),
        ("sft_entropy", {"lambda": -0.1}, "lambda"),
        ("sft_kd", {"alpha": float("inf")}, "alpha"),
        ("psft", {"snapshot_every": 0}, "snapshot_every"),
        ("psft", {"snapshot_every": 2.5}, "snapshot_every"),
    ],
)
def test_bad_names_and_hparams_raise_one_line_valueerror(name, hp, needle):
    with pytest.raises(ValueError) as e:
        get_objective(name, **hp)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_missing_inputs_raise():
    z = torch.randn(3, 5, dtype=F64)
    y = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="ref_logits"):
        get_objective("gift")(TokenBatch(z, y))
    with pytest.raises(ValueError, match="old_logprobs"):
        get_objective("psft")(TokenBatch(z, y))

"""The cached reference (sft.reference: cached): the densified r~, its error bound, the cache's rows, and SFT
trained from it, checked against straightforward references and the live frozen forward."""

import json

import pytest
import torch

from giftlab.cli import ConfigError
from giftlab.models import load_model
from giftlab.objectives import get_objective
from giftlab.objectives.gift import gift_target
from giftlab.tinyworld.tokenizer import build_tokenizer
from giftlab.training.reference import (CachedRows, ReferenceCache, ReferenceMismatch, build_reference_cache,
                                        dense_logprobs, tail_mass, weights_fingerprint)
from giftlab.training.sft import ObjectiveTrainer, PadCollator, SFTDataset, train_sft, training_arguments

from test_sft_trainer import ROWS, settings


def loop_dense(logp_full: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Independent r~, one row at a time: exact on top-k and y*, the rest of the mass spread evenly."""
    out = torch.empty_like(logp_full)
    v = logp_full.shape[1]
    for n in range(logp_full.shape[0]):
        p = logp_full[n].exp()
        keep = set(p.topk(k).indices.tolist()) | {int(labels[n])}
        rest = [i for i in range(v) if i not in keep]
        tail = 1.0 - sum(float(p[i]) for i in keep)
        for i in range(v):
            out[n, i] = p[i] if i in keep else tail / len(rest)
    return out.log()


def sparse(logp_full: torch.Tensor, labels: torch.Tensor, k: int):
    values, ids = logp_full.topk(k, -1)
    return ids.to(torch.int32), values, labels, logp_full.gather(-1, labels[:, None]).squeeze(-1)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_dense_logprobs_matches_a_row_by_row_reference(k):
    torch.manual_seed(0)
    logp = torch.log_softmax(torch.randn(6, 12, dtype=torch.float64) * 3, -1)
    labels = torch.tensor([0, 5, 11, 3, 3, 7])
    labels[1] = logp[1].argmax()  # y* among the top tokens in one row
    got = dense_logprobs(*sparse(logp, labels, k), vocab=12)
    torch.testing.assert_close(got, loop_dense(logp, labels, k), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.exp().sum(-1), torch.ones(6, dtype=torch.float64))


def test_the_gift_target_moves_by_at_most_the_stated_bound():
    torch.manual_seed(1)
    logp = torch.log_softmax(torch.randn(64, 40, dtype=torch.float64) * 2, -1)
    labels = torch.randint(0, 40, (64,))
    for k in (1, 4, 16):
        ids, values, y, logp_y = sparse(logp, labels, k)
        cached = dense_logprobs(ids, values, y, logp_y, 40)
        m = tail_mass(ids, values, y, logp_y)
        assert torch.all(0.5 * (cached.exp() - logp.exp()).abs().sum(-1) <= m + 1e-12)  # TV(r, r~) <= m
        for beta in (1.0, 3.0, 10.0):
            exact, approx = gift_target(logp, labels, beta), gift_target(cached, labels, beta)
            b = (exact.gather(-1, labels[:, None]).squeeze(-1) - logp_y.exp()) / (1 - logp_y.exp())
            tv = 0.5 * (exact - approx).abs().sum(-1)
            assert torch.all(tv <= (1 - b) * m + 1e-12)
    # k >= V - 1 keeps every token: the cache is exact
    ids, values, y, logp_y = sparse(logp, labels, 39)
    torch.testing.assert_close(dense_logprobs(ids, values, y, logp_y, 40), logp)


def test_asft_on_the_cache_keeps_the_bound_with_forward_kl_and_loses_it_with_reverse_kl():
    """Why sft.reference: cached refuses ASFT's kl_direction: reverse (giftlab.config, train_sft): forward KL's
    gradient moves by lambda (r~ - r), at most 2 lambda m in L1; reverse KL's weighs log r~ - log r on the tail,
    where r~ is a uniform guess, by the policy."""
    from giftlab.objectives import TokenBatch

    torch.manual_seed(2)
    logp = torch.log_softmax(torch.randn(64, 200, dtype=torch.float64) * 3, -1)
    labels = torch.randint(0, 200, (64,))
    logits = torch.randn(64, 200, dtype=torch.float64)
    ids, values, y, logp_y = sparse(logp, labels, 8)
    cached, m = dense_logprobs(ids, values, y, logp_y, 200), tail_mass(ids, values, y, logp_y)
    errors = {}
    for direction in ("forward", "reverse"):
        asft = get_objective("asft", kl_direction=direction)
        grads = [asft.value_and_grad(TokenBatch(logits, labels, ref_logits=ref))[1] for ref in (logp, cached)]
        errors[direction] = (grads[1] - grads[0]).abs().sum(-1)
    bound = 2 * asft.hparams["lambda"] * m
    assert torch.all(errors["forward"] <= bound + 1e-12)
    assert torch.any(errors["reverse"] > 2 * bound)
    with pytest.raises(ValueError, match="kl_direction: reverse"):
        get_objective("asft", kl_direction="reverse").check_cached_reference()
    get_objective("asft").check_cached_reference()


def test_train_sft_refuses_reverse_kl_asft_on_the_cache_before_loading_a_model(tmp_path):
    def no_load(path):
        raise AssertionError("a model was loaded before the refusal")

    with pytest.raises(ConfigError, match=r"^config: sft.reference: cached with objective 'asft': kl_direction"):
        train_sft(base_path="unused", tokenizer=build_tokenizer(), load_model=no_load, train_rows=ROWS[:16],
                  val_rows=ROWS[16:], solution_key="r1_solution_1", method="asft",
                  objective_params={"kl_direction": "reverse"}, settings=settings(epochs=1, reference="cached"),
                  out_dir=tmp_path / "out", work_dir=tmp_path / "work", job_config={}, reference_cache=[])


def test_cached_rows_slice_like_dense_logits():
    logp = torch.log_softmax(torch.randn(10, 9), -1)
    labels = torch.randint(0, 9, (10,))
    rows = CachedRows(*sparse(logp, labels, 3), vocab=9)
    torch.testing.assert_close(rows[2:7], rows.dense()[2:7])
    assert rows.detach() is rows and rows.shape == (10, 9)


@pytest.fixture(scope="module")
def cache(base_dir):
    return build_reference_cache(load_model(base_dir), build_tokenizer(), ROWS[:16], solution_key="r1_solution_1",
                                 max_length=96, top_k=1000, batch_size=5,
                                 meta={"base": weights_fingerprint(base_dir)})


def test_the_cache_holds_the_live_forward_of_every_response_token(base_dir, cache):
    tok = build_tokenizer()
    ds = SFTDataset(ROWS[:16], tok, "r1_solution_1", 96)
    batch = PadCollator(tok.pad_token_id)([ds[i] for i in range(len(ds))])
    mask = batch["labels"][:, 1:] != -100
    model = load_model(base_dir).eval()
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                                 .logits[:, :-1][mask].float(), -1)
    targets = batch["labels"][:, 1:][mask]
    rows = cache.rows(batch["row"].tolist(), mask.sum(1).tolist(), targets)
    assert cache.meta["top_k"] == len(tok) and cache.n_rows == 16
    torch.testing.assert_close(rows.dense(), logp, rtol=1e-4, atol=1e-5)   # k = V: exact up to batch padding
    torch.testing.assert_close(rows.label_logp, logp.gather(-1, targets[:, None]).squeeze(-1), rtol=1e-4, atol=1e-5)


def test_the_cache_is_the_same_whatever_its_tokens_per_chunk(base_dir, cache):
    """The log-softmax and top-k run over a batch's response tokens a chunk at a time (the memory of the fp32
    copies); each token's values are its own row's, so the cache is the same bit for bit."""
    chunked = build_reference_cache(load_model(base_dir), build_tokenizer(), ROWS[:16], solution_key="r1_solution_1",
                                    max_length=96, top_k=1000, batch_size=5, tokens_per_chunk=7,
                                    meta={"base": weights_fingerprint(base_dir)})
    for name in ("offsets", "labels", "label_logp", "top_ids", "top_logp"):
        assert torch.equal(getattr(chunked, name), getattr(cache, name)), name


def test_save_load_and_the_one_line_refusals(cache, tmp_path):
    path = cache.save(tmp_path / "sft.safetensors")
    loaded = ReferenceCache.load(path)
    for name in ("offsets", "labels", "label_logp", "top_ids", "top_logp"):
        assert torch.equal(getattr(loaded, name), getattr(cache, name))
    with pytest.raises(ReferenceMismatch, match="made with max_length = 96, this run uses 128"):
        loaded.check(max_length=128)
    labels = loaded.labels[: int(loaded.offsets[1])].long()
    with pytest.raises(ReferenceMismatch, match="row 1 has .* cached response tokens where the batch has 2"):
        loaded.rows([1], [2], labels[:2])
    with pytest.raises(ReferenceMismatch, match="token 0 of the batch"):
        loaded.rows([0], [len(labels)], labels + 1)
    assert issubclass(ReferenceMismatch, ConfigError)  # scripts print it as one line
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReferenceMismatch, match=r"corrupt checkpoint .*sft.safetensors: .*truncated"):
        ReferenceCache.load(path)


def test_concatenated_caches_follow_the_trainers_row_order(base_dir, cache):
    model, tok = load_model(base_dir), build_tokenizer()
    first = build_reference_cache(model, tok, ROWS[:9], solution_key="r1_solution_1", max_length=96, top_k=5)
    second = build_reference_cache(model, tok, ROWS[9:16], solution_key="r1_solution_1", max_length=96, top_k=5)
    joined = ReferenceCache.concat([first, second])
    assert torch.equal(joined.offsets, cache.offsets) and torch.equal(joined.labels, cache.labels)
    torch.testing.assert_close(joined.label_logp, cache.label_logp, rtol=1e-5, atol=1e-6)


def one_step_grads(base_dir, tmp_path, objective, loss_head, ref_cache=None, **hp):
    tok = build_tokenizer()
    ds = SFTDataset(ROWS[:8], tok, "r1_solution_1", 96)
    model = load_model(base_dir)
    args = training_arguments(settings(batch_size=4, grad_accum=2, epochs=1, lr=1.0), tmp_path / loss_head, 1)
    args.optim, args.max_steps, args.max_grad_norm = "sgd", 1, 1e9
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    obj = get_objective(objective, **hp)
    ref = load_model(base_dir).eval().requires_grad_(False) if ref_cache is None else None
    ObjectiveTrainer(model=model, args=args, train_dataset=ds, data_collator=PadCollator(tok.pad_token_id),
                     objective=obj, ref_model=ref, ref_cache=ref_cache, loss_head=loss_head).train()
    return {n: before[n] - p.detach() for n, p in model.named_parameters()}


@pytest.mark.parametrize("loss_head", ["plain", "chunked"])
@pytest.mark.parametrize("objective,hp", [("gift", {"beta": 3.0}), ("sft_kd", {}), ("asft", {})])
def test_a_full_vocabulary_cache_trains_like_the_live_reference(base_dir, tmp_path, cache, loss_head, objective, hp):
    live = one_step_grads(base_dir, tmp_path / "live", objective, loss_head, **hp)
    cached = one_step_grads(base_dir, tmp_path / "cached", objective, loss_head, ref_cache=cache, **hp)
    for name in live:
        torch.testing.assert_close(cached[name], live[name], rtol=1e-3, atol=1e-6)


def test_train_sft_reads_the_cache_and_refuses_one_of_another_base(base_dir, cache, tmp_path):
    path = cache.save(tmp_path / "sft.safetensors")

    def run(reference_cache, out):
        return train_sft(base_path=str(base_dir), tokenizer=build_tokenizer(), load_model=load_model,
                         train_rows=ROWS[:16], val_rows=ROWS[16:], solution_key="r1_solution_1", method="gift",
                         objective_params={"beta": 3.0}, settings=settings(epochs=1, reference="cached"),
                         out_dir=out / "out", work_dir=out / "work", job_config={"out": str(out)},
                         reference_cache=reference_cache)

    metrics = run([path], tmp_path / "a")
    assert metrics["epochs"][0]["val_loss"] > 0 and 0 < metrics["epochs"][0]["target_mass_y"] <= 1
    with pytest.raises(ConfigError, match="no reference cache was given"):
        run([], tmp_path / "b")
    other = ReferenceCache.load(path)
    other.meta["base"] = "0" * 16
    other.save(tmp_path / "other.safetensors")
    with pytest.raises(ReferenceMismatch, match=r"made with base = '0{16}'"):
        run([tmp_path / "other.safetensors"], tmp_path / "c")
    with pytest.raises(ConfigError, match="sft.reference: 'live' is not one of exact, cached"):
        settings(reference="live")


def test_weights_fingerprint_sees_other_weights_of_one_architecture(base_dir, tmp_path):
    model = load_model(base_dir)
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    model.save_pretrained(tmp_path)
    assert weights_fingerprint(tmp_path) != weights_fingerprint(base_dir)
    assert weights_fingerprint(base_dir) == weights_fingerprint(base_dir)


def test_a_cache_of_the_same_responses_under_other_prompts_is_refused(base_dir, tmp_path):
    """The cache records its split's sha256; a run whose training file differs from it (here: every prompt changed,
    as data.instruction changes them, the responses the same, so each row's token count and labels still match)
    is refused in one line naming the cache and its rebuild, instead of training on the base's log-probs under
    other prompts."""
    from giftlab.provenance import file_sha256

    def split(name, rows):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    old = split("old", ROWS[:16])
    new = split("new", [{**r, "question": r["question"].replace("Start", "Begin")} for r in ROWS[:16]])
    model = load_model(base_dir).eval()
    built = build_reference_cache(model, build_tokenizer(), ROWS[:16], solution_key="r1_solution_1", max_length=96,
                                  top_k=8, meta={"base": weights_fingerprint(base_dir), "split_sha256": file_sha256(old)})
    path = built.save(tmp_path / "results" / "sft" / "reference" / "tiny" / "sft.safetensors")

    def run(train_file, out):
        rows = [json.loads(line) for line in train_file.read_text().splitlines()]
        return train_sft(base_path=str(base_dir), tokenizer=build_tokenizer(), load_model=load_model,
                         train_rows=rows, val_rows=ROWS[16:], solution_key="r1_solution_1", method="gift",
                         objective_params={"beta": 3.0}, settings=settings(epochs=1, reference="cached"),
                         out_dir=out / "out", work_dir=out / "work", job_config={"out": str(out)},
                         reference_cache=[path], train_files=[train_file])

    with pytest.raises(ReferenceMismatch) as refused:
        run(new, tmp_path / "new")
    message = str(refused.value)
    assert "\n" not in message and str(path) in message and str(new) in message and "other data" in message
    assert f"snakemake --force {path}" in message
    assert run(old, tmp_path / "old")["epochs"][0]["val_loss"] > 0  # its own split: accepted
    with pytest.raises(ConfigError, match="2 training files but 1 reference cache"):
        train_sft(
            base_path=str(base_dir), tokenizer=build_tokenizer(), load_model=load_model, train_rows=ROWS[:16],
            val_rows=ROWS[16:], solution_key="r1_solution_1", method="gift", objective_params={"beta": 3.0},
            settings=settings(epochs=1, reference="cached"), out_dir=tmp_path / "x" / "out",
            work_dir=tmp_path / "x" / "work", job_config={"out": "x"}, reference_cache=[path], train_files=[old, new])


def test_a_cache_of_the_same_split_under_another_chat_template_is_refused(base_dir, cache, tmp_path):
    """Same split file (its sha256 passes), same responses, same token counts and labels, so every batch's label
    check passes too: only the prompts differ, under another chat template (a system line added), and with them the
    base's log-probs of every response token. The cache records the sha256 of its tokenised rows; the run compares
    its own and refuses in one line."""
    from giftlab.tinyworld.tokenizer import CHAT_TEMPLATE

    path = cache.save(tmp_path / "sft.safetensors")
    other_template = build_tokenizer()
    other_template.chat_template = "{{ 'Solve.' }}{{ '\n' }}" + CHAT_TEMPLATE

    def run(tokenizer, reference_cache, out):
        return train_sft(base_path=str(base_dir), tokenizer=tokenizer, load_model=load_model,
                         train_rows=ROWS[:16], val_rows=ROWS[16:], solution_key="r1_solution_1", method="gift",
                         objective_params={"beta": 3.0}, settings=settings(epochs=1, reference="cached"),
                         out_dir=out / "out", work_dir=out / "work", job_config={"out": str(out)},
                         reference_cache=reference_cache)

    theirs = SFTDataset(ROWS[:16], other_template, "r1_solution_1", 96)
    ours = SFTDataset(ROWS[:16], build_tokenizer(), "r1_solution_1", 96)
    def response(ds):
        return [[label for label in e["labels"] if label != -100] for e in ds]

    assert response(theirs) == response(ours)  # the batches' label checks alone would pass
    assert [e["input_ids"] for e in theirs] != [e["input_ids"] for e in ours]
    with pytest.raises(ReferenceMismatch) as refused:
        run(other_template, [path], tmp_path / "other")
    message = str(refused.value)
    assert "\n" not in message and "another tokenisation" in message and f"snakemake --force {path}" in message

    older = ReferenceCache.load(path)
    del older.meta["tokens_sha256"]
    with pytest.raises(ReferenceMismatch, match="records no tokens_sha256"):
        run(build_tokenizer(), [older.save(tmp_path / "older.safetensors")], tmp_path / "older")
    assert run(build_tokenizer(), [path], tmp_path / "same")["epochs"][0]["val_loss"] > 0


def test_a_cache_refusal_names_its_cause(base_dir, cache, tmp_path):
    """What differs is named: the demonstrations' column (not "another tokenisation", though the tokens differ too)
    and the number of rows."""
    from giftlab.training.sft import load_reference_cache

    path = cache.save(tmp_path / "sft.safetensors")
    rows = [{**r, "alt": r["r1_solution_1"] + " "} for r in ROWS]
    with pytest.raises(ReferenceMismatch, match="made with solution_key = 'r1_solution_1', this run uses 'alt'"):
        train_sft(base_path=str(base_dir), tokenizer=build_tokenizer(), load_model=load_model, train_rows=rows[:16],
                  val_rows=rows[16:], solution_key="alt", method="gift", objective_params={"beta": 3.0},
                  settings=settings(epochs=1, reference="cached"), out_dir=tmp_path / "out", work_dir=tmp_path / "w",
                  job_config={"out": "x"}, reference_cache=[path])
    digests = SFTDataset(ROWS[:16], build_tokenizer(), "r1_solution_1", 96).row_digests()
    with pytest.raises(ReferenceMismatch, match="16 rows, the training set 15"):
        load_reference_cache([path], settings(epochs=1, reference="cached"), "r1_solution_1", len(build_tokenizer()),
                             base_dir, row_digests=digests[:15])


# ------------------------------------------------------------------ the file, written in place and resumed


CACHE_ARGS = {"solution_key": "r1_solution_1", "max_length": 96, "top_k": 5, "batch_size": 3,
              "meta": {"base": "fingerprint"}}


def counting_forwards(model, fail_at: int | None = None) -> list:
    """``model`` counting its forward calls (a list, one entry per call); the ``fail_at``-th call raises, as a
    job killed inside that batch."""
    calls = []

    def hook(module, args, kwargs):
        calls.append(1)
        if len(calls) == fail_at:
            raise RuntimeError("killed")

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return calls


@pytest.fixture(scope="module")
def whole_file(base_dir, tmp_path_factory):
    """The bytes of the cache of ROWS[:16] built in memory in one pass and saved."""
    cache = build_reference_cache(load_model(base_dir), build_tokenizer(), ROWS[:16], **CACHE_ARGS)
    return cache.save(tmp_path_factory.mktemp("whole") / "sft.safetensors").read_bytes()


def test_a_cache_file_has_the_same_bytes_whichever_process_wrote_it(whole_file, tmp_path):
    """safetensors' save_file ordered the two metadata keys at random per process (a Rust HashMap): two builds of
    one cache had other bytes, sha256 and DVC hash about every other time. The header is now written in one order;
    safetensors reads the file."""
    from safetensors import safe_open

    from giftlab.training.reference_file import ORDER

    n = int.from_bytes(whole_file[:8], "little")
    header = json.loads(whole_file[8:8 + n], object_pairs_hook=lambda pairs: pairs)
    assert [key for key, _ in header] == ["__metadata__", *ORDER]
    assert [key for key, _ in header[0][1]] == ["format", "meta"]
    (tmp_path / "c.safetensors").write_bytes(whole_file)
    loaded = ReferenceCache.load(tmp_path / "c.safetensors")
    with safe_open(tmp_path / "c.safetensors", framework="pt") as f:
        for name in ORDER:
            assert torch.equal(f.get_tensor(name), getattr(loaded, name)), name


def test_an_interrupted_cache_resumes_to_the_bytes_of_an_uninterrupted_one(base_dir, whole_file, tmp_path):
    from giftlab.training.preemption import Preempted
    from giftlab.training.reference import write_reference_cache

    tok, work = build_tokenizer(), tmp_path / "work"
    # SIGTERM during the second batch: the rows so far recorded, Preempted, nothing moved to an output
    model = load_model(base_dir)
    calls = counting_forwards(model)
    with pytest.raises(Preempted, match="preempted at row 6: progress saved"):
        write_reference_cache(model, tok, ROWS[:16], work=work, stop=lambda: len(calls) >= 2, **CACHE_ARGS)
    assert json.loads((work / "progress.json").read_text())["rows"] == 6
    # a kill inside the fourth batch after a record at every batch: rows 0-8 on disk, the rest scribbled over
    model = load_model(base_dir)
    counting_forwards(model, fail_at=3)  # this attempt's third batch is rows 12-14
    with pytest.raises(RuntimeError, match="killed"):
        write_reference_cache(model, tok, ROWS[:16], work=work, commit_every_s=0, **CACHE_ARGS)
    assert json.loads((work / "progress.json").read_text())["rows"] == 12
    partial = bytearray((work / "reference.safetensors").read_bytes())
    partial[-200:] = b"\xff" * 200
    (work / "reference.safetensors").write_bytes(partial)
    # the rerun goes on from row 12, with the batches an uninterrupted pass runs: the same bytes
    model = load_model(base_dir)
    calls = counting_forwards(model)
    writer, resumed = write_reference_cache(model, tok, ROWS[:16], work=work, **CACHE_ARGS)
    assert resumed == 12 and len(calls) == 2  # rows 12-14, 15
    out = writer.finish(tmp_path / "results" / "sft.safetensors")
    assert out.read_bytes() == whole_file
    assert not work.exists()  # the file moved, its progress record and folder gone


def test_a_partial_cache_of_other_settings_or_torn_is_started_over(base_dir, whole_file, tmp_path):
    from giftlab.training.reference import write_reference_cache

    tok, work = build_tokenizer(), tmp_path / "work"
    for first, args in ((1, {**CACHE_ARGS, "top_k": 4}), (1, {**CACHE_ARGS, "meta": {"base": "another"}})):
        model = load_model(base_dir)
        counting_forwards(model, fail_at=2)
        with pytest.raises(RuntimeError, match="killed"):
            write_reference_cache(model, tok, ROWS[:16], work=work, commit_every_s=0, **args)
        assert json.loads((work / "progress.json").read_text())["rows"] == 3
        writer, resumed = write_reference_cache(load_model(base_dir), tok, ROWS[:16], work=work, **CACHE_ARGS)
        assert resumed == 0 and writer.file.read_bytes() == whole_file
        writer.finish(tmp_path / f"out{first}.safetensors")
    # torn: the partial file is shorter than its header says
    model = load_model(base_dir)
    counting_forwards(model, fail_at=2)
    with pytest.raises(RuntimeError, match="killed"):
        write_reference_cache(model, tok, ROWS[:16], work=work, commit_every_s=0, **CACHE_ARGS)
    with open(work / "reference.safetensors", "r+b") as fh:
        fh.truncate(len(whole_file) - 8)
    writer, resumed = write_reference_cache(load_model(base_dir), tok, ROWS[:16], work=work, **CACHE_ARGS)
    assert resumed == 0 and writer.file.read_bytes() == whole_file


def test_a_finished_cache_moves_to_another_filesystem_whole(base_dir, whole_file, tmp_path, monkeypatch):
    """work/ and results/ on two filesystems (a scratch work folder): os.replace cannot rename across them."""
    import errno
    import os

    from giftlab.training.reference import write_reference_cache

    writer, _ = write_reference_cache(load_model(base_dir), build_tokenizer(), ROWS[:16], work=tmp_path / "work",
                                      **CACHE_ARGS)
    real = os.replace

    def replace(src, dst):
        if str(src) == str(writer.file):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    out = writer.finish(tmp_path / "results" / "sft.safetensors")
    assert out.read_bytes() == whole_file and not writer.file.exists()
    assert [p.name for p in out.parent.iterdir()] == ["sft.safetensors"]  # no temporary left beside it


def test_a_stop_request_between_two_looks_records_the_rows_it_reports(base_dir, tmp_path):
    """after_batch asked stop() twice: a SIGTERM landing between the two raised Preempted ("progress saved") with
    the batch's rows unrecorded (no progress.json at all in the first two minutes: the rerun started over)."""
    from giftlab.training.preemption import Preempted
    from giftlab.training.reference import write_reference_cache

    looks = []

    def stop():  # the signal arrives right after the first look
        looks.append(1)
        return len(looks) > 1

    work = tmp_path / "work"
    with pytest.raises(Preempted, match="progress saved") as stopped:
        write_reference_cache(load_model(base_dir), build_tokenizer(), ROWS[:16], work=work, stop=stop, **CACHE_ARGS)
    assert json.loads((work / "progress.json").read_text())["rows"] == stopped.value.step


def test_a_partial_cache_of_another_batch_size_is_started_over(base_dir, tmp_path):
    """reference_cache's batch_size is not in the file's header: a rerun with another one (the usual answer to an
    out-of-memory kill) resumed the old rows, with batches counted from the resumed row, so the file mixed two
    batchings and was not the bytes an uninterrupted run of the new batch size writes."""
    from giftlab.training.reference import write_reference_cache

    tok, work = build_tokenizer(), tmp_path / "work"
    model = load_model(base_dir)
    counting_forwards(model, fail_at=3)
    with pytest.raises(RuntimeError, match="killed"):
        write_reference_cache(model, tok, ROWS[:16], work=work, commit_every_s=0, **CACHE_ARGS)
    assert json.loads((work / "progress.json").read_text())["rows"] == 6
    args = {**CACHE_ARGS, "batch_size": 4}
    model = load_model(base_dir)
    calls = counting_forwards(model)
    writer, resumed = write_reference_cache(model, tok, ROWS[:16], work=work, **args)
    assert resumed == 0 and len(calls) == 4  # rows 0-3, 4-7, 8-11, 12-15
    whole = build_reference_cache(load_model(base_dir), tok, ROWS[:16], **args)
    assert writer.file.read_bytes() == whole.save(tmp_path / "whole.safetensors").read_bytes()

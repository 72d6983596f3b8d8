"""The CPU rehearsal of the paper run (config/rehearsal.yaml over config/paper.yaml): its stand-in downloads load like
the real ones, and its plan is the paper's branch of the DAG. The whole run is tests_integration/test_rehearsal.py."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, build_rehearsal, venv_env


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    return build_rehearsal(tmp_path_factory.mktemp("work") / "rehearsal", 60)


@pytest.mark.parametrize("name,arch,tokenizer_class", [("Qwen2.5-rehearsal", "Qwen2ForCausalLM", "Qwen2Tokenizer"),
                                                        ("Llama-3.1-rehearsal", "LlamaForCausalLM", None)])
def test_backbones_load_like_downloaded_checkpoints(rehearsal, name, arch, tokenizer_class):
    import torch

    from giftlab.models import load_model, load_tokenizer

    path = rehearsal / "models" / name
    model, tok = load_model(path), load_tokenizer(path)
    assert type(model).__name__ == arch and not model.config.tie_word_embeddings
    assert model.config.dtype == torch.bfloat16                # saved as released checkpoints are
    assert tok.chat_template and (tokenizer_class is None or type(tok).__name__.startswith(tokenizer_class))
    assert len(tok) == model.config.vocab_size


def test_the_device_checks_rehearsal_has_a_head_size_vllm_serves(rehearsal, tmp_path):
    """benchmarks/device_cluster_check.sh loads the rehearsal's export in vLLM, whose GPU attention kernels take head
    sizes from 32: it asks for one head of 64; the rehearsal keeps its 4 heads of 16 (the CPU runs' checkpoints)."""
    import json

    spec = importlib.util.spec_from_file_location("make_rehearsal", REPO / "scripts" / "make_rehearsal.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--out", str(tmp_path / "one_head"), "--problems", "8", "--heads", "1"])
    for out, head_size in ((tmp_path / "one_head", 64), (rehearsal, 16)):
        config = json.loads((out / "models" / "Qwen2.5-rehearsal" / "config.json").read_text())
        assert config["hidden_size"] // config["num_attention_heads"] == head_size
    assert "make_rehearsal.py --out \"$reh\" --problems 64 --heads 1" in (
        REPO / "benchmarks" / "device_cluster_check.sh").read_text()


@pytest.mark.parametrize("name", ["Qwen2.5-rehearsal", "Llama-3.1-rehearsal"])
def test_every_stage_encodes_one_bos(rehearsal, name):
    """Llama 3's chat template writes <|begin_of_text|> and its tokenizer adds it again on encoding: SFT examples
    and evaluation/GRPO prompts (encoded with special tokens) must hold it once."""
    from giftlab.data import render_prompt, tokenize_sft_example
    from giftlab.models import load_tokenizer

    tok = load_tokenizer(rehearsal / "models" / name)
    example = tokenize_sft_example(tok, "What is 2 + 3?", "2+3=5 \\boxed{5}", 200)["input_ids"]
    prompt = tok(render_prompt(tok, "What is 2 + 3?"))["input_ids"]
    for ids in (example, prompt):
        assert ids.count(tok.bos_token_id) == (1 if tok.bos_token_id is not None else 0), tok.decode(ids[:6])
    assert example[:len(prompt)] == prompt  # SFT trains on exactly the prompt generation is fed


def test_deepmath_folder_has_the_downloaded_layout_and_columns(rehearsal):
    from giftlab.data import load_problems

    folder = rehearsal / "data" / "DeepMath-103K"
    assert (folder / "README.md").is_file() and len(list((folder / "data").glob("train-*.parquet"))) == 2
    rows = load_problems(str(folder), "r1_solution_1")
    assert len(rows) == 60
    assert set(rows[0]) == {"question", "final_answer", "difficulty", "topic", "r1_solution_1", "r1_solution_2",
                            "r1_solution_3"}


def test_the_rehearsal_plans_the_papers_branch_of_the_dag(rehearsal):
    work = rehearsal.parent
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(work),
           "phase_all", "-n", "--quiet", "rules", "--configfile", str(REPO / "config" / "paper.yaml"),
           str(REPO / "config" / "rehearsal.yaml")]
    result = subprocess.run(cmd, cwd=work, env=venv_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M)}
    assert "world" not in counts and "pretrain_base" not in counts   # local backbones, DeepMath-schema data
    assert counts["sft"] == 6                                         # sft, gift-b10, direct_sft x 2
    assert counts["grpo"] == 10                                       # sft, gift-b10, direct_rl, luffy, relift x 2
    assert counts["evaluate"] == 5 * 2 and counts["evaluate_direct_sft"] == 2     # one job per model, ten benchmarks
    assert counts["evaluate_pre_rl"] == 2 * 2                                     # SFT, GIFT before RL: six each
    assert counts["table"] == 4 and counts["figure3"] == 1


@pytest.mark.parametrize("name,turn_end", [("Qwen2.5-rehearsal", "<|im_end|>"), ("Llama-3.1-rehearsal", "<|eot_id|>")])
def test_an_answer_ends_at_the_end_of_its_turn(rehearsal, name, turn_end, monkeypatch):
    """The bases' EOS ends a document (<|endoftext|>, <|end_of_text|>); their chat templates end a turn with another
    token. A base prompted in the template (Direct RL, LUFFY and ReLIFT start from it; its evaluations) ends its answer
    with that token: both generators stopped on EOS alone and ran on into turns of the model's own making, whose last
    \\boxed{} was graded. Here a model that always says the end-of-turn token: one token, stopped."""
    import sys
    import types
    from types import SimpleNamespace

    import torch

    from giftlab.evaluation.generation import HFGenerator, VLLMGenerator
    from giftlab.models import load_model, load_tokenizer

    path = rehearsal / "models" / name
    tok = load_tokenizer(path)
    eot = tok.convert_tokens_to_ids(turn_end)
    assert eot != tok.eos_token_id
    model = load_model(path, dtype=torch.float32)
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[eot] = 10.0
    model.lm_head = head
    gen = HFGenerator.from_model(model.eval(), tok, batch_size=2)
    assert eot in gen.stop_ids and tok.eos_token_id in gen.stop_ids
    (sample,), = gen.generate([render(tok)], n=1, temperature=0, top_p=1.0, max_new_tokens=5, seed=0)
    assert (sample.num_tokens, sample.finish_reason) == (1, "stop")

    calls = []

    class FakeLLM:  # vLLM's offline API: it stops on its request's stop_token_ids (and its own EOS)
        def __init__(self, model, **kwargs):
            pass

        def generate(self, requests, params, use_tqdm=False):
            calls.append(params)
            out = []
            for p in params:
                ids = [eot, 7, 8, tok.eos_token_id]
                cut = next(i for i, t in enumerate(ids) if t in set(p.stop_token_ids) | {tok.eos_token_id})
                out.append(SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids[:cut + 1], finish_reason="stop")]))
            return out

    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, (lambda **kw: SimpleNamespace(**kw))
    monkeypatch.setitem(sys.modules, "vllm", module)
    (sample,), = VLLMGenerator(path).generate([render(tok)], n=1, temperature=0.6, top_p=1.0, max_new_tokens=5,
                                               seed=0)
    assert eot in calls[0][0].stop_token_ids and sample.num_tokens == 1 and sample.text == ""


def render(tok):
    from giftlab.data import render_prompt

    return render_prompt(tok, "What is 2 + 3?")


def test_the_turn_end_is_found_only_where_it_is_not_eos():
    """The tiny char tokenizer's template ends an assistant turn with its EOS: nothing to add."""
    from giftlab.data import turn_end_ids
    from giftlab.tinyworld.tokenizer import build_tokenizer

    assert turn_end_ids(build_tokenizer()) == []

"""`scripts/verify.py`: a whole workspace checked by format, one line per damaged artifact with its rebuild."""

from __future__ import annotations

import json
import subprocess
import sys

from giftlab.models import build_tiny_model
from giftlab.tinyworld.tokenizer import build_tokenizer
from giftlab.verify import verify_workspace
from helpers import REPO


def _workspace(root):
    tok = build_tokenizer()
    model = build_tiny_model("qwen2", vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                             num_attention_heads=2, intermediate_size=32, tokenizer=tok, seed=0)
    model.save_pretrained(root / "models" / "rl" / "qwen" / "sft")
    (root / "results" / "eval").mkdir(parents=True)
    (root / "results" / "eval" / "a.summary.json").write_text(json.dumps({"pass@1": 0.5}))
    (root / "results" / "eval" / "a.samples.jsonl").write_text('{"i": 1}\n{"i": 2}\n')
    (root / "figures").mkdir()
    (root / "figures" / "fig1.pdf").write_bytes(b"%PDF-1.4 ...")
    return root


def test_a_whole_workspace_passes_and_each_kind_of_damage_is_one_line(tmp_path):
    root = _workspace(tmp_path)
    assert verify_workspace(root) == (4, [])
    weights = root / "models" / "rl" / "qwen" / "sft" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    (root / "results" / "eval" / "a.summary.json").write_text('{"pass@1": 0.')
    (root / "results" / "eval" / "a.samples.jsonl").write_text('{"i": 1}\n{"i": ')
    (root / "figures" / "fig1.pdf").write_bytes(b"")
    checked, problems = verify_workspace(root)
    assert checked == 4 and len(problems) == 4
    assert all("\n" not in p and "snakemake --force" in p for p in problems)
    text = "\n".join(problems)
    assert "snakemake --force models/rl/qwen/sft" in text and "a.summary.json: not JSON" in text
    assert "a.samples.jsonl: line 2 is not JSON" in text and "fig1.pdf: not a PDF file" in text


def test_the_script_exits_1_naming_the_damage(tmp_path):
    root = _workspace(tmp_path)
    run = lambda: subprocess.run([sys.executable, str(REPO / "scripts" / "verify.py"), str(root)],
                                 capture_output=True, text=True, timeout=120)
    ok = run()
    assert ok.returncode == 0 and ok.stdout == "" and "4 artifacts checked, 0 damaged" in ok.stderr
    (root / "results" / "eval" / "a.summary.json").write_text("")
    bad = run()
    assert bad.returncode == 1 and bad.stdout.count("\n") == 1 and "a.summary.json" in bad.stdout


def test_binary_garbage_in_a_json_lines_file_is_one_line_too(tmp_path):
    root = _workspace(tmp_path)
    (root / "results" / "eval" / "a.samples.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    _, problems = verify_workspace(root)
    assert problems == [f"{root / 'results' / 'eval' / 'a.samples.jsonl'}: not text (UTF-8); "
                        f"rebuild it with `snakemake --force {root / 'results' / 'eval' / 'a.samples.jsonl'}`"]

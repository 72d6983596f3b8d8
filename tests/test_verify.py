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
                        "rebuild it with `snakemake --force results/eval/a.samples.jsonl`"]


def test_a_table_changed_after_it_was_written_is_caught_by_its_recorded_sha256(tmp_path, monkeypatch):
    from giftlab.provenance import write_sidecar

    root = _workspace(tmp_path)
    monkeypatch.chdir(root)  # sidecars name files relative to the workspace, as the rules run there
    tables = root / "results" / "tables"
    tables.mkdir()
    (tables / "table1.csv").write_text("run,pass@1\nsft,0.5\n")
    write_sidecar("results/tables/table1.provenance.json", {"seed": 0}, ["results/eval/a.summary.json"],
                  ["results/tables/table1.csv"])
    assert verify_workspace(root)[1] == []
    (root / "results" / "eval" / "a.summary.json").write_text(json.dumps({"pass@1": 0.6}))  # an input may change
    assert verify_workspace(root)[1] == []
    (tables / "table1.csv").write_text("run,pass@1\nsft,0.9\n")  # the table itself may not
    problems = verify_workspace(root)[1]
    assert len(problems) == 1 and "table1.csv: changed since it was written" in problems[0]


def test_outputs_another_config_made_are_refused_before_they_are_recorded(tmp_path):
    """`python scripts/verify.py && dvc commit -f`: a split made by the smoke profile is not the tiny default's."""
    from giftlab.config import load_config
    from giftlab.plan import Plan

    root = _workspace(tmp_path)
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    job = Plan(load_config(REPO / "params.yaml", REPO / "config" / "smoke.yaml")).job("split")
    (root / "results" / "split.json").write_text(json.dumps({"provenance": {"config": job}}))
    run = lambda *extra: subprocess.run([sys.executable, str(REPO / "scripts" / "verify.py"), str(root), *extra],
                                        capture_output=True, text=True, timeout=120)
    bad = run()
    assert bad.returncode == 1 and bad.stdout.startswith("results/split.json: made by another config")
    assert "split.rl: 64 → 1000" in bad.stdout and "1 made by another config" in bad.stderr
    assert run("--configfile", str(REPO / "config" / "smoke.yaml")).returncode == 0
    # a workspace built with `snakemake -s <clone>/Snakefile --directory <it>` holds no params.yaml: the clone's, which
    # its Snakefile read, beside this script (it was "not checked", then "0 made by another config", exit 0)
    (root / "params.yaml").unlink()
    apart = run()
    assert apart.returncode == 1 and apart.stdout.startswith("results/split.json: made by another config")
    assert f"verify: no params.yaml in {root}: checked against {REPO / 'params.yaml'}" in apart.stderr
    typo = run("--params", str(root / "parms.yaml"))
    assert typo.returncode == 2 and typo.stderr.strip() == f"verify: --params {root}/parms.yaml: no such file"
    apart = run("--params", str(REPO / "params.yaml"))
    assert apart.returncode == 1 and apart.stdout.startswith("results/split.json: made by another config")


def test_a_damaged_output_is_one_line_whose_rebuild_command_carries_the_profile(tmp_path):
    # Checked against a profile, the command must rebuild under that profile (without it, `snakemake --force`
    # planned the file's whole chain under the tiny default); and a damaged file is not also called foreign.
    root = _workspace(tmp_path)
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (root / "results" / "split.json").write_text('{"provenance": {"conf')
    smoke = str(REPO / "config" / "smoke.yaml")
    bad = subprocess.run([sys.executable, str(REPO / "scripts" / "verify.py"), str(root), "--configfile", smoke],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stdout.count("\n") == 1, bad.stdout
    assert "split.json: not JSON" in bad.stdout
    # the target as Snakemake names it, and the workspace and Snakefile where it is not here
    assert bad.stdout.rstrip().endswith(f"`snakemake --force results/split.json -s {REPO / 'Snakefile'} --directory "
                                        f"{root} --configfile {smoke}`")
    (root / "Snakefile").write_text("")  # a clone checked from elsewhere: its own Snakefile (snakemake looks here)
    clone = subprocess.run([sys.executable, str(REPO / "scripts" / "verify.py"), str(root)], capture_output=True,
                           text=True, timeout=120)
    assert clone.stdout.rstrip().endswith(f"-s {root / 'Snakefile'} --directory {root}`")
    weights = root / "models" / "rl" / "qwen" / "sft" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    _, problems = verify_workspace(root, f"--configfile {smoke}")
    assert any(p.startswith("corrupt checkpoint") and p.endswith(f"models/rl/qwen/sft --configfile {smoke}`")
               for p in problems), problems


def test_a_killed_exports_torn_temporary_is_not_an_artifact(tmp_path):
    """A job killed while it exported (SIGKILL after SLURM's KillWait, past the preemption handler) leaves
    ``.<name>.tmp`` beside its output (giftlab.io.atomic_dir, checkpoints.export_model): never a Snakemake or DVC output
    (.dvcignore: ``**/.*.tmp``) and removed by the job's rerun, so it is not reported as a damaged checkpoint with a
    `snakemake --force` of a target that does not exist."""
    root = _workspace(tmp_path)
    whole = root / "models" / "rl" / "qwen" / "sft"
    for torn in (root / "models" / "rl" / "qwen" / ".gift-b3.tmp",                  # GRPO's export_model
                 root / "models" / "sft" / "qwen" / ".gift-b3.tmp" / "epoch_1"):    # SFT's atomic_dir of its epochs
        torn.mkdir(parents=True)
        (torn / "config.json").write_text((whole / "config.json").read_text())
        (torn / "model.safetensors").write_bytes((whole / "model.safetensors").read_bytes()[:-10])
    (root / "results" / "eval" / ".run.tmp").mkdir()
    (root / "results" / "eval" / ".run.tmp" / "b.summary.json").write_text('{"pass@1": 0.')
    assert verify_workspace(root) == (4, [])


def test_samples_cut_at_a_line_end_or_appended_to_are_caught_by_their_summarys_count(tmp_path):
    """A samples file cut at a line's end parses: rl_gain and the claims paired 15 problems instead of 24, and
    verify passed it (the fault-injection review). Its summary counts its rows (n_responses); verify and the reports'
    reader (giftlab.reporting.samples) compare, and the reader also refuses a repeated sample or problems with
    unequal counts."""
    import pytest

    from giftlab.reporting.samples import read_samples

    root = _workspace(tmp_path)
    samples = root / "results" / "eval" / "a.samples.jsonl"
    rows = [{"prompt_id": f"p{p}", "sample_index": i, "correct": True} for p in range(3) for i in range(2)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    samples.write_text(text)
    (root / "results" / "eval" / "a.summary.json").write_text(json.dumps({"pass@1": 1.0, "n_responses": 6}))
    assert verify_workspace(root)[1] == [] and read_samples(samples) == rows
    samples.write_text("".join(text.splitlines(keepends=True)[:4]))  # two whole problems of three
    _, problems = verify_workspace(root)
    assert problems == [f"{samples}: 4 rows where a.summary.json counts 6: cut short or appended to since it was "
                        "written; rebuild it with `snakemake --force results/eval/a.samples.jsonl`"]
    with pytest.raises(ValueError, match=r"a.samples.jsonl: 4 rows where a.summary.json counts 6"):
        read_samples(samples)
    # without a count (no summary beside it): the rows' own checks
    (root / "results" / "eval" / "a.summary.json").unlink()
    samples.write_text(text + json.dumps(rows[0]) + "\n")
    with pytest.raises(ValueError, match=r"row 7: sample 0 of problem 'p0' again \(row 1\)"):
        read_samples(samples)
    samples.write_text("".join(text.splitlines(keepends=True)[:5]))
    with pytest.raises(ValueError, match=r"problem 'p2' has 1 samples, problem 'p0' 2: cut short or edited"):
        read_samples(samples)

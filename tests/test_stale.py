"""giftlab.stale: outputs another config made, which Snakemake would keep, stop the plan in one line; outputs
Snakemake will rebuild anyway (its own record says their job changed) do not."""

from __future__ import annotations

import base64
import json
import shlex

from giftlab.config import deep_merge, load_config
from giftlab.plan import Plan
from giftlab.stale import damaged_checkpoints, first_difference, forced_run, foreign_outputs, verify_command
from helpers import REPO, snakemake

SMOKE = REPO / "config" / "smoke.yaml"


def write_result(root, path, config):
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps({"value": 1, "provenance": {"config": config}}))


def snakemake_record(root, path, job):
    """What Snakemake's metadata holds for the job that wrote ``path``: its shell command with the job JSON."""
    meta = root / ".snakemake" / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    name = base64.urlsafe_b64encode(path.encode()).decode()
    cmd = f"python scripts/split.py --config {shlex.quote(json.dumps(job))} --out x > log 2>&1"
    (meta / name).write_text(json.dumps({"rule": "split", "shellcmd": cmd}))


def test_first_difference_names_the_key_path():
    assert first_difference({"a": {"b": 1, "c": [1]}}, {"a": {"b": 1, "c": [1]}}) is None
    assert first_difference({"a": {"b": 1}}, {"a": {"b": 2}}) == "a.b: 1 → 2"
    assert first_difference({"a": 1}, {"a": 1, "z": 0}) == "z: absent → 0"
    assert first_difference({"seed": 1, "split": {"sft": 64}}, {"seed": 1, "split": {"sft": 1000}}) == \
        "split.sft: 64 → 1000"
    long = {"beta": 3.0, "final_stage": "rl", "label": "GIFT", "method": "gift", "strategy": "gift"}
    cut = first_difference({}, {"g": long})
    assert cut.startswith("g: absent → {") and cut.endswith("…") and len(cut.split(" → ")[1]) == 60  # says it is cut


def test_foreign_only_when_snakemake_would_keep_it(tmp_path):
    wanted = {"seed": 1234, "split": {"sft": 1000}}
    other = {"seed": 1234, "split": {"sft": 64}}
    recorded = [("results/split.json", "split", wanted)]
    assert foreign_outputs(recorded, tmp_path) == []                 # absent: Snakemake builds it
    write_result(tmp_path, "results/split.json", wanted)
    assert foreign_outputs(recorded, tmp_path) == []                 # made by this config
    write_result(tmp_path, "results/split.json", other)
    # no record of it (DVC restored it, or it was copied in): Snakemake would keep it
    problems = foreign_outputs(recorded, tmp_path)
    assert problems == ["results/split.json: made by another config than this one asks for (rule split, "
                        "split.sft: 64 → 1000), and Snakemake would keep it"]
    # Snakemake made it with the other config: its params trigger reruns the job, nothing to refuse
    snakemake_record(tmp_path, "results/split.json", other)
    assert foreign_outputs(recorded, tmp_path) == []
    assert len(foreign_outputs(recorded, tmp_path, strict=True)) == 1   # but it is not this config's to record
    # Snakemake's record says it made this config's job, yet the file is another's (replaced behind its back)
    snakemake_record(tmp_path, "results/split.json", wanted)
    assert len(foreign_outputs(recorded, tmp_path)) == 1
    # a result cut short after it was written: Snakemake would keep it too, and only its consumer would fail
    (tmp_path / "results" / "split.json").write_text('{"value": 1, "provenance": {"con')
    assert foreign_outputs(recorded, tmp_path) == [
        "results/split.json: damaged (not JSON: cut short or overwritten after rule split wrote it)"]


def test_the_plan_lists_every_recorded_output_with_its_job():
    plan = Plan(load_config(REPO / "params.yaml"))
    recorded = {path: (rule, job) for path, rule, job in plan.recorded_configs()}
    assert recorded["results/split.json"] == ("split", plan.job("split"))
    rule, job = recorded["results/eval/rl/qwen/gift-b3/tiny_ood.summary.json"]
    assert rule == "evaluate" and job["benchmark"] == "tiny_ood" and "benchmarks" not in job
    assert recorded["results/eval/sft/qwen/direct_sft/tiny_id.summary.json"][0] == "evaluate_direct_sft"
    assert recorded["results/eval/sft/qwen/gift-b3/tiny_id.summary.json"][0] == "evaluate_pre_rl"
    assert "results/mtbench/scores/qwen/dft.json" in recorded and "results/tables/table5.provenance.json" in recorded
    assert len(recorded) == len(set(recorded))


def test_a_smoke_output_in_a_tiny_default_workspace_stops_the_plan_in_one_line(tmp_path):
    """The review's case: smoke outputs where the tiny default plans (here restored with no Snakemake record)."""
    smoke = Plan(load_config(REPO / "params.yaml", SMOKE))
    for path, _, job in smoke.recorded_configs():
        if path.startswith("results/sft/"):
            write_result(tmp_path, path, job)
    result = snakemake(tmp_path, "-n", timeout=300)
    assert result.returncode != 0
    lines = [l for l in (result.stdout + result.stderr).splitlines() if "stopped before any job" in l]
    assert len(lines) == 1 and "results/sft/qwen/sft/metrics.json" in lines[0] and "Traceback" not in result.stderr
    # the workspace is apart from the code: the verify command names the code's script, the workspace, its params
    verify = f"python {REPO}/scripts/verify.py {tmp_path} --params {REPO}/params.yaml"
    assert "settings.batch_size: 16 → 32" in lines[0] and f"more: `{verify}` lists them" in lines[0]
    # with the smoke profile, the same files are this config's own; one that changes the SFT settings refuses them
    assert foreign_outputs(smoke.recorded_configs(), tmp_path) == []
    other = Plan(deep_merge(load_config(REPO / "params.yaml", SMOKE), {"sft": {"lr": 5.0e-4}}))
    assert len(foreign_outputs(other.recorded_configs(), tmp_path)) == len(smoke.sft_runs())


def test_a_forced_run_is_read_from_the_command_line():
    assert forced_run(["-n", "--forcerun", "sft"]) and forced_run(["--forcerun=sft"]) and forced_run(["-F"])
    assert not forced_run(["-n", "--configfile", "config/smoke.yaml", "figures/fig1.pdf"])


def test_the_verify_command_checks_the_workspace_as_the_run_does(tmp_path):
    """The refusal's hint runs verify on the same workspace, params.yaml and profiles as the refused run."""
    assert verify_command(tmp_path, tmp_path) == "python scripts/verify.py"
    inside, outside = tmp_path / "config" / "smoke.yaml", tmp_path.parent / "site.yaml"
    assert (verify_command(tmp_path, tmp_path, [inside, outside])
            == f"python scripts/verify.py --configfile config/smoke.yaml {outside}")
    code, workspace = tmp_path / "clone", tmp_path / "ws"
    assert (verify_command(code, workspace, [inside]) == f"python {code}/scripts/verify.py {workspace} "
            f"--params {code}/params.yaml --configfile {inside}")


def test_a_torn_checkpoint_is_named_with_its_output(tmp_path):
    from giftlab.models import build_tiny_model
    from giftlab.tinyworld.tokenizer import build_tokenizer

    tok = build_tokenizer()
    model = build_tiny_model("qwen2", vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                             num_attention_heads=2, intermediate_size=32, tokenizer=tok, seed=0)
    for folder in ("models/rl/qwen/sft", "models/sft/qwen/gift-b3/epoch_1", "models/sft/qwen/gift-b3/epoch_2"):
        model.save_pretrained(tmp_path / folder)
    outputs = [("models/sft/qwen/gift-b3", "sft"), ("models/rl/qwen/sft", "grpo"), ("models/rl/qwen/absent", "grpo")]
    assert damaged_checkpoints(outputs, tmp_path) == []
    weights = tmp_path / "models/sft/qwen/gift-b3/epoch_2/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-7])
    (problem,) = damaged_checkpoints(outputs, tmp_path)
    assert problem.startswith("models/sft/qwen/gift-b3/epoch_2/model.safetensors is damaged (")
    assert "in models/sft/qwen/gift-b3, output of rule sft" in problem and "\n" not in problem

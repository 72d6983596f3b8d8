"""dvc.yaml and the Snakemake workflow describe the same pipeline; artifacts are shared through a DVC remote.

Fast checks (no training): every dvc.yaml stage is one Snakemake phase target (workflow/rules/phases.smk)
-- same rules, command, outputs (one owner each), code deps and upstream deps -- and the phases together
cover the DAG of `rule all`; the SLURM profile plans the whole paper grid.

The slow check that two clones share every artifact through one remote (a whole `dvc repro`) is
tests_integration/test_dvc_sharing.py, run by `.ci/run` after the README's suite; its helpers live here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from giftlab.config import EVAL_RULES, deep_merge, load_config
from helpers import REPO, paper_hub_cache, venv_env

pytestmark = pytest.mark.slow  # scheduled early on the two workers (tests/conftest.py)

BIN = Path(sys.executable).parent
INCLUDE = 'include: "workflow/rules/phases.smk"'
PHASE_PREFIX = "phase_"
TARGET_RULES = {"all"}  # target-only rules outside the phases
# checkpoints the pipeline did not train (config models.extra, workflow/rules/extra.smk): on demand, outside `rule all`
# and the DVC stages, writing only under results/extra (which no stage owns)
ON_DEMAND_RULES = {"evaluate_extra", "consistency_extra", "table_extra", "extra_models"}


# ------------------------------------------------------------------ helpers


def env() -> dict[str, str]:
    e = venv_env()
    e["DVC_NO_ANALYTICS"] = "1"
    e.setdefault("GIT_AUTHOR_NAME", "giftlab-test")
    e.setdefault("GIT_AUTHOR_EMAIL", "test@example.invalid")
    e.setdefault("GIT_COMMITTER_NAME", "giftlab-test")
    e.setdefault("GIT_COMMITTER_EMAIL", "test@example.invalid")
    return e


def run(cmd, cwd, timeout=600, check=True, **extra_env: str) -> subprocess.CompletedProcess:
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    exe = cmd[0]
    if (BIN / exe).exists():
        cmd = [str(BIN / exe), *cmd[1:]]
    result = subprocess.run(cmd, cwd=cwd, env={**env(), **extra_env}, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({result.returncode}) in {cwd}:\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


# The sharing test (tests_integration/test_dvc_sharing.py) needs a small grid, not every objective: plain SFT and GIFT, no Direct baselines.
SHARING_GRID = {"sft": {"methods": ["sft", "gift"], "direct_sft": False}, "grpo": {"direct_rl": False}}


def copy_worktree(dest: Path, params_override: Path | None = None, extra: dict | None = None) -> Path:
    """A git repo at ``dest`` holding this checkout's files (tracked + untracked, not ignored)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    dest.mkdir(parents=True, exist_ok=True)
    for rel in filter(None, files):
        src, dst = REPO / rel, dest / rel
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        elif src.is_file():
            shutil.copy2(src, dst)
    if params_override is not None:
        merged = deep_merge(load_config(dest / "params.yaml", params_override), extra or {})
        (dest / "params.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    run("git init -q -b main", dest)
    run("git add -A", dest)
    run(["git", "commit", "-qm", "test snapshot"], dest)
    return dest


def dvc_stages(root: Path = REPO) -> dict:
    return yaml.safe_load((root / "dvc.yaml").read_text())["stages"]


def parse_cmd(cmd: str) -> tuple[str, list[str]]:
    """`snakemake phase_x --allowed-rules phase_x a b` -> ("phase_x", ["phase_x", "a", "b"])."""
    argv = shlex.split(cmd)
    assert argv[0] == "snakemake", cmd
    assert "--allowed-rules" in argv, f"stage cmd must restrict Snakemake to the phase's rules: {cmd}"
    i = argv.index("--allowed-rules")
    targets, allowed = argv[1:i], argv[i + 1:]
    assert len(targets) == 1 and not any(a.startswith("-") for a in allowed), cmd
    return targets[0], allowed


def detailed_summary(root: Path, workdir: Path, target: str, configfiles=()) -> list[dict]:
    cmd = ["snakemake", "-s", str(root / "Snakefile"), "-d", str(workdir), "--detailed-summary", target]
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    out = run(cmd, workdir, timeout=300).stdout
    start = out.index("output_file\t")
    return list(csv.DictReader(io.StringIO(out[start:]), delimiter="\t"))


def under(path: str, out: str) -> bool:
    return path == out or path.startswith(out.rstrip("/") + "/")


def owner(path: str, stages: dict) -> list[str]:
    return [name for name, st in stages.items() for out in st["outs"] if under(path, out_path(out))]


def out_path(out) -> str:
    return out if isinstance(out, str) else next(iter(out))


def tree_digest(root: Path, rel: str) -> dict[str, str]:
    """sha256 of every file under root/rel that DVC versions (what .dvcignore keeps)."""
    base = root / rel
    paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths
            if p.name != ".snakemake_timestamp" and not (p.name.startswith(".") and p.name.endswith(".tmp"))}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    """This checkout as a git repo (Snakefile including phases.smk), tiny default params."""
    return copy_worktree(tmp_path_factory.mktemp("snapshot") / "repo")


@pytest.fixture(scope="module")
def summaries(snapshot, tmp_path_factory) -> dict[str, list[dict]]:
    """Snakemake's view of the smoke DAG: every job's outputs and inputs, per target."""
    work = tmp_path_factory.mktemp("dag")
    smoke = [REPO / "config" / "smoke.yaml"]
    return {t: detailed_summary(snapshot, work, t, smoke) for t in ("all", "phase_all")}


# ------------------------------------------------------------------ the two views agree


def test_snakefile_includes_the_phase_targets():
    assert INCLUDE in (REPO / "Snakefile").read_text(), \
        f"add `{INCLUDE}` to the Snakefile after the other includes (docs/scale.md)"


def test_every_stage_runs_its_phase_target_restricted_to_its_rules(snapshot):
    stages = dvc_stages()
    rule_list = run(["snakemake", "--list-rules"], snapshot).stdout.split()
    phase_targets = {r for r in rule_list if r.startswith(PHASE_PREFIX)} - {"phase_all"}
    assert {PHASE_PREFIX + s for s in stages} == phase_targets, "one dvc.yaml stage per phase target"
    owners = Counter()
    for name, stage in stages.items():
        target, allowed = parse_cmd(stage["cmd"])
        assert target == PHASE_PREFIX + name and target in allowed, stage["cmd"]
        owners.update(r for r in allowed if r != target)
    work_rules = set(rule_list) - phase_targets - {"phase_all"} - TARGET_RULES - ON_DEMAND_RULES
    assert ON_DEMAND_RULES <= set(rule_list)
    assert set(owners) == work_rules, "every rule belongs to exactly one stage"
    assert not [o for st in stages.values() for o in st["outs"] if under("results/extra", out_path(o))
                or under(out_path(o), "results/extra")], "results/extra (on-demand evaluations) belongs to no stage"
    assert all(n == 1 for n in owners.values()), owners


def test_stage_outs_are_exactly_the_phase_outputs_with_one_owner(summaries):
    stages = dvc_stages()
    rule_stage = {r: name for name, st in stages.items() for r in parse_cmd(st["cmd"])[1]}
    outs = [out_path(o) for st in stages.values() for o in st["outs"]]
    for a in outs:  # no out inside another out: one owner per path
        assert [b for b in outs if under(a, b) or under(b, a)] == [a], f"overlapping outs: {a}"
    used = set()
    for row in summaries["phase_all"]:
        path, rule = row["output_file"], row["rule"]
        own = owner(path, stages)
        assert own == [rule_stage[rule]], f"{path} (rule {rule}) is owned by {own}, expected {rule_stage[rule]}"
        used.update(out_path(o) for o in stages[own[0]]["outs"] if under(path, out_path(o)))
    assert used == set(outs), f"outs no rule writes: {set(outs) - used}"


def test_phases_cover_the_dag_of_rule_all(summaries):
    jobs = {name: {(r["rule"], r["output_file"]) for r in rows} for name, rows in summaries.items()}
    assert jobs["all"] <= jobs["phase_all"], jobs["all"] - jobs["phase_all"]


def test_stage_deps_are_the_phase_code_and_upstream_outs(summaries):
    stages = dvc_stages()
    rule_stage = {r: name for name, st in stages.items() for r in parse_cmd(st["cmd"])[1]}
    rule_files = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for line in smk.read_text().splitlines():
            if line.startswith("rule "):
                rule_files[line.split()[1].rstrip(":")] = f"workflow/rules/{smk.name}"
    rule_files.update({name: rule_source(name)[0] for name in EVAL_RULES})  # named rules made in a loop
    for name, stage in stages.items():
        deps = set(stage["deps"])
        for dep in deps:
            assert (REPO / dep).exists() or owner(dep, stages), f"{name}: dep {dep} does not exist"
        for rule in parse_cmd(stage["cmd"])[1]:
            if rule.startswith(PHASE_PREFIX):
                continue
            assert rule_files[rule] in deps, f"{name}: {rule_files[rule]} (rule {rule}) missing from deps"
            assert "workflow/rules/common.smk" in deps, name
    for row in summaries["phase_all"]:
        stage = rule_stage[row["rule"]]
        for inp in row["input-file(s)"].split(","):
            inp = inp.strip()
            if not inp or inp == "-":
                continue
            up = owner(inp, stages)
            if up and up != [stage]:
                assert any(under(inp, d) for d in stages[stage]["deps"]), \
                    f"stage {stage}: input {inp} (from stage {up[0]}) is not a dep"
            elif not up:
                assert (REPO / inp).exists(), f"stage {stage}: {inp} has no producer"
                assert any(under(os.path.relpath(REPO / inp, REPO), d) for d in stages[stage]["deps"]), \
                    f"stage {stage}: code input {inp} is not a dep"


def rule_source(rule: str) -> tuple[str, str]:
    """(file, text) of a rule's definition: a `rule NAME:` block, or the loop over EVAL_RULES that makes it."""
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        head = f"rule {rule}:" if f"rule {rule}:" in text else None
        if head is None and rule in EVAL_RULES and "in EVAL_RULES.items():" in text:
            head = "in EVAL_RULES.items():"
        if head:
            return f"workflow/rules/{smk.name}", text.split(head, 1)[1].split("\nrule ", 1)[0]
    raise KeyError(f"rule {rule} is defined in no workflow/rules/*.smk")


def test_scripts_called_by_a_phase_are_its_deps():
    stages = dvc_stages()
    for name, stage in stages.items():
        for rule in parse_cmd(stage["cmd"])[1]:
            if rule.startswith(PHASE_PREFIX):
                continue
            block = rule_source(rule)[1]
            for token in ('script("', 'plotting_code("'):
                if token in block:
                    script = block.split(token, 1)[1].split('"', 1)[0]
                    assert f"scripts/{script}.py" in stage["deps"], f"{name}: scripts/{script}.py"


def giftlab_imports(path: Path) -> set[Path]:
    """Files of the giftlab modules ``path`` imports (absolute and relative imports, any depth in the file)."""
    import ast

    src = REPO / "src"
    package = path.relative_to(src).with_suffix("").parts[:-1] if path.is_relative_to(src) else ()
    found = set()
    tree = ast.parse(path.read_text())
    # a package's __init__ runs only its top-level imports (the lazy __getattr__ ones run on use)
    nodes = tree.body if path.name == "__init__.py" else ast.walk(tree)
    for node in nodes:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module.split(".") if node.module else []
            if node.level:
                base = list(package[: len(package) - node.level + 1]) + base
            names = [".".join(base)] + [".".join([*base, alias.name]) for alias in node.names]
        for name in names:
            if not name.startswith("giftlab"):
                continue
            target = src.joinpath(*name.split("."))
            for candidate in (target.with_suffix(".py"), target / "__init__.py"):
                if candidate.exists():
                    found.add(candidate)
            # a name a package exports lazily (giftlab.lazy_exports) runs its submodule, not the package's __init__
            package_init = target.parent / "__init__.py"
            module = lazy_export_modules(package_init).get(target.name) if package_init.exists() else None
            if module is not None:
                found.add(target.parent / f"{module}.py")
    return found


def lazy_export_modules(package_init: Path) -> dict[str, str]:
    """name -> submodule of a package whose __init__ exports names through giftlab.lazy_exports."""
    import ast

    for node in ast.walk(ast.parse(package_init.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_exports":
            exports = ast.literal_eval(node.args[1])
            return {name: module for module, names in exports.items() for name in names}
    return {}


def test_a_lazily_exported_name_depends_on_its_submodule(tmp_path):
    script = tmp_path / "uses_a_lazy_name.py"
    script.write_text("from giftlab.evaluation import load_benchmark\n")
    assert REPO / "src" / "giftlab" / "evaluation" / "benchmarks.py" in giftlab_imports(script)


def import_closure(scripts: list[Path]) -> set[Path]:
    todo, seen = list(scripts), set()
    while todo:
        path = todo.pop()
        for dep in giftlab_imports(path):
            # importing giftlab.a.b runs giftlab/__init__.py and giftlab/a/__init__.py too
            parents = [dep.parent / "__init__.py"] + [p / "__init__.py" for p in dep.parents
                                                      if p.is_relative_to(REPO / "src" / "giftlab")]
            for item in [dep, *parents]:
                if item.exists() and item not in seen:
                    seen.add(item)
                    todo.append(item)
    return seen


def test_stage_deps_cover_the_library_code_their_scripts_import():
    """Editing any module a phase's scripts import (transitively) must make DVC rerun that phase."""
    stages = dvc_stages()
    for name, stage in stages.items():
        scripts = [REPO / d for d in stage["deps"] if d.startswith("scripts/")]
        for module in sorted(import_closure(scripts)):
            rel = module.relative_to(REPO).as_posix()
            if rel == "src/giftlab/__init__.py":
                continue
            assert any(under(rel, d) for d in stage["deps"]), f"stage {name}: {rel} is imported but not a dep"


def test_params_are_phase_keys_of_params_yaml():
    params = load_config(REPO / "params.yaml")
    main_section = {"world": "world", "base": "pretrain", "split": "data", "sft": "sft", "grpo": "grpo",
                    "eval": "eval", "analysis": "eval.consistency_examples", "mtbench": "mtbench", "figures": "figures"}
    for name, stage in dvc_stages().items():
        keys = stage["params"]
        for key in keys:
            node = params
            for part in key.split("."):
                assert part in node, f"{name}: params key {key} is not in params.yaml"
                node = node[part]
        assert main_section[name] in keys, name
        assert len(keys) <= 9, f"{name}: a stage lists only its phase's keys"  # grpo: + unified, its demonstrations, seeds, launch


def test_stages_of_launched_rules_rerun_when_the_launch_changes():
    # A rule started through `launch` (accelerate launch: its process count sets SFT's global batch, its config file
    # FSDP and mixed precision) computes another result when the line or the accelerate config changes, though no job
    # config does. Before: neither was a param/dep of the sft and grpo stages, so after `launch.sft: accelerate launch
    # --num_processes 2` (or mixed_precision fp16 in workflow/accelerate/fsdp.yaml) `dvc status` said up to date.
    stages = dvc_stages()
    assert "launch" in load_config(REPO / "params.yaml"), "params.yaml needs the key (DVC refuses a missing param)"
    launched = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in smk.read_text().split("\nrule ")[1:]:
            if "launcher(" in block:
                launched.add(block.split(":", 1)[0].strip())
    assert {"sft", "grpo"} <= launched, launched
    for name, stage in stages.items():
        if set(parse_cmd(stage["cmd"])[1]) & launched:
            params = [p if isinstance(p, str) else next(iter(p)) for p in stage["params"]]
            assert "launch" in params, f"stage {name}: a change of `launch` would not rerun it"
            assert "workflow/accelerate" in stage["deps"], f"stage {name}: an accelerate config edit would not rerun it"


def _leaves(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*prefix, key))
    else:
        yield prefix, node


def _other_values(value, config) -> list:
    """Other values of the same kind; the first the config accepts is tried. The keys the profiles leave null are
    optional dtypes, URLs and backbone lists."""
    if value is None:
        return ["bfloat16", sorted(config["backbones"])[:1]]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1]
    if isinstance(value, float):
        return [value * 1.5 + 0.01]
    if isinstance(value, list) and len(value) > 1:
        return [value[:-1]]
    if isinstance(value, str):
        return [value + "x"]
    return []


def _phase_signatures(config) -> dict[str, list]:
    """Per phase: its outputs and the job config recorded with each of them (what a rerun would change)."""
    from giftlab.plan import PHASE_RULES, Plan

    plan = Plan(config)
    phase_of = {rule: phase for phase, rules in PHASE_RULES.items() for rule in rules}
    sig = {phase: [plan.phase_outputs(phase)] for phase in PHASE_RULES}
    for path, rule, job in plan.recorded_configs():
        sig[phase_of[rule]].append((path, job))
    return sig


@pytest.mark.parametrize("profile", [[], ["config/paper.yaml"]], ids=["tiny", "paper"])
def test_every_key_that_changes_a_phase_makes_dvc_rerun_it(profile):
    # Change each key of the config in turn; every phase whose outputs or job configs change must rerun under DVC:
    # its stage lists the key, or an upstream stage it depends on does (and reruns, changing the outs it reads).
    # Before: figures.backbones (which backbones the grid builds) was listed by the figures stage only, and
    # eval.consistency_dtype by none, so `dvc repro` kept stale results and called the pipeline up to date.
    from giftlab.config import validate_config

    stages = dvc_stages()
    phase_params = {name: [p if isinstance(p, str) else next(iter(p)) for p in stage.get("params", [])]
                    for name, stage in stages.items()}
    upstream = {name: {other for other, o in stages.items() if other != name
                       and any(under(d, out_path(out)) for d in stage["deps"] for out in o.get("outs", []))}
                for name, stage in stages.items()}
    schema = REPO / "workflow" / "schemas" / "params.schema.yaml"
    base = load_config(REPO / "params.yaml", *(REPO / f for f in profile))
    before = _phase_signatures(base)
    checked = 0
    for key, value in _leaves(base):
        for new in _other_values(value, base):
            config = deep_merge(base, {})
            node = config
            for part in key[:-1]:
                node = node[part]
            node[key[-1]] = new
            try:
                validate_config(config, schema)
                after = _phase_signatures(config)
                break
            except Exception:  # noqa: BLE001  (a value the config refuses: try the next)
                continue
        else:
            continue
        checked += 1
        dotted = ".".join(key)
        lists = {name for name, params in phase_params.items()
                 if any(dotted == p or dotted.startswith(p + ".") for p in params)}
        changed = {phase for phase in before if after[phase] != before[phase]}
        reruns = changed & lists  # ...and, through the outs they change, every changed phase downstream of them
        while grown := {p for p in changed - reruns if upstream[p] & reruns}:
            reruns |= grown
        assert changed <= reruns, (f"{dotted} changes phase(s) {sorted(changed - reruns)}, but neither their stage "
                                   f"nor an upstream one lists it")
    assert checked > 50


def test_metrics_and_plots_come_from_outs():
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    stages = doc["stages"]
    plots = [p if isinstance(p, str) else next(iter(p)) for p in doc["plots"]]
    for path in doc["metrics"] + plots:
        assert len(owner(path, stages)) == 1, path


def test_dvcignore_keeps_snakemake_bookkeeping_and_trainer_state_out():
    lines = {l.strip() for l in (REPO / ".dvcignore").read_text().splitlines()}
    assert {"**/.snakemake_timestamp", ".snakemake/", "work/"} <= lines
    stages = dvc_stages()
    for stage in stages.values():
        for out in stage["outs"]:
            assert not under(out_path(out), "work") and not under(out_path(out), "logs")


def test_the_documented_cache_type_versions_the_models_without_copying_them(tmp_path):
    """docs/scale.md's `cache.type` for the paper run: `dvc commit` of an SFT export (a hard link of the file in
    work/export, giftlab.training.sft) and of a GRPO export leaves one copy of each on disk. Where the filesystem has
    no reflinks (Lustre, GPFS, NFS; ext4 here) DVC copies a file into its cache unless `hardlink` comes first
    (dvc/output.py ``commit``), and re-copies a hard-linked output it does not link itself: the default
    (reflink, copy) kept 3 copies of each SFT run's epoch_<rl_epoch> (work/export, cache, workspace) and 2 of each
    GRPO export, ~1.3 TB more for the paper grid; "reflink,symlink,hardlink,copy" still 2 of the SFT epoch."""
    import re

    line = next(l for l in (REPO / "docs" / "scale.md").read_text().splitlines()
                if l.startswith("dvc config --local cache.type"))
    types = re.search(r'cache\.type "?([a-z,]+)"?', line).group(1)
    dvc = [str(BIN / "dvc")]
    run = lambda *args: subprocess.run(args, cwd=tmp_path, env=venv_env(), check=True, capture_output=True, text=True)
    run("git", "init", "-q")
    run(*dvc, "init", "-q")
    run(*dvc, "config", "--local", "cache.type", types)
    export = tmp_path / "work" / "export" / "epoch_6" / "model.safetensors"
    sft = tmp_path / "models" / "sft" / "qwen" / "gift-b10" / "epoch_6" / "model.safetensors"
    rl = tmp_path / "models" / "rl" / "qwen" / "gift-b10" / "model.safetensors"
    for path in (export, sft, rl):
        path.parent.mkdir(parents=True)
    export.write_bytes(os.urandom(1 << 16))
    os.link(export, sft)  # as train_sft publishes its exports (_link_or_copy)
    rl.write_bytes(os.urandom(1 << 16))
    (tmp_path / ".dvcignore").write_text("work/\n")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(
        {"stages": {"sft": {"cmd": "true", "outs": ["models/sft"]}, "grpo": {"cmd": "true", "outs": ["models/rl"]}}}))
    run(*dvc, "commit", "-f", "-q")
    files = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink() and p.stat().st_size == 1 << 16]
    copies = Counter(hashlib.md5(p.read_bytes()).hexdigest() for p in {p.stat().st_ino: p for p in files}.values())
    assert sorted(copies.values()) == [1, 1], f"cache.type {types}: {dict(copies)} copies on disk"


def test_no_dvc_inside_rules_or_profiles():
    # DVC's repository lock: dvc runs Snakemake, never the other way round.
    texts = [p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk")]
    texts += [p.read_text() for p in (REPO / "workflow" / "profiles").rglob("*.yaml")]
    for text in texts:
        for line in text.splitlines():
            code = line.split("#", 1)[0]
            assert "dvc " not in code and "'dvc'" not in code and '"dvc"' not in code, line


def test_paper_plan_on_the_slurm_profile(snapshot, tmp_path):
    """`snakemake -n --workflow-profile workflow/profiles/slurm --configfile config/paper.yaml` plans the grid."""
    paper = load_config(REPO / "params.yaml", REPO / "config" / "paper.yaml")
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
        profile_dir = snapshot / "workflow" / "profiles" / "slurm"
    except ImportError:  # plan with the same resources, without the plugin's executor settings
        profile = {k: v for k, v in profile.items() if k != "executor" and not k.startswith("slurm-")}
        profile_dir = tmp_path / "slurm"
        profile_dir.mkdir()
        (profile_dir / "config.yaml").write_text(yaml.safe_dump(profile))
    work = tmp_path / "work"
    bench_dir = work / "data" / "benchmarks"  # eval.benchmark_dir: the local copies the paper run reads
    bench_dir.mkdir(parents=True)
    for bench in paper["eval"]["benchmarks"]:
        (bench_dir / f"{bench}.jsonl").touch()
    mt_bench = work / "data" / "mt_bench"  # Table 5: local copies of FastChat's questions and reference answers
    (mt_bench / "reference_answer").mkdir(parents=True)
    (mt_bench / "question.jsonl").touch()
    (mt_bench / "reference_answer" / "gpt-4.jsonl").touch()
    cmd = ["snakemake", "-s", str(snapshot / "Snakefile"), "-d", str(work), "-n", "--workflow-profile",
           str(profile_dir), "--configfile", str(REPO / "config" / "paper.yaml"), "--quiet", "rules",
           "--", "phase_all"]
    cache = paper_hub_cache(work / ".hf-cache")  # the base models downloaded first (docs/scale.md, step 2)
    text = run(cmd, work, timeout=300, HF_HUB_CACHE=str(cache)).stdout
    counts = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    n_runs = len(paper["sft"]["methods"]) - 1 + len(paper["sft"]["gift_betas"])  # 7 methods + 5 betas
    n_bb = len(paper["backbones"])
    n_unified = len(paper["unified"]["methods"])  # LUFFY and ReLIFT: GRPO from the base model, no SFT
    n_bench, n_math = len(paper["eval"]["benchmarks"]), 4
    assert counts["split"] == 1
    # + Direct SFT (no RL) and Direct RL (GRPO from the base model)
    assert counts["sft"] == (n_runs + 1) * n_bb == 26
    assert counts["grpo"] == (n_runs + 1 + n_unified) * n_bb == 30
    final = (n_runs + 2 + n_unified) * n_bb * n_bench       # every final policy on all ten benchmarks
    # Table 3 (SFT and GIFT before RL, math benchmarks) and rl_gain (before vs after RL, reasoning benchmarks)
    pre_rl = (1 + len(paper["sft"]["gift_betas"])) * n_bb * (n_math + 2)
    # one evaluation job per model (all its benchmarks): 392 benchmark evaluations in 44 jobs
    assert final + pre_rl == 392
    assert counts["evaluate"] == (n_runs + 1 + n_unified) * n_bb and counts["evaluate_direct_sft"] == n_bb
    assert counts["evaluate_pre_rl"] == (1 + len(paper["sft"]["gift_betas"])) * n_bb
    assert counts["consistency"] == (1 + len(paper["sft"]["gift_betas"])) * n_bb * 2
    assert counts["figure1"] == counts["figure2"] == counts["figure3"] == counts["summary"] == 1
    assert counts["table"] == 5
    # Table 5: each SFT-then-RL final policy answers MT-Bench (a GPU job) and the judge model rates it
    assert counts["mtbench_answer"] == counts["mtbench_judge"] == n_runs * n_bb == 24
    assert "world" not in counts and "pretrain_base" not in counts and "mtbench_questions" not in counts
    # Figure 3 reads the local MATH500 copy during RL: without it the plan stops and names it (no empty figure)
    (bench_dir / "math500.jsonl").unlink()
    missing = run(cmd, work, timeout=300, check=False, HF_HUB_CACHE=str(cache))
    assert missing.returncode != 0 and "data/benchmarks/math500.jsonl" in missing.stdout + missing.stderr
    # in one line naming its key, before the DAG: Snakemake would keep a consumer's existing output (another
    # config's tables in this workspace) when the missing file stops its producer
    assert "config error: eval.main_benchmark: no such file: data/benchmarks/math500.jsonl" in missing.stderr
    # any format giftlab.rowfiles reads is found: a parquet file, a downloaded dataset folder
    (bench_dir / "math500.parquet").write_bytes(b"PAR1")
    (bench_dir / "gpqa.jsonl").unlink()
    (bench_dir / "gpqa").mkdir()
    planned = run([*cmd[:-4], "--printshellcmds", "--", "phase_all"], work, timeout=300, HF_HUB_CACHE=str(cache)).stdout
    assert "math500=data/benchmarks/math500.parquet" in planned and "gpqa=data/benchmarks/gpqa " in planned
    # the judge is configured: an OpenAI-compatible model; how it is reached (the variable holding its key, never
    # the key; timeouts) is a runtime setting beside the job config
    judge = next(line for line in planned.splitlines() if "scripts/mtbench_judge.py" in line)
    assert '"kind": "openai"' in judge and '"model": "gpt-4"' in judge and "api_key_env" not in judge
    assert "--runtime work/runtime/mtbench_judge.json" in judge
    # the local questions and references are the answer jobs' inputs (a missing input stops the plan: math500 above)
    answer = next(line for line in planned.splitlines() if "scripts/mtbench_answer.py" in line)
    assert "--questions data/mt_bench/question.jsonl data/mt_bench/reference_answer/gpt-4.jsonl" in answer


def test_a_workspace_moved_whole_reruns_nothing(tmp_path):
    # The README's clone is the workspace; its jobs' params named the scripts by absolute path, so moving or
    # renaming the folder made Snakemake rerun every job (days of GPU at paper scale).
    first = copy_worktree(tmp_path / "here" / "repo")
    smoke = ["--configfile", "config/smoke.yaml"]
    run(["snakemake", "-c1", "results/split.json", *smoke], first, timeout=600)
    moved = tmp_path / "elsewhere" / "deeper" / "repo"
    moved.parent.mkdir(parents=True)
    shutil.move(str(first), str(moved))
    dry = run(["snakemake", "-n", "results/split.json", *smoke], moved, timeout=300)
    assert "Nothing to be done" in dry.stdout + dry.stderr, (dry.stdout + dry.stderr)[-2000:]
